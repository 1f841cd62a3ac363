// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's k-DPP engine: the per-item primitives of the greedy selector over latents in
/// host memory (`KdppEngine`; the driver is `detail::run_greedy_kdpp` in select/kdpp_impl.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <fusemix/backend/common/dot.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/config.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/select/kernels.hpp>

namespace fusemix {
namespace detail {

inline constexpr std::size_t no_item = static_cast<std::size_t>(-1);

/// L_ii as both CPU engines compute it: from the same code that fills their rows, so that L_jj in
/// row j equals it exactly (a `RowKernel`'s values are rounded to T, as its rows are). `sq_norm`
/// holds |z_i|² for a `DotProductKernel`.
/// @throws numeric_error on a negative, NaN or infinite entry.
template <class Acc, Scalar T, class K>
[[nodiscard]] double checked_diagonal(const K& kernel, const latent_view<T>& z, std::span<const double> sq_norm,
                                      std::size_t i) {
  double l;
  if constexpr (DotProductKernel<K>)
    l = static_cast<double>(static_cast<Acc>(kernel.from_dots(sq_norm[i], sq_norm[i], sq_norm[i])));
  else if constexpr (RowKernel<K, T>)
    l = static_cast<double>(static_cast<Acc>(static_cast<T>(kernel(z.row(i), z.row(i)))));
  else
    l = static_cast<double>(kernel(z.row(i), z.row(i)));
  if (!(l >= 0))  // also catches NaN
    throw_expected<numeric_error>("fusemix::greedy_kdpp", "the kernel's diagonal must be non-negative", ">= 0",
                                  concat(l, " at item ", i));
  if (std::isinf(l))
    throw_expected<numeric_error>("fusemix::greedy_kdpp", "the kernel must return finite values", "finite",
                                  concat(l, " at items (", i, ", ", i, ")"));
  return l;
}

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
      d2_[i] = static_cast<Acc>(checked_diagonal<Acc>(kernel_, z_, sq_norm_, i));
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
    if constexpr (RowKernel<K, T> && !DotProductKernel<K>) {
      kernel_.row(z_, j, std::span<T>(user_row_));
      for (std::size_t i = 0; i < n_; ++i) row_[i] = static_cast<Acc>(user_row_[i]);
      check_row(j);
    } else {
      kernel_row_of(z_.row(j), DotProductKernel<K> ? sq_norm_[j] : 0.0, j);
    }
  }
  /// row_i = K(z_i, zj) for every candidate i, for a pick whose latents `zj` (|zj|² = `sq_norm_j`
  /// for a dot-product kernel) need not be among these items: another process's, when the items
  /// are one shard of a selection across processes (`greedy_kdpp` with a communicator). The same
  /// operations as `kernel_row` on the same values. `j` names the pick in messages.
  void kernel_row_of(std::span<const T> zj, double sq_norm_j, std::size_t j)
    requires(DotProductKernel<K> || !RowKernel<K, T>)
  {
    if constexpr (DotProductKernel<K>) {
      std::copy(zj.begin(), zj.end(), zj_.begin());  // widened once; the products are the same
      for (std::size_t i = 0; i < n_; ++i)
        if (candidate(i))
          row_[i] = static_cast<Acc>(kernel_.from_dots(dot<double>(z_.row(i).data(), zj_.data(), zj_.size()),
                                                       sq_norm_[i], sq_norm_j));
    } else {
      for (std::size_t i = 0; i < n_; ++i)
        if (candidate(i)) row_[i] = static_cast<Acc>(static_cast<double>(kernel_(z_.row(i), zj)));
    }
    check_row(j);
  }

  /// Appends coordinate `slot` for every item: e_i = (L_ji − ⟨c_j, c_i⟩) / d_j, stored in
  /// c_i[slot], and d_i² −= e_i². Needs `kernel_row(j)` first.
  ///
  /// ⟨c_j, c_i⟩ is a GEMV over the first `slot` rows, blocked over items so the running sums
  /// stay in L1; each item's sum runs over s = 0, 1, ... in order.
  void project(std::size_t j, std::size_t slot, Acc dj) {
    cj_.resize(slot);
    for (std::size_t s = 0; s < slot; ++s) cj_[s] = static_cast<Acc>(c_[s * stride_ + j]);
    project_with(slot, dj);
  }
  /// `project` for a pick whose coordinates `cj` (its first `slot`, as `coordinates` gives them)
  /// need not be among these items (`kernel_row_of`).
  void project_of(std::span<const double> cj, std::size_t slot, Acc dj) {
    cj_.resize(slot);
    for (std::size_t s = 0; s < slot; ++s) cj_[s] = static_cast<Acc>(cj[s]);
    project_with(slot, dj);
  }

 private:
  void project_with(std::size_t slot, Acc dj) {
    FUSEMIX_ASSERT(slot < capacity_);
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


 public:
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
  void check_row(std::size_t j) const {
    for (std::size_t i = 0; i < n_; ++i)
      if (candidate(i) && !std::isfinite(row_[i]))
        throw_expected<numeric_error>("fusemix::greedy_kdpp", "the kernel must return finite values",
                                      "finite", concat(row_[i], " at items (", j, ", ", i, ")"));
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

/// The CPU primitives of the greedy k-DPP with lazy evaluation (`kdpp_evaluation::lazy`; no
/// window): the same members as `kdpp_cpu_engine`, and the same operations in the same order
/// (so the same bits, up to the compiler's FMA contraction: see `kdpp_options::evaluation`).
///
/// Residuals only shrink as picks are added, so an item's residual as of its last update (its
/// "stamp", the number of picks it has coordinates for) bounds its current one from above. The
/// items sit in a max-heap by that bound (lowest index first among equals); `argmax` brings the
/// top items up to date, a chunk at a time, until the top is current. A current top is the true
/// argmax: every other bound is at most its value, and a bound equal to it belongs to a higher
/// index.
///
/// Bringing item i from stamp s to m applies the picks s … m−1 in order, with eager's arithmetic:
/// L_{p_q,i} from the same dot product (`dots`: several picks per pass over z_i), then
/// ⟨c_{p_q}, c_i⟩ summed over r = 0, 1, … in order, e = (L − ⟨·,·⟩) / d_q, c_i[q] = e rounded to
/// T, d_i² −= e². The sums of a panel of missed picks run side by side in vector lanes (never
/// reassociated): first over the coordinates i already has, against the picks' coordinates
/// stored transposed in panels, then the panel's triangle as each new coordinate is known. So
/// the values are eager's, and only the traffic changes: z_i and c_i are read once per catch-up
/// instead of once per pick, and the picks' data stay in cache.
///
/// Layout: the c vectors item-major (item i's coordinates contiguous, `capacity` apart), written
/// only up to each item's stamp (the allocation is not zeroed, so pages of coordinates that are
/// never reached are never touched).
///
/// Threads: a chunk's catch-ups are independent (each writes only its item's state), so with a
/// `DotProductKernel` they run on OpenMP threads; the chunk is a function of the heap alone, so
/// the picks do not depend on the thread count. A user's pairwise kernel is called from one
/// thread, as in the eager engine.
template <Scalar T, class K, class Acc = double>
class kdpp_lazy_engine {
 public:
  /// The type of the residuals and running sums.
  using accumulator = Acc;

  kdpp_lazy_engine(const latent_view<T>& z, const K& kernel, std::size_t capacity, int threads)
      : z_(z), kernel_(kernel), n_(z.rows()), d_(z.cols()), capacity_(capacity),
        threads_(parallel ? std::max(threads, 1) : 1), pick_stride_(capacity + panel), c_(new T[n_ * capacity]),
        d2_(n_, -infinity), stamp_(n_, 0), pick_t_((capacity + panel - 1) / panel * panel * capacity), inv_d_(capacity),
        pick_z_(DotProductKernel<K> ? capacity * d_ : 0),
        scratch_(static_cast<std::size_t>(threads_) * 2 * pick_stride_) {
    picks_.reserve(capacity);
    if constexpr (DotProductKernel<K>) {
      sq_norm_.resize(n_);
      for (std::size_t i = 0; i < n_; ++i) sq_norm_[i] = dot<double>(z_.row(i).data(), z_.row(i).data(), d_);
    }
  }

  [[nodiscard]] std::size_t size() const noexcept { return n_; }

  /// d_i² = L_ii for every item (current with no picks); returns max_i L_ii.
  /// @throws numeric_error on a negative or NaN diagonal entry.
  Acc init_diagonal() {
    Acc max_diag = 0;
    heap_.clear();
    heap_.reserve(n_);
    for (std::size_t i = 0; i < n_; ++i) {
      d2_[i] = static_cast<Acc>(checked_diagonal<Acc>(kernel_, z_, sq_norm_, i));
      max_diag = std::max(max_diag, d2_[i]);
      heap_.push_back({d2_[i], i});
    }
    std::make_heap(heap_.begin(), heap_.end(), lower_priority);
    return max_diag;
  }

  /// The item with the largest current residual and that residual; the lowest index among
  /// equal residuals; `no_item` when every item is picked. Brings stale items up to date.
  /// @throws numeric_error if the kernel gives a non-finite value for an item it updates.
  [[nodiscard]] std::pair<std::size_t, Acc> argmax() {
    for (;;) {
      batch_.clear();
      while (!heap_.empty() && batch_.size() < chunk) {
        const std::size_t i = heap_.front().index;
        if (stamp_[i] == picks_.size()) break;  // current: nothing below it can win
        batch_.push_back(i);
        std::pop_heap(heap_.begin(), heap_.end(), lower_priority);
        heap_.pop_back();
      }
      if (batch_.empty())
        return heap_.empty() ? std::pair<std::size_t, Acc>{no_item, -infinity}
                             : std::pair<std::size_t, Acc>{heap_.front().index, heap_.front().bound};
      catch_up_batch();
      for (const std::size_t i : batch_) {
        heap_.push_back({d2_[i], i});
        std::push_heap(heap_.begin(), heap_.end(), lower_priority);
      }
    }
  }

  [[nodiscard]] Acc residual(std::size_t i) const noexcept { return d2_[i]; }

  /// Marks `j` picked: it leaves the candidates (it is the heap's top, just returned by argmax).
  void exclude(std::size_t j) {
    FUSEMIX_ASSERT(!heap_.empty() && heap_.front().index == j);
    std::pop_heap(heap_.begin(), heap_.end(), lower_priority);
    heap_.pop_back();
    d2_[j] = -infinity;
  }

  /// The first `m` coordinates of item `j` (current items only; the driver asks for the pick's).
  void coordinates(std::size_t j, std::size_t m, std::span<double> out) const {
    FUSEMIX_ASSERT(m <= stamp_[j]);
    for (std::size_t s = 0; s < m; ++s) out[s] = static_cast<double>(c_[j * capacity_ + s]);
  }

  /// Records `j` as the next pick; its kernel row is computed item by item as items catch up.
  void kernel_row(std::size_t j) {
    FUSEMIX_ASSERT(picks_.size() < capacity_);
    if constexpr (DotProductKernel<K>) {
      const auto zj = z_.row(j);
      std::copy(zj.begin(), zj.end(), pick_z_.begin() + static_cast<std::ptrdiff_t>(picks_.size() * d_));
    }
    picks_.push_back(j);
  }

  /// Completes pick `j` as coordinate `slot`: its own coordinates (current, as it was just the
  /// argmax) become column `slot` of the picks' transposed coordinates, and 1 / d_j is kept.
  void project(std::size_t j, std::size_t slot, Acc dj) {
    FUSEMIX_ASSERT(slot + 1 == picks_.size() && picks_[slot] == j && stamp_[j] == slot);
    for (std::size_t r = 0; r < slot; ++r) pick_t_[pick_at(r, slot)] = c_[j * capacity_ + r];
    inv_d_[slot] = Acc(1) / dj;
  }

  /// A window needs every item current at every pick: `greedy_kdpp` runs the eager engine then.
  void rotate(std::span<const std::pair<double, double>>, std::size_t) {
    FUSEMIX_ASSERT(!"kdpp_lazy_engine::rotate: a window runs on the eager engine");
  }

 private:
  // Catch-ups per heap round: enough to keep the threads busy and the heap's share small, few
  // enough that little is evaluated past the winner (32, 64 and 128 measured alike at N = 20,000).
  static constexpr std::size_t chunk = 64;
  static constexpr std::size_t panel = 64;  // picks per panel of pick_t_
  static constexpr Acc infinity = std::numeric_limits<Acc>::infinity();
  static constexpr bool parallel = DotProductKernel<K>;

  struct entry {
    Acc bound;
    std::size_t index;
  };
  // std::*_heap keep the greatest first: the larger bound, then the lower index.
  static bool lower_priority(const entry& a, const entry& b) noexcept {
    return a.bound < b.bound || (a.bound == b.bound && a.index > b.index);
  }

  /// lv[q] = L_{p_q, i} for q in [s, m), as the eager engine's row has it; false at the first
  /// non-finite value, which `bad` then holds with its slot.
  bool kernel_values(std::size_t i, std::size_t s, std::size_t m, Acc* lv, std::pair<std::size_t, Acc>& bad) const {
    if constexpr (DotProductKernel<K>) {
      const T* zi = z_.row(i).data();
      double ab[8];
      std::size_t q = s;
      for (; q + 8 <= m; q += 8) {  // eight picks per pass over z_i: the same bits as one at a time
        dots<double, 8>(zi, pick_z_.data() + q * d_, d_, d_, ab);
        for (std::size_t r = 0; r < 8; ++r)
          lv[q + r] = static_cast<Acc>(kernel_.from_dots(ab[r], sq_norm_[i], sq_norm_[picks_[q + r]]));
      }
      for (; q + 4 <= m; q += 4) {
        dots<double, 4>(zi, pick_z_.data() + q * d_, d_, d_, ab);
        for (std::size_t r = 0; r < 4; ++r)
          lv[q + r] = static_cast<Acc>(kernel_.from_dots(ab[r], sq_norm_[i], sq_norm_[picks_[q + r]]));
      }
      for (; q < m; ++q)
        lv[q] = static_cast<Acc>(kernel_.from_dots(dot<double>(zi, pick_z_.data() + q * d_, d_), sq_norm_[i],
                                                   sq_norm_[picks_[q]]));
    } else {
      for (std::size_t q = s; q < m; ++q)
        lv[q] = static_cast<Acc>(static_cast<double>(kernel_(z_.row(i), z_.row(picks_[q]))));
    }
    for (std::size_t q = s; q < m; ++q)
      if (!std::isfinite(lv[q])) {
        bad = {q, lv[q]};
        return false;
      }
    return true;
  }

  /// Where coordinate r of pick q is kept: panels of `panel` picks, each `capacity` rows of
  /// `panel` values, so that a catch-up's pass over r reads one contiguous run per panel.
  [[nodiscard]] std::size_t pick_at(std::size_t r, std::size_t q) const noexcept {
    return (q / panel) * capacity_ * panel + r * panel + q % panel;
  }

  /// acc[q] = Σ_{r < s} c_{p_q}[r] · c_i[r], summed in r order, for q in [q0, q0 + 8V) within one
  /// panel: V vectors of eight sums kept in registers across the whole pass over r.
  template <std::size_t V>
  void block_sums(const T* ci, std::size_t s, std::size_t q0, Acc* acc) const {
    const T* p = pick_t_.data() + pick_at(0, q0);
#if defined(__GNUC__)
    typedef Acc acc8 __attribute__((vector_size(8 * sizeof(Acc))));  // NOLINT(modernize-use-using)
    acc8 x[V] = {};
    for (std::size_t r = 0; r < s; ++r, p += panel) {
      const Acc a = static_cast<Acc>(ci[r]);
      for (std::size_t v = 0; v < V; ++v) {
        acc8 pv;
        load8(p + 8 * v, pv);
        x[v] += pv * a;
      }
    }
    std::memcpy(acc + q0, x, sizeof x);
#else
    std::fill(acc + q0, acc + q0 + 8 * V, Acc(0));
    for (std::size_t r = 0; r < s; ++r, p += panel) {
      const Acc a = static_cast<Acc>(ci[r]);
      for (std::size_t l = 0; l < 8 * V; ++l) acc[q0 + l] += static_cast<Acc>(p[l]) * a;
    }
#endif
  }

  /// Brings item i from its stamp s to the current pick count m; false (item untouched from the
  /// bad value on) if the kernel gives a non-finite value, which `bad` then holds with its slot.
  ///
  /// A panel of picks at a time: the sums over the coordinates i had before the panel (its old
  /// ones and those of this catch-up's earlier panels) in registers, then the panel's own
  /// triangle, each new coordinate feeding the panel's later sums. Every sum runs over r in
  /// order, as in the eager engine. Lanes outside [s, m) are scratch (`acc` and the last panel
  /// are padded).
  bool catch_up(std::size_t i, Acc* lv, Acc* acc, std::pair<std::size_t, Acc>& bad) {
    const std::size_t s = stamp_[i], m = picks_.size();
    if (!kernel_values(i, s, m, lv, bad)) return false;
    T* ci = c_.get() + i * capacity_;
    Acc d2 = d2_[i];
    for (std::size_t q0 = s / 8 * 8; q0 < m;) {  // from the vector that holds q = s
      const std::size_t first = q0 / panel * panel, end = std::min(first + panel, (m + 7) / 8 * 8);
      const std::size_t known = std::max(s, first);
      switch ((end - q0) / 8) {
        case 8: block_sums<8>(ci, known, q0, acc); break;
        case 7: block_sums<7>(ci, known, q0, acc); break;
        case 6: block_sums<6>(ci, known, q0, acc); break;
        case 5: block_sums<5>(ci, known, q0, acc); break;
        case 4: block_sums<4>(ci, known, q0, acc); break;
        case 3: block_sums<3>(ci, known, q0, acc); break;
        case 2: block_sums<2>(ci, known, q0, acc); break;
        default: block_sums<1>(ci, known, q0, acc); break;
      }
      const std::size_t last = std::min(end, m);
      for (std::size_t r = known; r < last; ++r) {
        const Acc e = (lv[r] - acc[r]) * inv_d_[r];
        ci[r] = static_cast<T>(e);
        d2 -= e * e;
        const Acc a = static_cast<Acc>(ci[r]);
        const T* row = pick_t_.data() + pick_at(r, first);
        for (std::size_t q = r + 1; q < last; ++q) acc[q] += static_cast<Acc>(row[q - first]) * a;
      }
      q0 = end;
    }
    d2_[i] = d2;
    stamp_[i] = m;
    return true;
  }

  /// Catches up every item of `batch_`.
  /// @throws numeric_error for a non-finite kernel value: the earliest pick, then the lowest item.
  void catch_up_batch() {
    const std::size_t count = batch_.size(), stride = pick_stride_;
    bad_.assign(count, {no_item, Acc(0)});
#if defined(_OPENMP)
#  pragma omp parallel for schedule(dynamic, 1) num_threads(threads_) if (threads_ > 1 && count > 1)
#endif
    for (std::size_t b = 0; b < count; ++b) {
#if defined(_OPENMP)
      const auto t = static_cast<std::size_t>(omp_get_thread_num());
#else
      const std::size_t t = 0;
#endif
      Acc* lv = scratch_.data() + t * 2 * stride;
      static_cast<void>(catch_up(batch_[b], lv, lv + stride, bad_[b]));
    }
    std::size_t worst = no_item;
    for (std::size_t b = 0; b < count; ++b)
      if (bad_[b].first != no_item &&
          (worst == no_item || bad_[b].first < bad_[worst].first ||
           (bad_[b].first == bad_[worst].first && batch_[b] < batch_[worst])))
        worst = b;
    if (worst != no_item)
      throw_expected<numeric_error>("fusemix::greedy_kdpp", "the kernel must return finite values", "finite",
                                    concat(bad_[worst].second, " at items (", picks_[bad_[worst].first], ", ",
                                           batch_[worst], ")"));
  }

  latent_view<T> z_;
  const K& kernel_;
  std::size_t n_, d_, capacity_;
  int threads_;
  std::size_t pick_stride_;                // scratch per thread and buffer: capacity plus a panel
  std::unique_ptr<T[]> c_;                 // n × capacity, item-major; item i valid up to stamp_[i]
  std::vector<Acc> d2_;                    // residual as of stamp_ (−∞ once picked)
  std::vector<std::uint32_t> stamp_;       // picks each item has coordinates for
  std::vector<entry> heap_;                // every candidate once, by its bound d2_
  std::vector<std::size_t> picks_;         // the picks with coordinates, by slot
  std::vector<T> pick_t_;                  // coordinate r of pick q at pick_at(r, q)
  std::vector<Acc> inv_d_;                 // 1 / d of pick q
  std::vector<T> pick_z_;                  // the picks' latents, in a row (dot-product kernels)
  std::vector<double> sq_norm_;            // |z_i|², dot-product kernels only
  std::vector<Acc> scratch_;               // per thread: kernel values and running sums
  std::vector<std::size_t> batch_;
  std::vector<std::pair<std::size_t, Acc>> bad_;
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
