// SPDX-License-Identifier: Apache-2.0
/// @file
/// The functor of the CUDA backend's fused AdamW: backend/common's update, one element per index.
#pragma once

#include <cstddef>
#include <cstdint>

#include <fusemix/backend/common/adamw.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::cuda::detail {

/// Element i of a segment: its moments and parameter updated by `fusemix::detail::adamw_update`,
/// decayed where its flag (or, without flags, `decay_all`) says.
template <class T>
struct adamw_elements {
  T* p;
  const T* g;
  T* m;
  T* v;
  const std::uint8_t* decay_mask;  // null: `decay_all` for every element
  bool decay_all;
  fusemix::detail::adamw_constants<T> c;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t i) const {
    // In registers: the update reads its own results, which through the pointers would be
    // reloads (the compiler cannot rule out aliasing).
    T pi = p[i], mi = m[i], vi = v[i];
    const T gi = g[i];
    fusemix::detail::adamw_update(pi, mi, vi, gi, c, decay_mask != nullptr ? decay_mask[i] != 0 : decay_all);
    p[i] = pi, m[i] = mi, v[i] = vi;
  }
};

}  // namespace fusemix::cuda::detail
