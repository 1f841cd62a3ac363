// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's loss reductions over a B×B logit matrix (positives on the diagonal), a block
/// of rows at a time, and the plain sum and fill.
#pragma once

#include <cstddef>

#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/elementwise.hpp>
#include <fusemix/backend/cuda/kernels/loss.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cuda {

/// The loss group of `cuda::backend` (`LossPrimitives`), which is `Derived`: a loss walks the B×B
/// logits a block of rows at a time (one block: the whole matrix); the column statistics' partial
/// sums are the context's scratch.
template <Scalar T, System S, class Derived>
class loss_ops {
 public:
  /// The softmax statistics of rows `first_row …` of a B-column logit matrix (`block`, R×B,
  /// positives at `(i, first_row + i)`): rows' log-sum-exp and positive logits at `first_row …`
  /// of `row_lse` and `diag`, the columns' running maximum and Σexp merged with the block's rows
  /// (begun afresh when `first_row` is 0). Blocks in row order.
  template <class L, class V>
  void softmax_statistics(const L& block, std::size_t first_row, V& row_lse, V& diag, V& col_max,
                          V& col_sum) const;
  /// The row half of `softmax_statistics`: rows' log-sum-exp and positive logits at
  /// `first_row …` of `row_lse` and `diag`.
  template <class L, class V>
  void row_softmax_statistics(const L& block, std::size_t first_row, V& row_lse, V& diag) const {
    context<S>& c = self().ctx();
    const auto prof = c.profile("row_softmax_statistics");
    const std::size_t rows = block.rows(), n = block.cols();
    for_rows(c, rows, detail::row_lse_rows<T>{block.data(), row_lse.data() + first_row, n});
    for_n(c, rows, detail::block_diagonal<T>{block.data(), diag.data() + first_row, n, first_row});
  }
  /// The symmetric InfoNCE loss from the statistics of every row (waits for it); writes each
  /// column's log-sum-exp into `col_lse`.
  template <class V>
  T symmetric_cross_entropy_loss(const V& row_lse, const V& diag, const V& col_max, const V& col_sum,
                                 V& col_lse) const;
  /// The symmetric InfoNCE loss's gradient with respect to a block of rows `first_row …`.
  template <class L, class V, class G>
  void symmetric_cross_entropy_gradient(const L& block, std::size_t first_row, const V& row_lse, const V& col_lse,
                                        G& g) const;
  /// The pairwise sigmoid loss over a block of rows `first_row …` (label +1 at
  /// `(i, first_row + i)`, −1 elsewhere): writes the gradient of `(1/B)·Σ_ij −log σ(z_ij·l_ij)`
  /// into `g` and returns the block's Σ −log σ(z_ij·l_ij) in double (waits for it).
  template <class L, class G>
  double sigmoid_cross_entropy(const L& block, std::size_t first_row, G& g) const;
  /// `Σ_ij a_ij`, summed in double; waits for the result.
  template <class A>
  T sum(const A& a) const {
    const auto prof = self().ctx().profile("sum");
    return static_cast<T>(
        reduce_n(self().ctx(), a.size(), detail::element_terms<T>{a.data()}, 0.0, detail::sum_of{}));
  }
  /// `y_ij = v` for every element.
  template <class Y>
  void fill(Y& y, T v) const {
    const auto prof = self().ctx().profile("fill");
    for_n(self().ctx(), y.size(), detail::fill_elements<T>{y.data(), v});
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

template <Scalar T, System S, class Derived>
template <class L, class V>
void loss_ops<T, S, Derived>::softmax_statistics(const L& block, std::size_t first_row, V& row_lse, V& diag,
                                                 V& col_max, V& col_sum) const {
  context<S>& c = self().ctx();
  const auto prof = c.profile("softmax_statistics");
  const std::size_t rows = block.rows(), n = block.cols();
  constexpr std::size_t rows_per_chunk = 256;
  const std::size_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  T* part = c.template scratch<T>(context<S>::col_partials, 2 * chunks * n);
  row_softmax_statistics(block, first_row, row_lse, diag);
  for_n(c, chunks * n, detail::column_lse_partials<T>{block.data(), part, part + chunks * n, rows, n, rows_per_chunk});
  for_n(c, n,
        detail::column_stats_merge<T>{part, part + chunks * n, col_max.data(), col_sum.data(), n, chunks, first_row == 0});
}

template <Scalar T, System S, class Derived>
template <class V>
T loss_ops<T, S, Derived>::symmetric_cross_entropy_loss(const V& row_lse, const V& diag, const V& col_max,
                                                        const V& col_sum, V& col_lse) const {
  context<S>& c = self().ctx();
  const auto prof = c.profile("symmetric_cross_entropy_loss");
  const std::size_t n = row_lse.size();
  for_n(c, n, detail::column_lse<T>{col_max.data(), col_sum.data(), col_lse.data()});
  const double loss = reduce_n(c, n, detail::diagonal_terms<T>{diag.data(), row_lse.data(), col_lse.data()}, 0.0,
                               detail::sum_of{});
  return static_cast<T>(loss * 0.5 / static_cast<double>(n));
}

template <Scalar T, System S, class Derived>
template <class L, class V, class G>
void loss_ops<T, S, Derived>::symmetric_cross_entropy_gradient(const L& block, std::size_t first_row, const V& row_lse,
                                                               const V& col_lse, G& g) const {
  context<S>& c = self().ctx();
  const auto prof = c.profile("symmetric_cross_entropy_gradient");
  const std::size_t n = block.cols();
  const T scale = T(0.5) / static_cast<T>(n);
  for_rows(c, block.rows(),
           detail::softmax_gradient_rows<T>{block.data(), row_lse.data() + first_row, col_lse.data(), g.data(), scale, n,
                                            first_row});
}

template <Scalar T, System S, class Derived>
template <class L, class G>
double loss_ops<T, S, Derived>::sigmoid_cross_entropy(const L& block, std::size_t first_row, G& g) const {
  context<S>& c = self().ctx();
  const auto prof = c.profile("sigmoid_cross_entropy");
  const std::size_t rows = block.rows(), n = block.cols();
  double* row_loss = c.template scratch<double>(context<S>::row_stats, rows);
  for_rows(c, rows, detail::sigmoid_rows<T>{block.data(), g.data(), row_loss, T(1) / static_cast<T>(n), n, first_row});
  return reduce_n(c, rows, detail::element_terms<double>{row_loss}, 0.0, detail::sum_of{});
}

}  // namespace fusemix::cuda
