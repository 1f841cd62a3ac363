// SPDX-License-Identifier: Apache-2.0
/// @file
/// One AdamW update (PyTorch's order of operations), the one definition that every backend's
/// optimiser evaluates: over scalars on the host and the device, over Eigen arrays on the CPU.
#pragma once

#include <cmath>
#include <cstdint>

#include <fusemix/backend/common/math.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::detail {

/// The constants of step `t` (1-based) at learning rate `lr`, in the parameters' type.
template <class T>
struct adamw_constants {
  T b1, b2, one_minus_b1, one_minus_b2, step_size, bc2_sqrt, eps, decay;

  static adamw_constants of(double beta1, double beta2, double eps, double weight_decay, double lr, std::uint64_t t) {
    const double bc1 = 1 - std::pow(beta1, static_cast<double>(t));
    const double bc2 = 1 - std::pow(beta2, static_cast<double>(t));
    return {static_cast<T>(beta1),     static_cast<T>(beta2),           static_cast<T>(1 - beta1),
            static_cast<T>(1 - beta2), static_cast<T>(lr / bc1),        static_cast<T>(std::sqrt(bc2)),
            static_cast<T>(eps),       static_cast<T>(1 - lr * weight_decay)};
  }
};

/// Updates the moments `m`, `v` with gradient `g` and returns the new parameter value of `p`
/// (`decay`: decoupled weight decay `p·(1 − lr·wd)` first). `P`, `M`, `V`, `G` are scalars or
/// Eigen arrays (whose `sqrt` is found by ADL).
FUSEMIX_EXEC_CHECK_DISABLE
template <class P, class M, class V, class G, class T>
FUSEMIX_HOST_DEVICE inline void adamw_update(P& p, M& m, V& v, const G& g, const adamw_constants<T>& c,
                                             bool decay) noexcept {
  m = m * c.b1 + g * c.one_minus_b1;
  v = v * c.b2 + g * g * c.one_minus_b2;
  if (decay)
    p = p * c.decay - c.step_size * m / (sqrt(v) / c.bc2_sqrt + c.eps);
  else
    p = p - c.step_size * m / (sqrt(v) / c.bc2_sqrt + c.eps);
}

}  // namespace fusemix::detail
