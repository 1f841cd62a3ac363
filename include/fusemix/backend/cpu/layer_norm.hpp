// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's LayerNorm over each row, forward and backward.
#pragma once

#include <cmath>
#include <cstddef>

#include <Eigen/Core>

#include <fusemix/backend/cpu/storage.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cpu {

/// The LayerNorm group of `cpu::backend` (`LayerNormOps`). Keeps two scratch rows.
template <Scalar T>
class layer_norm_ops {
 public:
  /// `y = (x − mean) · rstd · gamma + beta` per row; saves `mean` and `rstd = 1/√(var + eps)`
  /// (biased variance, as PyTorch) for backward.
  template <class X, class G, class Bv, class Y>
  void layer_norm_forward(const X& x, const G& gamma, const Bv& beta, T eps, Y& y, column_vector<T>& mean,
                          column_vector<T>& rstd) const {
    const Eigen::Index n = x.rows(), d = x.cols();
    storage<T>::resize(mean, static_cast<std::size_t>(n));
    storage<T>::resize(rstd, static_cast<std::size_t>(n));
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto row = x.row(i);
      const T mu = row.mean();
      const T var = (row.array() - mu).square().sum() / static_cast<T>(d);
      const T r = T(1) / std::sqrt(var + eps);
      mean[i] = mu;
      rstd[i] = r;
      y.row(i) = ((row.array() - mu) * r * gamma.transpose().array() + beta.transpose().array()).matrix();
    }
  }
  /// Gradients of LayerNorm: `dx`, and `dgamma`, `dbeta` summed over rows.
  template <class Dy, class X, class G, class Dx, class Dg, class Db>
  void layer_norm_backward(const Dy& dy, const X& x, const G& gamma, const column_vector<T>& mean,
                           const column_vector<T>& rstd, Dx& dx, Dg& dgamma, Db& dbeta) const {
    const Eigen::Index n = x.rows(), d = x.cols();
    dgamma.setZero();
    dbeta.setZero();
    row_array& xhat = xhat_;
    row_array& g = g_;
    xhat.resize(d);
    g.resize(d);
    for (Eigen::Index i = 0; i < n; ++i) {
      xhat = (x.row(i).array() - mean[i]) * rstd[i];
      g = dy.row(i).array() * gamma.transpose().array();
      dgamma.transpose().array() += dy.row(i).array() * xhat;
      dbeta.transpose().array() += dy.row(i).array();
      const T mean_g = g.mean();
      const T mean_gx = (g * xhat).mean();
      dx.row(i) = (rstd[i] * (g - mean_g - xhat * mean_gx)).matrix();
    }
  }

 private:
  using row_array = Eigen::Array<T, 1, Eigen::Dynamic>;
  mutable row_array xhat_, g_;  // scratch rows (sized on first use)
};

}  // namespace fusemix::cpu
