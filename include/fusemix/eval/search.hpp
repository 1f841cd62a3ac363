// SPDX-License-Identifier: Apache-2.0
/// @file
/// Exact top-k search by cosine similarity, in blocks so that memory stays bounded for galleries
/// of millions of rows, and row normalisation.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include <fusemix/backend/concepts.hpp>
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

/// How `top_k` blocks its work; 0 leaves a size to the backend (`B::search_query_block`,
/// `B::search_gallery_block`: 4,096 × 1,024 on the CPU, 4,096 × 16,384 on a GPU).
struct search_options {
  std::size_t query_block = 0;    ///< queries per block product
  std::size_t gallery_block = 0;  ///< gallery rows per block product (normalised a block at a time)
};

/// The best `k` gallery rows of each query: `indices(q, j)` is the gallery row with the j-th
/// highest cosine similarity to query `q`, `scores(q, j)` that similarity.
template <Scalar T>
struct search_result {
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> indices;
  matrix<T> scores;
};

/// Exact top-`k` search of every query row in `gallery` by cosine similarity, on `backend`.
///
/// Rows are L2-normalised in the backend's memory (the queries once, the gallery a block at a
/// time, so the gallery is never copied whole; a GPU receives it one block at a time), the
/// similarities are block products `query_block × gallery_block` (the backend's GEMM), and each
/// query keeps its best `k` across blocks (`merge_top_k`). Equal scores go to the lower gallery
/// index (scores are the GEMM's products: two copies of one row at different places in a block
/// may differ in the last bit). Memory beyond the result and the normalised queries: one block
/// product and one normalised gallery block.
///
/// On the CPU the products are OpenBLAS's (where the program links it) or Eigen's on the
/// backend's threads (`cpu::set_threads`) and the selection runs on OpenMP threads; every query
/// is selected on its own, so results are the same bits for the same GEMM, thread count and
/// blocks, and differ otherwise only where a product rounds differently (which can reorder
/// cosines equal to within rounding). A GPU's products are cuBLAS's, at the context's precision.
///
/// @throws shape_error if a side is empty, the widths differ, `k` is 0, larger than the gallery
///         or than the backend supports (`B::max_top_k`: 1,024 on a GPU).
/// @throws numeric_error if a query or gallery row holds NaN or Inf (naming which and where).
///
/// **Example**
///
///     fusemix::cuda::backend<float> gpu;            // in a .cu file
///     auto r = fusemix::top_k(gpu, fusemix::latent_view<float>(sx), fusemix::latent_view<float>(sy), 5);
template <Backend B>
[[nodiscard]] search_result<typename B::scalar_type> top_k(const B& backend,
                                                           const latent_view<typename B::scalar_type>& queries,
                                                           const latent_view<typename B::scalar_type>& gallery,
                                                           std::size_t k, const search_options& options = {});

/// `top_k` over a gallery handed over a block of rows at a time, so that it is never whole in
/// memory: `gallery(first, rows)` returns a `latent_view<T>` of gallery rows `first …
/// first + rows − 1` (`rows` at most the backend's gallery block), valid until the next call; the
/// blocks are asked for once each, in order. `fusemix search` embeds each block of a gallery
/// read from disk this way. The same results as `top_k` on the whole gallery.
/// @throws as `top_k`; shape_error if a block does not have the rows asked for or the queries' width.
///
/// **Example**
///
///     auto r = fusemix::top_k_by_blocks(fusemix::cpu::backend<float>{}, queries, n, [&](std::size_t first, std::size_t rows) {
///       block = h.embed(z.middleRows(first, rows));   // a block of embeddings
///       return fusemix::latent_view<float>(block);
///     }, 10);
template <Backend B, class GalleryBlocks>
  requires std::invocable<const GalleryBlocks&, std::size_t, std::size_t>
[[nodiscard]] search_result<typename B::scalar_type> top_k_by_blocks(const B& backend,
                                                                     const latent_view<typename B::scalar_type>& queries,
                                                                     std::size_t gallery_rows, const GalleryBlocks& gallery,
                                                                     std::size_t k, const search_options& options = {});

/// `top_k` on the CPU backend.
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

template <Backend B>
search_result<typename B::scalar_type> top_k(const B& be, const latent_view<typename B::scalar_type>& queries,
                                             const latent_view<typename B::scalar_type>& gallery, std::size_t k,
                                             const search_options& options) {
  using T = typename B::scalar_type;
  if (queries.rows() != 0 && gallery.rows() != 0 && queries.cols() != gallery.cols())
    throw_shape_error("fusemix::top_k", "queries and gallery must have the same width", queries.cols(), gallery.cols());
  return top_k_by_blocks(
      be, queries, gallery.rows(),
      [&](std::size_t first, std::size_t rows) { return latent_view<T>(gallery.data() + first * gallery.cols(), rows, gallery.cols()); },
      k, options);
}

template <Backend B, class GalleryBlocks>
  requires std::invocable<const GalleryBlocks&, std::size_t, std::size_t>
search_result<typename B::scalar_type> top_k_by_blocks(const B& be, const latent_view<typename B::scalar_type>& queries,
                                                       std::size_t gallery_rows, const GalleryBlocks& gallery,
                                                       std::size_t k, const search_options& options) {
  using T = typename B::scalar_type;
  constexpr const char* where = "fusemix::top_k";
  if (queries.rows() == 0 || gallery_rows == 0)
    throw_shape_error(where, "both sides need at least one row", ">= 1", std::min(queries.rows(), gallery_rows));
  if (k == 0) throw_shape_error(where, "k must be positive", ">= 1", k);
  if (k > gallery_rows) throw_shape_error(where, "k must not exceed the gallery's rows", concat("<= ", gallery_rows), k);
  if (k > B::max_top_k) throw_shape_error(where, "k must not exceed this backend's limit", concat("<= ", B::max_top_k), k);

  const std::size_t nq = queries.rows(), ng = gallery_rows, d = queries.cols();
  const std::size_t qb = options.query_block != 0 ? options.query_block : B::search_query_block;
  const std::size_t gb = options.gallery_block != 0 ? options.gallery_block : B::search_gallery_block;
  const T eps = std::numeric_limits<T>::min();  // only an all-zero row is clamped: it stays zero
  using matrix_type = typename B::matrix_type;
  matrix_type q, g, staging, sims, best_scores;
  typename B::vector_type norms;
  // Normalises the host rows `z` (rows `first …` of their side) into `out` (read in place where
  // the backend reads host memory, else through `staging`); names the first non-finite input value.
  const auto normalised = [&](const latent_view<T>& z, std::size_t first, matrix_type& out, const char* what) {
    const std::size_t rows = z.rows();
    const T* host = z.data();
    if constexpr (B::host_memory) {
      be.normalize_rows_forward(be.map(host, rows, d), eps, out, norms);
    } else {
      be.resize(staging, rows, d);
      be.upload(std::span<const T>(host, rows * d), staging.data());
      be.normalize_rows_forward(staging, eps, out, norms);
    }
    std::size_t r = 0, c = 0;
    if (!be.find_non_finite(out, r, c)) return;
    // A non-finite input makes its whole row non-finite: name the input value.
    const T* row = host + r * d;
    if (const T* bad = std::find_if(row, row + d, [](T v) { return !std::isfinite(v); }); bad != row + d)
      c = static_cast<std::size_t>(bad - row);
    throw_expected<numeric_error>(where, concat(what, " must be finite"), "finite values",
                                  concat(host[r * d + c], " at row ", first + r, ", column ", c));
  };

  be.resize(q, nq, d);
  normalised(queries, 0, q, "queries");
  be.resize(best_scores, nq, k);
  typename B::template buffer<std::int64_t> best_indices(nq * k);
  be.resize(sims, std::min(qb, nq), std::min(gb, ng));
  std::size_t filled = 0;
  for (std::size_t g0 = 0; g0 < ng; g0 += gb) {
    const std::size_t rows = std::min(gb, ng - g0);
    const latent_view<T> block = gallery(g0, rows);
    if (block.rows() != rows || block.cols() != d)
      throw_shape_error(where, concat("gallery block at row ", g0, " must have the rows asked for and the queries' width"),
                        concat(rows, " x ", d), concat(block.rows(), " x ", block.cols()));
    be.resize(g, rows, d);
    normalised(block, g0, g, "the gallery");
    for (std::size_t q0 = 0; q0 < nq; q0 += qb) {
      const std::size_t n = std::min(qb, nq - q0);
      auto products = be.map(sims.data(), n, rows);
      be.gemm(T(1), be.map(static_cast<const T*>(q.data()) + q0 * d, n, d), false, g, true, T(0), products);
      be.merge_top_k(products, q0, static_cast<std::int64_t>(g0), filled, best_scores, best_indices.data());
    }
    filled = std::min(k, filled + rows);
  }
  search_result<T> r;
  r.indices.resize(static_cast<Eigen::Index>(nq), static_cast<Eigen::Index>(k));
  r.scores.resize(static_cast<Eigen::Index>(nq), static_cast<Eigen::Index>(k));
  be.download(static_cast<const T*>(best_scores.data()), std::span<T>(r.scores.data(), nq * k));
  be.download(static_cast<const std::int64_t*>(best_indices.data()), std::span<std::int64_t>(r.indices.data(), nq * k));
  return r;
}

template <Scalar T>
search_result<T> top_k(const latent_view<T>& queries, const latent_view<T>& gallery, std::size_t k,
                       const search_options& options) {
  return top_k(cpu::backend<T>{}, queries, gallery, k, options);
}

}  // namespace fusemix
