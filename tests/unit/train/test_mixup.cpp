// SPDX-License-Identifier: Apache-2.0
// FuseMix mixup: the Beta sampler's distribution, the two pairing modes, the mixed rows.
#include <boost/math/distributions/beta.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/train/mixup.hpp>

namespace fm = fusemix;

namespace {

// The Kolmogorov-Smirnov statistic of `draws` against Beta(a, b).
double ks_statistic(std::vector<double> draws, double a, double b) {
  std::sort(draws.begin(), draws.end());
  const boost::math::beta_distribution<double> dist(a, b);
  const double n = static_cast<double>(draws.size());
  double d = 0;
  for (std::size_t i = 0; i < draws.size(); ++i) {
    const double f = boost::math::cdf(dist, draws[i]);
    d = std::max({d, f - static_cast<double>(i) / n, static_cast<double>(i + 1) / n - f});
  }
  return d;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(mixup)

BOOST_AUTO_TEST_CASE(beta_sampler_matches_distribution) {
  const int n = 20000;
  // Critical value of the KS statistic at significance 0.001: 1.95 / √n.
  const double critical = 1.95 / std::sqrt(static_cast<double>(n));
  // Not below 0.2: Beta(0.1, 0.1) puts ~2% of its mass within 1e-16 of 1, where x/(x+y) rounds
  // to exactly 1.0 in double and the KS statistic measures the rounding, not the sampler.
  for (double alpha : {0.2, 0.4, 1.0, 2.0, 8.0}) {
    fm::philox_engine rng(static_cast<std::uint64_t>(alpha * 1000));
    std::vector<double> draws(n);
    for (double& x : draws) {
      x = fm::sample_beta(rng, alpha, alpha);
      BOOST_TEST_REQUIRE((x >= 0.0 && x <= 1.0));
    }
    double mean = 0, var = 0;
    for (double x : draws) mean += x;
    mean /= n;
    for (double x : draws) var += (x - mean) * (x - mean);
    var /= n - 1;
    const double want_var = 1 / (4 * (2 * alpha + 1));  // Beta(α, α): α²/((2α)²(2α+1))
    const double ks = ks_statistic(draws, alpha, alpha);
    BOOST_TEST_MESSAGE("alpha " << alpha << ": mean " << mean << ", var " << var << " (want " << want_var
                                << "), KS " << ks << " (critical " << critical << ")");
    BOOST_TEST(std::abs(mean - 0.5) < 5 * std::sqrt(want_var / n));
    BOOST_TEST(std::abs(var - want_var) < 0.05 * want_var);
    BOOST_TEST(ks < critical);
  }
  // Asymmetric shapes too (the sampler is general).
  fm::philox_engine rng(9);
  std::vector<double> draws(n);
  for (double& x : draws) x = fm::sample_beta(rng, 2.0, 5.0);
  BOOST_TEST(ks_statistic(draws, 2.0, 5.0) < critical);
  // A wrong sampler must fail the same test: uniform draws are not Beta(2, 5).
  for (double& x : draws) x = rng.uniform();
  BOOST_TEST(ks_statistic(draws, 2.0, 5.0) > critical);
}

BOOST_AUTO_TEST_CASE(permutation_mode_pairs_every_row) {
  fm::philox_engine rng(1);
  const auto plan = fm::draw_mix(rng, 10, {.alpha = 1.0, .mode = fm::mix_mode::permutation});
  BOOST_TEST(plan.first.size() == 10u);
  std::vector<std::size_t> sorted = plan.second;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < 10; ++i) BOOST_TEST(sorted[i] == i);  // a permutation
  BOOST_TEST(plan.second != plan.first);                             // not the identity (here)
  BOOST_TEST((plan.lambda >= 0 && plan.lambda <= 1));
  fm::philox_engine again(1);
  const auto same = fm::draw_mix(again, 10, {.alpha = 1.0, .mode = fm::mix_mode::permutation});
  BOOST_TEST(same.lambda == plan.lambda);
  BOOST_TEST(same.second == plan.second);
}

BOOST_AUTO_TEST_CASE(halves_mode_pairs_i_with_i_plus_half) {
  fm::philox_engine rng(2);
  const auto plan = fm::draw_mix(rng, 8, {.alpha = 0.5, .mode = fm::mix_mode::halves});
  BOOST_TEST(plan.first.size() == 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    BOOST_TEST(plan.first[i] == i);
    BOOST_TEST(plan.second[i] == i + 4);
  }
  BOOST_CHECK_EXCEPTION(fm::draw_mix(rng, 7, {.mode = fm::mix_mode::halves}), fm::shape_error,
                        [](const fm::shape_error& e) { return std::string(e.what()).find("even") != std::string::npos; });
  BOOST_CHECK_THROW(fm::draw_mix(rng, 0, {}), fm::shape_error);
  BOOST_CHECK_THROW(fm::draw_mix(rng, 4, {.alpha = 0}), fm::argument_error);
  BOOST_TEST((fm::parse_mix_mode("halves") == fm::mix_mode::halves));
  BOOST_CHECK_THROW((void)fm::parse_mix_mode("random"), fm::argument_error);
}

BOOST_AUTO_TEST_CASE(apply_mix_uses_the_same_pairing_on_dataset_rows) {
  fm::cpu::backend<double> be;
  fm::matrix<double> z(6, 2), out;
  for (int i = 0; i < 6; ++i) z(i, 0) = i, z(i, 1) = 10 * i;
  const std::vector<std::size_t> rows{5, 3, 1, 0};  // the batch: dataset rows
  fm::mix_plan plan{0.25, {0, 1}, {2, 3}};          // halves-like pairing within the batch
  fm::apply_mix(be, z, rows, plan, out);
  BOOST_TEST(out.rows() == 2);
  BOOST_TEST(out(0, 0) == 0.25 * 5 + 0.75 * 1);  // rows[0] = 5 with rows[2] = 1
  BOOST_TEST(out(1, 1) == 0.25 * 30 + 0.75 * 0);  // rows[1] = 3 with rows[3] = 0
}

BOOST_AUTO_TEST_SUITE_END()
