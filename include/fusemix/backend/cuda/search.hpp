// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's search group: merging a block of similarities into each query's best k.
#pragma once

#include <cstddef>
#include <cstdint>

#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/search.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cuda {

/// The search group of `cuda::backend` (`SearchOps`), which is `Derived`.
template <Scalar T, System S, class Derived>
class search_ops {
 public:
  /// `top_k`'s blocks when the caller leaves them to the backend: 4,096 queries × 16,384 gallery
  /// rows (256 MB of float similarities: GEMMs large enough to fill a GPU).
  static constexpr std::size_t search_query_block = 4096, search_gallery_block = 16384;
  /// The largest `k`: a query's best k and one window of candidates share a block's shared
  /// memory (`capacity` pairs).
  static constexpr std::size_t max_top_k = 1024;

  /// As `cpu::backend::merge_top_k` (the same result): a thread block per query; the candidates
  /// that beat the query's k-th best are gathered in shared memory a window at a time and sorted
  /// with the best k (a bitonic network).
  template <class Sm, class M>
  void merge_top_k(const Sm& sims, std::size_t first_query, std::int64_t first_index, std::size_t filled,
                   M& best_scores, std::int64_t* best_indices) const {
    const auto prof = self().ctx().profile("merge_top_k");
    const std::size_t k = best_scores.cols();
    using rows = detail::merge_top_k_rows<T>;
    for_rows_scratch(self().ctx(), sims.rows(), rows::scratch_bytes(capacity),
                     rows{sims.data(), sims.cols(), first_index, filled, k, capacity,
                          best_scores.data() + first_query * k, best_indices + first_query * k});
  }

 private:
  static constexpr std::size_t capacity = 2 * max_top_k;  // 24 KiB (float) or 32 KiB (double)
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

}  // namespace fusemix::cuda
