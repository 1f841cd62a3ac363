// SPDX-License-Identifier: Apache-2.0
// Exact top-k search with fusemix::top_k on random unit-variance latents (or .npy files), timed;
// prints one JSON line. benchmarks/search/run.sh runs it beside numpy and FAISS on the same data.
//
//   bench_search --queries Q --gallery G --d D --k K [--threads T] [--seed S]
//                [--write DIR]            (also write DIR/q.npy, DIR/g.npy for the peers)
//                [--indices-out F.npy]    (the top-k indices, int64, to compare with the peers)
//                [--gemm auto|eigen|openblas]  (auto: the library's default for this build)
//                [--query-block N] [--gallery-block N]  (search_options)
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

#include <fusemix/fusemix.hpp>

namespace fm = fusemix;

int main(int argc, char** argv) {
  std::size_t nq = 10000, ng = 1000000, d = 512, k = 10;
  int threads = 0;
  std::uint64_t seed = 1;
  std::string write_dir, indices_out, gemm = "auto";
  fm::search_options opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--queries") nq = std::stoul(value);
    else if (flag == "--gallery") ng = std::stoul(value);
    else if (flag == "--d") d = std::stoul(value);
    else if (flag == "--k") k = std::stoul(value);
    else if (flag == "--threads") threads = std::stoi(value);
    else if (flag == "--seed") seed = std::stoull(value);
    else if (flag == "--write") write_dir = value;
    else if (flag == "--indices-out") indices_out = value;
    else if (flag == "--gemm") gemm = value;
    else if (flag == "--query-block") opt.query_block = std::stoul(value);
    else if (flag == "--gallery-block") opt.gallery_block = std::stoul(value);
    else {
      std::fprintf(stderr, "bench_search: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  try {
    fm::cpu::set_threads(threads);
    if (gemm == "openblas" && fm::cpu::openblas_linked()) fm::cpu::set_gemm_library(fm::cpu::gemm_library::openblas);
    if (gemm == "eigen") fm::cpu::set_gemm_library(fm::cpu::gemm_library::eigen);
    const auto normal = [](std::size_t r, std::size_t c, std::uint64_t s) {
      fm::matrix<float> m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
      fm::philox_engine rng(s);
      for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(fm::sample_normal(rng));
      return m;
    };
    const fm::matrix<float> q = normal(nq, d, seed), g = normal(ng, d, seed + 1);
    if (!write_dir.empty()) {
      std::filesystem::create_directories(write_dir);
      fm::io::write_npy(std::filesystem::path(write_dir) / "q.npy", q);
      fm::io::write_npy(std::filesystem::path(write_dir) / "g.npy", g);
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = fm::top_k<float>(q, g, k, opt);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!indices_out.empty()) fm::io::write_npy(indices_out, r.indices);
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    std::printf("{\"peer\": \"fusemix\", \"queries\": %zu, \"gallery\": %zu, \"d\": %zu, \"k\": %zu, \"threads\": %d, "
                "\"gemm\": \"%s\", \"seconds\": %.3f, \"peak_rss_mib\": %.0f}\n",
                nq, ng, d, k, threads, fm::cpu::to_string(fm::cpu::current_gemm_library()), s,
                static_cast<double>(u.ru_maxrss) / 1024.0);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
