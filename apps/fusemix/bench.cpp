// SPDX-License-Identifier: Apache-2.0
// `fusemix bench train`: times whole FuseMix training steps (mixup, both adapters forward and
// backward, the loss, AdamW) on random latents and sets them against the rate of the fastest
// single-precision GEMM this machine offers, measured in the same run.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include <fusemix/fusemix.hpp>

#include "commands.hpp"
#include "training.hpp"

namespace {

struct bench_options {
  std::size_t dim_x = 1024, dim_y = 768, depth_x = 2, depth_y = 2, batch = 2048, shared = 512, expansion = 4;
  std::size_t steps = 10, warmup = 2, threads = 1;
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

// The GEMM FLOPs of one step: per Linear of m×n on b rows, 2bmn forward and 4bmn backward (the
// weight gradient and the input gradient, which every layer here computes: even the first one's
// feeds its LayerNorm's parameter gradients); the loss adds the B×B logits and their two
// gradients, 3 · 2·b²·s. Elementwise work is not counted.
double step_gemm_flops(const bench_options& o, std::size_t b) {
  auto adapter = [&](std::size_t d, std::size_t depth) {
    const double e = static_cast<double>(o.expansion), dd = static_cast<double>(d);
    return static_cast<double>(depth) * 2 * (dd * e * dd) + dd * static_cast<double>(o.shared);
  };
  const double macs = adapter(o.dim_x, o.depth_x) + adapter(o.dim_y, o.depth_y);
  const double bb = static_cast<double>(b);
  return 6 * bb * macs + 6 * bb * bb * static_cast<double>(o.shared);
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
                                  .mixup = {.alpha = o.alpha, .mode = mode}, .seed = o.seed};
  fusemix::trainer tr(hx, hy, to);
  std::vector<std::size_t> rows(o.batch);
  std::iota(rows.begin(), rows.end(), std::size_t{0});
  std::vector<double> seconds;
  double loss = 0;
  for (std::size_t s = 0; s < o.warmup + o.steps; ++s) {
    fusemix::philox_engine rng(o.seed, (std::uint64_t{1} << 40) + s);
    const auto plan = fusemix::draw_mix(rng, o.batch, to.mixup);
    const auto t0 = clock_type::now();
    loss = tr.step(zx, zy, rows, plan, 1e-3);
    const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (s >= o.warmup) seconds.push_back(dt);
  }
  const std::size_t peak = peak_rss_bytes();
  auto count = [](const auto& h) {  // the tensors' elements, without the alignment padding between them
    std::size_t n = 0;
    for (const auto& e : h.named_parameters()) n += e.size;
    return n;
  };
  const std::size_t params = count(hx) + count(hy);
  const double step_s = median(seconds), flops = step_gemm_flops(o, b);

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
                   {"parameters", params},
                   {"needed_mib", needed / 1048576.0},
                   {"peak_rss_mib", static_cast<double>(peak) / 1048576.0},
                   {"step_rss_mib", static_cast<double>(peak - std::min(peak, rss0)) / 1048576.0},
                   {"last_loss", loss}};
  j["memory_ratio"] = j["step_rss_mib"].get<double>() / j["needed_mib"].get<double>();
  if (o.json) {
    std::cout << j.dump() << '\n';
    return;
  }
  std::printf("train step %zux%zu depth %zu/%zu batch %zu, %zu thread(s), GEMM %s\n", o.dim_x, o.dim_y, o.depth_x,
              o.depth_y, o.batch, o.threads, fusemix::cpu::to_string(used));
  std::printf("  %.1f ms/step (median of %zu), %.0f samples/s, %.1f GFLOP/step, %.1f GFLOP/s\n", step_s * 1e3, o.steps,
              static_cast<double>(o.batch) / step_s, flops / 1e9, achieved);
  std::printf("  roofline %.1f GFLOP/s (%s, %s): %.1f%%\n", best, best_name.c_str(),
              j["roofline_shape"].get<std::string>().c_str(), 100 * achieved / best);
  std::printf("  memory: %.0f MiB over the start (peak RSS %.0f MiB), %.0f MiB needed: %.2fx\n",
              j["step_rss_mib"].get<double>(), j["peak_rss_mib"].get<double>(), needed / 1048576.0,
              j["memory_ratio"].get<double>());
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto o = std::make_shared<bench_options>();
  auto* cmd = bench->add_subcommand("train", "Time FuseMix training steps on random latents against this machine's GEMM rate");
  cmd->add_option("--dim-x", o->dim_x, "X latent width")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--dim-y", o->dim_y, "Y latent width")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--depth-x", o->depth_x, "blocks of the X adapter")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--depth-y", o->depth_y, "blocks of the Y adapter")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--batch", o->batch, "rows per step")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--steps", o->steps, "timed steps (the median is reported)")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "untimed steps first")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--threads", o->threads, "GEMM threads")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--shared-dim", o->shared, "shared space width")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--expansion", o->expansion, "block widening factor")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--dropout", o->dropout, "dropout probability")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--alpha", o->alpha, "mixup: lambda ~ Beta(alpha, alpha)")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--mix", o->mix, "permutation or halves")->check(CLI::IsMember({"permutation", "halves"}))->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the data, weights and draws")->capture_default_str();
  cmd->add_option("--gemm", o->gemm, "GEMM library of the step: auto, eigen or openblas (where linked)")
      ->check(CLI::IsMember({"auto", "eigen", "openblas"}))->capture_default_str();
  cmd->add_flag("--json", o->json, "print one JSON object");
  cmd->callback([o] { run_bench_train(*o); });
}
