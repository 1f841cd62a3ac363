// SPDX-License-Identifier: Apache-2.0
/// @file
/// Elementwise math shared by every backend, so the CPU and the GPU compute the same function.
#pragma once

#include <cmath>
#include <cstdint>

#include <fusemix/config.hpp>
#include <fusemix/random.hpp>

namespace fusemix {

/// Which elements a dropout draw keeps: a pure function of `(seed, draw, element index)`.
/// `p` is the probability of dropping; kept elements are scaled by `1 / (1 - p)` (inverted dropout).
/// (Here, not in a backend, because every backend reads it.)
struct dropout_key {
  std::uint64_t seed = 0;
  std::uint64_t draw = 0;
  double p = 0;
};

}  // namespace fusemix

namespace fusemix::detail {

// GELU in its exact form, x·Φ(x), as torch.nn.GELU() (approximate='none') computes it.
template <class T>
FUSEMIX_HOST_DEVICE inline T gelu(T x) noexcept {
  return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
}

// d/dx x·Φ(x) = Φ(x) + x·φ(x).
template <class T>
FUSEMIX_HOST_DEVICE inline T gelu_grad(T x) noexcept {
  const T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
  const T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * x * x);
  return cdf + x * pdf;
}

// The dropout decision for element `i` of draw `draw`: a pure function of (seed, draw, i), so
// backward regenerates the mask instead of storing it, and any thread may evaluate any element.
// Element i uses word i%4 of Philox block i/4 (one block per four elements).
FUSEMIX_HOST_DEVICE inline bool dropout_keep(std::uint64_t seed, std::uint64_t draw, std::uint64_t i,
                                             double p) noexcept {
  const std::uint64_t block = i / 4;
  const auto r = philox4x32({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                             static_cast<std::uint32_t>(draw), static_cast<std::uint32_t>(draw >> 32)},
                            {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
  return static_cast<double>(uniform_float(r[i % 4])) >= p;
}

}  // namespace fusemix::detail
