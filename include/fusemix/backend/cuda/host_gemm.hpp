// SPDX-License-Identifier: Apache-2.0
/// @file
/// The GEMM of `cuda::host_system`: the CPU backend's (`cpu::dense_ops`: Eigen, or OpenBLAS where
/// the program links it) on views of the host system's memory.
///
/// Include it in every file that runs `cuda::backend<T, cuda::host_system>`'s GEMMs (a layer's
/// forward or backward, a trainer); without it, such a file fails to compile with a
/// `static_assert` that names this header.
///
/// Why a header of its own, and not part of <fusemix/backend/cuda/backend.hpp>: this is the only
/// place where the CUDA backend meets Eigen. Included from backend.hpp it would bring Eigen into
/// every device build, which must not see it (STYLE.md: the backends meet at a pointer and a
/// shape). Included from backend.hpp only when the compiler is not nvcc, it would leave a `.cu`
/// file that runs the host system without it, and would make what backend.hpp declares depend on
/// the compiler again. So `detail::gemm_ops<host_system>` is an explicit specialization that
/// lives here, with the same definition in every translation unit that includes it, and the
/// primary template's `static_assert` says where it is.
#pragma once

#include <cstddef>

#include <Eigen/Core>

#include <fusemix/backend/cpu/gemm.hpp>
#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/gemm.hpp>
#include <fusemix/backend/cuda/system.hpp>

namespace fusemix::cuda::detail {

template <>
struct gemm_ops<host_system> {
  template <class T>
  static void gemm(context<host_system>& ctx, T alpha, const gemm_operand<T>& a, const gemm_operand<T>& b, T beta,
                   T* c, std::size_t m, std::size_t n, bool /*reuse_a*/) {
    const auto prof = ctx.profile("gemm");
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const matrix> ea(a.data, static_cast<Eigen::Index>(a.rows), static_cast<Eigen::Index>(a.cols));
    const Eigen::Map<const matrix> eb(b.data, static_cast<Eigen::Index>(b.rows), static_cast<Eigen::Index>(b.cols));
    Eigen::Map<matrix> ec(c, static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(n));
    cpu::dense_ops<T>{}.gemm(alpha, ea, a.transposed, eb, b.transposed, beta, ec);
  }
};

}  // namespace fusemix::cuda::detail
