// SPDX-License-Identifier: Apache-2.0
/// @file
/// FuseMix: mixup in latent space, one λ per batch and the same pairing for both modalities.
#pragma once

#include <cmath>
#include <cstddef>
#include <numbers>
#include <numeric>
#include <span>
#include <string_view>
#include <vector>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/core/random.hpp>

namespace fusemix {

/// How each row of a batch finds its mixing partner.
enum class mix_mode {
  permutation,  ///< the paper (Algorithm 1): a random permutation; B mixed pairs from B rows
  halves,       ///< the authors' code: row i with row i + B/2; B/2 mixed pairs (B must be even)
};

/// Parses "permutation" or "halves". @throws argument_error otherwise.
[[nodiscard]] inline mix_mode parse_mix_mode(std::string_view s) {
  if (s == "permutation") return mix_mode::permutation;
  if (s == "halves") return mix_mode::halves;
  throw_expected<argument_error>("fusemix::parse_mix_mode", "unknown mix mode", "permutation or halves", s);
}
[[nodiscard]] constexpr const char* to_string(mix_mode m) noexcept {
  return m == mix_mode::halves ? "halves" : "permutation";
}

/// How α moves from `mixup_options::alpha` (first epoch) towards `final_alpha` (reached after the
/// last), per epoch, as the authors' LAVIS schedulers do.
enum class alpha_schedule {
  constant,     ///< α throughout (the paper)
  cosine,       ///< α_e = (α − α_end)·½(1 + cos(π·e/E)) + α_end
  exponential,  ///< α_e = α·(α/α_end)^(−e/E), geometric from α to α_end
};

/// Parses "constant", "cosine" or "exponential". @throws argument_error otherwise.
[[nodiscard]] inline alpha_schedule parse_alpha_schedule(std::string_view s) {
  if (s == "constant") return alpha_schedule::constant;
  if (s == "cosine") return alpha_schedule::cosine;
  if (s == "exponential") return alpha_schedule::exponential;
  throw_expected<argument_error>("fusemix::parse_alpha_schedule", "unknown alpha schedule",
                                 "constant, cosine or exponential", s);
}
[[nodiscard]] constexpr const char* to_string(alpha_schedule a) noexcept {
  return a == alpha_schedule::cosine ? "cosine" : a == alpha_schedule::exponential ? "exponential" : "constant";
}

/// FuseMix settings: λ ~ Beta(α, α) and the pairing mode. α = 1 makes λ uniform; a `schedule`
/// other than constant moves α from `alpha` to `final_alpha` over the epochs.
struct mixup_options {
  double alpha = 1.0;
  mix_mode mode = mix_mode::permutation;
  alpha_schedule schedule = alpha_schedule::constant;
  double final_alpha = 1.0;  ///< α after the last epoch (unused when constant)
};

/// α for epoch `epoch` (0-based) of `epochs`: the authors' `cosine_mixup_alpha_schedule` and
/// `exp_mixup_alpha_schedule` (called once per epoch with the epoch's index), or `o.alpha`.
[[nodiscard]] inline double mixup_alpha(const mixup_options& o, std::size_t epoch, std::size_t epochs) noexcept {
  const double t = epochs == 0 ? 0.0 : static_cast<double>(epoch) / static_cast<double>(epochs);
  switch (o.schedule) {
    case alpha_schedule::cosine: return (o.alpha - o.final_alpha) * 0.5 * (1 + std::cos(std::numbers::pi * t)) + o.final_alpha;
    case alpha_schedule::exponential: return o.alpha * std::pow(o.alpha / o.final_alpha, -t);
    case alpha_schedule::constant: break;
  }
  return o.alpha;
}

/// One batch's mixing: mixed row i is `lambda · row first[i] + (1 − lambda) · row second[i]`,
/// positions within the batch. Shared by both modalities.
struct mix_plan {
  double lambda = 1.0;
  std::vector<std::size_t> first, second;
};

/// The number of mixed pairs a batch of `batch` rows gives.
/// @throws shape_error if `batch` is 0, or odd in `halves` mode.
[[nodiscard]] inline std::size_t mixed_rows(std::size_t batch, mix_mode mode) {
  if (batch == 0) throw_shape_error("fusemix::mixed_rows", "batch must not be empty", ">= 1", 0);
  if (mode == mix_mode::halves && batch % 2 != 0)
    throw_shape_error("fusemix::mixed_rows", "halves mode needs an even batch", "an even size", batch);
  return mode == mix_mode::halves ? batch / 2 : batch;
}

/// Draws λ ~ Beta(α, α) and the pairing of a batch of `batch` rows.
/// @throws shape_error as `mixed_rows`; argument_error unless alpha > 0.
///
/// **Example**
///
///     fusemix::philox_engine rng(seed, step);
///     auto plan = fusemix::draw_mix(rng, 1024, {.alpha = 1.0, .mode = fusemix::mix_mode::halves});
///
/// The overload taking `plan` writes into it, reusing its vectors (a training loop allocates once).
inline void draw_mix(philox_engine& rng, std::size_t batch, const mixup_options& o, mix_plan& plan) {
  const std::size_t n = mixed_rows(batch, o.mode);
  if (!(o.alpha > 0))
    throw_expected<argument_error>("fusemix::draw_mix", "alpha must be positive", "> 0", o.alpha);
  plan.lambda = sample_beta(rng, o.alpha, o.alpha);
  plan.first.resize(n);
  plan.second.resize(n);
  std::iota(plan.first.begin(), plan.first.end(), std::size_t{0});
  if (o.mode == mix_mode::halves) {
    std::iota(plan.second.begin(), plan.second.end(), n);
  } else {
    std::iota(plan.second.begin(), plan.second.end(), std::size_t{0});
    for (std::size_t i = n; i > 1; --i) std::swap(plan.second[i - 1], plan.second[rng.below(i)]);  // Fisher-Yates
  }
}

[[nodiscard]] inline mix_plan draw_mix(philox_engine& rng, std::size_t batch, const mixup_options& o) {
  mix_plan plan;
  draw_mix(rng, batch, o, plan);
  return plan;
}

/// The dataset rows each mixed row draws from: `a[i] = rows[first[i]]`, `b[i] = rows[second[i]]`.
/// Shared by both modalities, so a caller mixing both composes them once (reusing `a`, `b`).
inline void mixed_dataset_rows(std::span<const std::size_t> rows, const mix_plan& plan, std::vector<std::size_t>& a,
                               std::vector<std::size_t>& b) {
  a.resize(plan.first.size());
  b.resize(plan.second.size());
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = rows[plan.first[i]], b[i] = rows[plan.second[i]];
}

/// Writes the mixed batch `out_i = λ · z[a_i] + (1 − λ) · z[b_i]` for dataset rows `a`, `b`
/// (mixing folded into the gather: no copy of the batch).
template <Backend B>
void apply_mix(const B& be, const typename B::matrix_type& z, std::span<const std::size_t> a,
               std::span<const std::size_t> b, double lambda, typename B::matrix_type& out) {
  be.resize(out, a.size(), be.cols(z));
  be.gather_mix(z, a, b, static_cast<typename B::scalar_type>(lambda), out);
}

/// Writes the mixed batch: `out_i = λ · z[rows[first_i]] + (1 − λ) · z[rows[second_i]]`, where
/// `rows` are the dataset rows of the batch.
template <Backend B>
void apply_mix(const B& be, const typename B::matrix_type& z, std::span<const std::size_t> rows,
               const mix_plan& plan, typename B::matrix_type& out) {
  std::vector<std::size_t> a, b;
  mixed_dataset_rows(rows, plan, a, b);
  apply_mix(be, z, std::span<const std::size_t>(a), std::span<const std::size_t>(b), plan.lambda, out);
}

}  // namespace fusemix
