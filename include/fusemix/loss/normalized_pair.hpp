// SPDX-License-Identifier: Apache-2.0
/// @file
/// What every pairwise loss shares: the rows of both sides L2-normalised (`F.normalize`, eps
/// 1e-12) and, backward, the gradient of a loss of the form `f(c · x·yᵀ)` brought back through
/// the product and the normalisation.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/dist/communicator.hpp>

namespace fusemix::detail {

/// The normalised rows `x = normalize(px)`, `y = normalize(py)` of a batch, and the input
/// gradients of a loss whose gradient with respect to `c · x·yᵀ` is `G`.
///
/// A loss sharded over processes keeps the input gradients of its shard's rows only (`forward`
/// with a `dist::row_range`): `dx` from its rows of `G` (`backward_x_rows`), `dy` from its rows
/// of `Gᵀ` (`backward_y_rows`), so neither side's gradient needs a sum over processes.
template <Backend B>
class normalized_pair {
 public:
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;
  static constexpr double eps = 1e-12;

  explicit normalized_pair(B be) : be_(std::move(be)) {}

  /// Normalises both sides. @throws shape_error (naming `where`) unless the shapes are equal
  /// and non-empty.
  void forward(const char* where, const matrix_type& px, const matrix_type& py) {
    if (be_.rows(px) != be_.rows(py) || be_.cols(px) != be_.cols(py))
      throw_shape_error(where, "both sides must have the same shape", concat(be_.rows(px), "x", be_.cols(px)),
                        concat(be_.rows(py), "x", be_.cols(py)));
    if (be_.rows(px) == 0 || be_.cols(px) == 0)
      throw_shape_error(where, "the batch must not be empty", ">= 1 row and column", "0");
    const std::size_t n = be_.rows(px), d = be_.cols(px);
    be_.resize(x_, n, d), be_.resize(y_, n, d);
    be_.normalize_rows_forward(px, scalar_type(eps), x_, norm_x_);
    be_.normalize_rows_forward(py, scalar_type(eps), y_, norm_y_);
    shard_ = {0, n};
  }
  /// As `forward`, keeping the input gradients of rows `shard` only. @throws shape_error as
  /// `forward`, or if `shard` is empty or not within the batch.
  void forward(const char* where, const matrix_type& px, const matrix_type& py, dist::row_range shard) {
    forward(where, px, py);
    const std::size_t n = rows(), d = be_.cols(px);
    if (shard.count == 0 || shard.first > n || shard.count > n - shard.first)
      throw_shape_error(where, "this process's rows must be a non-empty range of the batch's",
                        concat("within [0, ", n, ")"), concat("[", shard.first, ", ", shard.first + shard.count, ")"));
    shard_ = shard;
    if (!sharded()) return;
    // The shard's rows normalised again on their own (the same bits), for the normalisation's
    // backward over them.
    be_.resize(xs_, shard.count, d), be_.resize(ys_, shard.count, d);
    be_.normalize_rows_forward(be_.map(px.data() + shard.first * d, shard.count, d), scalar_type(eps), xs_, norm_xs_);
    be_.normalize_rows_forward(be_.map(py.data() + shard.first * d, shard.count, d), scalar_type(eps), ys_, norm_ys_);
  }
  /// `dpx`, `dpy` from `G` (B×B, the gradient with respect to `c · x·yᵀ`): `dx = c·G·y`,
  /// `dy = c·Gᵀ·x`, then through the normalisation.
  void backward(scalar_type c, const matrix_type& g) {
    backward_rows(c, g, 0);
    finish_backward();
  }
  /// The part of `backward` from rows `first …` of `G` (`g`, R×B): rows `first …` of
  /// `dx = c·G·y`, and their term `c·Gᵀ·x` added to `dy`. Blocks in row order from row 0, then
  /// `finish_backward`.
  template <class G>
  void backward_rows(scalar_type c, const G& g, std::size_t first) {
    const std::size_t n = be_.rows(x_), d = be_.cols(x_), count = be_.rows(g);
    if (first == 0) be_.resize(dx_, n, d), be_.resize(dy_, n, d);
    auto dx_rows = be_.map(dx_.data() + first * d, count, d);
    const auto xs = x_rows(first, count);
    if (first == 0) {  // both products read G: one call, so a backend can prepare it once
      be_.gemm_shared(c, g, false, y_, false, dx_rows, true, xs, false, dy_);
    } else {
      be_.gemm(c, g, false, y_, false, scalar_type(0), dx_rows);
      be_.gemm(c, g, true, xs, false, scalar_type(1), dy_);
    }
  }
  /// Rows `first …` of `dx = c·G·y` from the same rows of `G` (`g`, R×B), rows of the shard
  /// (`forward` with a `dist::row_range`; a shard's blocks in row order).
  template <class G>
  void backward_x_rows(scalar_type c, const G& g, std::size_t first) {
    shard_rows(c, g, first, y_, dx_);
  }
  /// Rows `first …` of `dy = c·Gᵀ·x` from the same rows of `Gᵀ` (`gt`, R×B), rows of the shard.
  template <class G>
  void backward_y_rows(scalar_type c, const G& gt, std::size_t first) {
    shard_rows(c, gt, first, x_, dy_);
  }
  /// `dpx`, `dpy` (the shard's rows) from the `dx`, `dy` of every row block: through the
  /// normalisation.
  void finish_backward() {
    const std::size_t d = be_.cols(x_);
    be_.resize(dpx_, shard_.count, d), be_.resize(dpy_, shard_.count, d);
    const bool part = sharded();
    be_.normalize_rows_backward(dx_, part ? xs_ : x_, part ? norm_xs_ : norm_x_, scalar_type(eps), dpx_);
    be_.normalize_rows_backward(dy_, part ? ys_ : y_, part ? norm_ys_ : norm_y_, scalar_type(eps), dpy_);
  }

  /// At most `rows` rows of a loss's B×B matrices at a time (0, the default: all B at once).
  void set_row_block(std::size_t rows) noexcept { row_block_ = rows; }
  [[nodiscard]] std::size_t row_block() const noexcept { return row_block_; }
  /// The rows of a block of the shard (all rows, unsharded).
  [[nodiscard]] std::size_t block_rows() const noexcept {
    const std::size_t n = shard_.count;
    return row_block_ == 0 || row_block_ >= n ? n : row_block_;
  }
  [[nodiscard]] bool blocked() const noexcept { return block_rows() < shard_.count; }
  /// `f(first, count)` for every block of the shard's rows (every row, unsharded), in order.
  template <class F>
  void for_each_block(F&& f) const {
    const std::size_t end = shard_.first + shard_.count, r = block_rows();
    for (std::size_t first = shard_.first; first < end; first += r) f(first, std::min(r, end - first));
  }
  /// Rows `first …` of the normalised `x`, as a view.
  [[nodiscard]] auto x_rows(std::size_t first, std::size_t count) const noexcept {
    return be_.map(x_.data() + first * be_.cols(x_), count, be_.cols(x_));
  }
  /// Rows `first …` of the normalised `y`, as a view.
  [[nodiscard]] auto y_rows(std::size_t first, std::size_t count) const noexcept {
    return be_.map(y_.data() + first * be_.cols(y_), count, be_.cols(y_));
  }
  /// The rows whose input gradients backward computes: all of them unless `forward` was given a
  /// shard.
  [[nodiscard]] dist::row_range shard() const noexcept { return shard_; }
  [[nodiscard]] bool sharded() const noexcept { return shard_.count < rows(); }

  [[nodiscard]] const matrix_type& x() const noexcept { return x_; }
  [[nodiscard]] const matrix_type& y() const noexcept { return y_; }
  [[nodiscard]] std::size_t rows() const noexcept { return be_.rows(x_); }
  /// The input gradients of the last `backward`: the shard's rows.
  [[nodiscard]] const matrix_type& dpx() const noexcept { return dpx_; }
  [[nodiscard]] const matrix_type& dpy() const noexcept { return dpy_; }

 private:
  B be_;
  std::size_t row_block_ = 0;
  dist::row_range shard_{};
  matrix_type x_, y_, dx_, dy_, dpx_, dpy_;
  matrix_type xs_, ys_;  // the shard's rows of x and y, when it is not all of them
  typename B::vector_type norm_x_, norm_y_, norm_xs_, norm_ys_;
  // Rows `first …` of `out = c·g·other`, out holding the shard's rows.
  template <class G>
  void shard_rows(scalar_type c, const G& g, std::size_t first, const matrix_type& other, matrix_type& out) {
    const std::size_t d = be_.cols(other);
    if (first == shard_.first) be_.resize(out, shard_.count, d);
    auto rows_out = be_.map(out.data() + (first - shard_.first) * d, be_.rows(g), d);
    be_.gemm(c, g, false, other, false, scalar_type(0), rows_out);
  }
};

}  // namespace fusemix::detail
