// SPDX-License-Identifier: Apache-2.0
/// @file
/// The fusion adapter (the inverted-bottleneck MLP that maps one modality's latents into the
/// shared space), configured at compile time or at run time, and the identity adapter.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/nn/concepts.hpp>
#include <fusemix/core/config.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/nn/block.hpp>
#include <fusemix/nn/layer_norm.hpp>
#include <fusemix/nn/linear.hpp>
#include <fusemix/nn/parameter.hpp>
#include <fusemix/core/random.hpp>

namespace fusemix {

/// Shape of one fusion adapter; a field equal to `dynamic` is chosen at run time.
///
/// `h(x) = Linear_{in→out}(LN(Block^depth(x)))`, each block widening `in_dim` by `expansion`.
struct adapter_shape {
  std::size_t in_dim = dynamic;
  std::size_t out_dim = 512;
  std::size_t depth = 2;
  std::size_t expansion = 4;

  constexpr bool operator==(const adapter_shape&) const = default;
  /// Whether every field is fixed.
  [[nodiscard]] constexpr bool is_static() const noexcept {
    return in_dim != dynamic && out_dim != dynamic && depth != dynamic && expansion != dynamic;
  }
  /// The parameter count (as PyTorch's `sum(p.numel())`), or `dynamic` if a field is.
  [[nodiscard]] constexpr std::size_t parameter_count() const noexcept {
    if (!is_static()) return dynamic;
    const std::size_t d = in_dim, h = expansion * in_dim;
    const std::size_t per_block = 2 * d + (h * d + h) + (d * h + d);
    return depth * per_block + 2 * d + (out_dim * d + out_dim);
  }
};

/// Every field chosen at run time.
inline constexpr adapter_shape dynamic_shape{dynamic, dynamic, dynamic, dynamic};
/// DINOv2 ViT-g/14 image latents (1536-d), the paper's image-text setting (depth 4).
inline constexpr adapter_shape dinov2_vitg14{.in_dim = 1536, .out_dim = 512, .depth = 4};
/// BGE-large text latents (1024-d), the paper's image-text setting (depth 4).
inline constexpr adapter_shape bge_large{.in_dim = 1024, .out_dim = 512, .depth = 4};

/// Run-time options of an adapter that are not part of its shape.
struct adapter_options {
  double dropout = 0.6;    ///< probability between GELU and the second Linear of each block
  std::uint64_t seed = 0;  ///< fixes the initial weights and every dropout mask
};

/// The fusion adapter of one modality: `depth` pre-LN residual blocks, a final LayerNorm and a
/// Linear into the shared space, with the authors' PyTorch parameter names.
///
/// All parameters live in one flat buffer (`parameters()`), their gradients in another of the
/// same layout (`gradients()`); `named_parameters()` maps names to ranges of both (the buffers
/// also hold alignment padding between tensors, always zero). `backward` overwrites the
/// gradients (it does not accumulate).
///
/// @tparam S the shape; fields left `dynamic` are taken from the constructor's argument.
/// @tparam B the backend (`cpu::backend<float>`, or `<double>` for gradient checks).
///
/// **Example**
///
///     using image_adapter = fusemix::fusion_adapter<fusemix::dinov2_vitg14>;
///     static_assert(image_adapter::parameter_count == 76'330'496);
///     image_adapter h({.dropout = 0.6, .seed = 1});
///     auto s = h.forward(z);                       // z: B×1536 → B×512 (evaluation mode)
///
///     fusemix::fusion_adapter<> g({.in_dim = 768, .out_dim = 512, .depth = 2, .expansion = 4});
template <adapter_shape S = dynamic_shape, Backend B = default_backend>
class fusion_adapter {
 public:
  using backend_type = B;
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;

  /// The compile-time shape (fields may be `dynamic`).
  static constexpr adapter_shape static_shape = S;
  /// Parameter count when `S` is fully static, else `dynamic`.
  static constexpr std::size_t parameter_count = S.parameter_count();

  /// Builds an adapter of the static shape `S`.
  explicit fusion_adapter(adapter_options options = {}, B be = {})
    requires(S.is_static())
      : fusion_adapter(S, options, std::move(be)) {}
  /// Builds an adapter of shape `shape`, which must agree with every static field of `S`.
  /// @throws shape_error if a field differs from `S` or a dimension is zero or `dynamic`.
  explicit fusion_adapter(adapter_shape shape, adapter_options options = {}, B be = {});

  fusion_adapter(const fusion_adapter& other);
  /// Copies `other`'s weights and state. With the same shape and dropout the buffers stay where
  /// they are; otherwise they are reallocated, and optimisers registered on this adapter must be
  /// rebuilt (so must they after a move).
  fusion_adapter& operator=(const fusion_adapter& other);
  fusion_adapter(fusion_adapter&&) noexcept = default;
  fusion_adapter& operator=(fusion_adapter&&) noexcept = default;

  /// Maps a batch `x` (rows × in_dim) to rows × out_dim, for training loops: the result is a
  /// reference to the adapter's own buffer, which the next `forward` overwrites (copy it to keep
  /// it), and the activations that `backward` needs are kept; `x` itself is not copied, so it
  /// must stay alive and unchanged until `backward`. Dropout is active only in training mode
  /// (an adapter starts in evaluation mode). To embed data, `embed` is simpler.
  /// @throws shape_error if `x` does not have `in_dim` columns.
  const matrix_type& forward(const matrix_type& x);
  /// `forward` of rows `first_row …` of a batch whose dropout draw is `draw` (training mode):
  /// each row gets exactly the mask it gets in a `forward` of the whole batch at that draw, so a
  /// batch run a slice at a time (gradient caching: `train_options::micro_batch`) sees the masks
  /// of the whole batch. The draw count is left as it is; `backward` then belongs to this slice.
  /// @throws shape_error as `forward`.
  const matrix_type& forward_slice(const matrix_type& x, std::uint64_t draw, std::size_t first_row);
  /// `x` (rows × in_dim) mapped to rows × out_dim in evaluation mode (no dropout, whatever
  /// `training()` says), as a matrix of its own; the adapter is left as it was (a following
  /// `backward` still belongs to the last `forward`). Equal to `forward` in evaluation mode, bit
  /// for bit. Memory: the activations of one block for all rows (about
  /// `rows × expansion × in_dim` values); embed large sets a block of rows at a time.
  ///
  /// Threads: an adapter (like its backend object, which keeps scratch rows) must not be used
  /// by two threads at once, `embed` included; give each thread a copy of the adapter.
  /// @throws shape_error if `x` does not have `in_dim` columns.
  [[nodiscard]] matrix_type embed(const matrix_type& x) const;
  /// Writes the gradient of every parameter for the last `forward` and returns the input's. With
  /// `accumulate`, adds the gradients to those held instead (the slices of a batch, each after
  /// its `forward_slice`, summed in place: gradient caching).
  /// @pre `forward` was called, and its input is still alive and unchanged.
  /// @throws shape_error if `dy` does not have the last output's shape.
  const matrix_type& backward(const matrix_type& dy, bool accumulate = false) {
    return backward(dy, accumulate, [](std::size_t) {});
  }
  /// As `backward`, calling `finished(first)` after each layer, from the last to the first: the
  /// gradients from element `first` of `gradients()` to its end are then final (on a device
  /// backend: queued on its stream). What a data-parallel trainer sums across processes while the
  /// layers below still run.
  template <class F>
    requires std::invocable<F&, std::size_t>
  const matrix_type& backward(const matrix_type& dy, bool accumulate, F&& finished) {
    run_backward(dy, accumulate, finished, true);
    return dx_;
  }
  /// As `backward`, without the input's gradient: for inputs that are not trained (cached
  /// latents), as a trainer calls it. The first layer's parameter gradients then come from one
  /// product instead of two (`layer_norm_linear_parameter_gradients`): a third of its backward
  /// FLOPs fewer. The same gradients as `backward`'s to rounding.
  void backward_parameters(const matrix_type& dy, bool accumulate = false) {
    auto none = [](std::size_t) {};
    run_backward(dy, accumulate, none, false);
  }
  /// `backward_parameters`, calling `finished(first)` after each layer as `backward` does.
  template <class F>
    requires std::invocable<F&, std::size_t>
  void backward_parameters(const matrix_type& dy, bool accumulate, F&& finished) {
    run_backward(dy, accumulate, finished, false);
  }

  /// Training mode turns dropout on; each training forward draws a fresh mask.
  void set_training(bool on) noexcept { training_ = on; }
  [[nodiscard]] bool training() const noexcept { return training_; }
  /// Whether the adapter draws random numbers after construction (its dropout masks), so a
  /// checkpoint must hold `dropout_seed()` and `dropout_draws()` to resume it bit for bit.
  static constexpr bool has_random_state = true;
  /// The seed of the dropout masks (part of a checkpoint's random state).
  [[nodiscard]] std::uint64_t dropout_seed() const noexcept { return options_.seed; }
  /// The number of dropout masks drawn so far (part of a checkpoint's random state).
  [[nodiscard]] std::uint64_t dropout_draws() const noexcept { return draws_; }
  void set_dropout_draws(std::uint64_t n) noexcept { draws_ = n; }
  /// Re-draws the initial weights from `seed` as PyTorch's default init does.
  void reset_parameters(std::uint64_t seed);
  /// Derives every block's dropout stream from `seed` (what the constructor does with
  /// `options.seed`), leaving the weights alone: a resumed run restores it from its checkpoint.
  void set_dropout_seed(std::uint64_t seed) noexcept;

  [[nodiscard]] const adapter_shape& shape() const noexcept { return shape_; }
  [[nodiscard]] const adapter_options& options() const noexcept { return options_; }
  [[nodiscard]] std::size_t in_dim() const noexcept { return shape_.in_dim; }
  [[nodiscard]] std::size_t out_dim() const noexcept { return shape_.out_dim; }
  /// Run-time parameter count (without the buffers' padding).
  [[nodiscard]] std::size_t size() const noexcept { return layout_.parameter_count(); }
  /// The flat parameter buffer, in the backend's memory (device memory for `cuda::backend` on a
  /// GPU: read it on the host with `copy_parameters_to`).
  [[nodiscard]] std::span<scalar_type> parameters() noexcept { return {params_.data(), params_.size()}; }
  [[nodiscard]] std::span<const scalar_type> parameters() const noexcept { return {params_.data(), params_.size()}; }
  [[nodiscard]] std::span<scalar_type> gradients() noexcept { return {grads_.data(), grads_.size()}; }
  [[nodiscard]] std::span<const scalar_type> gradients() const noexcept { return {grads_.data(), grads_.size()}; }
  /// Copies the flat parameter buffer (padding included) into `host`, which must be as long.
  void copy_parameters_to(std::span<scalar_type> host) const {
    check_host_size("fusemix::fusion_adapter::copy_parameters_to", host.size());
    be_.download(params_.data(), host);
  }
  /// Sets the flat parameter buffer (padding included) from `host`, which must be as long.
  void copy_parameters_from(std::span<const scalar_type> host) {
    check_host_size("fusemix::fusion_adapter::copy_parameters_from", host.size());
    be_.upload(host, params_.data());
  }
  /// The backend the adapter computes with.
  [[nodiscard]] const B& backend() const noexcept { return be_; }
  /// Every parameter by PyTorch name relative to the module (`"0.fn.0.weight"`, ..., `"{depth+1}.bias"`).
  [[nodiscard]] const std::vector<parameter_info>& named_parameters() const noexcept { return layout_.entries(); }
  /// The parameter called `name`. @throws argument_error if there is none.
  [[nodiscard]] std::span<scalar_type> parameter(std::string_view name);

 private:
  static adapter_shape checked(adapter_shape shape);
  void check_host_size(const char* where, std::size_t n) const {
    if (n != params_.size()) throw_shape_error(where, "one value per element of the flat buffer", params_.size(), n);
  }
  void build();
  // forward and forward_slice: dropout draw `draw` (0 outside training), rows from `first_row` on.
  const matrix_type& run_forward(const char* where, const matrix_type& x, std::uint64_t draw, std::size_t first_row);
  // backward and backward_parameters: with `input_gradient`, the input's gradient into dx_.
  template <class F>
  void run_backward(const matrix_type& dy, bool accumulate, F& finished, bool input_gradient);

  adapter_shape shape_;
  adapter_options options_;
  B be_;
  parameter_layout layout_;
  std::vector<block<B>> blocks_;
  std::vector<layer_norm<B>> final_ln_;  // exactly one; a vector so the adapter stays movable
  std::vector<linear<B>> proj_;          // exactly one
  // Where each layer's parameters start in the flat buffers (padding before them belongs to the
  // layer below): block i at layer_first_[i], the final LayerNorm at [depth], the projection at
  // [depth + 1].
  std::vector<std::size_t> layer_first_;
  typename B::template buffer<scalar_type> params_, grads_;
  bool training_ = false;
  std::uint64_t draws_ = 0;
  // The input of block i is input(i): the caller's batch for i = 0 (not copied), else acts_[i]
  // (the output of block i − 1); input(depth) feeds the final LayerNorm.
  const matrix_type& input(std::size_t i) const noexcept { return i == 0 ? *input_ : acts_[i]; }
  const matrix_type* input_ = nullptr;
  std::vector<matrix_type> acts_;  // acts_[0] unused
  matrix_type ln_out_, out_, d_ln_, dx_, dtmp_;
  typename block<B>::backward_buffers backward_work_;  // shared by the blocks, one at a time
  layer_norm_linear_buffers<B> first_work_;            // backward_parameters' first layer
};

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <adapter_shape S, Backend B>
adapter_shape fusion_adapter<S, B>::checked(adapter_shape shape) {
  constexpr const char* where = "fusemix::fusion_adapter";
  auto fixed = [&](std::size_t want, std::size_t got, const char* what) {
    if (want != dynamic && want != got) throw_shape_error(where, what, want, got);
  };
  fixed(S.in_dim, shape.in_dim, "in_dim differs from the static shape");
  fixed(S.out_dim, shape.out_dim, "out_dim differs from the static shape");
  fixed(S.depth, shape.depth, "depth differs from the static shape");
  fixed(S.expansion, shape.expansion, "expansion differs from the static shape");
  auto positive = [&](std::size_t v, const char* what) {
    if (v == 0 || v == dynamic) throw_shape_error(where, what, "a positive size", v == 0 ? "0" : "dynamic");
  };
  positive(shape.in_dim, "in_dim must be set");
  positive(shape.out_dim, "out_dim must be set");
  positive(shape.expansion, "expansion must be set");
  if (shape.depth == dynamic) throw_shape_error(where, "depth must be set", ">= 0", "dynamic");
  // The widest tensors are (expansion·in)×in and out×in; their sizes must fit in size_t.
  constexpr std::size_t limit = std::size_t{1} << 40;
  if (shape.in_dim > limit / shape.expansion || shape.in_dim * shape.expansion > limit / shape.in_dim ||
      shape.out_dim > limit / shape.in_dim || shape.depth > limit)
    throw_shape_error(where, "shape too large", "tensors of at most 2^40 elements",
                              concat(shape.in_dim, "x", shape.expansion, "x", shape.out_dim, ", depth ", shape.depth));
  return shape;
}

template <adapter_shape S, Backend B>
fusion_adapter<S, B>::fusion_adapter(adapter_shape shape, adapter_options options, B be)
    : shape_(checked(shape)), options_(options), be_(std::move(be)) {
  if (!(options.dropout >= 0.0 && options.dropout <= 1.0))
    throw_expected<argument_error>("fusemix::fusion_adapter", "dropout probability out of range",
                                           "0 <= p <= 1", options.dropout);
  const std::size_t d = shape_.in_dim;
  blocks_.reserve(shape_.depth);
  // Each layer's first parameter: that of the first tensor it adds to the layout.
  auto add_layer = [&](auto&& emplace) {
    const std::size_t entry = layout_.entries().size();
    emplace();
    layer_first_.push_back(layout_.entries()[entry].offset);
  };
  for (std::size_t i = 0; i < shape_.depth; ++i)
    add_layer([&] { blocks_.emplace_back(layout_, std::to_string(i) + ".", d, shape_.expansion, options_.dropout, 0, be_); });
  set_dropout_seed(options_.seed);
  add_layer([&] { final_ln_.emplace_back(layout_, std::to_string(shape_.depth) + ".", d, 1e-5, be_); });
  add_layer([&] { proj_.emplace_back(layout_, std::to_string(shape_.depth + 1) + ".", d, shape_.out_dim, be_); });
  params_ = be_.zero_buffer(layout_.size());
  grads_ = be_.zero_buffer(layout_.size());
  acts_.resize(shape_.depth + 1);
  build();
  reset_parameters(options_.seed);
}

template <adapter_shape S, Backend B>
fusion_adapter<S, B>::fusion_adapter(const fusion_adapter& other)
    : shape_(other.shape_), options_(other.options_), be_(other.be_), layout_(other.layout_), blocks_(other.blocks_),
      final_ln_(other.final_ln_), proj_(other.proj_), layer_first_(other.layer_first_), params_(other.params_),
      grads_(other.grads_),
      training_(other.training_), draws_(other.draws_), acts_(other.acts_.size()) {
  build();
}

template <adapter_shape S, Backend B>
fusion_adapter<S, B>& fusion_adapter<S, B>::operator=(const fusion_adapter& other) {
  if (this == &other) return *this;
  if (shape_ == other.shape_ && options_.dropout == other.options_.dropout) {
    // Same layout: copy values into the existing buffers, so that pointers into them (an
    // optimiser's, a trainer's) stay valid.
    be_.copy_n(other.params_.data(), params_.size(), params_.data());
    be_.copy_n(other.grads_.data(), grads_.size(), grads_.data());
    set_dropout_seed(other.options_.seed);
    training_ = other.training_;
    draws_ = other.draws_;
  } else {
    fusion_adapter copy(other);
    *this = std::move(copy);
  }
  return *this;
}

// Points every layer at this object's buffers (again, after a copy).
template <adapter_shape S, Backend B>
void fusion_adapter<S, B>::build() {
  for (auto& b : blocks_) b.bind(params_.data(), grads_.data());
  final_ln_.front().bind(params_.data(), grads_.data());
  proj_.front().bind(params_.data(), grads_.data());
}

template <adapter_shape S, Backend B>
void fusion_adapter<S, B>::reset_parameters(std::uint64_t seed) {
  // Drawn on the host into a staging buffer (the layers write through their bound pointers),
  // then copied to the backend's memory: the same weights on every backend.
  std::vector<scalar_type> host(params_.size(), scalar_type(0));
  for (auto& b : blocks_) b.bind(host.data(), grads_.data());
  final_ln_.front().bind(host.data(), grads_.data());
  proj_.front().bind(host.data(), grads_.data());
  philox_engine rng(seed);
  for (auto& b : blocks_) b.reset_parameters(rng);
  final_ln_.front().reset_parameters();
  proj_.front().reset_parameters(rng);
  build();
  be_.upload(host, params_.data());
}

template <adapter_shape S, Backend B>
void fusion_adapter<S, B>::set_dropout_seed(std::uint64_t seed) noexcept {
  options_.seed = seed;
  // Each block gets its own stream, so equal-shaped blocks never share a mask.
  for (std::size_t i = 0; i < blocks_.size(); ++i)
    blocks_[i].set_dropout_seed(philox_engine(seed, i + 1)() | std::uint64_t{i + 1} << 32);
}

template <adapter_shape S, Backend B>
auto fusion_adapter<S, B>::forward(const matrix_type& x) -> const matrix_type& {
  return run_forward("fusemix::fusion_adapter::forward", x, training_ ? draws_++ : 0, 0);
}

template <adapter_shape S, Backend B>
auto fusion_adapter<S, B>::forward_slice(const matrix_type& x, std::uint64_t draw, std::size_t first_row)
    -> const matrix_type& {
  return run_forward("fusemix::fusion_adapter::forward_slice", x, training_ ? draw : 0, first_row);
}

template <adapter_shape S, Backend B>
auto fusion_adapter<S, B>::run_forward(const char* where, const matrix_type& x, std::uint64_t draw,
                                       std::size_t first_row) -> const matrix_type& {
  if (be_.cols(x) != shape_.in_dim) throw_shape_error(where, "input columns must equal in_dim", shape_.in_dim, be_.cols(x));
  input_ = &x;
  for (std::size_t i = 0; i < blocks_.size(); ++i) blocks_[i].forward(input(i), acts_[i + 1], training_, draw, first_row);
  final_ln_.front().forward(input(blocks_.size()), ln_out_);
  proj_.front().forward(ln_out_, out_);
  return out_;
}

template <adapter_shape S, Backend B>
auto fusion_adapter<S, B>::embed(const matrix_type& x) const -> matrix_type {
  if (be_.cols(x) != shape_.in_dim)
    throw_shape_error("fusemix::fusion_adapter::embed", "input columns must equal in_dim", shape_.in_dim, be_.cols(x));
  typename block<B>::inference_buffers w;
  matrix_type ping, pong, out;
  const matrix_type* in = &x;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    matrix_type& y = i % 2 == 0 ? ping : pong;
    blocks_[i].infer(*in, y, w);
    in = &y;
  }
  matrix_type& normed = blocks_.size() % 2 == 0 ? ping : pong;  // the buffer not holding `*in`
  final_ln_.front().infer(*in, normed, w.mean, w.rstd);
  proj_.front().forward(normed, out);
  return out;
}

template <adapter_shape S, Backend B>
template <class F>
void fusion_adapter<S, B>::run_backward(const matrix_type& dy, bool accumulate, F& finished, bool input_gradient) {
  FUSEMIX_ASSERT(input_ != nullptr);  // forward came first
  if (be_.rows(dy) != be_.rows(out_) || be_.cols(dy) != be_.cols(out_))
    throw_shape_error(input_gradient ? "fusemix::fusion_adapter::backward" : "fusemix::fusion_adapter::backward_parameters",
                      "dy must have the last output's shape", concat(be_.rows(out_), "x", be_.cols(out_)),
                      concat(be_.rows(dy), "x", be_.cols(dy)));
  const std::size_t depth = blocks_.size();
  if (depth == 0 && !input_gradient) {  // the final LayerNorm and the projection are the first layer
    layer_norm_linear_parameter_gradients(be_, final_ln_.front(), proj_.front(), input(0), dy, first_work_, accumulate);
    finished(layer_first_[1]);
    finished(layer_first_[0]);
    return;
  }
  proj_.front().backward(ln_out_, dy, d_ln_, accumulate);
  finished(layer_first_[depth + 1]);
  final_ln_.front().backward(input(depth), d_ln_, dx_, accumulate);
  finished(layer_first_[depth]);
  for (std::size_t i = depth; i-- > 0;) {
    if (i == 0 && !input_gradient) {
      blocks_[0].backward_parameters(input(0), dx_, backward_work_, first_work_, accumulate);
    } else {
      blocks_[i].backward(input(i), dx_, dtmp_, backward_work_, accumulate);
      std::swap(dx_, dtmp_);
    }
    finished(layer_first_[i]);
  }
}

template <adapter_shape S, Backend B>
auto fusion_adapter<S, B>::parameter(std::string_view name) -> std::span<scalar_type> {
  for (const auto& e : layout_.entries())
    if (e.name == name) return {params_.data() + e.offset, e.size};
  throw_expected<argument_error>("fusemix::fusion_adapter::parameter", "no parameter of that name",
                                         "a name such as 0.fn.0.weight", name);
}

}  // namespace fusemix
