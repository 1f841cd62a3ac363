// SPDX-License-Identifier: Apache-2.0
/// @file
/// LayerNorm over each row with an affine transform (`nn.LayerNorm`), forward and backward.
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

/// LayerNorm over the last dimension with an affine transform, eps 1e-5 (`nn.LayerNorm(d)`).
template <Backend B = default_backend>
class layer_norm {
 public:
  using backend_type = B;
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;
  using vector_type = typename B::vector_type;

  layer_norm(parameter_layout& layout, const std::string& prefix, std::size_t dim, double eps = 1e-5, B be = {})
      : be_(std::move(be)), dim_(dim), eps_(eps),
        w_(layout.add(prefix + "weight", {dim}, false)), b_(layout.add(prefix + "bias", {dim}, false)) {}

  void bind(scalar_type* params, scalar_type* grads) noexcept { p_ = params, g_ = grads; }
  /// PyTorch's init: weight 1, bias 0.
  void reset_parameters() {
    for (std::size_t i = 0; i < dim_; ++i) p_[w_ + i] = scalar_type(1), p_[b_ + i] = scalar_type(0);
  }

  /// `y = LN(x)`; keeps each row's mean and 1/σ for backward.
  void forward(const matrix_type& x, matrix_type& y) {
    if (be_.cols(x) != dim_)
      throw_shape_error("fusemix::layer_norm::forward", "input columns must equal dim", dim_, be_.cols(x));
    be_.resize(y, be_.rows(x), dim_);
    be_.layer_norm_forward(x, gamma(), beta(), static_cast<scalar_type>(eps_), y, mean_, rstd_);
  }
  /// `y = LN(x)` with the rows' statistics in the caller's `mean`, `rstd`: the const path of
  /// evaluation (`fusion_adapter::embed`), which leaves the layer's state alone.
  void infer(const matrix_type& x, matrix_type& y, vector_type& mean, vector_type& rstd) const {
    if (be_.cols(x) != dim_)
      throw_shape_error("fusemix::layer_norm::infer", "input columns must equal dim", dim_, be_.cols(x));
    be_.resize(y, be_.rows(x), dim_);
    be_.layer_norm_forward(x, gamma(), beta(), static_cast<scalar_type>(eps_), y, mean, rstd);
  }
  /// Writes `dγ`, `dβ` (with `accumulate`, adds them to the gradients held) and returns `dx`
  /// through `dx`; `x` is the input given to forward.
  void backward(const matrix_type& x, const matrix_type& dy, matrix_type& dx, bool accumulate = false) {
    be_.resize(dx, be_.rows(x), dim_);
    auto dg = be_.map(g_ + w_, dim_);
    auto db = be_.map(g_ + b_, dim_);
    be_.layer_norm_backward(dy, x, gamma(), mean_, rstd_, dx, dg, db, accumulate);
  }

  [[nodiscard]] auto gamma() const noexcept { return be_.map(std::as_const(p_) + w_, dim_); }
  [[nodiscard]] auto beta() const noexcept { return be_.map(std::as_const(p_) + b_, dim_); }
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }

 private:
  B be_;
  std::size_t dim_;
  double eps_;
  std::size_t w_, b_;
  scalar_type* p_ = nullptr;
  scalar_type* g_ = nullptr;
  vector_type mean_, rstd_;
};

}  // namespace fusemix
