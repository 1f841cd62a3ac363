// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's k-DPP selector on `cuda::host_system`, checked against the CPU selector:
/// how CI, which has no GPU, executes it. Exits 0 on success, 1 on a failure.
#include <cstdio>
#include <exception>

#include "dpp_checks.hpp"

int main() {
  try {
    return run_dpp_checks<fusemix::cuda::host_system>() == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test_dpp_host: unexpected exception: %s\n", e.what());
    return 1;
  }
}
