// SPDX-License-Identifier: Apache-2.0
/// @file
/// What double accumulation buys: greedy k-DPP picks with float latents and c vectors, accumulated
/// in double (the library) or in float, each compared with an all-double run on the same values.
///
///     precision_dpp [N D k]...      (default: a few sizes; unit latents, kernel (a.b + 1)^2)
///
/// Prints a Markdown table: for each run, how many picks agree with the all-double run in order
/// (the length of the common prefix) and as a set, and the relative difference of log det.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include <fusemix/select/kdpp.hpp>
#include <fusemix/io/npy.hpp>
#include <fusemix/core/random.hpp>

namespace {

fusemix::io::matrix<float> unit_latents(std::size_t n, std::size_t d, std::uint64_t seed) {
  fusemix::philox_engine rng(seed);
  fusemix::io::matrix<float> z(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d));
  std::vector<double> row(d + 1);
  for (std::size_t i = 0; i < n; ++i) {
    double sq = 0;
    for (std::size_t c = 0; c < d; c += 2) {
      const double r = std::sqrt(-2.0 * std::log(1.0 - rng.uniform())), t = 6.283185307179586 * rng.uniform();
      row[c] = r * std::cos(t);
      row[c + 1] = r * std::sin(t);
    }
    for (std::size_t c = 0; c < d; ++c) sq += row[c] * row[c];
    for (std::size_t c = 0; c < d; ++c)
      z(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(c)) = static_cast<float>(row[c] / std::sqrt(sq));
  }
  return z;
}

void compare(const fusemix::selection& s, const fusemix::selection& ref) {
  std::size_t prefix = 0;
  while (prefix < std::min(s.picks.size(), ref.picks.size()) && s.picks[prefix] == ref.picks[prefix]) ++prefix;
  const std::set<std::size_t> a(s.picks.begin(), s.picks.end());
  std::size_t common = 0;
  for (auto p : ref.picks) common += a.count(p);
  std::printf(" %zu / %zu in order, %zu as a set, log det rel. diff %.1e |", prefix, ref.picks.size(), common,
              std::abs(s.log_det() - ref.log_det()) / std::abs(ref.log_det()));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes;
  for (int a = 1; a < argc; ++a) sizes.push_back(std::stoull(argv[a]));
  if (sizes.empty()) sizes = {2000, 384, 200, 20000, 384, 1000, 5000, 32, 400};
  if (sizes.size() % 3 != 0) {
    std::fprintf(stderr, "usage: precision_dpp [N D k]...\n");
    return 2;
  }
  const fusemix::polynomial_kernel kernel;
  std::printf("| N | D | k | float storage, double accumulation (fusemix) | float storage, float accumulation |\n");
  std::printf("|---:|---:|---:|---|---|\n");
  for (std::size_t q = 0; q < sizes.size(); q += 3) {
    const std::size_t n = sizes[q], d = sizes[q + 1], k = sizes[q + 2];
    const auto zf = unit_latents(n, d, 1);
    const fusemix::io::matrix<double> zd = zf.cast<double>();  // the same values, exactly
    const fusemix::kdpp_options o;
    const auto all_double = fusemix::detail::greedy_kdpp_with<double>(fusemix::latent_view<double>(zd), k, kernel, o);
    const auto ours = fusemix::detail::greedy_kdpp_with<double>(fusemix::latent_view<float>(zf), k, kernel, o);
    const auto all_float = fusemix::detail::greedy_kdpp_with<float>(fusemix::latent_view<float>(zf), k, kernel, o);
    std::printf("| %zu | %zu | %zu |", n, d, k);
    compare(ours, all_double);
    compare(all_float, all_double);
    std::printf("\n");
  }
}
