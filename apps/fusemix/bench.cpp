// SPDX-License-Identifier: Apache-2.0
// `fusemix bench train`: times whole FuseMix training steps (mixup, both adapters forward and
// backward, the loss, AdamW) on random latents and sets them against the rate of the fastest
// single-precision GEMM this machine offers, measured in the same run.
// `fusemix bench data`: times the same steps reading each batch from latent files (memory-mapped
// shards, in an epoch's random order) against steps from an in-memory subset, interleaved, with
// the process's anonymous and file-backed resident memory.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <thread>
#include <vector>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include <fusemix/fusemix.hpp>

#include "commands.hpp"
#include "model_file.hpp"
#include "training.hpp"

namespace {

struct bench_options {
  std::size_t dim_x = 1024, dim_y = 768, depth_x = 2, depth_y = 2, batch = 2048, shared = 512, expansion = 4;
  std::size_t steps = 10, warmup = 2, threads = 1, micro_batch = 0;
  double dropout = 0.6, alpha = 1.0;
  std::string mix = "permutation", gemm = "auto";
  std::uint64_t seed = 0;
  bool json = false;
};

using clock_type = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Resident set size now, from /proc (kB → bytes); 0 where /proc is missing.
std::size_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

std::size_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<std::size_t>(u.ru_maxrss) * 1024;
}

fusemix::matrix<float> random_latents(std::size_t rows, std::size_t cols, std::uint64_t seed, std::uint64_t stream) {
  fusemix::philox_engine rng(seed, stream);
  fusemix::matrix<float> z(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = static_cast<float>(fusemix::sample_normal(rng));
  return z;
}

// The GEMM FLOPs of one step as PyTorch's autograd does them, and so as both sides of the
// benchmark count them: per Linear of m×n on b rows, 2bmn forward and 4bmn backward (the weight
// gradient and the input gradient; the first Linear's input gradient feeds its LayerNorm's
// parameter gradients); the loss adds the B×B logits and their two gradients, 3 · 2·b²·s.
// Elementwise work is not counted.
double step_gemm_flops(const bench_options& o, std::size_t b) {
  auto adapter = [&](std::size_t d, std::size_t depth) {
    const double e = static_cast<double>(o.expansion), dd = static_cast<double>(d);
    return static_cast<double>(depth) * 2 * (dd * e * dd) + dd * static_cast<double>(o.shared);
  };
  const double macs = adapter(o.dim_x, o.depth_x) + adapter(o.dim_y, o.depth_y);
  const double bb = static_cast<double>(b);
  return 6 * bb * macs + 6 * bb * bb * static_cast<double>(o.shared);
}

// The GEMM FLOPs our step runs: the above less the first Linear's input gradient in each adapter
// (2bmn), which `fusion_adapter::backward_parameters` replaces by a weight-sized elementwise pass.
double step_gemm_flops_run(const bench_options& o, std::size_t b) {
  auto first = [&](std::size_t d, std::size_t depth) {
    const double dd = static_cast<double>(d);
    return depth > 0 ? dd * static_cast<double>(o.expansion) * dd : dd * static_cast<double>(o.shared);
  };
  return step_gemm_flops(o, b) - 2 * static_cast<double>(b) * (first(o.dim_x, o.depth_x) + first(o.dim_y, o.depth_y));
}

// Bytes that must be resident during a step: parameters, their gradients and AdamW's two moments
// (4 copies), and the activations backward reads: the mixed input and each block's output (depth
// + 1 of width d), per block the LayerNorm output, the pre-activation and the dropout output
// (1 + 2e widths), the final LayerNorm's output, the projection and its normalised copy, and the
// B×B logits.
double needed_bytes(const bench_options& o, std::size_t b, std::size_t params) {
  auto acts = [&](std::size_t d, std::size_t depth) {
    const double dd = static_cast<double>(d), e = static_cast<double>(o.expansion);
    const double n = static_cast<double>(depth);
    return (n + 1) * dd + n * (1 + 2 * e) * dd + dd + 2.0 * static_cast<double>(o.shared);
  };
  const double bb = static_cast<double>(b);
  return 4.0 * (4.0 * static_cast<double>(params) + bb * (acts(o.dim_x, o.depth_x) + acts(o.dim_y, o.depth_y)) + bb * bb);
}

// Median seconds of `c = a·bᵀ` (the layout of a Linear's forward) through `f`.
template <class F>
double time_gemm(F&& f, int reps) {
  f();  // warm-up: packing buffers, thread pools
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = clock_type::now();
    f();
    t.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  return median(t);
}

// The cores' single-precision FMA peak, measured: each of `threads` threads runs twelve
// independent chains of fused multiply-adds in the widest vectors this build targets (twelve
// chains cover the latency of two FMA pipes). It is the ceiling over any GEMM, so it says how
// much of the machine the roofline GEMM itself leaves unused. 0 where the build has no FMA.
double fma_peak_gflops(std::size_t threads) {
#if defined(__AVX512F__)
  using vec = __m512;
  constexpr int lanes = 16;
  auto fma = [](vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); };
  auto splat = [](float f) { return _mm512_set1_ps(f); };
#elif defined(__FMA__)
  using vec = __m256;
  constexpr int lanes = 8;
  auto fma = [](vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); };
  auto splat = [](float f) { return _mm256_set1_ps(f); };
#endif
#if defined(__AVX512F__) || defined(__FMA__)
  constexpr long iterations = 100'000'000;
  constexpr int chains = 12;
  std::vector<float> sink(threads);
  auto work = [&](std::size_t t) {
    const vec m = splat(0.9999999f), c = splat(1e-8f);
    // Twelve named chains, not an array: an array would live in memory.
    const float f = static_cast<float>(t);
    vec a0 = splat(f), a1 = splat(f + 1), a2 = splat(f + 2), a3 = splat(f + 3), a4 = splat(f + 4), a5 = splat(f + 5),
        a6 = splat(f + 6), a7 = splat(f + 7), a8 = splat(f + 8), a9 = splat(f + 9), a10 = splat(f + 10),
        a11 = splat(f + 11);  // distinct, so that none is merged with another
    for (long k = 0; k < iterations; ++k) {
      a0 = fma(a0, m, c), a1 = fma(a1, m, c), a2 = fma(a2, m, c), a3 = fma(a3, m, c), a4 = fma(a4, m, c);
      a5 = fma(a5, m, c), a6 = fma(a6, m, c), a7 = fma(a7, m, c), a8 = fma(a8, m, c), a9 = fma(a9, m, c);
      a10 = fma(a10, m, c), a11 = fma(a11, m, c);
      // Keeps the chains in registers and the loop from being folded.
      asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8),
                   "+v"(a9), "+v"(a10), "+v"(a11));
    }
    float s = 0;
    for (const vec& v : {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11}) s += reinterpret_cast<const float*>(&v)[0];
    sink[t] = s;
  };
  const auto t0 = clock_type::now();
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  return static_cast<double>(threads) * iterations * chains * lanes * 2 / s / 1e9;
#else
  (void)threads;
  return 0;
#endif
}

void run_bench_train(const bench_options& o) {
  fusemix::cpu::set_threads(static_cast<int>(o.threads));
  fusemix_cli::choose_gemm_library(o.gemm);
  const auto used = fusemix::cpu::current_gemm_library();
  const std::size_t rss0 = rss_bytes();
  const auto mode = fusemix::parse_mix_mode(o.mix);
  const std::size_t b = fusemix::mixed_rows(o.batch, mode);
  const auto zx = random_latents(o.batch, o.dim_x, o.seed, 1), zy = random_latents(o.batch, o.dim_y, o.seed, 2);
  fusemix::fusion_adapter<> hx({.in_dim = o.dim_x, .out_dim = o.shared, .depth = o.depth_x, .expansion = o.expansion},
                               {.dropout = o.dropout, .seed = o.seed * 2 + 1});
  fusemix::fusion_adapter<> hy({.in_dim = o.dim_y, .out_dim = o.shared, .depth = o.depth_y, .expansion = o.expansion},
                               {.dropout = o.dropout, .seed = o.seed * 2 + 2});
  const fusemix::train_options to{.epochs = 1, .batch = o.batch, .lr = 1e-3, .weight_decay = 0.1,
                                  .mixup = {.alpha = o.alpha, .mode = mode}, .seed = o.seed, .micro_batch = o.micro_batch};
  fusemix::trainer tr(hx, hy, to);
  // Under mpirun the ranks share each batch (docs/distributed.md); rank 0 reports.
  const auto& group = fusemix_cli::process_group();
  tr.set_communicator(group);
  std::uint64_t bytes_before = 0;
  double comm_before = 0;
  std::vector<std::size_t> rows(o.batch);
  std::iota(rows.begin(), rows.end(), std::size_t{0});
  std::vector<double> seconds;
  double loss = 0;
  for (std::size_t s = 0; s < o.warmup + o.steps; ++s) {
    fusemix::philox_engine rng(o.seed, (std::uint64_t{1} << 40) + s);
    const auto plan = fusemix::draw_mix(rng, o.batch, to.mixup);
    if (s == o.warmup) bytes_before = group.bytes_sent(), comm_before = group.seconds_in_operations();
    const auto t0 = clock_type::now();
    loss = tr.step(zx, zy, rows, plan, 1e-3);
    const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (s >= o.warmup) seconds.push_back(dt);
  }
  const double bytes_per_step = static_cast<double>(group.bytes_sent() - bytes_before) / static_cast<double>(o.steps);
  const double comm_ms = 1e3 * (group.seconds_in_operations() - comm_before) / static_cast<double>(o.steps);
  const std::size_t peak = peak_rss_bytes();
  auto count = [](const auto& h) {  // the tensors' elements, without the alignment padding between them
    std::size_t n = 0;
    for (const auto& e : h.named_parameters()) n += e.size;
    return n;
  };
  const std::size_t params = count(hx) + count(hy);
  const double step_s = median(seconds), flops = step_gemm_flops(o, b), flops_run = step_gemm_flops_run(o, b);

  // The roofline: the widest Linear's forward GEMM (b × d·e × d), in each library this binary has.
  const std::size_t d = std::max(o.dim_x, o.dim_y);
  const auto a = random_latents(b, d, o.seed, 3), w = random_latents(o.expansion * d, d, o.seed, 4);
  fusemix::matrix<float> c(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(o.expansion * d));
  const double gemm_flops = 2.0 * static_cast<double>(b) * static_cast<double>(d) * static_cast<double>(o.expansion * d);
  const int reps = std::max(3, static_cast<int>(std::min<double>(20, 2e11 / gemm_flops)));
  nlohmann::json roof;
  double best = 0;
  std::string best_name;
  fusemix::cpu::backend<float> be;
  for (const auto lib : {fusemix::cpu::gemm_library::eigen, fusemix::cpu::gemm_library::openblas}) {
    if (lib == fusemix::cpu::gemm_library::openblas && !fusemix::cpu::openblas_linked()) continue;
    fusemix::cpu::set_gemm_library(lib);
    const double g = gemm_flops / time_gemm([&] { be.gemm(1.0f, a, false, w, true, 0.0f, c); }, reps) / 1e9;
    roof[fusemix::cpu::to_string(lib)] = g;
    if (g > best) best = g, best_name = fusemix::cpu::to_string(lib);
  }
  fusemix::cpu::set_gemm_library(used);
  const double peak_fma = fma_peak_gflops(o.threads);
  const double achieved = flops / step_s / 1e9;
  const double needed = needed_bytes(o, b, params);
  nlohmann::json j{{"dim_x", o.dim_x},
                   {"dim_y", o.dim_y},
                   {"depth_x", o.depth_x},
                   {"depth_y", o.depth_y},
                   {"batch", o.batch},
                   {"mixed_rows", b},
                   {"mix", o.mix},
                   {"threads", o.threads},
                   {"micro_batch", o.micro_batch},
                   {"steps", o.steps},
                   {"gemm_library", fusemix::cpu::to_string(used)},
                   {"ms_per_step", step_s * 1e3},
                   {"ms_min", *std::min_element(seconds.begin(), seconds.end()) * 1e3},
                   {"samples_per_s", static_cast<double>(o.batch) / step_s},
                   {"gemm_gflop_per_step", flops / 1e9},
                   {"gflops", achieved},
                   {"roofline_gflops", best},
                   {"roofline_library", best_name},
                   {"roofline_shape", std::to_string(b) + "x" + std::to_string(d) + "x" + std::to_string(o.expansion * d)},
                   {"roofline_by_library", roof},
                   {"roofline_fraction", achieved / best},
                   {"gemm_gflop_run_per_step", flops_run / 1e9},
                   {"roofline_fraction_run", flops_run / step_s / 1e9 / best},
                   {"fma_peak_gflops", peak_fma},
                   {"roofline_fraction_of_fma_peak", peak_fma > 0 ? best / peak_fma : 0.0},
                   {"parameters", params},
                   {"needed_mib", needed / 1048576.0},
                   {"peak_rss_mib", static_cast<double>(peak) / 1048576.0},
                   {"step_rss_mib", static_cast<double>(peak - std::min(peak, rss0)) / 1048576.0},
                   {"last_loss", loss},
                   {"world_size", group.size()},
                   {"bytes_sent_per_step", bytes_per_step},
                   {"ms_in_communication_per_step", comm_ms}};
  j["memory_ratio"] = j["step_rss_mib"].get<double>() / j["needed_mib"].get<double>();
  if (group.rank() != 0) return;
  if (o.json) {
    std::cout << j.dump() << '\n';
    return;
  }
  std::printf("train step %zux%zu depth %zu/%zu batch %zu, %zu thread(s), GEMM %s\n", o.dim_x, o.dim_y, o.depth_x,
              o.depth_y, o.batch, o.threads, fusemix::cpu::to_string(used));
  std::printf("  %.1f ms/step (median of %zu), %.0f samples/s, %.1f GFLOP/step, %.1f GFLOP/s\n", step_s * 1e3, o.steps,
              static_cast<double>(o.batch) / step_s, flops / 1e9, achieved);
  std::printf("  roofline %.1f GFLOP/s (%s, %s): %.1f%% (%.1f%% counting the %.1f GFLOP/step run)\n", best,
              best_name.c_str(), j["roofline_shape"].get<std::string>().c_str(), 100 * achieved / best,
              100 * flops_run / step_s / 1e9 / best, flops_run / 1e9);
  if (peak_fma > 0)
    std::printf("  FMA peak %.1f GFLOP/s on %zu thread(s): the roofline is %.1f%% of it\n", peak_fma, o.threads,
                100 * best / peak_fma);
  std::printf("  memory: %.0f MiB over the start (peak RSS %.0f MiB), %.0f MiB needed: %.2fx\n",
              j["step_rss_mib"].get<double>(), j["peak_rss_mib"].get<double>(), needed / 1048576.0,
              j["memory_ratio"].get<double>());
}

// The process's resident memory by kind, from /proc/self/status (kB → MiB): "RssAnon" (its own
// allocations) or "RssFile" (mapped files' pages); 0 where /proc is missing.
double status_mib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024.0;
  return 0;
}

struct data_options {
  std::string x, y;
  std::size_t subset = 65536, batch = 2048, depth_x = 2, depth_y = 2, shared = 512, steps = 10, warmup = 2,
              threads = 1, micro_batch = 0;
  std::uint64_t seed = 0;
  bool json = false;
};

void run_bench_data(const data_options& o) {
  constexpr std::string_view where = "fusemix bench data";
  fusemix::cpu::set_threads(static_cast<int>(o.threads));
  const fusemix::io::mapped_latents fx(fusemix_cli::latent_files(where, "--x", o.x)),
      fy(fusemix_cli::latent_files(where, "--y", o.y));
  if (fx.rows() != fy.rows())
    fusemix::throw_shape_error(where, "--x and --y must have the same number of rows", fx.rows(), fy.rows());
  const std::size_t n = fx.rows(), subset = std::min(o.subset, n);
  if (o.batch > subset) fusemix::throw_shape_error(where, "the batch must fit in the subset", fusemix::concat("<= ", subset), o.batch);
  auto make = [&](std::size_t d, std::size_t depth, std::uint64_t seed) {
    return fusemix::fusion_adapter<>({.in_dim = d, .out_dim = o.shared, .depth = depth}, {.dropout = 0.6, .seed = seed});
  };
  const fusemix::train_options to{.epochs = 1, .batch = o.batch, .seed = o.seed, .micro_batch = o.micro_batch};
  // An epoch's random order over all the files' rows, and over the subset.
  auto order_of = [&](std::size_t count, std::uint64_t stream) {
    std::vector<std::size_t> order(count);
    std::iota(order.begin(), order.end(), std::size_t{0});
    fusemix::philox_engine rng(o.seed, stream);
    for (std::size_t i = count; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    return order;
  };
  const std::vector<std::size_t> file_order = order_of(n, 0), memory_order = order_of(subset, 1);
  const std::span<const std::size_t> files_rows(file_order), memory_rows(memory_order);
  const std::size_t file_batches = n / o.batch, memory_batches = subset / o.batch;
  auto plan_of = [&](std::size_t s) {
    fusemix::philox_engine rng(o.seed, (std::uint64_t{1} << 40) + s);
    return fusemix::draw_mix(rng, o.batch, {});
  };
  auto ax = make(fx.cols(), o.depth_x, 1), ay = make(fy.cols(), o.depth_y, 2);
  fusemix::trainer from_files(ax, ay, to);
  auto file_step = [&](std::size_t s) {
    // The next batch is requested first, as train_epoch does, and read while this one computes.
    fx.prefetch(files_rows.subspan((s + 1) % file_batches * o.batch, o.batch));
    fy.prefetch(files_rows.subspan((s + 1) % file_batches * o.batch, o.batch));
    const auto t0 = clock_type::now();
    from_files.step(fx, fy, files_rows.subspan(s % file_batches * o.batch, o.batch), plan_of(s), 1e-3);
    return std::chrono::duration<double>(clock_type::now() - t0).count();
  };
  // The process training from the files alone, warm: what a run of `fusemix train` holds.
  for (std::size_t s = 0; s < o.warmup; ++s) file_step(s);
  const double anon_files_only = status_mib("RssAnon");
  // The in-memory peer: the first `subset` pairs read into matrices, and a trainer of its own.
  std::vector<std::size_t> first(subset);
  std::iota(first.begin(), first.end(), std::size_t{0});
  fusemix::matrix<float> mx(static_cast<Eigen::Index>(subset), static_cast<Eigen::Index>(fx.cols())),
      my(static_cast<Eigen::Index>(subset), static_cast<Eigen::Index>(fy.cols()));
  fx.gather(std::span<const std::size_t>(first), std::span<float>(mx.data(), static_cast<std::size_t>(mx.size())));
  fy.gather(std::span<const std::size_t>(first), std::span<float>(my.data(), static_cast<std::size_t>(my.size())));
  const double subset_mib = static_cast<double>(mx.size() + my.size()) * sizeof(float) / 1048576.0;
  auto bx = make(fx.cols(), o.depth_x, 1), by = make(fy.cols(), o.depth_y, 2);
  fusemix::trainer from_memory(bx, by, to);
  std::vector<double> t_files, t_memory;
  // Interleaved step by step, so that both see the same machine.
  for (std::size_t s = 0; s < o.warmup + o.steps; ++s) {
    const auto t0 = clock_type::now();
    from_memory.step(mx, my, memory_rows.subspan(s % memory_batches * o.batch, o.batch), plan_of(s), 1e-3);
    const double dm = std::chrono::duration<double>(clock_type::now() - t0).count();
    const double df = file_step(o.warmup + s);
    if (s >= o.warmup) t_memory.push_back(dm), t_files.push_back(df);
  }
  const double files_s = median(t_files), memory_s = median(t_memory);
  nlohmann::json j{{"pairs", n},
                   {"shards", fx.shards() + fy.shards()},
                   {"dtype_x", std::string(fx.dtype())},
                   {"dtype_y", std::string(fy.dtype())},
                   {"data_gb", static_cast<double>(fx.data_bytes() + fy.data_bytes()) / 1e9},
                   {"dim_x", fx.cols()},
                   {"dim_y", fy.cols()},
                   {"batch", o.batch},
                   {"threads", o.threads},
                   {"steps", o.steps},
                   {"subset_pairs", subset},
                   {"ms_per_step_files", files_s * 1e3},
                   {"ms_per_step_memory", memory_s * 1e3},
                   {"samples_per_s_files", static_cast<double>(o.batch) / files_s},
                   {"samples_per_s_memory", static_cast<double>(o.batch) / memory_s},
                   {"files_over_memory", memory_s / files_s},
                   {"rss_anon_mib_files_only", anon_files_only},
                   {"rss_anon_mib", status_mib("RssAnon")},
                   {"rss_file_mib", status_mib("RssFile")},
                   {"subset_mib", subset_mib}};
  if (o.json) {
    std::cout << j.dump() << '\n';
    return;
  }
  std::printf("%zu pairs in %zu shards (%s/%s, %.1f GB), batch %zu, %zu thread(s)\n", n, fx.shards() + fy.shards(),
              std::string(fx.dtype()).c_str(), std::string(fy.dtype()).c_str(), j["data_gb"].get<double>(), o.batch,
              o.threads);
  std::printf("  from the files %.1f ms/step (%.0f samples/s), from %zu pairs in memory %.1f ms/step: %.3fx\n",
              files_s * 1e3, static_cast<double>(o.batch) / files_s, subset, memory_s * 1e3, memory_s / files_s);
  std::printf("  resident: %.0f MiB anonymous training from the files alone (warm); with the in-memory peer %.0f MiB"
              " (%.0f MiB of it its data); %.0f MiB of mapped files\n",
              anon_files_only, j["rss_anon_mib"].get<double>(), subset_mib, j["rss_file_mib"].get<double>());
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto o = std::make_shared<bench_options>();
  auto* cmd = bench->add_subcommand("train", "Time FuseMix training steps on random latents against this machine's GEMM rate");
  cmd->add_option("--dim-x", o->dim_x, "X latent width")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--dim-y", o->dim_y, "Y latent width")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--depth-x", o->depth_x, "blocks of the X adapter")->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--depth-y", o->depth_y, "blocks of the Y adapter")->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--batch", o->batch, "rows per step")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--steps", o->steps, "timed steps (the median is reported)")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "untimed steps first")->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--threads", o->threads, "GEMM threads")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--shared-dim", o->shared, "shared space width")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--expansion", o->expansion, "block widening factor")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--dropout", o->dropout, "dropout probability")->check(fusemix_cli::probability)->capture_default_str();
  cmd->add_option("--alpha", o->alpha, "mixup: lambda ~ Beta(alpha, alpha)")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--mix", o->mix, "permutation or halves")->check(CLI::IsMember({"permutation", "halves"}))->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the data, weights and draws")->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--gemm", o->gemm, "GEMM library of the step: auto, eigen or openblas (where linked)")
      ->check(CLI::IsMember({"auto", "eigen", "openblas"}))->capture_default_str();
  cmd->add_option("--micro-batch", o->micro_batch, "gradient caching: rows per slice (0: the whole batch)")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_flag("--json", o->json, "print one JSON object");
  cmd->callback([o] { run_bench_train(*o); });

  auto d = std::make_shared<data_options>();
  auto* data = bench->add_subcommand(
      "data", "Time training steps reading batches from latent files (memory-mapped) against steps from memory");
  data->add_option("--x", d->x, "X latents: a .npy file or shards a.npy,b.npy,...")->required();
  data->add_option("--y", d->y, "Y latents, rows paired with X")->required();
  data->add_option("--subset", d->subset, "pairs of the in-memory peer (the files' first rows)")
      ->check(fusemix_cli::positive)->capture_default_str();
  data->add_option("--batch", d->batch, "rows per step")->check(fusemix_cli::positive)->capture_default_str();
  data->add_option("--depth-x", d->depth_x, "blocks of the X adapter")->check(fusemix_cli::non_negative)->capture_default_str();
  data->add_option("--depth-y", d->depth_y, "blocks of the Y adapter")->check(fusemix_cli::non_negative)->capture_default_str();
  data->add_option("--shared-dim", d->shared, "shared space width")->check(fusemix_cli::positive)->capture_default_str();
  data->add_option("--steps", d->steps, "timed steps of each kind (the medians are reported)")
      ->check(fusemix_cli::positive)->capture_default_str();
  data->add_option("--warmup", d->warmup, "untimed steps first")->check(fusemix_cli::non_negative)->capture_default_str();
  data->add_option("--threads", d->threads, "threads")->check(fusemix_cli::positive)->capture_default_str();
  data->add_option("--micro-batch", d->micro_batch, "gradient caching: rows per slice (0: the whole batch)")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  data->add_option("--seed", d->seed, "seed of the order, weights and draws")->check(fusemix_cli::non_negative)->capture_default_str();
  data->add_flag("--json", d->json, "print one JSON object");
  data->callback([d] { run_bench_data(*d); });
}
