// SPDX-License-Identifier: Apache-2.0
/// @file
/// A trained model file (`adapters.safetensors`, as `fusemix train` writes it or the authors'
/// PyTorch code saves it) back into adapters in one call, their shapes read from the tensors.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/io/safetensors.hpp>
#include <fusemix/io/weights.hpp>
#include <fusemix/nn/adapter.hpp>

namespace fusemix::io {

/// The two adapters of a model file: `x` (`vis_proj.`, the first modality) and `y`
/// (`text_proj.`).
enum class side { x, y };

/// The tensor-name prefix of a side (`vis_proj.` or `text_proj.`).
[[nodiscard]] constexpr std::string_view prefix_of(side s) noexcept { return s == side::x ? x_prefix : y_prefix; }

/// Whether `tensors` hold anything under `prefix` (a side without tensors is the identity).
template <Scalar T>
[[nodiscard]] bool has_adapter(const basic_tensor_map<T>& tensors, std::string_view prefix);

/// The adapter shape the tensors under `prefix` form: the depth is the number of blocks
/// (`{i}.ln.weight`), `in_dim` the width of the final LayerNorm, `expansion` the first block's
/// hidden width over `in_dim`, `out_dim` the projection's rows.
///
/// @param file named in the messages (may be empty).
/// @throws argument_error if `prefix` does not end with '.' (`vis_proj.`, not `vis_proj`).
/// @throws io_error if the tensors under `prefix` do not form an adapter (naming the tensor that
///         is missing or malformed).
///
/// **Example**
///
///     const auto f = fusemix::io::read_safetensors("run/adapters.safetensors");
///     const fusemix::adapter_shape s = fusemix::io::infer_adapter_shape(f.tensors, fusemix::io::x_prefix);
template <Scalar T>
[[nodiscard]] adapter_shape infer_adapter_shape(const basic_tensor_map<T>& tensors, std::string_view prefix,
                                                std::string_view file = {});

/// The adapter of side `s` of a model file, its shape read from the tensors, in evaluation mode
/// (no dropout: `forward` is deterministic).
///
/// @tparam S a compile-time shape to load into (`dynamic_shape`: every field from the file); each
///         fixed field must equal the file's, or a shape_error names the field.
/// @throws io_error if the file cannot be read or holds no adapter for `s`; shape_error on a
///         shape mismatch.
///
/// **Example**
///
///     auto hx = fusemix::io::load_adapter("run/adapters.safetensors", fusemix::io::side::x);
///     const auto& sx = hx.forward(image_latents);                   // evaluation mode
///     auto hi = fusemix::io::load_adapter<fusemix::dinov2_vitg14>(file, fusemix::io::side::x);
template <adapter_shape S = dynamic_shape, Backend B = default_backend>
[[nodiscard]] fusion_adapter<S, B> load_adapter(const safetensors_file& file, side s, B be = {});
template <adapter_shape S = dynamic_shape, Backend B = default_backend>
[[nodiscard]] fusion_adapter<S, B> load_adapter(const std::filesystem::path& file, side s, B be = {});

/// Both sides of a trained model and the learned scalars of its loss. A side absent from the
/// file (`fusemix train --identity-y`, say) is `std::nullopt`: its latents are used as they are.
template <Backend B = default_backend>
struct model {
  std::optional<fusion_adapter<dynamic_shape, B>> x, y;
  /// "contrastive" (`temp`), "sigmoid" (`logit_scale`, `logit_bias`), or empty if none is stored.
  std::string loss;
  /// The loss's learned scalars by their tensor names.
  std::vector<std::pair<std::string, double>> loss_parameters;
};

/// Reads a model file: both adapters (see `load_adapter`) and the loss's scalars.
/// @throws io_error if the file cannot be read or holds no adapter at all; shape_error if the two
///         adapters do not map into spaces of the same width.
///
/// **Example**
///
///     const auto m = fusemix::io::load_model("run/adapters.safetensors");
///     std::printf("%zu -> %zu, %s loss\n", m.x->in_dim(), m.x->out_dim(), m.loss.c_str());
template <Backend B = default_backend>
[[nodiscard]] model<B> load_model(const std::filesystem::path& file, B be = {});

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <Scalar T>
bool has_adapter(const basic_tensor_map<T>& tensors, std::string_view prefix) {
  const auto it = tensors.lower_bound(std::string(prefix));
  return it != tensors.end() && it->first.starts_with(prefix);
}

template <Scalar T>
adapter_shape infer_adapter_shape(const basic_tensor_map<T>& t, std::string_view prefix, std::string_view file) {
  constexpr std::string_view where = "fusemix::io::infer_adapter_shape";
  detail::require_prefix(where, prefix);
  const std::string p(prefix), in = file.empty() ? std::string() : concat(file, ": ");
  std::size_t depth = 0;
  while (t.count(concat(p, depth, ".ln.weight"))) ++depth;
  const auto matrix_or_vector = [&](const std::string& name, std::size_t rank) -> const basic_tensor<T>& {
    const auto it = t.find(name);
    if (it == t.end())
      throw_expected<io_error>(where, concat(in, "no adapter under \"", p, "\" (", depth, " block(s) found)"),
                               concat("a tensor ", name), "none");
    if (it->second.shape.size() != rank)
      throw_expected<io_error>(where, concat(in, name, " has the wrong rank"), rank, it->second.shape.size());
    return it->second;
  };
  const auto& ln = matrix_or_vector(concat(p, depth, ".weight"), 1);
  const auto& proj = matrix_or_vector(concat(p, depth + 1, ".weight"), 2);
  adapter_shape s{.in_dim = ln.shape[0], .out_dim = proj.shape[0], .depth = depth, .expansion = 4};
  if (proj.shape[1] != s.in_dim)
    throw_expected<io_error>(where, concat(in, p, depth + 1, ".weight must take the final LayerNorm's width"),
                             s.in_dim, proj.shape[1]);
  if (depth > 0) {
    const auto& fc1 = matrix_or_vector(p + "0.fn.0.weight", 2);
    if (s.in_dim == 0 || fc1.shape[0] % s.in_dim != 0 || fc1.shape[1] != s.in_dim)
      throw_expected<io_error>(where, concat(in, p, "0.fn.0.weight must be (expansion * in_dim) x in_dim"),
                               concat("k x ", s.in_dim, " with k a multiple of ", s.in_dim),
                               concat(fc1.shape[0], " x ", fc1.shape[1]));
    s.expansion = fc1.shape[0] / s.in_dim;
  }
  return s;
}

template <adapter_shape S, Backend B>
fusion_adapter<S, B> load_adapter(const safetensors_file& file, side sd, B be) {
  constexpr std::string_view where = "fusemix::io::load_adapter";
  const std::string_view prefix = prefix_of(sd);
  const std::string path = file.path.string();
  if (!has_adapter(file.tensors, prefix))
    throw_expected<io_error>(where, concat(path, ": no adapter for side ", sd == side::x ? "x" : "y"),
                             concat("tensors named ", prefix, "*"), "none");
  const adapter_shape found = infer_adapter_shape(file.tensors, prefix, path);
  const auto check = [&](const char* field, std::size_t fixed, std::size_t in_file) {
    if (fixed != dynamic && fixed != in_file)
      throw_shape_error(where, concat(path, ": the compile-time shape's ", field, " differs from ", prefix, " in the file"),
                        fixed, in_file);
  };
  check("in_dim", S.in_dim, found.in_dim);
  check("out_dim", S.out_dim, found.out_dim);
  check("depth", S.depth, found.depth);
  check("expansion", S.expansion, found.expansion);
  fusion_adapter<S, B> a(found, {.dropout = 0.0}, std::move(be));
  load_parameters(a, prefix, file);  // names the file and the tensor on any other mismatch
  return a;
}

template <adapter_shape S, Backend B>
fusion_adapter<S, B> load_adapter(const std::filesystem::path& file, side s, B be) {
  return load_adapter<S, B>(read_safetensors(file), s, std::move(be));
}

template <Backend B>
model<B> load_model(const std::filesystem::path& path, B be) {
  constexpr std::string_view where = "fusemix::io::load_model";
  const safetensors_file f = read_safetensors(path);
  model<B> m;
  if (has_adapter(f.tensors, x_prefix)) m.x.emplace(load_adapter<dynamic_shape, B>(f, side::x, be));
  if (has_adapter(f.tensors, y_prefix)) m.y.emplace(load_adapter<dynamic_shape, B>(f, side::y, be));
  if (!m.x && !m.y)
    throw_expected<io_error>(where, concat(path.string(), ": no adapter"),
                             concat("tensors named ", x_prefix, "* or ", y_prefix, "*"), "none");
  if (m.x && m.y && m.x->out_dim() != m.y->out_dim())
    throw_shape_error(where, concat(path.string(), ": vis_proj. and text_proj. must map into the same shared width (out_dim)"),
                      m.x->out_dim(), m.y->out_dim());
  const auto scalar = [&](const char* name) -> std::optional<double> {
    const auto it = f.tensors.find(name);
    if (it == f.tensors.end() || it->second.data.size() != 1) return std::nullopt;
    return it->second.data[0];
  };
  if (const auto t = scalar("temp")) {
    m.loss = "contrastive";
    m.loss_parameters = {{"temp", *t}};
  } else if (const auto s = scalar("logit_scale"), b = scalar("logit_bias"); s && b) {
    m.loss = "sigmoid";
    m.loss_parameters = {{"logit_scale", *s}, {"logit_bias", *b}};
  }
  return m;
}

}  // namespace fusemix::io
