// SPDX-License-Identifier: Apache-2.0
/// @file
/// Exact top-k search by cosine similarity, in blocks so that memory stays bounded for galleries
/// of millions of rows, and row normalisation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include <fusemix/backend/cpu/backend.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>

namespace fusemix {

/// `z` with every row scaled to unit L2 norm; an all-zero row stays zero (its cosine with
/// anything is then 0).
///
/// **Example**
///
///     fusemix::matrix<float> u = fusemix::normalize_rows(fusemix::latent_view<float>(s));
template <Scalar T>
[[nodiscard]] matrix<T> normalize_rows(const latent_view<T>& z);

/// How `top_k` blocks its work.
struct search_options {
  std::size_t query_block = 1024;     ///< queries per block product
  std::size_t gallery_block = 1024;   ///< gallery rows per block product (normalised a block at a time)
};

/// The best `k` gallery rows of each query: `indices(q, j)` is the gallery row with the j-th
/// highest cosine similarity to query `q`, `scores(q, j)` that similarity.
template <Scalar T>
struct search_result {
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> indices;
  matrix<T> scores;
};

/// Exact top-`k` search of every query row in `gallery` by cosine similarity.
///
/// Rows are L2-normalised (the queries once, the gallery a block at a time, so the gallery is
/// never copied whole); similarities are block products `query_block × gallery_block`, each
/// query keeps its best `k` across blocks. Equal scores go to the lower gallery index (scores
/// are the GEMM's float products: two copies of one row at different places in a block may
/// differ in the last bit). Memory beyond the result: one block product and one normalised
/// gallery block.
///
/// The products are the CPU backend's GEMM (OpenBLAS where the program links it, else Eigen) on
/// its threads (`cpu::set_threads`); the selection runs on OpenMP threads where the program is
/// built with OpenMP. Every query is selected on its own, so the selection adds nothing that
/// depends on the thread count or the blocks: results are the same bits for the same thread
/// count and block sizes, and differ otherwise only where the GEMM rounds a product differently
/// (which can reorder cosines equal to within rounding).
///
/// @throws shape_error if a side is empty, the widths differ, `k` is 0 or larger than the gallery.
/// @throws argument_error if a block size is 0.
/// @throws numeric_error if a query or gallery row holds NaN or Inf (naming which and where).
///
/// **Example**
///
///     auto r = fusemix::top_k(fusemix::latent_view<float>(sx), fusemix::latent_view<float>(sy), 5);
///     std::printf("best caption of image 0: %lld (cosine %.3f)\n", (long long)r.indices(0, 0), r.scores(0, 0));
template <Scalar T>
[[nodiscard]] search_result<T> top_k(const latent_view<T>& queries, const latent_view<T>& gallery, std::size_t k,
                                     const search_options& options = {});

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <Scalar T>
matrix<T> normalize_rows(const latent_view<T>& z) {
  matrix<T> out = Eigen::Map<const matrix<T>>(z.data(), static_cast<Eigen::Index>(z.rows()),
                                              static_cast<Eigen::Index>(z.cols()));
  for (Eigen::Index i = 0; i < out.rows(); ++i) {
    const T n = out.row(i).norm();
    if (n > T(0)) out.row(i) /= n;
  }
  return out;
}

namespace detail {

/// Throws numeric_error naming the first non-finite value of `z` (rows counted from `first_row`).
template <class M>
void require_finite(const char* where, const char* what, const M& z, Eigen::Index first_row) {
  if (z.allFinite()) return;
  for (Eigen::Index i = 0; i < z.rows(); ++i)
    for (Eigen::Index j = 0; j < z.cols(); ++j)
      if (!std::isfinite(z(i, j)))
        throw_expected<numeric_error>(where, concat(what, " must be finite"), "finite values",
                                      concat(z(i, j), " at row ", first_row + i, ", column ", j));
}

/// A query's best candidates so far, best first: (score, index), higher score then lower index
/// first. Kept as a sorted array: k is small next to a gallery block, and most candidates fail
/// the comparison with the current k-th.
template <class T>
struct best_k {
  static bool better(const std::pair<T, std::int64_t>& a, const std::pair<T, std::int64_t>& b) noexcept {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  }
  void offer(T score, std::int64_t index, std::size_t k) {
    const std::pair<T, std::int64_t> c{score, index};
    if (items.size() == k && !better(c, items.back())) return;
    if (items.size() == k) items.pop_back();
    items.insert(std::upper_bound(items.begin(), items.end(), c, better), c);
  }
  std::vector<std::pair<T, std::int64_t>> items;
};

}  // namespace detail

template <Scalar T>
search_result<T> top_k(const latent_view<T>& queries, const latent_view<T>& gallery, std::size_t k,
                       const search_options& options) {
  constexpr const char* where = "fusemix::top_k";
  if (queries.rows() == 0 || gallery.rows() == 0)
    throw_shape_error(where, "both sides need at least one row", ">= 1", std::min(queries.rows(), gallery.rows()));
  if (queries.cols() != gallery.cols())
    throw_shape_error(where, "queries and gallery must have the same width", queries.cols(), gallery.cols());
  if (k == 0) throw_shape_error(where, "k must be positive", ">= 1", k);
  if (k > gallery.rows()) throw_shape_error(where, "k must not exceed the gallery's rows", concat("<= ", gallery.rows()), k);
  if (options.query_block == 0 || options.gallery_block == 0)
    throw_expected<argument_error>(where, "block sizes must be positive", ">= 1",
                                   std::min(options.query_block, options.gallery_block));

  const auto nq = static_cast<Eigen::Index>(queries.rows()), ng = static_cast<Eigen::Index>(gallery.rows());
  const auto d = static_cast<Eigen::Index>(gallery.cols());
  const matrix<T> q = normalize_rows(queries);
  detail::require_finite(where, "queries", q, 0);
  std::vector<detail::best_k<T>> best(static_cast<std::size_t>(nq));
  for (auto& b : best) b.items.reserve(k + 1);
  matrix<T> g, sims;
  const auto gb = static_cast<Eigen::Index>(options.gallery_block), qb = static_cast<Eigen::Index>(options.query_block);
  for (Eigen::Index g0 = 0; g0 < ng; g0 += gb) {
    const Eigen::Index rows = std::min(gb, ng - g0);
    g = normalize_rows(latent_view<T>(gallery.data() + g0 * d, static_cast<std::size_t>(rows), gallery.cols()));
    detail::require_finite(where, "the gallery", g, g0);
    for (Eigen::Index q0 = 0; q0 < nq; q0 += qb) {
      const Eigen::Index n = std::min(qb, nq - q0);
      sims.resize(n, rows);
      cpu::dense_ops<T>{}.gemm(T(1), q.middleRows(q0, n), false, g, true, T(0), sims);  // OpenBLAS where linked
#if defined(_OPENMP)
#  pragma omp parallel for schedule(static)
#endif
      for (Eigen::Index i = 0; i < n; ++i) {
        auto& b = best[static_cast<std::size_t>(q0 + i)];
        for (Eigen::Index j = 0; j < rows; ++j) b.offer(sims(i, j), g0 + j, k);
      }
    }
  }
  search_result<T> r;
  r.indices.resize(nq, static_cast<Eigen::Index>(k));
  r.scores.resize(nq, static_cast<Eigen::Index>(k));
  for (Eigen::Index i = 0; i < nq; ++i)
    for (Eigen::Index j = 0; j < static_cast<Eigen::Index>(k); ++j) {
      const auto& [score, index] = best[static_cast<std::size_t>(i)].items[static_cast<std::size_t>(j)];
      r.scores(i, j) = score;
      r.indices(i, j) = index;
    }
  return r;
}

}  // namespace fusemix
