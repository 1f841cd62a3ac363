// SPDX-License-Identifier: Apache-2.0
// The settings search: candidates drawn by seed, successive halving's rounds, who goes on, the
// winner, and the budget.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <set>
#include <vector>

#include <fusemix/train/tune.hpp>

#include "messages.hpp"

namespace fm = fusemix;

namespace {

bool in_space(const fm::search_space& s, const fm::hyperparameters& h) {
  auto has = [](const auto& values, const auto& v) { return std::find(values.begin(), values.end(), v) != values.end(); };
  return has(s.depth, h.depth) && has(s.shared_dim, h.shared_dim) && has(s.lr, h.lr) &&
         has(s.weight_decay, h.weight_decay) && has(s.alpha, h.alpha) && has(s.mix, h.mix) && has(s.dropout, h.dropout);
}

// A made-up validation score: candidate quality q[c] reached more fully with more epochs.
struct fake_training {
  std::vector<double> quality;
  std::vector<std::pair<std::size_t, std::size_t>> calls{};  // (candidate, epochs)
  double seconds_per_epoch = 1;
  fm::trial_outcome operator()(const fm::trial& t) {
    calls.emplace_back(t.candidate, t.epochs);
    return {quality[t.candidate] * (1 - 1.0 / static_cast<double>(t.epochs + 1)), t.epochs,
            seconds_per_epoch * static_cast<double>(t.epochs)};
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(tune)

BOOST_AUTO_TEST_CASE(candidates_are_distinct_draws_from_the_space_fixed_by_the_seed) {
  const fm::search_space space;
  const fm::hyperparameters rule{};  // the audio-text recipe
  const auto a = fm::sample_candidates(space, 9, 5, {rule});
  BOOST_TEST_REQUIRE(a.size() == 9u);
  BOOST_TEST((a.front() == rule));
  for (std::size_t i = 0; i < a.size(); ++i) {
    BOOST_TEST(in_space(space, a[i]), "candidate " << i);
    for (std::size_t j = 0; j < i; ++j) BOOST_TEST(!(a[i] == a[j]), i << " repeats " << j);
  }
  BOOST_TEST((fm::sample_candidates(space, 9, 5, {rule}) == a));
  BOOST_TEST(!(fm::sample_candidates(space, 9, 6, {rule}) == a));
  // Every setting takes more than one value over a few draws.
  const auto many = fm::sample_candidates(space, 60, 1);
  std::set<std::size_t> depths, widths;
  std::set<double> lrs, dropouts;
  for (const auto& h : many) depths.insert(h.depth), widths.insert(h.shared_dim), lrs.insert(h.lr), dropouts.insert(h.dropout);
  BOOST_TEST(depths.size() == space.depth.size());
  BOOST_TEST(widths.size() == space.shared_dim.size());
  BOOST_TEST(lrs.size() > 2u);
  BOOST_TEST(dropouts.size() > 2u);
}

BOOST_AUTO_TEST_CASE(a_small_space_gives_each_of_its_candidates_once) {
  fm::search_space space;
  space.depth = {2}, space.shared_dim = {512}, space.lr = {1e-4, 1e-3}, space.weight_decay = {0.5}, space.alpha = {1.0};
  space.mix = {fm::mix_mode::permutation, fm::mix_mode::halves}, space.dropout = {0.6};
  BOOST_TEST(space.size() == 4u);
  const auto all = fm::sample_candidates(space, 9, 0);
  BOOST_TEST(all.size() == 4u);
  space.lr.clear();
  BOOST_CHECK_EXCEPTION((void)fm::sample_candidates(space, 3, 0), fm::argument_error,
                        fm::test::message_has({"sample_candidates", "at least one value"}));
}

BOOST_AUTO_TEST_CASE(each_round_keeps_a_third_and_trains_three_times_longer) {
  BOOST_TEST((fm::halving_plan(9, 3, 125) == std::vector<fm::rung>{{9, 14}, {3, 42}, {1, 125}}));
  BOOST_TEST((fm::halving_plan(12, 3, 30) == std::vector<fm::rung>{{12, 4}, {4, 10}, {1, 30}}));
  BOOST_TEST((fm::halving_plan(8, 2, 8) == std::vector<fm::rung>{{8, 1}, {4, 2}, {2, 4}, {1, 8}}));
  BOOST_TEST((fm::halving_plan(1, 3, 10) == std::vector<fm::rung>{{1, 10}}));
  BOOST_TEST((fm::halving_plan(9, 3, 2) == std::vector<fm::rung>{{9, 1}, {3, 1}, {1, 2}}));
  BOOST_CHECK_EXCEPTION((void)fm::halving_plan(0, 3, 10), fm::argument_error, fm::test::message_has({"halving_plan"}));
  BOOST_CHECK_EXCEPTION((void)fm::halving_plan(9, 1, 10), fm::argument_error, fm::test::message_has({"eta >= 2"}));
  BOOST_CHECK_EXCEPTION((void)fm::halving_plan(9, 3, 0), fm::argument_error, fm::test::message_has({"no epochs"}));
}

BOOST_AUTO_TEST_CASE(the_best_of_each_round_go_on_and_the_last_round_names_the_winner) {
  fake_training f{{0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6}};
  const auto plan = fm::halving_plan(9, 3, 27);
  const auto report = fm::successive_halving(plan, std::ref(f));
  BOOST_TEST_REQUIRE(report.trials.size() == 13u);
  BOOST_TEST(!report.budget_cut);
  // Round 0: everyone for 3 epochs; round 1: the best three (1, 6, 4) for 9; round 2: 1 for 27.
  for (std::size_t i = 0; i < 9; ++i) BOOST_TEST((f.calls[i] == std::pair<std::size_t, std::size_t>{i, 3}));
  BOOST_TEST((std::vector(f.calls.begin() + 9, f.calls.end()) ==
              std::vector<std::pair<std::size_t, std::size_t>>{{1, 9}, {4, 9}, {6, 9}, {1, 27}}));
  BOOST_TEST(report.winner == 1u);
  BOOST_TEST(report.winner_rung == 2u);
  BOOST_TEST(report.winner_epochs == 27u);
  BOOST_TEST(report.best.score == 0.9 * (1 - 1.0 / 28), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(report.seconds == 9 * 3 + 3 * 9 + 27.0);
}

BOOST_AUTO_TEST_CASE(keep_first_carries_candidate_0_to_the_last_round) {
  fake_training f{{0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6}};
  const auto report = fm::successive_halving(fm::halving_plan(9, 3, 27), std::ref(f), {.keep_first = true});
  BOOST_TEST((std::vector(f.calls.begin() + 9, f.calls.end()) ==
              std::vector<std::pair<std::size_t, std::size_t>>{{0, 9}, {1, 9}, {4, 9}, {6, 9}, {0, 27}, {1, 27}}));
  BOOST_TEST(report.winner == 1u);
  // When candidate 0 is best at full length it wins, though it was behind in the short rounds.
  fake_training late{{0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6}};
  const auto upset = fm::successive_halving(fm::halving_plan(9, 3, 27), [&](const fm::trial& t) {
    auto out = late(t);
    if (t.candidate == 0 && t.epochs == 27) out.score = 1;
    return out;
  }, {.keep_first = true});
  BOOST_TEST(upset.winner == 0u);
  BOOST_TEST(upset.winner_rung == 2u);
}

BOOST_AUTO_TEST_CASE(rounds_of_equal_epochs_reuse_the_outcome) {
  fake_training f{{0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6}};
  const auto report = fm::successive_halving(fm::halving_plan(9, 3, 3), std::ref(f));  // 9 x 1, 3 x 1, 1 x 3
  BOOST_TEST(report.trials.size() == 13u);
  BOOST_TEST(f.calls.size() == 10u);
  BOOST_TEST(report.trials[9].outcome->score == report.trials[1].outcome->score);
  BOOST_TEST(report.trials[9].outcome->seconds == 0.0);
  BOOST_TEST(report.winner == 1u);
}

BOOST_AUTO_TEST_CASE(ties_go_to_the_lower_candidate) {
  fake_training f{{0.5, 0.7, 0.7, 0.7, 0.1}};
  const auto report = fm::successive_halving({{5, 1}, {2, 2}, {1, 4}}, std::ref(f));
  BOOST_TEST((f.calls[5] == std::pair<std::size_t, std::size_t>{1, 2}));
  BOOST_TEST((f.calls[6] == std::pair<std::size_t, std::size_t>{2, 2}));
  BOOST_TEST(report.winner == 1u);
}

BOOST_AUTO_TEST_CASE(trials_that_would_not_fit_the_budget_are_skipped) {
  fake_training f{{0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6}};
  const auto plan = fm::halving_plan(9, 3, 27);  // 27 + 27 + 27 seconds in all
  // Room for rounds 0 and 1 and a reserve of 10 epochs, not for round 2's 27 epochs.
  const auto report = fm::successive_halving(plan, std::ref(f), {.budget_seconds = 70, .reserve_epochs = 10});
  BOOST_TEST(report.budget_cut);
  BOOST_TEST_REQUIRE(report.trials.size() == 13u);
  BOOST_TEST(!report.trials.back().outcome.has_value());
  BOOST_TEST(f.calls.size() == 12u);
  BOOST_TEST(report.winner == 1u);
  BOOST_TEST(report.winner_rung == 1u);
  BOOST_TEST(report.winner_epochs == 9u);
  BOOST_TEST(report.seconds <= 70.0);
  // A cost per candidate scales the estimate of those not yet trained: candidate 0 ran (the first
  // trial always does), the expensive others do not fit.
  fake_training g{{0.3, 0.9, 0.1}};
  const auto costly = fm::successive_halving(
      {{3, 2}, {1, 4}}, std::ref(g), {.budget_seconds = 10, .cost = [](std::size_t c) { return c == 0 ? 1.0 : 10.0; }});
  BOOST_TEST((g.calls == std::vector<std::pair<std::size_t, std::size_t>>{{0, 2}, {0, 4}}));
  BOOST_TEST(costly.winner == 0u);
  BOOST_TEST(costly.winner_rung == 1u);
}

BOOST_AUTO_TEST_CASE(a_plan_that_grows_is_refused) {
  fake_training f{{0.1, 0.2}};
  BOOST_CHECK_EXCEPTION((void)fm::successive_halving({{2, 1}, {3, 2}}, std::ref(f)), fm::argument_error,
                        fm::test::message_has({"successive_halving", "round 1"}));
  BOOST_CHECK_EXCEPTION((void)fm::successive_halving({}, std::ref(f)), fm::argument_error,
                        fm::test::message_has({"no candidates"}));
}

BOOST_AUTO_TEST_SUITE_END()
