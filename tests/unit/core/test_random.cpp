// SPDX-License-Identifier: Apache-2.0
// The Philox engine: determinism, seek, and uniformity of its derived draws.
#include <boost/test/unit_test.hpp>

#include <array>
#include <cmath>
#include <vector>

#include <fusemix/core/random.hpp>

namespace fm = fusemix;

BOOST_AUTO_TEST_SUITE(random_numbers)

BOOST_AUTO_TEST_CASE(same_seed_same_stream_and_seek_restores) {
  fm::philox_engine a(5), b(5), c(6), d(5, 1);
  std::vector<std::uint32_t> va, vb, vc, vd;
  for (int i = 0; i < 16; ++i) va.push_back(a()), vb.push_back(b()), vc.push_back(c()), vd.push_back(d());
  BOOST_TEST(va == vb);
  BOOST_TEST(va != vc);  // another seed
  BOOST_TEST(va != vd);  // another stream
  fm::philox_engine e(5);
  e.seek(7);
  BOOST_TEST(e() == va[7]);
  BOOST_TEST(a.position() == 16u);
}

BOOST_AUTO_TEST_CASE(uniform_moments) {
  fm::philox_engine rng(1);
  const int n = 200000;
  double sum = 0, sq = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform();
    BOOST_TEST_REQUIRE((u >= 0.0 && u < 1.0));
    sum += u, sq += u * u;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  BOOST_TEST(std::abs(mean - 0.5) < 0.003);        // σ(mean) ≈ 0.00065
  BOOST_TEST(std::abs(var - 1.0 / 12) < 0.001);
}

BOOST_AUTO_TEST_CASE(below_is_unbiased_and_in_range) {
  fm::philox_engine rng(2);
  std::array<int, 7> counts{};
  const int n = 70000;
  for (int i = 0; i < n; ++i) {
    const auto v = rng.below(7);
    BOOST_TEST_REQUIRE(v < 7u);
    ++counts[v];
  }
  // Chi-square with 6 degrees of freedom: 22.46 is the 0.999 quantile.
  double chi2 = 0;
  for (int c : counts) chi2 += (c - n / 7.0) * (c - n / 7.0) / (n / 7.0);
  BOOST_TEST(chi2 < 22.46);
  const std::uint64_t big = (1ull << 40) + 3;
  for (int i = 0; i < 1000; ++i) BOOST_TEST_REQUIRE(rng.below(big) < big);
}

BOOST_AUTO_TEST_SUITE_END()
