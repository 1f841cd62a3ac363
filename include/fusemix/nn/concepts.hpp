// SPDX-License-Identifier: Apache-2.0
/// @file
/// The `Adapter` concept: what the trainer, the checkpoint and the weight files ask of the model
/// of one side (a `fusion_adapter`, an `identity_adapter`, or a user's own).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include <fusemix/backend/concepts.hpp>

namespace fusemix {

/// A model of one side: a batch of `in_dim()` columns in, `out_dim()` columns out, with its
/// parameters in one flat buffer of the backend's memory (`size()` of them, none for a side
/// that is not trained) named as PyTorch names them.
///
/// `has_random_state` says whether it draws random numbers as it trains (dropout); if so, a
/// checkpoint keeps `dropout_seed()` and `dropout_draws()` and restores them with the setters.
template <class H>
concept Adapter =
    Backend<typename H::backend_type> &&
    requires(H& h, const H& ch, const typename H::matrix_type& m, std::span<typename H::scalar_type> host_out,
             std::span<const typename H::scalar_type> host_in, std::uint64_t u) {
      { h.forward(m) } -> std::convertible_to<const typename H::matrix_type&>;
      { h.backward(m) } -> std::convertible_to<const typename H::matrix_type&>;
      h.set_training(true);
      { ch.in_dim() } -> std::convertible_to<std::size_t>;
      { ch.out_dim() } -> std::convertible_to<std::size_t>;
      { ch.size() } -> std::convertible_to<std::size_t>;
      h.parameters();
      h.gradients();
      ch.named_parameters();
      ch.copy_parameters_to(host_out);
      h.copy_parameters_from(host_in);
      { H::has_random_state } -> std::convertible_to<bool>;
      { ch.dropout_seed() } -> std::convertible_to<std::uint64_t>;
      { ch.dropout_draws() } -> std::convertible_to<std::uint64_t>;
      h.set_dropout_seed(u);
      h.set_dropout_draws(u);
    };

}  // namespace fusemix
