// SPDX-License-Identifier: Apache-2.0
// The parity harness (parity.hpp) on the CUDA backend's host system (`cuda::host_system`: the
// C++ compiler, the functors in host loops, the CPU's GEMM), in float and double: what CI, which
// has no GPU, executes of the CUDA backend. test_gpu.cu runs the same checks on a GPU.
#include <cstdio>
#include <exception>

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/backend/cuda/host_gemm.hpp>
#include <fusemix/backend/cuda/kdpp.hpp>

#include "cuda_selector.hpp"
#include "latent_sources.hpp"
#include "parity.hpp"

namespace {

template <class T>
void run(fusemix::test::parity::report& r, std::uint64_t seed) {
  namespace fm = fusemix;
  using S = fm::cuda::host_system;
  const auto select = [](const auto& z, std::size_t k, const auto& kernel, const fm::kdpp_options& o) {
    return fm::cuda::greedy_kdpp<S>(z, k, kernel, o);
  };
  fm::test::parity::run(r,
                        fm::test::parity::target<fm::cuda::backend<T, S>, decltype(select)>{
                            .name = fm::concat("cuda::backend<", sizeof(T) == 4 ? "float" : "double", ", host_system>"),
                            .backend = {}, .select = select, .select_name = "fusemix::cuda::greedy_kdpp",
                            .allocations = [] { return fm::cuda::allocations(); }},
                        seed);
}

}  // namespace

int main() {
  try {
    fusemix::test::parity::report r;
    run<float>(r, 1);
    run<double>(r, 101);
    fusemix::test::parity::cuda_selector_entry_points<fusemix::cuda::host_system>(r);
    fusemix::test::parity::latent_sources<fusemix::cuda::host_system>(r);
    return fusemix::test::parity::finish(r);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    return 1;
  }
}
