// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's search group: merging a block of similarities into each query's best k.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <Eigen/Core>

#include <fusemix/backend/cpu/parallel.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cpu {

/// The search group of `cpu::backend` (`SearchOps`).
template <Scalar T>
class search_ops {
 public:
  /// `top_k`'s blocks when the caller leaves them to the backend: 4,096 queries × 1,024 gallery
  /// rows (16 MB of float similarities, in cache while they are selected; the fastest shape of
  /// those measured with Eigen and OpenBLAS on 2 cores, benchmarks/RESULTS.md).
  static constexpr std::size_t search_query_block = 4096, search_gallery_block = 1024;
  /// No limit on `k` here.
  static constexpr std::size_t max_top_k = std::numeric_limits<std::size_t>::max();

  /// Merges the block `sims` (query `first_query + i` against gallery row `first_index + j` at
  /// `(i, j)`) into each query's best: rows `first_query …` of `best_scores` (its columns are `k`)
  /// and of the row-major `best_indices`, of which the first `filled` entries of every row are
  /// valid, best first (higher score, then lower index). Afterwards `min(k, filled + sims.cols())`
  /// are. The gallery rows of a block must follow those already merged (`first_index` at least
  /// their count), so that an equal score keeps the earlier row.
  ///
  /// Every query is merged on its own (on the backend's threads: `for_each_row`), so the result
  /// does not depend on the thread count.
  template <class S, class M>
  void merge_top_k(const S& sims, std::size_t first_query, std::int64_t first_index, std::size_t filled,
                   M& best_scores, std::int64_t* best_indices) const {
    const auto n = sims.rows(), cols = sims.cols();
    const auto k = static_cast<std::size_t>(best_scores.cols());
    for_each_row(n, cols, [&](Eigen::Index i) {
      const auto q = static_cast<Eigen::Index>(first_query) + i;
      T* s = &best_scores(q, 0);
      std::int64_t* x = best_indices + static_cast<std::size_t>(q) * k;
      std::size_t have = filled;
      // A sorted array: k is small next to a block, and most candidates lose to the k-th.
      for (Eigen::Index j = 0; j < cols; ++j) {
        const T v = sims(i, j);
        if (have == k && !(v > s[k - 1])) continue;  // a tie loses: its index is higher
        std::size_t at = std::min(have, k - 1);
        for (; at > 0 && v > s[at - 1]; --at) {
          s[at] = s[at - 1];
          x[at] = x[at - 1];
        }
        s[at] = v;
        x[at] = first_index + j;
        have = std::min(k, have + 1);
      }
    });
  }
};

}  // namespace fusemix::cpu
