// SPDX-License-Identifier: Apache-2.0
/// @file
/// Reading a model file (PyTorch-named safetensors) back into adapters of the right shape.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>

#include <fusemix/fusemix.hpp>

namespace fusemix_cli {

/// The adapter shape implied by the tensors under `prefix` (`vis_proj.` or `text_proj.`):
/// depth = number of blocks, in_dim and expansion from the first Linear, out_dim from the last.
/// @throws fusemix::io_error if the tensors under `prefix` do not form an adapter.
inline fusemix::adapter_shape infer_shape(const fusemix::io::tensor_map& t, std::string_view prefix,
                                          const std::string& file) {
  const std::string p(prefix);
  std::size_t depth = 0;
  while (t.count(p + std::to_string(depth) + ".ln.weight")) ++depth;
  const auto ln = t.find(p + std::to_string(depth) + ".weight");
  const auto proj = t.find(p + std::to_string(depth + 1) + ".weight");
  if (ln == t.end() || proj == t.end() || ln->second.shape.size() != 1 || proj->second.shape.size() != 2)
    throw fusemix::io_error("fusemix: " + file + ": no adapter under \"" + p + "\" (expected " + p +
                            "{i}.ln.weight ..., " + p + std::to_string(depth) + ".weight and " + p +
                            std::to_string(depth + 1) + ".weight)");
  fusemix::adapter_shape s{.in_dim = ln->second.shape[0], .out_dim = proj->second.shape[0], .depth = depth,
                           .expansion = 4};
  if (depth > 0) {
    const auto fc1 = t.find(p + "0.fn.0.weight");
    if (fc1 == t.end() || fc1->second.shape.size() != 2 || fc1->second.shape[0] % s.in_dim != 0)
      throw fusemix::io_error("fusemix: " + file + ": " + p + "0.fn.0.weight missing or not a multiple of in_dim");
    s.expansion = fc1->second.shape[0] / s.in_dim;
  }
  return s;
}

/// Whether `t` holds an adapter under `prefix` (its final LayerNorm and projection at least).
inline bool has_adapter(const fusemix::io::tensor_map& t, std::string_view prefix) {
  const std::string p(prefix);
  return t.lower_bound(p) != t.end() && t.lower_bound(p)->first.starts_with(p);
}

/// Builds the adapter under `prefix` of a model file already read, its shape inferred from the tensors.
inline fusemix::fusion_adapter<> load_adapter(const fusemix::io::safetensors_file& f, std::string_view prefix) {
  fusemix::fusion_adapter<> a(infer_shape(f.tensors, prefix, f.path.string()), {.dropout = 0.0});
  fusemix::io::load_parameters(a, prefix, f);  // the file overload names f.path in its messages
  return a;
}

/// Loads the adapter under `prefix` from `file`.
inline fusemix::fusion_adapter<> load_adapter(const std::string& file, std::string_view prefix) {
  return load_adapter(fusemix::io::read_safetensors(file), prefix);
}

/// Reads the latents of option `flag` (an N x D `.npy` file) for the subcommand `where`, refusing
/// NaN and Inf: they would pass through an adapter or a kernel into garbage without an error.
/// @throws fusemix::io_error from `read_npy`; fusemix::numeric_error naming the file, row and column.
inline fusemix::io::matrix<float> read_latents(std::string_view where, std::string_view flag, const std::string& path) {
  auto z = fusemix::io::read_npy<float>(path);
  if (!z.allFinite())
    for (Eigen::Index i = 0; i < z.rows(); ++i)
      for (Eigen::Index j = 0; j < z.cols(); ++j)
        if (!std::isfinite(z(i, j)))
          fusemix::throw_expected<fusemix::numeric_error>(
              where, fusemix::concat(flag, " ", path, ": latents must be finite"), "finite values",
              fusemix::concat(z(i, j), " at row ", i, ", column ", j));
  return z;
}

/// Checks that the latents of option `flag` (file `path`) are as wide as the adapter `prefix` of
/// `model` takes. @throws fusemix::shape_error naming both files.
inline void require_width(std::string_view where, std::string_view flag, const std::string& path, Eigen::Index cols,
                          std::string_view prefix, std::size_t in_dim, const std::string& model) {
  if (static_cast<std::size_t>(cols) != in_dim)
    fusemix::throw_shape_error(
        where, fusemix::concat(flag, " ", path, ": latent width must equal the in_dim of ", prefix, " in ", model),
        in_dim, cols);
}

}  // namespace fusemix_cli
