// SPDX-License-Identifier: Apache-2.0
// Exact top-k search: a brute-force sort for several block sizes and k; ties to the lowest index;
// the same bits per thread count; agreement with evaluate_retrieval's recalls; row normalisation; input errors.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#if defined(_OPENMP)
#  include <omp.h>
#endif

#include <fusemix/backend/cpu.hpp>
#include <fusemix/core/random.hpp>
#include <fusemix/eval/retrieval.hpp>
#include <fusemix/eval/search.hpp>

#include "messages.hpp"

namespace fm = fusemix;
using fmatrix = fm::matrix<float>;

namespace {

fmatrix normal(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  fm::philox_engine rng(seed);
  fmatrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(fm::sample_normal(rng));
  return m;
}

// Each query's gallery rows sorted by the definition: higher cosine first, then lower index;
// cosines of rows normalised in double.
std::vector<std::vector<std::int64_t>> brute_force(const fmatrix& q, const fmatrix& g) {
  const Eigen::MatrixXd a = q.cast<double>().rowwise().normalized(), b = g.cast<double>().rowwise().normalized();
  const Eigen::MatrixXd s = a * b.transpose();
  std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(q.rows()));
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    auto& o = out[static_cast<std::size_t>(i)];
    o.resize(static_cast<std::size_t>(s.cols()));
    std::iota(o.begin(), o.end(), 0);
    std::stable_sort(o.begin(), o.end(), [&](auto x, auto y) { return s(i, x) > s(i, y); });
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(search)

BOOST_AUTO_TEST_CASE(normalize_rows_gives_unit_rows_and_keeps_zero_rows) {
  fmatrix z = normal(5, 7, 1);
  z.row(2).setZero();
  const fmatrix u = fm::normalize_rows<float>(z);
  for (Eigen::Index i = 0; i < 5; ++i)
    if (i == 2)
      BOOST_TEST(u.row(i).squaredNorm() == 0.0f);
    else
      BOOST_TEST(std::abs(u.row(i).norm() - 1.0f) < 1e-6f);
  BOOST_TEST((u.row(0) * z.row(0).norm() - z.row(0)).norm() < 1e-5f);
}

BOOST_AUTO_TEST_CASE(equals_a_brute_force_sort_for_every_block_size_and_k) {
  // 700 gallery rows of width 16: the cosines of a query are 1e-3 apart on average, far above
  // float rounding, so the order is that of the exact cosines.
  const fmatrix q = normal(37, 16, 2), g = normal(700, 16, 3);
  const auto want = brute_force(q, g);
  for (const std::size_t k : {1, 5, 64, 700})
    for (const std::size_t qb : {1, 7, 1024})
      for (const std::size_t gb : {1, 33, 256, 100000}) {
        BOOST_TEST_CONTEXT("k " << k << ", query block " << qb << ", gallery block " << gb) {
          const auto r = fm::top_k<float>(q, g, k, {.query_block = qb, .gallery_block = gb});
          BOOST_TEST_REQUIRE(r.indices.rows() == 37);
          BOOST_TEST_REQUIRE(r.indices.cols() == static_cast<Eigen::Index>(k));
          std::size_t wrong = 0;
          double worst = 0;
          for (Eigen::Index i = 0; i < q.rows(); ++i)
            for (Eigen::Index j = 0; j < static_cast<Eigen::Index>(k); ++j) {
              const auto idx = r.indices(i, j);
              wrong += idx != want[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
              const double exact = q.row(i).cast<double>().normalized().dot(g.row(idx).cast<double>().normalized());
              worst = std::max(worst, std::abs(exact - r.scores(i, j)));
            }
          BOOST_TEST(wrong == 0u);
          BOOST_TEST(worst < 1e-6);
        }
      }
}

BOOST_AUTO_TEST_CASE(blocks_left_at_zero_are_the_backends) {
  const fmatrix q = normal(4200, 8, 4), g = normal(2100, 8, 5);
  using be = fm::cpu::backend<float>;
  const auto chosen = fm::top_k<float>(q, g, 3);
  const auto named = fm::top_k<float>(q, g, 3, {.query_block = be::search_query_block, .gallery_block = be::search_gallery_block});
  BOOST_TEST((chosen.indices == named.indices && chosen.scores == named.scores));
  BOOST_TEST(be::search_query_block < 4200u);  // both block loops ran more than once
  BOOST_TEST(be::search_gallery_block < 2100u);
}

BOOST_AUTO_TEST_CASE(a_gallery_by_blocks_is_the_whole_gallery) {
  // Blocks asked for once each, in order, of the backend's size (the last shorter); the result is
  // top_k's on the whole gallery, bit for bit.
  const fmatrix q = normal(300, 8, 12), g = normal(2500, 8, 13);
  using be = fm::cpu::backend<float>;
  std::vector<std::pair<std::size_t, std::size_t>> asked;
  fmatrix copy;
  const auto blocks = [&](std::size_t first, std::size_t rows) {
    asked.emplace_back(first, rows);
    copy = g.middleRows(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(rows));  // a buffer reused per block
    return fm::latent_view<float>(copy);
  };
  const auto got = fm::top_k_by_blocks(be{}, fm::latent_view<float>(q), 2500, blocks, 7);
  const auto want = fm::top_k<float>(q, g, 7);
  BOOST_TEST((got.indices == want.indices && got.scores == want.scores));
  const std::size_t b = be::search_gallery_block;
  BOOST_TEST_REQUIRE(asked.size() == (2500 + b - 1) / b);
  for (std::size_t i = 0; i < asked.size(); ++i)
    BOOST_TEST((asked[i] == std::pair<std::size_t, std::size_t>{i * b, std::min(b, 2500 - i * b)}));
  // A block of the wrong shape is refused, naming where it starts.
  const auto short_blocks = [&](std::size_t first, std::size_t rows) {
    copy = g.middleRows(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(rows) - (first > 0 ? 1 : 0));
    return fm::latent_view<float>(copy);
  };
  BOOST_CHECK_EXCEPTION(static_cast<void>(fm::top_k_by_blocks(be{}, fm::latent_view<float>(q), 2500, short_blocks, 7)),
                        fm::shape_error,
                        fm::test::message_has({"fusemix::top_k: ", "gallery block at row 1024", "expected 1024 x 8", "got 1023 x 8"}));
}

BOOST_AUTO_TEST_CASE(ties_go_to_the_lowest_index) {
  // Unit rows with dyadic entries (one-hot ±e_i and the ±1/2 patterns on four coordinates), each
  // three times: every cosine is exact whatever the GEMM's summation order, so equal cosines are
  // ties, between copies and between distinct rows alike, and the order must be by index.
  std::vector<Eigen::Matrix<float, 1, 8>> unit;
  for (int i = 0; i < 8; ++i)
    for (const float sign : {1.0f, -1.0f}) {
      Eigen::Matrix<float, 1, 8> e = Eigen::Matrix<float, 1, 8>::Zero();
      e(i) = sign;
      unit.push_back(e);
    }
  for (int pattern = 0; pattern < 16; ++pattern)
    for (const int offset : {0, 4}) {
      Eigen::Matrix<float, 1, 8> h = Eigen::Matrix<float, 1, 8>::Zero();
      for (int j = 0; j < 4; ++j) h(offset + j) = (pattern >> j) & 1 ? 0.5f : -0.5f;
      unit.push_back(h);
    }
  const auto n = static_cast<Eigen::Index>(unit.size());  // 48
  fmatrix g(3 * n, 8), q(n, 8);
  for (Eigen::Index r = 0; r < n; ++r) {
    g.row(r) = g.row(r + n) = g.row(r + 2 * n) = unit[static_cast<std::size_t>(r)];
    q.row(r) = unit[static_cast<std::size_t>((r * 7) % n)];
  }
  const auto want = brute_force(q, g);
  for (const std::size_t gb : {5, 48, 1000}) {
    const auto r = fm::top_k<float>(q, g, 20, {.query_block = 16, .gallery_block = gb});
    std::size_t wrong = 0;
    for (Eigen::Index i = 0; i < q.rows(); ++i)
      for (Eigen::Index j = 0; j < 20; ++j) wrong += r.indices(i, j) != want[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
    BOOST_TEST(wrong == 0u, "gallery block " << gb);
    BOOST_TEST(r.scores(0, 0) == 1.0f);
    BOOST_TEST(r.indices(0, 1) == r.indices(0, 0) + n);  // its copy, next
  }
}

BOOST_AUTO_TEST_CASE(the_same_bits_per_thread_count) {
  const fmatrix q = normal(40, 16, 12), g = normal(900, 16, 13);
  const auto once = fm::top_k<float>(q, g, 10, {.query_block = 16, .gallery_block = 300});
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  for (const int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    fm::cpu::set_threads(threads);  // the GEMM's: Eigen's and OpenBLAS's
    const auto a = fm::top_k<float>(q, g, 10, {.query_block = 16, .gallery_block = 300});
    const auto b = fm::top_k<float>(q, g, 10, {.query_block = 16, .gallery_block = 300});
    BOOST_TEST((a.indices == b.indices && a.scores == b.scores), threads << " threads: the same bits twice");
    // Across counts the products may round differently; the picks of separated cosines do not move.
    BOOST_TEST((a.indices == once.indices), threads << " threads");
    BOOST_TEST((a.scores - once.scores).cwiseAbs().maxCoeff() < 1e-6f, threads << " threads");
  }
  omp_set_num_threads(saved);
  fm::cpu::set_threads(saved);
#else
  const auto again = fm::top_k<float>(q, g, 10, {.query_block = 16, .gallery_block = 300});
  BOOST_TEST((again.indices == once.indices && again.scores == once.scores));
#endif
}

BOOST_AUTO_TEST_CASE(agrees_with_evaluate_retrieval) {
  const fmatrix x = normal(300, 20, 6);
  fmatrix y = x + 1.5f * normal(300, 20, 7);  // paired, with noise: recalls neither 0 nor 100
  const auto rr = fm::evaluate_retrieval<float>(x, y);
  const auto recall = [](const fm::search_result<float>& s) {
    fm::recall r;
    for (Eigen::Index i = 0; i < s.indices.rows(); ++i)
      for (Eigen::Index j = 0; j < 10; ++j)
        if (s.indices(i, j) == i) {
          r.r1 += j < 1, r.r5 += j < 5, r.r10 += 1;
          break;
        }
    const double n = static_cast<double>(s.indices.rows());
    return fm::recall{100 * r.r1 / n, 100 * r.r5 / n, 100 * r.r10 / n};
  };
  const auto i2t = recall(fm::top_k<float>(x, y, 10)), t2i = recall(fm::top_k<float>(y, x, 10));
  BOOST_TEST(rr.image_to_text.r1 > 5.0);
  BOOST_TEST(rr.image_to_text.r10 < 95.0);
  BOOST_TEST(i2t.r1 == rr.image_to_text.r1);
  BOOST_TEST(i2t.r5 == rr.image_to_text.r5);
  BOOST_TEST(i2t.r10 == rr.image_to_text.r10);
  BOOST_TEST(t2i.r1 == rr.text_to_image.r1);
  BOOST_TEST(t2i.r5 == rr.text_to_image.r5);
  BOOST_TEST(t2i.r10 == rr.text_to_image.r10);
}

BOOST_AUTO_TEST_CASE(bad_input_is_refused_by_name) {
  using fm::test::message_has;
  const fmatrix q = normal(4, 6, 8), g = normal(10, 6, 9), narrow = normal(10, 5, 10);
  BOOST_CHECK_EXCEPTION(static_cast<void>(fm::top_k<float>(q, g, 0)), fm::shape_error,
                        message_has({"fusemix::top_k: ", "k must be positive"}));
  BOOST_CHECK_EXCEPTION(static_cast<void>(fm::top_k<float>(q, g, 11)), fm::shape_error,
                        message_has({"fusemix::top_k: ", "must not exceed the gallery's rows", "<= 10", "11"}));
  BOOST_CHECK_EXCEPTION(static_cast<void>(fm::top_k<float>(q, narrow, 3)), fm::shape_error,
                        message_has({"fusemix::top_k: ", "same width", "expected 6, got 5"}));
  fmatrix bad_q = q;
  bad_q(2, 1) = std::numeric_limits<float>::quiet_NaN();
  BOOST_CHECK_EXCEPTION(static_cast<void>(fm::top_k<float>(bad_q, g, 3)), fm::numeric_error,
                        message_has({"fusemix::top_k: ", "queries must be finite", "row 2, column 1"}));
  fmatrix bad_g = g;
  bad_g(7, 4) = std::numeric_limits<float>::infinity();  // in the second gallery block: a global row
  BOOST_CHECK_EXCEPTION(static_cast<void>(fm::top_k<float>(q, bad_g, 3, {.gallery_block = 4})), fm::numeric_error,
                        message_has({"fusemix::top_k: ", "the gallery must be finite", "inf at row 7, column 4"}));
}

BOOST_AUTO_TEST_SUITE_END()
