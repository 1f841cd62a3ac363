// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's loss reductions over a B×B logit matrix (positives on the diagonal).
#pragma once

#include <cmath>
#include <cstddef>

#include <Eigen/Core>

#include <fusemix/backend/common/sigmoid.hpp>
#include <fusemix/backend/cpu/parallel.hpp>
#include <fusemix/backend/cpu/storage.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cpu {

/// The loss group of `cpu::backend` (`LossPrimitives`). Keeps the per-row and per-column
/// statistics of the softmax as scratch. Rows on the backend's threads (`for_each_row`), the
/// column statistics by runs of columns walking the rows in order (`for_each_column_run`), and
/// totals summed over the rows' partial sums in row order: the same bits at every thread count.
template <Scalar T>
class loss_ops {
 public:
  /// The symmetric InfoNCE loss over `logits` (B×B, positives on the diagonal):
  /// `½(mean_i CE(row i, i) + mean_j CE(column j, j))`, with log-sum-exp in each direction.
  /// Returns the loss and writes its gradient with respect to the logits into `g`.
  template <class L, class G>
  T symmetric_cross_entropy(const L& logits, G& g) const {
    // Row-major logits: every pass walks rows, vectorised across columns; the column direction
    // keeps its running maxima and sums as rows.
    const Eigen::Index n = logits.rows();
    storage<T>::resize(row_lse_, static_cast<std::size_t>(n));
    col_lse_.resize(n);
    for_each_column_run(n, n, [&](Eigen::Index c, Eigen::Index len) {
      Eigen::Array<T, 1, Eigen::Dynamic, Eigen::RowMajor, 1, column_run> max = logits.row(0).segment(c, len).array(), sum(len);
      for (Eigen::Index i = 1; i < n; ++i) max = max.max(logits.row(i).segment(c, len).array());
      sum.setZero();
      for (Eigen::Index i = 0; i < n; ++i) sum += (logits.row(i).segment(c, len).array() - max).exp();
      col_lse_.segment(c, len) = max + sum.log();
    });
    const T scale = T(0.5) / static_cast<T>(n);
    for_each_row(n, n, [&](Eigen::Index i) {
      const auto r = logits.row(i).array();
      const T m = r.maxCoeff();
      const T lse = m + std::log((r - m).exp().sum());
      row_lse_[i] = lse;
      g.row(i).array() = scale * ((r - lse).exp() + (r - col_lse_).exp());
      g(i, i) -= 2 * scale;
    });
    double loss = 0;
    for (Eigen::Index i = 0; i < n; ++i)
      loss += static_cast<double>(row_lse_[i] - logits(i, i)) + static_cast<double>(col_lse_[i] - logits(i, i));
    return static_cast<T>(loss * 0.5 / static_cast<double>(n));
  }

  /// The pairwise sigmoid loss over `logits` (B×B; label +1 on the diagonal, −1 elsewhere):
  /// `(1/B)·Σ_ij −log σ(z_ij·l_ij)`, summed in double per row, then over rows. Returns the loss
  /// and writes its gradient with respect to the logits into `g`.
  template <class L, class G>
  T sigmoid_cross_entropy(const L& logits, G& g) const {
    const Eigen::Index n = logits.rows();
    const T inv_n = T(1) / static_cast<T>(n);
    row_sums_.resize(n);
    for_each_row(n, n, [&](Eigen::Index i) {
      double row = 0;
      for (Eigen::Index j = 0; j < n; ++j) {
        const T l = logits(i, j);
        row += static_cast<double>(detail::sigmoid_pair_term(l, i == j));
        g(i, j) = detail::sigmoid_pair_gradient(l, i == j, inv_n);
      }
      row_sums_[i] = row;
    });
    return static_cast<T>(row_sums_.sum_in_order() / static_cast<double>(n));
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
  mutable column_vector<T> row_lse_;
  mutable Eigen::Array<T, 1, Eigen::Dynamic> col_lse_;
  mutable row_partials row_sums_;
};

}  // namespace fusemix::cpu
