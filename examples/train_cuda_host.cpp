// SPDX-License-Identifier: Apache-2.0
// train_cuda.cu compiled by the C++ compiler: the CUDA backend's code on cuda::host_system, whose
// GEMMs are the CPU backend's.
#include <fusemix/backend/cuda/host_gemm.hpp>

#include "train_cuda.cu"
