// SPDX-License-Identifier: Apache-2.0
/// @file
/// CUDA and cuBLAS failures as `std::system_error`, and the macros that check every call.
#ifndef __CUDACC__
#  error "<fusemix/backend/cuda/error.cuh> needs nvcc; CPU code includes <fusemix/fusemix.hpp>"
#endif
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>
#include <system_error>

namespace fusemix::cuda {

/// The error category of `cudaError_t` codes: name "cuda", messages from `cudaGetErrorString`.
[[nodiscard]] inline const std::error_category& cuda_category() noexcept;

/// The error category of `cublasStatus_t` codes: name "cublas", messages from
/// `cublasGetStatusString`.
[[nodiscard]] inline const std::error_category& cublas_category() noexcept;

namespace detail {

/// Throws `std::system_error` in `cuda_category()` unless `e` is `cudaSuccess`.
///
/// @param e    the status a CUDA runtime call returned.
/// @param call the call as written, which starts the exception's message.
/// @throws std::system_error with `code().value() == e`.
inline void check(cudaError_t e, const char* call);

/// Throws `std::system_error` in `cublas_category()` unless `s` is `CUBLAS_STATUS_SUCCESS`.
///
/// @param s    the status a cuBLAS call returned.
/// @param call the call as written, which starts the exception's message.
/// @throws std::system_error with `code().value() == s`.
inline void check(cublasStatus_t s, const char* call);

}  // namespace detail
}  // namespace fusemix::cuda

/// Calls a CUDA runtime function and throws `std::system_error` (category "cuda") if it fails.
///
/// **Example**
///
///     FUSEMIX_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
#define FUSEMIX_CUDA_CHECK(call) ::fusemix::cuda::detail::check((call), #call)

/// Calls a cuBLAS function and throws `std::system_error` (category "cublas") if it fails.
///
/// **Example**
///
///     FUSEMIX_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b, n, a, k, &zero, c, n));
#define FUSEMIX_CUBLAS_CHECK(call) ::fusemix::cuda::detail::check((call), #call)

/// Throws `std::system_error` (category "cuda") if the last kernel launch failed. Kernels never
/// throw, so put this after every `<<<...>>>` launch.
///
/// **Example**
///
///     scale<<<blocks, 256, 0, stream>>>(n, 2.0f, x);
///     FUSEMIX_CUDA_CHECK_LAUNCH();
#define FUSEMIX_CUDA_CHECK_LAUNCH() \
  ::fusemix::cuda::detail::check(::cudaGetLastError(), "kernel launch (cudaGetLastError())")

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

namespace fusemix::cuda {

inline const std::error_category& cuda_category() noexcept {
  struct category final : std::error_category {
    const char* name() const noexcept override { return "cuda"; }
    std::string message(int c) const override {
      return ::cudaGetErrorString(static_cast<cudaError_t>(c));
    }
  };
  static const category instance;
  return instance;
}

inline const std::error_category& cublas_category() noexcept {
  struct category final : std::error_category {
    const char* name() const noexcept override { return "cublas"; }
    std::string message(int c) const override {
      return ::cublasGetStatusString(static_cast<cublasStatus_t>(c));
    }
  };
  static const category instance;
  return instance;
}

namespace detail {

inline void check(cudaError_t e, const char* call) {
  if (e == cudaSuccess) return;
  // A failed runtime call also becomes the "last error"; clear it (when it is not sticky) so
  // that the next FUSEMIX_CUDA_CHECK_LAUNCH() does not report it a second time.
  static_cast<void>(::cudaGetLastError());
  throw std::system_error(static_cast<int>(e), cuda_category(), call);
}

inline void check(cublasStatus_t s, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::system_error(static_cast<int>(s), cublas_category(), call);
}

}  // namespace detail
}  // namespace fusemix::cuda
