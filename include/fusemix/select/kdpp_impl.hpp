// SPDX-License-Identifier: Apache-2.0
/// @file
/// The definitions behind <fusemix/select/kdpp.hpp>: the CPU primitives of the greedy k-DPP, the
/// algorithm written once over them, the built-in kernels and the entry points.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fusemix/backend/common/dot.hpp>
#include <fusemix/backend/cpu/kdpp.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/config.hpp>
#include <fusemix/select/kdpp.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/core/random.hpp>

namespace fusemix {

namespace detail {

template <class Acc, Scalar T>
[[nodiscard]] Acc dot(std::span<const T> a, std::span<const T> b) noexcept {
  FUSEMIX_ASSERT(a.size() == b.size());
  return dot<Acc>(a.data(), b.data(), a.size());
}

/// `K(a, b)` of a dot-product kernel, from the same `dot` the rows use.
template <class K, Scalar T>
[[nodiscard]] double dot_kernel_pair(const K& k, std::span<const T> a, std::span<const T> b) {
  return k.from_dots(dot<double>(a, b), dot<double>(a, a), dot<double>(b, b));
}

/// One row K(Z, z_j) of a dot-product kernel: a GEMV over the latents, then the elementwise map.
template <class K, Scalar T>
void dot_kernel_row(const K& k, const latent_view<T>& z, std::size_t j, std::span<T> out) {
  FUSEMIX_ASSERT(out.size() == z.rows());
  // linear and polynomial kernels ignore the norms: skip their second dot product
  constexpr bool norms = !std::is_same_v<K, linear_kernel> && !std::is_same_v<K, polynomial_kernel>;
  const auto zj = z.row(j);
  const double jj = norms ? dot<double>(zj, zj) : 0.0;
  for (std::size_t i = 0; i < z.rows(); ++i) {
    const auto zi = z.row(i);
    out[i] = static_cast<T>(k.from_dots(dot<double>(zi, zj), norms ? dot<double>(zi, zi) : 0.0, jj));
  }
}

/// x^p by repeated squaring: no `pow` special cases, the same result with every libm.
[[nodiscard]] FUSEMIX_HOST_DEVICE inline double ipow(double x, unsigned p) noexcept {
  double r = 1.0;
  for (; p != 0; p >>= 1, x *= x)
    if (p & 1U) r *= x;
  return r;
}

/// log det of the symmetric n × n matrix whose lower triangle is in `a` (row-major), by an
/// in-place Cholesky in double; −∞ when a pivot is not positive (singular or not PD).
[[nodiscard]] inline double cholesky_log_det(std::vector<double>& a, std::size_t n) {
  double log_det = 0.0;
  for (std::size_t j = 0; j < n; ++j) {
    double* rj = a.data() + j * n;
    const double pivot = rj[j] - dot<double>(rj, rj, j);
    if (!(pivot > 0)) return -std::numeric_limits<double>::infinity();
    const double ljj = std::sqrt(pivot);
    rj[j] = ljj;
    log_det += 2.0 * std::log(ljj);
    for (std::size_t i = j + 1; i < n; ++i) {
      double* ri = a.data() + i * n;
      ri[j] = (ri[j] - dot<double>(ri, rj, j)) / ljj;
    }
  }
  return log_det;
}

/// The greedy k-DPP, written once over a `KdppEngine` (`backend/cpu/kdpp.hpp`, `backend/cuda/kdpp.hpp`).
///
/// With a window w < k the engine keeps coordinates for the last w − 1 picks only. Dropping the
/// oldest pick removes the first row of the window's Cholesky factor V; the remaining rows are
/// lower-Hessenberg, and Givens rotations on adjacent columns make them triangular again. The
/// same rotations applied to every c_i keep V c_i = L_{W,i}, and the coordinate they push out
/// returns its square to d_i² (the residual against a smaller window can only grow).
template <class Engine>
selection run_greedy_kdpp(Engine& engine, std::size_t k, std::size_t capacity, const kdpp_options& options) {
  selection out;
  out.picks.reserve(k);
  out.gains.reserve(k);
  const double max_diag = static_cast<double>(engine.init_diagonal());
  const double threshold = options.relative_threshold * max_diag;
  const bool windowed = capacity + 1 < k;  // only then can the window fill before the end
  std::vector<double> v(windowed ? capacity * capacity : 0);  // window factor, row-major, stride `capacity`
  std::vector<std::pair<double, double>> rot;
  std::size_t m = 0;  // picks that own a coordinate (all of them, or the last w − 1)
  for (;;) {
    const auto [j, best] = engine.argmax();
    if (j == no_item || !(static_cast<double>(best) > threshold)) {
      out.stop = stop_reason::rank_exhausted;
      break;
    }
    out.picks.push_back(j);
    out.gains.push_back(std::log(static_cast<double>(best)));
    if (out.picks.size() == k) {
      out.stop = stop_reason::k_reached;
      break;
    }
    if (capacity == 0) {  // window of 1: nothing to be diverse against
      engine.exclude(j);
      continue;
    }
    if (m == capacity) {  // window full: drop the oldest pick (first row of V)
      FUSEMIX_ASSERT(windowed);
      rot.clear();
      double* a = v.data() + capacity;  // a(q, col) = v(q + 1, col), q < m − 1
      auto at = [&](std::size_t q, std::size_t col) -> double& { return a[q * capacity + col]; };
      for (std::size_t c = 0; c + 1 < m; ++c) {
        const double x = at(c, c), y = at(c, c + 1), r = std::hypot(x, y);
        const double cs = r > 0 ? x / r : 1.0, sn = r > 0 ? y / r : 0.0;
        for (std::size_t q = c; q + 1 < m; ++q) {
          const double p = at(q, c), s = at(q, c + 1);
          at(q, c) = cs * p + sn * s;
          at(q, c + 1) = -sn * p + cs * s;
        }
        at(c, c + 1) = 0.0;
        rot.emplace_back(cs, sn);
      }
      for (std::size_t q = 0; q + 1 < m; ++q)  // shift up; the last column is now zero
        for (std::size_t col = 0; col + 1 < m; ++col) v[q * capacity + col] = at(q, col);
      engine.rotate(rot, m);
      --m;
    }
    const double dj2 = static_cast<double>(engine.residual(j));  // grown if a pick was dropped
    const double dj = std::sqrt(dj2);
    if (windowed) {  // new row of V: [c_j, d_j]
      const std::span<double> vm = std::span<double>(v).subspan(m * capacity, capacity);
      engine.coordinates(j, m, vm);
      std::fill(vm.begin() + static_cast<std::ptrdiff_t>(m), vm.end(), 0.0);
      vm[m] = dj;
    }
    engine.exclude(j);
    engine.kernel_row(j);
    engine.project(j, m, static_cast<typename Engine::accumulator>(dj));
    ++m;
  }
  return out;
}

/// Checks the arguments of `greedy_kdpp` and runs it with accumulation type `Acc`
/// (`double` in the public entry point; `float` only to measure what double accumulation buys).
/// The checks of the selector's arguments that need no data, in the order every entry point
/// (CPU and CUDA) reports them; `where` names the entry point.
inline void check_kdpp_arguments(std::string_view where, std::size_t rows, std::size_t cols, std::size_t k,
                                 const kdpp_options& options) {
  if (rows == 0) throw_shape_error(where, "the latent matrix must have at least one row", ">= 1", rows);
  if (cols == 0) throw_shape_error(where, "the latent matrix must have at least one column", ">= 1", cols);
  if (k == 0) throw_shape_error(where, "k must be positive", ">= 1", k);
  if (k > rows) throw_shape_error(where, "k must not exceed the item count", concat("<= ", rows), k);
  if (!(options.relative_threshold >= 0) || !std::isfinite(options.relative_threshold))
    throw_expected<argument_error>(where, "relative_threshold must be finite and non-negative", ">= 0",
                                   options.relative_threshold);
}

/// Checks the arguments of `greedy_kdpp` and runs it with accumulation type `Acc`
/// (`double` in the public entry point; `float` only to measure what double accumulation buys).
template <class Acc, Scalar T, Kernel<T> K>
[[nodiscard]] selection greedy_kdpp_with(const latent_view<T>& z, std::size_t k, const K& kernel,
                                         const kdpp_options& options) {
  constexpr std::string_view where = "fusemix::greedy_kdpp";
  check_kdpp_arguments(where, z.rows(), z.cols(), k, options);
  detail::require_finite(where, "latents must be finite", z);
  // Coordinates are kept for every pick but the last, or for the last w − 1 picks.
  const std::size_t capacity = options.window == 0 ? k - 1 : std::min(options.window, k) - 1;
  const bool windowed = capacity + 1 < k;
  if constexpr (DotProductKernel<K> || !RowKernel<K, T>) {
    if (options.evaluation == kdpp_evaluation::lazy && !windowed) {
#if defined(_OPENMP)
      const int threads = omp_get_max_threads();
#else
      const int threads = 1;
#endif
      kdpp_lazy_engine<T, K, Acc> engine(z, kernel, capacity, threads);
      return run_greedy_kdpp(engine, k, capacity, options);
    }
  }
  auto engine = cpu::kdpp_ops<T>{}.template make_kdpp_engine<Acc>(z, kernel, capacity);  // the CPU backend's
  return run_greedy_kdpp(engine, k, capacity, options);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Kernel definitions
// ---------------------------------------------------------------------------------------------

template <Scalar T>
double linear_kernel::operator()(std::span<const T> a, std::span<const T> b) const {
  return detail::dot<double>(a, b);
}
template <Scalar T>
void linear_kernel::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  detail::dot_kernel_row(*this, z, j, out);
}

template <Scalar T>
double cosine_kernel::operator()(std::span<const T> a, std::span<const T> b) const {
  return detail::dot_kernel_pair(*this, a, b);
}
template <Scalar T>
void cosine_kernel::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  detail::dot_kernel_row(*this, z, j, out);
}

FUSEMIX_HOST_DEVICE inline double polynomial_kernel::from_dots(double ab, double /*aa*/, double /*bb*/) const noexcept {
  return detail::ipow(ab + offset, degree);
}
template <Scalar T>
double polynomial_kernel::operator()(std::span<const T> a, std::span<const T> b) const {
  return from_dots(detail::dot<double>(a, b), 0.0, 0.0);
}
template <Scalar T>
void polynomial_kernel::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  detail::dot_kernel_row(*this, z, j, out);
}

template <Scalar T>
double rbf_kernel::operator()(std::span<const T> a, std::span<const T> b) const {
  return detail::dot_kernel_pair(*this, a, b);
}
template <Scalar T>
void rbf_kernel::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  detail::dot_kernel_row(*this, z, j, out);
}

template <Scalar T>
precomputed_kernel<T>::precomputed_kernel(const latent_view<T>& l) : l_(l) {
  if (l.rows() != l.cols())
    throw_shape_error("fusemix::precomputed_kernel", "the kernel matrix must be square",
                              concat(l.rows(), " columns"), concat(l.cols(), " columns"));
}

template <Scalar T>
double precomputed_kernel<T>::operator()(std::span<const T> a, std::span<const T> b) const {
  const auto n = l_.rows();
  const T* base = l_.data();
  // Item j is row j of L, so its index is where its row starts.
  const bool inside = b.size() == n && n != 0 && std::less_equal<>{}(base, b.data()) &&
                      std::less<>{}(b.data(), base + n * n);
  const auto offset = inside ? static_cast<std::size_t>(b.data() - base) : std::size_t{1};
  if (!inside || offset % n != 0 || a.size() != n)
    throw shape_error(
        "fusemix::precomputed_kernel: the items must be rows of the kernel matrix itself "
        "(pass precomputed_kernel::matrix() as the latents)");
  return static_cast<double>(a[offset / n]);
}

template <Scalar T>
void precomputed_kernel<T>::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  if (z.data() != l_.data() || z.rows() != l_.rows() || z.cols() != l_.cols())
    throw shape_error(
        "fusemix::precomputed_kernel: the items must be rows of the kernel matrix itself "
        "(pass precomputed_kernel::matrix() as the latents)");
  const auto r = l_.row(j);
  std::copy(r.begin(), r.end(), out.begin());
}

// ---------------------------------------------------------------------------------------------
// Entry point definitions
// ---------------------------------------------------------------------------------------------

template <Scalar T, Kernel<T> K>
selection greedy_kdpp(const latent_view<T>& z, std::size_t k, const K& kernel, const kdpp_options& options) {
  return detail::greedy_kdpp_with<double>(z, k, kernel, options);
}

template <Scalar T, Kernel<T> K>
double subset_log_det(const latent_view<T>& z, std::span<const std::size_t> picks, const K& kernel) {
  const std::size_t m = picks.size();
  for (const auto p : picks)
    if (p >= z.rows())
      throw_shape_error("fusemix::subset_log_det", "a pick must be a row of the latents",
                                concat("< ", z.rows()), p);
  std::vector<double> l(m * m);  // lower triangle of L_S, row-major
  for (std::size_t a = 0; a < m; ++a)
    for (std::size_t b = 0; b <= a; ++b)
      l[a * m + b] = static_cast<double>(kernel(z.row(picks[a]), z.row(picks[b])));
  return detail::cholesky_log_det(l, m);
}

inline std::vector<std::size_t> uniform_subset(std::size_t n, std::size_t k, std::uint64_t seed) {
  constexpr std::string_view where = "fusemix::uniform_subset";
  if (k == 0) throw_shape_error(where, "k must be positive", ">= 1", k);
  if (k > n) throw_shape_error(where, "k must not exceed the item count", concat("<= ", n), k);
  philox_engine rng(seed);
  std::vector<std::size_t> items(n);
  std::iota(items.begin(), items.end(), std::size_t{0});
  for (std::size_t i = 0; i < k; ++i)  // partial Fisher–Yates: items[0, i) are the draws so far
    std::swap(items[i], items[i + static_cast<std::size_t>(rng.below(n - i))]);
  items.resize(k);
  return items;
}

}  // namespace fusemix
