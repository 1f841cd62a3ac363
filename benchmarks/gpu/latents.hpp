// SPDX-License-Identifier: Apache-2.0
/// @file
/// What the GPU benchmarks share: their random latents and the device's name.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>

#include <fusemix/backend/cuda/error.cuh>
#include <fusemix/core/random.hpp>

namespace fusemix_bench {

/// n × d standard normal floats, row i from `philox_engine(seed, i)`; rows L2-normalised if asked.
inline std::vector<float> normal_latents(std::size_t n, std::size_t d, std::uint64_t seed, bool normalize) {
  std::vector<float> z(n * d);
  const auto fill = [&](std::size_t begin, std::size_t end) {
    std::vector<double> row(d);
    for (std::size_t i = begin; i < end; ++i) {
      fusemix::philox_engine rng(seed, i);
      double sq = 0;
      for (auto& x : row) {
        x = fusemix::sample_normal(rng);
        sq += x * x;
      }
      const double scale = normalize && sq > 0 ? 1.0 / std::sqrt(sq) : 1.0;
      for (std::size_t c = 0; c < d; ++c) z[i * d + c] = static_cast<float>(row[c] * scale);
    }
  };
  const std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) pool.emplace_back(fill, n * t / threads, n * (t + 1) / threads);
  for (auto& th : pool) th.join();
  return z;
}

/// The current CUDA device's name.
inline std::string device_name() {
  int dev = 0;
  cudaDeviceProp prop{};
  FUSEMIX_CUDA_CHECK(cudaGetDevice(&dev));
  FUSEMIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  return prop.name;
}

}  // namespace fusemix_bench
