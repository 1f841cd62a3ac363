// SPDX-License-Identifier: Apache-2.0
/// @file
/// The row functor of the CUDA backend's top-k merge (`f(group, row, scratch)`, see
/// `for_rows_scratch`): one query's best k so far and a block of its similarities, merged in the
/// group's scratch memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include <fusemix/core/config.hpp>

namespace fusemix::cuda::detail {

/// Whether (sa, xa) ranks before (sb, xb): the higher score, then the lower index.
template <class T>
FUSEMIX_HOST_DEVICE inline bool ranks_before(T sa, std::int64_t xa, T sb, std::int64_t xb) noexcept {
  return sa > sb || (sa == sb && xa < xb);
}

/// Sorts the first `n` (score, index) pairs of `s`, `x` best first, with a bitonic network over
/// the next power of two (padded with pairs that rank last), the group's threads taking the
/// compare-exchanges of each stage in turn. Ends with every thread past the last stage.
template <class G, class T>
FUSEMIX_HOST_DEVICE void sort_best_first(const G& g, T* s, std::int64_t* x, std::size_t n) {
  std::size_t p = 1;
  while (p < n) p <<= 1;
  for (std::size_t t = n + g.rank(); t < p; t += g.size()) {
    s[t] = std::numeric_limits<T>::lowest();
    x[t] = std::numeric_limits<std::int64_t>::max();
  }
  g.sync();
  for (std::size_t len = 2; len <= p; len <<= 1)
    for (std::size_t stride = len / 2; stride > 0; stride >>= 1) {
      for (std::size_t t = g.rank(); t < p; t += g.size()) {
        const std::size_t u = t ^ stride;
        if (u < t) continue;
        // Within a run of `len` that ends up best first (bit `len` of t clear), t keeps the
        // better pair; in the others, u does.
        if (ranks_before(s[u], x[u], s[t], x[t]) == ((t & len) == 0)) {
          const T sv = s[t];
          const std::int64_t xv = x[t];
          s[t] = s[u], x[t] = x[u];
          s[u] = sv, x[u] = xv;
        }
      }
      g.sync();
    }
}

/// Query row `i` of a similarity block (`sims`, `cols` wide; its column j is gallery row
/// `first_index + j`) merged into the query's best (`best_s`, `best_i`: `k` per row, the first
/// `filled` valid, best first). The scratch holds `capacity` pairs (a power of two, at least
/// 2k) and a counter: the current best, then the candidates of one window of `capacity − k`
/// columns that beat the k-th best so far (all of them while fewer than k are kept), appended in
/// any order and then sorted with the best. The order of the pairs is total (indices differ),
/// so the result does not depend on the order of the appends.
template <class T>
struct merge_top_k_rows {
  const T* sims;
  std::size_t cols;
  std::int64_t first_index;
  std::size_t filled, k, capacity;
  T* best_s;
  std::int64_t* best_i;

  /// The scratch bytes for `capacity` pairs and the counter.
  static constexpr std::size_t scratch_bytes(std::size_t capacity) noexcept {
    return capacity * (sizeof(std::int64_t) + sizeof(T)) + 16;
  }

  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i, void* scratch) const {
    auto* x = static_cast<std::int64_t*>(scratch);
    T* s = reinterpret_cast<T*>(x + capacity);
    auto* count = reinterpret_cast<unsigned*>(s + capacity);
    const T* row = sims + i * cols;
    T* bs = best_s + i * k;
    std::int64_t* bx = best_i + i * k;
    for (std::size_t t = g.rank(); t < filled; t += g.size()) s[t] = bs[t], x[t] = bx[t];
    std::size_t have = filled;
    const std::size_t window = capacity - k;
    for (std::size_t w0 = 0; w0 < cols; w0 += window) {
      if (g.rank() == 0) *count = 0;
      g.sync();
      const bool full = have == k;
      const T bar = full ? s[k - 1] : T(0);
      const std::size_t end = w0 + window < cols ? w0 + window : cols;
      for (std::size_t j = w0 + g.rank(); j < end; j += g.size()) {
        const T v = row[j];
        if (!full || v > bar) {  // an equal score loses: its index is higher
          const std::size_t at = have + g.fetch_add(count, 1u);
          s[at] = v;
          x[at] = first_index + static_cast<std::int64_t>(j);
        }
      }
      g.sync();
      const std::size_t m = *count;
      if (m == 0) continue;
      sort_best_first(g, s, x, have + m);
      have = have + m < k ? have + m : k;
    }
    for (std::size_t t = g.rank(); t < have; t += g.size()) bs[t] = s[t], bx[t] = x[t];
  }
};

}  // namespace fusemix::cuda::detail
