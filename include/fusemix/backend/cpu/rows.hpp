// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's row-wise passes: the mixup gather, bias rows, row normalisation, finiteness.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

#include <Eigen/Core>

#include <fusemix/backend/cpu/parallel.hpp>
#include <fusemix/backend/cpu/storage.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cpu {

/// The row group of `cpu::backend` (`RowOps`). Rows on the backend's threads (`for_each_row`).
template <Scalar T>
class row_ops {
 public:
  /// `out_i = lambda · z[ia_i] + (1 − lambda) · z[ib_i]`: FuseMix's mixup folded into the gather
  /// of a batch's rows (lambda = 1 with ia = ib is a plain gather).
  template <class Z, class Out>
  void gather_mix(const Z& z, std::span<const std::size_t> ia, std::span<const std::size_t> ib, T lambda,
                  Out& out) const {
    for_each_row(static_cast<Eigen::Index>(ia.size()), z.cols(), [&](Eigen::Index i) {
      const auto a = static_cast<Eigen::Index>(ia[static_cast<std::size_t>(i)]);
      const auto b = static_cast<Eigen::Index>(ib[static_cast<std::size_t>(i)]);
      if (lambda == T(1))
        out.row(i) = z.row(a);
      else
        out.row(i) = lambda * z.row(a) + (T(1) - lambda) * z.row(b);
    });
  }
  /// `n_i = p_i / max(‖p_i‖, eps)` (as `F.normalize`), keeping each row's norm for backward.
  template <class P, class N>
  void normalize_rows_forward(const P& p, T eps, N& n, column_vector<T>& norms) const {
    storage<T>::resize(norms, static_cast<std::size_t>(p.rows()));
    for_each_row(p.rows(), p.cols(), [&](Eigen::Index i) {
      norms[i] = p.row(i).norm();
      n.row(i) = p.row(i) / std::max(norms[i], eps);
    });
  }
  /// Gradient of `normalize_rows_forward`: `dp_i = (dn_i − n_i (n_i·dn_i)) / ‖p_i‖`, or
  /// `dn_i / eps` for a row whose norm was clamped to eps.
  template <class Dn, class N, class Dp>
  void normalize_rows_backward(const Dn& dn, const N& n, const column_vector<T>& norms, T eps, Dp& dp) const {
    for_each_row(n.rows(), n.cols(), [&](Eigen::Index i) {
      if (norms[i] > eps)
        dp.row(i) = (dn.row(i) - n.row(i) * n.row(i).dot(dn.row(i))) / norms[i];
      else
        dp.row(i) = dn.row(i) / eps;
    });
  }
  /// Whether `a` holds a NaN or an infinity; if so, where the first one is (row-major order).
  template <class A>
  bool find_non_finite(const A& a, std::size_t& row, std::size_t& col) const {
    if (a.allFinite()) return false;
    for (Eigen::Index i = 0; i < a.rows(); ++i)
      for (Eigen::Index j = 0; j < a.cols(); ++j)
        if (!std::isfinite(a(i, j))) {
          row = static_cast<std::size_t>(i), col = static_cast<std::size_t>(j);
          return true;
        }
    return false;
  }
  /// Adds the vector `b` to every row of `y`.
  template <class Y, class V>
  void add_row_vector(Y& y, const V& b) const {
    for_each_row(y.rows(), y.cols(), [&](Eigen::Index i) { y.row(i) += b.transpose(); });
  }
  /// `out = Σ_rows dy` (the gradient of a bias), each column summed in row order; with
  /// `accumulate`, `out += Σ_rows dy` (the rows added to what `out` holds, in order).
  template <class M, class V>
  void column_sums(const M& dy, V& out, bool accumulate = false) const {
    for_each_column_run(dy.rows(), dy.cols(), [&](Eigen::Index c, Eigen::Index len) {
      auto o = out.segment(c, len).transpose();
      if (!accumulate) o.setZero();
      for (Eigen::Index i = 0; i < dy.rows(); ++i) o += dy.row(i).segment(c, len);
    });
  }
};

}  // namespace fusemix::cpu
