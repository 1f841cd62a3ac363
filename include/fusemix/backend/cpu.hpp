// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend: the primitives every layer is written against, implemented with Eigen.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <array>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>  // vectorised erf for GELU

// Opt-in: a consumer that links OpenBLAS defines FUSEMIX_USE_OPENBLAS (the CMake option
// FUSEMIX_BLAS does both for this repo's programs) and the GEMMs go to cblas_?gemm; nothing
// else changes. Without it the header needs Eigen only.
#if defined(FUSEMIX_USE_OPENBLAS)
#include <cblas.h>
#endif

#include <fusemix/concepts.hpp>
#include <fusemix/error.hpp>
#include <fusemix/detail/math.hpp>
#include <fusemix/random.hpp>

namespace fusemix {

namespace cpu {

/// Sets the threads of the CPU GEMMs: Eigen's (OpenMP, where the program is built with it) and,
/// with FUSEMIX_USE_OPENBLAS, OpenBLAS's. Results are bitwise reproducible for a given count.
/// `n == 0` leaves the libraries' defaults (`OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, all cores).
inline void set_threads(int n) {
  if (n <= 0) return;
  Eigen::setNbThreads(n);
#if defined(FUSEMIX_USE_OPENBLAS)
  openblas_set_num_threads(n);
#endif
}

/// The GEMM libraries `backend::gemm` can use for float and double operands.
enum class gemm_library { eigen, openblas };

[[nodiscard]] constexpr const char* to_string(gemm_library g) noexcept {
  return g == gemm_library::openblas ? "openblas" : "eigen";
}

/// Whether this program was built with OpenBLAS (`FUSEMIX_USE_OPENBLAS`).
[[nodiscard]] constexpr bool openblas_linked() noexcept {
#if defined(FUSEMIX_USE_OPENBLAS)
  return true;
#else
  return false;
#endif
}

/// The library chosen when nothing is set: OpenBLAS where linked, except when this code is built
/// for AVX-512 and OpenBLAS's kernel is not an AVX-512 one (an `OPENBLAS_CORETYPE` pin such as
/// Haswell, or an old OpenBLAS): Eigen's AVX-512 GEMM is then the faster. A function of the
/// build and the environment only, so every run of one setup makes the same choice.
[[nodiscard]] inline gemm_library default_gemm_library() {
#if defined(FUSEMIX_USE_OPENBLAS)
#if defined(__AVX512F__)
  const std::string_view core = openblas_get_corename();
  for (const std::string_view k : {"skylakex", "cooperlake", "sapphirerapids"})
    if (core.size() == k.size() &&
        std::equal(core.begin(), core.end(), k.begin(), [](char a, char b) { return (a | 0x20) == b; }))
      return gemm_library::openblas;
  return gemm_library::eigen;
#else
  return gemm_library::openblas;
#endif
#else
  return gemm_library::eigen;
#endif
}

// The process-wide choice. (A function-local static, not a `cpu::detail` namespace: that would
// hide `fusemix::detail` from every unqualified `detail::` below.)
inline gemm_library& gemm_choice() {
  static gemm_library choice = default_gemm_library();
  return choice;
}

/// The GEMM library in use (process-wide).
[[nodiscard]] inline gemm_library current_gemm_library() { return gemm_choice(); }

/// Chooses the GEMM library for the whole process; results are bitwise reproducible for a given
/// library and thread count. Call it before training, not during.
/// @throws argument_error for `openblas` in a program built without it.
inline void set_gemm_library(gemm_library g) {
  if (g == gemm_library::openblas && !openblas_linked())
    detail::throw_expected<argument_error>("fusemix::cpu::set_gemm_library", "this program is built without OpenBLAS",
                                           "eigen (or a build with FUSEMIX_USE_OPENBLAS)", "openblas");
  gemm_choice() = g;
}

/// A dense row-major operand that BLAS can read in place: contiguous rows at a known stride.
template <class M>
concept blas_operand = requires(M& m) {
  { m.data() };
  { m.outerStride() };
} && (std::remove_cvref_t<M>::Flags & Eigen::RowMajorBit) != 0 && std::remove_cvref_t<M>::InnerStrideAtCompileTime == 1;

/// The CPU backend over Eigen: dense row-major matrices, one sample per row.
///
/// Layers, adapters and (later) the loss and trainer call only these primitives, so another
/// backend (CUDA) supplies the same members and the algorithms are not written twice.
/// Every primitive overwrites its outputs (no accumulation) and never allocates unless an
/// output must change shape. A backend object keeps small scratch rows for the row-wise passes
/// (sized on first use), so one object must not be used by two threads at once; copies are
/// independent.
///
/// @tparam T `float` for training, `double` for gradient checks.
template <Scalar T>
class backend {
 public:
  using scalar_type = T;
  /// An owning matrix (activations, gradients of activations).
  using matrix_type = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  /// An owning column vector (per-row statistics).
  using vector_type = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  /// Views into flat parameter storage.
  using matrix_map = Eigen::Map<matrix_type>;
  using const_matrix_map = Eigen::Map<const matrix_type>;
  using vector_map = Eigen::Map<vector_type>;
  using const_vector_map = Eigen::Map<const vector_type>;
  /// Flat parameter storage (64-byte aligned, see docs/design.md).
  template <class U>
  using buffer = std::vector<U, detail::aligned_allocator<U>>;
  /// Whether the host can dereference this backend's pointers.
  static constexpr bool host_memory = true;

  // Shapes and storage ---------------------------------------------------------------------

  template <class M>
  static std::size_t rows(const M& a) noexcept { return static_cast<std::size_t>(a.rows()); }
  template <class M>
  static std::size_t cols(const M& a) noexcept { return static_cast<std::size_t>(a.cols()); }
  /// Gives `a` the shape `r × c`, reallocating only when the shape changes.
  static void resize(matrix_type& a, std::size_t r, std::size_t c) {
    if (rows(a) != r || cols(a) != c) a.resize(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
  }
  static void resize(vector_type& a, std::size_t n) {
    if (static_cast<std::size_t>(a.size()) != n) a.resize(static_cast<Eigen::Index>(n));
  }
  static matrix_map map(T* p, std::size_t r, std::size_t c) noexcept {
    return {p, static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)};
  }
  static const_matrix_map map(const T* p, std::size_t r, std::size_t c) noexcept {
    return {p, static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)};
  }
  static vector_map map(T* p, std::size_t n) noexcept { return {p, static_cast<Eigen::Index>(n)}; }
  static const_vector_map map(const T* p, std::size_t n) noexcept { return {p, static_cast<Eigen::Index>(n)}; }

  /// `n` zeros (a model's parameter or gradient buffer).
  static buffer<T> zero_buffer(std::size_t n) { return buffer<T>(n, T(0)); }
  /// Copies host values to `dst` (the same memory here; the CUDA backend's moves them to the device).
  static void upload(std::span<const T> host, T* dst) { std::copy(host.begin(), host.end(), dst); }
  /// Copies the values at `src` into `host`.
  static void download(const T* src, std::span<T> host) { std::copy_n(src, host.size(), host.begin()); }
  /// Copies `n` values from `src` to `dst`.
  static void copy_n(const T* src, std::size_t n, T* dst) { std::copy_n(src, n, dst); }

  // Dense linear algebra -------------------------------------------------------------------

  /// `c = alpha · op(a) · op(b) + beta · c`, where `op(m)` is `m` or `mᵀ`.
  template <class A, class Bm, class C>
  void gemm(T alpha, const A& a, bool trans_a, const Bm& b, bool trans_b, T beta, C& c) const {
#if defined(FUSEMIX_USE_OPENBLAS)
    if constexpr ((std::is_same_v<T, float> || std::is_same_v<T, double>) && blas_operand<const A> &&
                  blas_operand<const Bm> && blas_operand<C>) {
      if (current_gemm_library() == gemm_library::openblas) {
        const auto m = static_cast<blasint>(c.rows()), n = static_cast<blasint>(c.cols());
        const auto k = static_cast<blasint>(trans_a ? a.rows() : a.cols());
        if (m == 0 || n == 0) return;
        const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
        // BLAS reads a leading dimension of at least 1 even for empty operands.
        const auto ld = [](const auto& x) { return static_cast<blasint>(std::max<Eigen::Index>(x.outerStride(), 1)); };
        if constexpr (std::is_same_v<T, float>)
          cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data(), ld(a), b.data(), ld(b), beta, c.data(), ld(c));
        else
          cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data(), ld(a), b.data(), ld(b), beta, c.data(), ld(c));
        return;
      }
    }
#endif
    if (beta == T(0))
      c.setZero();
    else if (beta != T(1))
      c *= beta;
    if (!trans_a && !trans_b)
      c.noalias() += alpha * a * b;
    else if (!trans_a && trans_b)
      c.noalias() += alpha * a * b.transpose();
    else if (trans_a && !trans_b)
      c.noalias() += alpha * a.transpose() * b;
    else
      c.noalias() += alpha * a.transpose() * b.transpose();
  }
  /// Two products with the same left operand: `c1 = alpha · op1(a) · op(b1)` and
  /// `c2 = alpha · op2(a) · op(b2)` (a layer's backward: dW = dyᵀ·x and dx = dy·W). The CUDA
  /// backend prepares `a` once for both (its bf16 copy); here, two GEMMs.
  template <class A, class B1, class C1, class B2, class C2>
  void gemm_shared(T alpha, const A& a, bool trans_a1, const B1& b1, bool trans_b1, C1& c1, bool trans_a2, const B2& b2,
                   bool trans_b2, C2& c2) const {
    gemm(alpha, a, trans_a1, b1, trans_b1, T(0), c1);
    gemm(alpha, a, trans_a2, b2, trans_b2, T(0), c2);
  }
  /// `y += alpha · x`.
  template <class X, class Y>
  void axpy(T alpha, const X& x, Y& y) const { y.noalias() += alpha * x; }
  /// `y = x`.
  template <class X, class Y>
  void copy(const X& x, Y& y) const { y = x; }

  // Rows -----------------------------------------------------------------------------------

  /// `out_i = lambda · z[ia_i] + (1 − lambda) · z[ib_i]`: FuseMix's mixup folded into the gather
  /// of a batch's rows (lambda = 1 with ia = ib is a plain gather).
  template <class Z, class Out>
  void gather_mix(const Z& z, std::span<const std::size_t> ia, std::span<const std::size_t> ib, T lambda,
                  Out& out) const {
    for (std::size_t i = 0; i < ia.size(); ++i) {
      const auto a = static_cast<Eigen::Index>(ia[i]), b = static_cast<Eigen::Index>(ib[i]);
      if (lambda == T(1))
        out.row(static_cast<Eigen::Index>(i)) = z.row(a);
      else
        out.row(static_cast<Eigen::Index>(i)) = lambda * z.row(a) + (T(1) - lambda) * z.row(b);
    }
  }
  /// `n_i = p_i / max(‖p_i‖, eps)` (as `F.normalize`), keeping each row's norm for backward.
  template <class P, class N>
  void normalize_rows_forward(const P& p, T eps, N& n, vector_type& norms) const {
    resize(norms, static_cast<std::size_t>(p.rows()));
    for (Eigen::Index i = 0; i < p.rows(); ++i) {
      norms[i] = p.row(i).norm();
      n.row(i) = p.row(i) / std::max(norms[i], eps);
    }
  }
  /// Gradient of `normalize_rows_forward`: `dp_i = (dn_i − n_i (n_i·dn_i)) / ‖p_i‖`, or
  /// `dn_i / eps` for a row whose norm was clamped to eps.
  template <class Dn, class N, class Dp>
  void normalize_rows_backward(const Dn& dn, const N& n, const vector_type& norms, T eps, Dp& dp) const {
    for (Eigen::Index i = 0; i < n.rows(); ++i) {
      if (norms[i] > eps)
        dp.row(i) = (dn.row(i) - n.row(i) * n.row(i).dot(dn.row(i))) / norms[i];
      else
        dp.row(i) = dn.row(i) / eps;
    }
  }
  /// The symmetric InfoNCE loss over `logits` (B×B, positives on the diagonal):
  /// `½(mean_i CE(row i, i) + mean_j CE(column j, j))`, with log-sum-exp in each direction.
  /// Returns the loss and writes its gradient with respect to the logits into `g`.
  template <class L, class G>
  T symmetric_cross_entropy(const L& logits, G& g) const {
    // Row-major logits: every pass walks rows, vectorised across columns; the column direction
    // keeps its running maxima and sums as rows.
    const Eigen::Index n = logits.rows();
    resize(row_lse_, static_cast<std::size_t>(n));
    col_max_.resize(n);
    col_lse_.resize(n);
    col_max_ = logits.row(0).array();
    for (Eigen::Index i = 1; i < n; ++i) col_max_ = col_max_.max(logits.row(i).array());
    col_lse_.setZero();
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto r = logits.row(i).array();
      const T m = r.maxCoeff();
      row_lse_[i] = m + std::log((r - m).exp().sum());
      col_lse_ += (r - col_max_).exp();
    }
    col_lse_ = col_max_ + col_lse_.log();
    double loss = 0;
    for (Eigen::Index i = 0; i < n; ++i)
      loss += static_cast<double>(row_lse_[i] - logits(i, i)) + static_cast<double>(col_lse_[i] - logits(i, i));
    const T scale = T(0.5) / static_cast<T>(n);
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto r = logits.row(i).array();
      g.row(i).array() = scale * ((r - row_lse_[i]).exp() + (r - col_lse_).exp());
      g(i, i) -= 2 * scale;
    }
    return static_cast<T>(loss * 0.5 / static_cast<double>(n));
  }
  /// Whether `a` holds a NaN or an infinity; if so, where the first one is (row-major order).
  template <class A>
  bool find_non_finite(const A& a, std::size_t& row, std::size_t& col) const {
    if (a.allFinite()) return false;
    for (Eigen::Index i = 0; i < a.rows(); ++i)
      for (Eigen::Index j = 0; j < a.cols(); ++j)
        if (!std::isfinite(a(i, j))) {
          row = static_cast<std::size_t>(i), col = static_cast<std::size_t>(j);
          return true;
        }
    return false;
  }
  /// `Σ_ij a_ij · b_ij`.
  template <class A, class Bm>
  T dot(const A& a, const Bm& b) const { return a.cwiseProduct(b).sum(); }
  /// `y = alpha · y`.
  template <class Y>
  void scale(T alpha, Y& y) const { y *= alpha; }

  // Bias -----------------------------------------------------------------------------------

  /// Adds the vector `b` to every row of `y`.
  template <class Y, class V>
  void add_row_vector(Y& y, const V& b) const { y.rowwise() += b.transpose(); }
  /// `out = Σ_rows dy` (the gradient of a bias).
  template <class M, class V>
  void column_sums(const M& dy, V& out) const { out.noalias() = dy.colwise().sum().transpose(); }

  // LayerNorm over each row ----------------------------------------------------------------

  /// `y = (x − mean) · rstd · gamma + beta` per row; saves `mean` and `rstd = 1/√(var + eps)`
  /// (biased variance, as PyTorch) for backward.
  template <class X, class G, class Bv, class Y>
  void layer_norm_forward(const X& x, const G& gamma, const Bv& beta, T eps, Y& y, vector_type& mean,
                          vector_type& rstd) const {
    const Eigen::Index n = x.rows(), d = x.cols();
    resize(mean, static_cast<std::size_t>(n));
    resize(rstd, static_cast<std::size_t>(n));
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto row = x.row(i);
      const T mu = row.mean();
      const T var = (row.array() - mu).square().sum() / static_cast<T>(d);
      const T r = T(1) / std::sqrt(var + eps);
      mean[i] = mu;
      rstd[i] = r;
      y.row(i) = ((row.array() - mu) * r * gamma.transpose().array() + beta.transpose().array()).matrix();
    }
  }
  /// Gradients of LayerNorm: `dx`, and `dgamma`, `dbeta` summed over rows.
  template <class Dy, class X, class G, class Dx, class Dg, class Db>
  void layer_norm_backward(const Dy& dy, const X& x, const G& gamma, const vector_type& mean,
                           const vector_type& rstd, Dx& dx, Dg& dgamma, Db& dbeta) const {
    const Eigen::Index n = x.rows(), d = x.cols();
    dgamma.setZero();
    dbeta.setZero();
    row_array& xhat = scratch_a_;
    row_array& g = scratch_b_;
    xhat.resize(d);
    g.resize(d);
    for (Eigen::Index i = 0; i < n; ++i) {
      xhat = (x.row(i).array() - mean[i]) * rstd[i];
      g = dy.row(i).array() * gamma.transpose().array();
      dgamma.transpose().array() += dy.row(i).array() * xhat;
      dbeta.transpose().array() += dy.row(i).array();
      const T mean_g = g.mean();
      const T mean_gx = (g * xhat).mean();
      dx.row(i) = (rstd[i] * (g - mean_g - xhat * mean_gx)).matrix();
    }
  }

  // Activations ----------------------------------------------------------------------------

  /// `y = GELU(x)` (exact erf form).
  template <class X, class Y>
  void gelu_forward(const X& x, Y& y) const {
    y.array() = gelu_of(x.array());
  }
  /// `dx = dy · GELU'(x)`.
  template <class Dy, class X, class Dx>
  void gelu_backward(const Dy& dy, const X& x, Dx& dx) const {
    dx.array() = dy.array() * gelu_grad_of(x.array());
  }
  /// `y = mask ⊙ x / (1 − p)` with the mask of `key`.
  template <class X, class Y>
  void dropout_forward(const X& x, const dropout_key& key, Y& y) const {
    if (key.p <= 0.0) {
      y = x;
      return;
    }
    const Eigen::Index n = x.rows(), w = x.cols();
    for (Eigen::Index i = 0; i < n; ++i) {
      fill_mask(key, static_cast<std::size_t>(i * w), w);
      y.row(i).array() = x.row(i).array() * mask_;
    }
  }
  /// `dx = mask ⊙ dy / (1 − p)`, regenerating the mask of `key`.
  template <class Dy, class Dx>
  void dropout_backward(const Dy& dy, const dropout_key& key, Dx& dx) const {
    dropout_forward(dy, key, dx);
  }
  /// Fused `a += b` (row-wise bias), `h = dropout(GELU(a))`, a row at a time while the row is in
  /// cache; `a` keeps the pre-activation that backward needs.
  template <class A, class V, class H>
  void bias_gelu_dropout_forward(A& a, const V& b, const dropout_key& key, H& h) const {
    const Eigen::Index n = a.rows(), w = a.cols();
    const auto bias = b.transpose().array();
    for (Eigen::Index i = 0; i < n; ++i) {
      auto ai = a.row(i).array();
      ai += bias;
      if (key.p <= 0.0) {
        h.row(i).array() = gelu_of(ai);
      } else {
        fill_mask(key, static_cast<std::size_t>(i * w), w);
        h.row(i).array() = gelu_of(ai) * mask_;  // (no select: Eigen 3.4 does not vectorise it)
      }
    }
  }
  /// `da = dh ⊙ mask / (1 − p) ⊙ GELU'(a)`; `da` may be `dh` itself.
  template <class Dh, class A, class Da>
  void gelu_dropout_backward(const Dh& dh, const A& a, const dropout_key& key, Da& da) const {
    const Eigen::Index n = a.rows(), w = a.cols();
    for (Eigen::Index i = 0; i < n; ++i) {
      if (key.p <= 0.0) {
        da.row(i).array() = dh.row(i).array() * gelu_grad_of(a.row(i).array());
      } else {
        fill_mask(key, static_cast<std::size_t>(i * w), w);
        da.row(i).array() = dh.row(i).array() * mask_ * gelu_grad_of(a.row(i).array());
      }
    }
  }

 private:
  using row_array = Eigen::Array<T, 1, Eigen::Dynamic>;

  // GELU and its derivative as Eigen expressions (erf and exp vectorise for float); the same
  // functions as detail::gelu and detail::gelu_grad.
  template <class X>
  static auto gelu_of(const X& x) {
    return T(0.5) * x * (T(1) + (x * T(0.70710678118654752440)).erf());
  }
  template <class X>
  static auto gelu_grad_of(const X& x) {
    return T(0.5) * (T(1) + (x * T(0.70710678118654752440)).erf()) +
           x * (T(0.39894228040143267794) * (T(-0.5) * x.square()).exp());
  }

  // Writes into mask_ the scale of elements [first, first + n) of draw `key`: 0 for dropped ones,
  // 1/(1−p) for kept ones. Element i uses word i%4 of Philox block i/4, as detail::dropout_keep.
  // Sixteen blocks run side by side in plain lane loops that the compiler vectorises, and
  // "uniform_float(w) >= p" is decided on the integer w >> 8 against ⌈p·2²⁴⌉ (the same answer:
  // uniform_float is exactly (w >> 8)·2⁻²⁴).
  void fill_mask(const dropout_key& key, std::size_t first, Eigen::Index n) const {
    mask_.resize(n);
    const T keep_scale = key.p >= 1.0 ? T(0) : T(1) / (T(1) - static_cast<T>(key.p));
    const auto threshold = static_cast<std::uint32_t>(std::min(std::ceil(key.p * 16777216.0), 16777216.0));
    constexpr std::size_t lanes = 16;
    constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u, w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
    const auto draw_lo = static_cast<std::uint32_t>(key.draw), draw_hi = static_cast<std::uint32_t>(key.draw >> 32);
    const std::size_t end = first + static_cast<std::size_t>(n);
    alignas(64) std::uint32_t c0[lanes], c1[lanes], c2[lanes], c3[lanes];
    alignas(64) T out[4 * lanes];
    for (std::size_t group = first / (4 * lanes); group * 4 * lanes < end; ++group) {
      const std::uint64_t block0 = group * lanes;
      for (std::size_t l = 0; l < lanes; ++l) {
        c0[l] = static_cast<std::uint32_t>(block0 + l);
        c1[l] = static_cast<std::uint32_t>((block0 + l) >> 32);
        c2[l] = draw_lo;
        c3[l] = draw_hi;
      }
      std::uint32_t k0 = static_cast<std::uint32_t>(key.seed), k1 = static_cast<std::uint32_t>(key.seed >> 32);
      for (int round = 0; round < 10; ++round) {
        for (std::size_t l = 0; l < lanes; ++l) {
          const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * c0[l];
          const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * c2[l];
          const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1[l] ^ k0;
          const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3[l] ^ k1;
          c0[l] = n0, c1[l] = static_cast<std::uint32_t>(p1), c2[l] = n2, c3[l] = static_cast<std::uint32_t>(p0);
        }
        k0 += w0, k1 += w1;
      }
      for (std::size_t l = 0; l < lanes; ++l) {
        out[4 * l + 0] = (c0[l] >> 8) >= threshold ? keep_scale : T(0);
        out[4 * l + 1] = (c1[l] >> 8) >= threshold ? keep_scale : T(0);
        out[4 * l + 2] = (c2[l] >> 8) >= threshold ? keep_scale : T(0);
        out[4 * l + 3] = (c3[l] >> 8) >= threshold ? keep_scale : T(0);
      }
      const std::size_t g0 = group * 4 * lanes, lo = std::max(g0, first), hi = std::min(g0 + 4 * lanes, end);
      for (std::size_t i = lo; i < hi; ++i) mask_[static_cast<Eigen::Index>(i - first)] = out[i - g0];
    }
  }

  // Scratch of the row-wise passes (see the class comment).
  mutable row_array mask_, col_max_, col_lse_, scratch_a_, scratch_b_;
  mutable vector_type row_lse_;
};

}  // namespace cpu

/// The CPU matrix: dense, row-major, one sample per row (what `.npy` files hold).
template <Scalar T = float>
using matrix = typename cpu::backend<T>::matrix_type;

}  // namespace fusemix
