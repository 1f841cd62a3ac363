// SPDX-License-Identifier: Apache-2.0
/// @file
/// The summation order of the k-DPP selector's dot products, shared by the CPU and the device so
/// that both give the same bits (and so the same picks).
#pragma once

#include <cstddef>
#include <cstring>
#include <type_traits>

#if defined(__AVX512F__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <fusemix/core/config.hpp>

namespace fusemix::detail {

/// Elements l, l + 16, l + 32, ... go to lane l; lanes l and l + 8 are added into partial l.
inline constexpr std::size_t dot_lanes = 16;
inline constexpr std::size_t dot_partials = dot_lanes / 2;

/// The fixed pairwise reduction of the eight partials, then the columns past the last whole
/// block of 16 (`tail`, summed in order).
template <class Acc>
FUSEMIX_HOST_DEVICE constexpr Acc combine_dot_partials(const Acc* s, Acc tail) noexcept {
  return (((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))) + tail;
}

/// The tail of a dot product: the columns from the last whole block of 16 to `n`, in order.
template <class Acc, class A, class B>
FUSEMIX_HOST_DEVICE constexpr Acc dot_tail(const A* a, const B* b, std::size_t n) noexcept {
  Acc tail = 0;
  for (std::size_t i = n - n % dot_lanes; i < n; ++i) tail += static_cast<Acc>(a[i]) * static_cast<Acc>(b[i]);
  return tail;
}

#if defined(__GNUC__)
/// `out` = eight values from `p` (unaligned), converted to `out`'s element type. Float to double
/// is one AVX-512 instruction here: GCC splits `__builtin_convertvector` of eight floats into two
/// halves and an insert when tuned for some AVX-512 CPUs (znver4), which costs more than the FMA
/// it feeds. (An out-parameter, not a return value: a vector return would tie the ABI to -mavx512f.)
template <class A, class V>
[[gnu::always_inline]] inline void load8(const A* p, V& out) noexcept {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<A, float> && std::is_same_v<std::remove_cvref_t<decltype(out[0])>, double>) {
    const __m512d w = _mm512_cvtps_pd(_mm256_loadu_ps(p));
    std::memcpy(&out, &w, sizeof out);  // the same 64 bytes: no instruction
  } else
#endif
  {
    typedef A a8 __attribute__((vector_size(8 * sizeof(A))));  // NOLINT(modernize-use-using)
    a8 v;
    std::memcpy(&v, p, sizeof v);
    out = __builtin_convertvector(v, V);
  }
}
#endif

/// Dot product accumulated in `Acc` in that order. The order depends only on `n`, never on
/// alignment or on which row of a matrix is being processed (as a BLAS GEMV's blocking may), so
/// equal rows give bit-equal results and a row's own entry equals the diagonal computed alone.
///
/// GCC and Clang get the 16 lanes as two 8-wide vectors (their vector extensions: the
/// auto-vectoriser leaves this loop scalar once inlined); other compilers get the same order
/// in plain code. (Host code: the device computes the partials one thread each.)
template <class Acc, class A, class B>
[[nodiscard]] inline Acc dot(const A* a, const B* b, std::size_t n) noexcept {
  std::size_t i = 0;
  Acc s[dot_partials];
#if defined(__GNUC__)
  // NOLINTNEXTLINE(modernize-use-using): `using` drops the attribute on a dependent type
  typedef Acc acc8 __attribute__((vector_size(8 * sizeof(Acc))));
  acc8 lo = {}, hi = {};
  for (; i + dot_lanes <= n; i += dot_lanes) {
    acc8 a0, a1, b0, b1;
    load8(a + i, a0);
    load8(a + i + 8, a1);
    load8(b + i, b0);
    load8(b + i + 8, b1);
    lo += a0 * b0;
    hi += a1 * b1;
  }
  for (std::size_t l = 0; l < dot_partials; ++l) s[l] = lo[l] + hi[l];
#else
  Acc s16[dot_lanes] = {};
  for (; i + dot_lanes <= n; i += dot_lanes)
    for (std::size_t l = 0; l < dot_lanes; ++l) s16[l] += static_cast<Acc>(a[i + l]) * static_cast<Acc>(b[i + l]);
  for (std::size_t l = 0; l < dot_partials; ++l) s[l] = s16[l] + s16[l + dot_partials];
#endif
  return combine_dot_partials(s, dot_tail<Acc>(a, b, n));
}

/// `R` dot products of `a` with the rows `b`, `b + stride`, …: each the bits of `dot<Acc>(a, b_r, n)`
/// (the same lanes, partials and tail), with `a` loaded and widened once for all `R` rows, whose
/// independent sums also keep more FMAs in flight than one dot product can.
template <class Acc, std::size_t R, class A, class B>
inline void dots(const A* a, const B* b, std::size_t stride, std::size_t n, Acc* out) noexcept {
#if defined(__GNUC__)
  typedef Acc acc8 __attribute__((vector_size(8 * sizeof(Acc))));  // NOLINT(modernize-use-using)
  acc8 lo[R] = {}, hi[R] = {};
  std::size_t i = 0;
  for (; i + dot_lanes <= n; i += dot_lanes) {
    acc8 x0, x1;
    load8(a + i, x0);
    load8(a + i + 8, x1);
    for (std::size_t r = 0; r < R; ++r) {
      acc8 y0, y1;
      load8(b + r * stride + i, y0);
      load8(b + r * stride + i + 8, y1);
      lo[r] += x0 * y0;
      hi[r] += x1 * y1;
    }
  }
  for (std::size_t r = 0; r < R; ++r) {
    Acc s[dot_partials];
    for (std::size_t l = 0; l < dot_partials; ++l) s[l] = lo[r][l] + hi[r][l];
    out[r] = combine_dot_partials(s, dot_tail<Acc>(a, b + r * stride, n));
  }
#else
  for (std::size_t r = 0; r < R; ++r) out[r] = dot<Acc>(a, b + r * stride, n);
#endif
}

}  // namespace fusemix::detail
