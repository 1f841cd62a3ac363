// SPDX-License-Identifier: Apache-2.0
/// @file
/// The definitions behind <fusemix/dpp.hpp>: the CPU primitives of the greedy k-DPP, the
/// algorithm written once over them, the built-in kernels and the entry points.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fusemix/concepts.hpp>
#include <fusemix/config.hpp>
#include <fusemix/dpp.hpp>
#include <fusemix/error.hpp>
#include <fusemix/random.hpp>

namespace fusemix {

namespace detail {

/// Dot product accumulated in `Acc` with a fixed order: 16 interleaved partial sums (lane l
/// takes elements l, l + 16, ...), a scalar sum of the remainder, then a fixed pairwise
/// reduction. The order depends only on `n`, never on alignment or on which row of a matrix is
/// being processed (as a BLAS GEMV's blocking may), so equal rows give bit-equal results and a
/// row's own entry equals the diagonal computed alone.
///
/// GCC and Clang get the 16 lanes as two 8-wide vectors (their vector extensions: the
/// auto-vectoriser leaves this loop scalar once inlined); other compilers get the same order
/// in plain code.
template <class Acc, class A, class B>
[[nodiscard]] inline Acc dot(const A* a, const B* b, std::size_t n) noexcept {
  constexpr std::size_t lanes = 16;
  std::size_t i = 0;
#if defined(__GNUC__)
  typedef Acc acc8 __attribute__((vector_size(8 * sizeof(Acc))));  // NOLINT(modernize-use-using): `using`
  typedef A a8 __attribute__((vector_size(8 * sizeof(A))));        // drops the attribute on a dependent type
  typedef B b8 __attribute__((vector_size(8 * sizeof(B))));
  acc8 lo = {}, hi = {};
  for (; i + lanes <= n; i += lanes) {
    a8 a0, a1;
    b8 b0, b1;
    std::memcpy(&a0, a + i, sizeof a0);  // unaligned loads
    std::memcpy(&a1, a + i + 8, sizeof a1);
    std::memcpy(&b0, b + i, sizeof b0);
    std::memcpy(&b1, b + i + 8, sizeof b1);
    lo += __builtin_convertvector(a0, acc8) * __builtin_convertvector(b0, acc8);
    hi += __builtin_convertvector(a1, acc8) * __builtin_convertvector(b1, acc8);
  }
  Acc s[8];
  for (std::size_t l = 0; l < 8; ++l) s[l] = lo[l] + hi[l];
#else
  Acc s16[lanes] = {};
  for (; i + lanes <= n; i += lanes)
    for (std::size_t l = 0; l < lanes; ++l) s16[l] += static_cast<Acc>(a[i + l]) * static_cast<Acc>(b[i + l]);
  Acc s[8];
  for (std::size_t l = 0; l < 8; ++l) s[l] = s16[l] + s16[l + 8];
#endif
  Acc tail = 0;
  for (; i < n; ++i) tail += static_cast<Acc>(a[i]) * static_cast<Acc>(b[i]);
  return (((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))) + tail;
}

template <class Acc, Scalar T>
[[nodiscard]] Acc dot(std::span<const T> a, std::span<const T> b) noexcept {
  FUSEMIX_ASSERT(a.size() == b.size());
  return dot<Acc>(a.data(), b.data(), a.size());
}

/// `K(a, b)` of a dot-product kernel, from the same `dot` the rows use.
template <class K, Scalar T>
[[nodiscard]] double dot_kernel_pair(const K& k, std::span<const T> a, std::span<const T> b) {
  return k.from_dots(dot<double>(a, b), dot<double>(a, a), dot<double>(b, b));
}

/// One row K(Z, z_j) of a dot-product kernel: a GEMV over the latents, then the elementwise map.
template <class K, Scalar T>
void dot_kernel_row(const K& k, const latent_view<T>& z, std::size_t j, std::span<T> out) {
  FUSEMIX_ASSERT(out.size() == z.rows());
  // linear and polynomial kernels ignore the norms: skip their second dot product
  constexpr bool norms = !std::is_same_v<K, linear_kernel> && !std::is_same_v<K, polynomial_kernel>;
  const auto zj = z.row(j);
  const double jj = norms ? dot<double>(zj, zj) : 0.0;
  for (std::size_t i = 0; i < z.rows(); ++i) {
    const auto zi = z.row(i);
    out[i] = static_cast<T>(k.from_dots(dot<double>(zi, zj), norms ? dot<double>(zi, zi) : 0.0, jj));
  }
}

/// x^p by repeated squaring: no `pow` special cases, the same result with every libm.
[[nodiscard]] FUSEMIX_HOST_DEVICE inline double ipow(double x, unsigned p) noexcept {
  double r = 1.0;
  for (; p != 0; p >>= 1, x *= x)
    if (p & 1U) r *= x;
  return r;
}

/// log det of the symmetric n × n matrix whose lower triangle is in `a` (row-major), by an
/// in-place Cholesky in double; −∞ when a pivot is not positive (singular or not PD).
[[nodiscard]] inline double cholesky_log_det(std::vector<double>& a, std::size_t n) {
  double log_det = 0.0;
  for (std::size_t j = 0; j < n; ++j) {
    double* rj = a.data() + j * n;
    const double pivot = rj[j] - dot<double>(rj, rj, j);
    if (!(pivot > 0)) return -std::numeric_limits<double>::infinity();
    const double ljj = std::sqrt(pivot);
    rj[j] = ljj;
    log_det += 2.0 * std::log(ljj);
    for (std::size_t i = j + 1; i < n; ++i) {
      double* ri = a.data() + i * n;
      ri[j] = (ri[j] - dot<double>(ri, rj, j)) / ljj;
    }
  }
  return log_det;
}

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

/// The greedy k-DPP, written once over an engine's primitives (see `kdpp_cpu_engine`).
///
/// With a window w < k the engine keeps coordinates for the last w − 1 picks only. Dropping the
/// oldest pick removes the first row of the window's Cholesky factor V; the remaining rows are
/// lower-Hessenberg, and Givens rotations on adjacent columns make them triangular again. The
/// same rotations applied to every c_i keep V c_i = L_{W,i}, and the coordinate they push out
/// returns its square to d_i² (the residual against a smaller window can only grow).
template <class Engine>
selection run_greedy_kdpp(Engine& engine, std::size_t k, std::size_t capacity, const kdpp_options& options) {
  selection out;
  out.picks.reserve(k);
  out.gains.reserve(k);
  const double max_diag = static_cast<double>(engine.init_diagonal());
  const double threshold = options.relative_threshold * max_diag;
  const bool windowed = capacity + 1 < k;  // only then can the window fill before the end
  std::vector<double> v(windowed ? capacity * capacity : 0);  // window factor, row-major, stride `capacity`
  std::vector<std::pair<double, double>> rot;
  std::size_t m = 0;  // picks that own a coordinate (all of them, or the last w − 1)
  for (;;) {
    const auto [j, best] = engine.argmax();
    if (j == no_item || !(static_cast<double>(best) > threshold)) {
      out.stop = stop_reason::rank_exhausted;
      break;
    }
    out.picks.push_back(j);
    out.gains.push_back(std::log(static_cast<double>(best)));
    if (out.picks.size() == k) {
      out.stop = stop_reason::k_reached;
      break;
    }
    if (capacity == 0) {  // window of 1: nothing to be diverse against
      engine.exclude(j);
      continue;
    }
    if (m == capacity) {  // window full: drop the oldest pick (first row of V)
      FUSEMIX_ASSERT(windowed);
      rot.clear();
      double* a = v.data() + capacity;  // a(q, col) = v(q + 1, col), q < m − 1
      auto at = [&](std::size_t q, std::size_t col) -> double& { return a[q * capacity + col]; };
      for (std::size_t c = 0; c + 1 < m; ++c) {
        const double x = at(c, c), y = at(c, c + 1), r = std::hypot(x, y);
        const double cs = r > 0 ? x / r : 1.0, sn = r > 0 ? y / r : 0.0;
        for (std::size_t q = c; q + 1 < m; ++q) {
          const double p = at(q, c), s = at(q, c + 1);
          at(q, c) = cs * p + sn * s;
          at(q, c + 1) = -sn * p + cs * s;
        }
        at(c, c + 1) = 0.0;
        rot.emplace_back(cs, sn);
      }
      for (std::size_t q = 0; q + 1 < m; ++q)  // shift up; the last column is now zero
        for (std::size_t col = 0; col + 1 < m; ++col) v[q * capacity + col] = at(q, col);
      engine.rotate(rot, m);
      --m;
    }
    const double dj2 = static_cast<double>(engine.residual(j));  // grown if a pick was dropped
    const double dj = std::sqrt(dj2);
    if (windowed) {  // new row of V: [c_j, d_j]
      const std::span<double> vm = std::span<double>(v).subspan(m * capacity, capacity);
      engine.coordinates(j, m, vm);
      std::fill(vm.begin() + static_cast<std::ptrdiff_t>(m), vm.end(), 0.0);
      vm[m] = dj;
    }
    engine.exclude(j);
    engine.kernel_row(j);
    engine.project(j, m, static_cast<typename Engine::accumulator>(dj));
    ++m;
  }
  return out;
}

/// Checks the arguments of `greedy_kdpp` and runs it with accumulation type `Acc`
/// (`double` in the public entry point; `float` only to measure what double accumulation buys).
template <class Acc, Scalar T, Kernel<T> K>
[[nodiscard]] selection greedy_kdpp_with(const latent_view<T>& z, std::size_t k, const K& kernel,
                                         const kdpp_options& options) {
  constexpr std::string_view where = "fusemix::greedy_kdpp";
  if (z.rows() == 0)
    throw_shape_error(where, "the latent matrix must have at least one row", ">= 1", z.rows());
  if (z.cols() == 0)
    throw_shape_error(where, "the latent matrix must have at least one column", ">= 1", z.cols());
  if (k == 0) throw_shape_error(where, "k must be positive", ">= 1", k);
  if (k > z.rows())
    throw_shape_error(where, "k must not exceed the item count", concat("<= ", z.rows()), k);
  if (!(options.relative_threshold >= 0) || !std::isfinite(options.relative_threshold))
    throw_expected<argument_error>(where, "relative_threshold must be finite and non-negative", ">= 0",
                                   options.relative_threshold);
  for (std::size_t i = 0; i < z.rows(); ++i) {
    const auto r = z.row(i);
    for (std::size_t c = 0; c < r.size(); ++c)
      if (!std::isfinite(r[c]))
        throw_expected<numeric_error>(where, "latents must be finite", "finite values",
                                      concat(r[c], " at row ", i, ", column ", c));
  }
  // Coordinates are kept for every pick but the last, or for the last w − 1 picks.
  const std::size_t capacity = options.window == 0 ? k - 1 : std::min(options.window, k) - 1;
  kdpp_cpu_engine<T, K, Acc> engine(z, kernel, capacity);
  return run_greedy_kdpp(engine, k, capacity, options);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Kernel definitions
// ---------------------------------------------------------------------------------------------

template <Scalar T>
double linear_kernel::operator()(std::span<const T> a, std::span<const T> b) const {
  return detail::dot<double>(a, b);
}
template <Scalar T>
void linear_kernel::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  detail::dot_kernel_row(*this, z, j, out);
}

template <Scalar T>
double cosine_kernel::operator()(std::span<const T> a, std::span<const T> b) const {
  return detail::dot_kernel_pair(*this, a, b);
}
template <Scalar T>
void cosine_kernel::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  detail::dot_kernel_row(*this, z, j, out);
}

FUSEMIX_HOST_DEVICE inline double polynomial_kernel::from_dots(double ab, double /*aa*/, double /*bb*/) const noexcept {
  return detail::ipow(ab + offset, degree);
}
template <Scalar T>
double polynomial_kernel::operator()(std::span<const T> a, std::span<const T> b) const {
  return from_dots(detail::dot<double>(a, b), 0.0, 0.0);
}
template <Scalar T>
void polynomial_kernel::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  detail::dot_kernel_row(*this, z, j, out);
}

template <Scalar T>
double rbf_kernel::operator()(std::span<const T> a, std::span<const T> b) const {
  return detail::dot_kernel_pair(*this, a, b);
}
template <Scalar T>
void rbf_kernel::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  detail::dot_kernel_row(*this, z, j, out);
}

template <Scalar T>
precomputed_kernel<T>::precomputed_kernel(const latent_view<T>& l) : l_(l) {
  if (l.rows() != l.cols())
    detail::throw_shape_error("fusemix::precomputed_kernel", "the kernel matrix must be square",
                              detail::concat(l.rows(), " columns"), detail::concat(l.cols(), " columns"));
}

template <Scalar T>
double precomputed_kernel<T>::operator()(std::span<const T> a, std::span<const T> b) const {
  const auto n = l_.rows();
  const T* base = l_.data();
  // Item j is row j of L, so its index is where its row starts.
  const bool inside = b.size() == n && n != 0 && std::less_equal<>{}(base, b.data()) &&
                      std::less<>{}(b.data(), base + n * n);
  const auto offset = inside ? static_cast<std::size_t>(b.data() - base) : std::size_t{1};
  if (!inside || offset % n != 0 || a.size() != n)
    throw shape_error(
        "fusemix::precomputed_kernel: the items must be rows of the kernel matrix itself "
        "(pass precomputed_kernel::matrix() as the latents)");
  return static_cast<double>(a[offset / n]);
}

template <Scalar T>
void precomputed_kernel<T>::row(const latent_view<T>& z, std::size_t j, std::span<T> out) const {
  if (z.data() != l_.data() || z.rows() != l_.rows() || z.cols() != l_.cols())
    throw shape_error(
        "fusemix::precomputed_kernel: the items must be rows of the kernel matrix itself "
        "(pass precomputed_kernel::matrix() as the latents)");
  const auto r = l_.row(j);
  std::copy(r.begin(), r.end(), out.begin());
}

// ---------------------------------------------------------------------------------------------
// Entry point definitions
// ---------------------------------------------------------------------------------------------

template <Scalar T, Kernel<T> K>
selection greedy_kdpp(const latent_view<T>& z, std::size_t k, const K& kernel, const kdpp_options& options) {
  return detail::greedy_kdpp_with<double>(z, k, kernel, options);
}

template <Scalar T, Kernel<T> K>
double subset_log_det(const latent_view<T>& z, std::span<const std::size_t> picks, const K& kernel) {
  const std::size_t m = picks.size();
  for (const auto p : picks)
    if (p >= z.rows())
      detail::throw_shape_error("fusemix::subset_log_det", "a pick must be a row of the latents",
                                detail::concat("< ", z.rows()), p);
  std::vector<double> l(m * m);  // lower triangle of L_S, row-major
  for (std::size_t a = 0; a < m; ++a)
    for (std::size_t b = 0; b <= a; ++b)
      l[a * m + b] = static_cast<double>(kernel(z.row(picks[a]), z.row(picks[b])));
  return detail::cholesky_log_det(l, m);
}

inline std::vector<std::size_t> uniform_subset(std::size_t n, std::size_t k, std::uint64_t seed) {
  constexpr std::string_view where = "fusemix::uniform_subset";
  if (k == 0) detail::throw_shape_error(where, "k must be positive", ">= 1", k);
  if (k > n) detail::throw_shape_error(where, "k must not exceed the item count", detail::concat("<= ", n), k);
  philox_engine rng(seed);
  std::vector<std::size_t> items(n);
  std::iota(items.begin(), items.end(), std::size_t{0});
  for (std::size_t i = 0; i < k; ++i)  // partial Fisher–Yates: items[0, i) are the draws so far
    std::swap(items[i], items[i + static_cast<std::size_t>(rng.below(n - i))]);
  items.resize(k);
  return items;
}

}  // namespace fusemix
