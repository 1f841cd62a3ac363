// SPDX-License-Identifier: Apache-2.0
// The parity harness (parity.hpp) on the CPU backend in float, against itself in double, through
// every GEMM library this build has (Eigen always; OpenBLAS where linked).
#include <cstdio>
#include <exception>

#include "parity.hpp"

int main() {
  namespace fm = fusemix;
  namespace parity = fusemix::test::parity;
  try {
    parity::report r;
    const auto select = [](const auto& z, std::size_t k, const auto& kernel, const fm::kdpp_options& o) {
      return fm::greedy_kdpp(z, k, kernel, o);
    };
    std::vector<parity::gemm_mode> modes;
    const fm::cpu::gemm_library initial = fm::cpu::current_gemm_library();
    for (const auto lib : {fm::cpu::gemm_library::eigen, fm::cpu::gemm_library::openblas})
      if (lib != initial && (lib != fm::cpu::gemm_library::openblas || fm::cpu::openblas_linked()))
        modes.push_back({std::string(fm::cpu::to_string(lib)), 1e-5, [lib] { fm::cpu::set_gemm_library(lib); },
                         [initial] { fm::cpu::set_gemm_library(initial); }});
    parity::run(r,
                parity::target<fm::cpu::backend<float>, decltype(select)>{
                    .name = fm::concat("cpu::backend<float> (GEMM: ", fm::cpu::to_string(initial), ")"),
                    .backend = {}, .select = select, .select_name = "fusemix::greedy_kdpp", .modes = modes},
                1);
    return parity::finish(r);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    return 1;
  }
}
