// SPDX-License-Identifier: Apache-2.0
// The CUDA backend against the CPU backend, primitive by primitive and through whole training
// steps, on either system. One source, two builds: tests/cuda/test_backend_host.cpp runs it on
// `cuda::host_system` with the C++ compiler (CI runs every functor on the host, GEMMs on Eigen)
// and tests/cuda/test_backend.cu on `cuda::device_system` with nvcc (a GPU: cuBLAS, Thrust
// kernels, the row kernels).
//
// Every check draws fresh random inputs, poisons the outputs with NaN first (an element the
// backend forgot to write fails), and compares by ‖got − want‖ / ‖want‖ in double.
// Bounds: 1e-5 for float (2e-5 where a long softmax sum or 20 Adam steps are involved), 1e-12 for
// double; TF32 GEMMs 5e-3 and bf16 GEMMs 2e-2 (operands rounded to 10 and 7 mantissa bits over
// k-long sums), stated per check below.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/fusemix.hpp>

namespace fusemix::test {

struct check_counter {
  int failures = 0;
  int checks = 0;
  void expect(bool ok, const char* what, const char* file, int line) {
    ++checks;
    if (!ok) {
      ++failures;
      std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
    }
  }
};

#define FUSEMIX_CHECK(c, cond) (c).expect(static_cast<bool>(cond), #cond, __FILE__, __LINE__)

// ‖got − want‖ / ‖want‖ (∞ when got has a NaN, or lengths differ).
template <class T>
double relative_error(std::span<const T> got, std::span<const T> want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(static_cast<double>(got[i]))) return std::numeric_limits<double>::infinity();
    const double d = static_cast<double>(got[i]) - static_cast<double>(want[i]);
    num += d * d;
    den += static_cast<double>(want[i]) * static_cast<double>(want[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

template <class T, class S>
struct backend_checks {
  static constexpr bool on_device = std::is_same_v<S, cuda::device_system>;
  using cpu_b = cpu::backend<T>;
  using dev_b = cuda::backend<T, S>;
  using host_matrix = typename cpu_b::matrix_type;
  using dev_matrix = typename dev_b::matrix_type;

  check_counter& c;
  dev_b dev;
  cpu_b cpu;
  std::size_t scale;  // 1 on the host system, larger on a GPU
  std::uint64_t seed;
  double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

  host_matrix random(std::size_t r, std::size_t cols, double sd = 1.0) {
    philox_engine rng(seed++, 77);
    host_matrix m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(cols));
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(sd * sample_normal(rng));
    return m;
  }
  dev_matrix poisoned(std::size_t r, std::size_t cols) {
    std::vector<T> nan(r * cols, std::numeric_limits<T>::quiet_NaN());
    dev_matrix m(r, cols);
    dev.upload(nan, m.data());
    return m;
  }
  std::vector<T> host_of(const dev_matrix& m) { return dev.download(m); }
  template <class M>
  std::span<const T> span_of(const M& m) {
    return {m.data(), static_cast<std::size_t>(m.rows() * m.cols())};
  }
  void close(const std::vector<T>& got, const host_matrix& want, double bound, const char* what, int line) {
    const double e = relative_error<T>(got, span_of(want));
    if (!(e <= bound)) std::fprintf(stderr, "  %s: relative error %.3g > %.3g\n", what, e, bound);
    c.expect(e <= bound, what, __FILE__, line);
  }
  void close(const std::vector<T>& got, const std::vector<T>& want, double bound, const char* what, int line) {
    const double e = relative_error<T>(got, want);
    if (!(e <= bound)) std::fprintf(stderr, "  %s: relative error %.3g > %.3g\n", what, e, bound);
    c.expect(e <= bound, what, __FILE__, line);
  }
  void close_scalar(double got, double want, double bound, const char* what, int line) {
    const double e = std::fabs(got - want) / std::max(std::fabs(want), 1e-30);
    if (!(e <= bound)) std::fprintf(stderr, "  %s: %.9g vs %.9g (relative %.3g > %.3g)\n", what, got, want, e, bound);
    c.expect(e <= bound, what, __FILE__, line);
  }

  void gemm() {
    const std::size_t m = 37 * scale, n = 29 * scale, k = 53 * scale;
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (const T beta : {T(0), T(0.5)}) {
          const host_matrix a = ta ? random(k, m) : random(m, k), b = tb ? random(n, k) : random(k, n);
          host_matrix want = random(m, n);
          dev_matrix da = dev.upload(a), db = dev.upload(b), dc = beta == T(0) ? poisoned(m, n) : dev.upload(want);
          cpu.gemm(T(0.75), a, ta != 0, b, tb != 0, beta, want);
          dev.gemm(T(0.75), da, ta != 0, db, tb != 0, beta, dc);
          close(host_of(dc), want, tol, "gemm (fp32)", __LINE__);
          if constexpr (on_device && std::is_same_v<T, float>) {
            // Tensor-core modes: operands rounded, float accumulation.
            for (const auto& [p, bound] : {std::pair{cuda::gemm_precision::tf32, 5e-3}, std::pair{cuda::gemm_precision::bf16, 2e-2}}) {
              host_matrix want_p = random(m, n);
              dev_matrix dq = beta == T(0) ? poisoned(m, n) : dev.upload(want_p);
              cpu.gemm(T(0.75), a, ta != 0, b, tb != 0, beta, want_p);
              dev.ctx().set_precision(p);
              dev.gemm(T(0.75), da, ta != 0, db, tb != 0, beta, dq);
              dev.ctx().set_precision(cuda::gemm_precision::fp32);
              close(host_of(dq), want_p, bound, p == cuda::gemm_precision::tf32 ? "gemm (tf32)" : "gemm (bf16)", __LINE__);
            }
          }
        }
  }

  void rows() {
    const std::size_t b = 19 * scale, d = 13 * scale + 3;  // odd widths: no multiple-of-4 fast path
    const host_matrix z = random(3 * b, d);
    std::vector<std::size_t> ia(b), ib(b);
    philox_engine rng(seed++);
    for (std::size_t i = 0; i < b; ++i) ia[i] = rng.below(3 * b), ib[i] = rng.below(3 * b);
    const dev_matrix dz = dev.upload(z);
    for (const T lambda : {T(1), T(0.3)}) {
      host_matrix want(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(d));
      dev_matrix got = poisoned(b, d);
      cpu.gather_mix(z, std::span<const std::size_t>(ia), std::span<const std::size_t>(ib), lambda, want);
      dev.gather_mix(dz, std::span<const std::size_t>(ia), std::span<const std::size_t>(ib), lambda, got);
      // (λ·a + (1 − λ)·b may be one FMA on a GPU: the same to rounding, not to the bit)
      close(host_of(got), want, tol, "gather_mix", __LINE__);
    }
    // Row normalisation, forward and backward; one row all zeros (the eps branch).
    host_matrix p = random(b, d), dn = random(b, d);
    p.row(1).setZero();
    host_matrix n_want(p.rows(), p.cols()), dp_want(p.rows(), p.cols());
    typename cpu_b::vector_type norms_want;
    cpu.normalize_rows_forward(p, T(1e-12), n_want, norms_want);
    cpu.normalize_rows_backward(dn, n_want, norms_want, T(1e-12), dp_want);
    dev_matrix dpm = dev.upload(p), ddn = dev.upload(dn), n_got = poisoned(b, d), dp_got = poisoned(b, d);
    typename dev_b::vector_type norms_got;
    dev.normalize_rows_forward(dpm, T(1e-12), n_got, norms_got);
    dev.normalize_rows_backward(ddn, n_got, norms_got, T(1e-12), dp_got);
    close(host_of(n_got), n_want, tol, "normalize_rows_forward", __LINE__);
    close(host_of(dp_got), dp_want, tol, "normalize_rows_backward", __LINE__);
  }

  void softmax() {
    const std::size_t n = 67 * scale;
    const host_matrix logits = random(n, n, 4.0);
    host_matrix g_want(logits.rows(), logits.cols());
    const T loss_want = cpu.symmetric_cross_entropy(logits, g_want);
    dev_matrix dl = dev.upload(logits), g_got = poisoned(n, n);
    const T loss_got = dev.symmetric_cross_entropy(dl, g_got);
    close_scalar(loss_got, loss_want, tol, "symmetric_cross_entropy loss", __LINE__);
    close(host_of(g_got), g_want, 2 * tol, "symmetric_cross_entropy gradient", __LINE__);
    // dot on the same inputs against a double sum (Σ g·l cancels: compare like with like).
    double want_dot = 0;
    for (Eigen::Index i = 0; i < logits.size(); ++i)
      want_dot += static_cast<double>(g_want.data()[i]) * static_cast<double>(logits.data()[i]);
    close_scalar(dev.dot(dl, dev.upload(g_want)), want_dot, tol, "dot", __LINE__);
  }

  // The pairwise sigmoid loss: loss and gradient, with logits far out on both sides (where a
  // naive log(1 + e^x) overflows) on and off the diagonal.
  void sigmoid() {
    const std::size_t n = 53 * scale;
    host_matrix logits = random(n, n, 4.0);
    logits(0, 0) = T(90), logits(1, 1) = T(-90), logits(0, 1) = T(90), logits(1, 0) = T(-90);
    host_matrix g_want(logits.rows(), logits.cols());
    const T loss_want = cpu.sigmoid_cross_entropy(logits, g_want);
    dev_matrix dl = dev.upload(logits), g_got = poisoned(n, n);
    const T loss_got = dev.sigmoid_cross_entropy(dl, g_got);
    close_scalar(loss_got, loss_want, tol, "sigmoid_cross_entropy loss", __LINE__);
    close(host_of(g_got), g_want, tol, "sigmoid_cross_entropy gradient", __LINE__);
  }

  // The whole-matrix sum (positive values: no cancellation) and fill. The backend sums in double:
  // against a double sum it is exact to the final rounding; the CPU's float sum of up to 7·10⁴
  // values may be 1e-5 off (bound 1e-4 for float).
  void sum_and_fill() {
    const std::size_t r = 29 * scale, w = 17 * scale + 3;
    const host_matrix a = random(r, w).cwiseAbs();
    const dev_matrix da = dev.upload(a);
    double exact = 0;
    for (Eigen::Index i = 0; i < a.size(); ++i) exact += static_cast<double>(a.data()[i]);
    close_scalar(dev.sum(da), exact, std::is_same_v<T, float> ? 1e-7 : 1e-15, "sum (double accumulation)", __LINE__);
    close_scalar(dev.sum(da), cpu.sum(a), std::is_same_v<T, float> ? 1e-4 : tol, "sum against the CPU", __LINE__);
    host_matrix want(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(w));
    dev_matrix got = poisoned(r, w);
    cpu.fill(want, T(-2.5));
    dev.fill(got, T(-2.5));
    close(host_of(got), want, 0.0, "fill (exact)", __LINE__);
    dev_matrix empty(0, 0);
    close_scalar(dev.sum(empty), 0.0, 0.0, "sum of nothing", __LINE__);
  }

  void elementwise() {
    const std::size_t r = 23 * scale, w = 16 * scale;  // a multiple of 4: the Philox-block path
    for (const std::size_t width : {w, w + 3}) {
      host_matrix a = random(r, width), dh = random(r, width);
      const typename cpu_b::vector_type bias = random(width, 1).col(0);
      for (const double p : {0.0, 0.6}) {
        const dropout_key key{seed++, 5, p};
        host_matrix a_want = a, h_want(a.rows(), a.cols()), da_want(a.rows(), a.cols());
        cpu.bias_gelu_dropout_forward(a_want, bias, key, h_want);
        cpu.gelu_dropout_backward(dh, a_want, key, da_want);
        dev_matrix da = dev.upload(a), dbias = dev.upload(bias), h_got = poisoned(r, width);
        dev.bias_gelu_dropout_forward(da, dbias, key, h_got);
        close(host_of(da), a_want, tol, "bias_gelu_dropout_forward: pre-activation", __LINE__);
        const auto h = host_of(h_got);
        close(h, h_want, tol, "bias_gelu_dropout_forward", __LINE__);
        // The same mask, element for element. (GELU itself rounds to 0 below x ≈ −5.3 in one erf
        // and not in another, so a zero facing a value under 1e-6 is not a mask difference.)
        std::size_t zeros_want = 0, mismatched = 0;
        for (std::size_t i = 0; i < h.size(); ++i) {
          const T w = h_want.data()[i];
          zeros_want += w == T(0);
          mismatched += (h[i] == T(0)) != (w == T(0)) && std::max(std::fabs(h[i]), std::fabs(w)) > T(1e-6);
        }
        FUSEMIX_CHECK(c, mismatched == 0);
        if (p > 0) FUSEMIX_CHECK(c, zeros_want > h.size() / 2);
        dev_matrix ddh = dev.upload(dh);
        dev.gelu_dropout_backward(ddh, da, key, ddh);  // in place, as block::backward calls it
        close(host_of(ddh), da_want, tol, "gelu_dropout_backward (in place)", __LINE__);
        // The unfused layers.
        host_matrix y_want(a.rows(), a.cols()), dx_want(a.rows(), a.cols());
        cpu.dropout_forward(a, key, y_want);
        dev_matrix dx_in = dev.upload(a), y_got = poisoned(r, width);
        dev.dropout_forward(dx_in, key, y_got);
        close(host_of(y_got), y_want, 0.0, "dropout_forward (exact)", __LINE__);
        cpu.gelu_forward(a, y_want);
        cpu.gelu_backward(dh, a, dx_want);
        dev_matrix g_got = poisoned(r, width), gb_got = poisoned(r, width);
        dev.gelu_forward(dx_in, g_got);
        dev.gelu_backward(ddh = dev.upload(dh), dx_in, gb_got);
        close(host_of(g_got), y_want, tol, "gelu_forward", __LINE__);
        close(host_of(gb_got), dx_want, tol, "gelu_backward", __LINE__);
      }
      // Bias, column sums, axpy, scale.
      host_matrix y = random(r, width), x = random(r, width);
      dev_matrix dy = dev.upload(y), dx = dev.upload(x), dbias = dev.upload(bias);
      cpu.add_row_vector(y, bias);
      dev.add_row_vector(dy, dbias);
      close(host_of(dy), y, tol, "add_row_vector", __LINE__);
      host_matrix sums_want(static_cast<Eigen::Index>(width), 1);
      cuda::matrix<T, S> sums_got = poisoned(width, 1);
      cpu.column_sums(y, sums_want);
      dev.column_sums(dy, sums_got);
      close(host_of(sums_got), sums_want, tol, "column_sums", __LINE__);
      cpu.axpy(T(-0.25), x, y);
      dev.axpy(T(-0.25), dx, dy);
      cpu.scale(T(3), y);
      dev.scale(T(3), dy);
      close(host_of(dy), y, tol, "axpy, scale", __LINE__);
    }
  }

  void layer_norm() {
    const std::size_t n = 31 * scale, d = 24 * scale + 5;
    const host_matrix x = random(n, d, 3.0), dy = random(n, d), gamma = random(d, 1), beta = random(d, 1);
    host_matrix y_want(x.rows(), x.cols()), dx_want(x.rows(), x.cols()), dg_want(gamma.rows(), 1), db_want(gamma.rows(), 1);
    typename cpu_b::vector_type mean_want, rstd_want;
    cpu.layer_norm_forward(x, gamma, beta, T(1e-5), y_want, mean_want, rstd_want);
    cpu.layer_norm_backward(dy, x, gamma, mean_want, rstd_want, dx_want, dg_want, db_want);
    dev_matrix dxm = dev.upload(x), ddy = dev.upload(dy), dgam = dev.upload(gamma), dbet = dev.upload(beta);
    dev_matrix y_got = poisoned(n, d), dx_got = poisoned(n, d), dg_got = poisoned(d, 1), db_got = poisoned(d, 1);
    typename dev_b::vector_type mean, rstd;
    dev.layer_norm_forward(dxm, dgam, dbet, T(1e-5), y_got, mean, rstd);
    dev.layer_norm_backward(ddy, dxm, dgam, mean, rstd, dx_got, dg_got, db_got);
    close(host_of(y_got), y_want, tol, "layer_norm_forward", __LINE__);
    close(host_of(dx_got), dx_want, tol, "layer_norm_backward dx", __LINE__);
    close(host_of(dg_got), dg_want, tol, "layer_norm_backward dgamma", __LINE__);
    close(host_of(db_got), db_want, tol, "layer_norm_backward dbeta", __LINE__);
  }

  void non_finite() {
    host_matrix a = random(7 * scale, 5);
    dev_matrix da = dev.upload(a);
    std::size_t r = 99, col = 99;
    FUSEMIX_CHECK(c, !dev.find_non_finite(da, r, col));
    a(3, 2) = std::numeric_limits<T>::infinity();
    a(5, 1) = std::numeric_limits<T>::quiet_NaN();
    da = dev.upload(a);
    FUSEMIX_CHECK(c, dev.find_non_finite(da, r, col) && r == 3 && col == 2);
  }

  // Two adapters and a trainer on each backend, from the same seeds: one step, then 20.
  void training() {
    using dev_adapter = fusion_adapter<dynamic_shape, dev_b>;
    using cpu_adapter = fusion_adapter<dynamic_shape, cpu_b>;
    const std::size_t dx = 12 * scale + 4, dy = 8 * scale, shared = 8 * scale, batch = 24 * scale, n = 3 * batch;
    const host_matrix zx = random(n, dx), zy = random(n, dy);
    const adapter_shape sx{.in_dim = dx, .out_dim = shared, .depth = 2, .expansion = 4};
    const adapter_shape sy{.in_dim = dy, .out_dim = shared, .depth = 1, .expansion = 4};
    cpu_adapter hx_cpu(sx, {.dropout = 0.5, .seed = 3}), hy_cpu(sy, {.dropout = 0.5, .seed = 4});
    dev_adapter hx_dev(sx, {.dropout = 0.5, .seed = 3}, dev), hy_dev(sy, {.dropout = 0.5, .seed = 4}, dev);
    auto params = [](const auto& h) {
      std::vector<T> v(h.parameters().size());
      h.copy_parameters_to(std::span<T>(v));
      return v;
    };
    close(params(hx_dev), params(hx_cpu), 0.0, "initial weights (exact)", __LINE__);
    const train_options o{.epochs = 2, .batch = batch, .lr = 1e-3, .weight_decay = 0.1, .seed = 9};
    trainer t_cpu(hx_cpu, hy_cpu, o);
    trainer t_dev(hx_dev, hy_dev, o, dev);
    const dev_matrix dzx = dev.upload(zx), dzy = dev.upload(zy);
    std::vector<std::size_t> rows(batch);
    for (std::size_t i = 0; i < batch; ++i) rows[i] = (7 * i + 3) % n;
    philox_engine rng(seed++);
    const mix_plan plan = draw_mix(rng, batch, {});
    const double l_cpu = t_cpu.step(zx, zy, rows, plan, 1e-3), l_dev = t_dev.step(dzx, dzy, rows, plan, 1e-3);
    close_scalar(l_dev, l_cpu, tol, "one step: loss", __LINE__);
    close(params(hx_dev), params(hx_cpu), tol, "one step: X adapter weights", __LINE__);
    close(params(hy_dev), params(hy_cpu), tol, "one step: Y adapter weights", __LINE__);
    close_scalar(t_dev.temperature(), t_cpu.temperature(), tol, "one step: temperature", __LINE__);
    // 20 more steps through train_epoch (shuffle, schedule, mixing): the runs stay together.
    // The second epoch is warm: it allocates no backend memory (scratch, Thrust temporaries).
    double worst = 0;
    std::uint64_t warm_allocations = 0;
    for (int e = 0; e < 2; ++e) {
      const auto r_cpu = t_cpu.train_epoch(zx, zy);
      const std::uint64_t before = cuda::allocations();
      const auto r_dev = t_dev.train_epoch(dzx, dzy);
      if (e == 1) warm_allocations = cuda::allocations() - before;
      worst = std::max(worst, std::fabs(r_dev.loss - r_cpu.loss) / std::fabs(r_cpu.loss));
      FUSEMIX_CHECK(c, r_dev.steps == r_cpu.steps);
    }
    FUSEMIX_CHECK(c, warm_allocations == 0);
    FUSEMIX_CHECK(c, t_dev.global_step() == 7);
    if (!(worst <= 2 * tol)) std::fprintf(stderr, "  training: epoch loss relative difference %.3g\n", worst);
    FUSEMIX_CHECK(c, worst <= 2 * tol);
    close(params(hx_dev), params(hx_cpu), 5 * tol, "7 steps: X adapter weights", __LINE__);
    // A checkpoint of the device run, read by a CPU trainer: the same weights and moments.
    const auto file = std::filesystem::temp_directory_path() / ("fusemix_cuda_checks_" + std::to_string(seed) + ".safetensors");
    t_dev.save_checkpoint(file);
    cpu_adapter hx2(sx, {.dropout = 0.5, .seed = 1}), hy2(sy, {.dropout = 0.5, .seed = 2});
    trainer t2(hx2, hy2, o);
    t2.load_checkpoint(file);
    close(params(hx2), params(hx_dev), 0.0, "checkpoint: weights (exact)", __LINE__);
    std::vector<T> m_dev(t_dev.optimizer().moment_count()), v_dev(m_dev.size()), m2(m_dev.size()), v2(m_dev.size());
    t_dev.optimizer().get_moments(std::span<T>(m_dev), std::span<T>(v_dev));
    t2.optimizer().get_moments(std::span<T>(m2), std::span<T>(v2));
    close(m2, m_dev, 0.0, "checkpoint: first moments (exact)", __LINE__);
    close(v2, v_dev, 0.0, "checkpoint: second moments (exact)", __LINE__);
    // ... and back into a device trainer, which then steps like the CPU one.
    dev_adapter hx3(sx, {.dropout = 0.5, .seed = 1}, dev), hy3(sy, {.dropout = 0.5, .seed = 2}, dev);
    trainer t3(hx3, hy3, o, dev);
    t3.load_checkpoint(file);
    std::filesystem::remove(file);
    close(params(hx3), params(hx_dev), 0.0, "checkpoint into a device trainer (exact)", __LINE__);
    const double l3 = t3.step(dzx, dzy, rows, plan, 1e-4), l2 = t2.step(zx, zy, rows, plan, 1e-4);
    close_scalar(l3, l2, 2 * tol, "step after resume: loss", __LINE__);
    // The tensor-core modes train the same function: a step from the same state in TF32 and bf16
    // against the fp32 step (bounds: the GEMM bounds above, the loss a little tighter).
    if constexpr (on_device && std::is_same_v<T, float>) {
      for (const auto& [p, bound] : {std::pair{cuda::gemm_precision::tf32, 5e-3}, std::pair{cuda::gemm_precision::bf16, 2e-2}}) {
        dev_adapter ha(sx, {.dropout = 0.5, .seed = 3}, dev), hb(sy, {.dropout = 0.5, .seed = 4}, dev);
        dev_adapter hc(sx, {.dropout = 0.5, .seed = 3}, dev), hd(sy, {.dropout = 0.5, .seed = 4}, dev);
        trainer ta(ha, hb, o, dev), tc(hc, hd, o, dev);
        // (A small rate: AdamW's first step moves every weight by ±lr, so the weights differ only
        // where a gradient's sign flips, by 2·lr.)
        const double l32 = ta.step(dzx, dzy, rows, plan, 1e-4);
        dev.ctx().set_precision(p);
        const double lp = tc.step(dzx, dzy, rows, plan, 1e-4);
        dev.ctx().set_precision(cuda::gemm_precision::fp32);
        close_scalar(lp, l32, bound / 4, p == cuda::gemm_precision::tf32 ? "tf32 step: loss" : "bf16 step: loss", __LINE__);
        close(params(hc), params(ha), bound, p == cuda::gemm_precision::tf32 ? "tf32 step: weights" : "bf16 step: weights",
              __LINE__);
      }
    }
    // The sigmoid loss as the trainer's policy: one step from the same state on each backend.
    {
      cpu_adapter hx_c(sx, {.dropout = 0.5, .seed = 3}), hy_c(sy, {.dropout = 0.5, .seed = 4});
      dev_adapter hx_d(sx, {.dropout = 0.5, .seed = 3}, dev), hy_d(sy, {.dropout = 0.5, .seed = 4}, dev);
      trainer s_cpu(hx_c, hy_c, sigmoid_loss<cpu_b>(cpu), o);
      trainer s_dev(hx_d, hy_d, sigmoid_loss<dev_b>(dev), o, dev);
      const double ls_cpu = s_cpu.step(zx, zy, rows, plan, 1e-3), ls_dev = s_dev.step(dzx, dzy, rows, plan, 1e-3);
      close_scalar(ls_dev, ls_cpu, tol, "sigmoid loss step: loss", __LINE__);
      close(params(hx_d), params(hx_c), tol, "sigmoid loss step: X adapter weights", __LINE__);
      close(params(hy_d), params(hy_c), tol, "sigmoid loss step: Y adapter weights", __LINE__);
    }
    // Bad input is refused on the device as on the CPU.
    host_matrix bad = zx;
    bad(5, 2) = std::numeric_limits<T>::quiet_NaN();
    bool threw = false;
    try {
      t_dev.validate(dev.upload(bad), dzy);
    } catch (const numeric_error& e) {
      threw = std::string(e.what()).find("row 5, column 2") != std::string::npos;
    }
    FUSEMIX_CHECK(c, threw);
  }

  void run() {
    gemm();
    rows();
    softmax();
    sigmoid();
    sum_and_fill();
    elementwise();
    layer_norm();
    non_finite();
    training();
  }
};

// Every check for float (and, on the host system, double) on system `S`; returns the number of
// failures.
template <class S>
int run_backend_checks(std::size_t scale) {
  check_counter c;
  {
    backend_checks<float, S> f{c, cuda::backend<float, S>(), cpu::backend<float>(), scale, 1};
    f.run();
  }
  if constexpr (std::is_same_v<S, cuda::host_system>) {
    backend_checks<double, S> d{c, cuda::backend<double, S>(), cpu::backend<double>(), scale, 101};
    d.run();
  }
  std::printf("%d of %d backend checks passed\n", c.checks - c.failures, c.checks);
  return c.failures;
}

}  // namespace fusemix::test
