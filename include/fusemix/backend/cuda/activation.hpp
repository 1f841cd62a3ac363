// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's GELU and dropout, alone and fused with the bias of the preceding Linear
/// (the same masks as the CPU backend's, from backend/common/dropout.hpp).
#pragma once

#include <fusemix/backend/common/dropout.hpp>
#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/activation.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cuda {

/// The activation and dropout group of `cuda::backend` (`ActivationOps`), which is `Derived`.
template <Scalar T, System S, class Derived>
class activation_ops {
 public:
  /// `y = GELU(x)`.
  template <class X, class Y>
  void gelu_forward(const X& x, Y& y) const {
    const auto prof = self().ctx().profile("gelu_forward");
    for_n(self().ctx(), x.size(), detail::gelu_elements<T>{x.data(), y.data()});
  }
  /// `dx = dy · GELU'(x)`.
  template <class Dy, class X, class Dx>
  void gelu_backward(const Dy& dy, const X& x, Dx& dx) const {
    const auto prof = self().ctx().profile("gelu_backward");
    for_n(self().ctx(), x.size(), detail::gelu_backward_elements<T>{dy.data(), x.data(), dx.data()});
  }
  /// `y = mask ⊙ x / (1 − p)` with the mask of `key`.
  template <class X, class Y>
  void dropout_forward(const X& x, const dropout_key& key, Y& y) const {
    const auto prof = self().ctx().profile("dropout");
    if (key.p <= 0.0)
      copy_within(self().ctx(), x.data(), y.data(), x.size());
    else
      for_n(self().ctx(), x.size(), detail::dropout_elements<T>{x.data(), y.data(), detail::mask_key<T>::of(key)});
  }
  /// `dx = mask ⊙ dy / (1 − p)`, regenerating the mask of `key`.
  template <class Dy, class Dx>
  void dropout_backward(const Dy& dy, const dropout_key& key, Dx& dx) const { dropout_forward(dy, key, dx); }
  /// Fused `a += b` (row-wise), `h = dropout(GELU(a))`; `a` keeps the pre-activation.
  template <class A, class V, class H>
  void bias_gelu_dropout_forward(A& a, const V& b, const dropout_key& key, H& h) const {
    const auto prof = self().ctx().profile("bias_gelu_dropout_forward");
    for_rows(self().ctx(), a.rows(),
             detail::bias_gelu_dropout_rows<T>{a.data(), b.data(), h.data(), a.cols(), detail::mask_key<T>::of(key)});
  }
  /// `da = dh ⊙ mask / (1 − p) ⊙ GELU'(a)`; `da` may be `dh` itself.
  template <class Dh, class A, class Da>
  void gelu_dropout_backward(const Dh& dh, const A& a, const dropout_key& key, Da& da) const {
    const auto prof = self().ctx().profile("gelu_dropout_backward");
    for_rows(self().ctx(), a.rows(),
             detail::gelu_dropout_backward_rows<T>{dh.data(), a.data(), da.data(), a.cols(),
                                                   detail::mask_key<T>::of(key)});
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

}  // namespace fusemix::cuda
