// SPDX-License-Identifier: Apache-2.0
/// @file
/// Adapter weights to and from PyTorch-named tensors (`vis_proj.0.fn.0.weight`, ...) and
/// safetensors files, so weights move both ways between fusemix and the authors' modules.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fusemix/core/error.hpp>
#include <fusemix/io/safetensors.hpp>

namespace fusemix::io {

/// The PyTorch prefix of the image (or first-modality) adapter.
inline constexpr std::string_view x_prefix = "vis_proj.";
/// The PyTorch prefix of the text (or second-modality) adapter.
inline constexpr std::string_view y_prefix = "text_proj.";

/// Adds every parameter of `model` to `out`, named `prefix` + its PyTorch name, with PyTorch shapes.
///
/// **Example**
///
///     fusemix::io::tensor_map t;
///     fusemix::io::store_parameters(h_x, fusemix::io::x_prefix, t);
///     fusemix::io::write_safetensors("adapters.safetensors", t);
template <class Model, Scalar T>
void store_parameters(const Model& model, std::string_view prefix, basic_tensor_map<T>& out);
/// As `store_parameters`, without copying: views into the model's parameter buffer, which must
/// be in host memory (its backend's `host_memory`) and outlive `out`'s use.
template <class Model, Scalar T>
  requires std::same_as<std::remove_cvref_t<typename Model::scalar_type>, T>
void view_parameters(const Model& model, std::string_view prefix, basic_tensor_view_map<T>& out);

/// Sets every parameter of `model` from `tensors[prefix + name]`.
///
/// @throws argument_error if `prefix` is not empty and does not end with '.'.
/// @throws io_error if a parameter is missing, or if `tensors` holds a name under `prefix` that the
///         model does not have (a depth or layout mismatch must not load silently).
/// @throws shape_error if a tensor's shape differs from the parameter's.
/// Every tensor is checked before any is copied: after a throw the model is unchanged.
///
/// **Example**
///
///     auto f = fusemix::io::read_safetensors("adapters.safetensors");
///     fusemix::io::load_parameters(h_x, fusemix::io::x_prefix, f.tensors);
template <class Model, Scalar T>
void load_parameters(Model& model, std::string_view prefix, const basic_tensor_map<T>& tensors);
/// As above, from a file already read: the messages name `file.path` as well.
///
/// **Example**
///
///     fusemix::io::load_parameters(h_x, fusemix::io::x_prefix,
///                                  fusemix::io::read_safetensors("adapters.safetensors"));
template <class Model, Scalar T>
void load_parameters(Model& model, std::string_view prefix, const basic_safetensors_file<T>& file);

/// Adds the learnable scalars of `loss` to `out` under their names (`temp`; `logit_scale`,
/// `logit_bias`), as 0-d tensors beside the adapters.
template <class Loss, Scalar T>
void store_loss_parameters(const Loss& loss, basic_tensor_map<T>& out);

/// Sets the learnable scalars of `loss` from the 0-d tensors of their names.
/// @throws io_error naming the file if one is missing (a model trained with another loss);
///         shape_error if one is not a scalar. Nothing is set unless all are found.
template <class Loss, Scalar T>
void load_loss_parameters(Loss& loss, const basic_safetensors_file<T>& file);

}  // namespace fusemix::io

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

namespace fusemix::detail {

/// A tensor-name prefix must be empty or end with '.': "vis_proj" would match "vis_proj.0.ln.weight"
/// as "vis_proj" + ".0.ln.weight" and every parameter name would then miss.
inline void require_prefix(std::string_view where, std::string_view prefix) {
  if (!prefix.empty() && !prefix.ends_with('.'))
    throw_expected<argument_error>(where, "a tensor-name prefix must end with '.'", concat("\"", prefix, ".\""),
                                   concat("\"", prefix, "\""));
}

/// `io::load_parameters`, naming `*file` in the messages when it is given (and not empty).
template <class Model, Scalar T>
void load_parameters_from(Model& model, std::string_view prefix, const io::basic_tensor_map<T>& tensors,
                          const std::filesystem::path* file) {
  constexpr std::string_view where = "fusemix::io::load_parameters";
  require_prefix(where, prefix);
  const std::string in_file = file && !file->empty() ? concat(" in ", *file) : std::string();
  const auto& params = model.named_parameters();
  for (auto it = tensors.lower_bound(std::string(prefix)); it != tensors.end() && it->first.starts_with(prefix);
       ++it) {
    const std::string_view rest = std::string_view(it->first).substr(prefix.size());
    if (std::none_of(params.begin(), params.end(), [&](const auto& p) { return p.name == rest; }))
      throw io_error(concat(where, ": unexpected tensor \"", it->first, "\"", in_file,
                            " (the model has no such parameter: is its depth or layout different?)"));
  }
  // Every tensor is checked before any is copied, so a refused load leaves the model as it was.
  std::vector<const io::basic_tensor<T>*> found;
  found.reserve(params.size());
  for (const auto& p : params)
    found.push_back(
        &st_require(where, tensors, std::string(prefix) + p.name, std::span<const std::size_t>(p.shape), file));
  // Through a host copy of the flat buffer: the model's memory may be a device's.
  using V = std::remove_cvref_t<typename decltype(model.parameters())::value_type>;
  std::vector<V> values(model.parameters().size());
  model.copy_parameters_to(std::span<V>(values));
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto first = values.begin() + static_cast<std::ptrdiff_t>(params[i].offset);
    const auto last = std::transform(found[i]->data.begin(), found[i]->data.end(), first,
                                     [](T v) { return static_cast<V>(v); });
    // A NaN weight would pass through every product into NaN scores, which rank as ties and can
    // read as perfect recall: refused here, where the tensor can be named.
    if (const auto bad = std::find_if(first, last, [](V v) { return !std::isfinite(v); }); bad != last)
      throw_expected<numeric_error>(where, concat("tensor \"", prefix, params[i].name, "\"", in_file, " must be finite"),
                                    "finite values", concat(*bad, " at index ", bad - first));
  }
  model.copy_parameters_from(std::span<const V>(values));
}

}  // namespace fusemix::detail

namespace fusemix::io {

template <class Model, Scalar T>
void store_parameters(const Model& model, std::string_view prefix, basic_tensor_map<T>& out) {
  detail::require_prefix("fusemix::io::store_parameters", prefix);
  using V = std::remove_cvref_t<typename decltype(model.parameters())::value_type>;
  std::vector<V> values(model.parameters().size());
  model.copy_parameters_to(std::span<V>(values));
  for (const auto& p : model.named_parameters()) {
    basic_tensor<T> t{p.shape, {}};
    t.data.resize(p.size);
    std::transform(values.begin() + static_cast<std::ptrdiff_t>(p.offset),
                   values.begin() + static_cast<std::ptrdiff_t>(p.offset + p.size), t.data.begin(),
                   [](auto v) { return static_cast<T>(v); });
    out[std::string(prefix) + p.name] = std::move(t);
  }
}

template <class Model, Scalar T>
  requires std::same_as<std::remove_cvref_t<typename Model::scalar_type>, T>
void view_parameters(const Model& model, std::string_view prefix, basic_tensor_view_map<T>& out) {
  static_assert(Model::backend_type::host_memory, "view_parameters needs parameters in host memory");
  detail::require_prefix("fusemix::io::view_parameters", prefix);
  const std::span<const T> all = model.parameters();
  for (const auto& p : model.named_parameters())
    out[std::string(prefix) + p.name] = {p.shape, {all.subspan(p.offset, p.size)}};
}

template <class Model, Scalar T>
void load_parameters(Model& model, std::string_view prefix, const basic_tensor_map<T>& tensors) {
  detail::load_parameters_from(model, prefix, tensors, nullptr);
}

template <class Model, Scalar T>
void load_parameters(Model& model, std::string_view prefix, const basic_safetensors_file<T>& file) {
  detail::load_parameters_from(model, prefix, file.tensors, &file.path);
}

template <class Loss, Scalar T>
void store_loss_parameters(const Loss& loss, basic_tensor_map<T>& out) {
  const auto values = loss.parameters();
  for (std::size_t i = 0; i < Loss::parameter_names.size(); ++i)
    out[std::string(Loss::parameter_names[i])] = {{}, {static_cast<T>(values[i])}};
}

template <class Loss, Scalar T>
void load_loss_parameters(Loss& loss, const basic_safetensors_file<T>& file) {
  constexpr std::string_view where = "fusemix::io::load_loss_parameters";
  std::array<T, Loss::parameter_names.size()> found{};
  for (std::size_t i = 0; i < found.size(); ++i) {
    const auto it = file.tensors.find(std::string(Loss::parameter_names[i]));
    if (it == file.tensors.end())
      throw_io_error(where, file.path,
                     concat("no tensor \"", Loss::parameter_names[i], "\" of the ", Loss::name,
                            " loss (was the model trained with another --loss?)"));
    if (!it->second.shape.empty() || it->second.data.size() != 1)
      throw_shape_error(where, concat(file.path, ": \"", Loss::parameter_names[i], "\" must be a scalar"), "shape []",
                        concat(it->second.data.size(), " values"));
    found[i] = it->second.data[0];
    if (!std::isfinite(static_cast<double>(found[i])))
      throw_expected<numeric_error>(where, concat(file.path, ": \"", Loss::parameter_names[i], "\" must be finite"),
                                    "a finite value", found[i]);
  }
  const auto values = loss.parameters();
  for (std::size_t i = 0; i < found.size(); ++i) values[i] = static_cast<typename decltype(values)::value_type>(found[i]);
}

}  // namespace fusemix::io
