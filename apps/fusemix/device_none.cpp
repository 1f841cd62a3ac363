// SPDX-License-Identifier: Apache-2.0
// `--device cuda` in a program built without CUDA (FUSEMIX_CUDA=OFF): a clear error, exit 2.
#include <string>

#include <fusemix/core/error.hpp>

#include "training.hpp"

namespace fusemix_cli {
namespace {
[[noreturn]] void no_cuda(const char* command) {
  throw fusemix::device_error(std::string(command) +
                              ": --device cuda: this fusemix was built without CUDA (configure with -DFUSEMIX_CUDA=ON "
                              "on a machine with nvcc), so only --device cpu is available");
}
}  // namespace

bool cuda_built() noexcept { return false; }
train_result train_cuda(const train_settings&, const data_set&) { no_cuda("fusemix train"); }
fusemix::selection select_cuda(const fusemix::latent_view<float>&, std::size_t, const fusemix::linear_kernel&,
                               const fusemix::kdpp_options&) {
  no_cuda("fusemix select");
}
fusemix::selection select_cuda(const fusemix::latent_view<float>&, std::size_t, const fusemix::cosine_kernel&,
                               const fusemix::kdpp_options&) {
  no_cuda("fusemix select");
}
fusemix::selection select_cuda(const fusemix::latent_view<float>&, std::size_t, const fusemix::polynomial_kernel&,
                               const fusemix::kdpp_options&) {
  no_cuda("fusemix select");
}
fusemix::selection select_cuda(const fusemix::latent_view<float>&, std::size_t, const fusemix::rbf_kernel&,
                               const fusemix::kdpp_options&) {
  no_cuda("fusemix select");
}

fusemix::search_result<float> search_cuda(const fusemix::latent_view<float>&, std::size_t, const gallery_blocks&,
                                          std::size_t) {
  no_cuda("fusemix search");
}

}  // namespace fusemix_cli
