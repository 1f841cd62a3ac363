// SPDX-License-Identifier: Apache-2.0
/// @file
/// A CUDA program that uses the installed fusemix::cuda target (built by the package tests, not run).
#include <fusemix/backend/cuda.cuh>

#include <cstdio>
#include <system_error>

int main() {
  try {
    std::printf("cuda consumer ok: %d CUDA device(s)\n", fusemix::cuda::device_count());
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "cuda consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}
