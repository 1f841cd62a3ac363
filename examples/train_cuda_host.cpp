// SPDX-License-Identifier: Apache-2.0
// train_cuda.cu compiled by the C++ compiler: the CUDA backend's code on Thrust's CPP system.
#include "train_cuda.cu"
