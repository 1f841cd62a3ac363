// SPDX-License-Identifier: Apache-2.0
/// @file
/// Time of the device k-DPP selector (`fusemix::cuda::greedy_kdpp`) against the CPU's
/// (`fusemix::greedy_kdpp`) on random normal latents, and whether their picks agree.
///
///     bench_dpp --n 1000000 --d 384 --k 1000 [--kernel linear|cosine|poly|rbf] [--cpu-k K2]
///               [--seed S] [--normalize] [--gamma G]
///
/// The latents are N × D standard normal floats (row i from `philox_engine(seed, i)`, so they do
/// not depend on the thread count), L2-normalised with `--normalize`. `--kernel` defaults to
/// cosine; poly is (a·b + 1)², rbf has gamma 1/D unless `--gamma` says otherwise.
///
/// The device selector runs twice: on latents already uploaded (`gpu_ms`: allocation of the
/// c vectors, the finiteness check and the selection) and from host latents (`gpu_ms_with_upload`),
/// after a small warm-up selection that loads the kernels. Both end in a download, so the wall
/// clock (steady_clock) covers all their device work. The CPU selector (single-threaded: it
/// starts no threads and uses no BLAS) then makes the first `--cpu-k` picks (default k; 0 skips
/// it). Its time per pick over its first K2 picks is a lower bound on its average over k, since a
/// step's projection grows with the pick count; `speedup_per_pick` is therefore conservative
/// when K2 < k.
///
/// Prints one JSON line: n, d, k, kernel, gpu_ms, gpu_ms_with_upload, cpu_k, cpu_ms,
/// cpu_ms_per_pick, gpu_ms_per_pick, speedup_per_pick, picks_agree (the two device runs agree,
/// and their first min(picks, CPU picks) agree with the CPU's), device_name. Exits 1 when the
/// picks disagree, 2 on bad arguments.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <fusemix/backend/cuda.cuh>
#include <fusemix/core/random.hpp>
#include <fusemix/select/kdpp.hpp>

#include "latents.hpp"

namespace {

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

[[noreturn]] void usage() {
  std::cerr << "usage: bench_dpp --n N --d D --k K [--kernel linear|cosine|poly|rbf] [--cpu-k K2] [--seed S] "
               "[--normalize] [--gamma G]\n";
  std::exit(2);
}

struct options {
  std::size_t n = 0, d = 0, k = 0, cpu_k = static_cast<std::size_t>(-1);
  std::uint64_t seed = 1;
  std::string kernel = "cosine";
  double gamma = 0;  // 0: 1/D
  bool normalize = false;
};

template <class K>
int run(const options& o, const K& kernel) {
  namespace fc = fusemix::cuda;
  const auto z = fusemix_bench::normal_latents(o.n, o.d, o.seed, o.normalize);
  const fusemix::latent_view<float> view(z.data(), o.n, o.d);
  const auto ctx = fc::context<>::shared();

  // Warm-up: loads the kernels, so that neither timed run pays for it.
  const std::size_t warm_n = std::min<std::size_t>(o.n, 4096);
  static_cast<void>(fc::greedy_kdpp(fusemix::latent_view<float>(z.data(), warm_n, o.d), std::min<std::size_t>(o.k, 8),
                                    kernel, {}, ctx));

  fusemix::selection gpu;
  double gpu_ms = 0;
  {
    fc::array<float> dz(o.n * o.d);
    fc::copy_to_device(*ctx, z.data(), dz.data(), dz.size());
    const auto start = std::chrono::steady_clock::now();
    gpu = fc::greedy_kdpp(dz.data(), o.n, o.d, o.k, kernel, {}, ctx);
    gpu_ms = ms_since(start);
  }
  const auto start = std::chrono::steady_clock::now();
  const auto gpu_upload = fc::greedy_kdpp(view, o.k, kernel, {}, ctx);
  const double gpu_ms_with_upload = ms_since(start);
  bool agree = gpu_upload.picks == gpu.picks;
  if (!agree) std::cerr << "bench_dpp: the two device runs picked differently\n";

  const std::size_t cpu_k = std::min(o.cpu_k == static_cast<std::size_t>(-1) ? o.k : o.cpu_k, o.n);
  double cpu_ms = 0;
  std::size_t cpu_picks = 0;
  if (cpu_k > 0) {
    const auto cpu_start = std::chrono::steady_clock::now();
    const auto cpu = fusemix::greedy_kdpp(view, cpu_k, kernel);
    cpu_ms = ms_since(cpu_start);
    cpu_picks = cpu.picks.size();
    const std::size_t m = std::min(cpu.picks.size(), gpu.picks.size());
    const auto first = std::mismatch(cpu.picks.begin(), cpu.picks.begin() + static_cast<std::ptrdiff_t>(m),
                                     gpu.picks.begin());
    if (first.first != cpu.picks.begin() + static_cast<std::ptrdiff_t>(m)) {
      agree = false;
      std::cerr << "bench_dpp: pick " << (first.first - cpu.picks.begin()) << " differs: device " << *first.second
                << ", CPU " << *first.first << '\n';
    }
  }

  const double gpu_per_pick = gpu.picks.empty() ? 0.0 : gpu_ms / static_cast<double>(gpu.picks.size());
  const std::string name = fusemix_bench::device_name();
  if (cpu_picks > 0) {
    const double cpu_per_pick = cpu_ms / static_cast<double>(cpu_picks);
    std::printf("{\"n\":%zu,\"d\":%zu,\"k\":%zu,\"kernel\":\"%s\",\"gpu_ms\":%.3f,\"gpu_ms_with_upload\":%.3f,"
                "\"cpu_k\":%zu,\"cpu_ms\":%.3f,\"cpu_ms_per_pick\":%.4f,\"gpu_ms_per_pick\":%.4f,"
                "\"speedup_per_pick\":%.2f,\"picks_agree\":%s,\"device_name\":\"%s\"}\n",
                o.n, o.d, o.k, o.kernel.c_str(), gpu_ms, gpu_ms_with_upload, cpu_k, cpu_ms, cpu_per_pick,
                gpu_per_pick, gpu_per_pick > 0 ? cpu_per_pick / gpu_per_pick : 0.0, agree ? "true" : "false",
                name.c_str());
  } else {
    std::printf("{\"n\":%zu,\"d\":%zu,\"k\":%zu,\"kernel\":\"%s\",\"gpu_ms\":%.3f,\"gpu_ms_with_upload\":%.3f,"
                "\"cpu_k\":0,\"cpu_ms\":null,\"cpu_ms_per_pick\":null,\"gpu_ms_per_pick\":%.4f,"
                "\"speedup_per_pick\":null,\"picks_agree\":%s,\"device_name\":\"%s\"}\n",
                o.n, o.d, o.k, o.kernel.c_str(), gpu_ms, gpu_ms_with_upload, gpu_per_pick, agree ? "true" : "false",
                name.c_str());
  }
  return agree ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int a = 1; a < argc; ++a) {
    const std::string_view arg = argv[a];
    if (arg == "--normalize") {
      o.normalize = true;
      continue;
    }
    if (a + 1 >= argc) usage();
    const char* v = argv[++a];
    try {
      if (arg == "--n") o.n = std::stoull(v);
      else if (arg == "--d") o.d = std::stoull(v);
      else if (arg == "--k") o.k = std::stoull(v);
      else if (arg == "--cpu-k") o.cpu_k = std::stoull(v);
      else if (arg == "--seed") o.seed = std::stoull(v);
      else if (arg == "--kernel") o.kernel = v;
      else if (arg == "--gamma") o.gamma = std::stod(v);
      else usage();
    } catch (const std::exception&) {
      usage();
    }
  }
  if (o.n == 0 || o.d == 0 || o.k == 0 || o.k > o.n) usage();
  if (o.kernel == "polynomial") o.kernel = "poly";
  try {
    if (o.kernel == "linear") return run(o, fusemix::linear_kernel{});
    if (o.kernel == "cosine") return run(o, fusemix::cosine_kernel{});
    if (o.kernel == "poly") return run(o, fusemix::polynomial_kernel{.offset = 1, .degree = 2});
    if (o.kernel == "rbf")
      return run(o, fusemix::rbf_kernel{.gamma = o.gamma > 0 ? o.gamma : 1.0 / static_cast<double>(o.d)});
    usage();
  } catch (const std::exception& e) {
    std::cerr << "bench_dpp: " << e.what() << '\n';
    return 1;
  }
}
