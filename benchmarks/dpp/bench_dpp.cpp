// SPDX-License-Identifier: Apache-2.0
/// @file
/// Time and peak memory of `fusemix::greedy_kdpp` on random L2-normalised latents with the
/// paper's kernel (a·b + 1)², for one (N, D, k). run.sh runs it against dpp_numpy.py.
///
///     bench_dpp --n 20000 --d 384 --k 1000 [--seed 1] [--window W] [--picks-out P.npy]
///     bench_dpp --n 20000 --d 384 --seed 1 --latents-out Z.npy   # write the latents, select nothing
///
/// Prints one JSON object: n, d, k, picks, stop, seconds (wall clock of the selection only,
/// latents excluded, as the reference excludes loading them), cpu_seconds (user + system time of
/// the same span: steadier than wall time on a shared machine), log_det, peak_rss_mib (VmHWM:
/// the whole process, latents included).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>

#include <fusemix/backend/cpu/gemm.hpp>
#include <fusemix/select/kdpp.hpp>
#include <fusemix/io/npy.hpp>
#include <fusemix/core/random.hpp>

namespace {

/// The process's peak resident set (VmHWM), in MiB.
double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return -1;
}

/// User + system CPU time of this process, in seconds.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

/// The read bandwidth of this machine at the current thread count, in GB/s: the best of five
/// sums over `gib` GiB of floats (far past the caches), split between the threads by rows as the
/// eager selector's passes are. The bound an algorithm that streams its data each pick can reach.
double stream_gb_per_s(double gib) {
  const auto n = static_cast<std::size_t>(gib * (1ULL << 30) / sizeof(float));
  std::vector<float> a(n);
  for (std::size_t i = 0; i < n; ++i) a[i] = static_cast<float>(i % 7);
  double best = 0, sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    double total = 0;
#if defined(_OPENMP)
#  pragma omp parallel for schedule(static) reduction(+ : total)
#endif
    for (std::size_t b = 0; b < n; b += 4096) {
      float s = 0;  // one float accumulator per block: vectorises, and the reads dominate
      for (std::size_t i = b; i < std::min(n, b + 4096); ++i) s += a[i];
      total += s;
    }
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(n * sizeof(float)) / t / 1e9);
    sink += total;
  }
  if (sink == -1) std::printf("%f\n", sink);  // keep the sums
  return best;
}

/// n × d standard normal rows (Box–Muller on Philox), each scaled to unit length.
fusemix::io::matrix<float> unit_latents(std::size_t n, std::size_t d, std::uint64_t seed) {
  fusemix::philox_engine rng(seed);
  fusemix::io::matrix<float> z(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d));
  std::vector<double> row(d);
  for (std::size_t i = 0; i < n; ++i) {
    double sq = 0;
    for (std::size_t c = 0; c < d; c += 2) {
      const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();  // u1 in (0, 1]
      const double r = std::sqrt(-2.0 * std::log(u1)), t = 2.0 * 3.141592653589793 * u2;
      row[c] = r * std::cos(t);
      if (c + 1 < d) row[c + 1] = r * std::sin(t);
    }
    for (double x : row) sq += x * x;
    const double inv = 1.0 / std::sqrt(sq);
    for (std::size_t c = 0; c < d; ++c) z(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(c)) = static_cast<float>(row[c] * inv);
  }
  return z;
}

[[noreturn]] void usage() {
  std::cerr << "usage: bench_dpp --n N --d D [--k K] [--seed S] [--window W] [--picks-out P.npy] "
               "[--latents-out Z.npy] [--eager] [--threads T]\n"
               "       bench_dpp --stream-gib G [--threads T]   (read bandwidth, GB/s)\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 0, d = 0, k = 0, window = 0;
  int threads = 0;
  double stream_gib = 0;
  auto evaluation = fusemix::kdpp_evaluation::lazy;
  std::uint64_t seed = 1;
  std::string picks_out, latents_out;
  for (int a = 1; a < argc; ++a) {
    const std::string_view arg = argv[a];
    if (arg == "--eager") {
      evaluation = fusemix::kdpp_evaluation::eager;
      continue;
    }
    if (a + 1 >= argc) usage();
    const char* v = argv[++a];
    if (arg == "--n") n = std::stoull(v);
    else if (arg == "--d") d = std::stoull(v);
    else if (arg == "--k") k = std::stoull(v);
    else if (arg == "--seed") seed = std::stoull(v);
    else if (arg == "--window") window = std::stoull(v);
    else if (arg == "--threads") threads = std::stoi(v);
    else if (arg == "--stream-gib") stream_gib = std::stod(v);
    else if (arg == "--picks-out") picks_out = v;
    else if (arg == "--latents-out") latents_out = v;
    else usage();
  }
  if (stream_gib > 0) {
    fusemix::cpu::set_threads(threads);
    std::printf("{\"impl\":\"stream\",\"threads\":%d,\"gib\":%.1f,\"gb_per_s\":%.2f}\n", fusemix::cpu::threads(),
                stream_gib, stream_gb_per_s(stream_gib));
    return 0;
  }
  if (n == 0 || d == 0 || (k == 0 && latents_out.empty())) usage();
  try {
    fusemix::cpu::set_threads(threads);
    const auto z = unit_latents(n, d, seed);
    if (!latents_out.empty()) {
      fusemix::io::write_npy(latents_out, z);
      return 0;
    }
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = cpu_seconds();
    const auto sel = fusemix::greedy_kdpp(z, k, fusemix::polynomial_kernel{.offset = 1, .degree = 2},
                                          {.window = window, .evaluation = evaluation});
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double cpu = cpu_seconds() - cpu_start;
    const double peak = peak_rss_mib();  // before writing anything
    if (!picks_out.empty()) {
      const std::vector<std::int64_t> picks(sel.picks.begin(), sel.picks.end());
      fusemix::io::write_npy(picks_out, std::span<const std::int64_t>(picks));
    }
    std::printf(
        "{\"impl\":\"fusemix\",\"evaluation\":\"%s\",\"threads\":%d,\"n\":%zu,\"d\":%zu,\"k\":%zu,\"window\":%zu,\"picks\":%zu,\"stop\":\"%s\","
        "\"seconds\":%.3f,\"cpu_seconds\":%.3f,\"log_det\":%.6f,\"peak_rss_mib\":%.1f}\n",
        evaluation == fusemix::kdpp_evaluation::lazy ? "lazy" : "eager", fusemix::cpu::threads(), n, d, k, window, sel.picks.size(), std::string(fusemix::to_string(sel.stop)).c_str(), seconds, cpu,
        sel.log_det(), peak);
  } catch (const std::exception& e) {
    std::cerr << "bench_dpp: " << e.what() << '\n';
    return 1;
  }
}
