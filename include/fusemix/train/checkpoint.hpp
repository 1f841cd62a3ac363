// SPDX-License-Identifier: Apache-2.0
/// @file
/// The files a training run writes: the weights (PyTorch names) and the resumable checkpoint.
///
/// A checkpoint is a safetensors file: the weights as in the weight file, the AdamW moments of
/// every registered parameter in registration order (`optimizer.exp_avg`, `optimizer.exp_avg_sq`:
/// both adapters, then the loss's scalars), and the run's position and random state as metadata
/// (`format` = `fusemix-checkpoint-1`, `loss`, counters, each adapter's dropout seed and draws).
/// Checkpoints written before the loss was a choice have no `loss` entry and hold the
/// contrastive loss's `temp`; they still load.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <fusemix/core/error.hpp>
#include <fusemix/io/safetensors.hpp>
#include <fusemix/io/weights.hpp>
#include <fusemix/loss/concepts.hpp>
#include <fusemix/nn/concepts.hpp>

namespace fusemix {

/// Where a training run stands, besides its weights and optimiser moments.
struct training_position {
  std::size_t epoch = 0;          ///< epochs completed
  std::size_t step_in_epoch = 0;  ///< steps of the current epoch done (non-zero after a stop inside it)
  std::uint64_t global_step = 0;  ///< steps done in all
  std::uint64_t optimizer_steps = 0;
  double epoch_loss_sum = 0;  ///< sum of the current epoch's step losses so far
};

/// The `format` metadata of a checkpoint.
inline constexpr std::string_view checkpoint_format = "fusemix-checkpoint-1";

namespace detail {
/// Both adapters' parameters under PyTorch names and the loss's scalars, as views for
/// `write_safetensors`: in place where they are in host memory, else copied into `copies`.
template <class HX, class HY, class L, class T = typename L::scalar_type>
void weight_views(const HX& hx, const HY& hy, const L& loss, io::basic_tensor_map<T>& copies,
                  io::basic_tensor_view_map<T>& views) {
  auto add_model = [&](const auto& h, std::string_view prefix) {
    if constexpr (std::remove_cvref_t<decltype(h)>::backend_type::host_memory)
      io::view_parameters(h, prefix, views);
    else
      io::store_parameters(h, prefix, copies);
  };
  add_model(hx, io::x_prefix);
  add_model(hy, io::y_prefix);
  io::store_loss_parameters(loss, copies);
}
/// Adds views of `copies` to `views`.
template <class T>
void view_copies(const io::basic_tensor_map<T>& copies, io::basic_tensor_view_map<T>& views) {
  for (const auto& [name, c] : copies) views[name] = {c.shape, {std::span<const T>(c.data)}};
}
}  // namespace detail

/// Writes both adapters under PyTorch names (`vis_proj.*`, `text_proj.*`) and the loss's scalars
/// (`temp`, or `logit_scale` and `logit_bias`) to `file`, atomically. Parameters in host memory
/// are written in place, not copied first.
template <Adapter HX, Adapter HY, Loss L>
void save_weights(const std::filesystem::path& file, const HX& hx, const HY& hy, const L& loss) {
  io::basic_tensor_map<typename L::scalar_type> copies;
  io::basic_tensor_view_map<typename L::scalar_type> t;
  detail::weight_views(hx, hy, loss, copies, t);
  detail::view_copies(copies, t);
  io::write_safetensors(file, t, {{"format", "pt"}, {"producer", "fusemix"}});
}

/// Writes a checkpoint of a run (see the file comment) to `file`, atomically, with `metadata`
/// stored alongside (e.g. the options, to check on resume).
/// @tparam Opt, LossOpt the adapters' optimiser and the loss scalars' (host) optimiser.
template <Adapter HX, Adapter HY, Loss L, class Opt, class LossOpt>
void save_checkpoint(const std::filesystem::path& file, const HX& hx, const HY& hy, const L& loss, const Opt& opt,
                     const LossOpt& loss_opt, const training_position& at,
                     std::map<std::string, std::string> metadata = {}) {
  using T = typename L::scalar_type;
  // Tensors in host memory are written where they lie (views); the rest (a device backend's) are
  // copied to the host first. A copy of a large model's parameters and moments would otherwise
  // add 3x its parameters to the run's peak memory at every checkpoint.
  io::basic_tensor_map<T> copies;
  io::basic_tensor_view_map<T> t;
  detail::weight_views(hx, hy, loss, copies, t);
  const std::size_t n = opt.moment_count(), k = loss_opt.moment_count();
  if constexpr (requires { opt.first_moments(); opt.second_moments(); }) {  // host moments
    t["optimizer.exp_avg"] = {{n + k}, {opt.first_moments(), loss_opt.first_moments()}};
    t["optimizer.exp_avg_sq"] = {{n + k}, {opt.second_moments(), loss_opt.second_moments()}};
  } else {
    std::vector<T> m(n + k), v(n + k);
    opt.get_moments(std::span<T>(m).first(n), std::span<T>(v).first(n));
    loss_opt.get_moments(std::span<T>(m).last(k), std::span<T>(v).last(k));
    copies["optimizer.exp_avg"] = {{n + k}, std::move(m)};
    copies["optimizer.exp_avg_sq"] = {{n + k}, std::move(v)};
  }
  detail::view_copies(copies, t);
  metadata["format"] = std::string(checkpoint_format);
  metadata["loss"] = std::string(L::name);
  metadata["epoch"] = std::to_string(at.epoch);
  metadata["global_step"] = std::to_string(at.global_step);
  metadata["optimizer_steps"] = std::to_string(at.optimizer_steps);
  metadata["step_in_epoch"] = std::to_string(at.step_in_epoch);
  // Shortest round-trip form: the resumed epoch's mean loss comes out with the same bits.
  char buf[32];
  const auto end = std::to_chars(buf, buf + sizeof buf, at.epoch_loss_sum).ptr;
  metadata["epoch_loss_sum"] = std::string(buf, end);
  // The dropout state of each side that has one: its seed and how many masks it has drawn.
  if constexpr (HX::has_random_state) {
    metadata["x_dropout_seed"] = std::to_string(hx.dropout_seed());
    metadata["x_dropout_draws"] = std::to_string(hx.dropout_draws());
  }
  if constexpr (HY::has_random_state) {
    metadata["y_dropout_seed"] = std::to_string(hy.dropout_seed());
    metadata["y_dropout_draws"] = std::to_string(hy.dropout_draws());
  }
  io::write_safetensors(file, t, metadata);
}

/// Restores a checkpoint written by `save_checkpoint` into the adapters, the loss and both
/// optimisers, and returns its position; `metadata` (if given) receives its metadata.
/// @throws io_error if the file is malformed, was written for another loss, or lacks a tensor of
///         these adapters; shape_error if a tensor's shape differs from theirs.
template <Adapter HX, Adapter HY, Loss L, class Opt, class LossOpt>
training_position load_checkpoint(const std::filesystem::path& file, HX& hx, HY& hy, L& loss, Opt& opt,
                                  LossOpt& loss_opt, std::map<std::string, std::string>* metadata = nullptr) {
  using T = typename L::scalar_type;
  constexpr std::string_view where = "fusemix::load_checkpoint";
  const auto f = io::read_safetensors<T>(file);
  const auto text = [&](const char* key) -> const std::string* {
    const auto it = f.metadata.find(key);
    return it == f.metadata.end() ? nullptr : &it->second;
  };
  const auto count = [&](const char* key) -> std::uint64_t {
    const std::string* s = text(key);
    if (s == nullptr) throw_io_error(where, file, concat("metadata \"", key, "\" missing"));
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (ec != std::errc{} || end != s->data() + s->size())
      throw_io_error(where, file, concat("metadata \"", key, "\" is not a count: \"", *s, "\""));
    return v;
  };
  if (const std::string* s = text("format"); s == nullptr || *s != checkpoint_format)
    throw_io_error(where, file, concat("not a fusemix checkpoint (expected format \"", checkpoint_format, "\", got ",
                                       s == nullptr ? std::string("none: a model file, or another program's")
                                                    : concat("\"", *s, "\""),
                                       ")"));
  // Written since the loss is a choice; older checkpoints are the contrastive loss's.
  const std::string* written_loss = text("loss");
  const std::string_view file_loss = written_loss != nullptr ? std::string_view(*written_loss) : "contrastive";
  if (file_loss != L::name)
    throw_io_error(where, file,
                   concat("the checkpoint was trained with the ", file_loss, " loss, this run uses ", L::name));
  // Everything is read and checked before anything is set.
  const std::size_t n = opt.moment_count(), k = loss_opt.moment_count();
  const auto& m = io::require(f, "optimizer.exp_avg", {n + k});
  const auto& v = io::require(f, "optimizer.exp_avg_sq", {n + k});
  training_position at;
  at.epoch = count("epoch");
  at.global_step = count("global_step");
  at.optimizer_steps = count("optimizer_steps");
  // Written since stops inside an epoch exist; older checkpoints sit at an epoch boundary.
  at.step_in_epoch = text("step_in_epoch") != nullptr ? count("step_in_epoch") : 0;
  if (const std::string* s = text("epoch_loss_sum")) {
    const auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), at.epoch_loss_sum);
    if (ec != std::errc{} || end != s->data() + s->size() || !std::isfinite(at.epoch_loss_sum))
      throw_io_error(where, file, concat("metadata \"epoch_loss_sum\" is not a finite number: \"", *s, "\""));
  }
  std::uint64_t x_seed = 0, x_draws = 0, y_seed = 0, y_draws = 0;
  if constexpr (HX::has_random_state) x_seed = count("x_dropout_seed"), x_draws = count("x_dropout_draws");
  if constexpr (HY::has_random_state) y_seed = count("y_dropout_seed"), y_draws = count("y_dropout_draws");

  io::load_parameters(hx, io::x_prefix, f);  // (the file overload names `file` in its messages)
  io::load_parameters(hy, io::y_prefix, f);
  io::load_loss_parameters(loss, f);
  opt.set_moments(std::span<const T>(m.data).first(n), std::span<const T>(v.data).first(n));
  loss_opt.set_moments(std::span<const T>(m.data).last(k), std::span<const T>(v.data).last(k));
  opt.set_steps(at.optimizer_steps);
  loss_opt.set_steps(at.optimizer_steps);
  hx.set_dropout_seed(x_seed), hx.set_dropout_draws(x_draws);
  hy.set_dropout_seed(y_seed), hy.set_dropout_draws(y_draws);
  if (metadata != nullptr) *metadata = f.metadata;
  return at;
}

}  // namespace fusemix
