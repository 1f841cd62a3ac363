// SPDX-License-Identifier: Apache-2.0
/// @file
/// The pairwise sigmoid loss of SigLIP (Zhai et al., 2023) over L2-normalised adapter outputs,
/// with a learnable scale and bias.
#pragma once

#include <array>
#include <cmath>
#include <numbers>
#include <span>
#include <string_view>
#include <utility>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/dist/communicator.hpp>
#include <fusemix/loss/concepts.hpp>
#include <fusemix/loss/normalized_pair.hpp>

namespace fusemix {

/// `loss = −(1/B)·Σ_ij log σ(z_ij·(t·⟨x_i, y_j⟩ + b))` with `x = normalize(px)`, `y = normalize(py)`
/// (`F.normalize`, eps 1e-12), `z_ij = 1` on the diagonal and −1 elsewhere, `t = exp(t′)`.
/// `t′` (`logit_scale`, initially log 10) and `b` (`logit_bias`, initially −10) are learned, as
/// OpenCLIP names them. Every pair is its own binary problem: no softmax over the batch.
///
/// Memory: three B×B matrices (the similarities, the logits and their gradient), or three blocks
/// of their rows (`set_row_block`).
///
/// **Example**
///
///     fusemix::sigmoid_loss<> loss;
///     double l = loss.forward(px, py);
///     loss.backward();   // then loss.dx(), loss.dy(), loss.gradients() (dt′, db)
template <Backend B = default_backend>
class sigmoid_loss {
 public:
  using backend_type = B;
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;
  static constexpr double initial_logit_scale = std::numbers::ln10;  // t = 10
  static constexpr double initial_logit_bias = -10.0;
  static constexpr std::string_view name = "sigmoid";
  /// The learnable scalars as the weight file names them: t′ and b.
  static constexpr std::array<std::string_view, 2> parameter_names{"logit_scale", "logit_bias"};

  explicit sigmoid_loss(B be = {}) : be_(be), pair_(std::move(be)) {}

  /// The loss of paired rows `px`, `py` (B×D each). Keeps what backward needs.
  /// @throws shape_error if the shapes differ or are empty; numeric_error if t′ or b is not
  ///         finite, or the loss is not.
  scalar_type forward(const matrix_type& px, const matrix_type& py);
  /// The loss of the whole batch `px`, `py` (every process holds all of it, e.g. all-gathered)
  /// as rank `comm.rank()` of `comm.size()` processes that each take the pairs of their rows,
  /// `dist::rank_rows(B, rank, size)`, summed over the ranks: every rank returns the whole
  /// batch's loss. The next `backward` computes the shard's rows of `S` and of `Sᵀ` (two R×B
  /// products) and gives `dx()`, `dy()` of this rank's rows only and the gradients of t′ and b
  /// summed over the ranks. Every rank calls it, with the same batch.
  /// @throws as `forward`.
  scalar_type forward_shard(const matrix_type& px, const matrix_type& py, const dist::any_communicator& comm);
  /// Gradients of the last forward with respect to px, py (the shard's rows), t′ and b.
  void backward();
  /// Nothing to do before a step (t′ and b are unconstrained).
  void prepare() noexcept {}

  [[nodiscard]] const matrix_type& dx() const noexcept { return pair_.dpx(); }
  [[nodiscard]] const matrix_type& dy() const noexcept { return pair_.dpy(); }
  /// Holds at most `rows` rows of the B×B matrices at a time (0, the default: all B). In
  /// blocks, backward computes each block again: one more B×B×D product per step, for 3·rows·B
  /// values of memory instead of 3·B².
  void set_row_block(std::size_t rows) noexcept { pair_.set_row_block(rows); }
  [[nodiscard]] std::size_t row_block() const noexcept { return pair_.row_block(); }
  [[nodiscard]] scalar_type logit_scale() const noexcept { return params_[0]; }
  [[nodiscard]] scalar_type logit_bias() const noexcept { return params_[1]; }
  void set_logit_scale(scalar_type v) noexcept { params_[0] = v; }
  void set_logit_bias(scalar_type v) noexcept { params_[1] = v; }
  /// `{t′, b}` on the host, and their gradients.
  [[nodiscard]] std::span<scalar_type> parameters() noexcept { return params_; }
  [[nodiscard]] std::span<const scalar_type> parameters() const noexcept { return params_; }
  [[nodiscard]] std::span<scalar_type> gradients() noexcept { return grads_; }

 private:
  B be_;
  std::array<scalar_type, 2> params_{static_cast<scalar_type>(initial_logit_scale),
                                     static_cast<scalar_type>(initial_logit_bias)},
      grads_{};
  scalar_type t_ = 0;  // exp(t′) of the last forward
  detail::normalized_pair<B> pair_;
  matrix_type s_, logits_, g_;  // a block of rows of S, of the logits and of their gradient
  dist::any_communicator comm_;  // the processes of the last forward_shard
  bool sharded_ = false;         // whether the last forward was forward_shard
  // Rows first … of S (of Sᵀ, `transposed`) and of the logits t·S + b into the block buffers;
  // the gradient into g_'s. Returns the block's sum of loss terms.
  double compute_block(std::size_t first, std::size_t count, bool transposed = false) {
    const std::size_t n = pair_.rows();
    auto s = be_.map(s_.data(), count, n), l = be_.map(logits_.data(), count, n), g = be_.map(g_.data(), count, n);
    if (transposed)
      be_.gemm(scalar_type(1), pair_.y_rows(first, count), false, pair_.x(), true, scalar_type(0), s);
    else
      be_.gemm(scalar_type(1), pair_.x_rows(first, count), false, pair_.y(), true, scalar_type(0), s);
    be_.fill(l, params_[1]);
    be_.axpy(t_, s, l);
    return be_.sigmoid_cross_entropy(l, first, g);
  }
  scalar_type begin_forward(const char* where) {
    if (!std::isfinite(static_cast<double>(params_[0])) || !std::isfinite(static_cast<double>(params_[1])))
      throw_expected<numeric_error>(where, "logit_scale and logit_bias must be finite", "finite values",
                                    concat(params_[0], ", ", params_[1]));
    const std::size_t n = pair_.rows(), rows = pair_.block_rows();
    be_.resize(s_, rows, n), be_.resize(logits_, rows, n), be_.resize(g_, rows, n);
    t_ = static_cast<scalar_type>(std::exp(static_cast<double>(params_[0])));
    double sum = 0;
    pair_.for_each_block([&](std::size_t first, std::size_t count) { sum += compute_block(first, count); });
    if (sharded_) comm_.all_reduce_sum(std::span<double>(&sum, 1));
    const auto loss = static_cast<scalar_type>(sum / static_cast<double>(n));
    if (!std::isfinite(static_cast<double>(loss)))
      throw_expected<numeric_error>(where, "the loss is not finite", "a finite value", loss);
    return loss;
  }
};

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <Backend B>
auto sigmoid_loss<B>::forward(const matrix_type& px, const matrix_type& py) -> scalar_type {
  constexpr const char* where = "fusemix::sigmoid_loss::forward";
  pair_.forward(where, px, py);
  sharded_ = false;
  return begin_forward(where);
}

template <Backend B>
auto sigmoid_loss<B>::forward_shard(const matrix_type& px, const matrix_type& py, const dist::any_communicator& comm)
    -> scalar_type {
  constexpr const char* where = "fusemix::sigmoid_loss::forward_shard";
  pair_.forward(where, px, py, dist::rank_rows(be_.rows(px), comm.rank(), comm.size()));
  comm_ = comm, sharded_ = true;
  return begin_forward(where);
}

template <Backend B>
void sigmoid_loss<B>::backward() {
  // logits = t·S + b with t = exp(t′): dL/dt′ = t·Σ G ⊙ S, dL/db = Σ G, dS = t·G. One block still
  // holds forward's matrices; more compute theirs again.
  const std::size_t n = pair_.rows();
  scalar_type gs = 0, sum = 0;
  pair_.for_each_block([&](std::size_t first, std::size_t count) {
    if (pair_.blocked()) compute_block(first, count);
    const auto s = be_.map(std::as_const(s_).data(), count, n);
    const auto g = be_.map(std::as_const(g_).data(), count, n);
    gs += be_.dot(g, s);
    sum += be_.sum(g);
    if (!sharded_) return pair_.backward_rows(t_, g, first);
    // Sharded: the block's rows of dx, then of dy from the same rows of Sᵀ (the pairs' terms are
    // symmetric in x and y but for which side is the row).
    pair_.backward_x_rows(t_, g, first);
    compute_block(first, count, true);
    pair_.backward_y_rows(t_, be_.map(std::as_const(g_).data(), count, n), first);
  });
  pair_.finish_backward();
  if (sharded_) {  // each rank's pairs' parts of dt′ and db, summed over the ranks
    std::array<double, 2> parts{static_cast<double>(gs), static_cast<double>(sum)};
    comm_.all_reduce_sum(std::span<double>(parts));
    gs = static_cast<scalar_type>(parts[0]), sum = static_cast<scalar_type>(parts[1]);
  }
  grads_[0] = t_ * gs;
  grads_[1] = sum;
}

}  // namespace fusemix
