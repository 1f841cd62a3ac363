// SPDX-License-Identifier: Apache-2.0
// Google Benchmark micro-benchmarks of the CPU hot path: one adapter's forward and backward, and
// each fused elementwise pass next to its unfused peer (separate passes, scalar erf/exp, one
// Philox call per four elements), so a run shows what the fusion buys on this machine.
// Run: build/benchmarks/bench_layers [--benchmark_filter=gelu]
#include <cmath>

#include <benchmark/benchmark.h>

#include <fusemix/fusemix.hpp>

namespace {

using matrix = fusemix::matrix<float>;
using backend = fusemix::cpu::backend<float>;
constexpr Eigen::Index width = 4096;  // a 1024-wide block's hidden layer

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

// --- the dropout mask alone (Philox and the keep test: what backward draws again) -------------

void dropout_mask(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  backend be;
  const matrix ones = matrix::Ones(n, width);
  matrix y(n, width);
  fusemix::dropout_key key{1, 0, 0.6};
  for (auto _ : state) {
    be.dropout_forward(ones, key, y);
    benchmark::DoNotOptimize(y.data());
    ++key.draw;
  }
  state.SetItemsProcessed(state.iterations() * n * width);
}
BENCHMARK(dropout_mask)->Arg(2048)->Unit(benchmark::kMillisecond);

// --- bias + GELU + dropout, forward ----------------------------------------------------------

void bias_gelu_dropout_fused(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  backend be;
  matrix a = matrix::Random(n, width), h(n, width);
  const Eigen::VectorXf b = Eigen::VectorXf::Zero(width);
  fusemix::dropout_key key{1, 0, 0.6};
  for (auto _ : state) {
    be.bias_gelu_dropout_forward(a, b, key, h);
    benchmark::DoNotOptimize(h.data());
    ++key.draw;
  }
  state.SetItemsProcessed(state.iterations() * n * width);
}
BENCHMARK(bias_gelu_dropout_fused)->Arg(256)->Unit(benchmark::kMillisecond);

// The peer: three passes, scalar erf, the mask one element at a time.
void bias_gelu_dropout_unfused(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  matrix a = matrix::Random(n, width), g(n, width), h(n, width);
  const Eigen::VectorXf b = Eigen::VectorXf::Zero(width);
  std::uint64_t draw = 0;
  for (auto _ : state) {
    a.rowwise() += b.transpose();
    g = a.unaryExpr([](float v) { return fusemix::detail::gelu(v); });
    for (Eigen::Index i = 0; i < h.size(); ++i)
      h.data()[i] = fusemix::detail::dropout_keep(1, draw, static_cast<std::uint64_t>(i), 0.6) ? g.data()[i] * 2.5f : 0.0f;
    benchmark::DoNotOptimize(h.data());
    ++draw;
  }
  state.SetItemsProcessed(state.iterations() * n * width);
}
BENCHMARK(bias_gelu_dropout_unfused)->Arg(256)->Unit(benchmark::kMillisecond);

// --- GELU + dropout, backward ----------------------------------------------------------------

void gelu_dropout_backward_fused(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  backend be;
  const matrix a = matrix::Random(n, width);
  matrix dh = matrix::Random(n, width), da(n, width);
  fusemix::dropout_key key{1, 0, 0.6};
  for (auto _ : state) {
    be.gelu_dropout_backward(dh, a, key, da);
    benchmark::DoNotOptimize(da.data());
    ++key.draw;
  }
  state.SetItemsProcessed(state.iterations() * n * width);
}
BENCHMARK(gelu_dropout_backward_fused)->Arg(256)->Unit(benchmark::kMillisecond);

void gelu_dropout_backward_unfused(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  const matrix a = matrix::Random(n, width);
  matrix dh = matrix::Random(n, width), dm(n, width), da(n, width);
  std::uint64_t draw = 0;
  for (auto _ : state) {
    for (Eigen::Index i = 0; i < dh.size(); ++i)
      dm.data()[i] = fusemix::detail::dropout_keep(1, draw, static_cast<std::uint64_t>(i), 0.6) ? dh.data()[i] * 2.5f : 0.0f;
    da = dm.binaryExpr(a, [](float g, float v) { return g * fusemix::detail::gelu_grad(v); });
    benchmark::DoNotOptimize(da.data());
    ++draw;
  }
  state.SetItemsProcessed(state.iterations() * n * width);
}
BENCHMARK(gelu_dropout_backward_unfused)->Arg(256)->Unit(benchmark::kMillisecond);

// --- LayerNorm ---------------------------------------------------------------------------------

void layer_norm_forward_backward(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0)), d = static_cast<Eigen::Index>(state.range(1));
  backend be;
  const matrix x = matrix::Random(n, d), dy = matrix::Random(n, d);
  matrix y(n, d), dx(n, d);
  const Eigen::VectorXf gamma = Eigen::VectorXf::Ones(d), beta = Eigen::VectorXf::Zero(d);
  Eigen::VectorXf dgamma(d), dbeta(d);
  backend::vector_type mean, rstd;
  for (auto _ : state) {
    be.layer_norm_forward(x, gamma, beta, 1e-5f, y, mean, rstd);
    be.layer_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta);
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetItemsProcessed(state.iterations() * n * d);
}
BENCHMARK(layer_norm_forward_backward)->Args({2048, 1024})->Unit(benchmark::kMillisecond);

// --- the contrastive softmax ---------------------------------------------------------------------

void symmetric_cross_entropy(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  backend be;
  const matrix logits = matrix::Random(n, n) * 10.0f;
  matrix g(n, n);
  Eigen::VectorXf row_lse(n), diag(n), col_max(n), col_sum(n), col_lse(n);
  for (auto _ : state) {
    be.softmax_statistics(logits, 0, row_lse, diag, col_max, col_sum);
    benchmark::DoNotOptimize(be.symmetric_cross_entropy_loss(row_lse, diag, col_max, col_sum, col_lse));
    be.symmetric_cross_entropy_gradient(logits, 0, row_lse, col_lse, g);
  }
  state.SetItemsProcessed(state.iterations() * n * n);
}
BENCHMARK(symmetric_cross_entropy)->Arg(2048)->Unit(benchmark::kMillisecond);

// The peer: the scalar two-direction log-sum-exp (one std::exp per element and direction).
void symmetric_cross_entropy_scalar(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  const matrix logits = matrix::Random(n, n) * 10.0f;
  matrix g(n, n);
  Eigen::VectorXf rmax(n), cmax(n), rsum(n), csum(n);
  for (auto _ : state) {
    rmax = logits.rowwise().maxCoeff();
    cmax = logits.colwise().maxCoeff().transpose();
    rsum.setZero(), csum.setZero();
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < n; ++j) {
        rsum[i] += std::exp(logits(i, j) - rmax[i]);
        csum[j] += std::exp(logits(i, j) - cmax[j]);
      }
    for (Eigen::Index i = 0; i < n; ++i) rsum[i] = rmax[i] + std::log(rsum[i]), csum[i] = cmax[i] + std::log(csum[i]);
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < n; ++j)
        g(i, j) = std::exp(logits(i, j) - rsum[i]) + std::exp(logits(i, j) - csum[j]) - (i == j ? 2.0f : 0.0f);
    benchmark::DoNotOptimize(g.data());
  }
  state.SetItemsProcessed(state.iterations() * n * n);
}
BENCHMARK(symmetric_cross_entropy_scalar)->Arg(2048)->Unit(benchmark::kMillisecond);

// --- AdamW over all parameters ---------------------------------------------------------------

void adamw_step(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<float> p(n, 0.5f), g(n, 0.01f);
  fusemix::cpu::adamw<float> opt({.weight_decay = 0.1});  // what the CPU backend's make_optimizer gives
  opt.add(p.data(), g.data(), n, true);
  for (auto _ : state) {
    opt.step(1e-3);
    benchmark::DoNotOptimize(p.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(n) * 7 * 4);  // read p g m v, write p m v
}
BENCHMARK(adamw_step)->Arg(1 << 24)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
