// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's dense linear algebra: GEMM on Eigen or OpenBLAS, axpy, copy, scale, dot.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>
#include <type_traits>

#include <Eigen/Core>
#if defined(_OPENMP)
#include <omp.h>
#endif

// Opt-in: a consumer that links OpenBLAS defines FUSEMIX_USE_OPENBLAS (the CMake option
// FUSEMIX_BLAS does both for this repo's programs) and the GEMMs go to cblas_?gemm; nothing
// else changes. Without it the header needs Eigen only.
#if defined(FUSEMIX_USE_OPENBLAS)
#include <cblas.h>
#endif

#include <fusemix/backend/cpu/parallel.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>

namespace fusemix::cpu {

/// Sets the threads of the CPU backend: Eigen's GEMMs and the library's own OpenMP loops (where
/// the program is built with OpenMP) and, with FUSEMIX_USE_OPENBLAS, OpenBLAS's. Results are
/// bitwise reproducible for a given count. `n == 0` leaves the libraries' defaults
/// (`OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, all cores).
inline void set_threads(int n) {
  if (n <= 0) return;
  Eigen::setNbThreads(n);
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
#if defined(FUSEMIX_USE_OPENBLAS)
  openblas_set_num_threads(n);
#endif
}

/// The thread count the CPU backend uses (the last `set_threads`, else the OpenMP default; 1 in a
/// build without OpenMP, where only OpenBLAS can thread).
[[nodiscard]] inline int threads() { return Eigen::nbThreads(); }

/// The GEMM libraries `backend::gemm` can use for float and double operands.
enum class gemm_library { eigen, openblas };

[[nodiscard]] constexpr const char* to_string(gemm_library g) noexcept {
  return g == gemm_library::openblas ? "openblas" : "eigen";
}

/// Whether this program was built with OpenBLAS (`FUSEMIX_USE_OPENBLAS`).
[[nodiscard]] constexpr bool openblas_linked() noexcept {
#if defined(FUSEMIX_USE_OPENBLAS)
  return true;
#else
  return false;
#endif
}

/// The library chosen when nothing is set: OpenBLAS where linked, except when this code is built
/// for AVX-512 and OpenBLAS's kernel is not an AVX-512 one (an `OPENBLAS_CORETYPE` pin such as
/// Haswell, or an old OpenBLAS): Eigen's AVX-512 GEMM is then the faster. A function of the
/// build and the environment only, so every run of one setup makes the same choice.
[[nodiscard]] inline gemm_library default_gemm_library() {
#if defined(FUSEMIX_USE_OPENBLAS)
#if defined(__AVX512F__)
  const std::string_view core = openblas_get_corename();
  for (const std::string_view k : {"skylakex", "cooperlake", "sapphirerapids"})
    if (core.size() == k.size() &&
        std::equal(core.begin(), core.end(), k.begin(), [](char a, char b) { return (a | 0x20) == b; }))
      return gemm_library::openblas;
  return gemm_library::eigen;
#else
  return gemm_library::openblas;
#endif
#else
  return gemm_library::eigen;
#endif
}

// The process-wide choice. (A function-local static, not a `cpu::detail` namespace: that would
// hide `fusemix::detail` from every unqualified `detail::` below.)
inline gemm_library& gemm_choice() {
  static gemm_library choice = default_gemm_library();
  return choice;
}

/// The GEMM library in use (process-wide).
[[nodiscard]] inline gemm_library current_gemm_library() { return gemm_choice(); }

/// Chooses the GEMM library for the whole process; results are bitwise reproducible for a given
/// library and thread count. Call it before training, not during.
/// @throws argument_error for `openblas` in a program built without it.
inline void set_gemm_library(gemm_library g) {
  if (g == gemm_library::openblas && !openblas_linked())
    throw_expected<argument_error>("fusemix::cpu::set_gemm_library", "this program is built without OpenBLAS",
                                           "eigen (or a build with FUSEMIX_USE_OPENBLAS)", "openblas");
  gemm_choice() = g;
}

/// A dense row-major operand that BLAS can read in place: contiguous rows at a known stride.
template <class M>
concept blas_operand = requires(M& m) {
  { m.data() };
  { m.outerStride() };
} && (std::remove_cvref_t<M>::Flags & Eigen::RowMajorBit) != 0 && std::remove_cvref_t<M>::InnerStrideAtCompileTime == 1;

/// The dense-algebra group of `cpu::backend` (`DenseAlgebra`).
template <Scalar T>
class dense_ops {
 public:
  /// `c = alpha · op(a) · op(b) + beta · c`, where `op(m)` is `m` or `mᵀ`.
  template <class A, class Bm, class C>
  void gemm(T alpha, const A& a, bool trans_a, const Bm& b, bool trans_b, T beta, C& c) const {
#if defined(FUSEMIX_USE_OPENBLAS)
    if constexpr ((std::is_same_v<T, float> || std::is_same_v<T, double>) && blas_operand<const A> &&
                  blas_operand<const Bm> && blas_operand<C>) {
      if (current_gemm_library() == gemm_library::openblas) {
        const auto m = static_cast<blasint>(c.rows()), n = static_cast<blasint>(c.cols());
        const auto k = static_cast<blasint>(trans_a ? a.rows() : a.cols());
        if (m == 0 || n == 0) return;
        const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
        // BLAS reads a leading dimension of at least 1 even for empty operands.
        const auto ld = [](const auto& x) { return static_cast<blasint>(std::max<Eigen::Index>(x.outerStride(), 1)); };
        if constexpr (std::is_same_v<T, float>)
          cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data(), ld(a), b.data(), ld(b), beta, c.data(), ld(c));
        else
          cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data(), ld(a), b.data(), ld(b), beta, c.data(), ld(c));
        return;
      }
    }
#endif
    if (beta == T(0))
      c.setZero();
    else if (beta != T(1))
      c *= beta;
    if (!trans_a && !trans_b)
      c.noalias() += alpha * a * b;
    else if (!trans_a && trans_b)
      c.noalias() += alpha * a * b.transpose();
    else if (trans_a && !trans_b)
      c.noalias() += alpha * a.transpose() * b;
    else
      c.noalias() += alpha * a.transpose() * b.transpose();
  }
  /// Two products with the same left operand: `c1 = alpha · op1(a) · op(b1)` and
  /// `c2 = alpha · op2(a) · op(b2)` (a layer's backward: dW = dyᵀ·x and dx = dy·W). The CUDA
  /// backend prepares `a` once for both (its bf16 copy); here, two GEMMs.
  template <class A, class B1, class C1, class B2, class C2>
  void gemm_shared(T alpha, const A& a, bool trans_a1, const B1& b1, bool trans_b1, C1& c1, bool trans_a2, const B2& b2,
                   bool trans_b2, C2& c2) const {
    gemm(alpha, a, trans_a1, b1, trans_b1, T(0), c1);
    gemm(alpha, a, trans_a2, b2, trans_b2, T(0), c2);
  }
  /// `y += alpha · x`.
  template <class X, class Y>
  void axpy(T alpha, const X& x, Y& y) const {
    for_each_part(y, [&](auto part) { part(y).noalias() += alpha * part(x); });
  }
  /// `y = x`.
  template <class X, class Y>
  void copy(const X& x, Y& y) const {
    for_each_part(y, [&](auto part) { part(y) = part(x); });
  }

  /// `y = alpha · y`.
  template <class Y>
  void scale(T alpha, Y& y) const {
    for_each_part(y, [&](auto part) { part(y) *= alpha; });
  }
  /// `Σ_ij a_ij · b_ij` (each row's sum in `T`, the rows' sums added in double in row order).
  template <class A, class Bm>
  T dot(const A& a, const Bm& b) const {
    partials_.resize(a.rows());
    for_each_row(a.rows(), a.cols(), [&](Eigen::Index i) {
      partials_[i] = static_cast<double>(a.row(i).cwiseProduct(b.row(i)).sum());
    });
    return static_cast<T>(partials_.sum_in_order());
  }

 private:
  mutable row_partials partials_;
};

}  // namespace fusemix::cpu
