// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend: the primitives of `cpu::backend`, on device memory, written once over
/// Thrust algorithms and `FUSEMIX_HD` functors (see system.hpp for where they run).
///
/// Layers, adapters, the loss and the trainer are the CPU's templates instantiated with
/// `cuda::backend<float>`; nothing of the method is written twice. On a GPU the GEMMs are cuBLAS
/// calls (fp32, or TF32 / bf16 tensor-core products with float accumulation, `gemm_precision`),
/// the elementwise passes are Thrust kernels, the row-wise ones (LayerNorm, row normalisation,
/// the contrastive softmax) a thread block per row, and bias gradients cuBLAS GEMVs.
#pragma once

#include <fusemix/backend/cuda/system.hpp>

#include <thrust/fill.h>
#include <thrust/find.h>
#include <thrust/inner_product.h>
#include <thrust/transform_reduce.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include <fusemix/concepts.hpp>
#include <fusemix/detail/math.hpp>
#include <fusemix/error.hpp>
#include <fusemix/optim.hpp>
#include <fusemix/random.hpp>

#if !FUSEMIX_CUDA_DEVICE
#  include <Eigen/Core>
#  include <fusemix/backend/cpu.hpp>  // the host system's GEMM
#endif

namespace fusemix::cuda {

// ------------------------------------------------------------------------------------------------
// Matrices
// ------------------------------------------------------------------------------------------------

/// A non-owning row-major view of backend memory (`T` may be const).
template <class T>
class matrix_ref {
 public:
  using value_type = std::remove_const_t<T>;
  matrix_ref() noexcept = default;
  matrix_ref(T* p, std::size_t r, std::size_t c) noexcept : p_(p), r_(r), c_(c) {}
  template <class U>
    requires std::is_convertible_v<U*, T*>
  matrix_ref(const matrix_ref<U>& o) noexcept : p_(o.data()), r_(o.rows()), c_(o.cols()) {}  // NOLINT
  [[nodiscard]] T* data() const noexcept { return p_; }
  [[nodiscard]] std::size_t rows() const noexcept { return r_; }
  [[nodiscard]] std::size_t cols() const noexcept { return c_; }
  [[nodiscard]] std::size_t size() const noexcept { return r_ * c_; }

 private:
  T* p_ = nullptr;
  std::size_t r_ = 0, c_ = 0;
};

/// A non-owning view of a vector in backend memory.
template <class T>
class vector_ref {
 public:
  using value_type = std::remove_const_t<T>;
  vector_ref(T* p, std::size_t n) noexcept : p_(p), n_(n) {}
  [[nodiscard]] T* data() const noexcept { return p_; }
  [[nodiscard]] std::size_t size() const noexcept { return n_; }
  [[nodiscard]] std::size_t rows() const noexcept { return n_; }
  [[nodiscard]] std::size_t cols() const noexcept { return 1; }

 private:
  T* p_;
  std::size_t n_;
};

/// An owning row-major matrix in backend memory (uninitialised after `resize`).
template <Scalar T>
class matrix {
 public:
  using value_type = T;
  matrix() = default;
  matrix(std::size_t r, std::size_t c) : a_(r * c), r_(r), c_(c) {}
  [[nodiscard]] T* data() noexcept { return a_.data(); }
  [[nodiscard]] const T* data() const noexcept { return a_.data(); }
  [[nodiscard]] std::size_t rows() const noexcept { return r_; }
  [[nodiscard]] std::size_t cols() const noexcept { return c_; }
  [[nodiscard]] std::size_t size() const noexcept { return r_ * c_; }
  /// Gives the matrix the shape `r × c`, reallocating only when the element count changes.
  void resize(std::size_t r, std::size_t c) {
    if (r * c != a_.size()) a_ = array<T>(r * c);
    r_ = r, c_ = c;
  }

 private:
  array<T> a_;
  std::size_t r_ = 0, c_ = 0;
};

/// An owning vector in backend memory.
template <Scalar T>
class vector {
 public:
  using value_type = T;
  [[nodiscard]] T* data() noexcept { return a_.data(); }
  [[nodiscard]] const T* data() const noexcept { return a_.data(); }
  [[nodiscard]] std::size_t size() const noexcept { return a_.size(); }
  [[nodiscard]] std::size_t rows() const noexcept { return a_.size(); }
  [[nodiscard]] std::size_t cols() const noexcept { return 1; }
  void resize(std::size_t n) {
    if (n != a_.size()) a_ = array<T>(n);
  }

 private:
  array<T> a_;
};

template <class T>
class adamw;

// ------------------------------------------------------------------------------------------------
// Device functors: the whole arithmetic of the backend
// ------------------------------------------------------------------------------------------------

namespace kernels {

// GELU and its derivative: the same formulas as detail::gelu / detail::gelu_grad.
template <class T>
FUSEMIX_HD inline T gelu(T x) noexcept {
  return T(0.5) * x * (T(1) + math::erf(x * T(0.70710678118654752440)));
}
template <class T>
FUSEMIX_HD inline T gelu_grad(T x) noexcept {
  return T(0.5) * (T(1) + math::erf(x * T(0.70710678118654752440))) +
         x * (T(0.39894228040143267794) * math::exp(T(-0.5) * x * x));
}

// A dropout key in the form the functors use: the keep test on the integer `word >> 8` against
// ⌈p·2²⁴⌉ (what `uniform_float(word) >= p` decides) and the kept elements' scale, in T, as the
// CPU backend computes it.
template <class T>
struct mask_key {
  std::uint32_t seed_lo = 0, seed_hi = 0, draw_lo = 0, draw_hi = 0, threshold = 0;
  T keep_scale = 1;
  bool active = false;

  static mask_key of(const dropout_key& k) {
    mask_key m;
    m.seed_lo = static_cast<std::uint32_t>(k.seed), m.seed_hi = static_cast<std::uint32_t>(k.seed >> 32);
    m.draw_lo = static_cast<std::uint32_t>(k.draw), m.draw_hi = static_cast<std::uint32_t>(k.draw >> 32);
    m.threshold = static_cast<std::uint32_t>(std::min(std::ceil(k.p * 16777216.0), 16777216.0));
    m.keep_scale = k.p >= 1.0 ? T(0) : T(1) / (T(1) - static_cast<T>(k.p));
    m.active = k.p > 0.0;
    return m;
  }
  // The scales of the four elements of Philox block `block` (elements 4·block … 4·block + 3).
  FUSEMIX_HD void block_scales(std::uint64_t block, T out[4]) const noexcept {
    const auto r = philox4x32({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), draw_lo, draw_hi},
                              {seed_lo, seed_hi});
    for (int w = 0; w < 4; ++w) out[w] = (r[w] >> 8) >= threshold ? keep_scale : T(0);
  }
  FUSEMIX_HD T scale(std::uint64_t element) const noexcept {
    T s[4];
    block_scales(element / 4, s);
    return s[element % 4];
  }
};

// Calls f(flat index, mask scale) for the elements of row i (width w) that thread `rank` of
// `size` owns: four consecutive elements per Philox block where rows start on a block boundary,
// so each block is generated once.
template <class T, class G, class F>
FUSEMIX_HD inline void masked_row(const G& g, const mask_key<T>& key, std::size_t i, std::size_t w, const F& f) {
  const std::size_t first = i * w;
  if (!key.active) {
    for (std::size_t j = g.rank(); j < w; j += g.size()) f(first + j, T(1));
  } else if (w % 4 == 0) {
    for (std::size_t q = 4 * g.rank(); q < w; q += 4 * g.size()) {
      T s[4];
      key.block_scales((first + q) / 4, s);
      for (int l = 0; l < 4; ++l) f(first + q + l, s[l]);
    }
  } else {
    for (std::size_t j = g.rank(); j < w; j += g.size()) f(first + j, key.scale(first + j));
  }
}

// Four consecutive elements, as one 16-byte access on a GPU for float (coalesced across a warp:
// a thread per four elements would otherwise leave each store a partial sector).
template <class T>
FUSEMIX_HD inline void load4(const T* p, T out[4]) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  } else
#endif
  {
    for (int l = 0; l < 4; ++l) out[l] = p[l];
  }
}
template <class T>
FUSEMIX_HD inline void store4(T* p, const T v[4]) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else
#endif
  {
    for (int l = 0; l < 4; ++l) p[l] = v[l];
  }
}
// Whether every pointer allows 16-byte accesses.
template <class... P>
FUSEMIX_HD inline bool aligned16(const P*... p) noexcept {
  return ((reinterpret_cast<std::uintptr_t>(p) % 16 == 0) && ...);
}

// Rows of a width divisible by four, starting 16-byte aligned: a thread per four elements, which
// share one Philox block (element index first + q is a multiple of four).
template <class T, class G, class F>
FUSEMIX_HD inline void row_quads(const G& g, const mask_key<T>& key, std::size_t first, std::size_t w, const F& f) {
  for (std::size_t q = 4 * g.rank(); q < w; q += 4 * g.size()) {
    T s[4] = {T(1), T(1), T(1), T(1)};
    if (key.active) key.block_scales((first + q) / 4, s);
    f(q, s);
  }
}

template <class T>
struct bias_gelu_dropout_rows {
  T* a;
  const T* bias;
  T* h;
  std::size_t w;
  mask_key<T> key;
  template <class G>
  FUSEMIX_HD void operator()(const G& g, std::size_t i) const {
    const std::size_t first = i * w;
    if (w % 4 == 0 && aligned16(a + first, h + first, bias)) {
      row_quads<T>(g, key, first, w, [&](std::size_t q, const T s[4]) {
        T x[4], b[4], y[4];
        load4(a + first + q, x);
        load4(bias + q, b);
        for (int l = 0; l < 4; ++l) x[l] += b[l], y[l] = gelu(x[l]) * s[l];  // (× 1 is exact when p = 0)
        store4(a + first + q, x);
        store4(h + first + q, y);
      });
      return;
    }
    masked_row<T>(g, key, i, w, [&](std::size_t e, T s) {
      const T x = a[e] + bias[e - first];
      a[e] = x;
      h[e] = gelu(x) * s;
    });
  }
};

template <class T>
struct gelu_dropout_backward_rows {
  const T* dh;
  const T* a;
  T* da;
  std::size_t w;
  mask_key<T> key;
  template <class G>
  FUSEMIX_HD void operator()(const G& g, std::size_t i) const {
    const std::size_t first = i * w;
    if (w % 4 == 0 && aligned16(dh + first, a + first, da + first)) {
      row_quads<T>(g, key, first, w, [&](std::size_t q, const T s[4]) {
        T d[4], x[4], y[4];
        load4(dh + first + q, d);
        load4(a + first + q, x);
        for (int l = 0; l < 4; ++l) y[l] = d[l] * s[l] * gelu_grad(x[l]);  // (× 1 is exact when p = 0)
        store4(da + first + q, y);
      });
      return;
    }
    masked_row<T>(g, key, i, w, [&](std::size_t e, T s) { da[e] = dh[e] * s * gelu_grad(a[e]); });
  }
};

template <class T>
struct dropout_elements {
  const T* x;
  T* y;
  mask_key<T> key;
  FUSEMIX_HD void operator()(std::size_t e) const { y[e] = x[e] * key.scale(e); }
};

template <class T>
struct gelu_elements {
  const T* x;
  T* y;
  FUSEMIX_HD void operator()(std::size_t e) const { y[e] = gelu(x[e]); }
};

template <class T>
struct gelu_backward_elements {
  const T* dy;
  const T* x;
  T* dx;
  FUSEMIX_HD void operator()(std::size_t e) const { dx[e] = dy[e] * gelu_grad(x[e]); }
};

template <class T>
struct axpy_elements {
  T alpha;
  const T* x;
  T* y;
  FUSEMIX_HD void operator()(std::size_t e) const { y[e] += alpha * x[e]; }
};

template <class T>
struct scale_elements {
  T alpha;
  T* y;
  FUSEMIX_HD void operator()(std::size_t e) const { y[e] *= alpha; }
};

template <class T>
struct add_row_vector_rows {
  T* y;
  const T* b;
  std::size_t w;
  template <class G>
  FUSEMIX_HD void operator()(const G& g, std::size_t i) const {
    for (std::size_t j = g.rank(); j < w; j += g.size()) y[i * w + j] += b[j];
  }
};

template <class T>
struct gather_mix_rows {
  const T* z;
  const std::size_t* ia;
  const std::size_t* ib;
  T lambda;
  T* out;
  std::size_t d;
  template <class G>
  FUSEMIX_HD void operator()(const G& g, std::size_t i) const {
    const T* za = z + ia[i] * d;
    const T* zb = z + ib[i] * d;
    T* o = out + i * d;
    if (lambda == T(1))
      for (std::size_t j = g.rank(); j < d; j += g.size()) o[j] = za[j];
    else
      for (std::size_t j = g.rank(); j < d; j += g.size()) o[j] = lambda * za[j] + (T(1) - lambda) * zb[j];
  }
};

template <class T>
struct layer_norm_forward_rows {
  const T* x;
  const T* gamma;
  const T* beta;
  T eps;
  T* y;
  T* mean;
  T* rstd;
  std::size_t d;
  template <class G>
  FUSEMIX_HD void operator()(const G& g, std::size_t i) const {
    const T* xi = x + i * d;
    T s = 0;
    for (std::size_t j = g.rank(); j < d; j += g.size()) s += xi[j];
    const T mu = g.sum(s) / static_cast<T>(d);
    T q = 0;
    for (std::size_t j = g.rank(); j < d; j += g.size()) q += (xi[j] - mu) * (xi[j] - mu);
    const T r = T(1) / math::sqrt(g.sum(q) / static_cast<T>(d) + eps);
    if (g.rank() == 0) mean[i] = mu, rstd[i] = r;
    for (std::size_t j = g.rank(); j < d; j += g.size()) y[i * d + j] = (xi[j] - mu) * r * gamma[j] + beta[j];
  }
};

// dx of LayerNorm, and dy ⊙ x̂ into `prod` (its column sums are dγ).
template <class T>
struct layer_norm_backward_rows {
  const T* dy;
  const T* x;
  const T* gamma;
  const T* mean;
  const T* rstd;
  T* dx;
  T* prod;
  std::size_t d;
  template <class G>
  FUSEMIX_HD void operator()(const G& g, std::size_t i) const {
    const std::size_t o = i * d;
    const T mu = mean[i], r = rstd[i];
    T sg = 0, sgx = 0;
    for (std::size_t j = g.rank(); j < d; j += g.size()) {
      const T xh = (x[o + j] - mu) * r, gj = dy[o + j] * gamma[j];
      sg += gj, sgx += gj * xh;
    }
    const T mean_g = g.sum(sg) / static_cast<T>(d), mean_gx = g.sum(sgx) / static_cast<T>(d);
    for (std::size_t j = g.rank(); j < d; j += g.size()) {
      const T xh = (x[o + j] - mu) * r, gj = dy[o + j] * gamma[j];
      prod[o + j] = dy[o + j] * xh;
      dx[o + j] = r * (gj - mean_g - xh * mean_gx);
    }
  }
};

template <class T>
struct normalize_rows_forward_rows {
  const T* p;
  T eps;
  T* n;
  T* norms;
  std::size_t d;
  template <class G>
  FUSEMIX_HD void operator()(const G& g, std::size_t i) const {
    T s = 0;
    for (std::size_t j = g.rank(); j < d; j += g.size()) s += p[i * d + j] * p[i * d + j];
    const T norm = math::sqrt(g.sum(s));
    if (g.rank() == 0) norms[i] = norm;
    const T div = math::max(norm, eps);
    for (std::size_t j = g.rank(); j < d; j += g.size()) n[i * d + j] = p[i * d + j] / div;
  }
};

template <class T>
struct normalize_rows_backward_rows {
  const T* dn;
  const T* n;
  const T* norms;
  T eps;
  T* dp;
  std::size_t d;
  template <class G>
  FUSEMIX_HD void operator()(const G& g, std::size_t i) const {
    const std::size_t o = i * d;
    if (norms[i] > eps) {
      T s = 0;
      for (std::size_t j = g.rank(); j < d; j += g.size()) s += n[o + j] * dn[o + j];
      const T dot = g.sum(s);
      for (std::size_t j = g.rank(); j < d; j += g.size()) dp[o + j] = (dn[o + j] - n[o + j] * dot) / norms[i];
    } else {
      for (std::size_t j = g.rank(); j < d; j += g.size()) dp[o + j] = dn[o + j] / eps;
    }
  }
};

// Row i's log-sum-exp.
template <class T>
struct row_lse_rows {
  const T* l;
  T* lse;
  std::size_t n;
  template <class G>
  FUSEMIX_HD void operator()(const G& g, std::size_t i) const {
    const T* r = l + i * n;
    T m = -std::numeric_limits<T>::infinity();
    for (std::size_t j = g.rank(); j < n; j += g.size()) m = math::max(m, r[j]);
    m = g.max(m);
    T s = 0;
    for (std::size_t j = g.rank(); j < n; j += g.size()) s += math::exp(r[j] - m);
    s = g.sum(s);
    if (g.rank() == 0) lse[i] = m + math::log(s);
  }
};

// Column log-sum-exp in two passes that read rows (coalesced): partial (max, Σexp) over a chunk of
// rows for every (chunk, column), then the chunks combined per column.
template <class T>
struct column_lse_partials {
  const T* l;
  T* part_max;
  T* part_sum;
  std::size_t n, rows_per_chunk;
  FUSEMIX_HD void operator()(std::size_t e) const {
    const std::size_t chunk = e / n, col = e % n;
    const std::size_t r0 = chunk * rows_per_chunk, r1 = r0 + rows_per_chunk < n ? r0 + rows_per_chunk : n;
    T m = -std::numeric_limits<T>::infinity(), s = 0;
    for (std::size_t r = r0; r < r1; ++r) {
      const T v = l[r * n + col];
      if (v > m) {
        s = s * math::exp(m - v) + T(1);
        m = v;
      } else {
        s += math::exp(v - m);
      }
    }
    part_max[e] = m, part_sum[e] = s;
  }
};
template <class T>
struct column_lse_combine {
  const T* part_max;
  const T* part_sum;
  T* lse;
  std::size_t n, chunks;
  FUSEMIX_HD void operator()(std::size_t col) const {
    T m = -std::numeric_limits<T>::infinity();
    for (std::size_t c = 0; c < chunks; ++c) m = math::max(m, part_max[c * n + col]);
    T s = 0;
    for (std::size_t c = 0; c < chunks; ++c) s += part_sum[c * n + col] * math::exp(part_max[c * n + col] - m);
    lse[col] = m + math::log(s);
  }
};

// The loss terms of row/column i: (lse_row_i − l_ii) + (lse_col_i − l_ii), in double.
template <class T>
struct diagonal_terms {
  const T* l;
  const T* row_lse;
  const T* col_lse;
  std::size_t n;
  FUSEMIX_HD double operator()(std::size_t i) const {
    return static_cast<double>(row_lse[i] - l[i * n + i]) + static_cast<double>(col_lse[i] - l[i * n + i]);
  }
};

// The gradient of the symmetric cross-entropy with respect to the logits.
template <class T>
struct softmax_gradient_rows {
  const T* l;
  const T* row_lse;
  const T* col_lse;
  T* g;
  T scale;
  std::size_t n;
  template <class G>
  FUSEMIX_HD void operator()(const G& grp, std::size_t i) const {
    for (std::size_t j = grp.rank(); j < n; j += grp.size()) {
      const T v = l[i * n + j];
      T gij = scale * (math::exp(v - row_lse[i]) + math::exp(v - col_lse[j]));
      if (i == j) gij -= 2 * scale;
      g[i * n + j] = gij;
    }
  }
};

template <class T>
struct not_finite {
  const T* a;
  FUSEMIX_HD bool operator()(std::size_t e) const { return !math::isfinite(a[e]); }
};

template <class T>
struct column_sums_columns {  // host system: one column per call
  const T* a;
  T* out;
  std::size_t rows, cols;
  FUSEMIX_HD void operator()(std::size_t j) const {
    T s = 0;
    for (std::size_t i = 0; i < rows; ++i) s += a[i * cols + j];
    out[j] = s;
  }
};

template <class T>
struct fill_elements {
  T* y;
  T v;
  FUSEMIX_HD void operator()(std::size_t e) const { y[e] = v; }
};

#if FUSEMIX_CUDA_DEVICE
struct to_bf16 {
  const float* x;
  __nv_bfloat16* y;
  __device__ void operator()(std::size_t e) const { y[e] = __float2bfloat16_rn(x[e]); }
};
// Four elements per thread: a 16-byte load, an 8-byte store (both pointers 16- and 8-byte aligned).
struct to_bf16_quads {
  const float* x;
  __nv_bfloat16* y;
  __device__ void operator()(std::size_t q) const {
    const float4 v = *reinterpret_cast<const float4*>(x + 4 * q);
    __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(y + 4 * q);
    out[0] = __floats2bfloat162_rn(v.x, v.y);
    out[1] = __floats2bfloat162_rn(v.z, v.w);
  }
};
// `n` floats at `x` to bfloat16 at `y`.
inline void convert_to_bf16(const context& c, const float* x, std::size_t n, __nv_bfloat16* y) {
  if (reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && reinterpret_cast<std::uintptr_t>(y) % 8 == 0) {
    for_n(c, n / 4, to_bf16_quads{x, y});
    if (n % 4 != 0) for_n(c, n % 4, to_bf16{x + n / 4 * 4, y + n / 4 * 4});
  } else {
    for_n(c, n, to_bf16{x, y});
  }
}
#endif

}  // namespace kernels

// ------------------------------------------------------------------------------------------------
// The backend
// ------------------------------------------------------------------------------------------------

/// The CUDA backend: the primitives of `cpu::backend` (same names, same semantics, same
/// dropout masks), on memory of the backend's `context`. Objects are cheap handles: copies share
/// the context (stream, cuBLAS handle, scratch), so layers can each hold one.
///
/// @tparam T `float` (training; TF32/bf16 GEMMs optional) or `double` (checks).
///
/// **Example**
///
///     using B = fusemix::cuda::backend<float>;
///     B be;                                         // the process-wide context
///     fusemix::fusion_adapter<fusemix::dynamic_shape, B> hx({.in_dim = 1536, .out_dim = 512, .depth = 4}, {}, be);
///     const B::matrix_type z = be.upload(host_latents);  // once
///     const auto& s = hx.forward(z);                // on the device
template <Scalar T>
class backend {
 public:
  using scalar_type = T;
  using matrix_type = matrix<T>;
  using vector_type = vector<T>;
  using matrix_map = matrix_ref<T>;
  using const_matrix_map = matrix_ref<const T>;
  using vector_map = vector_ref<T>;
  using const_vector_map = vector_ref<const T>;
  /// Flat parameter storage in backend memory.
  template <class U>
  using buffer = array<U>;
  /// Whether the host can dereference this backend's pointers (only on Thrust's CPP system).
  static constexpr bool host_memory = !on_device;

  /// A backend on the process-wide context (`context::shared()`).
  /// @throws device_error on a GPU build when no CUDA device can be used.
  backend() : ctx_(context::shared()) {}
  explicit backend(std::shared_ptr<context> c) : ctx_(std::move(c)) {}

  [[nodiscard]] context& ctx() const noexcept { return *ctx_; }
  [[nodiscard]] const std::shared_ptr<context>& shared_context() const noexcept { return ctx_; }

  // Shapes, storage and transfers -----------------------------------------------------------

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
    for_n(*ctx_, n, kernels::fill_elements<T>{b.data(), T(0)});
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
  /// The AdamW of this backend (a fused device update over each model's flat buffer).
  [[nodiscard]] adamw<T> make_optimizer(const adamw_options& o) const { return adamw<T>(o, ctx_); }

  // Dense linear algebra ---------------------------------------------------------------------

  /// `c = alpha · op(a) · op(b) + beta · c`.
  template <class A, class Bm, class C>
  void gemm(T alpha, const A& a, bool trans_a, const Bm& b, bool trans_b, T beta, C& c) const {
    const std::size_t m = c.rows(), n = c.cols(), k = trans_a ? a.rows() : a.cols();
    if (m == 0 || n == 0) return;
#if FUSEMIX_CUDA_DEVICE
    // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major matrix is its
    // transpose column-major: so B goes first, each with its own flag, leading dimension = cols.
    const auto opa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, opb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int mi = to_int(m), ni = to_int(n), ki = to_int(k), lda = std::max(1, to_int(a.cols())),
              ldb = std::max(1, to_int(b.cols()));
    if constexpr (std::is_same_v<T, double>) {
      const auto prof = ctx_->profile("gemm");
      FUSEMIX_CUBLAS_CHECK(::cublasDgemm(ctx_->cublas(), opb, opa, ni, mi, ki, &alpha, b.data(), ldb, a.data(), lda,
                                         &beta, c.data(), ni));
    } else if (ctx_->precision() == gemm_precision::bf16 && k > 0) {
      auto* a16 = ctx_->scratch<__nv_bfloat16>(context::operand_a, a.rows() * a.cols());
      auto* b16 = ctx_->scratch<__nv_bfloat16>(context::operand_b, b.rows() * b.cols());
      {
        const auto prof = ctx_->profile("gemm operands to bf16");
        if (!reuse_a_) kernels::convert_to_bf16(*ctx_, a.data(), a.rows() * a.cols(), a16);
        kernels::convert_to_bf16(*ctx_, b.data(), b.rows() * b.cols(), b16);
      }
      const auto prof = ctx_->profile("gemm");
      FUSEMIX_CUBLAS_CHECK(::cublasGemmEx(ctx_->cublas(), opb, opa, ni, mi, ki, &alpha, b16, CUDA_R_16BF, ldb, a16,
                                          CUDA_R_16BF, lda, &beta, c.data(), CUDA_R_32F, ni, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
    } else {
      const auto compute =
          ctx_->precision() == gemm_precision::fp32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
      const auto prof = ctx_->profile("gemm");
      FUSEMIX_CUBLAS_CHECK(::cublasGemmEx(ctx_->cublas(), opb, opa, ni, mi, ki, &alpha, b.data(), CUDA_R_32F, ldb,
                                          a.data(), CUDA_R_32F, lda, &beta, c.data(), CUDA_R_32F, ni, compute,
                                          CUBLAS_GEMM_DEFAULT));
    }
#else
    // Host memory: the CPU backend's GEMM (Eigen, or OpenBLAS where the program links it) on views.
    const auto prof = ctx_->profile("gemm");
    using M = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const M> ea(a.data(), static_cast<Eigen::Index>(a.rows()), static_cast<Eigen::Index>(a.cols()));
    const Eigen::Map<const M> eb(b.data(), static_cast<Eigen::Index>(b.rows()), static_cast<Eigen::Index>(b.cols()));
    Eigen::Map<M> ec(c.data(), static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(n));
    static_cast<void>(k);
    cpu::backend<T>{}.gemm(alpha, ea, trans_a, eb, trans_b, beta, ec);
#endif
  }
  /// Two products with the same left operand `a` (`c1 = alpha·op1(a)·op(b1)`, `c2 = alpha·op2(a)·op(b2)`);
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
    for_n(*ctx_, y.size(), kernels::axpy_elements<T>{alpha, x.data(), y.data()});
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
    for_n(*ctx_, y.size(), kernels::scale_elements<T>{alpha, y.data()});
  }
  /// `Σ_ij a_ij · b_ij` (accumulated in double; waits for the result).
  template <class A, class Bm>
  T dot(const A& a, const Bm& b) const {
    const auto prof = ctx_->profile("dot");
    const T* pa = a.data();
    const T* pb = b.data();
    return static_cast<T>(thrust::inner_product(ctx_->policy(), pa, pa + a.size(), pb, 0.0));
  }

  // Rows ---------------------------------------------------------------------------------------

  /// `out_i = lambda · z[ia_i] + (1 − lambda) · z[ib_i]` (the indices are host spans, uploaded).
  template <class Z, class Out>
  void gather_mix(const Z& z, std::span<const std::size_t> ia, std::span<const std::size_t> ib, T lambda,
                  Out& out) const {
    const auto prof = ctx_->profile("gather_mix");
    const std::size_t* da = ctx_->indices(context::index_a, ia);
    const std::size_t* db = ctx_->indices(context::index_b, ib);
    for_rows(*ctx_, ia.size(), kernels::gather_mix_rows<T>{z.data(), da, db, lambda, out.data(), z.cols()});
  }
  /// `n_i = p_i / max(‖p_i‖, eps)`, keeping each row's norm.
  template <class P, class N>
  void normalize_rows_forward(const P& p, T eps, N& n, vector_type& norms) const {
    const auto prof = ctx_->profile("normalize_rows_forward");
    resize(norms, p.rows());
    for_rows(*ctx_, p.rows(), kernels::normalize_rows_forward_rows<T>{p.data(), eps, n.data(), norms.data(), p.cols()});
  }
  /// Gradient of `normalize_rows_forward`.
  template <class Dn, class N, class Dp>
  void normalize_rows_backward(const Dn& dn, const N& n, const vector_type& norms, T eps, Dp& dp) const {
    const auto prof = ctx_->profile("normalize_rows_backward");
    for_rows(*ctx_, n.rows(),
             kernels::normalize_rows_backward_rows<T>{dn.data(), n.data(), norms.data(), eps, dp.data(), n.cols()});
  }
  /// The symmetric InfoNCE loss over `logits` (B×B, positives on the diagonal) and its gradient
  /// `g`: one pass over the logits for the rows' log-sum-exp, one for the columns', one for `g`.
  template <class L, class G>
  T symmetric_cross_entropy(const L& logits, G& g) const {
    const auto prof = ctx_->profile("symmetric_cross_entropy");
    const std::size_t n = logits.rows();
    constexpr std::size_t rows_per_chunk = 256;
    const std::size_t chunks = (n + rows_per_chunk - 1) / rows_per_chunk;
    T* row_lse = ctx_->scratch<T>(context::row_stats, n);
    T* col_lse = ctx_->scratch<T>(context::col_stats, n);
    T* part = ctx_->scratch<T>(context::col_partials, 2 * chunks * n);
    for_rows(*ctx_, n, kernels::row_lse_rows<T>{logits.data(), row_lse, n});
    for_n(*ctx_, chunks * n, kernels::column_lse_partials<T>{logits.data(), part, part + chunks * n, n, rows_per_chunk});
    for_n(*ctx_, n, kernels::column_lse_combine<T>{part, part + chunks * n, col_lse, n, chunks});
    const T scale = T(0.5) / static_cast<T>(n);
    for_rows(*ctx_, n, kernels::softmax_gradient_rows<T>{logits.data(), row_lse, col_lse, g.data(), scale, n});
    const double loss = thrust::transform_reduce(ctx_->policy(), thrust::counting_iterator<std::size_t>(0),
                                                 thrust::counting_iterator<std::size_t>(n),
                                                 kernels::diagonal_terms<T>{logits.data(), row_lse, col_lse, n}, 0.0,
                                                 thrust::plus<double>());
    return static_cast<T>(loss * 0.5 / static_cast<double>(n));
  }
  /// Whether `a` holds a NaN or an infinity; if so, where the first one is (row-major order).
  template <class A>
  bool find_non_finite(const A& a, std::size_t& row, std::size_t& col) const {
    const auto prof = ctx_->profile("find_non_finite");
    const std::size_t n = a.rows() * a.cols();
    const auto it = thrust::find_if(ctx_->policy(), thrust::counting_iterator<std::size_t>(0),
                                    thrust::counting_iterator<std::size_t>(n), kernels::not_finite<T>{a.data()});
    const std::size_t e = *it;
    if (e >= n) return false;
    row = e / a.cols(), col = e % a.cols();
    return true;
  }

  // Bias -------------------------------------------------------------------------------------

  /// Adds the vector `b` to every row of `y`.
  template <class Y, class V>
  void add_row_vector(Y& y, const V& b) const {
    const auto prof = ctx_->profile("add_row_vector");
    for_rows(*ctx_, y.rows(), kernels::add_row_vector_rows<T>{y.data(), b.data(), y.cols()});
  }
  /// `out = Σ_rows dy` (a GEMV with a vector of ones on a GPU).
  template <class M, class V>
  void column_sums(const M& dy, V& out) const { column_sums(dy.data(), dy.rows(), dy.cols(), out.data()); }

  // LayerNorm --------------------------------------------------------------------------------

  template <class X, class G, class Bv, class Y>
  void layer_norm_forward(const X& x, const G& gamma, const Bv& beta, T eps, Y& y, vector_type& mean,
                          vector_type& rstd) const {
    const auto prof = ctx_->profile("layer_norm_forward");
    resize(mean, x.rows());
    resize(rstd, x.rows());
    for_rows(*ctx_, x.rows(),
             kernels::layer_norm_forward_rows<T>{x.data(), gamma.data(), beta.data(), eps, y.data(), mean.data(),
                                                 rstd.data(), x.cols()});
  }
  template <class Dy, class X, class G, class Dx, class Dg, class Db>
  void layer_norm_backward(const Dy& dy, const X& x, const G& gamma, const vector_type& mean,
                           const vector_type& rstd, Dx& dx, Dg& dgamma, Db& dbeta) const {
    const auto prof = ctx_->profile("layer_norm_backward");
    const std::size_t n = x.rows(), d = x.cols();
    T* prod = ctx_->scratch<T>(context::mask, n * d);
    for_rows(*ctx_, n,
             kernels::layer_norm_backward_rows<T>{dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), dx.data(),
                                                  prod, d});
    column_sums(prod, n, d, dgamma.data());
    column_sums(dy.data(), n, d, dbeta.data());
  }

  // Activations ------------------------------------------------------------------------------

  template <class X, class Y>
  void gelu_forward(const X& x, Y& y) const {
    const auto prof = ctx_->profile("gelu_forward");
    for_n(*ctx_, x.size(), kernels::gelu_elements<T>{x.data(), y.data()});
  }
  template <class Dy, class X, class Dx>
  void gelu_backward(const Dy& dy, const X& x, Dx& dx) const {
    const auto prof = ctx_->profile("gelu_backward");
    for_n(*ctx_, x.size(), kernels::gelu_backward_elements<T>{dy.data(), x.data(), dx.data()});
  }
  template <class X, class Y>
  void dropout_forward(const X& x, const dropout_key& key, Y& y) const {
    const auto prof = ctx_->profile("dropout");
    if (key.p <= 0.0)
      copy(x, y);
    else
      for_n(*ctx_, x.size(), kernels::dropout_elements<T>{x.data(), y.data(), kernels::mask_key<T>::of(key)});
  }
  template <class Dy, class Dx>
  void dropout_backward(const Dy& dy, const dropout_key& key, Dx& dx) const { dropout_forward(dy, key, dx); }
  /// Fused `a += b` (row-wise), `h = dropout(GELU(a))`; `a` keeps the pre-activation.
  template <class A, class V, class H>
  void bias_gelu_dropout_forward(A& a, const V& b, const dropout_key& key, H& h) const {
    const auto prof = ctx_->profile("bias_gelu_dropout_forward");
    for_rows(*ctx_, a.rows(),
             kernels::bias_gelu_dropout_rows<T>{a.data(), b.data(), h.data(), a.cols(), kernels::mask_key<T>::of(key)});
  }
  /// `da = dh ⊙ mask / (1 − p) ⊙ GELU'(a)`; `da` may be `dh` itself.
  template <class Dh, class A, class Da>
  void gelu_dropout_backward(const Dh& dh, const A& a, const dropout_key& key, Da& da) const {
    const auto prof = ctx_->profile("gelu_dropout_backward");
    for_rows(*ctx_, a.rows(),
             kernels::gelu_dropout_backward_rows<T>{dh.data(), a.data(), da.data(), a.cols(), kernels::mask_key<T>::of(key)});
  }

 private:
#if FUSEMIX_CUDA_DEVICE
  static int to_int(std::size_t v) {
    if (v > static_cast<std::size_t>(std::numeric_limits<int>::max()))
      ::fusemix::detail::throw_shape_error("fusemix::cuda::backend::gemm", "cuBLAS dimensions must fit in int",
                                           std::numeric_limits<int>::max(), v);
    return static_cast<int>(v);
  }
#endif
  void column_sums(const T* a, std::size_t rows, std::size_t cols, T* out) const {
    if (cols == 0) return;
    const auto prof = ctx_->profile("column_sums");
    if (rows == 0) {  // (a GEMV over no rows returns without writing)
      for_n(*ctx_, cols, kernels::fill_elements<T>{out, T(0)});
      return;
    }
#if FUSEMIX_CUDA_DEVICE
    // out = Aᵀ·1: the row-major A is column-major cols×rows, so a plain (N) GEMV.
    T* ones = ctx_->scratch<T>(context::ones, rows);
    for_n(*ctx_, rows, kernels::fill_elements<T>{ones, T(1)});
    const T one = 1, zero = 0;
    if constexpr (std::is_same_v<T, double>)
      FUSEMIX_CUBLAS_CHECK(::cublasDgemv(ctx_->cublas(), CUBLAS_OP_N, to_int(cols), to_int(rows), &one, a,
                                         to_int(cols), ones, 1, &zero, out, 1));
    else
      FUSEMIX_CUBLAS_CHECK(::cublasSgemv(ctx_->cublas(), CUBLAS_OP_N, to_int(cols), to_int(rows), &one, a,
                                         to_int(cols), ones, 1, &zero, out, 1));
#else
    for_n(*ctx_, cols, kernels::column_sums_columns<T>{a, out, rows, cols});
#endif
  }

  std::shared_ptr<context> ctx_;
  mutable bool reuse_a_ = false;  // inside gemm_shared: the bf16 copy of `a` is already in its slot
};

// ------------------------------------------------------------------------------------------------
// AdamW on the device
// ------------------------------------------------------------------------------------------------

namespace kernels {
template <class T>
struct adamw_elements {
  T* p;
  const T* g;
  T* m;
  T* v;
  const std::uint8_t* decay_mask;  // null: `decay_all` for every element
  bool decay_all;
  T b1, b2, one_minus_b1, one_minus_b2, step_size, bc2_sqrt, eps, decay;
  FUSEMIX_HD void operator()(std::size_t i) const {
    const T gi = g[i];
    const T mi = m[i] * b1 + gi * one_minus_b1;
    const T vi = v[i] * b2 + gi * gi * one_minus_b2;
    m[i] = mi, v[i] = vi;
    const bool d = decay_mask != nullptr ? decay_mask[i] != 0 : decay_all;
    const T update = step_size * mi / (math::sqrt(vi) / bc2_sqrt + eps);
    p[i] = d ? p[i] * decay - update : p[i] - update;
  }
};
}  // namespace kernels

/// AdamW as `fusemix::adamw` (PyTorch's order of operations), on backend memory: a model is one
/// segment (its whole flat buffer, with a per-element decay flag), updated by one fused pass.
///
/// The moments' host form (`moment_count`, `get_moments`, `set_moments`) is the CPU optimiser's:
/// registered ranges in order, without the buffers' alignment padding, so checkpoints are the same.
template <class T>
class adamw {
 public:
  explicit adamw(adamw_options o = {}, std::shared_ptr<context> c = context::shared()) : o_(o), ctx_(std::move(c)) {}

  /// Registers `n` parameters at `p` (backend memory) with gradients at `g`.
  void add(T* p, const T* g, std::size_t n, bool decay) { add_segment(p, g, n, {}, decay, {{0, n}}); }
  /// Registers a whole model (its flat buffer), decaying exactly its ranges marked `decay`.
  template <class Model>
  void add_model(Model& model) {
    auto p = model.parameters();
    auto g = model.gradients();
    std::vector<std::uint8_t> mask(p.size(), 0);
    std::vector<std::pair<std::size_t, std::size_t>> used;
    for (const parameter_info& e : model.named_parameters()) {
      std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(e.offset), e.size, std::uint8_t(e.decay ? 1 : 0));
      used.emplace_back(e.offset, e.size);
    }
    add_segment(p.data(), g.data(), p.size(), mask, false, std::move(used));
  }

  void step(double lr) {
    const auto prof = ctx_->profile("adamw");
    ++t_;
    const double bc1 = 1 - std::pow(o_.beta1, static_cast<double>(t_));
    const double bc2 = 1 - std::pow(o_.beta2, static_cast<double>(t_));
    for (segment& s : segments_) {
      const kernels::adamw_elements<T> f{s.p, s.g, s.m.data(), s.v.data(), s.mask.empty() ? nullptr : s.mask.data(),
                                         s.decay, static_cast<T>(o_.beta1), static_cast<T>(o_.beta2),
                                         static_cast<T>(1 - o_.beta1), static_cast<T>(1 - o_.beta2),
                                         static_cast<T>(lr / bc1), static_cast<T>(std::sqrt(bc2)),
                                         static_cast<T>(o_.eps), static_cast<T>(1 - lr * o_.weight_decay)};
      for_n(*ctx_, s.n, f);
    }
  }

  [[nodiscard]] std::uint64_t steps() const noexcept { return t_; }
  void set_steps(std::uint64_t t) noexcept { t_ = t; }
  [[nodiscard]] const adamw_options& options() const noexcept { return o_; }
  /// The number of registered parameters (the length of each moment's host form).
  [[nodiscard]] std::size_t moment_count() const noexcept { return count_; }
  /// Copies both moments to the host, registered ranges in order.
  void get_moments(std::span<T> m, std::span<T> v) const {
    check_moments(m.size(), v.size());
    std::size_t at = 0;
    for (const segment& s : segments_)
      for (const auto& [off, len] : s.used) {
        copy_to_host(*ctx_, s.m.data() + off, m.data() + at, len);
        copy_to_host(*ctx_, s.v.data() + off, v.data() + at, len);
        at += len;
      }
  }
  /// Sets both moments from their host form (the padding between ranges keeps its zeros).
  void set_moments(std::span<const T> m, std::span<const T> v) {
    check_moments(m.size(), v.size());
    std::size_t at = 0;
    for (segment& s : segments_)
      for (const auto& [off, len] : s.used) {
        copy_to_device(*ctx_, m.data() + at, s.m.data() + off, len);
        copy_to_device(*ctx_, v.data() + at, s.v.data() + off, len);
        at += len;
      }
  }

 private:
  struct segment {
    T* p;
    const T* g;
    std::size_t n;
    array<T> m, v;
    array<std::uint8_t> mask;
    bool decay;
    std::vector<std::pair<std::size_t, std::size_t>> used;  // (offset, size) of the registered ranges
  };
  void add_segment(T* p, const T* g, std::size_t n, const std::vector<std::uint8_t>& mask, bool decay,
                   std::vector<std::pair<std::size_t, std::size_t>> used) {
    segment s{p, g, n, array<T>(n), array<T>(n), array<std::uint8_t>(mask.size()), decay, std::move(used)};
    for_n(*ctx_, n, kernels::fill_elements<T>{s.m.data(), T(0)});
    for_n(*ctx_, n, kernels::fill_elements<T>{s.v.data(), T(0)});
    copy_to_device(*ctx_, mask.data(), s.mask.data(), mask.size());
    for (const auto& u : s.used) count_ += u.second;
    segments_.push_back(std::move(s));
  }
  void check_moments(std::size_t m, std::size_t v) const {
    if (m != count_ || v != count_)
      ::fusemix::detail::throw_shape_error("fusemix::cuda::adamw::moments", "one value per registered parameter",
                                           count_, m != count_ ? m : v);
  }

  adamw_options o_;
  std::shared_ptr<context> ctx_;
  std::vector<segment> segments_;
  std::size_t count_ = 0;
  std::uint64_t t_ = 0;
};

}  // namespace fusemix::cuda
