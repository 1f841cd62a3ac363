// SPDX-License-Identifier: Apache-2.0
/// @file
/// Greedy k-DPP selection on the CUDA backend: the picks of `fusemix::greedy_kdpp`, with the
/// latents, the c vectors and the residuals in device memory, for N up to tens of millions.
///
/// Written once over `for_n` and a Thrust reduction (see <fusemix/backend/cuda/system.hpp>), it
/// runs on a GPU under nvcc and on the host under any C++20 compiler. The driver is the CPU's own
/// `fusemix::detail::run_greedy_kdpp`; only the per-item primitives differ, so the stopping rule,
/// the gains and the order of the picks are decided by the same code.
///
/// **Precision** is the CPU selector's: the latents and the c vectors are stored in `T`; dot
/// products, kernel values, residuals and the new coordinates are accumulated in double, each
/// sum in the CPU's order (see `detail::dot`: 16 interleaved lanes, a fixed pairwise reduction,
/// then the remainder; the c-vector sums in step order). Equal rows therefore tie exactly and the
/// lowest index wins, as on the CPU. Against a CPU build the results agree to rounding: where
/// both compilers contract the same products into FMAs they agree bit for bit, and `rbf_kernel`'s
/// `exp` may differ in the last bit between libm and CUDA's.
#pragma once

#include <fusemix/backend/cuda/system.hpp>  // first: it chooses Thrust's device system

#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <thrust/iterator/counting_iterator.h>
#include <thrust/transform_reduce.h>

#include <fusemix/concepts.hpp>
#include <fusemix/config.hpp>
#include <fusemix/dpp.hpp>
#include <fusemix/error.hpp>

namespace fusemix::cuda {

/// Greedy MAP selection of `k` of `n` items under a k-DPP, on the backend's device: the same
/// picks, gains (to rounding) and stop reason as `fusemix::greedy_kdpp` with the same options.
///
/// The latents are uploaded once (N × D), the c vectors take (k − 1) × N values of `T` and the
/// per-item state three vectors of N doubles. Each step evaluates one kernel row, updates every
/// residual and downloads the next pick and its residual.
///
/// @tparam K a `DotProductKernel` whose `from_dots` is callable in device code (all built-ins).
/// @param z the latents in host memory, one item per row.
/// @param k how many items to pick.
/// @param kernel the similarity; must be positive semi-definite and symmetric.
/// @param options stopping threshold; `window` must be 0 or at least `k` (the plain greedy).
/// @param ctx the context whose stream runs the work (null: `context::shared()`).
/// @returns the picks in selection order, their gains, and why it stopped.
/// @throws shape_error if `z` has no rows or no columns, if `k == 0` or if `k > z.rows()`.
/// @throws numeric_error if `z` holds NaN or Inf, if the kernel's diagonal has a negative or NaN
///         entry, or if the kernel returns a non-finite value.
/// @throws argument_error if `options.relative_threshold` is negative or not finite, or if
///         `options.window` is neither 0 nor at least `k`.
/// @throws device_error if there is no usable CUDA device (from `context::shared()`);
///         std::system_error for CUDA failures.
///
/// **Example**
///
///     auto sel = fusemix::cuda::greedy_kdpp(fusemix::latent_view<float>(z.data(), n, d), 1000,
///                                           fusemix::polynomial_kernel{});
template <Scalar T, DotProductKernel K>
[[nodiscard]] selection greedy_kdpp(const latent_view<T>& z, std::size_t k, const K& kernel,
                                    const kdpp_options& options = {},
                                    std::shared_ptr<context> ctx = context::shared());

/// `greedy_kdpp` on latents already in the backend's memory: `z` points to `rows × cols` values,
/// row-major, allocated on `ctx`'s device (an `array<T>`'s `data()`), so that several selections
/// share one upload.
///
/// @throws argument_error if `z` is null. Otherwise as the overload above.
///
/// **Example**
///
///     fusemix::cuda::array<float> dz(n * d);
///     fusemix::cuda::copy_to_device(*ctx, z.data(), dz.data(), n * d);
///     auto sel = fusemix::cuda::greedy_kdpp(dz.data(), n, d, 1000, fusemix::cosine_kernel{}, {}, ctx);
template <Scalar T, DotProductKernel K>
[[nodiscard]] selection greedy_kdpp(const T* z, std::size_t rows, std::size_t cols, std::size_t k,
                                    const K& kernel, const kdpp_options& options = {},
                                    std::shared_ptr<context> ctx = context::shared());

/// `greedy_kdpp` on any row-major host matrix with `data()`, `rows()` and `cols()`.
template <class M, DotProductKernel K>
  requires requires(const M& m) { latent_view(m); }
[[nodiscard]] selection greedy_kdpp(const M& z, std::size_t k, const K& kernel, const kdpp_options& options = {},
                                    std::shared_ptr<context> ctx = context::shared()) {
  return greedy_kdpp(latent_view(z), k, kernel, options, std::move(ctx));
}

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

namespace detail {

// Why the row pass is two `for_n` passes and not a cuBLAS GEMV or a `for_rows` block per row:
// a GEMV's blocking decides its summation order per row position, so equal rows need not give
// equal bits and the lowest-index rule for duplicates would break (and SGEMV sums in float,
// which changes the picks; see docs/selection.md). A block per row reduces in an order that
// depends on the block, not the CPU's, and at D = 384 leaves most of 256 threads idle. Eight
// threads per row instead compute the CPU's eight partial sums `lo[l] + hi[l]` (coalesced: the
// eight read 32 consecutive bytes twice per 16 columns), and one thread per row combines them
// in the CPU's pairwise order. Rows go in chunks, so the partials never take more than
// `kdpp_chunk_rows · 8` doubles, whatever N.
inline constexpr std::size_t kdpp_lanes = 16;             // the CPU dot's lanes (`fusemix::detail::dot`)
inline constexpr std::size_t kdpp_half = kdpp_lanes / 2;  // partials per row: lo[l] + hi[l]
inline constexpr std::size_t kdpp_chunk_rows = std::size_t{1} << 20;
inline constexpr std::size_t kdpp_no_item = static_cast<std::size_t>(-1);  // == fusemix::detail::no_item

FUSEMIX_HD constexpr double kdpp_minus_infinity() noexcept { return -std::numeric_limits<double>::infinity(); }

/// Partial `l` of row `first + t / 8`'s dot product with `other` (with itself when null): the
/// CPU's `lo[l] + hi[l]`, lanes l and l + 8 over the whole 16-column blocks.
template <class T>
struct kdpp_lane_dots {
  const T* z;
  std::size_t cols, first;
  const T* other;
  double* partial;
  FUSEMIX_HD void operator()(std::size_t t) const {
    const std::size_t l = t % kdpp_half;
    const T* a = z + (first + t / kdpp_half) * cols;
    const T* b = other != nullptr ? other : a;
    double lo = 0, hi = 0;
    for (std::size_t c = 0; c + kdpp_lanes <= cols; c += kdpp_lanes) {
      lo += static_cast<double>(a[c + l]) * static_cast<double>(b[c + l]);
      hi += static_cast<double>(a[c + kdpp_half + l]) * static_cast<double>(b[c + kdpp_half + l]);
    }
    partial[t] = lo + hi;
  }
};

/// The CPU's reduction of the eight partials, then the columns past the last whole block.
template <class T>
FUSEMIX_HD inline double kdpp_finish_dot(const double* s, const T* a, const T* b, std::size_t cols) {
  double tail = 0;
  for (std::size_t c = cols - cols % kdpp_lanes; c < cols; ++c)
    tail += static_cast<double>(a[c]) * static_cast<double>(b[c]);
  return (((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))) + tail;
}

/// |z_i|² and d_i² = L_ii for the rows of one chunk.
template <class T, class K>
struct kdpp_init_rows {
  const T* z;
  std::size_t cols, first;
  const double* partial;
  K kernel;
  double* sq_norm;
  double* d2;
  FUSEMIX_HD void operator()(std::size_t t) const {
    const std::size_t i = first + t;
    const T* a = z + i * cols;
    const double sq = kdpp_finish_dot(partial + t * kdpp_half, a, a, cols);
    sq_norm[i] = sq;
    d2[i] = static_cast<double>(kernel.from_dots(sq, sq, sq));
  }
};

/// One step for the rows of one chunk: L_ji from the partials, then (the CPU's `project`)
/// e_i = (L_ji − ⟨c_j, c_i⟩) / d_j stored as coordinate `slot`, and d_i² −= e_i². Picked items
/// keep c = 0 and d² = −∞. A non-finite L_ji is written to `bad_row` (and nothing else changes):
/// the next reduction reports it.
template <class T, class K>
struct kdpp_step_rows {
  const T* z;
  std::size_t cols, first;
  const double* partial;
  K kernel;
  const double* sq_norm;
  std::size_t j;
  T* c;             // coordinate s of item i at c[s·n + i]
  std::size_t n, slot;
  double inv_dj;
  double* d2;
  double* bad_row;  // finite everywhere, but where L_ji was not
  FUSEMIX_HD void operator()(std::size_t t) const {
    const std::size_t i = first + t;
    T* out = c + slot * n + i;
    const double di = d2[i];
    if (di == kdpp_minus_infinity()) {
      *out = T(0);
      return;
    }
    const double dot = kdpp_finish_dot(partial + t * kdpp_half, z + i * cols, z + j * cols, cols);
    const double l = static_cast<double>(kernel.from_dots(dot, sq_norm[i], sq_norm[j]));
    if (!math::isfinite(l)) {
      bad_row[i] = l;
      return;
    }
    double acc = 0;
    for (std::size_t s = 0; s < slot; ++s)
      acc += static_cast<double>(c[s * n + j]) * static_cast<double>(c[s * n + i]);
    const double e = (l - acc) * inv_dj;
    *out = static_cast<T>(e);
    d2[i] = di - e * e;
  }
};

template <class U>
struct kdpp_set {
  U* at;
  U value;
  FUSEMIX_HD void operator()(std::size_t i) const { at[i] = value; }
};

/// The running result of a reduction over the items: the best candidate and the first bad item.
struct kdpp_best {
  double value;       // −∞ when there is no candidate
  std::size_t index;  // kdpp_no_item when there is no candidate
  std::size_t bad;    // the lowest index whose value is refused, kdpp_no_item if none
};

/// Larger value wins, the lower index among equal values (explicit: the reduction's order is
/// unspecified, and this makes the result independent of it); the lowest bad index.
struct kdpp_best_of {
  FUSEMIX_HD kdpp_best operator()(const kdpp_best& a, const kdpp_best& b) const {
    const bool a_wins = a.value > b.value || (a.value == b.value && a.index < b.index);
    return {a_wins ? a.value : b.value, a_wins ? a.index : b.index, a.bad < b.bad ? a.bad : b.bad};
  }
};

/// After the diagonal: every d² is a candidate; refused are negative, NaN and infinite ones.
struct kdpp_diagonal_item {
  const double* d2;
  FUSEMIX_HD kdpp_best operator()(std::size_t i) const {
    const double v = d2[i];
    const bool bad = !(v >= 0) || !math::isfinite(v);
    return {bad ? kdpp_minus_infinity() : v, bad ? kdpp_no_item : i, bad ? i : kdpp_no_item};
  }
};

/// After a step: candidates are the items with d² > −∞; refused are items whose L_ji was not finite.
struct kdpp_step_item {
  const double* d2;
  const double* bad_row;
  FUSEMIX_HD kdpp_best operator()(std::size_t i) const {
    const double v = d2[i];
    const bool candidate = v > kdpp_minus_infinity();  // false once picked (and for NaN)
    return {candidate ? v : kdpp_minus_infinity(), candidate ? i : kdpp_no_item,
            math::isfinite(bad_row[i]) ? kdpp_no_item : i};
  }
};

template <class T>
struct kdpp_nonfinite_at {
  const T* z;
  FUSEMIX_HD std::size_t operator()(std::size_t i) const { return math::isfinite(z[i]) ? kdpp_no_item : i; }
};
struct kdpp_lowest {
  FUSEMIX_HD std::size_t operator()(std::size_t a, std::size_t b) const { return a < b ? a : b; }
};

inline constexpr std::string_view kdpp_where = "fusemix::cuda::greedy_kdpp";

/// The device primitives of the greedy k-DPP, with the interface of `fusemix::detail::kdpp_cpu_engine`
/// (the driver `fusemix::detail::run_greedy_kdpp` calls only these). One difference: `kernel_row`
/// only records the pick, and `project` evaluates the row and updates the residuals in one pass
/// over the items, so a non-finite kernel value is reported by the `argmax` that follows (the
/// driver always calls it next), with the CPU's message.
template <Scalar T, DotProductKernel K>
class kdpp_device_engine {
 public:
  using accumulator = double;

  kdpp_device_engine(context& ctx, const T* z, std::size_t n, std::size_t d, const K& kernel, std::size_t capacity)
      : ctx_(ctx), z_(z), n_(n), d_(d), kernel_(kernel), c_(capacity * n), sq_norm_(n), d2_(n), bad_row_(n),
        partial_(std::min(n, kdpp_chunk_rows) * kdpp_half) {
    for_n(ctx_, n_, kdpp_set<double>{bad_row_.data(), 0.0});
  }

  [[nodiscard]] std::size_t size() const noexcept { return n_; }

  /// d_i² = L_ii for every item; returns max_i L_ii.
  /// @throws numeric_error on a negative, NaN or infinite diagonal entry (the CPU's messages).
  double init_diagonal() {
    for_chunks([&](std::size_t first, std::size_t rows) {
      for_n(ctx_, rows * kdpp_half, kdpp_lane_dots<T>{z_, d_, first, nullptr, partial_.data()});
      for_n(ctx_, rows, kdpp_init_rows<T, K>{z_, d_, first, partial_.data(), kernel_, sq_norm_.data(), d2_.data()});
    });
    const kdpp_best r = reduce(kdpp_diagonal_item{d2_.data()});
    if (r.bad != kdpp_no_item) {
      const double l = download(d2_.data() + r.bad);
      if (!(l >= 0))
        ::fusemix::detail::throw_expected<numeric_error>(kdpp_where, "the kernel's diagonal must be non-negative",
                                                         ">= 0", ::fusemix::detail::concat(l, " at item ", r.bad));
      ::fusemix::detail::throw_expected<numeric_error>(
          kdpp_where, "the kernel must return finite values", "finite",
          ::fusemix::detail::concat(l, " at items (", r.bad, ", ", r.bad, ")"));
    }
    return r.value > 0 ? r.value : 0.0;  // the CPU starts its maximum at 0
  }

  /// The item with the largest residual and that residual; the lowest index among equal
  /// residuals; `no_item` when every item is picked. One reduction and one download.
  /// @throws numeric_error if the last kernel row had a non-finite value.
  [[nodiscard]] std::pair<std::size_t, double> argmax() {
    const kdpp_best r = reduce(kdpp_step_item{d2_.data(), bad_row_.data()});
    if (r.bad != kdpp_no_item)
      ::fusemix::detail::throw_expected<numeric_error>(
          kdpp_where, "the kernel must return finite values", "finite",
          ::fusemix::detail::concat(download(bad_row_.data() + r.bad), " at items (", row_, ", ", r.bad, ")"));
    last_ = {r.index, r.value};
    return last_;
  }

  [[nodiscard]] double residual(std::size_t i) {
    return i == last_.first ? last_.second : download(d2_.data() + i);
  }

  /// Marks `j` picked (queued).
  void exclude(std::size_t j) { for_n(ctx_, 1, kdpp_set<double>{d2_.data() + j, kdpp_minus_infinity()}); }

  /// Only with a window, which the entry point refuses.
  void coordinates(std::size_t, std::size_t, std::span<double>) const { FUSEMIX_ASSERT(false); }
  void rotate(std::span<const std::pair<double, double>>, std::size_t) { FUSEMIX_ASSERT(false); }

  /// Records the pick whose kernel row `project` evaluates.
  void kernel_row(std::size_t j) noexcept { row_ = j; }

  /// Appends coordinate `slot` for every item and updates every residual (queued).
  void project(std::size_t j, std::size_t slot, double dj) {
    FUSEMIX_ASSERT(j == row_ && slot * n_ < c_.size());
    const double inv_dj = 1.0 / dj;
    const T* zj = z_ + j * d_;
    for_chunks([&](std::size_t first, std::size_t rows) {
      for_n(ctx_, rows * kdpp_half, kdpp_lane_dots<T>{z_, d_, first, zj, partial_.data()});
      for_n(ctx_, rows,
            kdpp_step_rows<T, K>{z_, d_, first, partial_.data(), kernel_, sq_norm_.data(), j, c_.data(), n_, slot,
                                 inv_dj, d2_.data(), bad_row_.data()});
    });
  }

 private:
  template <class F>
  void for_chunks(F&& f) {
    for (std::size_t first = 0; first < n_; first += kdpp_chunk_rows) f(first, std::min(kdpp_chunk_rows, n_ - first));
  }
  template <class Item>
  kdpp_best reduce(const Item& item) {
    return thrust::transform_reduce(ctx_.policy(), thrust::counting_iterator<std::size_t>(0),
                                    thrust::counting_iterator<std::size_t>(n_), item,
                                    kdpp_best{kdpp_minus_infinity(), kdpp_no_item, kdpp_no_item}, kdpp_best_of{});
  }
  double download(const double* at) const {
    double v = 0;
    copy_to_host(ctx_, at, &v, 1);
    return v;
  }

  context& ctx_;
  const T* z_;
  std::size_t n_, d_;
  K kernel_;
  array<T> c_;                          // (k − 1) × n, step-major
  array<double> sq_norm_, d2_, bad_row_;  // |z_i|²; residuals (−∞ once picked); non-finite L_ji
  array<double> partial_;               // 8 partial dot products per row of a chunk
  std::size_t row_ = kdpp_no_item;      // the pick of the current kernel row
  std::pair<std::size_t, double> last_{kdpp_no_item, 0.0};
};

/// The checks that need no data: the CPU's, in its order, then the window.
inline void kdpp_check_arguments(std::size_t rows, std::size_t cols, std::size_t k, const kdpp_options& options) {
  using ::fusemix::detail::concat;
  using ::fusemix::detail::throw_expected;
  using ::fusemix::detail::throw_shape_error;
  if (rows == 0) throw_shape_error(kdpp_where, "the latent matrix must have at least one row", ">= 1", rows);
  if (cols == 0) throw_shape_error(kdpp_where, "the latent matrix must have at least one column", ">= 1", cols);
  if (k == 0) throw_shape_error(kdpp_where, "k must be positive", ">= 1", k);
  if (k > rows) throw_shape_error(kdpp_where, "k must not exceed the item count", concat("<= ", rows), k);
  if (!(options.relative_threshold >= 0) || !std::isfinite(options.relative_threshold))
    throw_expected<argument_error>(kdpp_where, "relative_threshold must be finite and non-negative", ">= 0",
                                   options.relative_threshold);
  if (options.window != 0 && options.window < k)
    throw_expected<argument_error>(kdpp_where, "the device selector supports window 0 only (a window of k or more "
                                   "is the same)", concat("0 or >= ", k), options.window);
}

}  // namespace detail

template <Scalar T, DotProductKernel K>
selection greedy_kdpp(const T* z, std::size_t rows, std::size_t cols, std::size_t k, const K& kernel,
                      const kdpp_options& options, std::shared_ptr<context> ctx) {
  detail::kdpp_check_arguments(rows, cols, k, options);
  if (z == nullptr)
    throw argument_error(std::string(detail::kdpp_where) + ": the latent pointer must not be null");
  if (!ctx) ctx = context::shared();
  // The first non-finite value in row-major order, as the CPU reports it.
  const std::size_t at = thrust::transform_reduce(
      ctx->policy(), thrust::counting_iterator<std::size_t>(0), thrust::counting_iterator<std::size_t>(rows * cols),
      detail::kdpp_nonfinite_at<T>{z}, detail::kdpp_no_item, detail::kdpp_lowest{});
  if (at != detail::kdpp_no_item) {
    T v{};
    copy_to_host(*ctx, z + at, &v, 1);
    ::fusemix::detail::throw_expected<numeric_error>(
        detail::kdpp_where, "latents must be finite", "finite values",
        ::fusemix::detail::concat(v, " at row ", at / cols, ", column ", at % cols));
  }
  detail::kdpp_device_engine<T, K> engine(*ctx, z, rows, cols, kernel, k - 1);
  return ::fusemix::detail::run_greedy_kdpp(engine, k, k - 1, options);
}

template <Scalar T, DotProductKernel K>
selection greedy_kdpp(const latent_view<T>& z, std::size_t k, const K& kernel, const kdpp_options& options,
                      std::shared_ptr<context> ctx) {
  detail::kdpp_check_arguments(z.rows(), z.cols(), k, options);  // before the upload
  if (!ctx) ctx = context::shared();
  array<T> dz(z.rows() * z.cols());
  copy_to_device(*ctx, z.data(), dz.data(), dz.size());
  return greedy_kdpp(dz.data(), z.rows(), z.cols(), k, kernel, options, std::move(ctx));
}

}  // namespace fusemix::cuda
