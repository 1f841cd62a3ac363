// SPDX-License-Identifier: Apache-2.0
/// @file
/// Cross-modal retrieval: exact Recall@K in both directions, several captions per image allowed,
/// computed in blocks so memory stays bounded for 100K × 100K galleries.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <Eigen/Core>

#include <fusemix/backend/cpu/backend.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/eval/search.hpp>

namespace fusemix {

/// Recall@1, @5, @10 in percent.
struct recall {
  double r1 = 0, r5 = 0, r10 = 0;
};

/// Retrieval in both directions and the mean of the six recalls (rsum / 6).
struct retrieval_result {
  recall image_to_text, text_to_image;
  double mean = 0;
};

/// Recall@K of image→text and text→image retrieval by cosine similarity.
///
/// Each text is its own query item; `image_of_text[j]` is the image that caption j describes (empty:
/// caption j describes image j, so both sides have the same count). image→text: an image's rank is
/// the best rank among its captions; text→image: the rank of its one image. Recall@K = percentage
/// of queries with rank < K. Ties count against the query (a gallery item whose similarity equals
/// the best positive's ranks ahead of it), so a constant embedding scores 0, not 100.
///
/// Rows are L2-normalised here; similarities are computed `block` queries at a time.
///
/// @throws shape_error if widths differ, a side is empty, or `image_of_text` has the wrong length;
///         argument_error if an index is out of range or an image has no caption; numeric_error
///         if an embedding is not finite (NaN similarities would rank every query first).
///
/// **Example**
///
///     auto r = fusemix::evaluate_retrieval<float>(sx, sy);   // one caption per image
///     std::printf("i->t R@1 %.1f%%\n", r.image_to_text.r1);
template <Scalar T>
[[nodiscard]] retrieval_result evaluate_retrieval(const latent_view<T>& images, const latent_view<T>& texts,
                                                  std::span<const std::int64_t> image_of_text = {},
                                                  std::size_t block = 1024);

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

namespace detail {

inline recall recall_of(const std::vector<std::size_t>& ranks) {
  recall r;
  for (std::size_t k : ranks) r.r1 += k < 1, r.r5 += k < 5, r.r10 += k < 10;
  const double n = static_cast<double>(ranks.size());
  return {100 * r.r1 / n, 100 * r.r5 / n, 100 * r.r10 / n};
}

// The rank of each query row q: the number of non-positive gallery rows whose similarity is at
// least that of q's best positive (`is_positive(q, g)`). Both come from the same block product,
// so a tie is a tie whatever the summation order, and ties count against the query.
template <Scalar T, class Positive>
std::vector<std::size_t> ranks_against(const matrix<T>& queries, const matrix<T>& gallery, Positive is_positive,
                                       std::size_t block) {
  std::vector<std::size_t> ranks(static_cast<std::size_t>(queries.rows()), 0);
  matrix<T> sims;
  for (Eigen::Index q0 = 0; q0 < queries.rows(); q0 += static_cast<Eigen::Index>(block)) {
    const Eigen::Index nq = std::min<Eigen::Index>(static_cast<Eigen::Index>(block), queries.rows() - q0);
    sims.noalias() = queries.middleRows(q0, nq) * gallery.transpose();
    for (Eigen::Index i = 0; i < nq; ++i) {
      const auto q = static_cast<std::size_t>(q0 + i);
      T target = -std::numeric_limits<T>::infinity();
      for (Eigen::Index g = 0; g < sims.cols(); ++g)
        if (is_positive(q, static_cast<std::size_t>(g))) target = std::max(target, sims(i, g));
      std::size_t rank = 0;
      for (Eigen::Index g = 0; g < sims.cols(); ++g)
        rank += sims(i, g) >= target && !is_positive(q, static_cast<std::size_t>(g));
      ranks[q] = rank;
    }
  }
  return ranks;
}

}  // namespace detail

template <Scalar T>
retrieval_result evaluate_retrieval(const latent_view<T>& images, const latent_view<T>& texts,
                                    std::span<const std::int64_t> image_of_text, std::size_t block) {
  constexpr const char* where = "fusemix::evaluate_retrieval";
  if (images.rows() == 0 || texts.rows() == 0)
    throw_shape_error(where, "both sides need at least one row", ">= 1", std::min(images.rows(), texts.rows()));
  if (images.cols() != texts.cols())
    throw_shape_error(where, "image and text embeddings must have the same width", images.cols(), texts.cols());
  if (block == 0) block = 1024;
  const std::size_t n_img = images.rows(), n_txt = texts.rows();
  std::vector<std::int64_t> owner(image_of_text.begin(), image_of_text.end());
  if (owner.empty()) {
    if (n_img != n_txt)
      throw_shape_error(where, "without image_of_text both sides need the same count", n_img, n_txt);
    owner.resize(n_txt);
    for (std::size_t j = 0; j < n_txt; ++j) owner[j] = static_cast<std::int64_t>(j);
  }
  if (owner.size() != n_txt) throw_shape_error(where, "image_of_text needs one entry per text", n_txt, owner.size());
  std::vector<std::vector<std::size_t>> captions(n_img);
  for (std::size_t j = 0; j < n_txt; ++j) {
    if (owner[j] < 0 || static_cast<std::size_t>(owner[j]) >= n_img)
      throw_expected<argument_error>(where, "image_of_text entry out of range",
                                             concat("[0, ", n_img, ")"), owner[j]);
    captions[static_cast<std::size_t>(owner[j])].push_back(j);
  }
  for (std::size_t i = 0; i < n_img; ++i)
    if (captions[i].empty())
      throw_expected<argument_error>(where, "every image needs a caption", ">= 1 caption",
                                             concat("none for image ", i));

  // NaN similarities compare false both ways, so every query would rank first: refused instead.
  detail::require_finite(where, "the embeddings of the images must be finite", images);
  detail::require_finite(where, "the embeddings of the texts must be finite", texts);
  const auto img = normalize_rows(images), txt = normalize_rows(texts);
  const auto t2i = detail::ranks_against<T>(
      txt, img, [&](std::size_t j, std::size_t i) { return static_cast<std::size_t>(owner[j]) == i; }, block);
  const auto i2t = detail::ranks_against<T>(
      img, txt, [&](std::size_t i, std::size_t j) { return static_cast<std::size_t>(owner[j]) == i; }, block);
  retrieval_result r{detail::recall_of(i2t), detail::recall_of(t2i), 0};
  r.mean = (r.image_to_text.r1 + r.image_to_text.r5 + r.image_to_text.r10 + r.text_to_image.r1 +
            r.text_to_image.r5 + r.text_to_image.r10) /
           6;
  return r;
}

}  // namespace fusemix
