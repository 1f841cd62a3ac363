// SPDX-License-Identifier: Apache-2.0
/// @file
/// The FuseMix trainer: epochs of shuffled batches, mixup, the two adapters, the symmetric
/// contrastive loss and AdamW, with resumable checkpoints.
#pragma once

#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fusemix/adapter.hpp>
#include <fusemix/concepts.hpp>
#include <fusemix/error.hpp>
#include <fusemix/io/safetensors.hpp>
#include <fusemix/io/weights.hpp>
#include <fusemix/loss.hpp>
#include <fusemix/mixup.hpp>
#include <fusemix/optim.hpp>
#include <fusemix/random.hpp>

namespace fusemix {

/// Training settings (SPEC "Optimisation"); the presets below fill them per task.
struct train_options {
  std::size_t epochs = 10;
  std::size_t batch = 1024;  ///< rows drawn per step (halves mode mixes them into batch/2 pairs)
  double lr = 1e-3;
  double min_lr = 1e-6;
  double weight_decay = 0.1;
  bool warmup = true;  ///< linear warmup over the first epoch
  mixup_options mixup{};
  std::uint64_t seed = 0;
};

/// What one epoch did.
struct epoch_record {
  std::size_t epoch = 0;   ///< 0-based index of the epoch
  std::size_t steps = 0;   ///< steps of the epoch done so far (all of them when `complete`)
  double loss = 0;         ///< mean training loss over those steps (resumed ones included)
  double lr = 0;           ///< learning rate of the last step
  double temperature = 0;  ///< after the last step
  double seconds = 0;      ///< wall time of this call
  bool complete = true;    ///< false if a stop request ended the call inside the epoch
};

/// Called after every step with (step in epoch, steps in epoch, loss, lr).
using progress_callback = std::function<void(std::size_t, std::size_t, double, double)>;

/// Trains `hx` and `hy` (a `fusion_adapter` each, or an `identity_adapter` on a side that stays
/// fixed) on row-aligned latent pairs.
///
/// Every random draw is a pure function of the seed and a position (epoch for the shuffle,
/// global step for λ and the pairing, draw count for dropout), so a checkpoint holds the whole
/// random state in three counters and a resumed run is bitwise equal to an uninterrupted one.
///
/// **Example**
///
///     fusemix::fusion_adapter<> hx({.in_dim = 1536, .depth = 4}, {.seed = 1});
///     fusemix::fusion_adapter<> hy({.in_dim = 1024, .depth = 4}, {.seed = 2});
///     // the paper's image-text run: 40,960 rows in halves mode = 20K mixed pairs per step
///     fusemix::trainer tr(hx, hy, {.epochs = 500, .batch = 40960, .lr = 1e-3, .weight_decay = 0.1,
///                                  .mixup = {.mode = fusemix::mix_mode::halves}});
///     while (tr.epoch() < 500) tr.train_epoch(zx, zy);
template <class HX, class HY>
class trainer {
 public:
  using backend_type = typename HX::backend_type;
  using scalar_type = typename backend_type::scalar_type;
  using matrix_type = typename backend_type::matrix_type;

  /// @throws shape_error if the adapters' output widths differ; argument_error for bad options.
  trainer(HX& hx, HY& hy, train_options o, backend_type be = {});
  // The optimiser holds pointers to this object's temperature and to the adapters' buffers.
  trainer(const trainer&) = delete;
  trainer& operator=(const trainer&) = delete;

  /// One FuseMix step on the dataset rows `rows` with the given mixing; returns the loss before
  /// the update. Dropout is active.
  /// @throws shape_error if the data do not fit the adapters, `rows` or the plan index out of
  ///         range, or the plan's two halves differ in length.
  double step(const matrix_type& zx, const matrix_type& zy, std::span<const std::size_t> rows, const mix_plan& plan,
              double lr);
  /// One epoch: shuffle (seeded by the epoch), full batches only, the schedule's rate per step.
  ///
  /// If `stop` is given and becomes true, the call returns after the step in progress with
  /// `complete == false`; the trainer then sits inside the epoch (`step_in_epoch()`), a
  /// checkpoint records that position, and the next call continues the epoch where it stopped,
  /// with the same bits as if it had never stopped. Setting `stop` from a signal handler is
  /// safe (a lock-free atomic store).
  /// @throws shape_error for mismatched data; numeric_error for NaN/Inf latents or a loss that
  ///         stops being finite (checked before the update, so the adapters keep the weights of
  ///         the last finite step).
  epoch_record train_epoch(const matrix_type& zx, const matrix_type& zy, const progress_callback& progress = {},
                           const std::atomic<bool>* stop = nullptr);

  /// Checks that the pairs can be trained on: equal row counts, the adapters' widths, at least
  /// one full batch, finite values. @throws shape_error, numeric_error.
  void validate(const matrix_type& zx, const matrix_type& zy) const;

  [[nodiscard]] std::size_t epoch() const noexcept { return epoch_; }
  [[nodiscard]] std::uint64_t global_step() const noexcept { return global_step_; }
  /// Steps of the current epoch already done (non-zero only after a stopped `train_epoch`).
  [[nodiscard]] std::size_t step_in_epoch() const noexcept { return step_in_epoch_; }
  [[nodiscard]] double temperature() const noexcept { return static_cast<double>(temp_); }
  void set_temperature(double t) noexcept { temp_ = static_cast<scalar_type>(t); }
  [[nodiscard]] const train_options& options() const noexcept { return o_; }
  [[nodiscard]] lr_schedule schedule() const noexcept { return {o_.lr, o_.min_lr, o_.epochs, o_.warmup}; }
  /// The optimiser of both adapters' parameters (the backend's AdamW; τ has its own, on the host).
  [[nodiscard]] auto& optimizer() noexcept { return opt_; }

  /// Writes the adapters under PyTorch names (`vis_proj.*`, `text_proj.*`, `temp`), atomically.
  void save_weights(const std::filesystem::path& file) const;
  /// Writes everything a resumed run needs (weights, AdamW moments, counters) atomically, with
  /// `metadata` stored alongside (e.g. the options, to check on resume).
  void save_checkpoint(const std::filesystem::path& file, std::map<std::string, std::string> metadata = {}) const;
  /// Restores a checkpoint written by `save_checkpoint`; returns its metadata.
  /// @throws io_error if the file is malformed or lacks a tensor of these adapters;
  ///         shape_error if a tensor's shape differs from theirs.
  std::map<std::string, std::string> load_checkpoint(const std::filesystem::path& file);

 private:
  HX& hx_;
  HY& hy_;
  train_options o_;
  backend_type be_;
  contrastive_loss<backend_type> loss_;
  decltype(make_optimizer(std::declval<const backend_type&>(), adamw_options{})) opt_;
  adamw<scalar_type> temp_opt_;  // τ is one host scalar, so its update stays on the host
  scalar_type temp_ = static_cast<scalar_type>(temperature_limits::initial), dtemp_ = 0;
  std::size_t epoch_ = 0, step_in_epoch_ = 0;
  std::uint64_t global_step_ = 0;
  double epoch_loss_sum_ = 0;  // over the current epoch's steps so far
  matrix_type mx_, my_;
  std::vector<std::size_t> order_, rows_a_, rows_b_;
  mix_plan plan_;  // reused: after the first step, a step allocates nothing
};

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <class HX, class HY>
trainer<HX, HY>::trainer(HX& hx, HY& hy, train_options o, backend_type be)
    : hx_(hx), hy_(hy), o_(o), be_(be), loss_(be), opt_(make_optimizer(be, {.weight_decay = o.weight_decay})),
      temp_opt_({.weight_decay = o.weight_decay}) {
  constexpr const char* where = "fusemix::trainer";
  if (hx.out_dim() != hy.out_dim())
    detail::throw_shape_error(where, "both adapters must map into the same shared width", hx.out_dim(), hy.out_dim());
  if (o.epochs == 0) detail::throw_expected<argument_error>(where, "epochs must be positive", ">= 1", 0);
  if (!(o.lr > 0)) detail::throw_expected<argument_error>(where, "learning rate must be positive", "> 0", o.lr);
  if (!(o.weight_decay >= 0))
    detail::throw_expected<argument_error>(where, "weight decay must not be negative", ">= 0", o.weight_decay);
  (void)mixed_rows(o.batch, o.mixup.mode);  // throws for an empty batch, or an odd one in halves mode
  if (!(o.mixup.alpha > 0)) detail::throw_expected<argument_error>(where, "alpha must be positive", "> 0", o.mixup.alpha);
  opt_.add_model(hx_);
  opt_.add_model(hy_);
  temp_opt_.add(&temp_, &dtemp_, 1, false);
}

template <class HX, class HY>
void trainer<HX, HY>::validate(const matrix_type& zx, const matrix_type& zy) const {
  constexpr const char* where = "fusemix::trainer::validate";
  if (be_.rows(zx) != be_.rows(zy))
    detail::throw_shape_error(where, "X and Y must have the same number of rows (pairs)", be_.rows(zx), be_.rows(zy));
  if (be_.cols(zx) != hx_.in_dim())
    detail::throw_shape_error(where, "X's width must equal the X adapter's in_dim", hx_.in_dim(), be_.cols(zx));
  if (be_.cols(zy) != hy_.in_dim())
    detail::throw_shape_error(where, "Y's width must equal the Y adapter's in_dim", hy_.in_dim(), be_.cols(zy));
  if (o_.batch > be_.rows(zx))
    detail::throw_shape_error(where, "the batch must not exceed the number of pairs",
                              detail::concat("<= ", be_.rows(zx)), o_.batch);
  for (const matrix_type* z : {&zx, &zy}) {
    std::size_t r = 0, c = 0;
    if (be_.find_non_finite(*z, r, c))
      detail::throw_expected<numeric_error>(
          where, detail::concat(z == &zx ? "X" : "Y", " contains NaN or Inf at row ", r, ", column ", c),
          "finite latents", "a non-finite value");
  }
}

template <class HX, class HY>
double trainer<HX, HY>::step(const matrix_type& zx, const matrix_type& zy, std::span<const std::size_t> rows,
                             const mix_plan& plan, double lr) {
  constexpr const char* where = "fusemix::trainer::step";
  if (be_.rows(zx) != be_.rows(zy))
    detail::throw_shape_error(where, "X and Y must have the same number of rows", be_.rows(zx), be_.rows(zy));
  for (std::size_t r : rows)
    if (r >= be_.rows(zx)) detail::throw_shape_error(where, "row index out of range", detail::concat("< ", be_.rows(zx)), r);
  if (plan.first.size() != plan.second.size() || plan.first.empty())
    detail::throw_shape_error(where, "the plan needs two equally long, non-empty pairings", plan.first.size(),
                              plan.second.size());
  for (const auto* half : {&plan.first, &plan.second})
    for (std::size_t i : *half)
      if (i >= rows.size()) detail::throw_shape_error(where, "plan position out of range", detail::concat("< ", rows.size()), i);
  temp_ = static_cast<scalar_type>(temperature_limits::clamp(static_cast<double>(temp_)));
  mixed_dataset_rows(rows, plan, rows_a_, rows_b_);  // once for both modalities, no allocation after the first step
  apply_mix(be_, zx, std::span<const std::size_t>(rows_a_), std::span<const std::size_t>(rows_b_), plan.lambda, mx_);
  apply_mix(be_, zy, std::span<const std::size_t>(rows_a_), std::span<const std::size_t>(rows_b_), plan.lambda, my_);
  hx_.set_training(true);
  hy_.set_training(true);
  const double loss = static_cast<double>(loss_.forward(hx_.forward(mx_), hy_.forward(my_), temp_));
  loss_.backward();
  hx_.backward(loss_.dx());
  hy_.backward(loss_.dy());
  dtemp_ = loss_.dtemperature();
  opt_.step(lr);
  temp_opt_.step(lr);
  ++global_step_;
  return loss;
}

template <class HX, class HY>
epoch_record trainer<HX, HY>::train_epoch(const matrix_type& zx, const matrix_type& zy, const progress_callback& progress,
                                          const std::atomic<bool>* stop) {
  validate(zx, zy);
  const auto start = std::chrono::steady_clock::now();
  const std::size_t n = be_.rows(zx), steps = n / o_.batch;
  if (step_in_epoch_ >= steps)
    detail::throw_expected<argument_error>("fusemix::trainer::train_epoch",
                                           "the checkpoint's step within the epoch does not fit this data",
                                           detail::concat("< ", steps), step_in_epoch_);
  order_.resize(n);
  std::iota(order_.begin(), order_.end(), std::size_t{0});
  philox_engine shuffle(o_.seed, epoch_);
  for (std::size_t i = n; i > 1; --i) std::swap(order_[i - 1], order_[shuffle.below(i)]);
  const lr_schedule sched = schedule();
  epoch_record rec{epoch_, steps, 0, 0, 0, 0, true};
  for (; step_in_epoch_ < steps; ++step_in_epoch_) {
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) {
      rec.complete = false;
      break;
    }
    const std::size_t s = step_in_epoch_;
    // λ and the pairing of step k come from stream 2^40 + k, disjoint from the shuffles' streams.
    philox_engine rng(o_.seed, (std::uint64_t{1} << 40) + global_step_);
    draw_mix(rng, o_.batch, o_.mixup, plan_);
    rec.lr = sched.at(epoch_, s, steps);
    const double loss = step(zx, zy, std::span<const std::size_t>(order_).subspan(s * o_.batch, o_.batch), plan_, rec.lr);
    epoch_loss_sum_ += loss;
    if (progress) progress(s, steps, loss, rec.lr);
  }
  rec.steps = step_in_epoch_;
  rec.loss = rec.steps > 0 ? epoch_loss_sum_ / static_cast<double>(rec.steps) : 0.0;
  rec.temperature = static_cast<double>(temp_);
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (rec.complete) {
    ++epoch_;
    step_in_epoch_ = 0;
    epoch_loss_sum_ = 0;
  }
  return rec;
}

template <class HX, class HY>
void trainer<HX, HY>::save_weights(const std::filesystem::path& file) const {
  io::basic_tensor_map<scalar_type> t;
  io::store_parameters(hx_, io::x_prefix, t);
  io::store_parameters(hy_, io::y_prefix, t);
  t["temp"] = {{}, {temp_}};
  io::write_safetensors(file, t, {{"format", "pt"}, {"producer", "fusemix"}});
}

template <class HX, class HY>
void trainer<HX, HY>::save_checkpoint(const std::filesystem::path& file, std::map<std::string, std::string> meta) const {
  io::basic_tensor_map<scalar_type> t;
  io::store_parameters(hx_, io::x_prefix, t);
  io::store_parameters(hy_, io::y_prefix, t);
  t["temp"] = {{}, {temp_}};
  // The moments flat in registration order: both adapters, then τ.
  const std::size_t n = opt_.moment_count();
  std::vector<scalar_type> m(n + 1), v(n + 1);
  opt_.get_moments(std::span<scalar_type>(m).first(n), std::span<scalar_type>(v).first(n));
  temp_opt_.get_moments(std::span<scalar_type>(m).last(1), std::span<scalar_type>(v).last(1));
  t["optimizer.exp_avg"] = {{n + 1}, std::move(m)};
  t["optimizer.exp_avg_sq"] = {{n + 1}, std::move(v)};
  meta["format"] = "fusemix-checkpoint-1";
  meta["epoch"] = std::to_string(epoch_);
  meta["global_step"] = std::to_string(global_step_);
  meta["optimizer_steps"] = std::to_string(opt_.steps());
  meta["step_in_epoch"] = std::to_string(step_in_epoch_);
  // Shortest round-trip form: the resumed epoch's mean loss comes out with the same bits.
  char buf[32];
  const auto end = std::to_chars(buf, buf + sizeof buf, epoch_loss_sum_).ptr;
  meta["epoch_loss_sum"] = std::string(buf, end);
  // The dropout state of each side: its seed and how many masks it has drawn.
  if constexpr (requires { hx_.dropout_draws(); }) {
    meta["x_dropout_seed"] = std::to_string(hx_.options().seed);
    meta["x_dropout_draws"] = std::to_string(hx_.dropout_draws());
  }
  if constexpr (requires { hy_.dropout_draws(); }) {
    meta["y_dropout_seed"] = std::to_string(hy_.options().seed);
    meta["y_dropout_draws"] = std::to_string(hy_.dropout_draws());
  }
  io::write_safetensors(file, t, meta);
}

template <class HX, class HY>
std::map<std::string, std::string> trainer<HX, HY>::load_checkpoint(const std::filesystem::path& file) {
  const auto f = io::read_safetensors<scalar_type>(file);
  auto need = [&](const char* key) -> std::uint64_t {
    const auto it = f.metadata.find(key);
    if (it == f.metadata.end())
      detail::throw_io_error("fusemix::trainer::load_checkpoint", file, detail::concat("metadata \"", key, "\" missing"));
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
    if (ec != std::errc{} || end != it->second.data() + it->second.size())
      detail::throw_io_error("fusemix::trainer::load_checkpoint", file,
                             detail::concat("metadata \"", key, "\" is not a count: \"", it->second, "\""));
    return v;
  };
  if (auto it = f.metadata.find("format"); it == f.metadata.end() || it->second != "fusemix-checkpoint-1")
    detail::throw_io_error("fusemix::trainer::load_checkpoint", file, "not a fusemix checkpoint (format fusemix-checkpoint-1)");
  io::load_parameters(hx_, io::x_prefix, f);  // (the file overload names `file` in its messages)
  io::load_parameters(hy_, io::y_prefix, f);
  temp_ = io::require(f, "temp", {}).data[0];
  const std::size_t n = opt_.moment_count();
  const auto& m = io::require(f, "optimizer.exp_avg", {n + 1});
  const auto& v = io::require(f, "optimizer.exp_avg_sq", {n + 1});
  opt_.set_moments(std::span<const scalar_type>(m.data).first(n), std::span<const scalar_type>(v.data).first(n));
  temp_opt_.set_moments(std::span<const scalar_type>(m.data).last(1), std::span<const scalar_type>(v.data).last(1));
  epoch_ = need("epoch");
  global_step_ = need("global_step");
  // Written since stops inside an epoch exist; older checkpoints sit at an epoch boundary.
  step_in_epoch_ = f.metadata.count("step_in_epoch") != 0 ? need("step_in_epoch") : 0;
  epoch_loss_sum_ = 0;
  if (const auto it = f.metadata.find("epoch_loss_sum"); it != f.metadata.end()) {
    const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), epoch_loss_sum_);
    if (ec != std::errc{} || end != it->second.data() + it->second.size() || !std::isfinite(epoch_loss_sum_))
      detail::throw_io_error("fusemix::trainer::load_checkpoint", file,
                             detail::concat("metadata \"epoch_loss_sum\" is not a finite number: \"", it->second, "\""));
  }
  opt_.set_steps(need("optimizer_steps"));
  temp_opt_.set_steps(opt_.steps());
  if constexpr (requires { hx_.set_dropout_draws(0); }) {
    hx_.set_dropout_seed(need("x_dropout_seed"));
    hx_.set_dropout_draws(need("x_dropout_draws"));
  }
  if constexpr (requires { hy_.set_dropout_draws(0); }) {
    hy_.set_dropout_seed(need("y_dropout_seed"));
    hy_.set_dropout_draws(need("y_dropout_draws"));
  }
  return f.metadata;
}

}  // namespace fusemix
