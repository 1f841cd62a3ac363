// SPDX-License-Identifier: Apache-2.0
/// @file
/// Elementwise functors of the CUDA backend (`f(i)` over flat indices): axpy, scale, fill, the
/// terms of the whole-matrix sums, the finiteness test, the host's column sums and, on a GPU, the
/// bf16 conversion of GEMM operands; and the four-element loads the row functors use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <fusemix/backend/common/math.hpp>
#include <fusemix/core/config.hpp>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#endif

namespace fusemix::cuda::detail {

template <class T>
struct axpy_elements {
  T alpha;
  const T* x;
  T* y;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t e) const { y[e] += alpha * x[e]; }
};

template <class T>
struct scale_elements {
  T alpha;
  T* y;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t e) const { y[e] *= alpha; }
};

template <class T>
struct fill_elements {
  T* y;
  T v;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t e) const { y[e] = v; }
};

/// Element `e` of a whole-matrix sum, in double.
template <class T>
struct element_terms {
  const T* a;
  FUSEMIX_HOST_DEVICE double operator()(std::size_t e) const { return static_cast<double>(a[e]); }
};

/// Term `e` of a dot product: the product in `T`, summed in double.
template <class T>
struct product_terms {
  const T* a;
  const T* b;
  FUSEMIX_HOST_DEVICE double operator()(std::size_t e) const { return static_cast<double>(a[e] * b[e]); }
};

/// `a + b`, for `reduce_n`.
struct sum_of {
  template <class U>
  FUSEMIX_HOST_DEVICE U operator()(U a, U b) const { return a + b; }
};

template <class T>
struct not_finite {
  const T* a;
  FUSEMIX_HOST_DEVICE bool operator()(std::size_t e) const { return !fusemix::detail::isfinite(a[e]); }
};

/// Column `j` of the column sums, summed down the rows (from what `out` holds when
/// `accumulate`, as the CPU backend; the host system; a GPU runs a GEMV).
template <class T>
struct column_sums_columns {
  const T* a;
  T* out;
  std::size_t rows, cols;
  bool accumulate;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t j) const {
    T s = accumulate ? out[j] : T(0);
    for (std::size_t i = 0; i < rows; ++i) s += a[i * cols + j];
    out[j] = s;
  }
};

// Four consecutive elements, as one 16-byte access on a GPU for float (coalesced across a warp:
// a thread per four elements would otherwise leave each store a partial sector).
template <class T>
FUSEMIX_HOST_DEVICE inline void load4(const T* p, T out[4]) noexcept {
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
FUSEMIX_HOST_DEVICE inline void store4(T* p, const T v[4]) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else
#endif
  {
    for (int l = 0; l < 4; ++l) p[l] = v[l];
  }
}
/// Whether every pointer allows 16-byte accesses.
template <class... P>
FUSEMIX_HOST_DEVICE inline bool aligned16(const P*... p) noexcept {
  return ((reinterpret_cast<std::uintptr_t>(p) % 16 == 0) && ...);
}

#if defined(__CUDACC__)
struct to_bf16 {
  const float* x;
  __nv_bfloat16* y;
  __device__ void operator()(std::size_t e) const { y[e] = __float2bfloat16_rn(x[e]); }
};
/// Four elements per thread: a 16-byte load, an 8-byte store (`x` 16- and `y` 8-byte aligned).
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
#endif

}  // namespace fusemix::cuda::detail
