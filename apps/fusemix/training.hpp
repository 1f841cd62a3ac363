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

/// Retrieval of (zx, zy) embedded by (hx, hy) in evaluation mode.
template <class HX, class HY>
fusemix::retrieval_result retrieval_of(HX& hx, HY& hy, const fusemix::matrix<float>& zx, const fusemix::matrix<float>& zy,
                                       std::span<const std::int64_t> image_of_text) {
  hx.set_training(false);
  hy.set_training(false);
  const fusemix::matrix<float> sx = hx.forward(zx);
  const fusemix::matrix<float> sy = hy.forward(zy);
  return fusemix::evaluate_retrieval<float>(sx, sy, image_of_text);
}

}  // namespace fusemix_cli
