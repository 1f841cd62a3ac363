// SPDX-License-Identifier: Apache-2.0
// Settings from the data: the default recipe as a function of the data's size and width, the
// validation hold-out and the row subset the trainer reads, and the authors' alpha schedules.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <numbers>
#include <numeric>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/train/mixup.hpp>
#include <fusemix/train/recipe.hpp>
#include <fusemix/train/split.hpp>

#include "messages.hpp"

namespace fm = fusemix;

BOOST_AUTO_TEST_SUITE(recipe)

BOOST_AUTO_TEST_CASE(the_default_recipe_follows_the_data_size) {
  const fm::recipe_rule rule;
  for (const std::size_t pairs : {2ul, 50ul, 300ul, 1243ul, 2000ul, 20000ul, 400000ul, 999999ul, 1000000ul, 5000000ul}) {
    const fm::recipe r = fm::recipe_for(pairs, 768, 512);
    BOOST_TEST_CONTEXT(pairs << " pairs") {
      BOOST_TEST(std::has_single_bit(r.batch));
      BOOST_TEST(r.batch <= pairs);
      BOOST_TEST(r.batch <= rule.max_batch);
      // Several steps per epoch, unless the batch is at its floor; the largest such power of two.
      if (r.batch > rule.min_batch && r.batch < rule.max_batch) {
        BOOST_TEST(pairs / r.batch >= rule.steps_per_epoch);
        BOOST_TEST(pairs / (2 * r.batch) < rule.steps_per_epoch);
      }
      const std::size_t steps = r.epochs * (pairs / r.batch);
      BOOST_TEST((steps >= rule.target_steps || r.epochs == rule.max_epochs));
      BOOST_TEST((r.epochs == rule.min_epochs || (r.epochs - 1) * (pairs / r.batch) < rule.target_steps));
      BOOST_TEST(r.depth == (pairs >= rule.deep_pairs ? 4u : 2u));
      BOOST_TEST(r.lr == (pairs >= rule.deep_pairs ? 1e-3 : 1e-4));
      BOOST_TEST(r.reasons.size() == 3u);
    }
  }
  // Figures worked by hand: 1,243 pairs of 1,280 and 100 wide (the bundled emoji set).
  const fm::recipe emoji = fm::recipe_for(1243, 1280, 100);
  BOOST_TEST(emoji.batch == 128u);   // 1,243 / 8 = 155 -> 128, 9 steps an epoch
  BOOST_TEST(emoji.epochs == 112u);  // ceil(1,000 / 9)
  BOOST_TEST(emoji.depth == 2u);
  BOOST_TEST(emoji.weight_decay == 0.5);
  const fm::recipe large = fm::recipe_for(5000000, 1536, 1024);
  BOOST_TEST(large.batch == 16384u);
  BOOST_TEST(large.epochs == 10u);   // 305 steps an epoch: 4 would do, the floor is 10
  BOOST_TEST(large.depth == 4u);
  BOOST_TEST(large.weight_decay == 0.1);
  BOOST_TEST(fm::epochs_for(1243, 64) == 53u);  // 19 steps an epoch: ceil(1,000 / 19)
  BOOST_CHECK_EXCEPTION((void)fm::recipe_for(1, 4, 4), fm::argument_error, fm::test::message_has({"recipe_for", "pairs"}));
  BOOST_CHECK_EXCEPTION((void)fm::recipe_for(100, 0, 4), fm::argument_error, fm::test::message_has({"widths"}));
}

BOOST_AUTO_TEST_CASE(a_hold_out_is_seeded_disjoint_and_complete) {
  const fm::row_split a = fm::split_rows(1000, 100, 5);
  BOOST_TEST(a.validation.size() == 100u);
  BOOST_TEST(a.train.size() == 900u);
  BOOST_TEST(std::is_sorted(a.train.begin(), a.train.end()));
  BOOST_TEST(std::is_sorted(a.validation.begin(), a.validation.end()));
  std::vector<std::size_t> all = a.train;
  all.insert(all.end(), a.validation.begin(), a.validation.end());
  std::sort(all.begin(), all.end());
  std::vector<std::size_t> expected(1000);
  std::iota(expected.begin(), expected.end(), 0u);
  BOOST_TEST(all == expected, "every row once");
  BOOST_TEST(fm::split_rows(1000, 100, 5).validation == a.validation);
  BOOST_TEST(fm::split_rows(1000, 100, 6).validation != a.validation);
  // Spread over the rows, not a block: held-out rows in every quarter.
  for (std::size_t q = 0; q < 4; ++q)
    BOOST_TEST(std::count_if(a.validation.begin(), a.validation.end(), [&](std::size_t r) { return r / 250 == q; }) > 10);
  BOOST_CHECK_EXCEPTION((void)fm::split_rows(10, 0, 1), fm::argument_error, fm::test::message_has({"split_rows", "0"}));
  BOOST_CHECK_EXCEPTION((void)fm::split_rows(10, 10, 1), fm::argument_error, fm::test::message_has({"between 1 and 9"}));
}

BOOST_AUTO_TEST_CASE(a_row_subset_reads_its_rows_of_the_source) {
  fm::matrix<float> z(600, 3);
  for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = static_cast<float>(i);
  const fm::latent_view<float> v(z);
  std::vector<std::size_t> rows(550);
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = (i * 7 + 3) % 600;
  const fm::row_subset s(v, rows);
  BOOST_TEST(s.rows() == 550u);
  BOOST_TEST(s.cols() == 3u);
  // More rows than a chunk of indices, in an order of their own.
  std::vector<std::size_t> ask(530);
  for (std::size_t i = 0; i < ask.size(); ++i) ask[i] = 549 - i;
  std::vector<double> out(ask.size() * 3);
  s.gather(std::span<const std::size_t>(ask), std::span<double>(out));
  for (std::size_t i = 0; i < ask.size(); ++i)
    for (std::size_t c = 0; c < 3; ++c) BOOST_TEST(out[i * 3 + c] == double(z(long(rows[ask[i]]), long(c))));
  BOOST_CHECK_EXCEPTION(fm::row_subset(v, std::vector<std::size_t>{1, 600}), fm::shape_error,
                        fm::test::message_has({"row_subset", "< 600", "600"}));
}

BOOST_AUTO_TEST_CASE(alpha_schedules_follow_the_authors_formulas) {
  // The authors' LAVIS schedulers, evaluated here from their formulas:
  //   cosine: (init - max) * 0.5 * (1 + cos(pi * epoch / max_epoch)) + max
  //   exp:    init * (init / max) ** (-epoch / max_epoch)
  const double init = 0.2, end = 2.0;
  const std::size_t epochs = 40;
  for (std::size_t e = 0; e <= epochs; ++e) {
    const double t = double(e) / double(epochs);
    const double cosine = (init - end) * 0.5 * (1.0 + std::cos(std::numbers::pi * t)) + end;
    const double exponential = init * std::pow(init / end, -t);
    BOOST_TEST(fm::mixup_alpha({.alpha = init, .schedule = fm::alpha_schedule::cosine, .final_alpha = end}, e, epochs) ==
               cosine, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(fm::mixup_alpha({.alpha = init, .schedule = fm::alpha_schedule::exponential, .final_alpha = end}, e,
                               epochs) == exponential, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(fm::mixup_alpha({.alpha = init, .final_alpha = end}, e, epochs) == init);  // constant
  }
  // The ends and the middle, by hand.
  const fm::mixup_options cos{.alpha = 0.2, .schedule = fm::alpha_schedule::cosine, .final_alpha = 2.0};
  BOOST_TEST(fm::mixup_alpha(cos, 0, 10) == 0.2, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(fm::mixup_alpha(cos, 5, 10) == 1.1, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(fm::mixup_alpha(cos, 10, 10) == 2.0, boost::test_tools::tolerance(1e-12));
  const fm::mixup_options exp{.alpha = 0.2, .schedule = fm::alpha_schedule::exponential, .final_alpha = 2.0};
  BOOST_TEST(fm::mixup_alpha(exp, 5, 10) == std::sqrt(0.4), boost::test_tools::tolerance(1e-12));  // geometric mean
  BOOST_TEST(fm::mixup_alpha(exp, 10, 10) == 2.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST((fm::parse_alpha_schedule("exponential") == fm::alpha_schedule::exponential));
  BOOST_CHECK_EXCEPTION((void)fm::parse_alpha_schedule("linear"), fm::argument_error,
                        fm::test::message_has({"constant, cosine or exponential", "linear"}));
}

BOOST_AUTO_TEST_SUITE_END()
