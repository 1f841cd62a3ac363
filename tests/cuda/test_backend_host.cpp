// SPDX-License-Identifier: Apache-2.0
// The CUDA backend on `cuda::host_system` (the C++ compiler; functors in host loops, the CPU
// backend's GEMMs) against the CPU backend: what CI, which has no GPU, can execute of it. The
// same checks run on a GPU in test_backend.cu.
#include <fusemix/backend/cuda/host_gemm.hpp>

#include <cstdio>
#include <exception>

#include "backend_checks.hpp"

int main() {
  try {
    return fusemix::test::run_backend_checks<fusemix::cuda::host_system>(1) == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    return 1;
  }
}
