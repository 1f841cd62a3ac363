// SPDX-License-Identifier: Apache-2.0
// The parity harness (parity.hpp) on a GPU: the CUDA backend on `cuda::device_system` in float
// (cuBLAS in fp32, and TF32 and bf16 as GEMM modes; the Thrust and row kernels), at 12 times the
// host sizes so that launches have many blocks and rows are wider than a block. Exits 77
// (skipped) without a device.
#include <fusemix/backend/cuda.cuh>

#include <cstdio>
#include <exception>

#include "cuda_selector.hpp"
#include "latent_sources.hpp"
#include "parity.hpp"

int main() {
  namespace fm = fusemix;
  namespace parity = fusemix::test::parity;
  try {
    if (fm::cuda::device_count() == 0) {
      std::puts("no CUDA device: skipped");
      return 77;
    }
    cudaDeviceProp prop{};
    FUSEMIX_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s\n", prop.name);
    using S = fm::cuda::device_system;
    using B = fm::cuda::backend<float, S>;
    const B be;
    const auto precision = [be](fm::cuda::gemm_precision p) { return [be, p] { be.ctx().set_precision(p); }; };
    const auto fp32 = precision(fm::cuda::gemm_precision::fp32);
    // Tensor-core bounds: operands rounded to 10 (TF32) and 7 (bf16) mantissa bits over k-long sums.
    std::vector<parity::gemm_mode> modes{{"tf32", 5e-3, precision(fm::cuda::gemm_precision::tf32), fp32},
                                         {"bf16", 2e-2, precision(fm::cuda::gemm_precision::bf16), fp32}};
    const auto select = [](const auto& z, std::size_t k, const auto& kernel, const fm::kdpp_options& o) {
      return fm::cuda::greedy_kdpp<S>(z, k, kernel, o);
    };
    parity::report r;
    parity::run(r,
                parity::target<B, decltype(select)>{.name = "cuda::backend<float> on " + std::string(prop.name),
                                                    .backend = be, .select = select,
                                                    .select_name = "fusemix::cuda::greedy_kdpp", .scale = 12,
                                                    .modes = modes,
                                                    .allocations = [] { return fm::cuda::allocations(); }},
                1);
    parity::cuda_selector_entry_points<S>(r);
    parity::latent_sources<S>(r);
    return parity::finish(r);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    return 1;
  }
}
