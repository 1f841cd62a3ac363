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
#include <fusemix/loss/normalized_pair.hpp>

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
  static constexpr std::string_view name = "contrastive";
  /// The learnable scalars as the weight file names them.
  static constexpr std::array<std::string_view, 1> parameter_names{"temp"};

  explicit contrastive_loss(B be = {}) : be_(be), pair_(std::move(be)) {}

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

  [[nodiscard]] const matrix_type& dx() const noexcept { return pair_.dpx(); }
  [[nodiscard]] const matrix_type& dy() const noexcept { return pair_.dpy(); }
  /// The temperature's gradient of the last backward.
  [[nodiscard]] scalar_type dtemperature() const noexcept { return dtemperature_[0]; }
  /// Holds at most `rows` rows of the B×B logits and their gradient at a time (0, the default:
  /// all B). In blocks, backward computes each block's logits again: one more B×B×D product per
  /// step, for 2·rows·B values of memory instead of 2·B².
  void set_row_block(std::size_t rows) noexcept { pair_.set_row_block(rows); }
  [[nodiscard]] std::size_t row_block() const noexcept { return pair_.row_block(); }
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
  detail::normalized_pair<B> pair_;
  matrix_type logits_, g_;  // a block of rows of the logits and their gradient
  typename B::vector_type row_lse_, diag_, col_max_, col_sum_, col_lse_;
  // Rows first … of the logits, S/τ, into the block buffer.
  auto logits_rows(std::size_t first, std::size_t count) {
    auto l = be_.map(logits_.data(), count, pair_.rows());
    be_.gemm(scalar_type(1) / t_, pair_.x_rows(first, count), false, pair_.y(), true, scalar_type(0), l);
    return l;
  }
};

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <Backend B>
auto contrastive_loss<B>::forward(const matrix_type& px, const matrix_type& py, scalar_type t) -> scalar_type {
  constexpr const char* where = "fusemix::contrastive_loss::forward";
  pair_.forward(where, px, py);
  if (!(t > 0) || !std::isfinite(static_cast<double>(t)))
    throw_expected<numeric_error>(where, "temperature must be positive and finite", "> 0", t);
  const std::size_t n = pair_.rows(), rows = pair_.block_rows();
  be_.resize(logits_, rows, n), be_.resize(g_, rows, n);
  for (auto* v : {&row_lse_, &diag_, &col_max_, &col_sum_, &col_lse_}) be_.resize(*v, n);
  t_ = t;
  pair_.for_each_block([&](std::size_t first, std::size_t count) {
    be_.softmax_statistics(logits_rows(first, count), first, row_lse_, diag_, col_max_, col_sum_);
  });
  const scalar_type loss = be_.symmetric_cross_entropy_loss(row_lse_, diag_, col_max_, col_sum_, col_lse_);
  if (!std::isfinite(static_cast<double>(loss)))
    throw_expected<numeric_error>(where, "the loss is not finite", "a finite value", loss);
  return loss;
}

template <Backend B>
void contrastive_loss<B>::backward() {
  // logits = S/τ: dL/dτ = Σ G ⊙ (−S/τ²) = −Σ G ⊙ logits / τ. One block still holds the logits
  // of forward; more compute theirs again.
  const std::size_t n = pair_.rows();
  scalar_type sum = 0;
  pair_.for_each_block([&](std::size_t first, std::size_t count) {
    const auto l = pair_.blocked() ? logits_rows(first, count) : be_.map(logits_.data(), count, n);
    auto g = be_.map(g_.data(), count, n);
    be_.symmetric_cross_entropy_gradient(l, first, row_lse_, col_lse_, g);
    sum += be_.dot(g, l);
    pair_.backward_rows(scalar_type(1) / t_, g, first);
  });
  pair_.finish_backward();
  dtemperature_[0] = -sum / t_;
}

}  // namespace fusemix
