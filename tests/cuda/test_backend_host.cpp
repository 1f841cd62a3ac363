// SPDX-License-Identifier: Apache-2.0
// The CUDA backend's code on the host (Thrust's CPP system, Eigen GEMMs) against the CPU backend:
// what CI, which has no GPU, can execute of it. The same checks run on a GPU in test_backend.cu.
#include "backend_checks.hpp"

int main() {
  try {
    return fusemix::test::run_backend_checks(1) == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    return 1;
  }
}
