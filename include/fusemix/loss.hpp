// SPDX-License-Identifier: Apache-2.0
/// @file
/// The symmetric contrastive (InfoNCE) loss over L2-normalised adapter outputs, with a learnable
/// temperature.
#pragma once

#include <algorithm>
#include <cmath>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/concepts.hpp>
#include <fusemix/error.hpp>

namespace fusemix {

/// The temperature's initial value and the range it is clamped to before every step.
struct temperature_limits {
  static constexpr double initial = 0.07, min = 0.001, max = 0.5;
  /// `clamp(t, min, max)`, as the authors' `temp.clamp_(0.001, 0.5)`.
  [[nodiscard]] static constexpr double clamp(double t) noexcept { return std::clamp(t, min, max); }
};

/// `loss = ½·(CE(S/τ, diag) + CE(Sᵀ/τ, diag))` with `S = normalize(px)·normalize(py)ᵀ`, mean over
/// rows; normalisation as `F.normalize` (eps 1e-12), the temperature a divisor.
///
/// **Example**
///
///     fusemix::contrastive_loss<> loss;
///     double l = loss.forward(px, py, 0.07);
///     loss.backward();   // then loss.dx(), loss.dy(), loss.dtemperature()
template <Backend B = cpu::backend<float>>
class contrastive_loss {
 public:
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;
  using vector_type = typename B::vector_type;
  static constexpr double normalize_eps = 1e-12;

  explicit contrastive_loss(B be = {}) : be_(std::move(be)) {}

  /// The loss of paired rows `px`, `py` (B×D each) at temperature `t` (> 0). Keeps what backward needs.
  /// @throws shape_error if the shapes differ or are empty; numeric_error if `t` is not positive
  ///         or the loss is not finite.
  scalar_type forward(const matrix_type& px, const matrix_type& py, scalar_type t);
  /// Gradients of the last forward with respect to px, py and the temperature.
  void backward();

  [[nodiscard]] const matrix_type& dx() const noexcept { return dpx_; }
  [[nodiscard]] const matrix_type& dy() const noexcept { return dpy_; }
  [[nodiscard]] scalar_type dtemperature() const noexcept { return dt_; }
  /// The logits S/τ of the last forward (B×B).
  [[nodiscard]] const matrix_type& logits() const noexcept { return logits_; }

 private:
  B be_;
  scalar_type t_ = 0, dt_ = 0;
  matrix_type nx_, ny_, logits_, g_, dnx_, dny_, dpx_, dpy_;
  vector_type norm_x_, norm_y_;
};

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <Backend B>
auto contrastive_loss<B>::forward(const matrix_type& px, const matrix_type& py, scalar_type t) -> scalar_type {
  constexpr const char* where = "fusemix::contrastive_loss::forward";
  if (be_.rows(px) != be_.rows(py) || be_.cols(px) != be_.cols(py))
    detail::throw_shape_error(where, "both sides must have the same shape",
                              detail::concat(be_.rows(px), "x", be_.cols(px)),
                              detail::concat(be_.rows(py), "x", be_.cols(py)));
  if (be_.rows(px) == 0 || be_.cols(px) == 0)
    detail::throw_shape_error(where, "the batch must not be empty", ">= 1 row and column", "0");
  if (!(t > 0) || !std::isfinite(static_cast<double>(t)))
    detail::throw_expected<numeric_error>(where, "temperature must be positive and finite", "> 0", t);
  const std::size_t n = be_.rows(px), d = be_.cols(px);
  be_.resize(nx_, n, d), be_.resize(ny_, n, d), be_.resize(logits_, n, n), be_.resize(g_, n, n);
  be_.normalize_rows_forward(px, scalar_type(normalize_eps), nx_, norm_x_);
  be_.normalize_rows_forward(py, scalar_type(normalize_eps), ny_, norm_y_);
  t_ = t;
  be_.gemm(scalar_type(1) / t, nx_, false, ny_, true, scalar_type(0), logits_);
  const scalar_type loss = be_.symmetric_cross_entropy(logits_, g_);
  if (!std::isfinite(static_cast<double>(loss)))
    detail::throw_expected<numeric_error>(where, "the loss is not finite", "a finite value", loss);
  return loss;
}

template <Backend B>
void contrastive_loss<B>::backward() {
  const std::size_t n = be_.rows(nx_), d = be_.cols(nx_);
  // logits = S/τ: dL/dτ = Σ G ⊙ (−S/τ²) = −Σ G ⊙ logits / τ.
  dt_ = -be_.dot(g_, logits_) / t_;
  be_.resize(dnx_, n, d), be_.resize(dny_, n, d), be_.resize(dpx_, n, d), be_.resize(dpy_, n, d);
  be_.gemm_shared(scalar_type(1) / t_, g_, false, ny_, false, dnx_, true, nx_, false, dny_);
  be_.normalize_rows_backward(dnx_, nx_, norm_x_, scalar_type(normalize_eps), dpx_);
  be_.normalize_rows_backward(dny_, ny_, norm_y_, scalar_type(normalize_eps), dpy_);
}

}  // namespace fusemix
