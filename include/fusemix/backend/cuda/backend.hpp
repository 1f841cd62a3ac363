// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend: the primitives of `fusemix::Backend` on the memory of a CUDA system, each a
/// launch of a functor from backend/cuda/kernels/ (or a GEMM, backend/cuda/gemm.hpp).
///
/// Layers, adapters, the losses and the trainer are the library's templates instantiated with
/// `cuda::backend<float>`; nothing of the method is written twice. On a GPU the GEMMs are cuBLAS
/// calls (fp32, or TF32 / bf16 tensor-core products with float accumulation, `gemm_precision`),
/// the elementwise passes are Thrust kernels, the row-wise ones (LayerNorm, row normalisation,
/// the losses) a thread block per row, and bias gradients cuBLAS GEMVs. On the host system the
/// same functors run in host loops and the GEMMs are the CPU backend's (include
/// <fusemix/backend/cuda/host_gemm.hpp> too).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <fusemix/backend/common/dropout.hpp>
#include <fusemix/backend/concepts.hpp>
#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/gemm.hpp>
#include <fusemix/backend/cuda/kdpp.hpp>
#include <fusemix/backend/cuda/kernels/activation.hpp>
#include <fusemix/backend/cuda/kernels/elementwise.hpp>
#include <fusemix/backend/cuda/kernels/layer_norm.hpp>
#include <fusemix/backend/cuda/kernels/loss.hpp>
#include <fusemix/backend/cuda/kernels/rows.hpp>
#include <fusemix/backend/cuda/memory.hpp>
#include <fusemix/backend/cuda/optim.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/optim/adamw.hpp>
#include <fusemix/select/kernels.hpp>

namespace fusemix::cuda {

/// The CUDA backend on system `S`: the primitives of `cpu::backend` (same names, same semantics,
/// same dropout masks) on memory of the backend's `context<S>`. Objects are cheap handles: copies
/// share the context (stream, cuBLAS handle, scratch), so layers can each hold one.
///
/// @tparam T `float` (training; TF32/bf16 GEMMs optional on a GPU) or `double` (checks).
/// @tparam S `device_system` (a GPU; the file must be compiled by nvcc) or `host_system` (any
///         compiler; include <fusemix/backend/cuda/host_gemm.hpp> for its GEMMs).
///
/// **Example**
///
///     using B = fusemix::cuda::backend<float>;      // host_backend<float> on the host system
///     B be;                                         // the process-wide context
///     fusemix::fusion_adapter<fusemix::dynamic_shape, B> hx({.in_dim = 1536, .out_dim = 512, .depth = 4}, {}, be);
///     const B::matrix_type z = be.upload(host_latents);  // once
///     const auto& s = hx.forward(z);                // on the device
template <Scalar T, System S = device_system>
class backend {
 public:
  static_assert(detail::available<S>);
  using system_type = S;
  using scalar_type = T;
  using context_type = context<S>;
  using matrix_type = matrix<T, S>;
  using vector_type = vector<T, S>;
  using matrix_map = matrix_ref<T>;
  using const_matrix_map = matrix_ref<const T>;
  using vector_map = vector_ref<T>;
  using const_vector_map = vector_ref<const T>;
  /// Flat parameter storage in backend memory.
  template <class U>
  using buffer = array<U, S>;
  /// Whether the host can dereference this backend's pointers.
  static constexpr bool host_memory = std::is_same_v<S, host_system>;

  /// A backend on the process-wide context (`context<S>::shared()`).
  /// @throws device_error on a GPU when no CUDA device can be used.
  backend() : ctx_(context<S>::shared()) {}
  explicit backend(std::shared_ptr<context<S>> c) : ctx_(std::move(c)) {}

  [[nodiscard]] context<S>& ctx() const noexcept { return *ctx_; }
  [[nodiscard]] const std::shared_ptr<context<S>>& shared_context() const noexcept { return ctx_; }

  // Storage ------------------------------------------------------------------------------------

  template <class M>
  static std::size_t rows(const M& a) noexcept { return a.rows(); }
  template <class M>
  static std::size_t cols(const M& a) noexcept { return a.cols(); }
  static void resize(matrix_type& a, std::size_t r, std::size_t c) { a.resize(r, c); }
  static void resize(vector_type& a, std::size_t n) { a.resize(n); }
  static matrix_map map(T* p, std::size_t r, std::size_t c) noexcept { return {p, r, c}; }
  static const_matrix_map map(const T* p, std::size_t r, std::size_t c) noexcept { return {p, r, c}; }
  static vector_map map(T* p, std::size_t n) noexcept { return {p, n}; }
  static const_vector_map map(const T* p, std::size_t n) noexcept { return {p, n}; }

  /// `n` zeros in backend memory (a model's parameter or gradient buffer).
  buffer<T> zero_buffer(std::size_t n) const {
    buffer<T> b(n);
    for_n(*ctx_, n, detail::fill_elements<T>{b.data(), T(0)});
    return b;
  }
  /// Copies host values to backend memory at `dst` and waits.
  void upload(std::span<const T> host, T* dst) const { copy_to_device(*ctx_, host.data(), dst, host.size()); }
  /// Copies backend memory at `src` into `host`, after the work queued before.
  void download(const T* src, std::span<T> host) const { copy_to_host(*ctx_, src, host.data(), host.size()); }
  /// Copies `n` elements within backend memory.
  void copy_n(const T* src, std::size_t n, T* dst) const { copy_within(*ctx_, src, dst, n); }
  /// A row-major host matrix (anything with `data()`, `rows()`, `cols()`) in backend memory.
  template <class M>
  matrix_type upload(const M& host) const {
    matrix_type m(static_cast<std::size_t>(host.rows()), static_cast<std::size_t>(host.cols()));
    upload(std::span<const T>(host.data(), m.size()), m.data());
    return m;
  }
  /// The values of `a` (row-major) on the host.
  template <class M>
  std::vector<T> download(const M& a) const {
    std::vector<T> h(a.rows() * a.cols());
    download(a.data(), h);
    return h;
  }

  // Dense linear algebra -----------------------------------------------------------------------

  /// `c = alpha · op(a) · op(b) + beta · c`.
  template <class A, class Bm, class C>
  void gemm(T alpha, const A& a, bool trans_a, const Bm& b, bool trans_b, T beta, C& c) const {
    if (c.rows() == 0 || c.cols() == 0) return;
    detail::gemm_ops<S>::gemm(*ctx_, alpha, gemm_operand<T>{a.data(), a.rows(), a.cols(), trans_a},
                              gemm_operand<T>{b.data(), b.rows(), b.cols(), trans_b}, beta, c.data(), c.rows(),
                              c.cols(), reuse_a_);
  }
  /// Two products with the same left operand (`c1 = alpha·op1(a)·op(b1)`, `c2 = alpha·op2(a)·op(b2)`);
  /// in bf16 mode `a` is converted once for both.
  template <class A, class B1, class C1, class B2, class C2>
  void gemm_shared(T alpha, const A& a, bool trans_a1, const B1& b1, bool trans_b1, C1& c1, bool trans_a2, const B2& b2,
                   bool trans_b2, C2& c2) const {
    gemm(alpha, a, trans_a1, b1, trans_b1, T(0), c1);
    struct clear_on_exit {
      bool& flag;
      ~clear_on_exit() { flag = false; }
    } guard{reuse_a_};
    reuse_a_ = true;  // the second product's `a` is the one just converted
    gemm(alpha, a, trans_a2, b2, trans_b2, T(0), c2);
  }
  /// `y += alpha · x`.
  template <class X, class Y>
  void axpy(T alpha, const X& x, Y& y) const {
    const auto prof = ctx_->profile("axpy");
    for_n(*ctx_, y.size(), detail::axpy_elements<T>{alpha, x.data(), y.data()});
  }
  /// `y = x`.
  template <class X, class Y>
  void copy(const X& x, Y& y) const {
    const auto prof = ctx_->profile("copy");
    copy_within(*ctx_, x.data(), y.data(), x.size());
  }
  /// `y = alpha · y`.
  template <class Y>
  void scale(T alpha, Y& y) const {
    const auto prof = ctx_->profile("scale");
    for_n(*ctx_, y.size(), detail::scale_elements<T>{alpha, y.data()});
  }
  /// `Σ_ij a_ij · b_ij` (products in `T`, summed in double; waits for the result).
  template <class A, class Bm>
  T dot(const A& a, const Bm& b) const {
    const auto prof = ctx_->profile("dot");
    const double s = reduce_n(*ctx_, a.size(), detail::product_terms<T>{a.data(), b.data()}, 0.0, detail::sum_of{});
    return static_cast<T>(s);
  }

  // Rows ---------------------------------------------------------------------------------------

  /// `out_i = lambda · z[ia_i] + (1 − lambda) · z[ib_i]` (the indices are host spans, uploaded).
  template <class Z, class Out>
  void gather_mix(const Z& z, std::span<const std::size_t> ia, std::span<const std::size_t> ib, T lambda,
                  Out& out) const {
    const auto prof = ctx_->profile("gather_mix");
    const std::size_t* da = ctx_->indices(context<S>::index_a, ia);
    const std::size_t* db = ctx_->indices(context<S>::index_b, ib);
    for_rows(*ctx_, ia.size(), detail::gather_mix_rows<T>{z.data(), da, db, lambda, out.data(), z.cols()});
  }
  /// Adds the vector `b` to every row of `y`.
  template <class Y, class V>
  void add_row_vector(Y& y, const V& b) const {
    const auto prof = ctx_->profile("add_row_vector");
    for_rows(*ctx_, y.rows(), detail::add_row_vector_rows<T>{y.data(), b.data(), y.cols()});
  }
  /// `out = Σ_rows dy` (a GEMV with a vector of ones on a GPU).
  template <class M, class V>
  void column_sums(const M& dy, V& out) const { column_sums(dy.data(), dy.rows(), dy.cols(), out.data()); }
  /// Whether `a` holds a NaN or an infinity; if so, where the first one is (row-major order).
  template <class A>
  bool find_non_finite(const A& a, std::size_t& row, std::size_t& col) const {
    const auto prof = ctx_->profile("find_non_finite");
    const std::size_t n = a.rows() * a.cols();
    const std::size_t e = find_first(*ctx_, n, detail::not_finite<T>{a.data()});
    if (e >= n) return false;
    row = e / a.cols(), col = e % a.cols();
    return true;
  }
  /// `n_i = p_i / max(‖p_i‖, eps)`, keeping each row's norm.
  template <class P, class N>
  void normalize_rows_forward(const P& p, T eps, N& n, vector_type& norms) const {
    const auto prof = ctx_->profile("normalize_rows_forward");
    resize(norms, p.rows());
    for_rows(*ctx_, p.rows(), detail::normalize_rows_forward_rows<T>{p.data(), eps, n.data(), norms.data(), p.cols()});
  }
  /// Gradient of `normalize_rows_forward`.
  template <class Dn, class N, class Dp>
  void normalize_rows_backward(const Dn& dn, const N& n, const vector_type& norms, T eps, Dp& dp) const {
    const auto prof = ctx_->profile("normalize_rows_backward");
    for_rows(*ctx_, n.rows(),
             detail::normalize_rows_backward_rows<T>{dn.data(), n.data(), norms.data(), eps, dp.data(), n.cols()});
  }

  // LayerNorm ----------------------------------------------------------------------------------

  /// `y = LayerNorm(x)·γ + β` per row, keeping the rows' mean and 1/σ.
  template <class X, class G, class Bv, class Y>
  void layer_norm_forward(const X& x, const G& gamma, const Bv& beta, T eps, Y& y, vector_type& mean,
                          vector_type& rstd) const {
    const auto prof = ctx_->profile("layer_norm_forward");
    resize(mean, x.rows());
    resize(rstd, x.rows());
    for_rows(*ctx_, x.rows(),
             detail::layer_norm_forward_rows<T>{x.data(), gamma.data(), beta.data(), eps, y.data(), mean.data(),
                                                rstd.data(), x.cols()});
  }
  /// The gradients of `layer_norm_forward`: dx, and dγ, dβ (column sums).
  template <class Dy, class X, class G, class Dx, class Dg, class Db>
  void layer_norm_backward(const Dy& dy, const X& x, const G& gamma, const vector_type& mean,
                           const vector_type& rstd, Dx& dx, Dg& dgamma, Db& dbeta) const {
    const auto prof = ctx_->profile("layer_norm_backward");
    const std::size_t n = x.rows(), d = x.cols();
    T* prod = ctx_->template scratch<T>(context<S>::mask, n * d);
    for_rows(*ctx_, n,
             detail::layer_norm_backward_rows<T>{dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(),
                                                 dx.data(), prod, d});
    column_sums(prod, n, d, dgamma.data());
    column_sums(dy.data(), n, d, dbeta.data());
  }

  // Activations --------------------------------------------------------------------------------

  template <class X, class Y>
  void gelu_forward(const X& x, Y& y) const {
    const auto prof = ctx_->profile("gelu_forward");
    for_n(*ctx_, x.size(), detail::gelu_elements<T>{x.data(), y.data()});
  }
  template <class Dy, class X, class Dx>
  void gelu_backward(const Dy& dy, const X& x, Dx& dx) const {
    const auto prof = ctx_->profile("gelu_backward");
    for_n(*ctx_, x.size(), detail::gelu_backward_elements<T>{dy.data(), x.data(), dx.data()});
  }
  template <class X, class Y>
  void dropout_forward(const X& x, const dropout_key& key, Y& y) const {
    const auto prof = ctx_->profile("dropout");
    if (key.p <= 0.0)
      copy(x, y);
    else
      for_n(*ctx_, x.size(), detail::dropout_elements<T>{x.data(), y.data(), detail::mask_key<T>::of(key)});
  }
  template <class Dy, class Dx>
  void dropout_backward(const Dy& dy, const dropout_key& key, Dx& dx) const { dropout_forward(dy, key, dx); }
  /// Fused `a += b` (row-wise), `h = dropout(GELU(a))`; `a` keeps the pre-activation.
  template <class A, class V, class H>
  void bias_gelu_dropout_forward(A& a, const V& b, const dropout_key& key, H& h) const {
    const auto prof = ctx_->profile("bias_gelu_dropout_forward");
    for_rows(*ctx_, a.rows(),
             detail::bias_gelu_dropout_rows<T>{a.data(), b.data(), h.data(), a.cols(), detail::mask_key<T>::of(key)});
  }
  /// `da = dh ⊙ mask / (1 − p) ⊙ GELU'(a)`; `da` may be `dh` itself.
  template <class Dh, class A, class Da>
  void gelu_dropout_backward(const Dh& dh, const A& a, const dropout_key& key, Da& da) const {
    const auto prof = ctx_->profile("gelu_dropout_backward");
    for_rows(*ctx_, a.rows(),
             detail::gelu_dropout_backward_rows<T>{dh.data(), a.data(), da.data(), a.cols(),
                                                   detail::mask_key<T>::of(key)});
  }

  // Loss primitives ----------------------------------------------------------------------------

  /// The symmetric InfoNCE loss over `logits` (B×B, positives on the diagonal) and its gradient
  /// `g`: one pass over the logits for the rows' log-sum-exp, one for the columns', one for `g`.
  template <class L, class G>
  T symmetric_cross_entropy(const L& logits, G& g) const;
  /// The pairwise sigmoid loss over `logits` (B×B; label +1 on the diagonal, −1 elsewhere):
  /// `(1/B)·Σ_ij −log σ(z_ij·l_ij)`, a row's terms summed in double, then the rows. Returns the
  /// loss (waits for it) and writes its gradient with respect to the logits into `g`.
  template <class L, class G>
  T sigmoid_cross_entropy(const L& logits, G& g) const;
  /// `Σ_ij a_ij`, summed in double; waits for the result.
  template <class A>
  T sum(const A& a) const {
    const auto prof = ctx_->profile("sum");
    return static_cast<T>(reduce_n(*ctx_, a.size(), detail::element_terms<T>{a.data()}, 0.0, detail::sum_of{}));
  }
  /// `y_ij = v` for every element.
  template <class Y>
  void fill(Y& y, T v) const {
    const auto prof = ctx_->profile("fill");
    for_n(*ctx_, y.size(), detail::fill_elements<T>{y.data(), v});
  }

  // Optimiser and k-DPP engine -----------------------------------------------------------------

  /// The AdamW of this backend (a fused pass over each model's flat buffer).
  [[nodiscard]] adamw<T, S> make_optimizer(const adamw_options& o) const { return adamw<T, S>(o, ctx_); }
  /// The k-DPP engine over latents `z` in this backend's memory (kept by pointer) for a
  /// dot-product kernel, keeping coordinates for `capacity` picks (no window).
  template <DotProductKernel K>
  [[nodiscard]] detail::kdpp_engine<T, K, S> make_kdpp_engine(const latent_view<T>& z, const K& kernel,
                                                              std::size_t capacity) const {
    return {ctx_, z, kernel, capacity};
  }

 private:
  void column_sums(const T* a, std::size_t rows, std::size_t cols, T* out) const;

  std::shared_ptr<context<S>> ctx_;
  mutable bool reuse_a_ = false;  // inside gemm_shared: the bf16 copy of `a` is already in its slot
};

/// The CUDA backend's code on the host (any C++20 compiler).
template <Scalar T>
using host_backend = backend<T, host_system>;

static_assert(Backend<backend<float, host_system>>);
static_assert(Backend<backend<double, host_system>>);
#if defined(__CUDACC__)
static_assert(Backend<backend<float, device_system>>);
static_assert(Backend<backend<double, device_system>>);
#endif

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

template <Scalar T, System S>
template <class L, class G>
T backend<T, S>::symmetric_cross_entropy(const L& logits, G& g) const {
  const auto prof = ctx_->profile("symmetric_cross_entropy");
  const std::size_t n = logits.rows();
  constexpr std::size_t rows_per_chunk = 256;
  const std::size_t chunks = (n + rows_per_chunk - 1) / rows_per_chunk;
  T* row_lse = ctx_->template scratch<T>(context<S>::row_stats, n);
  T* col_lse = ctx_->template scratch<T>(context<S>::col_stats, n);
  T* part = ctx_->template scratch<T>(context<S>::col_partials, 2 * chunks * n);
  for_rows(*ctx_, n, detail::row_lse_rows<T>{logits.data(), row_lse, n});
  for_n(*ctx_, chunks * n, detail::column_lse_partials<T>{logits.data(), part, part + chunks * n, n, rows_per_chunk});
  for_n(*ctx_, n, detail::column_lse_combine<T>{part, part + chunks * n, col_lse, n, chunks});
  const T scale = T(0.5) / static_cast<T>(n);
  for_rows(*ctx_, n, detail::softmax_gradient_rows<T>{logits.data(), row_lse, col_lse, g.data(), scale, n});
  const double loss =
      reduce_n(*ctx_, n, detail::diagonal_terms<T>{logits.data(), row_lse, col_lse, n}, 0.0, detail::sum_of{});
  return static_cast<T>(loss * 0.5 / static_cast<double>(n));
}

template <Scalar T, System S>
template <class L, class G>
T backend<T, S>::sigmoid_cross_entropy(const L& logits, G& g) const {
  const auto prof = ctx_->profile("sigmoid_cross_entropy");
  const std::size_t n = logits.rows();
  double* row_loss = ctx_->template scratch<double>(context<S>::row_stats, n);
  for_rows(*ctx_, n, detail::sigmoid_rows<T>{logits.data(), g.data(), row_loss, T(1) / static_cast<T>(n), n});
  const double loss = reduce_n(*ctx_, n, detail::element_terms<double>{row_loss}, 0.0, detail::sum_of{});
  return static_cast<T>(loss / static_cast<double>(n));
}

template <Scalar T, System S>
void backend<T, S>::column_sums(const T* a, std::size_t rows, std::size_t cols, T* out) const {
  if (cols == 0) return;
  const auto prof = ctx_->profile("column_sums");
  if (rows == 0)  // (a GEMV over no rows returns without writing)
    for_n(*ctx_, cols, detail::fill_elements<T>{out, T(0)});
  else if constexpr (std::is_same_v<S, host_system>)
    for_n(*ctx_, cols, detail::column_sums_columns<T>{a, out, rows, cols});
  else
    detail::gemm_ops<S>::column_sums(*ctx_, a, rows, cols, out);
}

}  // namespace fusemix::cuda
