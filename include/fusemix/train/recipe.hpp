// SPDX-License-Identifier: Apache-2.0
/// @file
/// Training settings chosen from the data: what `fusemix train` uses when no recipe is given.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <string>
#include <vector>

#include <fusemix/core/error.hpp>

namespace fusemix {

/// A training recipe: the settings `recipe_for` chooses, and why, one sentence per choice.
struct recipe {
  std::size_t batch = 0;   ///< rows drawn per step
  std::size_t epochs = 0;
  std::size_t depth = 0;   ///< blocks of each adapter
  double lr = 0, weight_decay = 0;
  std::vector<std::string> reasons;
};

/// The rule's constants (docs/training.md explains each).
struct recipe_rule {
  std::size_t steps_per_epoch = 8;     ///< the batch leaves at least this many steps per epoch
  std::size_t min_batch = 32, max_batch = 16384;
  std::size_t target_steps = 1000;     ///< optimiser steps in all (epochs rounded up)
  std::size_t min_epochs = 10, max_epochs = 1000;
  std::size_t deep_pairs = 1000000;    ///< from this many pairs on: the image-text recipe's depth, lr, decay
};

/// Epochs that give `rule.target_steps` optimiser steps at `batch` rows per step from `pairs`
/// pairs, within [`rule.min_epochs`, `rule.max_epochs`].
[[nodiscard]] inline std::size_t epochs_for(std::size_t pairs, std::size_t batch, const recipe_rule& rule = {}) {
  const std::size_t per_epoch = std::max<std::size_t>(batch == 0 ? 0 : pairs / batch, 1);
  return std::clamp((rule.target_steps + per_epoch - 1) / per_epoch, rule.min_epochs, rule.max_epochs);
}

/// The settings `fusemix train` uses for `pairs` training pairs of widths `dim_x`, `dim_y` when
/// none are given:
/// - **batch**: the largest power of two that leaves `steps_per_epoch` steps per epoch, within
///   [`min_batch`, `max_batch`] (and never over the pairs): contrastive learning wants large
///   batches (more negatives), an epoch of one step sees the same negatives every time;
/// - **epochs**: enough for `target_steps` optimiser steps, within [`min_epochs`, `max_epochs`];
/// - **depth, lr, weight decay**: the SPEC's audio-text recipe (2 blocks, 1e-4, 0.5: strong
///   decay, for the authors' smallest datasets) below `deep_pairs` pairs, its image-text recipe
///   (4 blocks, 1e-3, 0.1) from there on.
///
/// The widths do not change the choice today (one block deep was worse on the bundled data's
/// validation split even with fewer pairs than input dimensions, docs/training.md); they are
/// checked, and a rule that needs them keeps this signature.
/// @throws argument_error for fewer than 2 pairs or a zero width.
///
/// **Example**
///
///     const fusemix::recipe r = fusemix::recipe_for(x.rows(), x.cols(), y.cols());
///     for (const auto& why : r.reasons) std::cout << why << '\n';
[[nodiscard]] inline recipe recipe_for(std::size_t pairs, std::size_t dim_x, std::size_t dim_y,
                                       const recipe_rule& rule = {}) {
  constexpr const char* where = "fusemix::recipe_for";
  if (pairs < 2) throw_expected<argument_error>(where, "too few pairs to train on", ">= 2", pairs);
  if (dim_x == 0 || dim_y == 0)
    throw_expected<argument_error>(where, "latent widths must be positive", ">= 1", dim_x == 0 ? dim_x : dim_y);
  recipe r;
  const std::size_t fits = std::bit_floor(std::max<std::size_t>(pairs / rule.steps_per_epoch, 1));
  r.batch = std::min(std::clamp(fits, rule.min_batch, rule.max_batch), std::bit_floor(pairs));
  const std::size_t per_epoch = pairs / r.batch;
  r.reasons.push_back(concat("batch ", r.batch, ": the largest power of two giving at least ", rule.steps_per_epoch,
                             " steps per epoch (", per_epoch, " from ", pairs, " pairs), within ", rule.min_batch, "..",
                             rule.max_batch));
  r.epochs = epochs_for(pairs, r.batch, rule);
  r.reasons.push_back(concat("epochs ", r.epochs, ": ", r.epochs * per_epoch, " optimiser steps (aiming at ",
                             rule.target_steps, ", epochs within ", rule.min_epochs, "..", rule.max_epochs, ")"));
  if (pairs >= rule.deep_pairs) {
    r.depth = 4, r.lr = 1e-3, r.weight_decay = 0.1;
    r.reasons.push_back(concat("depth 4, lr 1e-3, weight decay 0.1: the image-text recipe, for ", rule.deep_pairs,
                               " pairs or more"));
  } else {
    r.depth = 2, r.lr = 1e-4, r.weight_decay = 0.5;
    r.reasons.push_back(concat("depth 2, lr 1e-4, weight decay 0.5: the audio-text recipe, for fewer than ",
                               rule.deep_pairs, " pairs"));
  }
  return r;
}

}  // namespace fusemix
