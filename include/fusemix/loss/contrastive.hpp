// SPDX-License-Identifier: Apache-2.0
/// @file
/// The symmetric contrastive (InfoNCE) loss over L2-normalised adapter outputs, with a learnable
/// temperature (the paper's loss, and the trainer's default).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <string_view>
#include <utility>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/loss/concepts.hpp>

namespace fusemix {

/// The temperature's initial value and the range it is clamped to before every step.
struct temperature_limits {
  static constexpr double initial = 0.07, min = 0.001, max = 0.5;
  /// `clamp(t, min, max)`, as the authors' `temp.clamp_(0.001, 0.5)`.
  [[nodiscard]] static constexpr double clamp(double t) noexcept { return std::clamp(t, min, max); }
};

/// `loss = ½·(CE(S/τ, diag) + CE(Sᵀ/τ, diag))` with `S = normalize(px)·normalize(py)ᵀ`, mean over
/// rows; normalisation as `F.normalize` (eps 1e-12), the temperature τ (`temp`) a divisor,
/// learnable, clamped to [0.001, 0.5] before each step.
///
/// **Example**
///
///     fusemix::contrastive_loss<> loss;
///     double l = loss.forward(px, py);   // at loss.temperature()
///     loss.backward();                   // then loss.dx(), loss.dy(), loss.gradients()[0] (dτ)
template <Backend B = default_backend>
class contrastive_loss {
 public:
  using backend_type = B;
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;
  using vector_type = typename B::vector_type;
  static constexpr double normalize_eps = 1e-12;
  static constexpr std::string_view name = "contrastive";
  /// The learnable scalars as the weight file names them.
  static constexpr std::array<std::string_view, 1> parameter_names{"temp"};

  explicit contrastive_loss(B be = {}) : be_(std::move(be)) {}

  /// The loss of paired rows `px`, `py` (B×D each) at the current temperature. Keeps what
  /// backward needs.
  /// @throws shape_error if the shapes differ or are empty; numeric_error if the temperature is
  ///         not positive or the loss is not finite.
  scalar_type forward(const matrix_type& px, const matrix_type& py) { return forward(px, py, temperature_[0]); }
  /// The loss at temperature `t` (> 0), which the next `backward` differentiates at.
  scalar_type forward(const matrix_type& px, const matrix_type& py, scalar_type t);
  /// Gradients of the last forward with respect to px, py and the temperature.
  void backward();
  /// Clamps the temperature into [0.001, 0.5] (before every step, as the authors do).
  void prepare() noexcept {
    temperature_[0] = static_cast<scalar_type>(temperature_limits::clamp(static_cast<double>(temperature_[0])));
  }

  [[nodiscard]] const matrix_type& dx() const noexcept { return dpx_; }
  [[nodiscard]] const matrix_type& dy() const noexcept { return dpy_; }
  /// The temperature's gradient of the last backward.
  [[nodiscard]] scalar_type dtemperature() const noexcept { return dtemperature_[0]; }
  /// The logits S/τ of the last forward (B×B).
  [[nodiscard]] const matrix_type& logits() const noexcept { return logits_; }
  [[nodiscard]] scalar_type temperature() const noexcept { return temperature_[0]; }
  void set_temperature(scalar_type t) noexcept { temperature_[0] = t; }
  /// `{τ}` on the host, and its gradient.
  [[nodiscard]] std::span<scalar_type> parameters() noexcept { return temperature_; }
  [[nodiscard]] std::span<const scalar_type> parameters() const noexcept { return temperature_; }
  [[nodiscard]] std::span<scalar_type> gradients() noexcept { return dtemperature_; }

 private:
  B be_;
  std::array<scalar_type, 1> temperature_{static_cast<scalar_type>(temperature_limits::initial)}, dtemperature_{};
  scalar_type t_ = 0;  // the temperature of the last forward
  matrix_type nx_, ny_, logits_, g_, dnx_, dny_, dpx_, dpy_;
  vector_type norm_x_, norm_y_;
};

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

namespace detail {
/// The checks every loss makes of a batch: equal, non-empty shapes.
template <class B>
void check_loss_batch(const B& be, const char* where, const typename B::matrix_type& px,
                      const typename B::matrix_type& py) {
  if (be.rows(px) != be.rows(py) || be.cols(px) != be.cols(py))
    throw_shape_error(where, "both sides must have the same shape", concat(be.rows(px), "x", be.cols(px)),
                      concat(be.rows(py), "x", be.cols(py)));
  if (be.rows(px) == 0 || be.cols(px) == 0)
    throw_shape_error(where, "the batch must not be empty", ">= 1 row and column", "0");
}
}  // namespace detail

template <Backend B>
auto contrastive_loss<B>::forward(const matrix_type& px, const matrix_type& py, scalar_type t) -> scalar_type {
  constexpr const char* where = "fusemix::contrastive_loss::forward";
  detail::check_loss_batch(be_, where, px, py);
  if (!(t > 0) || !std::isfinite(static_cast<double>(t)))
    throw_expected<numeric_error>(where, "temperature must be positive and finite", "> 0", t);
  const std::size_t n = be_.rows(px), d = be_.cols(px);
  be_.resize(nx_, n, d), be_.resize(ny_, n, d), be_.resize(logits_, n, n), be_.resize(g_, n, n);
  be_.normalize_rows_forward(px, scalar_type(normalize_eps), nx_, norm_x_);
  be_.normalize_rows_forward(py, scalar_type(normalize_eps), ny_, norm_y_);
  t_ = t;
  be_.gemm(scalar_type(1) / t, nx_, false, ny_, true, scalar_type(0), logits_);
  const scalar_type loss = be_.symmetric_cross_entropy(logits_, g_);
  if (!std::isfinite(static_cast<double>(loss)))
    throw_expected<numeric_error>(where, "the loss is not finite", "a finite value", loss);
  return loss;
}

template <Backend B>
void contrastive_loss<B>::backward() {
  const std::size_t n = be_.rows(nx_), d = be_.cols(nx_);
  // logits = S/τ: dL/dτ = Σ G ⊙ (−S/τ²) = −Σ G ⊙ logits / τ.
  dtemperature_[0] = -be_.dot(g_, logits_) / t_;
  be_.resize(dnx_, n, d), be_.resize(dny_, n, d), be_.resize(dpx_, n, d), be_.resize(dpy_, n, d);
  be_.gemm_shared(scalar_type(1) / t_, g_, false, ny_, false, dnx_, true, nx_, false, dny_);
  be_.normalize_rows_backward(dnx_, nx_, norm_x_, scalar_type(normalize_eps), dpx_);
  be_.normalize_rows_backward(dny_, ny_, norm_y_, scalar_type(normalize_eps), dpy_);
}

}  // namespace fusemix
