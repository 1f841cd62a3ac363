// SPDX-License-Identifier: Apache-2.0
// The backend parity harness: every primitive of `fusemix::Backend`, the optimiser, the k-DPP
// engine and selector, and whole training steps, run on one backend and checked against a
// reference. One source for every backend: tests/parity/test_cpu.cpp runs the CPU backend,
// test_cuda_host.cpp the CUDA backend on the host system (the C++ compiler: what CI can execute
// of it) and test_gpu.cu the CUDA backend on a GPU (nvcc; skipped without a device). A new
// primitive gets one case here and is then checked on every backend.
//
// The reference of a primitive is `cpu::backend<double>` on the same inputs: every input is drawn
// in double and rounded to the backend's scalar, so both sides see the same values. Outputs are
// poisoned with NaN first (an element a backend forgot to write fails) and compared by
// ‖got − want‖ / ‖want‖ in double. Bounds: 1e-5 for float (2e-5 for the softmax gradient, whose
// row and column sums are 10²–10³ long; 5e-5 for 20 AdamW steps on float weights), 1e-12 for
// double (measured: 1e-8 to 1.5e-7 and 1e-5 for AdamW in float, under 3e-16 in double; run with
// FUSEMIX_PARITY_VERBOSE=1 to see each); exact where the operation is exact (a
// copy, a fill, a dropout mask, the initial weights). A backend's alternative GEMM modes (OpenBLAS
// on the CPU; TF32 and bf16 tensor cores on a GPU) state their own bounds.
//
// Two sections compare like with like instead, because their outcome is a discrete choice that
// rounding may flip: the k-DPP picks (an argmax over N items; reference: the CPU selector with the
// backend's scalar, so picks and stop agree exactly and gains to 1e-6) and the training steps
// (AdamW's first step is ±lr wherever a gradient's sign is known; reference: the CPU trainer with
// the backend's scalar). On the CPU backend itself those two reduce to properties that hold
// without a peer (ties go to the lowest index, rank exhaustion stops, errors name the function).
//
// No Boost: the GPU machines need not have it. Each failure prints file:line and the values.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fusemix/fusemix.hpp>

#include "../unit/loss_blocks.hpp"

namespace fusemix::test::parity {

/// Counts checks and failures; prints each failure.
struct report {
  int checks = 0;
  int failures = 0;
  bool expect(bool ok, std::string_view what, int line) {
    ++checks;
    if (!ok) {
      ++failures;
      std::fprintf(stderr, "parity.hpp:%d: check failed: %.*s\n", line, static_cast<int>(what.size()), what.data());
    }
    return ok;
  }
};

/// ‖got − want‖ / ‖want‖ (∞ when `got` holds a non-finite value or the lengths differ).
inline double relative_error(std::span<const double> got, std::span<const double> want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

/// An alternative setting of a backend under which its GEMMs are checked again, with its own
/// bound (the GEMM library on the CPU, the tensor-core precision on a GPU). `enter` switches it
/// on, `leave` back to the default.
struct gemm_mode {
  std::string name;
  double bound;
  std::function<void()> enter, leave;
};

/// What a test program says about the backend it runs.
///
/// @tparam B the backend.
/// @tparam Select the backend's public selector entry point:
///         `select(const latent_view<T>&, std::size_t k, const K& kernel, const kdpp_options&)`.
template <Backend B, class Select>
struct target {
  std::string name;        ///< e.g. "cuda::backend<float, host_system>"
  B backend;               ///< the object under test
  Select select;           ///< its selector entry point
  std::string_view select_name;  ///< the function name its errors carry
  std::size_t scale = 1;   ///< sizes are multiplied by this (larger on a GPU: many blocks per launch)
  std::vector<gemm_mode> modes{};  ///< alternative GEMM settings
  /// The backend memory allocations so far, where the backend counts them (a warm epoch must
  /// make none); empty where it does not.
  std::function<std::uint64_t()> allocations{};
};

template <Backend B, class Select>
class harness {
 public:
  using T = typename B::scalar_type;
  using ref_backend = cpu::backend<double>;
  using host = ref_backend::matrix_type;
  using hvec = ref_backend::vector_type;
  using mat = typename B::matrix_type;
  using vec = typename B::vector_type;
  /// Whether the backend is the CPU one with its own scalar (its own peer in the like-with-like
  /// sections).
  static constexpr bool is_cpu_reference = std::is_same_v<B, cpu::backend<T>>;

  harness(report& r, target<B, Select>& t, std::uint64_t seed) : rep_(r), t_(t), be_(t.backend), seed_(seed) {}

  void run() {
    std::printf("%s\n", t_.name.c_str());
    const auto section = [&](const char* name, auto&& f) {
      const int before = rep_.failures, checks = rep_.checks;
      f();
      std::printf("  %-12s %3d checks, %d failed\n", name, rep_.checks - checks, rep_.failures - before);
    };
    section("storage", [&] { storage(); });
    section("dense", [&] { dense(); });
    section("rows", [&] { rows(); });
    section("layer norm", [&] { layer_norm(); });
    section("activation", [&] { activation(); });
    section("loss", [&] { loss(); });
    section("optimizer", [&] { optimizer(); });
    section("k-DPP", [&] { kdpp(); });
    section("search", [&] { search(); });
    section("training", [&] { training(); });
  }

 private:
  // Inputs and outputs --------------------------------------------------------------------------

  static double rounded(double x) { return static_cast<double>(static_cast<T>(x)); }

  /// `r × c` normal values (sd `sd`), rounded to `T`.
  host random(std::size_t r, std::size_t c, double sd = 1.0) {
    philox_engine rng(seed_++, 77);
    host m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = rounded(sd * sample_normal(rng));
    return m;
  }
  hvec random_vector(std::size_t n) { return random(n, 1).col(0); }

  static std::vector<T> as_t(std::span<const double> x) {
    std::vector<T> v(x.size());
    std::transform(x.begin(), x.end(), v.begin(), [](double a) { return static_cast<T>(a); });
    return v;
  }
  template <class M>
  static std::span<const double> span_of(const M& m) {
    return {m.data(), static_cast<std::size_t>(m.size())};
  }
  /// `h` in backend memory.
  mat put(const host& h) const {
    mat m;
    be_.resize(m, static_cast<std::size_t>(h.rows()), static_cast<std::size_t>(h.cols()));
    be_.upload(std::span<const T>(as_t(span_of(h))), m.data());
    return m;
  }
  vec put(const hvec& h) const {
    vec v;
    be_.resize(v, static_cast<std::size_t>(h.size()));
    be_.upload(std::span<const T>(as_t(span_of(h))), v.data());
    return v;
  }
  mat poisoned(std::size_t r, std::size_t c) const {
    mat m;
    be_.resize(m, r, c);
    const std::vector<T> nan(r * c, std::numeric_limits<T>::quiet_NaN());
    be_.upload(std::span<const T>(nan), m.data());
    return m;
  }
  vec poisoned(std::size_t n) const {
    vec v;
    be_.resize(v, n);
    const std::vector<T> nan(n, std::numeric_limits<T>::quiet_NaN());
    be_.upload(std::span<const T>(nan), v.data());
    return v;
  }
  std::vector<double> get(const T* p, std::size_t n) const {
    std::vector<T> h(n);
    be_.download(p, std::span<T>(h));
    return {h.begin(), h.end()};
  }
  std::vector<double> get(const mat& m) const { return get(m.data(), be_.rows(m) * be_.cols(m)); }
  std::vector<double> get(const vec& v) const { return get(v.data(), static_cast<std::size_t>(v.size())); }

  double tol(double float_bound = 1e-5) const { return std::is_same_v<T, float> ? float_bound : 1e-12; }

  void close(const std::vector<double>& got, std::span<const double> want, double bound, std::string_view what,
             int line) {
    const double e = relative_error(got, want);
    if (verbose()) std::printf("    %-60.*s %9.3g (bound %.3g)\n", static_cast<int>(what.size()), what.data(), e, bound);
    rep_.expect(e <= bound, fusemix::concat(what, ": relative error ", e, " > ", bound), line);
  }
  /// FUSEMIX_PARITY_VERBOSE=1 prints every measured error beside its bound.
  static bool verbose() {
    static const bool v = std::getenv("FUSEMIX_PARITY_VERBOSE") != nullptr;
    return v;
  }
  template <class M>
    requires requires(const M& m) { m.data(); m.size(); }
  void close(const std::vector<double>& got, const M& want, double bound, std::string_view what, int line) {
    close(got, span_of(want), bound, what, line);
  }
  void close(double got, double want, double bound, std::string_view what, int line) {
    const double e = std::fabs(got - want) / std::max(std::fabs(want), 1e-300);
    if (verbose()) std::printf("    %-60.*s %9.3g (bound %.3g)\n", static_cast<int>(what.size()), what.data(), e, bound);
    rep_.expect(e <= bound, fusemix::concat(what, ": ", got, " vs ", want, " (relative ", e, " > ", bound, ")"), line);
  }

  // Storage ------------------------------------------------------------------------------------

  void storage() {
    const std::size_t n = 37 * t_.scale + 3;
    auto buf = be_.zero_buffer(n);
    close(get(buf.data(), n), std::vector<double>(n, 0.0), 0.0, "zero_buffer (exact)", __LINE__);
    const host x = random(n, 1);
    be_.upload(std::span<const T>(as_t(span_of(x))), buf.data());
    close(get(buf.data(), n), x, 0.0, "upload, download (exact)", __LINE__);
    auto other = be_.zero_buffer(n);
    be_.copy_n(buf.data(), n, other.data());
    close(get(other.data(), n), x, 0.0, "copy_n (exact)", __LINE__);
    // A matrix view into flat storage sees the buffer row-major; resize keeps the asked shape.
    const auto view = be_.map(static_cast<const T*>(buf.data()), 1, n);
    rep_.expect(be_.rows(view) == 1 && be_.cols(view) == n, "map: shape", __LINE__);
    mat m;
    be_.resize(m, 3, 5);
    rep_.expect(be_.rows(m) == 3 && be_.cols(m) == 5, "resize: shape", __LINE__);
  }

  // Dense algebra ------------------------------------------------------------------------------

  void gemm_case(const gemm_mode* mode) {
    const std::size_t m = 37 * t_.scale, n = 29 * t_.scale, k = 53 * t_.scale;
    const double bound = mode ? mode->bound : tol();
    const std::string tag = mode ? " (" + mode->name + ")" : std::string();
    for (const bool ta : {false, true})
      for (const bool tb : {false, true})
        for (const double beta : {0.0, 0.5}) {
          const host a = ta ? random(k, m) : random(m, k), b = tb ? random(n, k) : random(k, n);
          host want = random(m, n);
          // b as a view into flat parameter storage, as the layers pass their weights.
          auto b_flat = be_.zero_buffer(static_cast<std::size_t>(b.size()));
          be_.upload(std::span<const T>(as_t(span_of(b))), b_flat.data());
          const auto b_view = be_.map(static_cast<const T*>(b_flat.data()), static_cast<std::size_t>(b.rows()),
                                      static_cast<std::size_t>(b.cols()));
          const mat da = put(a);
          mat dc = beta == 0.0 ? poisoned(m, n) : put(want);  // beta 0 must not read c
          ref_.gemm(0.75, a, ta, b, tb, beta, want);
          if (mode) mode->enter();
          be_.gemm(T(0.75), da, ta, b_view, tb, T(beta), dc);
          if (mode) mode->leave();
          close(get(dc), want, bound,
                fusemix::concat("gemm", tag, ", trans ", ta, tb, ", beta ", beta), __LINE__);
        }
  }

  void dense() {
    gemm_case(nullptr);
    for (const auto& mode : t_.modes) gemm_case(&mode);
    // gemm_shared: two products with one left operand (the Linear backward).
    const std::size_t r = 31 * t_.scale, c = 17 * t_.scale, w = 23 * t_.scale;
    const host a = random(r, c), b1 = random(w, c), b2 = random(r, w);
    host want1(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(w)),
        want2(static_cast<Eigen::Index>(c), static_cast<Eigen::Index>(w));
    ref_.gemm_shared(1.5, a, false, b1, true, want1, true, b2, false, want2);
    mat got1 = poisoned(r, w), got2 = poisoned(c, w);
    be_.gemm_shared(T(1.5), put(a), false, put(b1), true, got1, true, put(b2), false, got2);
    close(get(got1), want1, tol(), "gemm_shared: first product", __LINE__);
    close(get(got2), want2, tol(), "gemm_shared: second product", __LINE__);
    // axpy, copy, scale, dot.
    host x = random(r, w), y = random(r, w);
    const mat dx = put(x);
    mat dy = put(y), copied = poisoned(r, w);
    ref_.axpy(-0.25, x, y);
    be_.axpy(T(-0.25), dx, dy);
    close(get(dy), y, tol(), "axpy", __LINE__);
    ref_.scale(3.0, y);
    be_.scale(T(3), dy);
    close(get(dy), y, tol(), "scale", __LINE__);
    be_.copy(dx, copied);
    close(get(copied), x, 0.0, "copy (exact)", __LINE__);
    // dot against the exact sum of the rounded products (a sum with cancellation: like with like).
    const auto xs = get(dx), ys = get(dy);
    double want_dot = 0;
    for (std::size_t i = 0; i < xs.size(); ++i) want_dot += rounded(xs[i] * ys[i]);
    const double scale_of_terms = std::sqrt(static_cast<double>(xs.size())) * 3;
    const double e = std::fabs(static_cast<double>(be_.dot(dx, dy)) - want_dot) / scale_of_terms;
    rep_.expect(e <= tol(), fusemix::concat("dot: error ", e, " relative to the terms' scale"), __LINE__);
  }

  // Rows ---------------------------------------------------------------------------------------

  void rows() {
    const std::size_t b = 19 * t_.scale, d = 13 * t_.scale + 3;  // odd widths: no multiple-of-4 fast path
    const host z = random(3 * b, d);
    std::vector<std::size_t> ia(b), ib(b);
    philox_engine rng(seed_++);
    for (std::size_t i = 0; i < b; ++i) ia[i] = rng.below(3 * b), ib[i] = rng.below(3 * b);
    const mat dz = put(z);
    for (const double lambda : {1.0, 0.3}) {
      host want(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(d));
      mat got = poisoned(b, d);
      ref_.gather_mix(z, ia, ib, rounded(lambda), want);
      be_.gather_mix(dz, std::span<const std::size_t>(ia), std::span<const std::size_t>(ib), T(lambda), got);
      close(get(got), want, lambda == 1.0 ? 0.0 : tol(), fusemix::concat("gather_mix, lambda ", lambda), __LINE__);
    }
    // Bias rows and column sums.
    host y = random(b, d);
    const hvec bias = random_vector(d);
    mat dy = put(y);
    ref_.add_row_vector(y, bias);
    be_.add_row_vector(dy, put(bias));
    close(get(dy), y, tol(), "add_row_vector", __LINE__);
    hvec sums_want(static_cast<Eigen::Index>(d));
    vec sums_got = poisoned(d);
    ref_.column_sums(y, sums_want);
    be_.column_sums(dy, sums_got);
    close(get(sums_got), sums_want, tol(), "column_sums", __LINE__);
    // Accumulating: added to what the output holds (a second slice's bias gradient).
    const host y2 = random(b, d);
    ref_.column_sums(y2, sums_want, true);
    be_.column_sums(put(y2), sums_got, true);
    close(get(sums_got), sums_want, tol(), "column_sums, accumulating", __LINE__);
    // Row normalisation, forward and backward; one row all zeros (the eps branch).
    host p = random(b, d), dn = random(b, d);
    p.row(1).setZero();
    host n_want(p.rows(), p.cols()), dp_want(p.rows(), p.cols());
    hvec norms_want;
    ref_.normalize_rows_forward(p, 1e-12, n_want, norms_want);
    ref_.normalize_rows_backward(dn, n_want, norms_want, 1e-12, dp_want);
    mat n_got = poisoned(b, d), dp_got = poisoned(b, d);
    vec norms_got;
    be_.normalize_rows_forward(put(p), T(1e-12), n_got, norms_got);
    be_.normalize_rows_backward(put(dn), n_got, norms_got, T(1e-12), dp_got);
    close(get(n_got), n_want, tol(), "normalize_rows_forward", __LINE__);
    close(get(norms_got), norms_want, tol(), "normalize_rows_forward: norms", __LINE__);
    close(get(dp_got), dp_want, tol(), "normalize_rows_backward", __LINE__);
    // The first non-finite value in row-major order.
    host a = random(7 * t_.scale, 5);
    std::size_t row = 99, col = 99;
    rep_.expect(!be_.find_non_finite(put(a), row, col), "find_non_finite: none", __LINE__);
    a(5, 1) = std::numeric_limits<double>::quiet_NaN();
    a(3, 2) = std::numeric_limits<double>::infinity();
    rep_.expect(be_.find_non_finite(put(a), row, col) && row == 3 && col == 2, "find_non_finite: the first", __LINE__);
  }

  // LayerNorm ----------------------------------------------------------------------------------

  void layer_norm() {
    const std::size_t n = 31 * t_.scale, d = 24 * t_.scale + 5;
    const host x = random(n, d, 3.0), dy = random(n, d);
    const hvec gamma = random_vector(d), beta = random_vector(d);
    host y_want(x.rows(), x.cols()), dx_want(x.rows(), x.cols());
    hvec mean_want, rstd_want, dg_want(gamma.size()), db_want(gamma.size());
    ref_.layer_norm_forward(x, gamma, beta, rounded(1e-5), y_want, mean_want, rstd_want);
    ref_.layer_norm_backward(dy, x, gamma, mean_want, rstd_want, dx_want, dg_want, db_want);
    const mat dxm = put(x);
    const vec dgam = put(gamma), dbet = put(beta);
    mat y_got = poisoned(n, d), dx_got = poisoned(n, d);
    vec mean, rstd, dg_got = poisoned(d), db_got = poisoned(d);
    be_.layer_norm_forward(dxm, dgam, dbet, T(1e-5), y_got, mean, rstd);
    be_.layer_norm_backward(put(dy), dxm, dgam, mean, rstd, dx_got, dg_got, db_got);
    close(get(y_got), y_want, tol(), "layer_norm_forward", __LINE__);
    close(get(mean), mean_want, tol(), "layer_norm_forward: mean", __LINE__);
    close(get(rstd), rstd_want, tol(), "layer_norm_forward: 1/sigma", __LINE__);
    close(get(dx_got), dx_want, tol(), "layer_norm_backward: dx", __LINE__);
    close(get(dg_got), dg_want, tol(), "layer_norm_backward: dgamma", __LINE__);
    close(get(db_got), db_want, tol(), "layer_norm_backward: dbeta", __LINE__);
    // Accumulating: dγ, dβ of a second slice added to those held (dx written as ever).
    const host dy2 = random(n, d);
    ref_.layer_norm_backward(dy2, x, gamma, mean_want, rstd_want, dx_want, dg_want, db_want, true);
    be_.layer_norm_backward(put(dy2), dxm, dgam, mean, rstd, dx_got, dg_got, db_got, true);
    close(get(dx_got), dx_want, tol(), "layer_norm_backward, accumulating: dx", __LINE__);
    close(get(dg_got), dg_want, tol(), "layer_norm_backward, accumulating: dgamma", __LINE__);
    close(get(db_got), db_want, tol(), "layer_norm_backward, accumulating: dbeta", __LINE__);
    // A Linear (out × d) that reads the LayerNorm, from m = dyᵀ·x̂ and s = Σ dy: written, then added.
    const std::size_t out = 13 * t_.scale + 3;
    const host m = random(out, d), w = random(out, d);
    const hvec s = random_vector(out);
    host m_ref = m, dw_want(out, d);
    hvec dbias_want(out), dg2_want(d), db2_want(d);
    const mat wm = put(w);
    const vec sv = put(s);
    mat dw_got = poisoned(out, d);
    vec dbias_got = poisoned(out), dg2_got = poisoned(d), db2_got = poisoned(d);
    for (const bool accumulate : {false, true}) {
      ref_.layer_norm_linear_gradients(m_ref, w, gamma, beta, s, dw_want, dbias_want, dg2_want, db2_want, accumulate);
      mat m_got = put(m);  // (a workspace the backend may overwrite)
      auto dw_view = be_.map(dw_got.data(), out, d);
      auto dbias_view = be_.map(dbias_got.data(), out);
      auto dg_view = be_.map(dg2_got.data(), d);
      auto db_view = be_.map(db2_got.data(), d);
      be_.layer_norm_linear_gradients(m_got, be_.map(static_cast<const T*>(wm.data()), out, d), dgam, dbet,
                                      be_.map(static_cast<const T*>(sv.data()), out), dw_view, dbias_view, dg_view,
                                      db_view, accumulate);
      const std::string how = accumulate ? ", accumulating" : "";
      close(get(dw_got), dw_want, tol(), "layer_norm_linear_gradients" + how + ": dW", __LINE__);
      close(get(dbias_got), dbias_want, tol(), "layer_norm_linear_gradients" + how + ": db", __LINE__);
      close(get(dg2_got), dg2_want, tol(), "layer_norm_linear_gradients" + how + ": dgamma", __LINE__);
      close(get(db2_got), db2_want, tol(), "layer_norm_linear_gradients" + how + ": dbeta", __LINE__);
    }
  }

  // Activations and dropout --------------------------------------------------------------------

  /// Whether `got` and `want` are zero at the same places. (GELU itself rounds to 0 below x ≈
  /// −5.3 in one erf and not in another, so a zero facing a value under 1e-6 is not a mask
  /// difference.)
  static bool same_zeros(const std::vector<double>& got, std::span<const double> want) {
    for (std::size_t i = 0; i < got.size(); ++i)
      if ((got[i] == 0) != (want[i] == 0) && std::max(std::fabs(got[i]), std::fabs(want[i])) > 1e-6) return false;
    return true;
  }

  void activation() {
    const std::size_t r = 23 * t_.scale, w = 16 * t_.scale;  // a multiple of 4: the Philox-block path
    for (const std::size_t width : {w, w + 3}) {
      const host a = random(r, width), dh = random(r, width);
      const hvec bias = random_vector(width);
      const std::string at = fusemix::concat(" (width ", width, ")");
      // GELU alone.
      host y_want(a.rows(), a.cols()), dx_want(a.rows(), a.cols());
      ref_.gelu_forward(a, y_want);
      ref_.gelu_backward(dh, a, dx_want);
      const mat da = put(a), ddh = put(dh);
      mat y_got = poisoned(r, width), dx_got = poisoned(r, width);
      be_.gelu_forward(da, y_got);
      be_.gelu_backward(ddh, da, dx_got);
      close(get(y_got), y_want, tol(), "gelu_forward" + at, __LINE__);
      close(get(dx_got), dx_want, tol(), "gelu_backward" + at, __LINE__);
      for (const double p : {0.0, 0.6}) {
        const dropout_key key{seed_++, 5, p};
        const std::string tag = fusemix::concat(" (width ", width, ", p ", p, ")");
        // Dropout alone: the mask is Philox's, the same bits on every backend.
        host dr_want(a.rows(), a.cols()), drb_want(a.rows(), a.cols());
        ref_.dropout_forward(a, key, dr_want);
        ref_.dropout_backward(dh, key, drb_want);
        mat dr_got = poisoned(r, width), drb_got = poisoned(r, width);
        be_.dropout_forward(da, key, dr_got);
        be_.dropout_backward(ddh, key, drb_got);
        const auto dr = get(dr_got);
        rep_.expect(same_zeros(dr, span_of(dr_want)), "dropout_forward: the same mask" + tag, __LINE__);
        close(dr, dr_want, tol(), "dropout_forward" + tag, __LINE__);
        close(get(drb_got), drb_want, tol(), "dropout_backward" + tag, __LINE__);
        if (p > 0) {
          const auto zeros = std::count(dr.begin(), dr.end(), 0.0);
          rep_.expect(zeros > static_cast<long>(dr.size() / 2), "dropout_forward: drops about p" + tag, __LINE__);
        }
        // The fused pass and its backward (in place, as block::backward calls it).
        host a_want = a, h_want(a.rows(), a.cols()), da_want(a.rows(), a.cols());
        ref_.bias_gelu_dropout_forward(a_want, bias, key, h_want);
        ref_.gelu_dropout_backward(dh, a_want, key, da_want);
        mat pre = put(a), h_got = poisoned(r, width), g = put(dh);
        be_.bias_gelu_dropout_forward(pre, put(bias), key, h_got);
        close(get(pre), a_want, tol(), "bias_gelu_dropout_forward: pre-activation" + tag, __LINE__);
        const auto h = get(h_got);
        rep_.expect(same_zeros(h, span_of(h_want)), "bias_gelu_dropout_forward: the same mask" + tag, __LINE__);
        close(h, h_want, tol(), "bias_gelu_dropout_forward" + tag, __LINE__);
        be_.gelu_dropout_backward(g, pre, key, g);
        close(get(g), da_want, tol(), "gelu_dropout_backward (in place)" + tag, __LINE__);
        // Rows r0 … of the batch alone, with the key's offset: the batch's masks for those rows.
        const Eigen::Index r0 = 5, rest = static_cast<Eigen::Index>(r) - r0;
        dropout_key slice_key = key;
        slice_key.offset = static_cast<std::uint64_t>(r0) * width;
        const host a_rows = a.bottomRows(rest), dh_rows = dh.bottomRows(rest);
        mat s_got = poisoned(static_cast<std::size_t>(rest), width), s_pre = put(a_rows), s_h = poisoned(static_cast<std::size_t>(rest), width);
        be_.dropout_forward(put(a_rows), slice_key, s_got);
        close(get(s_got), host(dr_want.bottomRows(rest)), tol(), "dropout_forward of a slice (offset)" + tag, __LINE__);
        be_.bias_gelu_dropout_forward(s_pre, put(bias), slice_key, s_h);
        close(get(s_h), host(h_want.bottomRows(rest)), tol(), "bias_gelu_dropout_forward of a slice (offset)" + tag,
              __LINE__);
        mat s_g = put(dh_rows);
        be_.gelu_dropout_backward(s_g, s_pre, slice_key, s_g);
        close(get(s_g), host(da_want.bottomRows(rest)), tol(), "gelu_dropout_backward of a slice (offset)" + tag,
              __LINE__);
      }
    }
  }

  // Loss primitives ----------------------------------------------------------------------------

  void loss() {
    // Each against the reference's whole matrix: in one block, and in blocks of 17 rows (merging
    // the columns' statistics across blocks; the last block shorter).
    for (const std::size_t rows : {std::size_t{0}, std::size_t{17}}) {
      const std::string tag = rows == 0 ? "" : " (blocks of 17 rows)";
      {  // InfoNCE over both directions
        const std::size_t n = 67 * t_.scale;
        const host logits = random(n, n, 4.0);
        host g_want(logits.rows(), logits.cols());
        const double l_want = fusemix::test::contrastive_in_blocks(ref_, logits, g_want, n);
        mat g_got = poisoned(n, n);
        const double l_got = fusemix::test::contrastive_in_blocks(be_, put(logits), g_got, rows == 0 ? n : rows);
        close(l_got, l_want, tol(), "symmetric_cross_entropy: loss" + tag, __LINE__);
        close(get(g_got), g_want, tol(2e-5), "symmetric_cross_entropy: gradient" + tag, __LINE__);
      }
      {  // The pairwise sigmoid, with logits far out on both sides (where a naive log(1 + e^x)
         // overflows) on and off the diagonal, in the first block and in a later one.
        const std::size_t n = 53 * t_.scale;
        host logits = random(n, n, 4.0);
        logits(0, 0) = 90, logits(1, 1) = -90, logits(0, 1) = 90, logits(1, 0) = -90;
        logits(20, 20) = 90, logits(21, 21) = -90, logits(20, 21) = 90, logits(21, 20) = -90;
        host g_want(logits.rows(), logits.cols());
        const double l_want = fusemix::test::sigmoid_in_blocks(ref_, logits, g_want, n);
        mat g_got = poisoned(n, n);
        const double l_got = fusemix::test::sigmoid_in_blocks(be_, put(logits), g_got, rows == 0 ? n : rows);
        close(l_got, l_want, tol(), "sigmoid_cross_entropy: loss" + tag, __LINE__);
        close(get(g_got), g_want, tol(), "sigmoid_cross_entropy: gradient" + tag, __LINE__);
      }
    }
    // The whole-matrix sum (positive values: no cancellation) and fill.
    const std::size_t r = 29 * t_.scale, w = 17 * t_.scale + 3;
    const host a = random(r, w).cwiseAbs();
    close(be_.sum(put(a)), a.sum(), tol(), "sum", __LINE__);
    mat nothing;
    be_.resize(nothing, 0, 0);
    rep_.expect(be_.sum(nothing) == T(0), "sum of nothing", __LINE__);
    mat filled = poisoned(r, w);
    be_.fill(filled, T(-2.5));
    close(get(filled), std::vector<double>(r * w, -2.5), 0.0, "fill (exact)", __LINE__);
  }

  // Optimiser ----------------------------------------------------------------------------------

  /// Two ranges (decayed and not) over 20 steps with fresh gradients and a changing rate; then
  /// the moments' host form moved into a new optimiser, which goes on as the first.
  void optimizer() {
    const std::size_t n1 = 300 * t_.scale + 1, n2 = 70;
    const adamw_options o{.weight_decay = 0.1};
    auto opt = be_.make_optimizer(o);
    auto ref_opt = ref_.make_optimizer(o);
    const host p0 = random(n1 + n2, 1);
    auto p = be_.zero_buffer(n1 + n2), g = be_.zero_buffer(n1 + n2);
    be_.upload(std::span<const T>(as_t(span_of(p0))), p.data());
    host rp = p0, rg(p0.rows(), 1);
    opt.add(p.data(), g.data(), n1, true);
    opt.add(p.data() + n1, g.data() + n1, n2, false);
    ref_opt.add(rp.data(), rg.data(), n1, true);
    ref_opt.add(rp.data() + n1, rg.data() + n1, n2, false);
    const auto steps = [&](auto& a, auto& b, int count) {
      for (int s = 0; s < count; ++s) {
        const host fresh = random(n1 + n2, 1, 0.1);
        rg = fresh;  // a copy into the same storage: the reference optimiser holds its address
        be_.upload(std::span<const T>(as_t(span_of(rg))), g.data());
        const double lr = 1e-2 / (1 + s);
        a.step(lr);
        b.step(lr);
      }
    };
    steps(opt, ref_opt, 20);
    rep_.expect(opt.steps() == 20, "adamw: step count", __LINE__);
    // Each step moves a weight by about lr: compare the movement, not the weights. (In float
    // each step rounds the weights, ~6e-8 against moves of 5e-4 to 1e-2: 1e-5 over 20 steps.)
    host moved_want = rp - p0;
    auto moved = get(p.data(), n1 + n2);
    for (std::size_t i = 0; i < moved.size(); ++i) moved[i] -= p0.data()[i];
    close(moved, moved_want, tol(5e-5), "adamw: 20 steps", __LINE__);
    // The host form of the moments, into a fresh optimiser over a copy of the weights.
    std::vector<T> m(opt.moment_count()), v(m.size());
    opt.get_moments(std::span<T>(m), std::span<T>(v));
    auto opt2 = be_.make_optimizer(o);
    auto p2 = be_.zero_buffer(n1 + n2);
    be_.copy_n(p.data(), n1 + n2, p2.data());
    opt2.add(p2.data(), g.data(), n1, true);
    opt2.add(p2.data() + n1, g.data() + n1, n2, false);
    opt2.set_moments(std::span<const T>(m), std::span<const T>(v));
    opt2.set_steps(opt.steps());
    be_.upload(std::span<const T>(as_t(span_of(random(n1 + n2, 1, 0.1)))), g.data());
    opt.step(1e-3);
    opt2.step(1e-3);
    close(get(p2.data(), n1 + n2), get(p.data(), n1 + n2), 0.0, "adamw: resumed from its moments (exact)",
          __LINE__);
  }

  // k-DPP --------------------------------------------------------------------------------------

  /// n × d normal latents in `T`.
  std::vector<T> latents(std::size_t n, std::size_t d) {
    const host z = random(n, d);
    return as_t(span_of(z));
  }

  /// The backend's selector (its entry point and its engine under the shared driver) against the
  /// CPU selector in `T`: the same picks, stop and gains to 1e-6 (relative to max(1, |gain|)).
  template <class K>
  std::optional<selection> compare_selection(const std::vector<T>& z, std::size_t n, std::size_t d, std::size_t k,
                                             const K& kernel, const std::string& label, const kdpp_options& o = {}) {
    const latent_view<T> hv(z.data(), n, d);
    try {
      const selection want = greedy_kdpp(hv, k, kernel, o);
      const selection got = t_.select(hv, k, kernel, o);
      rep_.expect(got.picks == want.picks, label + ": the same picks in the same order", __LINE__);
      rep_.expect(got.stop == want.stop, label + ": the same stop reason", __LINE__);
      double worst = 0;
      for (std::size_t i = 0; i < std::min(got.gains.size(), want.gains.size()); ++i)
        worst = std::max(worst, std::fabs(got.gains[i] - want.gains[i]) / std::max(1.0, std::fabs(want.gains[i])));
      rep_.expect(worst <= 1e-6, fusemix::concat(label, ": gains differ by ", worst), __LINE__);
      if (o.window == 0) {  // the engine in backend memory under the shared driver
        auto dz = be_.zero_buffer(n * d);
        be_.upload(std::span<const T>(z), dz.data());
        auto engine = be_.make_kdpp_engine(latent_view<T>(dz.data(), n, d), kernel, k);
        const selection e = fusemix::detail::run_greedy_kdpp(engine, k, k, o);
        // (the CPU's entry point evaluates lazily by default: its eager mode is this engine)
        kdpp_options eager = o;
        eager.evaluation = fusemix::kdpp_evaluation::eager;
        const selection ge = t_.select(hv, k, kernel, eager);
        rep_.expect(e.picks == ge.picks && e.gains == ge.gains && e.stop == ge.stop,
                    label + ": make_kdpp_engine under the driver is the entry point", __LINE__);
      }
      return got;
    } catch (const std::exception& e) {
      rep_.expect(false, label + ": unexpected exception: " + e.what(), __LINE__);
      return std::nullopt;
    }
  }

  template <class E, class K>
  void compare_error(const std::vector<T>& z, std::size_t n, std::size_t d, std::size_t k, const K& kernel,
                     const std::string& label, std::string_view part, const kdpp_options& o = {}) {
    const latent_view<T> hv(z.data(), n, d);
    std::string want, got;
    try {
      static_cast<void>(greedy_kdpp(hv, k, kernel, o));
    } catch (const E& e) {
      want = e.what();
    } catch (...) {
    }
    try {
      static_cast<void>(t_.select(hv, k, kernel, o));
      rep_.expect(false, label + ": nothing was thrown", __LINE__);
      return;
    } catch (const E& e) {
      got = e.what();
    } catch (const std::exception& e) {
      rep_.expect(false, label + ": another exception type: " + e.what(), __LINE__);
      return;
    }
    // The CPU's message under the backend's name, naming what went wrong.
    constexpr std::string_view cpu_name = "fusemix::greedy_kdpp";
    if (want.rfind(cpu_name, 0) == 0) want.replace(0, cpu_name.size(), t_.select_name);
    rep_.expect(got == want && got.rfind(std::string(t_.select_name) + ": ", 0) == 0 &&
                    got.find(part) != std::string::npos,
                label + ": message\n    " + got + "\n  expected\n    " + want, __LINE__);
  }

  void kdpp() {
    const std::size_t s = t_.scale;
    const auto all_kernels = [&](const std::vector<T>& z, std::size_t n, std::size_t d, std::size_t k,
                                 const std::string& label, bool rank_stops) {
      const auto tag = [&](const char* kernel) { return fusemix::concat(label, " ", kernel, " (N=", n, ", D=", d, ", k=", k, ")"); };
      const auto lin = compare_selection(z, n, d, k, linear_kernel{}, tag("linear"));
      const auto cos = compare_selection(z, n, d, k, cosine_kernel{}, tag("cosine"));
      compare_selection(z, n, d, k, polynomial_kernel{}, tag("polynomial"));
      compare_selection(z, n, d, k, rbf_kernel{.gamma = 1.0 / static_cast<double>(d)}, tag("rbf"));
      if (rank_stops)  // linear and cosine kernels have rank <= D
        for (const auto* sel : {&lin, &cos})
          rep_.expect(*sel && (*sel)->stop == stop_reason::rank_exhausted && (*sel)->picks.size() == std::min(k, d),
                      tag("linear/cosine") + ": stops when the rank runs out", __LINE__);
    };
    for (const std::size_t seed_round : {0, 1}) {
      const std::size_t n = 1000 * s + 7, d = 32;
      all_kernels(latents(n, d), n, d, 50, fusemix::concat("round ", seed_round), true);
    }
    all_kernels(latents(700 * s, 37), 700 * s, 37, 40, "D not a multiple of 16", false);
    all_kernels(latents(400, 8), 400, 8, 20, "rank-deficient", true);
    const auto few = latents(40, 5);
    compare_selection(few, 40, 5, 40, rbf_kernel{.gamma = 0.2}, "k = N rbf (N=40, D=5)");
    compare_selection(few, 40, 5, 1, polynomial_kernel{}, "k = 1 polynomial (N=40, D=5)");
    // Rows n0..2·n0−1 copy rows 0..n0−1: ties between copies go to the first, and a copy of a
    // pick has a residual of (rounding) zero, so it is never picked.
    constexpr std::size_t n0 = 300, d = 19;
    auto z = latents(n0, d);
    z.insert(z.end(), z.begin(), z.end());
    const auto first_copies = [&](const std::optional<selection>& sel, const char* kernel) {
      rep_.expect(sel && std::all_of(sel->picks.begin(), sel->picks.end(), [](std::size_t p) { return p < n0; }),
                  fusemix::concat("duplicates ", kernel, ": only first copies"), __LINE__);
    };
    first_copies(compare_selection(z, 2 * n0, d, d, linear_kernel{}, "duplicates linear"), "linear");
    const auto cos = compare_selection(z, 2 * n0, d, d, cosine_kernel{}, "duplicates cosine");
    first_copies(cos, "cosine");
    // Every cosine diagonal is exactly 1: the first pick is a 600-way tie, won by item 0.
    rep_.expect(cos && !cos->picks.empty() && cos->picks[0] == 0, "duplicates cosine: item 0 first", __LINE__);
    first_copies(compare_selection(z, 2 * n0, d, d, rbf_kernel{.gamma = 1.0 / d}, "duplicates rbf"), "rbf");
    // Errors: the CPU's types and messages under the backend's name.
    const polynomial_kernel poly;
    const auto e = latents(30, 4);
    compare_error<shape_error>(e, 30, 4, 0, poly, "k = 0", "k must be positive");
    compare_error<shape_error>(e, 30, 4, 31, poly, "k > N", "must not exceed");
    compare_error<shape_error>(e, 0, 4, 1, poly, "no rows", "at least one row");
    compare_error<shape_error>(e, 30, 0, 1, poly, "no columns", "at least one column");
    compare_error<argument_error>(e, 30, 4, 3, poly, "negative threshold", "threshold", {.relative_threshold = -1});
    auto bad = e;
    bad[9 * 4 + 1] = std::numeric_limits<T>::infinity();
    compare_error<numeric_error>(bad, 30, 4, 3, poly, "Inf in Z", "row 9, column 1");
    bad[7 * 4 + 3] = std::numeric_limits<T>::quiet_NaN();
    compare_error<numeric_error>(bad, 30, 4, 3, poly, "NaN in Z", "row 7, column 3");
    compare_error<numeric_error>(e, 30, 4, 3, polynomial_kernel{.offset = 1, .degree = 2000}, "infinite diagonal",
                                 "finite values");
  }

  // Search -------------------------------------------------------------------------------------

  /// Each query's gallery rows by the definition of `top_k`: higher cosine (rows normalised in
  /// double) first, then the lower index.
  static std::vector<std::vector<std::int64_t>> ranked(const host& q, const host& g) {
    const host a = q.rowwise().normalized(), b = g.rowwise().normalized();
    const host s = a * b.transpose();
    std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(q.rows()));
    for (Eigen::Index i = 0; i < s.rows(); ++i) {
      auto& o = out[static_cast<std::size_t>(i)];
      o.resize(static_cast<std::size_t>(s.cols()));
      std::iota(o.begin(), o.end(), 0);
      std::stable_sort(o.begin(), o.end(), [&](auto x, auto y) { return s(i, x) > s(i, y); });
    }
    return out;
  }

  /// `top_k` on the backend (its GEMM, normalisation and `merge_top_k`) against the ranking in
  /// double, every list entry and every score. With `exact`, every entry must be the ranking's
  /// (for dyadic rows, whose cosines are exact in any summation order: equal ones are ties that
  /// go to the lower index); otherwise an entry may differ only where its cosine and the
  /// ranking's are within rounding of each other (random rows: two of 700 can be that close).
  void compare_search(const host& q, const host& g, std::size_t k, const search_options& o, const std::string& what,
                      bool exact = false) {
    const std::vector<T> qt = as_t(span_of(q)), gt = as_t(span_of(g));
    const auto nq = static_cast<std::size_t>(q.rows()), ng = static_cast<std::size_t>(g.rows()),
               d = static_cast<std::size_t>(q.cols());
    const auto want = ranked(q, g);
    const auto r = top_k(be_, latent_view<T>(qt.data(), nq, d), latent_view<T>(gt.data(), ng, d), k, o);
    std::size_t wrong = 0;
    double worst = 0;
    const host a = q.rowwise().normalized(), b = g.rowwise().normalized();
    for (std::size_t i = 0; i < nq; ++i)
      for (std::size_t j = 0; j < k; ++j) {
        const auto idx = r.indices(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
        const double cosine = idx >= 0 && static_cast<std::size_t>(idx) < ng
                                  ? a.row(static_cast<Eigen::Index>(i)).dot(b.row(idx))
                                  : std::numeric_limits<double>::infinity();
        const double ranked_cosine = a.row(static_cast<Eigen::Index>(i)).dot(b.row(want[i][j]));
        wrong += idx != want[i][j] && (exact || !(std::fabs(cosine - ranked_cosine) <= tol(1e-6)));
        worst = std::max(worst, std::fabs(cosine - r.scores(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j))));
      }
    if (verbose()) std::printf("    %-60s %zu wrong, score error %9.3g\n", what.c_str(), wrong, worst);
    rep_.expect(wrong == 0, fusemix::concat(what, ": ", wrong, " list entries differ from the ranking in double", exact ? "" : " by more than rounding"), __LINE__);
    rep_.expect(worst <= tol(1e-6) * 10, fusemix::concat(what, ": a score is off by ", worst), __LINE__);
  }

  /// Exact top-k on the backend: several k (up to the whole gallery or the backend's limit) and
  /// block shapes (blocks narrower than k, one column, the backend's own), ties, bad input.
  void search() {
    const std::size_t s = t_.scale, nq = 37 * s, ng = 700 * s, d = 16;
    const host q = random(nq, d), g = random(ng, d);
    for (const std::size_t k : {std::size_t{1}, std::size_t{5}, std::size_t{64}, std::min(ng, B::max_top_k)})
      for (const auto& [qb, gb] : {std::pair<std::size_t, std::size_t>{0, 0}, {7, 33}, {1024, 1}, {5, 100000}}) {
        if (gb == 1 && k > 64) continue;  // (a merge per gallery row: slow on the host and saying nothing new)
        compare_search(q, g, k, {.query_block = qb, .gallery_block = gb},
                       fusemix::concat("top_k k ", k, ", blocks ", qb, " x ", gb));
      }
    // Dyadic unit rows (±e_i, and ±1/2 on four coordinates), each three times: equal cosines are
    // exact ties, between copies and between distinct rows, and go to the lower index.
    std::vector<std::vector<double>> unit;
    for (int i = 0; i < 8; ++i)
      for (const double sign : {1.0, -1.0}) {
        std::vector<double> e(8, 0.0);
        e[static_cast<std::size_t>(i)] = sign;
        unit.push_back(e);
      }
    for (int pattern = 0; pattern < 16; ++pattern)
      for (const int offset : {0, 4}) {
        std::vector<double> h(8, 0.0);
        for (int j = 0; j < 4; ++j) h[static_cast<std::size_t>(offset + j)] = (pattern >> j) & 1 ? 0.5 : -0.5;
        unit.push_back(h);
      }
    const auto n = static_cast<Eigen::Index>(unit.size());
    host tg(3 * n, 8), tq(n, 8);
    for (Eigen::Index r = 0; r < 3 * n; ++r)
      for (Eigen::Index c = 0; c < 8; ++c) {
        tg(r, c) = unit[static_cast<std::size_t>(r % n)][static_cast<std::size_t>(c)];
        if (r < n) tq(r, c) = unit[static_cast<std::size_t>((r * 7) % n)][static_cast<std::size_t>(c)];
      }
    for (const std::size_t gb : {5, 48, 1000}) compare_search(tq, tg, 20, {.gallery_block = gb}, fusemix::concat("ties, gallery block ", gb), true);
    compare_search(tq, tg, 3 * static_cast<std::size_t>(n), {.gallery_block = 7}, "ties, k = the whole gallery", true);

    // Bad input: the CPU's errors, under the same name.
    const std::vector<T> qt = as_t(span_of(q)), gt = as_t(span_of(g));
    const auto refused = [&]<class E>(std::type_identity<E>, const std::vector<T>& qv, const std::vector<T>& gv,
                                       std::size_t rows, std::size_t k, std::string_view needle, const char* what) {
      std::string message;
      try {
        static_cast<void>(top_k(be_, latent_view<T>(qv.data(), nq, d), latent_view<T>(gv.data(), rows, d), k));
      } catch (const E& e) {
        message = e.what();
      } catch (const std::exception& e) {
        message = fusemix::concat("(wrong type) ", e.what());
      }
      rep_.expect(message.starts_with("fusemix::top_k: ") && message.find(needle) != std::string::npos,
                  fusemix::concat("top_k refuses ", what, ": got \"", message, "\""), __LINE__);
    };
    refused(std::type_identity<shape_error>{}, qt, gt, ng, 0, "k must be positive", "k = 0");
    refused(std::type_identity<shape_error>{}, qt, gt, 10, 11, "must not exceed the gallery's rows", "k > gallery");
    if (B::max_top_k < ng)
      refused(std::type_identity<shape_error>{}, qt, gt, ng, B::max_top_k + 1, "this backend's limit", "k > limit");
    std::vector<T> bad_q = qt, bad_g = gt;
    bad_q[2 * d + 1] = std::numeric_limits<T>::quiet_NaN();
    refused(std::type_identity<numeric_error>{}, bad_q, gt, ng, 3, "queries must be finite", "a NaN query");
    bad_g[(ng - 3) * d + 4] = std::numeric_limits<T>::infinity();
    refused(std::type_identity<numeric_error>{}, qt, bad_g, ng, 3, fusemix::concat("inf at row ", ng - 3, ", column 4"),
            "an infinite gallery value");
  }

  // Training -----------------------------------------------------------------------------------

  template <class P>
  static std::vector<double> params(const P& h) {
    std::vector<typename P::scalar_type> v(h.parameters().size());
    h.copy_parameters_to(std::span<typename P::scalar_type>(v));
    return {v.begin(), v.end()};
  }

  /// Two adapters and a trainer on the backend and on the CPU with `T`, from the same seeds: one
  /// step (contrastive and sigmoid losses), two epochs through `train_epoch` (shuffle, schedule,
  /// mixing; the warm one allocates nothing), a checkpoint into and out of each, the GEMM modes,
  /// and bad input.
  void training() {
    if constexpr (is_cpu_reference) {
      std::printf("  (the CPU trainer is the reference: its gradients are checked in double and against PyTorch)\n");
    } else {
      using cpu_b = cpu::backend<T>;
      using adapter = fusion_adapter<dynamic_shape, B>;
      using cpu_adapter = fusion_adapter<dynamic_shape, cpu_b>;
      using host_t = typename cpu_b::matrix_type;
      const std::size_t s = t_.scale, dx = 12 * s + 4, dy = 8 * s, shared = 8 * s, batch = 24 * s, n = 3 * batch;
      const host x_latents = random(n, dx), y_latents = random(n, dy);
      const host_t zx = x_latents.template cast<T>(), zy = y_latents.template cast<T>();
      const mat dzx = put(x_latents), dzy = put(y_latents);
      const adapter_shape sx{.in_dim = dx, .out_dim = shared, .depth = 2, .expansion = 4};
      const adapter_shape sy{.in_dim = dy, .out_dim = shared, .depth = 1, .expansion = 4};
      const adapter_options ox{.dropout = 0.5, .seed = 3}, oy{.dropout = 0.5, .seed = 4};
      const train_options o{.epochs = 2, .batch = batch, .lr = 1e-3, .weight_decay = 0.1, .seed = 9};
      std::vector<std::size_t> rows(batch);
      for (std::size_t i = 0; i < batch; ++i) rows[i] = (7 * i + 3) % n;
      philox_engine rng(seed_++);
      const mix_plan plan = draw_mix(rng, batch, {});

      cpu_adapter hx_c(sx, ox), hy_c(sy, oy);
      adapter hx(sx, ox, be_), hy(sy, oy, be_);
      close(params(hx), params(hx_c), 0.0, "initial weights (exact)", __LINE__);
      trainer t_c(hx_c, hy_c, o);
      trainer t(hx, hy, o, be_);
      close(t.step(dzx, dzy, rows, plan, 1e-3), t_c.step(zx, zy, rows, plan, 1e-3), tol(), "one step: loss",
            __LINE__);
      close(params(hx), params(hx_c), tol(), "one step: X adapter", __LINE__);
      close(params(hy), params(hy_c), tol(), "one step: Y adapter", __LINE__);
      close(t.temperature(), t_c.temperature(), tol(), "one step: temperature", __LINE__);
      double worst = 0;
      std::uint64_t warm = 0;
      for (int e = 0; e < 2; ++e) {
        const auto r_c = t_c.train_epoch(zx, zy);
        const std::uint64_t before = t_.allocations ? t_.allocations() : 0;
        const auto r = t.train_epoch(dzx, dzy);
        if (e == 1 && t_.allocations) warm = t_.allocations() - before;
        worst = std::max(worst, std::fabs(r.loss - r_c.loss) / std::fabs(r_c.loss));
        rep_.expect(r.steps == r_c.steps, "train_epoch: step count", __LINE__);
      }
      rep_.expect(warm == 0, fusemix::concat("the warm epoch allocates nothing (", warm, ")"), __LINE__);
      rep_.expect(t.global_step() == 7, "train_epoch: global step", __LINE__);
      rep_.expect(worst <= 2 * tol(), fusemix::concat("two epochs: loss differs by ", worst), __LINE__);
      close(params(hx), params(hx_c), 5 * tol(), "7 steps: X adapter", __LINE__);

      // A checkpoint of the backend's run read by a CPU trainer (the same weights and moments),
      // and back into a trainer on the backend, which then steps as the CPU one.
      const auto file = std::filesystem::temp_directory_path() /
                        fusemix::concat("fusemix_parity_", seed_, "_", std::is_same_v<T, float> ? "f" : "d",
                                        ".safetensors");
      t.save_checkpoint(file);
      cpu_adapter hx2(sx, {.dropout = 0.5, .seed = 1}), hy2(sy, {.dropout = 0.5, .seed = 2});
      trainer t2(hx2, hy2, o);
      t2.load_checkpoint(file);
      close(params(hx2), params(hx), 0.0, "checkpoint into the CPU: weights (exact)", __LINE__);
      std::vector<T> m(t.optimizer().moment_count()), v(m.size()), m2(m.size()), v2(m.size());
      t.optimizer().get_moments(std::span<T>(m), std::span<T>(v));
      t2.optimizer().get_moments(std::span<T>(m2), std::span<T>(v2));
      rep_.expect(m == m2 && v == v2, "checkpoint into the CPU: moments (exact)", __LINE__);
      adapter hx3(sx, {.dropout = 0.5, .seed = 1}, be_), hy3(sy, {.dropout = 0.5, .seed = 2}, be_);
      trainer t3(hx3, hy3, o, be_);
      t3.load_checkpoint(file);
      std::filesystem::remove(file);
      close(params(hx3), params(hx), 0.0, "checkpoint back: weights (exact)", __LINE__);
      close(t3.step(dzx, dzy, rows, plan, 1e-4), t2.step(zx, zy, rows, plan, 1e-4), 2 * tol(),
            "step after resume: loss", __LINE__);

      // The sigmoid loss as the trainer's policy.
      {
        cpu_adapter ax(sx, ox), ay(sy, oy);
        adapter bx(sx, ox, be_), by(sy, oy, be_);
        trainer s_c(ax, ay, sigmoid_loss<cpu_b>(cpu_b{}), o);
        trainer s(bx, by, sigmoid_loss<B>(be_), o, be_);
        close(s.step(dzx, dzy, rows, plan, 1e-3), s_c.step(zx, zy, rows, plan, 1e-3), tol(), "sigmoid step: loss",
              __LINE__);
        close(params(bx), params(ax), tol(), "sigmoid step: X adapter", __LINE__);
        close(params(by), params(ay), tol(), "sigmoid step: Y adapter", __LINE__);
      }

      // Gradient caching on the backend (slices of a third of the batch, the last one shorter)
      // against the whole batch on the CPU: the same function up to rounding.
      {
        cpu_adapter ax(sx, ox), ay(sy, oy);
        adapter bx(sx, ox, be_), by(sy, oy, be_);
        train_options om = o;
        om.micro_batch = batch / 3 + 1;
        trainer m_c(ax, ay, o);
        trainer m(bx, by, om, be_);
        double worst_loss = 0;
        for (int e = 0; e < 2; ++e) {
          const auto r_c = m_c.train_epoch(zx, zy);
          const auto r = m.train_epoch(dzx, dzy);
          worst_loss = std::max(worst_loss, std::fabs(r.loss - r_c.loss) / std::fabs(r_c.loss));
        }
        rep_.expect(worst_loss <= 2 * tol(), fusemix::concat("micro-batch, two epochs: loss differs by ", worst_loss),
                    __LINE__);
        close(params(bx), params(ax), 5 * tol(), "micro-batch, two epochs: X adapter", __LINE__);
        close(params(by), params(ay), 5 * tol(), "micro-batch, two epochs: Y adapter", __LINE__);
      }

      // The GEMM modes train the same function: a step from the same state against the default
      // mode's. (A small rate: AdamW's first step moves every weight by ±lr, so the weights
      // differ only where a gradient's sign flips, by 2·lr.)
      for (const auto& mode : t_.modes) {
        adapter ha(sx, ox, be_), hb(sy, oy, be_), hc(sx, ox, be_), hd(sy, oy, be_);
        trainer ta(ha, hb, o, be_), tc(hc, hd, o, be_);
        const double l_default = ta.step(dzx, dzy, rows, plan, 1e-4);
        mode.enter();
        const double l_mode = tc.step(dzx, dzy, rows, plan, 1e-4);
        mode.leave();
        close(l_mode, l_default, mode.bound / 4, mode.name + " step: loss", __LINE__);
        close(params(hc), params(ha), mode.bound, mode.name + " step: weights", __LINE__);
      }

      // Bad input is refused as on the CPU, naming where.
      host bad = x_latents;
      bad(5, 2) = std::numeric_limits<double>::quiet_NaN();
      bool named = false;
      try {
        t.validate(put(bad), dzy);
      } catch (const numeric_error& e) {
        named = std::string(e.what()).find("row 5, column 2") != std::string::npos;
      }
      rep_.expect(named, "validate: a NaN in the X latents, named", __LINE__);
    }
  }

  report& rep_;
  target<B, Select>& t_;
  const B& be_;
  ref_backend ref_;
  std::uint64_t seed_;
};

/// Runs every check on `t`; prints a line per section and each failure.
template <Backend B, class Select>
void run(report& r, target<B, Select> t, std::uint64_t seed) {
  harness<B, Select>(r, t, seed).run();
}

/// Prints the summary; returns the exit status (0 when every check passed).
inline int finish(const report& r) {
  std::printf("%d of %d parity checks passed\n", r.checks - r.failures, r.checks);
  return r.failures == 0 ? 0 : 1;
}

}  // namespace fusemix::test::parity
