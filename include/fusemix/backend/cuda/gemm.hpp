// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's dense linear algebra: GEMM and GEMV per system (cuBLAS on a GPU, fp32 or
/// TF32 / bf16 operands on the tensor cores; on the host, the CPU backend's GEMM, which is in
/// <fusemix/backend/cuda/host_gemm.hpp>, see there why it is a header of its own), and axpy,
/// copy, scale, dot.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/elementwise.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>

namespace fusemix::cuda {

/// One GEMM operand: `rows × cols`, row-major at `data` (backend memory), used transposed or not.
template <class T>
struct gemm_operand {
  const T* data;
  std::size_t rows, cols;
  bool transposed;
};

namespace detail {

/// `c = alpha · op(a) · op(b) + beta · c` (`c` is `m × n`, row-major) on system `S`:
/// `gemm(ctx, alpha, a, b, beta, c, m, n, reuse_a)`; `reuse_a` says that the bf16 copy of `a`
/// made by the previous call is still current (`dense_ops::gemm_shared`).
template <class S>
struct gemm_ops {
  static_assert(!std::is_same_v<S, host_system>,
                "fusemix::cuda::host_system's GEMM is the CPU backend's: include "
                "<fusemix/backend/cuda/host_gemm.hpp> in the file that uses it");
  static_assert(!std::is_same_v<S, device_system>,
                "fusemix::cuda::device_system runs on a GPU and needs nvcc: compile this file as CUDA (.cu)");
};

#if defined(__CUDACC__)
template <>
struct gemm_ops<device_system> {
  template <class T>
  static void gemm(context<device_system>& ctx, T alpha, const gemm_operand<T>& a, const gemm_operand<T>& b, T beta,
                   T* c, std::size_t m, std::size_t n, bool reuse_a) {
    const std::size_t k = a.transposed ? a.rows : a.cols;
    // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major matrix is its
    // transpose column-major: so B goes first, each with its own flag, leading dimension = cols.
    const auto opa = a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N, opb = b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int mi = to_int(m), ni = to_int(n), ki = to_int(k), lda = std::max(1, to_int(a.cols)),
              ldb = std::max(1, to_int(b.cols));
    if constexpr (std::is_same_v<T, double>) {
      const auto prof = ctx.profile("gemm");
      FUSEMIX_CUBLAS_CHECK(::cublasDgemm(ctx.cublas(), opb, opa, ni, mi, ki, &alpha, b.data, ldb, a.data, lda, &beta, c,
                                         ni));
    } else if (ctx.precision() == gemm_precision::bf16 && k > 0) {
      auto* a16 = ctx.scratch<__nv_bfloat16>(context<device_system>::operand_a, a.rows * a.cols);
      auto* b16 = ctx.scratch<__nv_bfloat16>(context<device_system>::operand_b, b.rows * b.cols);
      {
        const auto prof = ctx.profile("gemm operands to bf16");
        if (!reuse_a) convert_to_bf16(ctx, a.data, a.rows * a.cols, a16);
        convert_to_bf16(ctx, b.data, b.rows * b.cols, b16);
      }
      const auto prof = ctx.profile("gemm");
      FUSEMIX_CUBLAS_CHECK(::cublasGemmEx(ctx.cublas(), opb, opa, ni, mi, ki, &alpha, b16, CUDA_R_16BF, ldb, a16,
                                          CUDA_R_16BF, lda, &beta, c, CUDA_R_32F, ni, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
    } else {
      const auto compute = ctx.precision() == gemm_precision::fp32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
      const auto prof = ctx.profile("gemm");
      FUSEMIX_CUBLAS_CHECK(::cublasGemmEx(ctx.cublas(), opb, opa, ni, mi, ki, &alpha, b.data, CUDA_R_32F, ldb, a.data,
                                          CUDA_R_32F, lda, &beta, c, CUDA_R_32F, ni, compute, CUBLAS_GEMM_DEFAULT));
    }
  }

  /// `out = Σ_rows a` (`accumulate`: `out += Σ_rows a`) for a `rows × cols` row-major `a`
  /// (rows > 0): `aᵀ·1`, one GEMV (deterministic, no atomics). The row-major `a` is column-major
  /// `cols × rows`: a plain (N) GEMV.
  template <class T>
  static void column_sums(context<device_system>& ctx, const T* a, std::size_t rows, std::size_t cols, T* out,
                          bool accumulate) {
    T* ones = ctx.scratch<T>(context<device_system>::ones, rows);
    for_n(ctx, rows, fill_elements<T>{ones, T(1)});
    const T one = 1, beta = accumulate ? T(1) : T(0);
    if constexpr (std::is_same_v<T, double>)
      FUSEMIX_CUBLAS_CHECK(::cublasDgemv(ctx.cublas(), CUBLAS_OP_N, to_int(cols), to_int(rows), &one, a, to_int(cols),
                                         ones, 1, &beta, out, 1));
    else
      FUSEMIX_CUBLAS_CHECK(::cublasSgemv(ctx.cublas(), CUBLAS_OP_N, to_int(cols), to_int(rows), &one, a, to_int(cols),
                                         ones, 1, &beta, out, 1));
  }

 private:
  static int to_int(std::size_t v) {
    if (v > static_cast<std::size_t>(std::numeric_limits<int>::max()))
      throw_shape_error("fusemix::cuda::backend::gemm", "cuBLAS dimensions must fit in int",
                        std::numeric_limits<int>::max(), v);
    return static_cast<int>(v);
  }
  // `n` floats at `x` to bfloat16 at `y`: four at a time where both are aligned for it.
  static void convert_to_bf16(const context<device_system>& ctx, const float* x, std::size_t n, __nv_bfloat16* y) {
    if (aligned16(x) && reinterpret_cast<std::uintptr_t>(y) % 8 == 0) {
      for_n(ctx, n / 4, to_bf16_quads{x, y});
      if (n % 4 != 0) for_n(ctx, n % 4, to_bf16{x + n / 4 * 4, y + n / 4 * 4});
    } else {
      for_n(ctx, n, to_bf16{x, y});
    }
  }
};
#endif

}  // namespace detail

/// The dense-algebra group of `cuda::backend` (`DenseAlgebra`), which is `Derived`.
template <Scalar T, System S, class Derived>
class dense_ops {
 public:
  /// `c = alpha · op(a) · op(b) + beta · c`.
  template <class A, class Bm, class C>
  void gemm(T alpha, const A& a, bool trans_a, const Bm& b, bool trans_b, T beta, C& c) const {
    if (c.rows() == 0 || c.cols() == 0) return;
    detail::gemm_ops<S>::gemm(self().ctx(), alpha, gemm_operand<T>{a.data(), a.rows(), a.cols(), trans_a},
                              gemm_operand<T>{b.data(), b.rows(), b.cols(), trans_b}, beta, c.data(), c.rows(),
                              c.cols(), reuse_a_);
  }
  /// Two products with the same left operand (`c1 = alpha·op1(a)·op(b1)`, `c2 = alpha·op2(a)·op(b2)`);
  /// in bf16 mode `a` is converted once for both.
  template <class A, class B1, class C1, class B2, class C2>
  void gemm_shared(T alpha, const A& a, bool trans_a1, const B1& b1, bool trans_b1, C1& c1, bool trans_a2, const B2& b2,
                   bool trans_b2, C2& c2) const {
    gemm(alpha, a, trans_a1, b1, trans_b1, T(0), c1);
    struct clear_on_exit {
      bool& flag;
      ~clear_on_exit() { flag = false; }
    } guard{reuse_a_};
    reuse_a_ = true;  // the second product's `a` is the one just converted
    gemm(alpha, a, trans_a2, b2, trans_b2, T(0), c2);
  }
  /// `y += alpha · x`.
  template <class X, class Y>
  void axpy(T alpha, const X& x, Y& y) const {
    const auto prof = self().ctx().profile("axpy");
    for_n(self().ctx(), y.size(), detail::axpy_elements<T>{alpha, x.data(), y.data()});
  }
  /// `y = x`.
  template <class X, class Y>
  void copy(const X& x, Y& y) const {
    const auto prof = self().ctx().profile("copy");
    copy_within(self().ctx(), x.data(), y.data(), x.size());
  }
  /// `y = alpha · y`.
  template <class Y>
  void scale(T alpha, Y& y) const {
    const auto prof = self().ctx().profile("scale");
    for_n(self().ctx(), y.size(), detail::scale_elements<T>{alpha, y.data()});
  }
  /// `Σ_ij a_ij · b_ij` (products in `T`, summed in double; waits for the result).
  template <class A, class Bm>
  T dot(const A& a, const Bm& b) const {
    const auto prof = self().ctx().profile("dot");
    const double s =
        reduce_n(self().ctx(), a.size(), detail::product_terms<T>{a.data(), b.data()}, 0.0, detail::sum_of{});
    return static_cast<T>(s);
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }

  mutable bool reuse_a_ = false;  // inside gemm_shared: the bf16 copy of `a` is already in its slot
};

}  // namespace fusemix::cuda
