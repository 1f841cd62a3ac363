// SPDX-License-Identifier: Apache-2.0
// The two losses over a whole logit matrix through a backend's block primitives, a given number of
// rows at a time (what contrastive_loss and sigmoid_loss do with their GEMMs around them).
#pragma once

#include <algorithm>
#include <cstddef>

namespace fusemix::test {

// The symmetric cross-entropy of `logits` (n×n) by backend `be`'s block primitives, `rows` rows
// at a time; its gradient into `g`.
template <class Be, class M>
inline double contrastive_in_blocks(const Be& be, const M& logits, M& g, std::size_t rows) {
  const std::size_t n = be.rows(logits);
  typename Be::vector_type row_lse, diag, col_max, col_sum, col_lse;
  for (auto* v : {&row_lse, &diag, &col_max, &col_sum, &col_lse}) be.resize(*v, n);
  for (std::size_t first = 0; first < n; first += rows)
    be.softmax_statistics(be.map(logits.data() + first * n, std::min(rows, n - first), n), first, row_lse, diag,
                          col_max, col_sum);
  const double loss = be.symmetric_cross_entropy_loss(row_lse, diag, col_max, col_sum, col_lse);
  for (std::size_t first = 0; first < n; first += rows) {
    const std::size_t count = std::min(rows, n - first);
    auto gb = be.map(g.data() + first * n, count, n);
    be.symmetric_cross_entropy_gradient(be.map(logits.data() + first * n, count, n), first, row_lse, col_lse, gb);
  }
  return loss;
}
// The pairwise sigmoid loss likewise.
template <class Be, class M>
inline double sigmoid_in_blocks(const Be& be, const M& logits, M& g, std::size_t rows) {
  const std::size_t n = be.rows(logits);
  double sum = 0;
  for (std::size_t first = 0; first < n; first += rows) {
    const std::size_t count = std::min(rows, n - first);
    auto gb = be.map(g.data() + first * n, count, n);
    sum += be.sigmoid_cross_entropy(be.map(logits.data() + first * n, count, n), first, gb);
  }
  return sum / static_cast<double>(n);
}

}  // namespace fusemix::test
