// SPDX-License-Identifier: Apache-2.0
/// @file
/// The FuseMix learning-rate schedule: linear warmup, then per-epoch cosine decay.
#pragma once

#include <cmath>
#include <cstddef>
#include <numbers>

namespace fusemix {

/// The FuseMix learning rate: linear warmup from `min_lr` to `lr` over the first epoch (per
/// step), then per-epoch cosine decay `(lr − min_lr)·½(1 + cos(π·e/E)) + min_lr` (the authors'
/// code), which reaches ~`min_lr` at the last epoch.
struct lr_schedule {
  double lr = 1e-3;
  double min_lr = 1e-6;
  std::size_t epochs = 1;
  bool warmup = true;

  /// The rate for step `step` (0-based) of epoch `epoch` (0-based) with `steps` steps per epoch.
  [[nodiscard]] double at(std::size_t epoch, std::size_t step, std::size_t steps) const noexcept {
    if (warmup && epoch == 0 && steps > 1)
      return min_lr + (lr - min_lr) * static_cast<double>(step) / static_cast<double>(steps - 1);
    const double e = static_cast<double>(epoch) / static_cast<double>(epochs);
    return (lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * e)) + min_lr;
  }
};

}  // namespace fusemix
