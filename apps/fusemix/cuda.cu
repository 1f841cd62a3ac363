// SPDX-License-Identifier: Apache-2.0
// `fusemix train --device cuda`, `fusemix select --device cuda` and `fusemix search --device
// cuda`: the CPU program's training loop, selector driver and search with fusemix::cuda::backend<float> on cuda::device_system (built when
// FUSEMIX_CUDA is ON).
#include <optional>

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/backend/cuda/kdpp.hpp>
#include <fusemix/eval/search.hpp>

#include "train_loop.hpp"
#include "training.hpp"

namespace fusemix_cli {

bool cuda_built() noexcept { return true; }

train_result train_cuda(const train_settings& s, const data_set& d) {
  using B = fusemix::cuda::backend<float>;
  const B be;  // device_error when there is no usable device
  be.ctx().set_precision(fusemix::cuda::parse_gemm_precision(s.precision));
  // The pairs stay on the device for the whole run; an epoch moves only each step's indices.
  // (Pairs read from files are read whole first: streaming them a batch at a time is for later.)
  const bool whole_arrays = d.train_rows.empty() && !d.x_files;  // (uploaded without a host copy)
  const B::matrix_type zx = whole_arrays ? be.upload(d.x) : be.upload(training_matrix(d, true));
  const B::matrix_type zy = whole_arrays ? be.upload(d.y) : be.upload(training_matrix(d, false));
  std::optional<B::matrix_type> x_val, y_val;
  if (d.x_val.size() > 0) x_val.emplace(be.upload(d.x_val)), y_val.emplace(be.upload(d.y_val));
  auto validate = [&](auto& hx, auto& hy) -> std::optional<fusemix::retrieval_result> {
    if (!x_val) return std::nullopt;
    return retrieval_of(hx, hy, *x_val, *y_val, {});
  };
  return train_adapters(s, zx, zy, d.cols_x(), d.cols_y(), be, validate);
}

fusemix::selection select_cuda(const fusemix::latent_view<float>& z, std::size_t k, const fusemix::linear_kernel& kernel,
                               const fusemix::kdpp_options& o) {
  return fusemix::cuda::greedy_kdpp(z, k, kernel, o);
}
fusemix::selection select_cuda(const fusemix::latent_view<float>& z, std::size_t k, const fusemix::cosine_kernel& kernel,
                               const fusemix::kdpp_options& o) {
  return fusemix::cuda::greedy_kdpp(z, k, kernel, o);
}
fusemix::selection select_cuda(const fusemix::latent_view<float>& z, std::size_t k,
                               const fusemix::polynomial_kernel& kernel, const fusemix::kdpp_options& o) {
  return fusemix::cuda::greedy_kdpp(z, k, kernel, o);
}
fusemix::selection select_cuda(const fusemix::latent_view<float>& z, std::size_t k, const fusemix::rbf_kernel& kernel,
                               const fusemix::kdpp_options& o) {
  return fusemix::cuda::greedy_kdpp(z, k, kernel, o);
}

fusemix::search_result<float> search_cuda(const fusemix::latent_view<float>& queries,
                                          const fusemix::latent_view<float>& gallery, std::size_t k) {
  return fusemix::top_k(fusemix::cuda::backend<float>{}, queries, gallery, k);
}

}  // namespace fusemix_cli
