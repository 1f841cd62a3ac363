// SPDX-License-Identifier: Apache-2.0
/// @file
/// GELU in its exact form, x·Φ(x) (`torch.nn.GELU()`, approximate='none'), and its derivative:
/// the one definition that the CPU backend (over Eigen rows) and the CUDA kernels (over scalars)
/// both evaluate.
#pragma once

#include <fusemix/backend/common/math.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::detail {

inline constexpr double sqrt1_2 = 0.70710678118654752440;       // 1/√2
inline constexpr double inv_sqrt_2pi = 0.39894228040143267794;  // 1/√(2π)

/// `x·Φ(x)` for a float or double, or an Eigen array expression (whose `erf` is found by ADL).
FUSEMIX_EXEC_CHECK_DISABLE
template <class X, class T = scalar_of_t<X>>
FUSEMIX_HOST_DEVICE inline auto gelu(const X& x) noexcept {
  return T(0.5) * x * (T(1) + erf(x * T(sqrt1_2)));
}

/// d/dx x·Φ(x) = Φ(x) + x·φ(x).
FUSEMIX_EXEC_CHECK_DISABLE
template <class X, class T = scalar_of_t<X>>
FUSEMIX_HOST_DEVICE inline auto gelu_grad(const X& x) noexcept {
  return T(0.5) * (T(1) + erf(x * T(sqrt1_2))) + x * (T(inv_sqrt_2pi) * exp(T(-0.5) * x * x));
}

}  // namespace fusemix::detail
