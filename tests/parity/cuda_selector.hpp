// SPDX-License-Identifier: Apache-2.0
// What the CUDA selector's entry points add to the harness's k-DPP section (which runs its
// host-latent entry point and its engine): latents already in backend memory, the window the
// device selector refuses, and a null device pointer. Run by test_cuda_host.cpp and test_gpu.cu.
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <vector>

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/backend/cuda/kdpp.hpp>

#include "parity.hpp"

namespace fusemix::test::parity {

template <class S>
void cuda_selector_entry_points(report& r) {
  const std::size_t n = 1200, d = 48;
  std::vector<float> z(n * d);
  philox_engine rng(11);
  for (auto& x : z) x = static_cast<float>(sample_normal(rng));
  const auto ctx = cuda::context<S>::shared();
  cuda::array<float, S> dz(n * d);
  cuda::copy_to_device(*ctx, z.data(), dz.data(), n * d);
  const latent_view<float> v(z.data(), n, d);
  try {
    for (const std::size_t k : {30, 60}) {
      const auto a = cuda::greedy_kdpp(dz.data(), n, d, k, polynomial_kernel{}, {}, ctx);
      const auto b = cuda::greedy_kdpp<S>(v, k, polynomial_kernel{});
      r.expect(a.picks == b.picks && a.gains == b.gains && a.stop == b.stop,
               concat("greedy_kdpp on backend memory is the host-latent one (k=", k, ")"), __LINE__);
    }
  } catch (const std::exception& e) {
    r.expect(false, std::string("greedy_kdpp on backend memory: ") + e.what(), __LINE__);
  }
  const auto refused = [&](auto&& f, std::string_view part, std::string_view what) {
    std::string m;
    try {
      f();
    } catch (const argument_error& e) {
      m = e.what();
    }
    r.expect(m.rfind("fusemix::cuda::greedy_kdpp: ", 0) == 0 && m.find(part) != std::string::npos,
             concat(what, ": argument_error naming it, got \"", m, "\""), __LINE__);
  };
  refused([&] { static_cast<void>(cuda::greedy_kdpp<S>(v, 5, polynomial_kernel{}, {.window = 3})); }, "window 0 only",
          "window 3 < k = 5");
  refused([&] { static_cast<void>(cuda::greedy_kdpp<S>(static_cast<const float*>(nullptr), n, d, 3, polynomial_kernel{})); },
          "must not be null", "a null device pointer");
}

}  // namespace fusemix::test::parity
