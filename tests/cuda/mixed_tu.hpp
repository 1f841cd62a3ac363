// SPDX-License-Identifier: Apache-2.0
// One program, two compilers: test_mixed_tu_a.cu (nvcc) and test_mixed_tu_b.cpp (the C++
// compiler) both use `cuda::backend<float, cuda::host_system>`, an adapter on it and its
// context. With the system a type, both see one definition of each; the program links, shares
// one process-wide context, and memory allocated in one file is read and freed in the other.
#pragma once

#include <cstddef>
#include <vector>

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/backend/cuda/host_gemm.hpp>
#include <fusemix/nn/adapter.hpp>

namespace mixed_tu {

using backend = fusemix::cuda::host_backend<float>;
using adapter = fusemix::fusion_adapter<fusemix::dynamic_shape, backend>;

/// What one file sees of the host system, and what it computes with it.
struct report {
  const void* context = nullptr;  // context<host_system>::shared(): one object per program
  std::size_t context_size = 0, backend_size = 0, matrix_size = 0, adapter_size = 0;
  std::vector<float> embedding;  // an adapter's forward on fixed inputs
  float sigmoid_loss = 0;
};

report from_nvcc();  // test_mixed_tu_a.cu
report from_cxx();   // test_mixed_tu_b.cpp

/// A 3 × 5 matrix holding 0, 1, …, 14, made by the nvcc file's code.
backend::matrix_type matrix_from_nvcc();

namespace {  // each file compiles its own copy, with its own compiler

inline report compute() {
  using context = fusemix::cuda::context<fusemix::cuda::host_system>;
  const backend be;
  report r;
  r.context = context::shared().get();
  r.context_size = sizeof(context), r.backend_size = sizeof(backend);
  r.matrix_size = sizeof(backend::matrix_type), r.adapter_size = sizeof(adapter);
  const std::size_t n = 6, d = 8;
  std::vector<float> z(n * d);
  for (std::size_t i = 0; i < z.size(); ++i) z[i] = static_cast<float>(i % 7) * 0.25f - 0.5f;
  backend::matrix_type dz(n, d);
  be.upload(z, dz.data());
  adapter h({.in_dim = d, .out_dim = 4, .depth = 1, .expansion = 2}, {.dropout = 0.0, .seed = 5}, be);
  h.set_training(false);
  r.embedding = be.download(h.forward(dz));
  backend::matrix_type logits(n, n), g(n, n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) logits.data()[i * n + j] = static_cast<float>(i == j ? 3 : -1) + 0.1f * j;
  r.sigmoid_loss = be.sigmoid_cross_entropy(logits, 0, g) / static_cast<double>(n);
  return r;
}

}  // namespace
}  // namespace mixed_tu
