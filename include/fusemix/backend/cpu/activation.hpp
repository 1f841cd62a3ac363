// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's GELU and dropout, alone and fused with the bias of the preceding Linear.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

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
  // ones, 1/(1−p) for kept ones, by the rule of backend/common/dropout.hpp. Sixteen Philox blocks
  // run side by side in plain lane loops (the round is inlined) that the compiler vectorises.
  static void fill_mask(const dropout_key& key, std::size_t first, Eigen::Index n, T* mask) {
    const T keep_scale = detail::dropout_keep_scale<T>(key.p);
    const std::uint32_t threshold = detail::dropout_threshold(key.p);
    constexpr std::size_t lanes = 16;
    const auto draw_lo = static_cast<std::uint32_t>(key.draw), draw_hi = static_cast<std::uint32_t>(key.draw >> 32);
    const std::size_t end = first + static_cast<std::size_t>(n);
    alignas(64) std::uint32_t c0[lanes], c1[lanes], c2[lanes], c3[lanes], k0[lanes], k1[lanes];
    alignas(64) T out[4 * lanes];
    for (std::size_t group = first / (4 * lanes); group * 4 * lanes < end; ++group) {
      const std::uint64_t block0 = group * lanes;
      for (std::size_t l = 0; l < lanes; ++l) {
        c0[l] = static_cast<std::uint32_t>(block0 + l);
        c1[l] = static_cast<std::uint32_t>((block0 + l) >> 32);
        c2[l] = draw_lo;
        c3[l] = draw_hi;
        k0[l] = static_cast<std::uint32_t>(key.seed);
        k1[l] = static_cast<std::uint32_t>(key.seed >> 32);
      }
      for (int round = 0; round < detail::philox_rounds; ++round)
        for (std::size_t l = 0; l < lanes; ++l) detail::philox_round(c0[l], c1[l], c2[l], c3[l], k0[l], k1[l]);
      for (std::size_t l = 0; l < lanes; ++l) {
        out[4 * l + 0] = detail::dropout_keeps(c0[l], threshold) ? keep_scale : T(0);
        out[4 * l + 1] = detail::dropout_keeps(c1[l], threshold) ? keep_scale : T(0);
        out[4 * l + 2] = detail::dropout_keeps(c2[l], threshold) ? keep_scale : T(0);
        out[4 * l + 3] = detail::dropout_keeps(c3[l], threshold) ? keep_scale : T(0);
      }
      const std::size_t g0 = group * 4 * lanes, lo = std::max(g0, first), hi = std::min(g0 + 4 * lanes, end);
      for (std::size_t i = lo; i < hi; ++i) mask[i - first] = out[i - g0];
    }
  }
};

}  // namespace fusemix::cpu
