// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's optimiser: `fusemix::adamw` with each range updated as Eigen arrays.
#pragma once

#include <algorithm>
#include <cstddef>

#include <Eigen/Core>

#include <fusemix/backend/common/adamw.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/optim/adamw.hpp>

namespace fusemix::cpu {

/// A range's AdamW update in chunks of Eigen arrays (vectorised whatever the -O level); each
/// chunk is small enough to stay in L1 across the update's statements.
struct eigen_adamw_update {
  template <class T>
  static void apply(T* p, const T* g, T* m, T* v, std::size_t n, bool decay, const detail::adamw_constants<T>& c) {
    using array = Eigen::Array<T, Eigen::Dynamic, 1>;
    constexpr std::size_t chunk = 1024;
    for (std::size_t at = 0; at < n; at += chunk) {
      const auto len = static_cast<Eigen::Index>(std::min(chunk, n - at));
      Eigen::Map<array> pa(p + at, len), ma(m + at, len), va(v + at, len);
      const Eigen::Map<const array> ga(g + at, len);
      detail::adamw_update(pa, ma, va, ga, c, decay);
    }
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
