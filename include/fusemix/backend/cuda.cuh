// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's umbrella header: include it from `.cu` files and link `fusemix::cuda`.
#ifndef __CUDACC__
#  error "<fusemix/backend/cuda.cuh> needs nvcc; CPU code includes <fusemix/fusemix.hpp>"
#endif
#pragma once

#include <fusemix/backend/cuda/device.cuh>
#include <fusemix/backend/cuda/error.cuh>
