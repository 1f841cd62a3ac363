// SPDX-License-Identifier: Apache-2.0
/// @file
/// The pre-LN residual block of the fusion adapter (LayerNorm, Linear, GELU, Dropout, Linear).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include <fusemix/backend/common/dropout.hpp>
#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/random.hpp>
#include <fusemix/nn/activation.hpp>
#include <fusemix/nn/layer_norm.hpp>
#include <fusemix/nn/linear.hpp>
#include <fusemix/nn/parameter.hpp>

namespace fusemix {

/// The pre-LN residual block of the adapter: `y = x + W2·Dropout(GELU(W1·LN(x) + b1)) + b2`,
/// with PyTorch names `ln.*`, `fn.0.*` (W1: e·d×d) and `fn.3.*` (W2: d×e·d).
///
/// Bias, GELU and dropout run as one fused elementwise pass.
template <Backend B = default_backend>
class block {
 public:
  using backend_type = B;
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;
  using vector_type = typename B::vector_type;

  block(parameter_layout& layout, const std::string& prefix, std::size_t dim, std::size_t expansion,
        double dropout_p, std::uint64_t seed, B be = {})
      : be_(be), ln_(layout, prefix + "ln.", dim, 1e-5, be), fc1_(layout, prefix + "fn.0.", dim, expansion * dim, be),
        fc2_(layout, prefix + "fn.3.", expansion * dim, dim, be), drop_(dropout_p, seed, be) {}

  void bind(scalar_type* params, scalar_type* grads) noexcept {
    ln_.bind(params, grads), fc1_.bind(params, grads), fc2_.bind(params, grads);
  }
  void reset_parameters(philox_engine& rng) {
    ln_.reset_parameters();
    fc1_.reset_parameters(rng);
    fc2_.reset_parameters(rng);
  }

  /// `y = block(x)`; dropout uses draw number `draw` when `training`, with the masks of rows
  /// `first_row …` of a batch (`x` a slice of it; 0 for a whole batch).
  void forward(const matrix_type& x, matrix_type& y, bool training, std::uint64_t draw, std::size_t first_row = 0) {
    key_ = drop_.key(training, draw);
    ln_.forward(x, u_);
    fc1_.forward_without_bias(u_, a_);
    key_.offset = std::uint64_t{first_row} * be_.cols(a_);
    be_.resize(h_, be_.rows(a_), be_.cols(a_));
    be_.bias_gelu_dropout_forward(a_, fc1_.bias(), key_, h_);
    fc2_.forward(h_, y);
    be_.axpy(scalar_type(1), x, y);
  }
  /// The caller's buffers of `infer`.
  struct inference_buffers {
    matrix_type u, a, h;
    vector_type mean, rstd;
  };
  /// `y = block(x)` in evaluation mode (no dropout) on the caller's buffers: the const path.
  void infer(const matrix_type& x, matrix_type& y, inference_buffers& w) const {
    ln_.infer(x, w.u, w.mean, w.rstd);
    fc1_.forward_without_bias(w.u, w.a);
    be_.resize(w.h, be_.rows(w.a), be_.cols(w.a));
    be_.bias_gelu_dropout_forward(w.a, fc1_.bias(), drop_.key(false, 0), w.h);
    fc2_.forward(w.h, y);
    be_.axpy(scalar_type(1), x, y);
  }
  /// The workspaces of `backward`: the hidden and the LayerNorm output's gradients. A model of
  /// many blocks passes one set to all of them (they are used one block at a time).
  struct backward_buffers {
    matrix_type dh, du;
  };
  /// Writes every parameter gradient (with `accumulate`, adds to the gradients held) and returns
  /// `dx` through `dx`; `x` is forward's input.
  void backward(const matrix_type& x, const matrix_type& dy, matrix_type& dx, bool accumulate = false) {
    backward(x, dy, dx, own_, accumulate);
  }
  /// `backward` with the caller's workspaces.
  void backward(const matrix_type& x, const matrix_type& dy, matrix_type& dx, backward_buffers& w,
                bool accumulate = false) {
    fc2_.backward(h_, dy, w.dh, accumulate);
    be_.gelu_dropout_backward(w.dh, a_, key_, w.dh);  // in place: dh becomes the pre-activation's gradient
    fc1_.backward(u_, w.dh, w.du, accumulate);
    ln_.backward(x, w.du, dx, accumulate);
    be_.axpy(scalar_type(1), dy, dx);
  }
  /// `backward` without `dx`, for a block whose input needs no gradient (a model's first): the
  /// LayerNorm and the first Linear from one product (`layer_norm_linear_parameter_gradients`).
  void backward_parameters(const matrix_type& x, const matrix_type& dy, backward_buffers& w,
                           layer_norm_linear_buffers<B>& first, bool accumulate = false) {
    fc2_.backward(h_, dy, w.dh, accumulate);
    be_.gelu_dropout_backward(w.dh, a_, key_, w.dh);
    std::swap(first.xhat, w.du);  // x̂ where du would be: no du is formed
    layer_norm_linear_parameter_gradients(be_, ln_, fc1_, x, w.dh, first, accumulate);
    std::swap(first.xhat, w.du);
  }

  [[nodiscard]] std::size_t dim() const noexcept { return ln_.dim(); }
  /// The seed of this block's dropout masks.
  void set_dropout_seed(std::uint64_t seed) noexcept { drop_.set_seed(seed); }

 private:
  B be_;
  layer_norm<B> ln_;
  linear<B> fc1_, fc2_;
  dropout<B> drop_;
  dropout_key key_{};
  matrix_type u_, a_, h_;      // LN output, pre-activation (bias added), dropout output
  backward_buffers own_;       // backward's workspaces when the caller passes none
};

}  // namespace fusemix
