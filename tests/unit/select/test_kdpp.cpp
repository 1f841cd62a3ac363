// SPDX-License-Identifier: Apache-2.0
/// @file
/// Tests of the greedy k-DPP selector (fusemix/select/kdpp.hpp) against a from-scratch reference.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/select/kdpp.hpp>

#include "messages.hpp"

namespace {

using fusemix::latent_view;

template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// ---- compile-time checks: which types are kernels --------------------------------------------

struct not_a_kernel {};
struct wrong_signature {
  double operator()(int, int) const { return 0; }
};
/// A user's kernel with only operator(): rows are built by calling it N times.
struct laplacian_pairwise {
  double gamma = 0.5;
  double operator()(std::span<const double> a, std::span<const double> b) const {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
    return std::exp(-gamma * s);
  }
};
/// The same kernel, with a row member (the RowKernel path, not a dot-product one).
struct laplacian_rows : laplacian_pairwise {
  void row(const latent_view<double>& z, std::size_t j, std::span<double> out) const {
    for (std::size_t i = 0; i < z.rows(); ++i) out[i] = (*this)(z.row(i), z.row(j));
  }
};

static_assert(fusemix::Kernel<fusemix::linear_kernel, float>);
static_assert(fusemix::Kernel<fusemix::cosine_kernel, double>);
static_assert(fusemix::RowKernel<fusemix::linear_kernel, float>);
static_assert(fusemix::RowKernel<fusemix::cosine_kernel, float>);
static_assert(fusemix::RowKernel<fusemix::polynomial_kernel, float>);
static_assert(fusemix::RowKernel<fusemix::polynomial_kernel, double>);
static_assert(fusemix::RowKernel<fusemix::rbf_kernel, float>);
static_assert(fusemix::RowKernel<fusemix::rbf_kernel, double>);
static_assert(fusemix::DotProductKernel<fusemix::polynomial_kernel>);
static_assert(fusemix::DotProductKernel<fusemix::rbf_kernel>);
static_assert(fusemix::RowKernel<fusemix::precomputed_kernel<float>, float>);
static_assert(!fusemix::Kernel<fusemix::precomputed_kernel<float>, double>);
static_assert(!fusemix::DotProductKernel<fusemix::precomputed_kernel<double>>);
static_assert(fusemix::Kernel<laplacian_pairwise, double>);
static_assert(!fusemix::RowKernel<laplacian_pairwise, double>);
static_assert(fusemix::RowKernel<laplacian_rows, double>);
static_assert(!fusemix::Kernel<laplacian_pairwise, float>);
static_assert(!fusemix::Kernel<not_a_kernel, float>);
static_assert(!fusemix::Kernel<wrong_signature, float>);
static_assert(!fusemix::Kernel<int, double>);
static_assert(!fusemix::Kernel<fusemix::linear_kernel, int>);  // not a Scalar

// ---- data ------------------------------------------------------------------------------------

/// n × d standard normal latents (optionally on the unit sphere), from a fixed seed.
template <class T>
row_matrix<T> random_latents(std::size_t n, std::size_t d, unsigned seed, bool unit = false) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal;
  row_matrix<T> z(n, d);
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<double> r(d);
    double sq = 0;
    for (auto& x : r) {
      x = normal(gen);
      sq += x * x;
    }
    const double scale = unit ? 1.0 / std::sqrt(sq) : 1.0;
    for (std::size_t c = 0; c < d; ++c) z(Eigen::Index(i), Eigen::Index(c)) = static_cast<T>(r[c] * scale);
  }
  return z;
}

// ---- reference: greedy on log det(L_{S ∪ i}) from scratch ------------------------------------

template <class T, class K>
double log_det_of(const row_matrix<T>& z, const std::vector<std::size_t>& items, const K& kernel) {
  const auto m = Eigen::Index(items.size());
  Eigen::MatrixXd l(m, m);
  for (Eigen::Index a = 0; a < m; ++a)
    for (Eigen::Index b = 0; b < m; ++b) {
      const auto za = z.row(Eigen::Index(items[std::size_t(a)]));
      const auto zb = z.row(Eigen::Index(items[std::size_t(b)]));
      l(a, b) = kernel(std::span<const T>(za.data(), std::size_t(za.size())),
                       std::span<const T>(zb.data(), std::size_t(zb.size())));
    }
  // a textbook Cholesky, written out so the reference shares no code with the library
  for (Eigen::Index j = 0; j < m; ++j) {
    for (Eigen::Index c = 0; c < j; ++c) l(j, j) -= l(j, c) * l(j, c);
    if (!(l(j, j) > 0)) return -std::numeric_limits<double>::infinity();
    l(j, j) = std::sqrt(l(j, j));
    for (Eigen::Index i = j + 1; i < m; ++i) {
      for (Eigen::Index c = 0; c < j; ++c) l(i, j) -= l(i, c) * l(j, c);
      l(i, j) /= l(j, j);
    }
  }
  double s = 0;
  for (Eigen::Index j = 0; j < m; ++j) s += 2.0 * std::log(l(j, j));
  return s;
}

/// Each step adds the candidate that maximises log det(L_{W ∪ {i}}), W = all picks
/// (window 0) or the last window − 1 picks; the lowest index wins ties.
template <class T, class K>
std::vector<std::size_t> naive_greedy(const row_matrix<T>& z, std::size_t k, const K& kernel,
                                      std::size_t window = 0) {
  std::vector<std::size_t> picks;
  std::vector<bool> taken(std::size_t(z.rows()), false);
  while (picks.size() < k) {
    std::vector<std::size_t> w = picks;
    if (window != 0 && w.size() > window - 1) w.erase(w.begin(), w.end() - std::ptrdiff_t(window - 1));
    double best = -std::numeric_limits<double>::infinity();
    std::size_t best_i = 0;
    for (std::size_t i = 0; i < taken.size(); ++i) {
      if (taken[i]) continue;
      auto s = w;
      s.push_back(i);
      const double v = log_det_of(z, s, kernel);
      if (v > best) {
        best = v;
        best_i = i;
      }
    }
    picks.push_back(best_i);
    taken[best_i] = true;
  }
  return picks;
}

template <class K>
void check_against_naive(const K& kernel, std::size_t n, std::size_t d, std::size_t k, unsigned seed,
                         bool unit = false) {
  const auto z = random_latents<double>(n, d, seed, unit);
  const auto sel = fusemix::greedy_kdpp(latent_view<double>(z), k, kernel);
  const auto ref = naive_greedy(z, k, kernel);
  BOOST_TEST(sel.stop == fusemix::stop_reason::k_reached);
  BOOST_TEST(sel.picks == ref, boost::test_tools::per_element());
  // the gains add up to log det(L_S), and never grow (log det is submodular)
  BOOST_TEST(sel.log_det() == log_det_of(z, ref, kernel), boost::test_tools::tolerance(1e-9));
  for (std::size_t t = 1; t < sel.gains.size(); ++t) BOOST_TEST(sel.gains[t] <= sel.gains[t - 1] + 1e-12);
}

using fusemix::test::message_has;

}  // namespace

BOOST_AUTO_TEST_SUITE(kdpp)

// ---- agreement with the from-scratch greedy --------------------------------------------------

BOOST_AUTO_TEST_CASE(naive_agreement_linear) {
  for (unsigned seed : {1U, 2U, 3U}) check_against_naive(fusemix::linear_kernel{}, 40, 8, 7, seed);
}

BOOST_AUTO_TEST_CASE(naive_agreement_cosine) {
  for (unsigned seed : {4U, 5U, 6U}) check_against_naive(fusemix::cosine_kernel{}, 40, 8, 7, seed);
}

BOOST_AUTO_TEST_CASE(naive_agreement_polynomial) {
  for (unsigned seed : {7U, 8U, 9U}) check_against_naive(fusemix::polynomial_kernel{}, 50, 5, 15, seed, true);
  check_against_naive(fusemix::polynomial_kernel{.offset = 0.5, .degree = 3}, 50, 4, 15, 10);
}

BOOST_AUTO_TEST_CASE(naive_agreement_rbf) {
  for (unsigned seed : {11U, 12U, 13U}) check_against_naive(fusemix::rbf_kernel{.gamma = 0.3}, 50, 5, 15, seed);
}

BOOST_AUTO_TEST_CASE(naive_agreement_user_pairwise_kernel) {
  check_against_naive(laplacian_pairwise{}, 40, 5, 12, 14);
  // a lambda is a kernel too
  auto lambda = [](std::span<const double> a, std::span<const double> b) {
    double ab = 0;
    for (std::size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i];
    return (ab + 2.0) * (ab + 2.0) * (ab + 2.0);
  };
  static_assert(fusemix::Kernel<decltype(lambda), double> && !fusemix::RowKernel<decltype(lambda), double>);
  check_against_naive(lambda, 40, 4, 12, 15, true);
}

BOOST_AUTO_TEST_CASE(row_kernel_path_matches_pairwise_path) {
  const auto z = random_latents<double>(60, 5, 16);
  const auto a = fusemix::greedy_kdpp(latent_view<double>(z), 20, laplacian_pairwise{});
  const auto b = fusemix::greedy_kdpp(latent_view<double>(z), 20, laplacian_rows{});
  BOOST_TEST(a.picks == b.picks, boost::test_tools::per_element());
  BOOST_TEST(a.gains == b.gains, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(eigen_matrix_overload) {
  const auto z = random_latents<float>(30, 4, 17);
  const auto a = fusemix::greedy_kdpp(z, 5, fusemix::polynomial_kernel{});
  const auto b = fusemix::greedy_kdpp(latent_view<float>(z), 5, fusemix::polynomial_kernel{});
  BOOST_TEST(a.picks == b.picks, boost::test_tools::per_element());
}

// ---- rank behaviour --------------------------------------------------------------------------

using scalar_types = std::tuple<float, double>;

BOOST_AUTO_TEST_CASE_TEMPLATE(linear_kernel_stops_at_dimension, T, scalar_types) {
  for (std::size_t d : {3U, 5U, 9U}) {
    const auto z = random_latents<T>(100, d, 18 + unsigned(d));
    const auto sel = fusemix::greedy_kdpp(latent_view<T>(z), 50, fusemix::linear_kernel{});
    BOOST_TEST(sel.picks.size() == d);
    BOOST_TEST(sel.stop == fusemix::stop_reason::rank_exhausted);
  }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(polynomial_kernel_on_sphere_stops_at_its_rank, T, scalar_types) {
  // (a·b + 1)² spans the polynomials of degree <= 2 on the sphere: C(D+2, 2) − 1 of them.
  for (auto [d, rank] : {std::pair<std::size_t, std::size_t>{4, 14}, {8, 44}}) {
    for (unsigned seed : {20U, 21U}) {
      const auto z = random_latents<T>(300, d, seed + unsigned(d), true);
      const auto sel = fusemix::greedy_kdpp(latent_view<T>(z), 100, fusemix::polynomial_kernel{});
      BOOST_TEST(sel.picks.size() == rank);
      BOOST_TEST(sel.stop == fusemix::stop_reason::rank_exhausted);
    }
  }
}

BOOST_AUTO_TEST_CASE(k_reached_when_rank_suffices) {
  const auto z = random_latents<float>(100, 8, 22, true);
  const auto sel = fusemix::greedy_kdpp(latent_view<float>(z), 44, fusemix::polynomial_kernel{});
  BOOST_TEST(sel.picks.size() == 44U);
  BOOST_TEST(sel.stop == fusemix::stop_reason::k_reached);
  const auto all = fusemix::greedy_kdpp(latent_view<float>(z), 100, fusemix::rbf_kernel{.gamma = 1.0});
  BOOST_TEST(all.picks.size() == 100U);  // RBF is full rank: k = N is reachable
  BOOST_TEST(all.stop == fusemix::stop_reason::k_reached);
}

BOOST_AUTO_TEST_CASE(relative_threshold_scales_with_the_diagonal) {
  // Scaling the kernel by 1e6 (latents by 1e3, linear kernel) changes neither picks nor stop.
  const auto z = random_latents<float>(80, 6, 23);
  const row_matrix<float> big = z * 1e3F;
  const auto a = fusemix::greedy_kdpp(latent_view<float>(z), 20, fusemix::linear_kernel{});
  const auto b = fusemix::greedy_kdpp(latent_view<float>(big), 20, fusemix::linear_kernel{});
  BOOST_TEST(a.picks == b.picks, boost::test_tools::per_element());
  BOOST_TEST(b.stop == fusemix::stop_reason::rank_exhausted);
  // a threshold of 0 only stops at residuals <= 0: float noise then counts as rank
  const auto noisy = fusemix::greedy_kdpp(latent_view<float>(z), 20, fusemix::linear_kernel{},
                                          {.relative_threshold = 0});
  BOOST_TEST(noisy.picks.size() > 6U);
  BOOST_TEST(std::set<std::size_t>(noisy.picks.begin(), noisy.picks.end()).size() == noisy.picks.size());
  for (double g : noisy.gains) BOOST_TEST(!std::isnan(g));
}

// ---- ties and determinism --------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(duplicates_tie_to_the_lowest_index, T, scalar_types) {
  // rows m..2m−1 repeat rows 0..m−1: every pick is a first copy, and the result is the same as
  // on the distinct rows alone
  constexpr std::size_t m = 40;
  const auto u = random_latents<T>(m, 6, 24, true);
  row_matrix<T> z(2 * m, 6);
  z << u, u;
  for (const auto& kernel : {fusemix::polynomial_kernel{}, fusemix::polynomial_kernel{.offset = 0.3, .degree = 3}}) {
    const auto sel = fusemix::greedy_kdpp(latent_view<T>(z), 2 * m, kernel);
    const auto ref = fusemix::greedy_kdpp(latent_view<T>(u), m, kernel);
    BOOST_TEST(sel.picks == ref.picks, boost::test_tools::per_element());
    for (auto p : sel.picks) BOOST_TEST(p < m);
    const auto again = fusemix::greedy_kdpp(latent_view<T>(z), 2 * m, kernel);
    BOOST_TEST(again.picks == sel.picks, boost::test_tools::per_element());
    BOOST_TEST(again.gains == sel.gains, boost::test_tools::per_element());
  }
  // many items: the copies sit in other blocks and other lanes of the engine's passes
  constexpr std::size_t many = 600;
  const auto w = random_latents<T>(many, 6, 37, true);
  row_matrix<T> zz(2 * many, 6);
  zz << w, w;
  const auto big = fusemix::greedy_kdpp(latent_view<T>(zz), 100, fusemix::polynomial_kernel{});
  const auto big_ref = fusemix::greedy_kdpp(latent_view<T>(w), 100, fusemix::polynomial_kernel{});
  BOOST_TEST(big.picks.size() == 27U);  // C(8, 2) − 1
  BOOST_TEST(big.picks == big_ref.picks, boost::test_tools::per_element());
  BOOST_TEST(big.gains == big_ref.gains, boost::test_tools::per_element());
  // all rows equal: the first pick is item 0, then nothing is new
  row_matrix<T> same = row_matrix<T>::Ones(5, 3);
  const auto sel = fusemix::greedy_kdpp(latent_view<T>(same), 3, fusemix::rbf_kernel{});
  BOOST_TEST(sel.picks == std::vector<std::size_t>{0}, boost::test_tools::per_element());
  BOOST_TEST(sel.stop == fusemix::stop_reason::rank_exhausted);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(row_diagonal_equals_pairwise_diagonal, T, scalar_types) {
  // the row code and the pairwise code give bit-equal values (same dot, same map)
  const auto z = random_latents<T>(23, 13, 25);
  const latent_view<T> v(z);
  std::vector<T> out(v.rows());
  auto check = [&](const auto& kernel) {
    for (std::size_t j : {0U, 7U, 22U}) {
      kernel.row(v, j, std::span<T>(out));
      for (std::size_t i = 0; i < v.rows(); ++i) BOOST_TEST(out[i] == static_cast<T>(kernel(v.row(i), v.row(j))));
    }
  };
  check(fusemix::linear_kernel{});
  check(fusemix::cosine_kernel{});
  check(fusemix::polynomial_kernel{});
  check(fusemix::rbf_kernel{.gamma = 0.1});
  for (std::size_t i = 0; i < v.rows(); ++i) BOOST_TEST(fusemix::cosine_kernel{}(v.row(i), v.row(i)) == 1.0);
}

// ---- sliding window --------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(window_matches_naive_windowed_greedy) {
  const auto z = random_latents<double>(40, 5, 26, true);
  const fusemix::polynomial_kernel kernel;
  for (std::size_t w : {2U, 3U, 5U, 8U}) {
    const auto sel = fusemix::greedy_kdpp(latent_view<double>(z), 25, kernel, {.window = w});
    const auto ref = naive_greedy(z, 25, kernel, w);
    BOOST_TEST_CONTEXT("window " << w) {
      BOOST_TEST(sel.picks == ref, boost::test_tools::per_element());
      BOOST_TEST(sel.stop == fusemix::stop_reason::k_reached);
    }
  }
  // with a window the picks need not be jointly independent: more than the rank can be picked
  const auto lin = random_latents<double>(40, 3, 27);
  const auto wsel = fusemix::greedy_kdpp(latent_view<double>(lin), 10, fusemix::linear_kernel{}, {.window = 3});
  BOOST_TEST(wsel.picks.size() == 10U);
  BOOST_TEST(wsel.picks == naive_greedy(lin, 10, fusemix::linear_kernel{}, 3), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(window_matches_naive_in_float) {
  const auto zf = random_latents<float>(40, 5, 28, true);
  const row_matrix<double> zd = zf.cast<double>();
  const auto sel = fusemix::greedy_kdpp(latent_view<float>(zf), 25, fusemix::polynomial_kernel{}, {.window = 4});
  BOOST_TEST(sel.picks == naive_greedy(zd, 25, fusemix::polynomial_kernel{}, 4), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(window_edge_cases) {
  const auto z = random_latents<double>(30, 4, 29);
  const fusemix::rbf_kernel kernel{.gamma = 0.2};
  const auto plain = fusemix::greedy_kdpp(latent_view<double>(z), 10, kernel);
  for (std::size_t w : {10U, 11U, 1000U}) {  // a window of k or more is no window
    const auto sel = fusemix::greedy_kdpp(latent_view<double>(z), 10, kernel, {.window = w});
    BOOST_TEST(sel.picks == plain.picks, boost::test_tools::per_element());
    BOOST_TEST(sel.gains == plain.gains, boost::test_tools::per_element());
  }
  // window 1: nothing to be diverse against; items in order of L_ii (all 1 here: index order)
  const auto one = fusemix::greedy_kdpp(latent_view<double>(z), 5, kernel, {.window = 1});
  BOOST_TEST(one.picks == (std::vector<std::size_t>{0, 1, 2, 3, 4}), boost::test_tools::per_element());
}

// ---- lazy evaluation -------------------------------------------------------------------------

/// The lazy engine (at 1, 2 and 3 threads) against the eager one on the same data: the same
/// picks, the same gains bit for bit (this file is built without FMA contraction: see
/// tests/CMakeLists.txt), the same stop.
template <class T, class K>
void check_lazy_equals_eager(const row_matrix<T>& z, std::size_t k, const K& kernel, fusemix::kdpp_options o = {}) {
  o.evaluation = fusemix::kdpp_evaluation::eager;
  const auto eager = fusemix::greedy_kdpp(latent_view<T>(z), k, kernel, o);
  o.evaluation = fusemix::kdpp_evaluation::lazy;
  const int before = fusemix::cpu::threads();
  for (int threads : {1, 2, 3}) {
    fusemix::cpu::set_threads(threads);
    const auto lazy = fusemix::greedy_kdpp(latent_view<T>(z), k, kernel, o);
    BOOST_TEST_CONTEXT(threads << " threads") {
      BOOST_TEST(lazy.picks == eager.picks, boost::test_tools::per_element());
      BOOST_TEST(lazy.gains == eager.gains, boost::test_tools::per_element());
      BOOST_TEST(lazy.stop == eager.stop);
    }
  }
  fusemix::cpu::set_threads(before);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(lazy_equals_eager_bit_for_bit, T, scalar_types) {
  // k past two panels of 64 picks, so that catch-ups span panels, start inside one and stop
  // short of its end; unit rows make the residuals near-equal, so many items catch up each step
  const auto unit = random_latents<T>(1500, 24, 40, true);
  check_lazy_equals_eager(unit, 150, fusemix::polynomial_kernel{});
  check_lazy_equals_eager(unit, 150, fusemix::polynomial_kernel{.offset = 0.5, .degree = 3});
  const auto z = random_latents<T>(1200, 20, 41);
  check_lazy_equals_eager(z, 140, fusemix::cosine_kernel{});
  check_lazy_equals_eager(z, 140, fusemix::rbf_kernel{.gamma = 0.05});
  check_lazy_equals_eager(z, 40, fusemix::linear_kernel{});  // the rank runs out at 20
  check_lazy_equals_eager(z, 140, fusemix::rbf_kernel{.gamma = 0.05}, {.relative_threshold = 0.3});
  check_lazy_equals_eager(z, 1, fusemix::cosine_kernel{});
  check_lazy_equals_eager(z, 1200, fusemix::linear_kernel{});  // every item a candidate to the end
}

BOOST_AUTO_TEST_CASE(lazy_equals_eager_for_a_users_pairwise_kernel) {
  const auto z = random_latents<double>(300, 5, 42);
  check_lazy_equals_eager(z, 90, laplacian_pairwise{});
}

BOOST_AUTO_TEST_CASE(lazy_evaluation_evaluates_fewer_pairs) {
  // A kernel that counts its calls: the eager loop evaluates every candidate at every pick, the
  // lazy one only the items whose bound could win (and still picks the same).
  struct counting : laplacian_pairwise {
    std::size_t* calls;
    double operator()(std::span<const double> a, std::span<const double> b) const {
      ++*calls;
      return laplacian_pairwise::operator()(a, b);
    }
  };
  const auto z = random_latents<double>(400, 6, 43);
  std::size_t eager_calls = 0, lazy_calls = 0;
  const auto eager = fusemix::greedy_kdpp(latent_view<double>(z), 60, counting{{}, &eager_calls},
                                          {.evaluation = fusemix::kdpp_evaluation::eager});
  const auto lazy = fusemix::greedy_kdpp(latent_view<double>(z), 60, counting{{}, &lazy_calls});
  BOOST_TEST(lazy.picks == eager.picks, boost::test_tools::per_element());
  BOOST_TEST(eager_calls > 400U * 50U);
  BOOST_TEST(lazy_calls < eager_calls);
  BOOST_TEST_MESSAGE("kernel calls: eager " << eager_calls << ", lazy " << lazy_calls);
}

BOOST_AUTO_TEST_CASE(a_window_runs_eager_whatever_the_option) {
  const auto z = random_latents<double>(200, 5, 44, true);
  for (auto e : {fusemix::kdpp_evaluation::lazy, fusemix::kdpp_evaluation::eager}) {
    const auto sel = fusemix::greedy_kdpp(latent_view<double>(z), 30, fusemix::polynomial_kernel{},
                                          {.window = 6, .evaluation = e});
    BOOST_TEST(sel.picks == naive_greedy(z, 30, fusemix::polynomial_kernel{}, 6), boost::test_tools::per_element());
  }
}

// ---- precision -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(float_run_agrees_with_all_double_run) {
  // float latents and c vectors, double accumulation, against the same latents in double
  const auto zf = random_latents<float>(2000, 32, 30, true);
  const row_matrix<double> zd = zf.cast<double>();
  const fusemix::polynomial_kernel kernel;
  const auto f = fusemix::greedy_kdpp(latent_view<float>(zf), 200, kernel);
  const auto d = fusemix::greedy_kdpp(latent_view<double>(zd), 200, kernel);
  BOOST_TEST(f.picks == d.picks, boost::test_tools::per_element());
  BOOST_TEST(f.log_det() == d.log_det(), boost::test_tools::tolerance(1e-6));
  // gains are logs of residuals near 1: compare them absolutely (1e-5 = relative 1e-5 in d²)
  for (std::size_t t = 0; t < f.gains.size(); ++t) BOOST_TEST(std::abs(f.gains[t] - d.gains[t]) < 1e-5);
}

// ---- precomputed kernel ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(precomputed_kernel_matches_functor, T, scalar_types) {
  // not on the sphere: on it the diagonal entries all round to 4.0F in a float L and the first
  // pick is a tie, while the functor path keeps them in double
  const auto z = random_latents<T>(60, 6, 31);
  const fusemix::polynomial_kernel kernel;
  const latent_view<T> v(z);
  row_matrix<T> l(60, 60);
  for (std::size_t i = 0; i < 60; ++i)
    for (std::size_t j = 0; j < 60; ++j) l(Eigen::Index(i), Eigen::Index(j)) = static_cast<T>(kernel(v.row(i), v.row(j)));
  const fusemix::precomputed_kernel<T> pk(l);
  const auto a = fusemix::greedy_kdpp(pk, 20);
  const auto b = fusemix::greedy_kdpp(v, 20, kernel);
  BOOST_TEST(a.picks == b.picks, boost::test_tools::per_element());
  if constexpr (std::is_same_v<T, double>)  // same kernel values, same arithmetic: bit-equal
    BOOST_TEST(a.gains == b.gains, boost::test_tools::per_element());
  else
    BOOST_TEST(a.log_det() == b.log_det(), boost::test_tools::tolerance(1e-5));
  // the deduction guide takes the Eigen matrix directly
  const fusemix::precomputed_kernel deduced(l);
  BOOST_TEST(fusemix::greedy_kdpp(deduced, 20).picks == b.picks, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(precomputed_kernel_misuse) {
  const row_matrix<double> rect = row_matrix<double>::Ones(3, 4);
  BOOST_CHECK_EXCEPTION(fusemix::precomputed_kernel<double>{rect}, fusemix::shape_error,
                        message_has({"fusemix::precomputed_kernel: the kernel matrix must be square",
                                     "expected 3 columns, got 4 columns"}));
  const row_matrix<double> l = row_matrix<double>::Identity(4, 4);
  const row_matrix<double> other = row_matrix<double>::Identity(4, 4);
  const fusemix::precomputed_kernel<double> pk(l);
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(latent_view<double>(other), 2, pk)),
                        fusemix::shape_error, message_has({"rows of the kernel matrix itself"}));
}

// ---- log det and the uniform baseline --------------------------------------------------------

BOOST_AUTO_TEST_CASE(subset_log_det_scores_any_subset) {
  const auto z = random_latents<float>(200, 8, 32, true);
  const latent_view<float> v(z);
  const fusemix::polynomial_kernel kernel;
  const auto sel = fusemix::greedy_kdpp(v, 30, kernel);
  BOOST_TEST(fusemix::subset_log_det(v, sel.picks, kernel) == sel.log_det(), boost::test_tools::tolerance(1e-6));
  // the greedy subset beats uniform ones of the same size (the point of the diversity study)
  for (std::uint64_t seed : {1U, 2U, 3U}) {
    const auto u = fusemix::uniform_subset(200, 30, seed);
    BOOST_TEST(fusemix::subset_log_det(v, u, kernel) < sel.log_det());
  }
  const std::vector<std::size_t> twice{3, 3};
  BOOST_TEST(fusemix::subset_log_det(v, twice, kernel) == -std::numeric_limits<double>::infinity());
  BOOST_TEST(fusemix::subset_log_det(v, std::vector<std::size_t>{}, kernel) == 0.0);
  const std::vector<std::size_t> outside{1, 200};
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::subset_log_det(v, outside, kernel)), fusemix::shape_error,
                        message_has({"fusemix::subset_log_det", "expected < 200, got 200"}));
}

BOOST_AUTO_TEST_CASE(uniform_subset_is_seeded_and_without_repeats) {
  const auto a = fusemix::uniform_subset(1000, 100, 42);
  const auto b = fusemix::uniform_subset(1000, 100, 42);
  const auto c = fusemix::uniform_subset(1000, 100, 43);
  BOOST_TEST(a == b, boost::test_tools::per_element());
  BOOST_TEST(a != c);
  BOOST_TEST(std::set<std::size_t>(a.begin(), a.end()).size() == 100U);
  BOOST_TEST(*std::max_element(a.begin(), a.end()) < 1000U);
  // the stream is pinned (Philox and an exact bounded draw): the same indices on every platform
  BOOST_TEST(fusemix::uniform_subset(1000000, 3, 2024) == (std::vector<std::size_t>{603689, 268564, 984598}),
             boost::test_tools::per_element());
  // k == n is a permutation
  auto all = fusemix::uniform_subset(50, 50, 1);
  std::sort(all.begin(), all.end());
  for (std::size_t i = 0; i < 50; ++i) BOOST_TEST(all[i] == i);
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::uniform_subset(3, 5, 0)), fusemix::shape_error,
                        message_has({"fusemix::uniform_subset: k must not exceed the item count", "expected <= 3, got 5"}));
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::uniform_subset(3, 0, 0)), fusemix::shape_error,
                        message_has({"fusemix::uniform_subset: k must be positive", "expected >= 1, got 0"}));
}

// ---- bad input -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(bad_sizes) {
  const auto z = random_latents<float>(3, 2, 33);
  const latent_view<float> v(z);
  const fusemix::polynomial_kernel kernel;
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(v, 5, kernel)), fusemix::shape_error,
                        message_has({"fusemix::greedy_kdpp: k must not exceed the item count (expected <= 3, got 5)"}));
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(v, 0, kernel)), fusemix::shape_error,
                        message_has({"fusemix::greedy_kdpp: k must be positive (expected >= 1, got 0)"}));
  const row_matrix<float> empty(0, 4);
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(latent_view<float>(empty), 1, kernel)),
                        fusemix::shape_error,
                        message_has({"fusemix::greedy_kdpp: the latent matrix must have at least one row",
                                     "expected >= 1, got 0"}));
  const row_matrix<float> no_cols(4, 0);
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(latent_view<float>(no_cols), 1, kernel)),
                        fusemix::shape_error, message_has({"at least one column", "expected >= 1, got 0"}));
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(latent_view<float>{}, 1, kernel)),
                        fusemix::shape_error, message_has({"at least one row"}));
}

BOOST_AUTO_TEST_CASE(non_finite_latents) {
  auto z = random_latents<float>(5, 3, 34);
  z(3, 1) = std::numeric_limits<float>::quiet_NaN();
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(latent_view<float>(z), 2, fusemix::linear_kernel{})),
                        fusemix::numeric_error,
                        message_has({"fusemix::greedy_kdpp: latents must be finite", "expected finite values",
                                     "nan at row 3, column 1"}));
  z(3, 1) = 0;
  z(4, 2) = -std::numeric_limits<float>::infinity();
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(latent_view<float>(z), 2, fusemix::linear_kernel{})),
                        fusemix::numeric_error, message_has({"latents must be finite", "-inf at row 4, column 2"}));
}

BOOST_AUTO_TEST_CASE(bad_kernels) {
  const auto z = random_latents<double>(6, 3, 35);
  const latent_view<double> v(z);
  // negative diagonal: a kernel that is not PSD
  auto negative = [](std::span<const double> a, std::span<const double> b) {
    return a.data() == b.data() && a[0] > 0 ? -1.0 : 0.5;
  };
  std::size_t first_positive = 0;
  while (!(z(Eigen::Index(first_positive), 0) > 0)) ++first_positive;
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(v, 2, negative)), fusemix::numeric_error,
                        message_has({"fusemix::greedy_kdpp: the kernel's diagonal must be non-negative",
                                     "expected >= 0, got -1 at item " + std::to_string(first_positive)}));
  auto nan_diag = [](std::span<const double>, std::span<const double>) { return std::nan(""); };
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(v, 2, nan_diag)), fusemix::numeric_error,
                        message_has({"diagonal must be non-negative", "got nan at item 0"}));
  // finite diagonal, infinite off-diagonal
  auto inf_off = [](std::span<const double> a, std::span<const double> b) {
    return a.data() == b.data() ? 1.0 : std::numeric_limits<double>::infinity();
  };
  BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(v, 2, inf_off)), fusemix::numeric_error,
                        message_has({"the kernel must return finite values", "got inf at items (0, 1)"}));
  // a cosine kernel on a zero row: similarity 0, never picked, no NaN
  row_matrix<double> with_zero = z;
  with_zero.row(2).setZero();
  const auto sel = fusemix::greedy_kdpp(latent_view<double>(with_zero), 6, fusemix::cosine_kernel{});
  BOOST_TEST((std::find(sel.picks.begin(), sel.picks.end(), 2U) == sel.picks.end()));
  BOOST_TEST(sel.stop == fusemix::stop_reason::rank_exhausted);
}

BOOST_AUTO_TEST_CASE(bad_options) {
  const auto z = random_latents<float>(6, 3, 36);
  for (double t : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()})
    BOOST_CHECK_EXCEPTION(
        static_cast<void>(fusemix::greedy_kdpp(latent_view<float>(z), 2, fusemix::linear_kernel{}, {.relative_threshold = t})),
        fusemix::argument_error, message_has({"fusemix::greedy_kdpp: relative_threshold must be finite and non-negative"}));
}

BOOST_AUTO_TEST_CASE(stop_reason_names) {
  BOOST_TEST(fusemix::to_string(fusemix::stop_reason::k_reached) == "k_reached");
  BOOST_TEST(fusemix::to_string(fusemix::stop_reason::rank_exhausted) == "rank_exhausted");
}

BOOST_AUTO_TEST_CASE(k_out_of_range_on_every_entry_point) {
  // k = 0 and k = N + 1 through the latent view, the Eigen-matrix overload, a precomputed kernel
  // and the uniform baseline; k = N is the largest accepted.
  const auto z = random_latents<double>(4, 8, 37);
  const fusemix::polynomial_kernel kernel;
  const row_matrix<double> l = row_matrix<double>::Identity(4, 4);
  const fusemix::precomputed_kernel<double> pk(l);
  for (std::size_t k : {std::size_t{0}, std::size_t{5}}) {
    const std::string problem =
        k == 0 ? "k must be positive (expected >= 1, got 0)" : "k must not exceed the item count (expected <= 4, got 5)";
    BOOST_TEST_CONTEXT("k = " << k) {
      BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(latent_view<double>(z), k, kernel)),
                            fusemix::shape_error, message_has({"fusemix::greedy_kdpp: " + problem}));
      BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(z, k, kernel)), fusemix::shape_error,
                            message_has({"fusemix::greedy_kdpp: " + problem}));
      BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::greedy_kdpp(pk, k)), fusemix::shape_error,
                            message_has({"fusemix::greedy_kdpp: " + problem}));
      BOOST_CHECK_EXCEPTION(static_cast<void>(fusemix::uniform_subset(4, k, 1)), fusemix::shape_error,
                            message_has({"fusemix::uniform_subset: " + problem}));
    }
  }
  BOOST_TEST(fusemix::greedy_kdpp(pk, 4).picks.size() == 4U);
  BOOST_TEST(fusemix::uniform_subset(4, 4, 1).size() == 4U);
}

BOOST_AUTO_TEST_SUITE_END()
