// SPDX-License-Identifier: Apache-2.0
// The CUDA backend on a GPU against the CPU backend: every primitive (cuBLAS GEMMs in fp32, TF32
// and bf16; the Thrust kernels; the row kernels) and whole training steps, on fresh random inputs
// with poisoned outputs (tests/cuda/backend_checks.hpp). Exits 77 (skipped) without a device.
#include <fusemix/backend/cuda.cuh>

#include <cstdio>
#include <exception>

#include "backend_checks.hpp"

int main() {
  try {
    if (fusemix::cuda::device_count() == 0) {
      std::puts("no CUDA device: skipped");
      return 77;
    }
    cudaDeviceProp prop{};
    FUSEMIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s\n", prop.name);
    // Larger than on the host: many blocks per launch, rows wider than a block.
    return fusemix::test::run_backend_checks<fusemix::cuda::device_system>(12) == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    return 1;
  }
}
