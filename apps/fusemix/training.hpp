// SPDX-License-Identifier: Apache-2.0
/// @file
/// What `fusemix train`, `eval` and `demo` share: settings, data, retrieval of a model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <fusemix/fusemix.hpp>

namespace fusemix_cli {

/// The SPEC's per-task settings.
struct preset {
  std::size_t depth_x, depth_y;
  bool identity_y;
  std::size_t epochs, batch;
  double lr, weight_decay;
};
preset preset_named(const std::string& name);

/// Applies `--gemm`: "auto" keeps fusemix::cpu::default_gemm_library(), "eigen" or "openblas"
/// force one. @throws argument_error for openblas in a build without it.
void choose_gemm_library(const std::string& name);

struct train_settings {
  std::string x, y, x_val, y_val, gemm = "auto";
  std::string device = "cpu", precision = "fp32";  ///< --device cpu|cuda; --precision of the GPU's GEMMs
  std::string loss = "contrastive";                  ///< --loss contrastive|sigmoid
  std::filesystem::path out;
  std::size_t depth_x = 2, depth_y = 2, shared_dim = 0, expansion = 4, threads = 0, checkpoint_every = 1;
  std::size_t print_every = 1;  ///< a summary line every this many epochs (and the last)
  bool identity_y = false, resume = false, quiet = false;
  double dropout = 0.6;
  fusemix::train_options train{};
};

struct data_set {
  fusemix::matrix<float> x, y, x_val, y_val;
};

struct train_result {
  double last_loss = 0;
  std::optional<fusemix::retrieval_result> val;
};

data_set load_data(const train_settings& s);
/// Trains as `fusemix train` does, writing OUT/{adapters,checkpoint}.safetensors and metrics.jsonl.
train_result train(const train_settings& s, const data_set& d);
/// The settings a checkpoint must have been written with to be resumed.
std::string run_signature(const train_settings& s, std::size_t dx, std::size_t dy);

nlohmann::json retrieval_json(const fusemix::retrieval_result& r);
void print_retrieval_table(const std::vector<std::pair<std::string, fusemix::retrieval_result>>& rows);

/// `h(z)` in evaluation mode, as a host matrix (copied from the device for the CUDA backend).
template <class H, class M>
fusemix::matrix<float> embed_on_host(H& h, const M& z) {
  h.set_training(false);
  const auto& out = h.forward(z);
  if constexpr (std::is_same_v<std::remove_cvref_t<decltype(out)>, fusemix::matrix<float>>) {
    return out;
  } else {
    fusemix::matrix<float> m(static_cast<Eigen::Index>(out.rows()), static_cast<Eigen::Index>(out.cols()));
    h.backend().download(out.data(), std::span<float>(m.data(), static_cast<std::size_t>(m.size())));
    return m;
  }
}

/// Retrieval of (zx, zy) embedded by (hx, hy) in evaluation mode.
template <class HX, class HY, class M>
fusemix::retrieval_result retrieval_of(HX& hx, HY& hy, const M& zx, const M& zy,
                                       std::span<const std::int64_t> image_of_text) {
  const fusemix::matrix<float> sx = embed_on_host(hx, zx);
  const fusemix::matrix<float> sy = embed_on_host(hy, zy);
  return fusemix::evaluate_retrieval<float>(sx, sy, image_of_text);
}

/// The per-epoch validation of a CPU run: retrieval of the validation pairs, if any.
inline auto validate_on(const data_set& d) {
  return [&d](auto& hx, auto& hy) -> std::optional<fusemix::retrieval_result> {
    if (d.x_val.size() == 0) return std::nullopt;
    return retrieval_of(hx, hy, d.x_val, d.y_val, {});
  };
}

// The GPU side (apps/fusemix/cuda.cu; without CUDA, device_none.cpp throws device_error).

/// Whether this program was built with the CUDA backend.
bool cuda_built() noexcept;
/// `fusemix train --device cuda`: the same run on the GPU (pairs uploaded once).
train_result train_cuda(const train_settings& s, const data_set& d);
/// `fusemix select --device cuda`: the greedy k-DPP on the GPU, one overload per built-in kernel.
fusemix::selection select_cuda(const fusemix::latent_view<float>& z, std::size_t k, const fusemix::linear_kernel& kernel,
                               const fusemix::kdpp_options& o);
fusemix::selection select_cuda(const fusemix::latent_view<float>& z, std::size_t k, const fusemix::cosine_kernel& kernel,
                               const fusemix::kdpp_options& o);
fusemix::selection select_cuda(const fusemix::latent_view<float>& z, std::size_t k, const fusemix::polynomial_kernel& kernel,
                               const fusemix::kdpp_options& o);
fusemix::selection select_cuda(const fusemix::latent_view<float>& z, std::size_t k, const fusemix::rbf_kernel& kernel,
                               const fusemix::kdpp_options& o);
/// `fusemix search --device cuda`: `top_k` on the GPU (the gallery sent a block at a time).
fusemix::search_result<float> search_cuda(const fusemix::latent_view<float>& queries,
                                          const fusemix::latent_view<float>& gallery, std::size_t k);

}  // namespace fusemix_cli
