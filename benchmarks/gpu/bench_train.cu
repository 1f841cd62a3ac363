// SPDX-License-Identifier: Apache-2.0
// FuseMix training steps on the GPU: the CPU's trainer, adapters and loss instantiated with
// fusemix::cuda::backend<float>, timed step by step; the peer is benchmarks/train/torch_step.py
// --device cuda (same step, same GEMM FLOP count), run by benchmarks/gpu/run.sh.
//
//   bench_train_gpu --dim-x 1536 --dim-y 1024 --depth-x 4 --depth-y 4 --batch 20480 --precision bf16 --json
//   ... --profile     one extra step with each primitive timed by CUDA events (the sum of the
//                     primitives against the step's wall time shows the launch and sync gaps)
//
// Every step uses all `batch` rows (as torch_step.py), with a fresh λ and permutation. A step is
// timed from a synchronised device to the end of its AdamW update (host clock after
// cudaDeviceSynchronize: the step syncs twice itself, for the loss and dL/dτ). The report is the
// median over the timed steps. The roofline is measured in the same process: an 8192³ GEMM
// through cuBLAS in the step's precision (bf16: on bf16 operands, as the step's GEMMs run after
// their operands are converted), so `roofline_fraction` = achieved GEMM rate / that rate.
#include <fusemix/backend/cuda.cuh>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fusemix/fusemix.hpp>

#include "arguments.hpp"

namespace {

struct options {
  std::size_t dim_x = 1536, dim_y = 1024, depth_x = 4, depth_y = 4, batch = 20480, shared = 512, expansion = 4;
  std::size_t steps = 10, warmup = 3;
  double dropout = 0.6;
  std::string precision = "fp32";
  bool json = false;
  bool profile = false;  // one more step with every primitive timed (adds "profile" to the JSON)
};

// As gemm_flop_per_step in benchmarks/train/torch_step.py (permutation mixing): what PyTorch runs.
// Ours runs 2·m·d·e·d fewer per adapter (the first layer forms no input gradient), so the
// fraction below, on this count, compares the two steps at equal work.
double gemm_flop(const options& o) {
  const double m = static_cast<double>(o.batch);
  auto linear = [&](double i, double out) { return 6 * m * i * out; };
  auto adapter = [&](double d, double depth) {
    const double h = static_cast<double>(o.expansion) * d;
    return depth * (linear(d, h) + linear(h, d)) + linear(d, static_cast<double>(o.shared));
  };
  return adapter(static_cast<double>(o.dim_x), static_cast<double>(o.depth_x)) +
         adapter(static_cast<double>(o.dim_y), static_cast<double>(o.depth_y)) + 3 * 2 * m * m * static_cast<double>(o.shared);
}

// The cuBLAS rate of an n³ GEMM in `p` (TFLOP/s, median of 10 after 3 warm-ups).
double gemm_peak(fusemix::cuda::context<>& ctx, fusemix::cuda::gemm_precision p, int n = 8192) {
  const std::size_t e = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  fusemix::cuda::array<float> a(e), b(e), c(e);
  fusemix::cuda::array<__nv_bfloat16> a16(e), b16(e);
  fusemix::philox_engine rng(5);
  std::vector<float> h(e);
  for (auto& v : h) v = static_cast<float>(rng.uniform() - 0.5);  // never zeros: they run faster
  fusemix::cuda::copy_to_device(ctx, h.data(), a.data(), e);
  fusemix::cuda::copy_to_device(ctx, h.data(), b.data(), e);
  fusemix::cuda::for_n(ctx, e, fusemix::cuda::detail::to_bf16{a.data(), a16.data()});
  fusemix::cuda::for_n(ctx, e, fusemix::cuda::detail::to_bf16{b.data(), b16.data()});
  const float one = 1, zero = 0;
  auto run = [&] {
    if (p == fusemix::cuda::gemm_precision::bf16)
      FUSEMIX_CUBLAS_CHECK(cublasGemmEx(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a16.data(), CUDA_R_16BF, n,
                                        b16.data(), CUDA_R_16BF, n, &zero, c.data(), CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
    else
      FUSEMIX_CUBLAS_CHECK(cublasGemmEx(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a.data(), CUDA_R_32F, n,
                                        b.data(), CUDA_R_32F, n, &zero, c.data(), CUDA_R_32F, n,
                                        p == fusemix::cuda::gemm_precision::fp32 ? CUBLAS_COMPUTE_32F
                                                                                  : CUBLAS_COMPUTE_32F_FAST_TF32,
                                        CUBLAS_GEMM_DEFAULT));
  };
  cudaEvent_t start, stop;
  FUSEMIX_CUDA_CHECK(cudaEventCreate(&start));
  FUSEMIX_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms;
  for (int i = 0; i < 13; ++i) {
    FUSEMIX_CUDA_CHECK(cudaEventRecord(start, ctx.stream()));
    run();
    FUSEMIX_CUDA_CHECK(cudaEventRecord(stop, ctx.stream()));
    FUSEMIX_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    FUSEMIX_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    if (i >= 3) ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::nth_element(ms.begin(), ms.begin() + static_cast<std::ptrdiff_t>(ms.size() / 2), ms.end());
  return 2.0 * n * n * static_cast<double>(n) / (ms[ms.size() / 2] * 1e-3) / 1e12;
}

int run(const options& o) {
  using B = fusemix::cuda::backend<float>;
  if (fusemix::cuda::device_count() == 0) {
    std::fprintf(stderr, "bench_train_gpu: no CUDA device\n");
    return 4;
  }
  const auto precision = fusemix::cuda::parse_gemm_precision(o.precision);
  B be;
  fusemix::cuda::context<>& ctx = be.ctx();
  std::size_t free0 = 0, total = 0;
  FUSEMIX_CUDA_CHECK(cudaMemGetInfo(&free0, &total));

  fusemix::philox_engine rng(1);
  auto random = [&](std::size_t r, std::size_t c) {
    fusemix::matrix<float> m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(fusemix::sample_normal(rng));
    return m;
  };
  const B::matrix_type zx = be.upload(random(o.batch, o.dim_x)), zy = be.upload(random(o.batch, o.dim_y));
  fusemix::fusion_adapter<fusemix::dynamic_shape, B> hx(
      {.in_dim = o.dim_x, .out_dim = o.shared, .depth = o.depth_x, .expansion = o.expansion}, {.dropout = o.dropout, .seed = 3}, be);
  fusemix::fusion_adapter<fusemix::dynamic_shape, B> hy(
      {.in_dim = o.dim_y, .out_dim = o.shared, .depth = o.depth_y, .expansion = o.expansion}, {.dropout = o.dropout, .seed = 4}, be);
  fusemix::trainer tr(hx, hy, {.epochs = 1, .batch = o.batch, .lr = 1e-3, .weight_decay = 0.1, .seed = 7}, be);
  ctx.set_precision(precision);

  std::vector<std::size_t> rows(o.batch);
  for (std::size_t i = 0; i < o.batch; ++i) rows[i] = i;
  fusemix::mix_plan plan;
  std::vector<double> ms;
  double first_loss = 0, last_loss = 0;
  for (std::size_t s = 0; s < o.warmup + o.steps; ++s) {
    fusemix::philox_engine step_rng(7, s);
    fusemix::draw_mix(step_rng, o.batch, {}, plan);
    ctx.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    const double loss = tr.step(zx, zy, rows, plan, 1e-3);
    ctx.synchronize();
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s >= o.warmup) {
      ms.push_back(t);
      if (s == o.warmup) first_loss = loss;
      last_loss = loss;
    }
  }
  // One more step with every primitive timed: where the time goes (names as in backend.hpp).
  std::string profile_json;
  if (o.profile) {
    fusemix::philox_engine step_rng(7, o.warmup + o.steps);
    fusemix::draw_mix(step_rng, o.batch, {}, plan);
    ctx.set_profiling(true);
    ctx.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    tr.step(zx, zy, rows, plan, 1e-3);
    const auto report = ctx.profile_report();
    const double total = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ctx.set_profiling(false);
    profile_json = ", \"profile_step_ms\": " + std::to_string(total) + ", \"profile\": {";
    for (std::size_t i = 0; i < report.size(); ++i)
      profile_json += (i ? ", \"" : "\"") + report[i].name + "\": [" + std::to_string(report[i].ms) + ", " +
                      std::to_string(report[i].calls) + "]";
    profile_json += "}";
    if (!o.json) {
      std::printf("profiled step: %.2f ms\n", total);
      for (const auto& e : report) std::printf("  %-28s %8.3f ms  %4zu calls\n", e.name.c_str(), e.ms, e.calls);
    }
  }
  std::size_t free1 = 0;
  FUSEMIX_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  const double flop = gemm_flop(o), tflops = flop / (median * 1e-3) / 1e12;
  const double peak = gemm_peak(ctx, precision);
  cudaDeviceProp prop{};
  FUSEMIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const double used_mib = static_cast<double>(free0 - free1) / (1024.0 * 1024.0);
  if (o.json)
    std::printf(
        "{\"impl\": \"fusemix\", \"device\": \"cuda:0\", \"device_name\": \"%s\", \"precision\": \"%s\", \"dim_x\": %zu, "
        "\"dim_y\": %zu, \"depth_x\": %zu, \"depth_y\": %zu, \"batch\": %zu, \"shared_dim\": %zu, \"steps\": %zu, "
        "\"ms_per_step\": %.3f, \"ms_min\": %.3f, \"ms_max\": %.3f, \"steps_per_s\": %.3f, \"samples_per_s\": %.1f, "
        "\"gemm_gflop_per_step\": %.1f, \"gemm_tflops\": %.1f, \"roofline_tflops\": %.1f, \"roofline_fraction\": %.4f, "
        "\"device_mib\": %.0f, \"first_loss\": %.6f, \"last_loss\": %.6f%s}\n",
        prop.name, o.precision.c_str(), o.dim_x, o.dim_y, o.depth_x, o.depth_y, o.batch, o.shared, o.steps, median,
        sorted.front(), sorted.back(), 1000.0 / median, static_cast<double>(o.batch) * 1000.0 / median, flop / 1e9, tflops,
        peak, tflops / peak, used_mib, first_loss, last_loss, profile_json.c_str());
  else
    std::printf("fusemix %s: %.2f ms/step (%.2f steps/s), GEMMs %.1f TFLOP/s = %.1f%% of %.1f, %.0f MiB on the device\n",
                o.precision.c_str(), median, 1000.0 / median, tflops, 100 * tflops / peak, peak, used_mib);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  fusemix_bench::arguments args("bench_train_gpu", argc, argv);
  for (std::string a = args.next(); !a.empty(); a = args.next()) {
    if (a == "--dim-x") o.dim_x = args.size();
    else if (a == "--dim-y") o.dim_y = args.size();
    else if (a == "--depth-x") o.depth_x = args.size();
    else if (a == "--depth-y") o.depth_y = args.size();
    else if (a == "--batch") o.batch = args.size();
    else if (a == "--shared-dim") o.shared = args.size();
    else if (a == "--expansion") o.expansion = args.size();
    else if (a == "--steps") o.steps = args.size();
    else if (a == "--warmup") o.warmup = args.size();
    else if (a == "--dropout") o.dropout = std::stod(args.value());
    else if (a == "--precision") o.precision = args.value();
    else if (a == "--json") o.json = true;
    else if (a == "--profile") o.profile = true;
    else args.unknown();
  }
  if (o.steps == 0) o.steps = 1;
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_gpu: %s\n", e.what());
    return 1;
  }
}
