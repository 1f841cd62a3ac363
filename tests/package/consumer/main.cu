// SPDX-License-Identifier: Apache-2.0
/// @file
/// A CUDA program that uses the installed fusemix::cuda target (built by the package tests, not
/// run): the umbrella header, the backend on both systems, an adapter on a GPU.
#include <fusemix/backend/cuda.cuh>
#include <fusemix/nn/adapter.hpp>

#include <cstdio>
#include <system_error>

static_assert(fusemix::Backend<fusemix::cuda::backend<float>>);
static_assert(fusemix::Backend<fusemix::cuda::host_backend<float>>);

int main() {
  try {
    const int devices = fusemix::cuda::device_count();
    std::printf("cuda consumer ok: %d CUDA device(s)\n", devices);
    if (devices == 0) return 0;
    using B = fusemix::cuda::backend<float>;
    const B be;
    fusemix::fusion_adapter<fusemix::dynamic_shape, B> a({.in_dim = 8, .out_dim = 4, .depth = 1}, {}, be);
    B::matrix_type x(3, 8);
    be.fill(x, 1.0f);
    const auto y = be.download(a.forward(x));
    std::printf("adapter output: %zu values, sum %g\n", y.size(), static_cast<double>(be.sum(a.forward(x))));
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "cuda consumer: %s\n", e.what());
    return 1;
  }
  return 0;
}
