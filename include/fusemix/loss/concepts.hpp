// SPDX-License-Identifier: Apache-2.0
/// @file
/// The `Loss` concept: a training objective over a batch of paired adapter outputs, a policy of
/// the trainer (`trainer<HX, HY, Loss>`), owning its learnable scalars.
#pragma once

#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/dist/communicator.hpp>

namespace fusemix {

/// A loss over paired rows `px`, `py` of the two adapters' outputs.
///
/// Its learnable parameters are a few host scalars (`parameters()`, `gradients()`), named by
/// `parameter_names` as the weight file and the checkpoint store them (`temp`; `logit_scale`,
/// `logit_bias`); the trainer updates them with AdamW, without weight decay. `prepare()` runs
/// before every step (the contrastive loss clamps its temperature there). `name` is what
/// `fusemix train --loss` calls it.
template <class L>
concept Loss =
    Backend<typename L::backend_type> &&
    requires(L& l, const L& cl, const typename L::matrix_type& m) {
      { L::name } -> std::convertible_to<std::string_view>;
      { L::parameter_names.size() } -> std::convertible_to<std::size_t>;
      { l.forward(m, m) } -> std::convertible_to<double>;
      l.backward();
      { cl.dx() } -> std::convertible_to<const typename L::matrix_type&>;
      { cl.dy() } -> std::convertible_to<const typename L::matrix_type&>;
      l.prepare();
      { l.parameters() } -> std::convertible_to<std::span<typename L::scalar_type>>;
      { l.gradients() } -> std::convertible_to<std::span<typename L::scalar_type>>;
    };

/// A `Loss` that several processes can share by rows: `forward_shard(px, py, comm)` takes the
/// whole batch (on every rank) and computes only the terms of this rank's rows
/// (`dist::rank_rows(B, rank, size)`), exchanging what the terms share, and returns the whole
/// batch's loss; the next `backward` gives `dx()`, `dy()` of those rows only and the loss's
/// scalars' gradients summed over the ranks. The trainer runs a loss without it whole on
/// every rank instead.
template <class L>
concept ShardedLoss = Loss<L> && requires(L& l, const typename L::matrix_type& m, const dist::any_communicator& c) {
  { l.forward_shard(m, m, c) } -> std::convertible_to<double>;
};

}  // namespace fusemix
