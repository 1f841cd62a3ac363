// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's k-DPP engine: the per-item primitives of the greedy selector over latents in
/// host memory (`KdppEngine`; the driver is `detail::run_greedy_kdpp` in select/kdpp_impl.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include <fusemix/backend/common/dot.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/config.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/select/kernels.hpp>

namespace fusemix {
namespace detail {

inline constexpr std::size_t no_item = static_cast<std::size_t>(-1);

/// The CPU primitives of the greedy k-DPP, over N items.
///
/// Design: the algorithm (`run_greedy_kdpp`) is written once and only calls these members;
/// the CUDA backend supplies the same set over device memory. Each member is one of the
/// primitives a GPU has: `kernel_row` is a GEMV over the latents plus an elementwise map,
/// `project` a GEMV over the c vectors plus an elementwise update of every residual, `argmax` a
/// reduction (lowest index among equal values), `rotate` an elementwise pass over the c vectors.
/// The per-item state lives here (the c vectors in `T`, the residuals in `Acc`); the driver
/// holds only indices, scalars and the small window factor.
///
/// Layout: the c vectors are stored step-major, one row of N (padded to a multiple of `lanes`)
/// per coordinate, as cuBLAS would want them: each step appends one contiguous row, and the
/// GEMV streams the rows it needs. Every item goes through the same fixed-shape arithmetic (no
/// scalar remainder loop that could round differently), so equal items stay bit-equal.
///
/// A picked item's residual is set to −∞: it is never picked again, and −∞ absorbs its updates.
template <Scalar T, class K, class Acc = double>
class kdpp_cpu_engine {
 public:
  /// The type of the residuals and running sums.
  using accumulator = Acc;

  kdpp_cpu_engine(const latent_view<T>& z, const K& kernel, std::size_t capacity)
      : z_(z), kernel_(kernel), n_(z.rows()), stride_((n_ + lanes - 1) / lanes * lanes),
        capacity_(capacity), c_(stride_ * capacity), d2_(stride_, -infinity), row_(stride_, Acc(0)),
        zj_(z.cols()) {
    if constexpr (DotProductKernel<K>) {
      sq_norm_.resize(n_);
      for (std::size_t i = 0; i < n_; ++i) sq_norm_[i] = dot<double>(z_.row(i).data(), z_.row(i).data(), z_.cols());
    } else if constexpr (RowKernel<K, T>) {
      user_row_.resize(n_);
    }
  }

  [[nodiscard]] std::size_t size() const noexcept { return n_; }

  /// d_i² = L_ii for every item; returns max_i L_ii.
  /// @throws numeric_error on a negative or NaN diagonal entry.
  Acc init_diagonal() {
    Acc max_diag = 0;
    for (std::size_t i = 0; i < n_; ++i) {
      const double l = diagonal(i);
      if (!(l >= 0))  // also catches NaN
        throw_expected<numeric_error>("fusemix::greedy_kdpp", "the kernel's diagonal must be non-negative",
                                      ">= 0", concat(l, " at item ", i));
      if (std::isinf(l))
        throw_expected<numeric_error>("fusemix::greedy_kdpp", "the kernel must return finite values",
                                      "finite", concat(l, " at items (", i, ", ", i, ")"));
      d2_[i] = static_cast<Acc>(l);
      max_diag = std::max(max_diag, d2_[i]);
    }
    return max_diag;
  }

  /// The item with the largest residual and that residual; the lowest index among equal
  /// residuals; `no_item` when every item is picked.
  [[nodiscard]] std::pair<std::size_t, Acc> argmax() const noexcept {
    std::size_t best = no_item;
    Acc best_d2 = -infinity;
    for (std::size_t i = 0; i < n_; ++i)
      if (d2_[i] > best_d2) {  // strict: a later equal value never displaces an earlier one
        best_d2 = d2_[i];
        best = i;
      }
    return {best, best_d2};
  }

  [[nodiscard]] Acc residual(std::size_t i) const noexcept { return d2_[i]; }

  /// Marks `j` picked: it leaves the candidates.
  void exclude(std::size_t j) noexcept { d2_[j] = -infinity; }

  /// The first `m` coordinates of item `j` (the new row of the window factor).
  void coordinates(std::size_t j, std::size_t m, std::span<double> out) const {
    for (std::size_t s = 0; s < m; ++s) out[s] = static_cast<double>(c_[s * stride_ + j]);
  }

  /// row_i = L_ij for every candidate i.
  /// @throws numeric_error if the kernel gives a non-finite value.
  void kernel_row(std::size_t j) {
    if constexpr (DotProductKernel<K>) {
      const auto zj = z_.row(j);
      std::copy(zj.begin(), zj.end(), zj_.begin());  // widened once; the products are the same
      for (std::size_t i = 0; i < n_; ++i)
        if (candidate(i))
          row_[i] = static_cast<Acc>(kernel_.from_dots(dot<double>(z_.row(i).data(), zj_.data(), zj_.size()),
                                                       sq_norm_[i], sq_norm_[j]));
    } else if constexpr (RowKernel<K, T>) {
      kernel_.row(z_, j, std::span<T>(user_row_));
      for (std::size_t i = 0; i < n_; ++i) row_[i] = static_cast<Acc>(user_row_[i]);
    } else {
      const auto zj = z_.row(j);
      for (std::size_t i = 0; i < n_; ++i)
        if (candidate(i)) row_[i] = static_cast<Acc>(static_cast<double>(kernel_(z_.row(i), zj)));
    }
    for (std::size_t i = 0; i < n_; ++i)
      if (candidate(i) && !std::isfinite(row_[i]))
        throw_expected<numeric_error>("fusemix::greedy_kdpp", "the kernel must return finite values",
                                      "finite", concat(row_[i], " at items (", j, ", ", i, ")"));
  }

  /// Appends coordinate `slot` for every item: e_i = (L_ji − ⟨c_j, c_i⟩) / d_j, stored in
  /// c_i[slot], and d_i² −= e_i². Needs `kernel_row(j)` first.
  ///
  /// ⟨c_j, c_i⟩ is a GEMV over the first `slot` rows, blocked over items so the running sums
  /// stay in L1; each item's sum runs over s = 0, 1, ... in order.
  void project(std::size_t j, std::size_t slot, Acc dj) {
    FUSEMIX_ASSERT(slot < capacity_);
    cj_.resize(slot);
    for (std::size_t s = 0; s < slot; ++s) cj_[s] = static_cast<Acc>(c_[s * stride_ + j]);
    const Acc inv_dj = Acc(1) / dj;
    alignas(64) Acc acc[block];
    for (std::size_t i0 = 0; i0 < stride_; i0 += block) {
      const std::size_t len = std::min(block, stride_ - i0);  // a multiple of `lanes`
      std::fill(acc, acc + len, Acc(0));
      std::size_t s = 0;
      for (; s + 4 <= slot; s += 4) {  // four rows per pass over acc, added in row order
        const T* r0 = c_.data() + s * stride_ + i0;
        const T *r1 = r0 + stride_, *r2 = r1 + stride_, *r3 = r2 + stride_;
        const Acc a0 = cj_[s], a1 = cj_[s + 1], a2 = cj_[s + 2], a3 = cj_[s + 3];
        for (std::size_t i = 0; i < len; i += lanes)
          for (std::size_t l = i; l < i + lanes; ++l)
            acc[l] = (((acc[l] + a0 * static_cast<Acc>(r0[l])) + a1 * static_cast<Acc>(r1[l])) +
                      a2 * static_cast<Acc>(r2[l])) + a3 * static_cast<Acc>(r3[l]);
      }
      for (; s < slot; ++s) {
        const T* r0 = c_.data() + s * stride_ + i0;
        const Acc a0 = cj_[s];
        for (std::size_t i = 0; i < len; i += lanes)
          for (std::size_t l = i; l < i + lanes; ++l) acc[l] += a0 * static_cast<Acc>(r0[l]);
      }
      T* out = c_.data() + slot * stride_ + i0;
      Acc* d2 = d2_.data() + i0;
      const Acc* row = row_.data() + i0;
      for (std::size_t i = 0; i < len; i += lanes)
        for (std::size_t l = i; l < i + lanes; ++l) {
          // picked items and padding keep c = 0 and d² = −∞ (their row entry may be stale)
          const Acc e = d2[l] == -infinity ? Acc(0) : (row[l] - acc[l]) * inv_dj;
          out[l] = static_cast<T>(e);
          d2[l] -= e * e;
        }
    }
  }

  /// Window: applies the Givens rotations `rot[a] = (cos, sin)` on coordinates (a, a+1),
  /// a = 0, 1, ..., to the first `m` coordinates of every item, then drops coordinate m−1:
  /// its square returns to the residual and the row is cleared.
  void rotate(std::span<const std::pair<double, double>> rot, std::size_t m) {
    FUSEMIX_ASSERT(rot.size() + 1 == m && m <= capacity_);
    alignas(64) double carry[block];
    for (std::size_t i0 = 0; i0 < stride_; i0 += block) {
      const std::size_t len = std::min(block, stride_ - i0);
      const T* first = c_.data() + i0;
      for (std::size_t l = 0; l < len; ++l) carry[l] = static_cast<double>(first[l]);
      for (std::size_t a = 0; a + 1 < m; ++a) {
        const auto [cs, sn] = rot[a];
        T* ra = c_.data() + a * stride_ + i0;
        const T* rb = ra + stride_;
        for (std::size_t l = 0; l < len; ++l) {
          const double y = static_cast<double>(rb[l]);
          ra[l] = static_cast<T>(cs * carry[l] + sn * y);
          carry[l] = -sn * carry[l] + cs * y;
        }
      }
      T* last = c_.data() + (m - 1) * stride_ + i0;
      for (std::size_t l = 0; l < len; ++l) {
        d2_[i0 + l] += static_cast<Acc>(carry[l] * carry[l]);
        last[l] = T(0);
      }
    }
  }

 private:
  static constexpr std::size_t lanes = 16;   // items per fixed-shape chunk
  static constexpr std::size_t block = 512;  // items per L1-resident block of running sums
  static constexpr Acc infinity = std::numeric_limits<Acc>::infinity();

  [[nodiscard]] bool candidate(std::size_t i) const noexcept { return d2_[i] != -infinity; }

  /// L_ii from the same code that fills the rows, so L_jj in row j equals it exactly.
  [[nodiscard]] double diagonal(std::size_t i) const {
    if constexpr (DotProductKernel<K>)
      return static_cast<double>(static_cast<Acc>(kernel_.from_dots(sq_norm_[i], sq_norm_[i], sq_norm_[i])));
    else if constexpr (RowKernel<K, T>)
      // A user's row() delivers values of type T (its interface is a span<T>); round the diagonal
      // the same way, so that it matches what row() gives for the same pair.
      return static_cast<double>(static_cast<Acc>(static_cast<T>(kernel_(z_.row(i), z_.row(i)))));
    else
      return static_cast<double>(kernel_(z_.row(i), z_.row(i)));
  }

  latent_view<T> z_;
  const K& kernel_;
  std::size_t n_, stride_, capacity_;
  std::vector<T> c_;             // capacity × stride, step-major: coordinate s of item i at s·stride + i
  std::vector<Acc> d2_, row_;    // residuals (−∞ once picked, and for padding); the current kernel row
  std::vector<Acc> cj_;          // c_j of the current pick, widened once per step
  std::vector<double> zj_;       // z_j of the current pick, widened once per step
  std::vector<double> sq_norm_;  // |z_i|², dot-product kernels only
  std::vector<T> user_row_;      // RowKernel output buffer
};

}  // namespace detail

namespace cpu {

/// The k-DPP group of `cpu::backend` (`KdppEngineFactory`).
template <Scalar T>
class kdpp_ops {
 public:
  /// The engine over `z` (host memory, kept by reference, as `kernel`) that keeps coordinates for
  /// `capacity` picks; accumulates in `Acc`.
  template <class Acc = double, class K>
  [[nodiscard]] detail::kdpp_cpu_engine<T, K, Acc> make_kdpp_engine(const latent_view<T>& z, const K& kernel,
                                                                    std::size_t capacity) const {
    return {z, kernel, capacity};
  }
};

}  // namespace cpu
}  // namespace fusemix
