// SPDX-License-Identifier: Apache-2.0
/// @file
/// The summation order of the k-DPP selector's dot products, shared by the CPU and the device so
/// that both give the same bits (and so the same picks).
#pragma once

#include <cstddef>
#include <cstring>

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
  typedef Acc acc8 __attribute__((vector_size(8 * sizeof(Acc))));  // NOLINT(modernize-use-using): `using`
  typedef A a8 __attribute__((vector_size(8 * sizeof(A))));        // drops the attribute on a dependent type
  typedef B b8 __attribute__((vector_size(8 * sizeof(B))));
  acc8 lo = {}, hi = {};
  for (; i + dot_lanes <= n; i += dot_lanes) {
    a8 a0, a1;
    b8 b0, b1;
    std::memcpy(&a0, a + i, sizeof a0);  // unaligned loads
    std::memcpy(&a1, a + i + 8, sizeof a1);
    std::memcpy(&b0, b + i, sizeof b0);
    std::memcpy(&b1, b + i + 8, sizeof b1);
    lo += __builtin_convertvector(a0, acc8) * __builtin_convertvector(b0, acc8);
    hi += __builtin_convertvector(a1, acc8) * __builtin_convertvector(b1, acc8);
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

}  // namespace fusemix::detail
