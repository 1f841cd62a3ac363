// SPDX-License-Identifier: Apache-2.0
/// @file
/// The layers of a fusion adapter (Linear, LayerNorm, GELU, Dropout and the pre-LN residual
/// Block), each with forward and backward, written once against the `Backend` primitives.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/concepts.hpp>
#include <fusemix/error.hpp>
#include <fusemix/random.hpp>

namespace fusemix {

/// One named parameter tensor inside a model's flat parameter buffer.
struct parameter_info {
  std::string name;                ///< PyTorch name relative to the module, e.g. "0.fn.0.weight"
  std::vector<std::size_t> shape;  ///< PyTorch shape: {out, in} for weights, {n} for vectors
  std::size_t offset = 0;          ///< first element in the flat buffer
  std::size_t size = 0;            ///< element count
  bool decay = false;              ///< whether AdamW applies weight decay (Linear weights only)
};

/// Hands out consecutive ranges of one flat parameter buffer while a model is built.
///
/// All parameters of a model live in one buffer (and their gradients in a second of the same
/// layout), so an optimizer updates them in one pass and a checkpoint is one copy. Each tensor
/// starts at a multiple of `tensor_alignment` elements (64 bytes for float), so with an aligned
/// buffer every tensor is aligned; the gaps are padding, never read as parameters.
class parameter_layout {
 public:
  static constexpr std::size_t tensor_alignment = 16;

  /// Reserves a tensor and returns its offset.
  std::size_t add(std::string name, std::vector<std::size_t> shape, bool decay) {
    std::size_t n = 1;
    for (std::size_t s : shape) n *= s;
    const std::size_t offset = (size_ + tensor_alignment - 1) / tensor_alignment * tensor_alignment;
    entries_.push_back({std::move(name), std::move(shape), offset, n, decay});
    size_ = offset + n;
    count_ += n;
    return offset;
  }
  [[nodiscard]] const std::vector<parameter_info>& entries() const noexcept { return entries_; }
  /// Buffer length in elements (parameters and padding).
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// Parameter count (what PyTorch's `sum(p.numel())` gives).
  [[nodiscard]] std::size_t parameter_count() const noexcept { return count_; }

 private:
  std::vector<parameter_info> entries_;
  std::size_t size_ = 0, count_ = 0;
};

/// A flat buffer of parameters or gradients, aligned to `buffer_alignment`.
template <class T>
using parameter_buffer = typename cpu::backend<T>::template buffer<T>;

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
template <Backend B = cpu::backend<float>>
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
  /// Writes `dW = dyᵀ·x`, `db = Σ dy` and returns `dx = dy·W` through `dx`.
  void backward(const matrix_type& x, const matrix_type& dy, matrix_type& dx) {
    be_.resize(dx, be_.rows(dy), in_);
    auto dw = be_.map(g_ + w_, out_, in_);
    auto db = be_.map(g_ + b_, out_);
    // Both products read dy: one call, so a backend can prepare it once.
    be_.gemm_shared(scalar_type(1), dy, true, x, false, dw, false, weight(), false, dx);
    be_.column_sums(dy, db);
  }
  /// Writes `dW` and `db` only (the first layer of a model needs no input gradient).
  void backward_parameters(const matrix_type& x, const matrix_type& dy) {
    auto dw = be_.map(g_ + w_, out_, in_);
    auto db = be_.map(g_ + b_, out_);
    be_.gemm(scalar_type(1), dy, true, x, false, scalar_type(0), dw);
    be_.column_sums(dy, db);
  }

  [[nodiscard]] auto weight() const noexcept { return be_.map(std::as_const(p_) + w_, out_, in_); }
  [[nodiscard]] auto bias() const noexcept { return be_.map(std::as_const(p_) + b_, out_); }
  [[nodiscard]] std::size_t in_dim() const noexcept { return in_; }
  [[nodiscard]] std::size_t out_dim() const noexcept { return out_; }

 private:
  void check_input(const matrix_type& x) const {
    if (be_.cols(x) != in_)
      detail::throw_shape_error("fusemix::linear::forward", "input columns must equal in_dim", in_, be_.cols(x));
  }

  B be_;
  std::size_t in_, out_, w_, b_;
  scalar_type* p_ = nullptr;
  scalar_type* g_ = nullptr;
};

/// LayerNorm over the last dimension with an affine transform, eps 1e-5 (`nn.LayerNorm(d)`).
template <Backend B = cpu::backend<float>>
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
      detail::throw_shape_error("fusemix::layer_norm::forward", "input columns must equal dim", dim_, be_.cols(x));
    be_.resize(y, be_.rows(x), dim_);
    be_.layer_norm_forward(x, gamma(), beta(), static_cast<scalar_type>(eps_), y, mean_, rstd_);
  }
  /// Writes `dγ`, `dβ` and returns `dx` through `dx`; `x` is the input given to forward.
  void backward(const matrix_type& x, const matrix_type& dy, matrix_type& dx) {
    be_.resize(dx, be_.rows(x), dim_);
    auto dg = be_.map(g_ + w_, dim_);
    auto db = be_.map(g_ + b_, dim_);
    be_.layer_norm_backward(dy, x, gamma(), mean_, rstd_, dx, dg, db);
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

/// GELU, exact form `x·Φ(x)` (`nn.GELU()`). No parameters.
template <Backend B = cpu::backend<float>>
class gelu {
 public:
  using matrix_type = typename B::matrix_type;
  explicit gelu(B be = {}) : be_(std::move(be)) {}
  void forward(const matrix_type& x, matrix_type& y) const {
    be_.resize(y, be_.rows(x), be_.cols(x));
    be_.gelu_forward(x, y);
  }
  void backward(const matrix_type& x, const matrix_type& dy, matrix_type& dx) const {
    be_.resize(dx, be_.rows(x), be_.cols(x));
    be_.gelu_backward(dy, x, dx);
  }

 private:
  B be_;
};

/// Inverted dropout (`nn.Dropout(p)`): in training, each element is zeroed with probability `p`
/// and the rest scaled by 1/(1−p); in evaluation it is the identity. The mask is a pure function
/// of `(seed, draw, element)`, so backward regenerates it rather than storing it.
template <Backend B = cpu::backend<float>>
class dropout {
 public:
  using matrix_type = typename B::matrix_type;

  /// @throws argument_error unless 0 ≤ p ≤ 1.
  explicit dropout(double p, std::uint64_t seed = 0, B be = {}) : be_(std::move(be)), p_(p), seed_(seed) {
    if (!(p >= 0.0 && p <= 1.0))
      detail::throw_expected<argument_error>("fusemix::dropout", "probability out of range", "0 <= p <= 1", p);
  }
  /// Applies the mask of draw number `draw` (training), or copies `x` (`training == false`).
  void forward(const matrix_type& x, matrix_type& y, bool training, std::uint64_t draw) {
    be_.resize(y, be_.rows(x), be_.cols(x));
    last_ = key(training, draw);
    be_.dropout_forward(x, last_, y);
  }
  /// Gradient of the last forward.
  void backward(const matrix_type& dy, matrix_type& dx) const {
    be_.resize(dx, be_.rows(dy), be_.cols(dy));
    be_.dropout_backward(dy, last_, dx);
  }
  [[nodiscard]] dropout_key key(bool training, std::uint64_t draw) const noexcept {
    return {seed_, draw, training ? p_ : 0.0};
  }
  [[nodiscard]] double p() const noexcept { return p_; }
  [[nodiscard]] std::uint64_t seed() const noexcept { return seed_; }
  void set_seed(std::uint64_t seed) noexcept { seed_ = seed; }

 private:
  B be_;
  double p_;
  std::uint64_t seed_;
  dropout_key last_{};
};

/// The pre-LN residual block of the adapter: `y = x + W2·Dropout(GELU(W1·LN(x) + b1)) + b2`,
/// with PyTorch names `ln.*`, `fn.0.*` (W1: e·d×d) and `fn.3.*` (W2: d×e·d).
///
/// Bias, GELU and dropout run as one fused elementwise pass.
template <Backend B = cpu::backend<float>>
class block {
 public:
  using backend_type = B;
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;

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

  /// `y = block(x)`; dropout uses draw number `draw` when `training`.
  void forward(const matrix_type& x, matrix_type& y, bool training, std::uint64_t draw) {
    key_ = drop_.key(training, draw);
    ln_.forward(x, u_);
    fc1_.forward_without_bias(u_, a_);
    be_.resize(h_, be_.rows(a_), be_.cols(a_));
    be_.bias_gelu_dropout_forward(a_, fc1_.bias(), key_, h_);
    fc2_.forward(h_, y);
    be_.axpy(scalar_type(1), x, y);
  }
  /// Writes every parameter gradient and returns `dx` through `dx`; `x` is forward's input.
  void backward(const matrix_type& x, const matrix_type& dy, matrix_type& dx) {
    fc2_.backward(h_, dy, dh_);
    be_.gelu_dropout_backward(dh_, a_, key_, dh_);  // in place: dh_ becomes da
    fc1_.backward(u_, dh_, du_);
    ln_.backward(x, du_, dx);
    be_.axpy(scalar_type(1), dy, dx);
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
  matrix_type dh_, du_;        // workspaces of backward (dh_ turns into the pre-activation's gradient)
};

}  // namespace fusemix
