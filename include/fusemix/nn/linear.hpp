// SPDX-License-Identifier: Apache-2.0
/// @file
/// The Linear layer `y = x·Wᵀ + b` (`nn.Linear`), forward and backward.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/core/random.hpp>
#include <fusemix/nn/parameter.hpp>

namespace fusemix {

/// `y = x·Wᵀ + b` with `W` stored out×in (PyTorch's layout) and PyTorch's default init
/// (`W`, `b` ~ U(±1/√in)).
///
/// **Example**
///
///     fusemix::parameter_layout layout;
///     fusemix::linear<> fc(layout, "fc.", 16, 4);
///     fusemix::parameter_buffer<float> p(layout.size()), g(layout.size());
///     fc.bind(p.data(), g.data());
///     fusemix::philox_engine rng(1);
///     fc.reset_parameters(rng);
///     fc.forward(x, y);  // x: B×16, y: B×4
template <Backend B = default_backend>
class linear {
 public:
  using backend_type = B;
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;

  linear(parameter_layout& layout, const std::string& prefix, std::size_t in, std::size_t out, B be = {})
      : be_(std::move(be)), in_(in), out_(out),
        w_(layout.add(prefix + "weight", {out, in}, true)), b_(layout.add(prefix + "bias", {out}, false)) {}

  /// Points the layer at the model's parameter and gradient buffers.
  void bind(scalar_type* params, scalar_type* grads) noexcept { p_ = params, g_ = grads; }
  /// PyTorch's `nn.Linear` init: weight and bias uniform in ±1/√in.
  void reset_parameters(philox_engine& rng) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
    for (std::size_t i = 0; i < in_ * out_; ++i) p_[w_ + i] = static_cast<scalar_type>((2 * rng.uniform() - 1) * bound);
    for (std::size_t i = 0; i < out_; ++i) p_[b_ + i] = static_cast<scalar_type>((2 * rng.uniform() - 1) * bound);
  }

  /// `y = x·Wᵀ + b`.
  void forward(const matrix_type& x, matrix_type& y) const {
    forward_without_bias(x, y);
    auto b = be_.map(std::as_const(p_) + b_, out_);
    be_.add_row_vector(y, b);
  }
  /// `y = x·Wᵀ` (a caller that fuses the bias into a following elementwise pass).
  void forward_without_bias(const matrix_type& x, matrix_type& y) const {
    check_input(x);
    be_.resize(y, be_.rows(x), out_);
    be_.gemm(scalar_type(1), x, false, weight(), true, scalar_type(0), y);
  }
  /// Writes `dW = dyᵀ·x`, `db = Σ dy` (with `accumulate`, adds them to the gradients held) and
  /// returns `dx = dy·W` through `dx`.
  void backward(const matrix_type& x, const matrix_type& dy, matrix_type& dx, bool accumulate = false) {
    be_.resize(dx, be_.rows(dy), in_);
    auto dw = be_.map(g_ + w_, out_, in_);
    auto db = be_.map(g_ + b_, out_);
    if (accumulate) {
      be_.gemm(scalar_type(1), dy, true, x, false, scalar_type(1), dw);
      be_.gemm(scalar_type(1), dy, false, weight(), false, scalar_type(0), dx);
    } else {  // both products read dy: one call, so a backend can prepare it once
      be_.gemm_shared(scalar_type(1), dy, true, x, false, dw, false, weight(), false, dx);
    }
    be_.column_sums(dy, db, accumulate);
  }
  /// Writes (or, `accumulate`, adds) `dW` and `db` only (the first layer of a model needs no
  /// input gradient).
  void backward_parameters(const matrix_type& x, const matrix_type& dy, bool accumulate = false) {
    auto dw = be_.map(g_ + w_, out_, in_);
    auto db = be_.map(g_ + b_, out_);
    be_.gemm(scalar_type(1), dy, true, x, false, accumulate ? scalar_type(1) : scalar_type(0), dw);
    be_.column_sums(dy, db, accumulate);
  }

  [[nodiscard]] auto weight() const noexcept { return be_.map(std::as_const(p_) + w_, out_, in_); }
  [[nodiscard]] auto bias() const noexcept { return be_.map(std::as_const(p_) + b_, out_); }
  /// The gradients' views (`layer_norm_linear_parameter_gradients` writes them).
  [[nodiscard]] auto weight_gradient() noexcept { return be_.map(g_ + w_, out_, in_); }
  [[nodiscard]] auto bias_gradient() noexcept { return be_.map(g_ + b_, out_); }
  [[nodiscard]] std::size_t in_dim() const noexcept { return in_; }
  [[nodiscard]] std::size_t out_dim() const noexcept { return out_; }

 private:
  void check_input(const matrix_type& x) const {
    if (be_.cols(x) != in_)
      throw_shape_error("fusemix::linear::forward", "input columns must equal in_dim", in_, be_.cols(x));
  }

  B be_;
  std::size_t in_, out_, w_, b_;
  scalar_type* p_ = nullptr;
  scalar_type* g_ = nullptr;
};

}  // namespace fusemix
