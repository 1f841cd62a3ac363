// SPDX-License-Identifier: Apache-2.0
/// @file
/// A budgeted search of training settings: candidates drawn from a space by seed, judged by
/// successive halving on a validation score. What `fusemix train --auto` runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

#include <fusemix/core/error.hpp>
#include <fusemix/core/random.hpp>
#include <fusemix/train/mixup.hpp>

namespace fusemix {

/// The settings `fusemix train --auto` searches (both adapters get `depth` blocks).
struct hyperparameters {
  std::size_t depth = 2, shared_dim = 512;
  double lr = 1e-4, weight_decay = 0.5, alpha = 1.0;
  mix_mode mix = mix_mode::permutation;
  double dropout = 0.6;
  friend bool operator==(const hyperparameters&, const hyperparameters&) = default;
};

/// The values each setting may take; a candidate picks one of each, uniformly. A setting the user
/// fixed is a list of one. The defaults surround the audio-text recipe, the rule's choice below a
/// million pairs (docs/training.md).
struct search_space {
  std::vector<std::size_t> depth{1, 2, 3, 4};
  std::vector<std::size_t> shared_dim{256, 512, 768};
  std::vector<double> lr{5e-5, 1e-4, 2e-4, 5e-4, 1e-3};
  std::vector<double> weight_decay{0.05, 0.1, 0.2, 0.5, 1.0};
  std::vector<double> alpha{0.5, 1.0, 2.0};
  std::vector<mix_mode> mix{mix_mode::permutation, mix_mode::halves};
  std::vector<double> dropout{0.2, 0.4, 0.6, 0.8};
  /// The number of distinct candidates the space holds.
  [[nodiscard]] std::size_t size() const noexcept {
    return depth.size() * shared_dim.size() * lr.size() * weight_decay.size() * alpha.size() * mix.size() * dropout.size();
  }
};

/// `first` (kept in order, e.g. the rule's settings as candidate 0) followed by distinct candidates
/// drawn uniformly from `space` by `seed` (a stream of its own, 2^42), `count` in all, or every
/// candidate of a smaller space. The same arguments give the same list on every machine.
/// @throws argument_error for a space with an empty list.
[[nodiscard]] inline std::vector<hyperparameters> sample_candidates(const search_space& space, std::size_t count,
                                                                    std::uint64_t seed,
                                                                    std::vector<hyperparameters> first = {}) {
  if (space.size() == 0)
    throw argument_error("fusemix::sample_candidates: every setting of the search space needs at least one value");
  std::vector<hyperparameters> out = std::move(first);
  philox_engine rng(seed, std::uint64_t{1} << 42);
  auto pick = [&rng](const auto& values) { return values[rng.below(values.size())]; };
  // A draw repeats an earlier candidate with probability below taken/size; bounded retries keep a
  // nearly exhausted space from looping long.
  const std::size_t want = std::min(count, space.size());
  for (std::size_t tries = 0; out.size() < want && tries < 64 * want + 1024; ++tries) {
    hyperparameters h;
    h.depth = pick(space.depth);
    h.shared_dim = pick(space.shared_dim);
    h.lr = pick(space.lr);
    h.weight_decay = pick(space.weight_decay);
    h.alpha = pick(space.alpha);
    h.mix = pick(space.mix);
    h.dropout = pick(space.dropout);
    if (std::find(out.begin(), out.end(), h) == out.end()) out.push_back(h);
  }
  return out;
}

/// One round of successive halving: how many candidates train, for how many epochs.
struct rung {
  std::size_t candidates = 0, epochs = 0;
  friend bool operator==(const rung&, const rung&) = default;
};

/// Successive halving's rounds for `candidates` candidates (Jamieson and Talwalkar 2016): each
/// keeps the best 1/`eta` of the previous one and trains them `eta` times longer, the last keeps
/// one candidate and trains it `epochs` epochs. For 9 candidates, eta 3, 125 epochs:
/// 9 x 14, 3 x 42, 1 x 125 (epochs rounded up, at least 1).
/// @throws argument_error for no candidates, eta < 2 or no epochs.
[[nodiscard]] inline std::vector<rung> halving_plan(std::size_t candidates, std::size_t eta, std::size_t epochs) {
  constexpr const char* where = "fusemix::halving_plan";
  if (candidates == 0) throw_expected<argument_error>(where, "nothing to search", ">= 1 candidate", candidates);
  if (eta < 2) throw_expected<argument_error>(where, "each round must keep a fraction of the last", "eta >= 2", eta);
  if (epochs == 0) throw_expected<argument_error>(where, "the last round trains for no epochs", ">= 1", epochs);
  std::vector<std::size_t> counts{candidates};
  while (counts.back() > 1) counts.push_back(std::max<std::size_t>(counts.back() / eta, 1));
  std::vector<rung> plan;
  std::size_t scale = 1;
  for (std::size_t i = 1; i < counts.size(); ++i) scale *= eta;
  for (const std::size_t n : counts) {
    plan.push_back({n, std::max<std::size_t>((epochs + scale - 1) / scale, 1)});
    scale /= eta;
  }
  return plan;
}

/// What training one candidate gave: its validation score (higher is better; a run that diverged
/// scores -inf), the epoch that reached it, and the time it took.
struct trial_outcome {
  double score = 0;
  std::size_t best_epoch = 0;
  double seconds = 0;
};

/// A training run of the search.
struct trial {
  std::size_t candidate = 0, rung = 0, epochs = 0;
  std::optional<trial_outcome> outcome;  ///< none: skipped, it would not have fitted the budget
};

struct search_report {
  std::vector<trial> trials;  ///< in the order they ran
  std::size_t winner = 0;     ///< the best candidate of the last round that ran
  std::size_t winner_rung = 0;
  std::size_t winner_epochs = 0;  ///< the epochs it trained in that round
  trial_outcome best;             ///< its outcome there
  bool budget_cut = false;        ///< some trial was skipped for the budget
  double seconds = 0;             ///< the trials' time
};

struct halving_options {
  /// Candidate 0 (e.g. the rule's settings) goes on to every round whatever its score, besides
  /// the best: a short round favours candidates that learn fast, not those that end best, and
  /// this way the search returns something else only if it beats candidate 0 over the last
  /// round's epochs.
  bool keep_first = false;
  /// Trials are skipped when their estimated time, plus `reserve_epochs` more of the same
  /// candidate (its final run, should it win), would take the search past this (0: no budget).
  /// Estimates: a candidate's seconds per epoch from its own last trial, otherwise the seconds
  /// per epoch per unit of `cost` of all trials so far times its cost. The first trial always runs.
  double budget_seconds = 0;
  double reserve_epochs = 0;  ///< e.g. the final run the caller makes with the winner
  /// Relative cost of an epoch of candidate i (e.g. its parameter count); unset: all equal.
  std::function<double(std::size_t)> cost{};
};

/// Successive halving over candidates 0..plan[0].candidates-1: every candidate of a round trains
/// for that round's epochs via `evaluate(t)` (`t` a trial: candidate, round, epochs; it returns a
/// trial_outcome), and the best
/// `plan[r+1].candidates` by score go on (ties: the lower index; candidate 0 as well with
/// `keep_first`); a candidate already trained for
/// as many epochs keeps that outcome instead of training again. Deterministic whenever
/// `evaluate` is and no trial is skipped for the budget (then the elapsed times decide).
/// @throws argument_error for an empty or increasing plan; what `evaluate` throws.
///
/// **Example**
///
///     const auto plan = fusemix::halving_plan(candidates.size(), 3, 100);
///     const auto report = fusemix::successive_halving(plan, [&](const fusemix::trial& t) {
///       return train_and_validate(candidates[t.candidate], t.epochs);
///     });
template <class Evaluate>
search_report successive_halving(const std::vector<rung>& plan, Evaluate&& evaluate, const halving_options& o = {}) {
  constexpr const char* where = "fusemix::successive_halving";
  if (plan.empty() || plan.front().candidates == 0)
    throw argument_error(concat(where, ": the plan has no candidates"));
  for (std::size_t r = 1; r < plan.size(); ++r)
    if (plan[r].candidates == 0 || plan[r].candidates > plan[r - 1].candidates)
      throw_expected<argument_error>(where, concat("round ", r, " must keep some of the previous round's candidates"),
                                     concat("1..", plan[r - 1].candidates), plan[r].candidates);
  auto cost = [&](std::size_t i) { return o.cost ? std::max(o.cost(i), 1e-12) : 1.0; };
  search_report report;
  std::vector<double> per_epoch(plan.front().candidates, 0);  // measured seconds per epoch, 0: not yet
  double spent = 0, work = 0;  // seconds and epochs x cost of the trials so far
  std::vector<std::size_t> alive(plan.front().candidates);
  std::iota(alive.begin(), alive.end(), std::size_t{0});
  for (std::size_t r = 0; r < plan.size() && !alive.empty(); ++r) {
    if (r > 0) {
      // The previous round's best, in order of score, ties to the lower index.
      std::vector<std::pair<double, std::size_t>> ranked;
      for (const trial& t : report.trials)
        if (t.rung == r - 1 && t.outcome) ranked.emplace_back(t.outcome->score, t.candidate);
      std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      alive.clear();
      for (std::size_t k = 0; k < std::min(plan[r].candidates, ranked.size()); ++k) alive.push_back(ranked[k].second);
      if (o.keep_first && std::find(alive.begin(), alive.end(), std::size_t{0}) == alive.end() &&
          std::any_of(ranked.begin(), ranked.end(), [](const auto& x) { return x.second == 0; }))
        alive.push_back(0);
      std::sort(alive.begin(), alive.end());
    }
    bool ran = false;
    for (const std::size_t c : alive) {
      trial t{c, r, plan[r].epochs, std::nullopt};
      // (Rounds of equal epochs, from a short plan: what was measured stands.)
      const auto same = std::find_if(report.trials.begin(), report.trials.end(), [&](const trial& u) {
        return u.candidate == c && u.epochs == t.epochs && u.outcome;
      });
      if (same != report.trials.end()) {
        t.outcome = same->outcome;
        t.outcome->seconds = 0;
        report.trials.push_back(t);
        ran = true;
        continue;
      }
      const double epochs = static_cast<double>(t.epochs);
      const double seconds_per_epoch = per_epoch[c] > 0 ? per_epoch[c] : (work > 0 ? spent / work : 0) * cost(c);
      if (o.budget_seconds > 0 && !report.trials.empty() &&
          report.seconds + (epochs + o.reserve_epochs) * seconds_per_epoch > o.budget_seconds) {
        report.budget_cut = true;
      } else {
        t.outcome = evaluate(std::as_const(t));
        report.seconds += t.outcome->seconds;
        per_epoch[c] = t.outcome->seconds / epochs;
        spent += t.outcome->seconds;
        work += epochs * cost(c);
        ran = true;
      }
      report.trials.push_back(t);
    }
    if (!ran) break;
  }
  // The winner: the best outcome of the last round that trained anything.
  const trial* best = nullptr;
  for (const trial& t : report.trials)
    if (t.outcome && (best == nullptr || t.rung > best->rung ||
                      (t.rung == best->rung && t.outcome->score > best->outcome->score)))
      best = &t;
  report.winner = best->candidate;
  report.winner_rung = best->rung;
  report.winner_epochs = best->epochs;
  report.best = *best->outcome;
  return report;
}

}  // namespace fusemix
