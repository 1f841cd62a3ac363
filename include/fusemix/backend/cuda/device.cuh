// SPDX-License-Identifier: Apache-2.0
/// @file
/// CUDA devices: how many this process can use.
#ifndef __CUDACC__
#  error "<fusemix/backend/cuda/device.cuh> needs nvcc; CPU code includes <fusemix/fusemix.hpp>"
#endif
#pragma once

#include <cuda_runtime_api.h>

#include <fusemix/backend/cuda/error.cuh>

namespace fusemix::cuda {

/// The number of CUDA devices this process can use.
///
/// @returns 0 when there is no device or no usable driver (`cudaErrorNoDevice`,
///          `cudaErrorInsufficientDriver`), so that callers can skip GPU work.
/// @throws std::system_error (category "cuda") for any other failure of `cudaGetDeviceCount`.
///
/// **Example**
///
///     if (fusemix::cuda::device_count() == 0) return 77;  // ctest's SKIP_RETURN_CODE
[[nodiscard]] inline int device_count();

/// Whether at least one CUDA device can be used; the same as `device_count() > 0`.
[[nodiscard]] inline bool has_device();

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

inline int device_count() {
  int n = 0;
  const cudaError_t e = ::cudaGetDeviceCount(&n);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
    static_cast<void>(::cudaGetLastError());  // not an error for the caller: clear it
    return 0;
  }
  detail::check(e, "cudaGetDeviceCount(&n)");
  return n;
}

inline bool has_device() { return device_count() > 0; }

}  // namespace fusemix::cuda
