// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's loss reductions over a B×B logit matrix (positives on the diagonal).
#pragma once

#include <cmath>
#include <cstddef>

#include <Eigen/Core>

#include <fusemix/backend/common/sigmoid.hpp>
#include <fusemix/backend/cpu/storage.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cpu {

/// The loss group of `cpu::backend` (`LossPrimitives`). Keeps the per-row and per-column
/// statistics of the softmax as scratch.
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
    col_max_.resize(n);
    col_lse_.resize(n);
    col_max_ = logits.row(0).array();
    for (Eigen::Index i = 1; i < n; ++i) col_max_ = col_max_.max(logits.row(i).array());
    col_lse_.setZero();
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto r = logits.row(i).array();
      const T m = r.maxCoeff();
      row_lse_[i] = m + std::log((r - m).exp().sum());
      col_lse_ += (r - col_max_).exp();
    }
    col_lse_ = col_max_ + col_lse_.log();
    double loss = 0;
    for (Eigen::Index i = 0; i < n; ++i)
      loss += static_cast<double>(row_lse_[i] - logits(i, i)) + static_cast<double>(col_lse_[i] - logits(i, i));
    const T scale = T(0.5) / static_cast<T>(n);
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto r = logits.row(i).array();
      g.row(i).array() = scale * ((r - row_lse_[i]).exp() + (r - col_lse_).exp());
      g(i, i) -= 2 * scale;
    }
    return static_cast<T>(loss * 0.5 / static_cast<double>(n));
  }

  /// The pairwise sigmoid loss over `logits` (B×B; label +1 on the diagonal, −1 elsewhere):
  /// `(1/B)·Σ_ij −log σ(z_ij·l_ij)`, summed in double per row, then over rows. Returns the loss
  /// and writes its gradient with respect to the logits into `g`.
  template <class L, class G>
  T sigmoid_cross_entropy(const L& logits, G& g) const {
    const Eigen::Index n = logits.rows();
    const T inv_n = T(1) / static_cast<T>(n);
    double loss = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      double row = 0;
      for (Eigen::Index j = 0; j < n; ++j) {
        const T l = logits(i, j);
        row += static_cast<double>(detail::sigmoid_pair_term(l, i == j));
        g(i, j) = detail::sigmoid_pair_gradient(l, i == j, inv_n);
      }
      loss += row;
    }
    return static_cast<T>(loss / static_cast<double>(n));
  }

  /// `Σ_ij a_ij`.
  template <class A>
  T sum(const A& a) const { return a.sum(); }
  /// `y_ij = v` for every element.
  template <class Y>
  void fill(Y& y, T v) const { y.setConstant(v); }

 private:
  mutable column_vector<T> row_lse_;
  mutable Eigen::Array<T, 1, Eigen::Dynamic> col_max_, col_lse_;
};

}  // namespace fusemix::cpu
