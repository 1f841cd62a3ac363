// SPDX-License-Identifier: Apache-2.0
/// @file
/// The backend contract: small named concepts, one per group of primitives, composed into
/// `Backend`. Layers, losses, the optimiser and the trainer call nothing else, so a backend that
/// satisfies `Backend` runs all of them; one that lacks a primitive fails to compile naming the
/// group (`static_assert(fusemix::Backend<my_backend>)` says which part is unsatisfied).
///
/// Each group has one file per backend: `backend/cpu/<group>.hpp` and `backend/cuda/<group>.hpp`
/// (the device kernels of a group in `backend/cuda/kernels/<group>.hpp`).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include <fusemix/backend/common/dropout.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/optim/adamw.hpp>
#include <fusemix/select/kernels.hpp>

namespace fusemix {

namespace cpu {
template <Scalar T>
class backend;
}  // namespace cpu

/// The backend the library's templates use when none is named (`<fusemix/backend/cpu.hpp>`
/// defines it; the umbrella `<fusemix/fusemix.hpp>` includes it).
using default_backend = cpu::backend<float>;

/// Storage: the matrix and vector types, flat parameter buffers, views into them, and copies
/// between host memory and the backend's.
template <class B>
concept BackendStorage =
    Scalar<typename B::scalar_type> &&
    requires(const B& be, typename B::matrix_type& m, typename B::vector_type& v, typename B::scalar_type* p,
             const typename B::scalar_type* cp, std::size_t n, std::span<const typename B::scalar_type> host_in,
             std::span<typename B::scalar_type> host_out) {
      typename B::template buffer<typename B::scalar_type>;
      { be.map(p, n, n) } -> std::same_as<typename B::matrix_map>;
      { be.map(cp, n, n) } -> std::same_as<typename B::const_matrix_map>;
      { be.map(p, n) } -> std::same_as<typename B::vector_map>;
      { be.map(cp, n) } -> std::same_as<typename B::const_vector_map>;
      { B::host_memory } -> std::convertible_to<bool>;
      { be.rows(m) } -> std::convertible_to<std::size_t>;
      { be.cols(m) } -> std::convertible_to<std::size_t>;
      be.resize(m, n, n);
      be.resize(v, n);
      { be.zero_buffer(n) } -> std::same_as<typename B::template buffer<typename B::scalar_type>>;
      be.upload(host_in, p);
      be.download(cp, host_out);
      be.copy_n(cp, n, p);
    };

/// Dense linear algebra: GEMM (also two sharing a left operand), axpy, copy, scale, dot.
template <class B>
concept DenseAlgebra = BackendStorage<B> &&
    requires(const B& be, const typename B::matrix_type& a, typename B::matrix_type& c, typename B::scalar_type s,
             typename B::matrix_map& w, const typename B::const_matrix_map& cw) {
      be.gemm(s, a, false, a, true, s, c);   // c = s·a·aᵀ + s·c
      be.gemm(s, a, false, cw, true, s, c);  // with a weight view
      be.gemm_shared(s, a, true, a, false, w, false, cw, false, c);
      be.axpy(s, a, c);
      be.copy(a, c);
      be.scale(s, c);
      { be.dot(a, a) } -> std::convertible_to<typename B::scalar_type>;
    };

/// Row-wise passes: the mixup gather, bias rows and their gradient, row normalisation, the
/// finiteness check.
template <class B>
concept RowOps = BackendStorage<B> &&
    requires(const B& be, const typename B::matrix_type& a, typename B::matrix_type& c, typename B::vector_type& v,
             typename B::scalar_type s, typename B::vector_map& vm, const typename B::const_vector_map& cvm,
             std::span<const std::size_t> rows, std::size_t& at) {
      be.gather_mix(a, rows, rows, s, c);
      be.add_row_vector(c, cvm);
      be.column_sums(a, vm, true);  // (true: added to what vm holds)
      { be.find_non_finite(a, at, at) } -> std::same_as<bool>;
      be.normalize_rows_forward(a, s, c, v);
      be.normalize_rows_backward(a, a, v, s, c);
    };

/// LayerNorm over each row, forward (keeping mean and 1/σ) and backward (with γ, β gradients),
/// and the parameter gradients of a Linear that reads a LayerNorm's output and of that LayerNorm
/// from the normalised input's product (a model's first layer: no input gradient).
template <class B>
concept LayerNormOps = BackendStorage<B> &&
    requires(const B& be, const typename B::matrix_type& a, typename B::matrix_type& c, typename B::vector_type& v,
             const typename B::vector_type& cv, typename B::scalar_type s, typename B::vector_map& vm,
             const typename B::const_vector_map& cvm, typename B::matrix_map& w,
             const typename B::const_matrix_map& cw) {
      be.layer_norm_forward(a, cvm, cvm, s, c, v, v);
      be.layer_norm_backward(a, a, cvm, cv, cv, c, vm, vm, true);
      be.layer_norm_linear_gradients(c, cw, cvm, cvm, cvm, w, vm, vm, vm, true);
    };

/// GELU and dropout, alone and fused (bias + GELU + dropout forward, GELU·dropout backward).
template <class B>
concept ActivationOps = BackendStorage<B> &&
    requires(const B& be, const typename B::matrix_type& a, typename B::matrix_type& c, const dropout_key& key,
             const typename B::const_vector_map& cvm) {
      be.gelu_forward(a, c);
      be.gelu_backward(a, a, c);
      be.dropout_forward(a, key, c);
      be.dropout_backward(a, key, c);
      be.bias_gelu_dropout_forward(c, cvm, key, c);
      be.gelu_dropout_backward(a, a, key, c);
    };

/// The reductions over a B×B logit matrix that the losses need, a block of rows at a time (the
/// block a view of rows `first …`, positives at `(i, first + i)`): the softmax statistics of a
/// block, the symmetric cross-entropy from them and its gradient per block, the sigmoid loss per
/// block; and the whole-matrix fill and sum.
template <class B>
concept LossPrimitives = BackendStorage<B> &&
    requires(const B& be, const typename B::matrix_type& a, typename B::matrix_type& c,
             const typename B::const_matrix_map& block, typename B::matrix_map& g, typename B::vector_type& v,
             std::size_t first, typename B::scalar_type s) {
      be.softmax_statistics(block, first, v, v, v, v);
      be.row_softmax_statistics(block, first, v, v);
      { be.symmetric_cross_entropy_loss(v, v, v, v, v) } -> std::convertible_to<typename B::scalar_type>;
      be.symmetric_cross_entropy_gradient(block, first, v, v, g);
      { be.sigmoid_cross_entropy(block, first, g) } -> std::convertible_to<double>;
      { be.sum(a) } -> std::convertible_to<typename B::scalar_type>;
      be.fill(c, s);
    };

namespace detail {
/// The least a model offers an optimiser: its flat parameter and gradient buffers and, per
/// tensor, where it lies in them and whether it decays (what `fusion_adapter` offers).
template <class T>
struct flat_model_archetype {
  struct entry {
    std::size_t offset, size;
    bool decay;
  };
  std::span<T> parameters();
  std::span<T> gradients();
  std::span<const entry> named_parameters() const;
};
}  // namespace detail

/// An AdamW over flat parameter ranges in a backend's memory, with a backend-independent host
/// form of its moments (what checkpoints hold).
template <class O, class T>
concept Optimizer = requires(O& o, const O& co, T* p, const T* g, std::size_t n, std::span<T> out,
                             std::span<const T> in, double lr, std::uint64_t t,
                             detail::flat_model_archetype<T>& model) {
  o.add(p, g, n, true);
  o.add_model(model);
  o.step(lr);
  { co.steps() } -> std::convertible_to<std::uint64_t>;
  o.set_steps(t);
  { co.moment_count() } -> std::convertible_to<std::size_t>;
  co.get_moments(out, out);
  o.set_moments(in, in);
};

/// A backend's optimiser: `make_optimizer` gives an `Optimizer` over its memory.
template <class B>
concept OptimizerFactory = BackendStorage<B> && requires(const B& be, const adamw_options& o) {
  { be.make_optimizer(o) } -> Optimizer<typename B::scalar_type>;
};

/// The per-item primitives of the greedy k-DPP (`detail::run_greedy_kdpp` calls only these).
template <class E>
concept KdppEngine = requires(E& e, const E& ce, std::size_t i, typename E::accumulator acc, std::span<double> out,
                              std::span<const std::pair<double, double>> rot) {
  typename E::accumulator;
  { ce.size() } -> std::convertible_to<std::size_t>;
  e.init_diagonal();
  { e.argmax() } -> std::convertible_to<std::pair<std::size_t, typename E::accumulator>>;
  { ce.residual(i) } -> std::convertible_to<typename E::accumulator>;
  e.exclude(i);
  ce.coordinates(i, i, out);
  e.kernel_row(i);
  e.project(i, i, acc);
  e.rotate(rot, i);
};

/// A backend's k-DPP engine over latents in its memory, for the built-in dot-product kernels.
template <class B>
concept KdppEngineFactory = BackendStorage<B> &&
    requires(const B& be, const latent_view<typename B::scalar_type>& z, const cosine_kernel& k, std::size_t n) {
      { be.make_kdpp_engine(z, k, n) } -> KdppEngine;
    };

/// Exact top-k search: a block of query–gallery similarities merged into each query's best k so
/// far (scores in a matrix, gallery indices in a buffer of `std::int64_t`), the block shape
/// `top_k` uses when the caller leaves it to the backend, and the largest k it supports.
template <class B>
concept SearchOps = BackendStorage<B> &&
    requires(const B& be, const typename B::matrix_type& a, typename B::matrix_type& c, std::int64_t* idx,
             std::size_t n, std::int64_t first, std::span<std::int64_t> host_idx) {
      typename B::template buffer<std::int64_t>;
      { B::search_query_block } -> std::convertible_to<std::size_t>;
      { B::search_gallery_block } -> std::convertible_to<std::size_t>;
      { B::max_top_k } -> std::convertible_to<std::size_t>;
      be.merge_top_k(a, n, first, n, c, idx);
      be.download(static_cast<const std::int64_t*>(idx), host_idx);
    };

/// A compute backend: every group above. The CPU backend (`cpu::backend<T>`), the CUDA backend
/// on a GPU and the CUDA backend on the host system (`cuda::backend<T, cuda::host_system>`) each
/// `static_assert` it.
template <class B>
concept Backend = BackendStorage<B> && DenseAlgebra<B> && RowOps<B> && LayerNormOps<B> && ActivationOps<B> &&
                  LossPrimitives<B> && OptimizerFactory<B> && KdppEngineFactory<B> && SearchOps<B>;

}  // namespace fusemix
