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
#include <vector>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/dist/communicator.hpp>
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
  /// The loss of the whole batch `px`, `py` (every process holds all of it, e.g. all-gathered)
  /// as rank `comm.rank()` of `comm.size()` processes that each take the terms of their rows,
  /// `dist::rank_rows(B, rank, size)`: the rows of `S/τ` and of `Sᵀ/τ` (the columns), two
  /// R×B products instead of one B×B. The rows' log-sum-exps are all-gathered (2·B values) and
  /// the loss summed over the ranks, so every rank returns the whole batch's loss; the next
  /// `backward` gives `dx()`, `dy()` of this rank's rows only and the temperature's gradient
  /// summed over the ranks. Every rank calls it, with the same batch.
  /// @throws as `forward`.
  scalar_type forward_shard(const matrix_type& px, const matrix_type& py, const dist::any_communicator& comm);
  /// Gradients of the last forward with respect to px, py (the shard's rows) and the temperature.
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
  // Sharded: the transposed logits' block and the rank's log-sum-exps before the all-gather.
  matrix_type logits_t_;
  typename B::vector_type shard_row_lse_, shard_col_lse_, diag_t_;
  dist::any_communicator comm_;  // the processes of the last forward_shard
  bool sharded_ = false;         // whether the last forward was forward_shard
  std::vector<std::size_t> counts_;  // each rank's rows
  // Rows first … of the logits, S/τ, into the block buffer.
  auto logits_rows(std::size_t first, std::size_t count) {
    auto l = be_.map(logits_.data(), count, pair_.rows());
    be_.gemm(scalar_type(1) / t_, pair_.x_rows(first, count), false, pair_.y(), true, scalar_type(0), l);
    return l;
  }
  // Rows first … of the transposed logits, Sᵀ/τ (the columns), into their block buffer.
  auto logits_t_rows(std::size_t first, std::size_t count) {
    auto l = be_.map(logits_t_.data(), count, pair_.rows());
    be_.gemm(scalar_type(1) / t_, pair_.y_rows(first, count), false, pair_.x(), true, scalar_type(0), l);
    return l;
  }
  void check_temperature(const char* where, scalar_type t) const {
    if (!(t > 0) || !std::isfinite(static_cast<double>(t)))
      throw_expected<numeric_error>(where, "temperature must be positive and finite", "> 0", t);
  }
  void backward_shard();
  // Σ over `rows` of `lse_i − diag_i` (col_max_ the scratch).
  double sum_of_terms(const typename B::vector_type& lse, const typename B::vector_type& diag, dist::row_range rows) {
    be_.resize(col_max_, rows.count);
    auto d = be_.map(col_max_.data(), rows.count, 1);
    be_.copy_n(lse.data() + rows.first, rows.count, col_max_.data());
    be_.axpy(scalar_type(-1), be_.map(diag.data() + rows.first, rows.count, 1), d);
    return static_cast<double>(be_.sum(d));
  }
};

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <Backend B>
auto contrastive_loss<B>::forward(const matrix_type& px, const matrix_type& py, scalar_type t) -> scalar_type {
  constexpr const char* where = "fusemix::contrastive_loss::forward";
  pair_.forward(where, px, py);
  check_temperature(where, t);
  sharded_ = false;
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
auto contrastive_loss<B>::forward_shard(const matrix_type& px, const matrix_type& py, const dist::any_communicator& comm)
    -> scalar_type {
  constexpr const char* where = "fusemix::contrastive_loss::forward_shard";
  const std::size_t n = be_.rows(px);
  const dist::row_range mine = dist::rank_rows(n, comm.rank(), comm.size());
  pair_.forward(where, px, py, mine);
  check_temperature(where, temperature_[0]);
  comm_ = comm, sharded_ = true;
  t_ = temperature_[0];
  const std::size_t rows = pair_.block_rows();
  be_.resize(logits_, rows, n), be_.resize(logits_t_, rows, n), be_.resize(g_, rows, n);
  for (auto* v : {&row_lse_, &col_lse_, &diag_, &shard_row_lse_, &shard_col_lse_, &diag_t_}) be_.resize(*v, n);
  // The rows' statistics of S/τ and of Sᵀ/τ (a column's log-sum-exp is its row's in Sᵀ/τ).
  pair_.for_each_block([&](std::size_t first, std::size_t count) {
    be_.row_softmax_statistics(logits_rows(first, count), first, shard_row_lse_, diag_);
    be_.row_softmax_statistics(logits_t_rows(first, count), first, shard_col_lse_, diag_t_);
  });
  // This rank's terms, summed over the ranks in rank order.
  std::array<double, 1> sum{sum_of_terms(shard_row_lse_, diag_, mine) + sum_of_terms(shard_col_lse_, diag_t_, mine)};
  comm.all_reduce_sum(std::span<double>(sum));
  // Every row's and every column's log-sum-exp on every rank, for the gradient of both.
  dist::rank_counts(n, comm.size(), 1, counts_);
  comm.all_gather(std::span<const scalar_type>(shard_row_lse_.data() + mine.first, mine.count), counts_,
                  std::span<scalar_type>(row_lse_.data(), n));
  comm.all_gather(std::span<const scalar_type>(shard_col_lse_.data() + mine.first, mine.count), counts_,
                  std::span<scalar_type>(col_lse_.data(), n));
  const auto loss = static_cast<scalar_type>(sum[0] * 0.5 / static_cast<double>(n));
  if (!std::isfinite(static_cast<double>(loss)))
    throw_expected<numeric_error>(where, "the loss is not finite", "a finite value", loss);
  return loss;
}

template <Backend B>
void contrastive_loss<B>::backward() {
  if (sharded_) return backward_shard();
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

template <Backend B>
void contrastive_loss<B>::backward_shard() {
  // The shard's rows of G (the gradient with respect to S/τ) give its rows of dx; its rows of Gᵀ
  // (the gradient with respect to Sᵀ/τ: the same formula with the rows' and the columns'
  // log-sum-exps swapped) its rows of dy. Each rank's rows of G ⊙ S/τ sum to its part of dτ.
  const std::size_t n = pair_.rows();
  std::array<double, 1> sum{0};
  pair_.for_each_block([&](std::size_t first, std::size_t count) {
    auto g = be_.map(g_.data(), count, n);
    const auto l = pair_.blocked() ? logits_rows(first, count) : be_.map(logits_.data(), count, n);
    be_.symmetric_cross_entropy_gradient(l, first, row_lse_, col_lse_, g);
    sum[0] += static_cast<double>(be_.dot(g, l));
    pair_.backward_x_rows(scalar_type(1) / t_, g, first);
    const auto lt = pair_.blocked() ? logits_t_rows(first, count) : be_.map(logits_t_.data(), count, n);
    be_.symmetric_cross_entropy_gradient(lt, first, col_lse_, row_lse_, g);
    pair_.backward_y_rows(scalar_type(1) / t_, g, first);
  });
  pair_.finish_backward();
  comm_.all_reduce_sum(std::span<double>(sum));
  dtemperature_[0] = static_cast<scalar_type>(-sum[0] / static_cast<double>(t_));
}

}  // namespace fusemix
