// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's k-DPP selector on a GPU, checked against the CPU selector. Exits 0 on
/// success, 1 on a failure and 77 (ctest's SKIP_RETURN_CODE) when no CUDA device can be used.
#include <fusemix/backend/cuda.cuh>

#include <cstdio>
#include <exception>

#include "dpp_checks.hpp"

int main() {
  try {
    if (fusemix::cuda::device_count() == 0) {
      std::puts("test_dpp: no CUDA device, skipped");
      return 77;
    }
    return run_dpp_checks<fusemix::cuda::device_system>() == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test_dpp: unexpected exception: %s\n", e.what());
    return 1;
  }
}
