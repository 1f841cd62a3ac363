// SPDX-License-Identifier: Apache-2.0
// `fusemix train --device cuda`, `fusemix select --device cuda` and `fusemix search --device
// cuda`: the CPU program's training loop, selector driver and search with fusemix::cuda::backend<float> on cuda::device_system (built when
// FUSEMIX_CUDA is ON).
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/backend/cuda/kdpp.hpp>
#include <fusemix/backend/cuda/resident.hpp>
#include <fusemix/backend/cuda/error.cuh>
#include <fusemix/eval/search.hpp>

#include "train_loop.hpp"
#include "training.hpp"

namespace fusemix_cli {

bool cuda_built() noexcept { return true; }

train_result train_cuda(const train_settings& settings, const data_set& d) {
  using B = fusemix::cuda::backend<float>;
  // Under mpirun each rank trains on its own GPU, exchanging device memory over NCCL; the GPU is
  // chosen before the backend's context (and its stream) exists.
  const bool distributed = process_group().distributed();
  if (distributed && !device_group().communicator)
    throw fusemix::argument_error(fusemix::concat(
        "fusemix train: --device cuda across ", process_group().size(),
        " MPI ranks needs NCCL, and this fusemix was built without it (FUSEMIX_NCCL: CUDA, MPI and "
        "/usr/local/cuda/include/nccl.h); use --device cpu"));
  if (distributed) device_group().select_device();
  const B be;  // device_error when there is no usable device
  train_settings s = settings;
  if (distributed) s.group = device_group().communicator(static_cast<void*>(be.ctx().stream()));
  be.ctx().set_precision(fusemix::cuda::parse_gemm_precision(s.precision));
  std::optional<B::matrix_type> x_val, y_val;
  if (d.x_val.size() > 0) x_val.emplace(be.upload(d.x_val)), y_val.emplace(be.upload(d.y_val));
  auto validate = [&](auto& hx, auto& hy) -> std::optional<fusemix::retrieval_result> {
    if (!x_val) return std::nullopt;
    return retrieval_of(hx, hy, *x_val, *y_val, {});
  };
  if (!d.x_files) {
    // Arrays (the Python module's) go to the device once, as float32.
    const bool whole = d.train_rows.empty();  // (uploaded without a host copy)
    const B::matrix_type zx = whole ? be.upload(d.x) : be.upload(training_matrix(d, true));
    const B::matrix_type zy = whole ? be.upload(d.y) : be.upload(training_matrix(d, false));
    return train_adapters(s, zx, zy, d.cols_x(), d.cols_y(), be, validate);
  }
  // Pairs from files: resident on the device in the files' precision when they fit, otherwise
  // streamed a batch at a time; both give the bits of the same values (docs/data.md).
  using resident = fusemix::cuda::resident_latents<>;
  const std::uint64_t need = resident::bytes_for(*d.x_files, d.pairs()) + resident::bytes_for(*d.y_files, d.pairs());
  std::size_t free = 0, total = 0;
  FUSEMIX_CUDA_CHECK(::cudaMemGetInfo(&free, &total));
  const auto gb = [](double bytes) { return fusemix::concat(std::round(bytes / 1e8) / 10, " GB"); };
  const std::string precision = d.x_files->dtype() == d.y_files->dtype()
                                    ? std::string(d.x_files->dtype() == "<f2"   ? "float16"
                                                  : d.x_files->dtype() == "<f4" ? "float32"
                                                                                : "float64")
                                    : std::string("the files' precisions");
  // Half the free memory: the rest is for the adapters' activations (a whole batch of 40,960
  // mixed rows at depth 4 needs about 16 GB; --micro-batch needs far less).
  const bool in_memory = s.gpu_latents == "resident" || (s.gpu_latents == "auto" && need <= free / 2);
  if (s.gpu_latents == "resident" && need > free)
    throw fusemix::device_error(fusemix::concat("fusemix train: --gpu-latents resident: the pairs need ", gb(need),
                                                " of GPU memory and ", gb(free), " are free; use --gpu-latents stream"));
  train_settings run = s;
  run.notes.push_back(in_memory ? fusemix::concat("pairs: resident on the GPU in ", precision, " (", gb(need), "; ",
                                                  gb(free), " free)")
                                : fusemix::concat("pairs: streamed from the files a batch at a time through page-locked "
                                                  "host buffers (resident they would take ", gb(need), "; ", gb(free),
                                                  " free)"));
  const std::span<const std::size_t> rows(d.train_rows);  // empty: every row
  if (in_memory) {
    const resident zx(be.shared_context(), *d.x_files, rows), zy(be.shared_context(), *d.y_files, rows);
    return train_adapters(run, zx, zy, d.cols_x(), d.cols_y(), be, validate);
  }
  if (!d.train_rows.empty()) {
    const fusemix::row_subset zx(*d.x_files, d.train_rows), zy(*d.y_files, d.train_rows);
    return train_adapters(run, zx, zy, d.cols_x(), d.cols_y(), be, validate);
  }
  return train_adapters(run, *d.x_files, *d.y_files, d.cols_x(), d.cols_y(), be, validate);
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

fusemix::search_result<float> search_cuda(const fusemix::latent_view<float>& queries, std::size_t gallery_rows,
                                          const gallery_blocks& gallery, std::size_t k) {
  return fusemix::top_k_by_blocks(fusemix::cuda::backend<float>{}, queries, gallery_rows, gallery, k);
}

}  // namespace fusemix_cli
