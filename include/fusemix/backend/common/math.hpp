// SPDX-License-Identifier: Apache-2.0
/// @file
/// Elementary functions for float and double that host and device code share.
///
/// Plain overloads (not templates), so that a formula written once over "a value" calls these for
/// scalars and, through argument-dependent lookup, Eigen's array functions for CPU rows.
#pragma once

#include <cmath>

#include <fusemix/core/config.hpp>

namespace fusemix::detail {

#if defined(__CUDA_ARCH__)
#  define FUSEMIX_MATH_UNARY(name)                                                  \
    FUSEMIX_HOST_DEVICE inline float name(float x) noexcept { return ::name##f(x); } \
    FUSEMIX_HOST_DEVICE inline double name(double x) noexcept { return ::name(x); }
#else
#  define FUSEMIX_MATH_UNARY(name)                                                      \
    FUSEMIX_HOST_DEVICE inline float name(float x) noexcept { return std::name(x); }    \
    FUSEMIX_HOST_DEVICE inline double name(double x) noexcept { return std::name(x); }
#endif
FUSEMIX_MATH_UNARY(sqrt)
FUSEMIX_MATH_UNARY(exp)
FUSEMIX_MATH_UNARY(log)
FUSEMIX_MATH_UNARY(log1p)
FUSEMIX_MATH_UNARY(erf)
FUSEMIX_MATH_UNARY(ceil)
#undef FUSEMIX_MATH_UNARY

template <class T>
FUSEMIX_HOST_DEVICE inline T max(T a, T b) noexcept { return a < b ? b : a; }

FUSEMIX_HOST_DEVICE inline bool isfinite(float x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::isfinite(x);
#else
  return std::isfinite(x);
#endif
}
FUSEMIX_HOST_DEVICE inline bool isfinite(double x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::isfinite(x);
#else
  return std::isfinite(x);
#endif
}

/// The scalar type of `X`: `X` itself for a scalar, `X::Scalar` for an Eigen expression.
template <class X>
struct scalar_of {
  using type = X;
};
template <class X>
  requires requires { typename X::Scalar; }
struct scalar_of<X> {
  using type = typename X::Scalar;
};
template <class X>
using scalar_of_t = typename scalar_of<X>::type;

}  // namespace fusemix::detail
