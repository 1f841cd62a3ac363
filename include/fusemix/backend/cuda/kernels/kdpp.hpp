// SPDX-License-Identifier: Apache-2.0
/// @file
/// Functors of the CUDA backend's greedy k-DPP: the dot products in backend/common's order
/// (`fusemix::detail::dot`), the diagonal, one step's coordinates and residuals, and the
/// reductions that pick the next item.
#pragma once

#include <cstddef>
#include <limits>

#include <fusemix/backend/common/dot.hpp>
#include <fusemix/backend/common/math.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::cuda::detail {

// Why the row pass is two `for_n` passes and not a cuBLAS GEMV or a `for_rows` block per row:
// a GEMV's blocking decides its summation order per row position, so equal rows need not give
// equal bits and the lowest-index rule for duplicates would break (and SGEMV sums in float,
// which changes the picks). A block per row reduces in an order that depends on the block, not
// the CPU's, and at D = 384 leaves most of 256 threads idle. `dot_partials` threads per row
// instead compute the CPU's partial sums (coalesced: they read 32 consecutive bytes twice per
// `dot_lanes` columns), and one thread per row combines them in the CPU's order. Rows go in
// chunks, so the partials never take more than `kdpp_chunk_rows · dot_partials` doubles.
inline constexpr std::size_t kdpp_chunk_rows = std::size_t{1} << 20;
inline constexpr std::size_t kdpp_no_item = static_cast<std::size_t>(-1);  // == fusemix::detail::no_item

FUSEMIX_HOST_DEVICE constexpr double kdpp_minus_infinity() noexcept { return -std::numeric_limits<double>::infinity(); }

/// Partial `l` of row `first + t / dot_partials`'s dot product with `other` (with itself when
/// null): lanes l and l + dot_partials summed over the whole blocks of `dot_lanes` columns.
template <class T>
struct kdpp_lane_dots {
  const T* z;
  std::size_t cols, first;
  const T* other;
  double* partial;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t t) const {
    using fusemix::detail::dot_lanes;
    using fusemix::detail::dot_partials;
    const std::size_t l = t % dot_partials;
    const T* a = z + (first + t / dot_partials) * cols;
    const T* b = other != nullptr ? other : a;
    double lo = 0, hi = 0;
    for (std::size_t c = 0; c + dot_lanes <= cols; c += dot_lanes) {
      lo += static_cast<double>(a[c + l]) * static_cast<double>(b[c + l]);
      hi += static_cast<double>(a[c + dot_partials + l]) * static_cast<double>(b[c + dot_partials + l]);
    }
    partial[t] = lo + hi;
  }
};

/// A row's dot product from its partials: their fixed reduction, then the columns past the last
/// whole block.
template <class T>
FUSEMIX_HOST_DEVICE inline double kdpp_finish_dot(const double* partials, const T* a, const T* b, std::size_t cols) {
  return fusemix::detail::combine_dot_partials(partials, fusemix::detail::dot_tail<double>(a, b, cols));
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
  FUSEMIX_HOST_DEVICE void operator()(std::size_t t) const {
    const std::size_t i = first + t;
    const T* a = z + i * cols;
    const double sq = kdpp_finish_dot(partial + t * fusemix::detail::dot_partials, a, a, cols);
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
  T* c;  // coordinate s of item i at c[s·n + i]
  std::size_t n, slot;
  double inv_dj;
  double* d2;
  double* bad_row;  // finite everywhere, but where L_ji was not
  FUSEMIX_HOST_DEVICE void operator()(std::size_t t) const {
    const std::size_t i = first + t;
    T* out = c + slot * n + i;
    const double di = d2[i];
    if (di == kdpp_minus_infinity()) {
      *out = T(0);
      return;
    }
    const double dot = kdpp_finish_dot(partial + t * fusemix::detail::dot_partials, z + i * cols, z + j * cols, cols);
    const double l = static_cast<double>(kernel.from_dots(dot, sq_norm[i], sq_norm[j]));
    if (!fusemix::detail::isfinite(l)) {
      bad_row[i] = l;
      return;
    }
    double acc = 0;
    for (std::size_t s = 0; s < slot; ++s) acc += static_cast<double>(c[s * n + j]) * static_cast<double>(c[s * n + i]);
    const double e = (l - acc) * inv_dj;
    *out = static_cast<T>(e);
    d2[i] = di - e * e;
  }
};

template <class U>
struct kdpp_set {
  U* at;
  U value;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t i) const { at[i] = value; }
};

/// The running result of a reduction over the items: the best candidate and the first bad item.
struct kdpp_best {
  double value;       // −∞ when there is no candidate
  std::size_t index;  // kdpp_no_item when there is no candidate
  std::size_t bad;    // the lowest index whose value is refused, kdpp_no_item if none
};

/// Larger value wins, the lower index among equal values (explicit: a GPU's reduction order is
/// unspecified, and this makes the result independent of it); the lowest bad index.
struct kdpp_best_of {
  FUSEMIX_HOST_DEVICE kdpp_best operator()(const kdpp_best& a, const kdpp_best& b) const {
    const bool a_wins = a.value > b.value || (a.value == b.value && a.index < b.index);
    return {a_wins ? a.value : b.value, a_wins ? a.index : b.index, a.bad < b.bad ? a.bad : b.bad};
  }
};

/// After the diagonal: every d² is a candidate; refused are negative, NaN and infinite ones.
struct kdpp_diagonal_item {
  const double* d2;
  FUSEMIX_HOST_DEVICE kdpp_best operator()(std::size_t i) const {
    const double v = d2[i];
    const bool bad = !(v >= 0) || !fusemix::detail::isfinite(v);
    return {bad ? kdpp_minus_infinity() : v, bad ? kdpp_no_item : i, bad ? i : kdpp_no_item};
  }
};

/// After a step: candidates are the items with d² > −∞; refused are items whose L_ji was not finite.
struct kdpp_step_item {
  const double* d2;
  const double* bad_row;
  FUSEMIX_HOST_DEVICE kdpp_best operator()(std::size_t i) const {
    const double v = d2[i];
    const bool candidate = v > kdpp_minus_infinity();  // false once picked (and for NaN)
    return {candidate ? v : kdpp_minus_infinity(), candidate ? i : kdpp_no_item,
            fusemix::detail::isfinite(bad_row[i]) ? kdpp_no_item : i};
  }
};

}  // namespace fusemix::cuda::detail
