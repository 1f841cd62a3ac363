// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's optimiser: `fusemix::adamw` with each range updated as Eigen arrays.
#pragma once

#include <algorithm>
#include <cstddef>

#include <Eigen/Core>

#include <fusemix/backend/common/adamw.hpp>
#include <fusemix/backend/cpu/parallel.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/optim/adamw.hpp>

namespace fusemix::cpu {

/// A range's AdamW update in chunks of Eigen arrays (vectorised whatever the -O level), the
/// chunks on the backend's threads (`for_each_chunk`); each array statement covers a part small
/// enough to stay in L1 across the update's statements.
struct eigen_adamw_update {
  template <class T>
  static void apply(T* p, const T* g, T* m, T* v, std::size_t n, bool decay, const detail::adamw_constants<T>& c) {
    using array = Eigen::Array<T, Eigen::Dynamic, 1>;
    constexpr Eigen::Index part = 1024;
    for_each_chunk(static_cast<Eigen::Index>(n), [&](Eigen::Index first, Eigen::Index count) {
      for (Eigen::Index at = first; at < first + count; at += part) {
        const Eigen::Index len = std::min(part, first + count - at);
        Eigen::Map<array> pa(p + at, len), ma(m + at, len), va(v + at, len);
        const Eigen::Map<const array> ga(g + at, len);
        detail::adamw_update(pa, ma, va, ga, c, decay);
      }
    });
  }
};

/// The CPU optimiser type.
template <Scalar T>
using adamw = fusemix::adamw<T, eigen_adamw_update>;

/// The optimiser group of `cpu::backend` (`OptimizerFactory`).
template <Scalar T>
class optimizer_ops {
 public:
  /// An AdamW over host memory, vectorised.
  [[nodiscard]] adamw<T> make_optimizer(const adamw_options& o) const { return adamw<T>(o); }
};

}  // namespace fusemix::cpu
