// SPDX-License-Identifier: Apache-2.0
/// @file
/// Functors of the CUDA backend's GELU and dropout, alone and fused (bias + GELU + dropout
/// forward, GELU·dropout backward). GELU and the dropout mask are backend/common's, so the masks
/// are the CPU's, element for element.
#pragma once

#include <cstddef>
#include <cstdint>

#include <fusemix/backend/common/dropout.hpp>
#include <fusemix/backend/common/gelu.hpp>
#include <fusemix/backend/cuda/kernels/elementwise.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::cuda::detail {

/// A `dropout_key` in the form the functors use: the threshold and the kept elements' scale are
/// computed once on the host (`fusemix::detail::dropout_threshold`, `dropout_keep_scale`).
template <class T>
struct mask_key {
  std::uint64_t seed = 0, draw = 0;
  std::uint32_t threshold = 0;
  T keep_scale = 1;
  bool active = false;
  std::uint64_t offset = 0;  // the draw's index of element 0 (dropout_key::offset)

  static mask_key of(const dropout_key& k) {
    return {k.seed, k.draw, fusemix::detail::dropout_threshold(k.p), fusemix::detail::dropout_keep_scale<T>(k.p),
            k.p > 0.0, k.offset};
  }
  /// Whether elements 4q … 4q + 3 of the matrix share one Philox block.
  [[nodiscard]] FUSEMIX_HOST_DEVICE bool quads_aligned() const noexcept { return offset % 4 == 0; }
  /// The scales of elements e … e + 3, which share one Philox block (`quads_aligned()`, e % 4 == 0).
  FUSEMIX_HOST_DEVICE void quad_scales(std::uint64_t e, T out[4]) const noexcept {
    const auto r = fusemix::detail::dropout_block(seed, draw, (offset + e) / 4);
    for (int w = 0; w < 4; ++w) out[w] = fusemix::detail::dropout_keeps(r[w], threshold) ? keep_scale : T(0);
  }
  FUSEMIX_HOST_DEVICE T scale(std::uint64_t element) const noexcept {
    const std::uint64_t m = offset + element;
    const auto r = fusemix::detail::dropout_block(seed, draw, m / 4);
    return fusemix::detail::dropout_keeps(r[m % 4], threshold) ? keep_scale : T(0);
  }
};

// Calls f(flat index, mask scale) for the elements of row i (width w) that thread `rank` of
// `size` owns: four consecutive elements per Philox block where rows start on a block boundary,
// so each block is generated once.
template <class T, class G, class F>
FUSEMIX_HOST_DEVICE inline void masked_row(const G& g, const mask_key<T>& key, std::size_t i, std::size_t w,
                                           const F& f) {
  const std::size_t first = i * w;
  if (!key.active) {
    for (std::size_t j = g.rank(); j < w; j += g.size()) f(first + j, T(1));
  } else if (w % 4 == 0 && key.quads_aligned()) {
    for (std::size_t q = 4 * g.rank(); q < w; q += 4 * g.size()) {
      T s[4];
      key.quad_scales(first + q, s);
      for (int l = 0; l < 4; ++l) f(first + q + l, s[l]);
    }
  } else {
    for (std::size_t j = g.rank(); j < w; j += g.size()) f(first + j, key.scale(first + j));
  }
}

// Rows of a width divisible by four, starting 16-byte aligned: a thread per four elements, which
// share one Philox block (element index first + q is a multiple of four).
template <class T, class G, class F>
FUSEMIX_HOST_DEVICE inline void row_quads(const G& g, const mask_key<T>& key, std::size_t first, std::size_t w,
                                          const F& f) {
  for (std::size_t q = 4 * g.rank(); q < w; q += 4 * g.size()) {
    T s[4] = {T(1), T(1), T(1), T(1)};
    if (key.active) key.quad_scales(first + q, s);
    f(q, s);
  }
}

/// `a += bias` (row-wise), `h = dropout(GELU(a))`.
template <class T>
struct bias_gelu_dropout_rows {
  T* a;
  const T* bias;
  T* h;
  std::size_t w;
  mask_key<T> key;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    const std::size_t first = i * w;
    if (w % 4 == 0 && key.quads_aligned() && aligned16(a + first, h + first, bias)) {
      row_quads<T>(g, key, first, w, [&](std::size_t q, const T s[4]) {
        T x[4], b[4], y[4];
        load4(a + first + q, x);
        load4(bias + q, b);
        for (int l = 0; l < 4; ++l) x[l] += b[l], y[l] = fusemix::detail::gelu(x[l]) * s[l];  // (× 1 is exact)
        store4(a + first + q, x);
        store4(h + first + q, y);
      });
      return;
    }
    masked_row<T>(g, key, i, w, [&](std::size_t e, T s) {
      const T x = a[e] + bias[e - first];
      a[e] = x;
      h[e] = fusemix::detail::gelu(x) * s;
    });
  }
};

/// `da = dh ⊙ mask / (1 − p) ⊙ GELU'(a)`; `da` may be `dh`.
template <class T>
struct gelu_dropout_backward_rows {
  const T* dh;
  const T* a;
  T* da;
  std::size_t w;
  mask_key<T> key;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    const std::size_t first = i * w;
    if (w % 4 == 0 && key.quads_aligned() && aligned16(dh + first, a + first, da + first)) {
      row_quads<T>(g, key, first, w, [&](std::size_t q, const T s[4]) {
        T d[4], x[4], y[4];
        load4(dh + first + q, d);
        load4(a + first + q, x);
        for (int l = 0; l < 4; ++l) y[l] = d[l] * s[l] * fusemix::detail::gelu_grad(x[l]);  // (× 1 is exact)
        store4(da + first + q, y);
      });
      return;
    }
    masked_row<T>(g, key, i, w, [&](std::size_t e, T s) { da[e] = dh[e] * s * fusemix::detail::gelu_grad(a[e]); });
  }
};

template <class T>
struct dropout_elements {
  const T* x;
  T* y;
  mask_key<T> key;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t e) const { y[e] = x[e] * key.scale(e); }
};

template <class T>
struct gelu_elements {
  const T* x;
  T* y;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t e) const { y[e] = fusemix::detail::gelu(x[e]); }
};

template <class T>
struct gelu_backward_elements {
  const T* dy;
  const T* x;
  T* dx;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t e) const { dx[e] = dy[e] * fusemix::detail::gelu_grad(x[e]); }
};

}  // namespace fusemix::cuda::detail
