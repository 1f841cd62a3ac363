// SPDX-License-Identifier: Apache-2.0
// Training steps on the GPU from latents in `.npy` shards, in each of `fusemix train --device
// cuda`'s placements (docs/data.md): resident on the device in the files' precision
// (`cuda::resident_latents`), or streamed a batch at a time from the memory-mapped shards
// through page-locked buffers. Run by benchmarks/gpu/run.sh (step "data"), which writes the shards.
//
//   bench_data_gpu --x x_00.npy,x_01.npy --y y_00.npy,y_01.npy --mode resident --batch 20480 --json
//   ... --mode stream                       the same steps, streamed
//   ... --batch 40960 --mix halves --micro-batch 4096   gradient caching (against --micro-batch 0)
//
// The steps walk an epoch's random order (the trainer's shuffle), as training does. Steps run
// back to back and are timed together after the warm-up, from a synchronised device to the end
// of the last step: streaming overlaps the host's gathering with the device's work across steps,
// which timing each step alone would hide.
#include <fusemix/backend/cuda.cuh>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <fusemix/fusemix.hpp>

#include "arguments.hpp"

namespace {

struct options {
  std::string x, y, mode = "resident", mix = "permutation";
  std::size_t depth = 4, batch = 20480, shared = 512, expansion = 4, micro_batch = 0, steps = 10, warmup = 2;
  bool json = false;
};

std::vector<std::filesystem::path> split(const std::string& list) {
  std::vector<std::filesystem::path> out;
  std::stringstream in(list);
  for (std::string p; std::getline(in, p, ',');) out.emplace_back(p);
  return out;
}

// A field of /proc/self/status, in MiB.
double status_mib(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(std::string(key).size())) / 1024.0;
  return 0;
}

template <class SX, class SY>
double time_steps(const options& o, const SX& zx, const SY& zy, fusemix::cuda::backend<float>& be, double& last_loss) {
  using B = fusemix::cuda::backend<float>;
  fusemix::fusion_adapter<fusemix::dynamic_shape, B> hx(
      {.in_dim = zx.cols(), .out_dim = o.shared, .depth = o.depth, .expansion = o.expansion}, {.dropout = 0.6, .seed = 3}, be);
  fusemix::fusion_adapter<fusemix::dynamic_shape, B> hy(
      {.in_dim = zy.cols(), .out_dim = o.shared, .depth = o.depth, .expansion = o.expansion}, {.dropout = 0.6, .seed = 4}, be);
  fusemix::train_options to{.epochs = 1, .batch = o.batch, .lr = 1e-3, .weight_decay = 0.1, .seed = 7};
  to.mixup.mode = fusemix::parse_mix_mode(o.mix);
  to.micro_batch = o.micro_batch;
  fusemix::trainer tr(hx, hy, to, be);
  // An epoch's order, as the trainer shuffles it.
  std::vector<std::size_t> order(zx.rows());
  std::iota(order.begin(), order.end(), std::size_t{0});
  fusemix::philox_engine shuffle(7, 0);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuffle.below(i)]);
  fusemix::mix_plan plan;
  std::chrono::steady_clock::time_point t0;
  for (std::size_t s = 0; s < o.warmup + o.steps; ++s) {
    if (s == o.warmup) {
      be.ctx().synchronize();
      t0 = std::chrono::steady_clock::now();
    }
    fusemix::philox_engine rng(7, (std::uint64_t{1} << 40) + s);
    fusemix::draw_mix(rng, o.batch, to.mixup, plan);
    const std::size_t first = (s * o.batch) % (order.size() - o.batch + 1);
    last_loss = tr.step(zx, zy, std::span<const std::size_t>(order).subspan(first, o.batch), plan, 1e-3);
  }
  be.ctx().synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
         static_cast<double>(o.steps);
}

int run(const options& o) {
  using B = fusemix::cuda::backend<float>;
  B be;
  std::size_t free0 = 0, total = 0;
  FUSEMIX_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
  const fusemix::io::mapped_latents fx(split(o.x)), fy(split(o.y));
  double load_s = 0, ms = 0, loss = 0;
  std::uint64_t resident_bytes = 0;
  if (o.mode == "resident") {
    const auto t0 = std::chrono::steady_clock::now();
    const fusemix::cuda::resident_latents<> rx(be.shared_context(), fx), ry(be.shared_context(), fy);
    load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    resident_bytes = rx.bytes() + ry.bytes();
    ms = time_steps(o, rx, ry, be, loss);
  } else if (o.mode == "stream") {
    ms = time_steps(o, fx, fy, be, loss);
  } else {
    std::fprintf(stderr, "bench_data_gpu: --mode is resident or stream, not %s\n", o.mode.c_str());
    return 2;
  }
  std::size_t free1 = 0;
  FUSEMIX_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
  cudaDeviceProp prop{};
  FUSEMIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const double samples = static_cast<double>(o.batch) * 1000.0 / ms;
  if (o.json)
    std::printf(
        "{\"impl\": \"fusemix\", \"bench\": \"data\", \"device_name\": \"%s\", \"mode\": \"%s\", \"rows\": %zu, "
        "\"dim_x\": %zu, \"dim_y\": %zu, \"dtype\": \"%s\", \"depth\": %zu, \"batch\": %zu, \"mix\": \"%s\", "
        "\"micro_batch\": %zu, \"steps\": %zu, \"ms_per_step\": %.3f, \"samples_per_s\": %.1f, \"resident_gb\": %.3f, "
        "\"load_s\": %.2f, \"device_mib_after\": %.0f, \"host_rss_anon_mib\": %.0f, \"last_loss\": %.6f}\n",
        prop.name, o.mode.c_str(), fx.rows(), fx.cols(), fy.cols(), std::string(fx.dtype()).c_str(), o.depth, o.batch,
        o.mix.c_str(), o.micro_batch, o.steps, ms, samples, static_cast<double>(resident_bytes) / 1e9, load_s,
        static_cast<double>(free0 - free1) / (1024.0 * 1024.0), status_mib("RssAnon:"), loss);
  else
    std::printf("%s: %.2f ms/step (%.0f samples/s), batch %zu, micro-batch %zu; resident %.2f GB loaded in %.1f s\n",
                o.mode.c_str(), ms, samples, o.batch, o.micro_batch, static_cast<double>(resident_bytes) / 1e9, load_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  fusemix_bench::arguments args("bench_data_gpu", argc, argv);
  for (std::string a = args.next(); !a.empty(); a = args.next()) {
    if (a == "--x") o.x = args.value();
    else if (a == "--y") o.y = args.value();
    else if (a == "--mode") o.mode = args.value();
    else if (a == "--mix") o.mix = args.value();
    else if (a == "--depth") o.depth = args.size();
    else if (a == "--batch") o.batch = args.size();
    else if (a == "--shared-dim") o.shared = args.size();
    else if (a == "--micro-batch") o.micro_batch = args.size();
    else if (a == "--steps") o.steps = args.size();
    else if (a == "--warmup") o.warmup = args.size();
    else if (a == "--json") o.json = true;
    else args.unknown();
  }
  if (o.x.empty() || o.y.empty()) {
    std::fprintf(stderr, "bench_data_gpu: --x and --y are required\n");
    return 2;
  }
  if (o.steps == 0) o.steps = 1;
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data_gpu: %s\n", e.what());
    return 1;
  }
}
