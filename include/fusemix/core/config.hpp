// SPDX-License-Identifier: Apache-2.0
/// @file
/// Library-wide constants and the internal assertion macro.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <new>

/// Marks functions that run on the host and, under nvcc, on the device too.
#if defined(__CUDACC__)
#  define FUSEMIX_HOST_DEVICE __host__ __device__
#else
#  define FUSEMIX_HOST_DEVICE
#endif

/// Before a `FUSEMIX_HOST_DEVICE` template that may also be instantiated with host-only types (a
/// formula the CPU backend evaluates over Eigen arrays): nvcc then skips its host/device check
/// for such instantiations instead of warning (#20011).
#if defined(__CUDACC__)
#  define FUSEMIX_EXEC_CHECK_DISABLE _Pragma("nv_exec_check_disable")
#else
#  define FUSEMIX_EXEC_CHECK_DISABLE
#endif

namespace fusemix {

/// A dimension that is chosen at run time rather than fixed in a type.
inline constexpr std::size_t dynamic = static_cast<std::size_t>(-1);

/// The alignment, in bytes, of every parameter tensor and buffer the library allocates: a cache
/// line, and the widest SIMD register (AVX-512).
inline constexpr std::size_t buffer_alignment = 64;

namespace detail {

// Eigen peels unaligned heads off a row or vector before its SIMD loop, so the summation order,
// and with it the last bit of a result, can depend on where a buffer happens to start. Aligning
// every buffer and tensor makes results a function of the data alone (not of malloc or ASLR).
template <class T>
struct aligned_allocator {
  using value_type = T;
  aligned_allocator() noexcept = default;
  template <class U>
  aligned_allocator(const aligned_allocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{buffer_alignment}));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{buffer_alignment}); }
  template <class U>
  bool operator==(const aligned_allocator<U>&) const noexcept { return true; }
};

[[noreturn]] inline void assert_fail(const char* file, int line, const char* what) noexcept {
  std::fprintf(stderr, "%s:%d: fusemix internal assertion failed: %s\n", file, line, what);
  std::abort();
}
}  // namespace detail
}  // namespace fusemix

/// Checks an internal invariant (never user input); compiled out under `NDEBUG`, like FMT_ASSERT.
#ifdef NDEBUG
#  define FUSEMIX_ASSERT(cond) static_cast<void>(0)
#else
#  define FUSEMIX_ASSERT(cond) \
    ((cond) ? static_cast<void>(0) : ::fusemix::detail::assert_fail(__FILE__, __LINE__, #cond))
#endif
