// SPDX-License-Identifier: Apache-2.0
/// @file
/// Library-wide constants and the internal assertion macro.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>

/// Marks functions that run on the host and, under nvcc, on the device too.
#if defined(__CUDACC__)
#  define FUSEMIX_HOST_DEVICE __host__ __device__
#else
#  define FUSEMIX_HOST_DEVICE
#endif

namespace fusemix {

/// A dimension that is chosen at run time rather than fixed in a type.
inline constexpr std::size_t dynamic = static_cast<std::size_t>(-1);

namespace detail {
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
