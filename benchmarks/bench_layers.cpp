// SPDX-License-Identifier: Apache-2.0
// Google Benchmark micro-benchmarks of one adapter's forward and backward pass, and of the
// fused elementwise primitive. Run: build/benchmarks/bench_layers
#include <benchmark/benchmark.h>

#include <fusemix/fusemix.hpp>

namespace {

using matrix = fusemix::io::matrix<float>;

void adapter_forward_backward(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const auto batch = static_cast<Eigen::Index>(state.range(1));
  fusemix::fusion_adapter<> a({.in_dim = d, .out_dim = 512, .depth = 2}, {.dropout = 0.6, .seed = 1});
  a.set_training(true);
  const matrix x = matrix::Random(batch, static_cast<Eigen::Index>(d));
  const matrix dy = matrix::Random(batch, 512);
  for (auto _ : state) {
    benchmark::DoNotOptimize(a.forward(x).data());
    benchmark::DoNotOptimize(a.backward(dy).data());
  }
  // Per Linear m×n on b rows: 2bmn forward, 4bmn backward.
  const double linear = 2.0 * static_cast<double>(4 * d * d) + static_cast<double>(512 * d);
  state.counters["GFLOP/s"] = benchmark::Counter(6.0 * static_cast<double>(batch) * linear * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(adapter_forward_backward)->Args({384, 256})->Args({1024, 256})->Unit(benchmark::kMillisecond);

void bias_gelu_dropout(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  fusemix::cpu::backend<float> be;
  matrix a = matrix::Random(n, 4096), h(n, 4096);
  const Eigen::VectorXf b = Eigen::VectorXf::Zero(4096);
  fusemix::dropout_key key{1, 0, 0.6};
  for (auto _ : state) {
    be.bias_gelu_dropout_forward(a, b, key, h);
    benchmark::DoNotOptimize(h.data());
    ++key.draw;
  }
  state.SetItemsProcessed(state.iterations() * n * 4096);
}
BENCHMARK(bias_gelu_dropout)->Arg(256)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
