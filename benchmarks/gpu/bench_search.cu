// SPDX-License-Identifier: Apache-2.0
/// @file
/// Time of exact top-k search on the GPU (`fusemix::top_k` with `cuda::backend<float>`) against
/// the CPU's (`fusemix::top_k<float>`) on random normal latents, and whether their lists agree.
///
///     bench_search_gpu --queries 10000 --gallery 1000000 --d 512 --k 10 [--precision fp32|tf32]
///                      [--cpu-queries Q2] [--seed S]
///
/// Query row i is `philox_engine(seed, i)`'s normals, gallery row i `philox_engine(seed + 1, i)`'s
/// (`fusemix_bench::normal_latents`, as bench_dpp's; independent of the thread count). The device search starts from host latents, as
/// `fusemix search --device cuda` does: its time covers the upload of the queries and of every
/// gallery block, the normalisation, the products, the selection and the download, after a small
/// warm-up search that loads the kernels. The CPU searches the first `--cpu-queries` queries
/// (default 200; all threads) over the same gallery; `cpu_seconds_scaled` is its time scaled to
/// every query (its cost is linear in the queries).
///
/// Prints one JSON line: queries, gallery, d, k, precision, gpu_seconds, cpu_queries,
/// cpu_seconds, cpu_seconds_scaled, speedup, same_lists (the fraction of the CPU's queries whose
/// k indices are the GPU's, in order), worst_score_difference, device_name. Exits 2 on bad
/// arguments.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/backend/cuda.cuh>
#include <fusemix/core/random.hpp>
#include <fusemix/eval/search.hpp>

#include "latents.hpp"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  namespace fm = fusemix;
  std::size_t nq = 10000, ng = 1000000, d = 512, k = 10, cpu_q = 200;
  std::uint64_t seed = 1;
  std::string precision = "fp32";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--queries") nq = std::stoul(value);
    else if (flag == "--gallery") ng = std::stoul(value);
    else if (flag == "--d") d = std::stoul(value);
    else if (flag == "--k") k = std::stoul(value);
    else if (flag == "--cpu-queries") cpu_q = std::stoul(value);
    else if (flag == "--seed") seed = std::stoull(value);
    else if (flag == "--precision") precision = value;
    else {
      std::fprintf(stderr, "bench_search_gpu: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  try {
    if (fm::cuda::device_count() == 0) {
      std::fprintf(stderr, "bench_search_gpu: no CUDA device\n");
      return 77;
    }
    cpu_q = std::min(cpu_q, nq);
    const std::vector<float> q = fusemix_bench::normal_latents(nq, d, seed, false),
                             g = fusemix_bench::normal_latents(ng, d, seed + 1, false);
    const fm::latent_view<float> qv(q.data(), nq, d), gv(g.data(), ng, d);
    fm::cuda::backend<float> gpu;
    gpu.ctx().set_precision(fm::cuda::parse_gemm_precision(precision));
    static_cast<void>(fm::top_k(gpu, fm::latent_view<float>(q.data(), std::min<std::size_t>(nq, 64), d),
                                fm::latent_view<float>(g.data(), std::min<std::size_t>(ng, 4096), d), std::min(k, ng)));
    auto t0 = std::chrono::steady_clock::now();
    const auto r = fm::top_k(gpu, qv, gv, k);
    const double gpu_s = seconds_since(t0);
    double cpu_s = 0, worst = 0;
    std::size_t same = 0;
    if (cpu_q != 0) {
      fm::cpu::set_threads(0);
      t0 = std::chrono::steady_clock::now();
      const auto c = fm::top_k<float>(fm::latent_view<float>(q.data(), cpu_q, d), gv, k);
      cpu_s = seconds_since(t0);
      for (Eigen::Index i = 0; i < static_cast<Eigen::Index>(cpu_q); ++i) {
        same += r.indices.row(i) == c.indices.row(i);
        worst = std::max(worst, static_cast<double>((r.scores.row(i) - c.scores.row(i)).cwiseAbs().maxCoeff()));
      }
    }
    const double cpu_scaled = cpu_s * static_cast<double>(nq) / static_cast<double>(std::max<std::size_t>(cpu_q, 1));
    std::printf("{\"bench\": \"search\", \"queries\": %zu, \"gallery\": %zu, \"d\": %zu, \"k\": %zu, \"precision\": \"%s\", "
                "\"gpu_seconds\": %.4f, \"cpu_queries\": %zu, \"cpu_seconds\": %.3f, \"cpu_seconds_scaled\": %.2f, "
                "\"speedup\": %.1f, \"same_lists\": %.4f, \"worst_score_difference\": %.3g, \"device_name\": \"%s\"}\n",
                nq, ng, d, k, precision.c_str(), gpu_s, cpu_q, cpu_s, cpu_scaled, cpu_q ? cpu_scaled / gpu_s : 0.0,
                cpu_q ? static_cast<double>(same) / static_cast<double>(cpu_q) : 1.0, worst, fusemix_bench::device_name().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_search_gpu: %s\n", e.what());
    return 1;
  }
}
