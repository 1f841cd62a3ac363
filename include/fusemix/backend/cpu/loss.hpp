// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's loss reductions over a B×B logit matrix (positives on the diagonal), a block
/// of rows at a time.
#pragma once

#include <cmath>
#include <cstddef>

#include <Eigen/Core>

#include <fusemix/backend/common/sigmoid.hpp>
#include <fusemix/backend/cpu/parallel.hpp>
#include <fusemix/backend/cpu/storage.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cpu {

/// The loss group of `cpu::backend` (`LossPrimitives`). A loss walks the B×B logits a block of
/// rows at a time (one block: the whole matrix). Rows run on the backend's threads
/// (`for_each_row`), the column statistics by runs of columns walking the block's rows in order
/// (`for_each_column_run`), merged into the running ones block by block, and totals are summed
/// over the rows' partial sums in row order: the same bits at every thread count.
template <Scalar T>
class loss_ops {
 public:
  /// The softmax statistics of rows `first_row …` of a B-column logit matrix (`block`, R×B,
  /// positives at `(i, first_row + i)`): each row's log-sum-exp into `row_lse[first_row + i]`,
  /// its positive logit into `diag[first_row + i]`, and every column's running maximum and
  /// Σexp(l − maximum) merged with the block's rows (begun afresh when `first_row` is 0). Blocks
  /// in row order.
  template <class L, class V>
  void softmax_statistics(const L& block, std::size_t first_row, V& row_lse, V& diag, V& col_max,
                          V& col_sum) const {
    // Row-major logits: every pass walks rows, vectorised across columns; the column direction
    // keeps its running maxima and sums as rows.
    const Eigen::Index rows = block.rows(), n = block.cols(), first = static_cast<Eigen::Index>(first_row);
    for_each_column_run(rows, n, [&](Eigen::Index c, Eigen::Index len) {
      using run = Eigen::Array<T, 1, Eigen::Dynamic, Eigen::RowMajor, 1, column_run>;
      run max = block.row(0).segment(c, len).array(), sum(len);
      for (Eigen::Index i = 1; i < rows; ++i) max = max.max(block.row(i).segment(c, len).array());
      sum.setZero();
      for (Eigen::Index i = 0; i < rows; ++i) sum += (block.row(i).segment(c, len).array() - max).exp();
      auto m = col_max.segment(c, len).transpose().array();
      auto s = col_sum.segment(c, len).transpose().array();
      if (first == 0) {
        m = max, s = sum;
      } else {  // the two (maximum, Σexp) pairs rebased on the larger maximum
        const run merged = m.max(max);
        s = s * (m - merged).exp() + sum * (max - merged).exp();
        m = merged;
      }
    });
    row_softmax_statistics(block, first_row, row_lse, diag);
  }
  /// The row half of `softmax_statistics`: each row's log-sum-exp into `row_lse[first_row + i]`
  /// and its positive logit into `diag[first_row + i]`. (A loss sharded over processes takes
  /// its columns' statistics as the rows of the transposed block instead.)
  template <class L, class V>
  void row_softmax_statistics(const L& block, std::size_t first_row, V& row_lse, V& diag) const {
    const Eigen::Index rows = block.rows(), n = block.cols(), first = static_cast<Eigen::Index>(first_row);
    for_each_row(rows, n, [&](Eigen::Index i) {
      const auto r = block.row(i).array();
      const T m = r.maxCoeff();
      row_lse[first + i] = m + std::log((r - m).exp().sum());
      diag[first + i] = block(i, first + i);
    });
  }

  /// The symmetric InfoNCE loss `½(mean_i CE(row i, i) + mean_j CE(column j, j))` from the
  /// statistics of every row: writes each column's log-sum-exp into `col_lse`.
  template <class V>
  T symmetric_cross_entropy_loss(const V& row_lse, const V& diag, const V& col_max, const V& col_sum,
                                 V& col_lse) const {
    const Eigen::Index n = row_lse.size();
    col_lse.array() = col_max.array() + col_sum.array().log();
    double loss = 0;
    for (Eigen::Index i = 0; i < n; ++i)
      loss += static_cast<double>(row_lse[i] - diag[i]) + static_cast<double>(col_lse[i] - diag[i]);
    return static_cast<T>(loss * 0.5 / static_cast<double>(n));
  }

  /// The symmetric InfoNCE loss's gradient with respect to a block of rows `first_row …` of the
  /// logits (its log-sum-exps from `softmax_statistics` and `symmetric_cross_entropy_loss`).
  template <class L, class V, class G>
  void symmetric_cross_entropy_gradient(const L& block, std::size_t first_row, const V& row_lse, const V& col_lse,
                                        G& g) const {
    const Eigen::Index rows = block.rows(), n = block.cols(), first = static_cast<Eigen::Index>(first_row);
    const T scale = T(0.5) / static_cast<T>(n);
    const auto col = col_lse.transpose().array();
    for_each_row(rows, n, [&](Eigen::Index i) {
      const auto r = block.row(i).array();
      g.row(i).array() = scale * ((r - row_lse[first + i]).exp() + (r - col).exp());
      g(i, first + i) -= 2 * scale;
    });
  }

  /// The pairwise sigmoid loss over a block of rows `first_row …` of the logits (R×B; label +1
  /// at `(i, first_row + i)`, −1 elsewhere): writes the gradient of `(1/B)·Σ_ij −log σ(z_ij·l_ij)`
  /// with respect to the block into `g` and returns the block's Σ −log σ(z_ij·l_ij), summed in
  /// double per row, then over the rows in order.
  template <class L, class G>
  double sigmoid_cross_entropy(const L& block, std::size_t first_row, G& g) const {
    const Eigen::Index rows = block.rows(), n = block.cols(), first = static_cast<Eigen::Index>(first_row);
    const T inv_n = T(1) / static_cast<T>(n);
    row_sums_.resize(rows);
    for_each_row(rows, n, [&](Eigen::Index i) {
      double row = 0;
      for (Eigen::Index j = 0; j < n; ++j) {
        const T l = block(i, j);
        row += static_cast<double>(detail::sigmoid_pair_term(l, first + i == j));
        g(i, j) = detail::sigmoid_pair_gradient(l, first + i == j, inv_n);
      }
      row_sums_[i] = row;
    });
    return row_sums_.sum_in_order();
  }

  /// `Σ_ij a_ij` (each row's sum in `T`, the rows' sums added in double in row order).
  template <class A>
  T sum(const A& a) const {
    row_sums_.resize(a.rows());
    for_each_row(a.rows(), a.cols(), [&](Eigen::Index i) { row_sums_[i] = static_cast<double>(a.row(i).sum()); });
    return static_cast<T>(row_sums_.sum_in_order());
  }
  /// `y_ij = v` for every element.
  template <class Y>
  void fill(Y& y, T v) const {
    for_each_row(y.rows(), y.cols(), [&](Eigen::Index i) { y.row(i).setConstant(v); });
  }

 private:
  mutable row_partials row_sums_;
};

}  // namespace fusemix::cpu
