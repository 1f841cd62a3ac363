// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's GELU and dropout, alone and fused with the bias of the preceding Linear.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__) && defined(__BMI2__)
#include <immintrin.h>
#endif

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>  // vectorised erf for GELU

#include <fusemix/backend/common/dropout.hpp>
#include <fusemix/backend/common/gelu.hpp>
#include <fusemix/backend/cpu/parallel.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/random.hpp>

namespace fusemix::cpu {

/// The activation and dropout group of `cpu::backend` (`ActivationOps`). Every pass runs a row at a
/// time on the backend's threads (`for_each_row`); dropout masks are drawn per row, in runs of
/// `mask_run` elements on the stack, so the group keeps no state.
template <Scalar T>
class activation_ops {
 public:
  /// `y = GELU(x)` (exact erf form).
  template <class X, class Y>
  void gelu_forward(const X& x, Y& y) const {
    for_each_row(x.rows(), x.cols(), [&](Eigen::Index i) { y.row(i).array() = detail::gelu(x.row(i).array()); });
  }
  /// `dx = dy · GELU'(x)`.
  template <class Dy, class X, class Dx>
  void gelu_backward(const Dy& dy, const X& x, Dx& dx) const {
    for_each_row(x.rows(), x.cols(), [&](Eigen::Index i) {
      dx.row(i).array() = dy.row(i).array() * detail::gelu_grad(x.row(i).array());
    });
  }
  /// `y = mask ⊙ x / (1 − p)` with the mask of `key`.
  template <class X, class Y>
  void dropout_forward(const X& x, const dropout_key& key, Y& y) const {
    if (key.p <= 0.0) {
      for_each_row(x.rows(), x.cols(), [&](Eigen::Index i) { y.row(i) = x.row(i); });
      return;
    }
    for_each_masked_run(key, x.rows(), x.cols(), [&](Eigen::Index i, Eigen::Index c, const auto& mask) {
      y.row(i).segment(c, mask.size()).array() = x.row(i).segment(c, mask.size()).array() * mask;
    });
  }
  /// `dx = mask ⊙ dy / (1 − p)`, regenerating the mask of `key`.
  template <class Dy, class Dx>
  void dropout_backward(const Dy& dy, const dropout_key& key, Dx& dx) const {
    dropout_forward(dy, key, dx);
  }
  /// Fused `a += b` (row-wise bias), `h = dropout(GELU(a))`, a row at a time while the row is in
  /// cache; `a` keeps the pre-activation that backward needs.
  template <class A, class V, class H>
  void bias_gelu_dropout_forward(A& a, const V& b, const dropout_key& key, H& h) const {
    const auto bias = b.transpose().array();
    if (key.p <= 0.0) {
      for_each_row(a.rows(), a.cols(), [&](Eigen::Index i) {
        auto ai = a.row(i).array();
        ai += bias;
        h.row(i).array() = detail::gelu(ai);
      });
      return;
    }
    for_each_masked_run(key, a.rows(), a.cols(), [&](Eigen::Index i, Eigen::Index c, const auto& mask) {
      const Eigen::Index len = mask.size();
      auto ai = a.row(i).segment(c, len).array();
      ai += bias.segment(c, len);
      h.row(i).segment(c, len).array() = detail::gelu(ai) * mask;  // (no select: Eigen 3.4 does not vectorise it)
    });
  }
  /// `da = dh ⊙ mask / (1 − p) ⊙ GELU'(a)`; `da` may be `dh` itself.
  template <class Dh, class A, class Da>
  void gelu_dropout_backward(const Dh& dh, const A& a, const dropout_key& key, Da& da) const {
    if (key.p <= 0.0) {
      gelu_backward(dh, a, da);
      return;
    }
    for_each_masked_run(key, a.rows(), a.cols(), [&](Eigen::Index i, Eigen::Index c, const auto& mask) {
      const Eigen::Index len = mask.size();
      da.row(i).segment(c, len).array() =
          dh.row(i).segment(c, len).array() * mask * detail::gelu_grad(a.row(i).segment(c, len).array());
    });
  }

 private:
  /// Elements of a mask drawn at once (on the stack).
  static constexpr Eigen::Index mask_run = 1024;

  // f(i, c, mask) for every run [c, c + mask.size()) of every row i of an n × w pass, rows on the
  // backend's threads, with the scales of draw `key` for those elements in `mask`.
  template <class F>
  static void for_each_masked_run(const dropout_key& key, Eigen::Index n, Eigen::Index w, F&& f) {
    for_each_row(n, w, [&](Eigen::Index i) {
      alignas(64) T buffer[mask_run];
      for (Eigen::Index c = 0; c < w; c += mask_run) {
        const Eigen::Index len = std::min(mask_run, w - c);
        fill_mask(key, key.offset + static_cast<std::size_t>(i * w + c), len, buffer);
        f(i, c, Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>, Eigen::Aligned64>(buffer, len));
      }
    });
  }

  // Writes into out[0, n) the scale of elements [first, first + n) of draw `key`: 0 for dropped
  // ones, 1/(1−p) for kept ones, by the rule of backend/common/dropout.hpp. Elements come in
  // groups of 64 (sixteen Philox blocks side by side); each group's decisions are one 64-bit word.
  static void fill_mask(const dropout_key& key, std::size_t first, Eigen::Index n, T* mask) {
    const T keep_scale = detail::dropout_keep_scale<T>(key.p);
    const std::uint32_t threshold = detail::dropout_threshold(key.p);
    const std::size_t end = first + static_cast<std::size_t>(n);
    alignas(64) T out[group_size];
    for (std::size_t group = first / group_size; group * group_size < end; ++group) {
      const std::uint64_t kept = group_keeps(key, group, threshold);
      const std::size_t g0 = group * group_size, lo = std::max(g0, first), hi = std::min(g0 + group_size, end);
      if (lo == g0 && hi == g0 + group_size) {
        write_scales(kept, keep_scale, mask + (g0 - first));
      } else {
        write_scales(kept, keep_scale, out);
        for (std::size_t i = lo; i < hi; ++i) mask[i - first] = out[i - g0];
      }
    }
  }

  static constexpr std::size_t lanes = 16, group_size = 4 * lanes;

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
// GCC 12's AVX-512 shift and multiply intrinsics pass an undefined vector that it then reports as
// maybe uninitialised once inlined (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
  // Bit j of the result: whether element 64·group + j of draw `key` is kept (element 4·l + w is
  // word w of the group's l-th Philox block).
  static std::uint64_t group_keeps(const dropout_key& key, std::size_t group, std::uint32_t threshold) {
    const std::uint64_t block0 = group * lanes;
    alignas(64) std::uint32_t c0[lanes], c1[lanes];
    for (std::size_t l = 0; l < lanes; ++l) {
      c0[l] = static_cast<std::uint32_t>(block0 + l);
      c1[l] = static_cast<std::uint32_t>((block0 + l) >> 32);
    }
    const auto k0 = static_cast<std::uint32_t>(key.seed), k1 = static_cast<std::uint32_t>(key.seed >> 32);
    const auto d0 = static_cast<std::uint32_t>(key.draw), d1 = static_cast<std::uint32_t>(key.draw >> 32);
#if defined(__AVX512F__) && defined(__BMI2__)
    // The round of detail::philox_round on sixteen blocks per register. The 32 × 32 → 64-bit
    // products come from vpmuludq on the even and the odd lanes (GCC's own vectorisation of the
    // lane loop widens to vpmullq, about twice the work).
    __m512i x0 = _mm512_load_si512(c0), x1 = _mm512_load_si512(c1);
    __m512i x2 = _mm512_set1_epi32(static_cast<int>(d0)), x3 = _mm512_set1_epi32(static_cast<int>(d1));
    const __m512i m0 = _mm512_set1_epi32(static_cast<int>(detail::philox_m0));
    const __m512i m1 = _mm512_set1_epi32(static_cast<int>(detail::philox_m1));
    std::uint32_t kk0 = k0, kk1 = k1;
    for (int round = 0; round < detail::philox_rounds; ++round) {
      const __m512i e0 = _mm512_mul_epu32(x0, m0), o0 = _mm512_mul_epu32(_mm512_srli_epi64(x0, 32), m0);
      const __m512i e1 = _mm512_mul_epu32(x2, m1), o1 = _mm512_mul_epu32(_mm512_srli_epi64(x2, 32), m1);
      const __m512i hi0 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e0, 32), o0);
      const __m512i hi1 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e1, 32), o1);
      const __m512i lo0 = _mm512_mask_blend_epi32(0xAAAA, e0, _mm512_slli_epi64(o0, 32));
      const __m512i lo1 = _mm512_mask_blend_epi32(0xAAAA, e1, _mm512_slli_epi64(o1, 32));
      x0 = _mm512_ternarylogic_epi32(hi1, x1, _mm512_set1_epi32(static_cast<int>(kk0)), 0x96);  // three-way xor
      x2 = _mm512_ternarylogic_epi32(hi0, x3, _mm512_set1_epi32(static_cast<int>(kk1)), 0x96);
      x1 = lo1, x3 = lo0;
      kk0 += detail::philox_w0, kk1 += detail::philox_w1;
    }
    const __m512i t = _mm512_set1_epi32(static_cast<int>(threshold));
    const auto keeps = [&](__m512i w) -> std::uint64_t {
      return _mm512_cmpge_epu32_mask(_mm512_srli_epi32(w, 8), t);
    };
    // Word w of block l is element 4·l + w: spread each word's 16 decisions to every fourth bit.
    return _pdep_u64(keeps(x0), 0x1111111111111111ull) | _pdep_u64(keeps(x1), 0x2222222222222222ull) |
           _pdep_u64(keeps(x2), 0x4444444444444444ull) | _pdep_u64(keeps(x3), 0x8888888888888888ull);
#else
    alignas(64) std::uint32_t c2[lanes], c3[lanes], kl0[lanes], kl1[lanes];
    for (std::size_t l = 0; l < lanes; ++l) c2[l] = d0, c3[l] = d1, kl0[l] = k0, kl1[l] = k1;
    for (int round = 0; round < detail::philox_rounds; ++round)
      for (std::size_t l = 0; l < lanes; ++l) detail::philox_round(c0[l], c1[l], c2[l], c3[l], kl0[l], kl1[l]);
    std::uint64_t kept = 0;
    for (std::size_t l = 0; l < lanes; ++l) {
      const std::uint64_t w = static_cast<std::uint64_t>(detail::dropout_keeps(c0[l], threshold)) |
                              static_cast<std::uint64_t>(detail::dropout_keeps(c1[l], threshold)) << 1 |
                              static_cast<std::uint64_t>(detail::dropout_keeps(c2[l], threshold)) << 2 |
                              static_cast<std::uint64_t>(detail::dropout_keeps(c3[l], threshold)) << 3;
      kept |= w << (4 * l);
    }
    return kept;
#endif
  }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

  // out[j] = keep_scale where bit j of `kept` is set, else 0, for j in [0, 64).
  static void write_scales(std::uint64_t kept, T keep_scale, T* out) {
#if defined(__AVX512F__) && defined(__BMI2__)
    if constexpr (std::is_same_v<T, float>) {
      const __m512 s = _mm512_set1_ps(keep_scale);
      for (int q = 0; q < 4; ++q)
        _mm512_storeu_ps(out + 16 * q, _mm512_maskz_mov_ps(static_cast<__mmask16>(kept >> (16 * q)), s));
      return;
    } else if constexpr (std::is_same_v<T, double>) {
      const __m512d s = _mm512_set1_pd(keep_scale);
      for (int q = 0; q < 8; ++q)
        _mm512_storeu_pd(out + 8 * q, _mm512_maskz_mov_pd(static_cast<__mmask8>(kept >> (8 * q)), s));
      return;
    }
#endif
    for (std::size_t j = 0; j < group_size; ++j) out[j] = (kept >> j) & 1 ? keep_scale : T(0);
  }
};

}  // namespace fusemix::cpu
