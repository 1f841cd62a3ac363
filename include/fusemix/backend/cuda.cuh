// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's umbrella header: include it from `.cu` files and link `fusemix::cuda`.
/// (A `.cu` file that also runs `cuda::host_system`'s GEMMs includes
/// <fusemix/backend/cuda/host_gemm.hpp> as well; a `.cpp` file includes
/// <fusemix/backend/cuda/backend.hpp> and that header, and uses `cuda::host_system`.)
#ifndef __CUDACC__
#  error "<fusemix/backend/cuda.cuh> needs nvcc; CPU code includes <fusemix/fusemix.hpp>"
#endif
#pragma once

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/backend/cuda/device.cuh>
#include <fusemix/backend/cuda/error.cuh>
#include <fusemix/backend/cuda/kdpp.hpp>
#include <fusemix/backend/cuda/resident.hpp>
