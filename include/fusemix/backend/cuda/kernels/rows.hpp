// SPDX-License-Identifier: Apache-2.0
/// @file
/// Row functors of the CUDA backend's row passes (`f(group, row)`, see `for_rows`): bias rows,
/// the mixup gather and the row normalisation, forward and backward.
#pragma once

#include <cstddef>

#include <cstdint>

#include <fusemix/backend/common/math.hpp>
#include <fusemix/core/config.hpp>
#include <fusemix/detail/file.hpp>

namespace fusemix::cuda::detail {

template <class T>
struct add_row_vector_rows {
  T* y;
  const T* b;
  std::size_t w;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    for (std::size_t j = g.rank(); j < w; j += g.size()) y[i * w + j] += b[j];
  }
};

/// Row i of `out` is row `rows[i]` of a store of `itemsize`-byte floats (2: binary16, 4, 8),
/// converted to `T` exactly as the `.npy` readers convert it (`detail::half_to_float`).
template <class T>
struct gather_stored_rows {
  const unsigned char* z;
  const std::size_t* rows;
  std::size_t d, itemsize;
  T* out;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    const unsigned char* src = z + rows[i] * d * itemsize;  // aligned: rows of d items
    T* o = out + i * d;
    if (itemsize == 2) {
      const auto* h = reinterpret_cast<const std::uint16_t*>(src);
      for (std::size_t j = g.rank(); j < d; j += g.size()) o[j] = static_cast<T>(fusemix::detail::half_to_float(h[j]));
    } else if (itemsize == 4) {
      const auto* f = reinterpret_cast<const float*>(src);
      for (std::size_t j = g.rank(); j < d; j += g.size()) o[j] = static_cast<T>(f[j]);
    } else {
      const auto* f = reinterpret_cast<const double*>(src);
      for (std::size_t j = g.rank(); j < d; j += g.size()) o[j] = static_cast<T>(f[j]);
    }
  }
};

/// Row i of the mix: `lambda · z[ia_i] + (1 − lambda) · z[ib_i]` (a plain copy when λ = 1).
template <class T>
struct gather_mix_rows {
  const T* z;
  const std::size_t* ia;
  const std::size_t* ib;
  T lambda;
  T* out;
  std::size_t d;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    const T* za = z + ia[i] * d;
    const T* zb = z + ib[i] * d;
    T* o = out + i * d;
    if (lambda == T(1))
      for (std::size_t j = g.rank(); j < d; j += g.size()) o[j] = za[j];
    else
      for (std::size_t j = g.rank(); j < d; j += g.size()) o[j] = lambda * za[j] + (T(1) - lambda) * zb[j];
  }
};

/// `n_i = p_i / max(‖p_i‖, eps)`, keeping ‖p_i‖.
template <class T>
struct normalize_rows_forward_rows {
  const T* p;
  T eps;
  T* n;
  T* norms;
  std::size_t d;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    T s = 0;
    for (std::size_t j = g.rank(); j < d; j += g.size()) s += p[i * d + j] * p[i * d + j];
    const T norm = fusemix::detail::sqrt(g.sum(s));
    if (g.rank() == 0) norms[i] = norm;
    const T div = fusemix::detail::max(norm, eps);
    for (std::size_t j = g.rank(); j < d; j += g.size()) n[i * d + j] = p[i * d + j] / div;
  }
};

/// The gradient of `normalize_rows_forward_rows`: `(dn − n·⟨n, dn⟩) / ‖p‖`, or `dn / eps` where
/// the norm was clamped.
template <class T>
struct normalize_rows_backward_rows {
  const T* dn;
  const T* n;
  const T* norms;
  T eps;
  T* dp;
  std::size_t d;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    const std::size_t o = i * d;
    if (norms[i] > eps) {
      T s = 0;
      for (std::size_t j = g.rank(); j < d; j += g.size()) s += n[o + j] * dn[o + j];
      const T dot = g.sum(s);
      for (std::size_t j = g.rank(); j < d; j += g.size()) dp[o + j] = (dn[o + j] - n[o + j] * dot) / norms[i];
    } else {
      for (std::size_t j = g.rank(); j < d; j += g.size()) dp[o + j] = dn[o + j] / eps;
    }
  }
};

}  // namespace fusemix::cuda::detail
