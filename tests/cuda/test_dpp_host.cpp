// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's k-DPP selector run on the host (Thrust's CPP system), checked against the
/// CPU selector: how CI, which has no GPU, executes it. Exits 0 on success, 1 on a failure.
#include <fusemix/backend/cuda/system.hpp>  // first: it chooses Thrust's device system

#include <cstdio>
#include <exception>

#include "dpp_checks.hpp"

int main() {
  try {
    return run_dpp_checks() == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test_dpp_host: unexpected exception: %s\n", e.what());
    return 1;
  }
}
