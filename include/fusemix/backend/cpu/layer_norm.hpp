// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's LayerNorm over each row, forward and backward.
#pragma once

#include <cmath>
#include <cstddef>

#include <Eigen/Core>

#include <fusemix/backend/cpu/parallel.hpp>
#include <fusemix/backend/cpu/storage.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cpu {

/// The LayerNorm group of `cpu::backend` (`LayerNormOps`). Rows on the backend's threads
/// (`for_each_row`), the parameter gradients by runs of columns (`for_each_column_run`); no state.
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
    for_each_row(n, d, [&](Eigen::Index i) {
      const auto row = x.row(i);
      const T mu = row.mean();
      const T var = (row.array() - mu).square().sum() / static_cast<T>(d);
      const T r = T(1) / std::sqrt(var + eps);
      mean[i] = mu;
      rstd[i] = r;
      y.row(i) = ((row.array() - mu) * r * gamma.transpose().array() + beta.transpose().array()).matrix();
    });
  }
  /// Gradients of LayerNorm: `dx`, and `dgamma`, `dbeta` summed over rows (in row order, each
  /// column on its own, so the same bits at every thread count); with `accumulate`, added to
  /// what `dgamma` and `dbeta` hold.
  template <class Dy, class X, class G, class Dx, class Dg, class Db>
  void layer_norm_backward(const Dy& dy, const X& x, const G& gamma, const column_vector<T>& mean,
                           const column_vector<T>& rstd, Dx& dx, Dg& dgamma, Db& dbeta, bool accumulate = false) const {
    const Eigen::Index n = x.rows(), d = x.cols();
    for_each_column_run(n, d, [&](Eigen::Index c, Eigen::Index len) {
      auto dg = dgamma.segment(c, len).transpose().array();
      auto db = dbeta.segment(c, len).transpose().array();
      if (!accumulate) dg.setZero(), db.setZero();
      for (Eigen::Index i = 0; i < n; ++i) {
        const auto dyi = dy.row(i).segment(c, len).array();
        dg += dyi * ((x.row(i).segment(c, len).array() - mean[i]) * rstd[i]);
        db += dyi;
      }
    });
    // dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with g = dy · gamma, x̂ = (x − mean) · rstd:
    // expressions, evaluated where used (cheaper than storing rows that the next line reads).
    for_each_row(n, d, [&](Eigen::Index i) {
      const auto xhat = (x.row(i).array() - mean[i]) * rstd[i];
      const auto g = dy.row(i).array() * gamma.transpose().array();
      const T mean_g = g.mean();
      const T mean_gx = (g * xhat).mean();
      dx.row(i) = (rstd[i] * (g - mean_g - xhat * mean_gx)).matrix();
    });
  }
  /// The parameter gradients of a Linear `w` (out × d) whose input is a LayerNorm's output
  /// `x̂·γ + β`, and of that LayerNorm, from `m = dyᵀ·x̂` (out × d) and `s = Σ_rows dy` (dy the
  /// Linear's output gradient): `dW = m·diag(γ) + s·βᵀ`, `db = s`, `dγ = Σ_k w_k ⊙ m_k`,
  /// `dβ = wᵀ·s`; with `accumulate`, each added to what it holds. `m` is a workspace (another
  /// backend may overwrite it). dW by rows, dγ and dβ by runs of columns summed in row order.
  template <class M, class W, class G, class Bv, class Sv, class Dw, class Db, class Dg, class Dbeta>
  void layer_norm_linear_gradients(M& m, const W& w, const G& gamma, const Bv& beta, const Sv& s, Dw& dw, Db& db,
                                   Dg& dgamma, Dbeta& dbeta, bool accumulate = false) const {
    const Eigen::Index out = m.rows(), d = m.cols();
    for_each_row(out, d, [&](Eigen::Index k) {
      const T sk = s[k];
      const auto v = m.row(k).array() * gamma.transpose().array() + sk * beta.transpose().array();
      if (accumulate) {
        dw.row(k).array() += v;
        db[k] += sk;
      } else {
        dw.row(k) = v.matrix();
        db[k] = sk;
      }
    });
    for_each_column_run(out, d, [&](Eigen::Index c, Eigen::Index len) {
      auto dg = dgamma.segment(c, len).transpose().array();
      auto dbt = dbeta.segment(c, len).transpose().array();
      if (!accumulate) dg.setZero(), dbt.setZero();
      for (Eigen::Index k = 0; k < out; ++k) {
        const auto wk = w.row(k).segment(c, len).array();
        dg += wk * m.row(k).segment(c, len).array();
        dbt += wk * s[k];
      }
    });
  }
};

}  // namespace fusemix::cpu
