// SPDX-License-Identifier: Apache-2.0
/// @file
/// The dropout mask: which elements a draw keeps, as one definition for every backend.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <fusemix/backend/common/math.hpp>
#include <fusemix/core/config.hpp>
#include <fusemix/core/random.hpp>

namespace fusemix {

/// Which elements a dropout draw keeps: a pure function of `(seed, draw, element index)`.
/// `p` is the probability of dropping; kept elements are scaled by `1 / (1 - p)` (inverted dropout).
/// Element e of the matrix a pass is given has index `offset + e` in the draw: 0 for a whole
/// batch, `first_row × width` for the rows of a batch from `first_row` on, which then get exactly
/// the masks they get in the whole batch (gradient caching runs a batch a slice at a time).
struct dropout_key {
  std::uint64_t seed = 0;
  std::uint64_t draw = 0;
  double p = 0;
  std::uint64_t offset = 0;
};

}  // namespace fusemix

namespace fusemix::detail {

// Element i of a draw uses word i%4 of Philox block i/4 (counter: block, draw; key: seed), and is
// kept when uniform_float(word) >= p. uniform_float(w) is exactly (w >> 8)·2⁻²⁴, so the test is
// decided on integers: (w >> 8) >= ⌈p·2²⁴⌉.

/// The integer threshold of the keep test for drop probability `p`.
[[nodiscard]] FUSEMIX_HOST_DEVICE inline std::uint32_t dropout_threshold(double p) noexcept {
  const double t = ceil(p * 16777216.0);
  return static_cast<std::uint32_t>(t < 16777216.0 ? t : 16777216.0);
}
/// The scale of kept elements, 1/(1−p) in `T` (0 when everything is dropped).
template <class T>
[[nodiscard]] T dropout_keep_scale(double p) noexcept {
  return p >= 1.0 ? T(0) : T(1) / (T(1) - static_cast<T>(p));
}
/// Whether Philox word `w` keeps its element under `threshold`.
FUSEMIX_HOST_DEVICE constexpr bool dropout_keeps(std::uint32_t w, std::uint32_t threshold) noexcept {
  return (w >> 8) >= threshold;
}
/// The four words of Philox block `block` of a draw.
FUSEMIX_HOST_DEVICE constexpr std::array<std::uint32_t, 4> dropout_block(std::uint64_t seed, std::uint64_t draw,
                                                                        std::uint64_t block) noexcept {
  return philox4x32({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                     static_cast<std::uint32_t>(draw), static_cast<std::uint32_t>(draw >> 32)},
                    {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
}
/// The decision for element `i` alone (the reference the vectorised and device masks agree with).
FUSEMIX_HOST_DEVICE inline bool dropout_keep(std::uint64_t seed, std::uint64_t draw, std::uint64_t i,
                                             double p) noexcept {
  return dropout_keeps(dropout_block(seed, draw, i / 4)[i % 4], dropout_threshold(p));
}

}  // namespace fusemix::detail
