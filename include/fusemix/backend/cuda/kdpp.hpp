// SPDX-License-Identifier: Apache-2.0
/// @file
/// Greedy k-DPP selection on the CUDA backend: the picks of `fusemix::greedy_kdpp`, with the
/// latents, the c vectors and the residuals in backend memory, for N up to tens of millions.
///
/// The driver is the CPU's own `fusemix::detail::run_greedy_kdpp`; only the per-item primitives
/// (`KdppEngine`) differ, so the stopping rule, the gains and the order of the picks are decided
/// by the same code. The backend's k-DPP group (`kdpp_ops::make_kdpp_engine`) hands out the same
/// engine.
///
/// **Precision** is the CPU selector's: the latents and the c vectors are stored in `T`; dot
/// products, kernel values, residuals and the new coordinates are accumulated in double, each
/// sum in the CPU's order (backend/common/dot.hpp; the c-vector sums in step order). Equal rows
/// therefore tie exactly and the lowest index wins, as on the CPU. Against a CPU build the
/// results agree to rounding: where both compilers contract the same products into FMAs they
/// agree bit for bit, and `rbf_kernel`'s `exp` may differ in the last bit between libm and CUDA's.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <fusemix/backend/common/dot.hpp>
#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/elementwise.hpp>
#include <fusemix/backend/cuda/kernels/kdpp.hpp>
#include <fusemix/backend/cuda/memory.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/select/kdpp.hpp>

namespace fusemix::cuda {

/// Greedy MAP selection of `k` of `n` items under a k-DPP, on system `S` (a GPU unless given):
/// the same picks, gains (to rounding) and stop reason as `fusemix::greedy_kdpp` with the same
/// options.
///
/// The latents are uploaded once (N × D), the c vectors take (k − 1) × N values of `T` and the
/// per-item state three vectors of N doubles. Each step evaluates one kernel row, updates every
/// residual and downloads the next pick and its residual.
///
/// @tparam S `device_system` (the default) or `host_system`; deduced from `ctx` when given.
/// @tparam K a `DotProductKernel` whose `from_dots` is `FUSEMIX_HOST_DEVICE` (all built-ins).
/// @param z the latents in host memory, one item per row.
/// @param k how many items to pick.
/// @param kernel the similarity; must be positive semi-definite and symmetric.
/// @param options stopping threshold; `window` must be 0 or at least `k` (the plain greedy).
/// @param ctx the context whose stream runs the work (null: `context<S>::shared()`).
/// @returns the picks in selection order, their gains, and why it stopped.
/// @throws shape_error if `z` has no rows or no columns, if `k == 0` or if `k > z.rows()`.
/// @throws numeric_error if `z` holds NaN or Inf, if the kernel's diagonal has a negative or NaN
///         entry, or if the kernel returns a non-finite value.
/// @throws argument_error if `options.relative_threshold` is negative or not finite, or if
///         `options.window` is neither 0 nor at least `k`.
/// @throws device_error if there is no usable CUDA device (`device_system`); std::system_error
///         for CUDA failures.
///
/// **Example**
///
///     auto sel = fusemix::cuda::greedy_kdpp(fusemix::latent_view<float>(z.data(), n, d), 1000,
///                                           fusemix::polynomial_kernel{});
///     auto same = fusemix::cuda::greedy_kdpp<fusemix::cuda::host_system>(z, 1000, fusemix::polynomial_kernel{});
template <System S = device_system, Scalar T, DotProductKernel K>
[[nodiscard]] selection greedy_kdpp(const latent_view<T>& z, std::size_t k, const K& kernel,
                                    const kdpp_options& options = {}, std::shared_ptr<context<S>> ctx = nullptr);

/// `greedy_kdpp` on latents already in the backend's memory: `z` points to `rows × cols` values,
/// row-major, in the memory of `ctx`'s system (an `array<T, S>`'s `data()`), so that several
/// selections share one upload.
///
/// @throws argument_error if `z` is null. Otherwise as the overload above.
///
/// **Example**
///
///     fusemix::cuda::array<float> dz(n * d);
///     fusemix::cuda::copy_to_device(*ctx, z.data(), dz.data(), n * d);
///     auto sel = fusemix::cuda::greedy_kdpp(dz.data(), n, d, 1000, fusemix::cosine_kernel{}, {}, ctx);
template <System S = device_system, Scalar T, DotProductKernel K>
[[nodiscard]] selection greedy_kdpp(const T* z, std::size_t rows, std::size_t cols, std::size_t k, const K& kernel,
                                    const kdpp_options& options = {}, std::shared_ptr<context<S>> ctx = nullptr);

/// `greedy_kdpp` on any row-major host matrix with `data()`, `rows()` and `cols()`.
template <System S = device_system, class M, DotProductKernel K>
  requires requires(const M& m) { latent_view(m); }
[[nodiscard]] selection greedy_kdpp(const M& z, std::size_t k, const K& kernel, const kdpp_options& options = {},
                                    std::shared_ptr<context<S>> ctx = nullptr) {
  return greedy_kdpp<S>(latent_view(z), k, kernel, options, std::move(ctx));
}

namespace detail {

inline constexpr std::string_view kdpp_where = "fusemix::cuda::greedy_kdpp";

/// The per-item primitives of the greedy k-DPP (`KdppEngine`) over latents in the memory of
/// system `S`, for a dot-product kernel: what `backend::make_kdpp_engine` returns, and what
/// `greedy_kdpp` hands to `fusemix::detail::run_greedy_kdpp`.
///
/// Two differences from the CPU's engine: `kernel_row` only records the pick, and `project`
/// evaluates the row and updates the residuals in one pass over the items, so a non-finite kernel
/// value is reported by the `argmax` that follows (the driver always calls it next), with the
/// CPU's message. And it keeps coordinates for every pick (no window): `coordinates` and `rotate`
/// throw.
template <Scalar T, DotProductKernel K, System S>
class kdpp_engine {
 public:
  static_assert(detail::available<S>);
  using accumulator = double;

  /// The engine over `z` (backend memory, not owned), keeping coordinates for `capacity` picks.
  kdpp_engine(std::shared_ptr<context<S>> ctx, const latent_view<T>& z, const K& kernel, std::size_t capacity)
      : ctx_(std::move(ctx)), z_(z.data()), n_(z.rows()), d_(z.cols()), kernel_(kernel), c_(capacity * n_),
        sq_norm_(n_), d2_(n_), bad_row_(n_),
        partial_(std::min(n_, kdpp_chunk_rows) * ::fusemix::detail::dot_partials) {
    for_n(*ctx_, n_, kdpp_set<double>{bad_row_.data(), 0.0});
  }

  [[nodiscard]] std::size_t size() const noexcept { return n_; }

  /// d_i² = L_ii for every item; returns max_i L_ii.
  /// @throws numeric_error on a negative, NaN or infinite diagonal entry (the CPU's messages).
  double init_diagonal();

  /// The item with the largest residual and that residual; the lowest index among equal
  /// residuals; `no_item` when every item is picked. One reduction and one download.
  /// @throws numeric_error if the last kernel row had a non-finite value.
  [[nodiscard]] std::pair<std::size_t, double> argmax() const;

  [[nodiscard]] double residual(std::size_t i) const {
    return i == last_.first ? last_.second : download(d2_.data() + i);
  }

  /// Marks `j` picked (queued).
  void exclude(std::size_t j) { for_n(*ctx_, 1, kdpp_set<double>{d2_.data() + j, kdpp_minus_infinity()}); }

  /// Windows only, which this engine does not keep. @throws argument_error always.
  void coordinates(std::size_t, std::size_t, std::span<double>) const { no_window(); }
  /// Windows only, which this engine does not keep. @throws argument_error always.
  void rotate(std::span<const std::pair<double, double>>, std::size_t) { no_window(); }

  /// Records the pick whose kernel row `project` evaluates.
  void kernel_row(std::size_t j) noexcept { row_ = j; }

  /// Appends coordinate `slot` for every item and updates every residual (queued).
  void project(std::size_t j, std::size_t slot, double dj);

 private:
  template <class F>
  void for_chunks(F&& f) const {
    for (std::size_t first = 0; first < n_; first += kdpp_chunk_rows) f(first, std::min(kdpp_chunk_rows, n_ - first));
  }
  template <class Item>
  kdpp_best reduce(const Item& item) const {
    return reduce_n(*ctx_, n_, item, kdpp_best{kdpp_minus_infinity(), kdpp_no_item, kdpp_no_item}, kdpp_best_of{});
  }
  double download(const double* at) const {
    double v = 0;
    copy_to_host(*ctx_, at, &v, 1);
    return v;
  }
  [[noreturn]] static void no_window() {
    throw_expected<argument_error>(kdpp_where, "the device engine keeps no window", "window 0", "a window");
  }

  std::shared_ptr<context<S>> ctx_;
  const T* z_;
  std::size_t n_, d_;
  K kernel_;
  array<T, S> c_;                            // capacity × n, step-major
  array<double, S> sq_norm_, d2_, bad_row_;  // |z_i|²; residuals (−∞ once picked); non-finite L_ji
  array<double, S> partial_;                 // the dot products' partials, for the rows of a chunk
  std::size_t row_ = kdpp_no_item;           // the pick of the current kernel row
  mutable std::pair<std::size_t, double> last_{kdpp_no_item, 0.0};  // the last argmax
};

}  // namespace detail

/// The k-DPP group of `cuda::backend` (`KdppEngineFactory`), which is `Derived`.
template <Scalar T, System S, class Derived>
class kdpp_ops {
 public:
  /// The k-DPP engine over latents `z` in this backend's memory (kept by pointer) for a
  /// dot-product kernel, keeping coordinates for `capacity` picks (no window).
  template <DotProductKernel K>
  [[nodiscard]] detail::kdpp_engine<T, K, S> make_kdpp_engine(const latent_view<T>& z, const K& kernel,
                                                              std::size_t capacity) const {
    return {self().shared_context(), z, kernel, capacity};
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

namespace detail {

/// The checks that need no data: the CPU's, in its order, then the window.
inline void check_kdpp_arguments(std::size_t rows, std::size_t cols, std::size_t k, const kdpp_options& options) {
  ::fusemix::detail::check_kdpp_arguments(kdpp_where, rows, cols, k, options);
  if (options.window != 0 && options.window < k)
    throw_expected<argument_error>(kdpp_where,
                                   "the device selector supports window 0 only (a window of k or more is the same)",
                                   concat("0 or >= ", k), options.window);
}

template <Scalar T, DotProductKernel K, System S>
double kdpp_engine<T, K, S>::init_diagonal() {
  for_chunks([&](std::size_t first, std::size_t rows) {
    for_n(*ctx_, rows * ::fusemix::detail::dot_partials, kdpp_lane_dots<T>{z_, d_, first, nullptr, partial_.data()});
    for_n(*ctx_, rows, kdpp_init_rows<T, K>{z_, d_, first, partial_.data(), kernel_, sq_norm_.data(), d2_.data()});
  });
  const kdpp_best r = reduce(kdpp_diagonal_item{d2_.data()});
  if (r.bad != kdpp_no_item) {
    const double l = download(d2_.data() + r.bad);
    if (!(l >= 0))
      throw_expected<numeric_error>(kdpp_where, "the kernel's diagonal must be non-negative", ">= 0",
                                    concat(l, " at item ", r.bad));
    throw_expected<numeric_error>(kdpp_where, "the kernel must return finite values", "finite",
                                  concat(l, " at items (", r.bad, ", ", r.bad, ")"));
  }
  return r.value > 0 ? r.value : 0.0;  // the CPU starts its maximum at 0
}

template <Scalar T, DotProductKernel K, System S>
std::pair<std::size_t, double> kdpp_engine<T, K, S>::argmax() const {
  const kdpp_best r = reduce(kdpp_step_item{d2_.data(), bad_row_.data()});
  if (r.bad != kdpp_no_item)
    throw_expected<numeric_error>(kdpp_where, "the kernel must return finite values", "finite",
                                  concat(download(bad_row_.data() + r.bad), " at items (", row_, ", ", r.bad, ")"));
  last_ = {r.index, r.value};
  return last_;
}

template <Scalar T, DotProductKernel K, System S>
void kdpp_engine<T, K, S>::project(std::size_t j, std::size_t slot, double dj) {
  FUSEMIX_ASSERT(j == row_ && slot * n_ < c_.size());
  const double inv_dj = 1.0 / dj;
  const T* zj = z_ + j * d_;
  for_chunks([&](std::size_t first, std::size_t rows) {
    for_n(*ctx_, rows * ::fusemix::detail::dot_partials, kdpp_lane_dots<T>{z_, d_, first, zj, partial_.data()});
    for_n(*ctx_, rows,
          kdpp_step_rows<T, K>{z_, d_, first, partial_.data(), kernel_, sq_norm_.data(), j, c_.data(), n_, slot, inv_dj,
                               d2_.data(), bad_row_.data()});
  });
}

}  // namespace detail

template <System S, Scalar T, DotProductKernel K>
selection greedy_kdpp(const T* z, std::size_t rows, std::size_t cols, std::size_t k, const K& kernel,
                      const kdpp_options& options, std::shared_ptr<context<S>> ctx) {
  constexpr std::string_view where = detail::kdpp_where;
  detail::check_kdpp_arguments(rows, cols, k, options);
  if (z == nullptr) throw argument_error(concat(where, ": the latent pointer must not be null"));
  if (!ctx) ctx = context<S>::shared();
  // The first non-finite value in row-major order, as the CPU reports it.
  const std::size_t at = find_first(*ctx, rows * cols, detail::not_finite<T>{z});
  if (at != rows * cols) {
    T v{};
    copy_to_host(*ctx, z + at, &v, 1);
    throw_expected<numeric_error>(where, "latents must be finite", "finite values",
                                  concat(v, " at row ", at / cols, ", column ", at % cols));
  }
  detail::kdpp_engine<T, K, S> engine(std::move(ctx), latent_view<T>(z, rows, cols), kernel, k - 1);
  return ::fusemix::detail::run_greedy_kdpp(engine, k, k - 1, options);
}

template <System S, Scalar T, DotProductKernel K>
selection greedy_kdpp(const latent_view<T>& z, std::size_t k, const K& kernel, const kdpp_options& options,
                      std::shared_ptr<context<S>> ctx) {
  detail::check_kdpp_arguments(z.rows(), z.cols(), k, options);  // before the upload
  if (!ctx) ctx = context<S>::shared();
  array<T, S> dz(z.rows() * z.cols());
  copy_to_device(*ctx, z.data(), dz.data(), dz.size());
  return greedy_kdpp<S>(dz.data(), z.rows(), z.cols(), k, kernel, options, std::move(ctx));
}

}  // namespace fusemix::cuda
