// SPDX-License-Identifier: Apache-2.0
/// @file
/// Row functors of the CUDA backend's LayerNorm, forward and backward.
#pragma once

#include <cstddef>

#include <fusemix/backend/common/math.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::cuda::detail {

/// `y = (x − μ)·rstd·γ + β` per row, keeping μ and rstd = 1/√(σ² + eps).
template <class T>
struct layer_norm_forward_rows {
  const T* x;
  const T* gamma;
  const T* beta;
  T eps;
  T* y;
  T* mean;
  T* rstd;
  std::size_t d;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    const T* xi = x + i * d;
    T s = 0;
    for (std::size_t j = g.rank(); j < d; j += g.size()) s += xi[j];
    const T mu = g.sum(s) / static_cast<T>(d);
    T q = 0;
    for (std::size_t j = g.rank(); j < d; j += g.size()) q += (xi[j] - mu) * (xi[j] - mu);
    const T r = T(1) / fusemix::detail::sqrt(g.sum(q) / static_cast<T>(d) + eps);
    if (g.rank() == 0) mean[i] = mu, rstd[i] = r;
    for (std::size_t j = g.rank(); j < d; j += g.size()) y[i * d + j] = (xi[j] - mu) * r * gamma[j] + beta[j];
  }
};

/// dx of LayerNorm, and dy ⊙ x̂ into `prod` (its column sums are dγ).
template <class T>
struct layer_norm_backward_rows {
  const T* dy;
  const T* x;
  const T* gamma;
  const T* mean;
  const T* rstd;
  T* dx;
  T* prod;
  std::size_t d;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    const std::size_t o = i * d;
    const T mu = mean[i], r = rstd[i];
    T sg = 0, sgx = 0;
    for (std::size_t j = g.rank(); j < d; j += g.size()) {
      const T xh = (x[o + j] - mu) * r, gj = dy[o + j] * gamma[j];
      sg += gj, sgx += gj * xh;
    }
    const T mean_g = g.sum(sg) / static_cast<T>(d), mean_gx = g.sum(sgx) / static_cast<T>(d);
    for (std::size_t j = g.rank(); j < d; j += g.size()) {
      const T xh = (x[o + j] - mu) * r, gj = dy[o + j] * gamma[j];
      prod[o + j] = dy[o + j] * xh;
      dx[o + j] = r * (gj - mean_g - xh * mean_gx);
    }
  }
};

/// Row k of a Linear that reads a LayerNorm's output: dW_k = m_k ⊙ γ + s_k·β and db_k = s_k (or
/// added to them); then m_k becomes w_k ⊙ m_k and ws_k is w_k·s_k (their column sums: dγ, dβ).
template <class T>
struct layer_norm_linear_rows {
  T* m;
  const T* w;
  const T* gamma;
  const T* beta;
  const T* s;
  T* dw;
  T* db;
  T* ws;
  std::size_t d;
  bool accumulate;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t k) const {
    const std::size_t o = k * d;
    const T sk = s[k];
    for (std::size_t j = g.rank(); j < d; j += g.size()) {
      const T mj = m[o + j], wj = w[o + j];
      const T v = mj * gamma[j] + sk * beta[j];
      dw[o + j] = accumulate ? dw[o + j] + v : v;
      m[o + j] = wj * mj;
      ws[o + j] = wj * sk;
    }
    if (g.rank() == 0) db[k] = accumulate ? db[k] + sk : sk;
  }
};

}  // namespace fusemix::cuda::detail
