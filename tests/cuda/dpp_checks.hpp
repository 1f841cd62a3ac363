// SPDX-License-Identifier: Apache-2.0
/// @file
/// Checks of `fusemix::cuda::greedy_kdpp` against the CPU's `fusemix::greedy_kdpp`, written once
/// for both systems: test_dpp_host.cpp (`cuda::host_system`, any C++20 compiler) and test_dpp.cu
/// (`cuda::device_system`, nvcc, a GPU). No Boost: the GPU machine has none.
///
/// On fresh random latents, for the four built-in kernels: the same picks in the same order, the
/// same stop reason and gains within 1e-6 (relative to max(1, |gain|): a gain is log d², so this
/// is a relative bound on d²); ties between exact duplicates go to the lower index; the error
/// cases throw the CPU's exception types with the CPU's messages under the device's name.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/backend/cuda/kdpp.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/core/random.hpp>
#include <fusemix/select/kdpp.hpp>

namespace dpp_checks {

inline int failures = 0;

inline void expect(bool ok, const std::string& what, const char* file, int line) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what.c_str());
  }
}
#define DPP_EXPECT(cond) ::dpp_checks::expect((cond), #cond, __FILE__, __LINE__)

/// n × d standard normal values from `philox_engine(seed)`.
template <class T>
std::vector<T> normal_latents(std::size_t n, std::size_t d, std::uint64_t seed) {
  fusemix::philox_engine rng(seed);
  std::vector<T> z(n * d);
  for (auto& x : z) x = static_cast<T>(fusemix::sample_normal(rng));
  return z;
}

/// `ab − 3`: a dot-product kernel whose diagonal is negative for rows shorter than √3.
struct shifted_kernel {
  [[nodiscard]] FUSEMIX_HOST_DEVICE double from_dots(double ab, double, double) const noexcept { return ab - 3.0; }
  template <class T>
  [[nodiscard]] double operator()(std::span<const T> a, std::span<const T> b) const {
    return fusemix::detail::dot_kernel_pair(*this, a, b);
  }
};

/// `ab`, but `bad` (∞ or NaN) for pairs with ab < −2: a finite diagonal and a non-finite row.
struct spiky_kernel {
  double bad = std::numeric_limits<double>::infinity();
  [[nodiscard]] FUSEMIX_HOST_DEVICE double from_dots(double ab, double, double) const noexcept {
    return ab < -2.0 ? bad : ab;
  }
  template <class T>
  [[nodiscard]] double operator()(std::span<const T> a, std::span<const T> b) const {
    return fusemix::detail::dot_kernel_pair(*this, a, b);
  }
};

/// The CPU's message under the device selector's name.
inline std::string device_message(std::string cpu) {
  constexpr std::string_view from = "fusemix::greedy_kdpp", to = "fusemix::cuda::greedy_kdpp";
  if (cpu.compare(0, from.size(), from) == 0) cpu.replace(0, from.size(), to);
  return cpu;
}

/// The checks on system `S`.
template <class S>
struct suite {
  /// Runs both selectors and checks picks, stop reason and gains; returns the device's selection.
  template <class T, class K>
  static std::optional<fusemix::selection> compare(const std::vector<T>& z, std::size_t n, std::size_t d,
                                                   std::size_t k, const K& kernel, const std::string& label, int line,
                                                   const fusemix::kdpp_options& options = {}) {
    const fusemix::latent_view<T> v(z.data(), n, d);
    try {
      const auto cpu = fusemix::greedy_kdpp(v, k, kernel, options);
      const auto dev = fusemix::cuda::greedy_kdpp<S>(v, k, kernel, options);
      const int before = failures;
      expect(dev.picks.size() == cpu.picks.size(),
             label + ": pick count " + std::to_string(dev.picks.size()) + " vs CPU " + std::to_string(cpu.picks.size()),
             __FILE__, line);
      const std::size_t m = std::min(dev.picks.size(), cpu.picks.size());
      for (std::size_t t = 0; t < m; ++t)
        if (dev.picks[t] != cpu.picks[t]) {
          expect(false, label + ": pick " + std::to_string(t) + " is " + std::to_string(dev.picks[t]) + ", CPU " +
                            std::to_string(cpu.picks[t]), __FILE__, line);
          break;
        }
      expect(dev.stop == cpu.stop, label + ": stop " + std::string(to_string(dev.stop)) + " vs CPU " +
                                       std::string(to_string(cpu.stop)), __FILE__, line);
      double worst = 0;
      std::size_t equal_bits = 0;
      for (std::size_t t = 0; t < std::min(dev.gains.size(), cpu.gains.size()); ++t) {
        const double diff = std::abs(dev.gains[t] - cpu.gains[t]) / std::max(1.0, std::abs(cpu.gains[t]));
        worst = std::max(worst, diff);
        equal_bits += dev.gains[t] == cpu.gains[t] ? 1 : 0;
      }
      expect(worst <= 1e-6, label + ": gains differ by " + std::to_string(worst) + " (relative)", __FILE__, line);
      std::printf("%s %s: %zu picks, %s, gains: %zu/%zu bit-equal, max rel. diff %.3g\n",
                  failures == before ? "ok  " : "FAIL", label.c_str(), dev.picks.size(),
                  std::string(to_string(dev.stop)).c_str(), equal_bits, dev.gains.size(), worst);
      return dev;
    } catch (const std::exception& e) {
      expect(false, label + ": unexpected exception: " + e.what(), __FILE__, line);
      return std::nullopt;
    }
  }

  /// Both selectors must throw `E`, the device with the CPU's message under its own name.
  template <class E, class T, class K>
  static void compare_error(const std::vector<T>& z, std::size_t n, std::size_t d, std::size_t k, const K& kernel,
                            const std::string& label, int line, const fusemix::kdpp_options& options = {}) {
    const fusemix::latent_view<T> v(z.data(), n, d);
    std::string cpu_message, dev_message;
    try {
      static_cast<void>(fusemix::greedy_kdpp(v, k, kernel, options));
      expect(false, label + ": the CPU selector threw nothing", __FILE__, line);
    } catch (const E& e) {
      cpu_message = e.what();
    } catch (const std::exception& e) {
      expect(false, label + ": the CPU selector threw another type: " + e.what(), __FILE__, line);
    }
    try {
      static_cast<void>(fusemix::cuda::greedy_kdpp<S>(v, k, kernel, options));
      expect(false, label + ": the device selector threw nothing", __FILE__, line);
    } catch (const E& e) {
      dev_message = e.what();
    } catch (const std::exception& e) {
      expect(false, label + ": the device selector threw another type: " + e.what(), __FILE__, line);
    }
    expect(dev_message == device_message(cpu_message),
           label + ": message\n    " + dev_message + "\n  expected\n    " + device_message(cpu_message), __FILE__,
           line);
    std::printf("ok   %s: %s\n", label.c_str(), dev_message.c_str());
  }

  /// The device selector alone must throw `E` with a message that starts with its name and holds `part`.
  template <class E, class F>
  static void expect_device_error(F&& f, std::string_view part, const std::string& label, int line) {
    try {
      f();
      expect(false, label + ": nothing was thrown", __FILE__, line);
    } catch (const E& e) {
      const std::string m = e.what();
      expect(m.rfind("fusemix::cuda::greedy_kdpp: ", 0) == 0 && m.find(part) != std::string::npos,
             label + ": message " + m, __FILE__, line);
      std::printf("ok   %s: %s\n", label.c_str(), m.c_str());
    } catch (const std::exception& e) {
      expect(false, label + ": another exception type: " + e.what(), __FILE__, line);
    }
  }

  template <class T>
  static void check_all_kernels(const std::vector<T>& z, std::size_t n, std::size_t d, std::size_t k,
                                const std::string& label, int line,
                                std::optional<fusemix::stop_reason> low_rank_stop = std::nullopt) {
    const auto tag = [&](const char* kernel) {
      return label + " " + kernel + " (N=" + std::to_string(n) + ", D=" + std::to_string(d) + ", k=" +
             std::to_string(k) + ")";
    };
    const auto lin = compare(z, n, d, k, fusemix::linear_kernel{}, tag("linear"), line);
    const auto cos = compare(z, n, d, k, fusemix::cosine_kernel{}, tag("cosine"), line);
    compare(z, n, d, k, fusemix::polynomial_kernel{}, tag("polynomial"), line);
    compare(z, n, d, k, fusemix::rbf_kernel{.gamma = 1.0 / static_cast<double>(d)}, tag("rbf"), line);
    if (low_rank_stop) {  // linear and cosine kernels have rank <= D
      expect(lin && lin->stop == *low_rank_stop && lin->picks.size() == std::min(k, d), tag("linear") + ": stop/rank",
             __FILE__, line);
      expect(cos && cos->stop == *low_rank_stop && cos->picks.size() == std::min(k, d), tag("cosine") + ": stop/rank",
             __FILE__, line);
    }
  }

  static void check_random_data() {
    for (const std::uint64_t seed : {1u, 2u, 3u}) {
      const auto z = normal_latents<float>(2000, 32, seed);
      check_all_kernels(z, 2000, 32, 50, "seed " + std::to_string(seed), __LINE__,
                        fusemix::stop_reason::rank_exhausted);
    }
    // D not a multiple of 16: the columns past the last 16-wide block take the remainder path.
    const auto odd = normal_latents<float>(1000, 37, 4);
    check_all_kernels(odd, 1000, 37, 40, "seed 4", __LINE__);
    // Double latents.
    const auto dbl = normal_latents<double>(1500, 24, 5);
    check_all_kernels(dbl, 1500, 24, 40, "double, seed 5", __LINE__, fusemix::stop_reason::rank_exhausted);
    // Rank-deficient: linear and cosine stop after D = 8 picks.
    const auto low = normal_latents<float>(500, 8, 6);
    check_all_kernels(low, 500, 8, 20, "rank-deficient", __LINE__, fusemix::stop_reason::rank_exhausted);
    // Small D, every item picked (k = N).
    const auto all = normal_latents<float>(40, 5, 7);
    compare(all, 40, 5, 40, fusemix::rbf_kernel{.gamma = 0.2}, "k = N rbf (N=40, D=5)", __LINE__);
    compare(all, 40, 5, 1, fusemix::polynomial_kernel{}, "k = 1 polynomial (N=40, D=5)", __LINE__);
    // A window of k or more is the plain greedy.
    compare(normal_latents<float>(300, 16, 8), 300, 16, 20, fusemix::polynomial_kernel{}, "window = k (N=300)",
            __LINE__, {.window = 20});
  }

  static void check_duplicates() {
    // Rows n0..2·n0−1 copy rows 0..n0−1: ties between copies must go to the first copy, and after
    // a pick its copy has a residual of (rounding) zero, so it is never picked.
    constexpr std::size_t n0 = 300, d = 19;
    auto z = normal_latents<float>(n0, d, 9);
    z.insert(z.end(), z.begin(), z.end());
    const auto tag = [](const char* k) { return std::string("duplicates ") + k + " (N=600, D=19, k=19)"; };
    const auto check_first_copy = [&](const std::optional<fusemix::selection>& s, const char* k, int line) {
      expect(s && std::all_of(s->picks.begin(), s->picks.end(), [](std::size_t p) { return p < n0; }),
             tag(k) + ": a pick from the second copy", __FILE__, line);
    };
    check_first_copy(compare(z, 2 * n0, d, d, fusemix::linear_kernel{}, tag("linear"), __LINE__), "linear", __LINE__);
    // Every cosine diagonal is exactly 1: the first pick is a 600-way tie, won by item 0.
    const auto cos = compare(z, 2 * n0, d, d, fusemix::cosine_kernel{}, tag("cosine"), __LINE__);
    check_first_copy(cos, "cosine", __LINE__);
    DPP_EXPECT(cos && !cos->picks.empty() && cos->picks[0] == 0);
    check_first_copy(compare(z, 2 * n0, d, d, fusemix::polynomial_kernel{}, tag("polynomial"), __LINE__), "polynomial",
                     __LINE__);
    check_first_copy(compare(z, 2 * n0, d, d, fusemix::rbf_kernel{.gamma = 1.0 / d}, tag("rbf"), __LINE__), "rbf",
                     __LINE__);
  }

  static void check_errors() {
    using fusemix::argument_error;
    using fusemix::numeric_error;
    using fusemix::shape_error;
    const fusemix::polynomial_kernel poly;
    const auto z = normal_latents<float>(30, 4, 10);
    compare_error<shape_error>(z, 30, 4, 0, poly, "k = 0", __LINE__);
    compare_error<shape_error>(z, 30, 4, 31, poly, "k > N", __LINE__);
    compare_error<shape_error>(z, 0, 4, 1, poly, "no rows", __LINE__);
    compare_error<shape_error>(z, 30, 0, 1, poly, "no columns", __LINE__);
    compare_error<argument_error>(z, 30, 4, 3, poly, "negative threshold", __LINE__, {.relative_threshold = -1});
    auto bad = z;
    bad[7 * 4 + 3] = std::numeric_limits<float>::quiet_NaN();
    bad[9 * 4 + 1] = std::numeric_limits<float>::infinity();
    compare_error<numeric_error>(bad, 30, 4, 3, poly, "NaN in Z", __LINE__);
    bad[7 * 4 + 3] = 0;
    compare_error<numeric_error>(bad, 30, 4, 3, poly, "Inf in Z", __LINE__);
    compare_error<numeric_error>(z, 30, 4, 3, fusemix::polynomial_kernel{.offset = 1, .degree = 2000},
                                 "infinite diagonal", __LINE__);
    compare_error<numeric_error>(z, 30, 4, 3, shifted_kernel{}, "negative diagonal", __LINE__);
    compare_error<numeric_error>(z, 30, 4, 3, spiky_kernel{}, "infinite kernel value", __LINE__);
    compare_error<numeric_error>(z, 30, 4, 3, spiky_kernel{.bad = std::numeric_limits<double>::quiet_NaN()},
                                 "NaN kernel value", __LINE__);

    const fusemix::latent_view<float> v(z.data(), 30, 4);
    expect_device_error<argument_error>(
        [&] { static_cast<void>(fusemix::cuda::greedy_kdpp<S>(v, 5, poly, {.window = 3})); }, "window 0 only",
        "window 3 < k = 5", __LINE__);
    expect_device_error<argument_error>(
        [&] { static_cast<void>(fusemix::cuda::greedy_kdpp<S>(static_cast<const float*>(nullptr), 30, 4, 3, poly)); },
        "must not be null", "null device pointer", __LINE__);
  }

  static void check_device_pointer() {
    // Upload once, select twice: the same as the host-latent overload; and the backend's engine
    // (`make_kdpp_engine`) under the CPU's driver gives the same again.
    const std::size_t n = 1200, d = 48;
    const auto z = normal_latents<float>(n, d, 11);
    const auto ctx = fusemix::cuda::context<S>::shared();
    fusemix::cuda::array<float, S> dz(n * d);
    fusemix::cuda::copy_to_device(*ctx, z.data(), dz.data(), n * d);
    const fusemix::latent_view<float> v(z.data(), n, d);
    const fusemix::cuda::backend<float, S> be(ctx);
    try {
      for (std::size_t k : {30, 60}) {
        const auto a = fusemix::cuda::greedy_kdpp(dz.data(), n, d, k, fusemix::polynomial_kernel{}, {}, ctx);
        const auto b = fusemix::cuda::greedy_kdpp<S>(v, k, fusemix::polynomial_kernel{});
        DPP_EXPECT(a.picks == b.picks && a.gains == b.gains && a.stop == b.stop);
        auto engine = be.make_kdpp_engine(fusemix::latent_view<float>(dz.data(), n, d), fusemix::polynomial_kernel{},
                                          k - 1);
        const auto c = fusemix::detail::run_greedy_kdpp(engine, k, k - 1, {});
        DPP_EXPECT(c.picks == b.picks && c.gains == b.gains && c.stop == b.stop);
      }
      std::printf("ok   device-pointer overload and make_kdpp_engine (N=1200, D=48, k=30 and 60)\n");
    } catch (const std::exception& e) {
      expect(false, std::string("device-pointer overload: ") + e.what(), __FILE__, __LINE__);
    }
  }
};

}  // namespace dpp_checks

/// Runs every check on system `S`; prints one line per check and each failure as file:line.
/// @returns the number of failed checks.
template <class S>
int run_dpp_checks() {
  using suite = dpp_checks::suite<S>;
  dpp_checks::failures = 0;
  suite::check_random_data();
  suite::check_duplicates();
  suite::check_errors();
  suite::check_device_pointer();
  std::printf("%d failure(s)\n", dpp_checks::failures);
  return dpp_checks::failures;
}
