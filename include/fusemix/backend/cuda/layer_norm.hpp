// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's LayerNorm over each row, forward and backward.
#pragma once

#include <cstddef>

#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/layer_norm.hpp>
#include <fusemix/backend/cuda/memory.hpp>
#include <fusemix/backend/cuda/rows.hpp>
#include <fusemix/backend/cuda/storage.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cuda {

/// The LayerNorm group of `cuda::backend` (`LayerNormOps`), which is `Derived`.
template <Scalar T, System S, class Derived>
class layer_norm_ops {
 public:
  /// `y = LayerNorm(x)·γ + β` per row, keeping the rows' mean and 1/σ.
  template <class X, class G, class Bv, class Y>
  void layer_norm_forward(const X& x, const G& gamma, const Bv& beta, T eps, Y& y, vector<T, S>& mean,
                          vector<T, S>& rstd) const {
    const auto prof = self().ctx().profile("layer_norm_forward");
    storage<T, S>::resize(mean, x.rows());
    storage<T, S>::resize(rstd, x.rows());
    for_rows(self().ctx(), x.rows(),
             detail::layer_norm_forward_rows<T>{x.data(), gamma.data(), beta.data(), eps, y.data(), mean.data(),
                                                rstd.data(), x.cols()});
  }
  /// The gradients of `layer_norm_forward`: dx, and dγ, dβ (column sums; with `accumulate`,
  /// added to what they hold).
  template <class Dy, class X, class G, class Dx, class Dg, class Db>
  void layer_norm_backward(const Dy& dy, const X& x, const G& gamma, const vector<T, S>& mean,
                           const vector<T, S>& rstd, Dx& dx, Dg& dgamma, Db& dbeta, bool accumulate = false) const {
    context<S>& c = self().ctx();
    const auto prof = c.profile("layer_norm_backward");
    const std::size_t n = x.rows(), d = x.cols();
    T* prod = c.template scratch<T>(context<S>::mask, n * d);
    for_rows(c, n,
             detail::layer_norm_backward_rows<T>{dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(),
                                                 dx.data(), prod, d});
    detail::column_sums(c, prod, n, d, dgamma.data(), accumulate);
    detail::column_sums(c, dy.data(), n, d, dbeta.data(), accumulate);
  }
  /// The parameter gradients of a Linear `w` (out × d) that reads a LayerNorm's output, and of
  /// that LayerNorm, from `m = dyᵀ·x̂` and `s = Σ_rows dy` (as the CPU backend's): dW, db by rows;
  /// dγ, dβ as column sums of `w ⊙ m` (written over `m`) and of `w·s_k` (in scratch).
  template <class M, class W, class G, class Bv, class Sv, class Dw, class Db, class Dg, class Dbeta>
  void layer_norm_linear_gradients(M& m, const W& w, const G& gamma, const Bv& beta, const Sv& s, Dw& dw, Db& db,
                                   Dg& dgamma, Dbeta& dbeta, bool accumulate = false) const {
    context<S>& c = self().ctx();
    const auto prof = c.profile("layer_norm_linear_gradients");
    const std::size_t out = m.rows(), d = m.cols();
    T* ws = c.template scratch<T>(context<S>::mask, out * d);
    for_rows(c, out,
             detail::layer_norm_linear_rows<T>{m.data(), w.data(), gamma.data(), beta.data(), s.data(), dw.data(),
                                               db.data(), ws, d, accumulate});
    detail::column_sums(c, m.data(), out, d, dgamma.data(), accumulate);
    detail::column_sums(c, ws, out, d, dbeta.data(), accumulate);
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

}  // namespace fusemix::cuda
