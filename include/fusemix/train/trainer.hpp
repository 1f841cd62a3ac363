// SPDX-License-Identifier: Apache-2.0
/// @file
/// The FuseMix trainer: epochs of shuffled batches, mixup, the two adapters, a loss (a policy:
/// contrastive by default, or sigmoid) and AdamW, with resumable checkpoints.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/core/random.hpp>
#include <fusemix/dist/communicator.hpp>
#include <fusemix/loss/concepts.hpp>
#include <fusemix/loss/contrastive.hpp>
#include <fusemix/nn/concepts.hpp>
#include <fusemix/optim/adamw.hpp>
#include <fusemix/optim/schedule.hpp>
#include <fusemix/train/checkpoint.hpp>
#include <fusemix/train/mixup.hpp>

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
  /// Stop after this many optimiser steps in all (0: no limit): `train_epoch` then returns with
  /// `complete == false` once `global_step()` reaches it (smoke runs, benchmarks). The schedule
  /// still spans `epochs`; not part of what a checkpoint must match.
  std::uint64_t max_steps = 0;
  /// Gradient caching (GradCache, Gao et al. 2021): embed the mixed batch this many rows at a
  /// time without keeping activations, take the loss and its gradient over the whole batch, then
  /// run each slice forward again (the same masks) and backward with its rows of that gradient,
  /// summing the parameter gradients in place. Every row stays a negative of every other;
  /// activation memory is that of `micro_batch` rows, and the loss (where it has
  /// `set_row_block`, as both built-in losses do) holds min(`micro_batch`, 1,024) rows of the B×B
  /// logits at a time, not all B. 0 (or a value ≥ the mixed rows): the whole batch at once. The same
  /// function as without it, up to rounding (summation order). Both adapters need
  /// `forward_slice` and `backward(dy, accumulate)` (`fusion_adapter` and `identity_adapter` have
  /// them). A value that divides the mixed rows keeps a warm step free of allocation (a shorter
  /// last slice resizes the buffers).
  std::size_t micro_batch = 0;
  /// Across processes, the parameter gradients are summed in buckets: a sum is started as soon as
  /// the backward has finished layers holding at least this many bytes of gradients (and for the
  /// rest when an adapter's backward ends), and runs while the layers below and the other
  /// adapter's backward do (PyTorch's DistributedDataParallel does the same, 25 MiB by default).
  /// The same bits whatever the size: each value is summed in rank order. 0: a sum per layer.
  std::size_t bucket_bytes = std::size_t{25} << 20;
};

/// The most learnable scalars a loss may have (what `epoch_record` reports).
inline constexpr std::size_t max_loss_parameters = 2;

/// What one epoch did.
struct epoch_record {
  std::size_t epoch = 0;   ///< 0-based index of the epoch
  std::size_t steps = 0;   ///< steps of the epoch done so far (all of them when `complete`)
  double loss = 0;         ///< mean training loss over those steps (resumed ones included)
  double lr = 0;           ///< learning rate of the last step
  /// The loss's learnable scalars after the last step, by name (`temp`; `logit_scale`, `logit_bias`);
  /// entries past the loss's own have an empty name. (A fixed array: an epoch allocates nothing.)
  std::array<std::pair<std::string_view, double>, max_loss_parameters> loss_parameters{};
  double seconds = 0;      ///< wall time of this call
  bool complete = true;    ///< false if a stop request ended the call inside the epoch
};

/// Called after every step with (step in epoch, steps in epoch, loss, lr).
using progress_callback = std::function<void(std::size_t, std::size_t, double, double)>;

/// Trains `hx` and `hy` (a `fusion_adapter` each, or an `identity_adapter` on a side that stays
/// fixed) on row-aligned latent pairs, with the loss `L` (`contrastive_loss`, the paper's, or
/// `sigmoid_loss`), which owns its learnable scalars.
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
///
///     // the same with SigLIP's sigmoid loss (the loss object's scalars are its initial values)
///     fusemix::trainer sig(hx, hy, fusemix::sigmoid_loss<>{}, {.epochs = 500, .batch = 40960});
template <Adapter HX, Adapter HY, Loss L = contrastive_loss<typename HX::backend_type>>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
class trainer {
 public:
  using backend_type = typename HX::backend_type;
  using scalar_type = typename backend_type::scalar_type;
  using matrix_type = typename backend_type::matrix_type;
  using loss_type = L;

  /// A trainer of `hx` and `hy` with the loss `loss` (its learnable scalars as they are).
  /// @throws shape_error if the adapters' output widths differ; argument_error for bad options.
  trainer(HX& hx, HY& hy, L loss, train_options o, backend_type be = {});
  /// A trainer with a fresh `L` on `be`.
  trainer(HX& hx, HY& hy, train_options o, backend_type be = {}) : trainer(hx, hy, L(be), o, be) {}
  // The optimisers hold pointers to this object's loss scalars and to the adapters' buffers.
  trainer(const trainer&) = delete;
  trainer& operator=(const trainer&) = delete;

  /// One FuseMix step on the dataset rows `rows` with the given mixing; returns the loss before
  /// the update. Dropout is active.
  /// @throws shape_error if the data do not fit the adapters, `rows` or the plan index out of
  ///         range, or the plan's two halves differ in length.
  double step(const matrix_type& zx, const matrix_type& zy, std::span<const std::size_t> rows, const mix_plan& plan,
              double lr);
  /// The same step reading the batch's rows from latent sources (files, host memory): the rows
  /// are gathered into the backend's memory, then mixed by the plan's positions; the same bits as
  /// the matrix form on the same values.
  /// @throws as the matrix form; numeric_error if a gathered row holds NaN or Inf (before any
  ///         update); what the sources' `gather` throws (io_error for a file changed on disk).
  template <class SX, class SY>
    requires LatentSource<SX, typename HX::backend_type::scalar_type> &&
             LatentSource<SY, typename HX::backend_type::scalar_type>
  double step(const SX& zx, const SY& zy, std::span<const std::size_t> rows, const mix_plan& plan, double lr);
  /// One epoch: shuffle (seeded by the epoch), full batches only, the schedule's rate per step.
  ///
  /// If `stop` is given and becomes true (on any rank, across processes: the ranks agree before
  /// every step), the call returns after the step in progress with `complete == false`; the
  /// trainer then sits inside the epoch (`step_in_epoch()`), a checkpoint records that position, and the next call continues the epoch where it stopped,
  /// with the same bits as if it had never stopped. Setting `stop` from a signal handler is
  /// safe (a lock-free atomic store).
  /// @throws shape_error for mismatched data; numeric_error for NaN/Inf latents or a loss that
  ///         stops being finite (checked before the update, so the adapters keep the weights of
  ///         the last finite step).
  epoch_record train_epoch(const matrix_type& zx, const matrix_type& zy, const progress_callback& progress = {},
                           const std::atomic<bool>* stop = nullptr);
  /// One epoch reading each batch from latent sources: `io::mapped_latents` (memory-mapped `.npy`
  /// shards, float16/32/64) or a `latent_view` of host memory. Only a batch is ever in the
  /// backend's memory; the next batch's rows are prefetched (`prefetch`, where the source has it)
  /// while a step computes. The same bits as the matrix form on the same values, so a float16
  /// file trains as a float32 matrix of its values. Per epoch only the shapes are checked (a full
  /// scan of a large file set each epoch would double its reads); each batch is checked finite
  /// when gathered. Call `validate` once to check every value up front.
  /// @throws as the matrix form, and as the `step` that reads sources.
  template <class SX, class SY>
    requires LatentSource<SX, typename HX::backend_type::scalar_type> &&
             LatentSource<SY, typename HX::backend_type::scalar_type>
  epoch_record train_epoch(const SX& zx, const SY& zy, const progress_callback& progress = {},
                           const std::atomic<bool>* stop = nullptr);

  /// Checks that the pairs can be trained on: equal row counts, the adapters' widths, at least
  /// one full batch, finite values. @throws shape_error, numeric_error.
  void validate(const matrix_type& zx, const matrix_type& zy) const;
  /// The same checks on latent sources, reading every row once (in blocks, prefetched).
  /// @throws shape_error, numeric_error (naming the row and column), what `gather` throws.
  template <class SX, class SY>
    requires LatentSource<SX, typename HX::backend_type::scalar_type> &&
             LatentSource<SY, typename HX::backend_type::scalar_type>
  void validate(const SX& zx, const SY& zy) const;

  /// Whether `flag` is true on any rank (a collective across processes, `flag` itself in one):
  /// how ranks agree to stop together when a signal reached only some of them.
  [[nodiscard]] bool any_rank(bool flag) const {
    if (!comm_.distributed()) return flag;
    double v = flag ? 1.0 : 0.0;
    comm_.all_reduce_sum(std::span<double>(&v, 1));
    return v > 0;
  }
  /// Trains from the next step as rank `comm.rank()` of `comm.size()` processes (data-parallel;
  /// docs/distributed.md). Every rank must hold the same adapters, options and data, and call
  /// the same functions in the same order. Each derives the same shuffle and mixing plan from the
  /// seed and takes its contiguous share of each mixed batch (`dist::rank_rows`), gathering and
  /// embedding only those rows (a memory-mapped source is read only there), with the dropout
  /// masks those rows have in the whole batch. The embeddings are all-gathered, so the loss is
  /// the whole batch's, as in one process; a `ShardedLoss` computes only the rank's rows' terms
  /// of it (`forward_shard`), any other loss runs whole on every rank. Each rank back-propagates
  /// its rows and the parameter gradients are summed across ranks in rank order. The loss's
  /// scalars and the optimisers then see the same values everywhere, and K ranks train the
  /// weights of one process up to rounding (summation order), with the same bits on every rank.
  /// Works with `micro_batch` (slices of the rank's share). Checkpoints and metrics are the
  /// caller's to write once (from rank 0). The group must outlive the trainer's use of it; the
  /// default is one process. A device backend needs a communicator over device memory
  /// (`dist::nccl_communicator` on the backend's stream).
  /// @throws argument_error if more than one process takes part and the backend's memory is not
  ///         the host's while the communicator's is, the adapters cannot run slices, or a
  ///         mixed batch has fewer rows than there are ranks.
  void set_communicator(dist::any_communicator comm);
  [[nodiscard]] const dist::any_communicator& communicator() const noexcept { return comm_; }

  [[nodiscard]] std::size_t epoch() const noexcept { return epoch_; }
  [[nodiscard]] std::uint64_t global_step() const noexcept { return global_step_; }
  /// Steps of the current epoch already done (non-zero only after a stopped `train_epoch`).
  [[nodiscard]] std::size_t step_in_epoch() const noexcept { return step_in_epoch_; }
  /// The loss, with its learnable scalars.
  [[nodiscard]] L& loss() noexcept { return loss_; }
  [[nodiscard]] const L& loss() const noexcept { return loss_; }
  /// The contrastive loss's temperature τ.
  [[nodiscard]] double temperature() const noexcept
    requires std::same_as<L, contrastive_loss<backend_type>>
  {
    return static_cast<double>(loss_.temperature());
  }
  void set_temperature(double t) noexcept
    requires std::same_as<L, contrastive_loss<backend_type>>
  {
    loss_.set_temperature(static_cast<scalar_type>(t));
  }
  [[nodiscard]] const train_options& options() const noexcept { return o_; }
  [[nodiscard]] lr_schedule schedule() const noexcept { return {o_.lr, o_.min_lr, o_.epochs, o_.warmup}; }
  /// The optimiser of both adapters' parameters (the backend's AdamW; the loss's scalars have
  /// their own, on the host).
  [[nodiscard]] auto& optimizer() noexcept { return opt_; }

  /// Writes the adapters under PyTorch names (`vis_proj.*`, `text_proj.*`) and the loss's
  /// scalars, atomically (train/checkpoint.hpp).
  void save_weights(const std::filesystem::path& file) const { fusemix::save_weights(file, hx_, hy_, loss_); }
  /// Writes everything a resumed run needs (weights, AdamW moments, counters) atomically, with
  /// `metadata` stored alongside (e.g. the options, to check on resume).
  void save_checkpoint(const std::filesystem::path& file, std::map<std::string, std::string> metadata = {}) const {
    fusemix::save_checkpoint(file, hx_, hy_, loss_, opt_, loss_opt_, position(), std::move(metadata));
  }
  /// Restores a checkpoint written by `save_checkpoint`; returns its metadata.
  /// @throws io_error if the file is malformed, was written for another loss or lacks a tensor of
  ///         these adapters; shape_error if a tensor's shape differs from theirs.
  std::map<std::string, std::string> load_checkpoint(const std::filesystem::path& file);

 private:
  HX& hx_;
  HY& hy_;
  train_options o_;
  backend_type be_;
  L loss_;
  decltype(std::declval<const backend_type&>().make_optimizer(adamw_options{})) opt_;
  adamw<scalar_type> loss_opt_;  // the loss's few scalars live on the host, and so does their update
  [[nodiscard]] training_position position() const noexcept {
    return {epoch_, step_in_epoch_, global_step_, opt_.steps(), epoch_loss_sum_};
  }
  std::size_t epoch_ = 0, step_in_epoch_ = 0;
  std::uint64_t global_step_ = 0;
  double epoch_loss_sum_ = 0;  // over the current epoch's steps so far
  matrix_type mx_, my_, piece_x_, piece_y_;  // piece_*: rows gathered from a latent source, to be mixed
  matrix_type ex_, ey_, sx_, sy_, gx_, gy_;  // gradient caching: embeddings, a slice, its gradient rows
  std::vector<scalar_type> host_batch_;  // a source's rows on their way to a device backend
  std::vector<std::size_t> order_, rows_a_, rows_b_, piece_rows_, piece_a_, piece_b_;
  mix_plan plan_;  // reused: after the first step, a step allocates nothing
  dist::any_communicator comm_;  // one process unless set_communicator
  dist::row_range local_{};      // this rank's rows of the mixed batch
  std::size_t local_total_ = 0;  // the mixed batch's rows on all ranks
  matrix_type lx_, ly_;          // this rank's embeddings, before the all-gather
  std::vector<std::size_t> gather_counts_;
  void keep_local_rows();

  void check_shapes(std::size_t rows_x, std::size_t cols_x, std::size_t rows_y, std::size_t cols_y) const;
  void check_step(std::size_t n, std::span<const std::size_t> rows, const mix_plan& plan) const;
  template <class S>
  void gather_mixed(const S& z, matrix_type& piece, matrix_type& out, double lambda, const char* side);
  double forward_backward_update(double lr);
  double cached_forward_backward(std::size_t micro);
  // Whether both sides can run a slice of a batch with its masks and add its parameter gradients
  // to those held (what micro_batch needs).
  static constexpr bool slices = requires(HX& a, HY& b, const matrix_type& m) {
    a.forward_slice(m, std::uint64_t{0}, std::size_t{0});
    b.forward_slice(m, std::uint64_t{0}, std::size_t{0});
    a.backward(m, true);
    b.backward(m, true);
  };
  void copy_rows(const matrix_type& from, std::size_t first, std::size_t count, matrix_type& to) const;
  // An adapter's backward from `dy`. The latents are not trained, so an adapter that can skip
  // its input's gradient does (`fusion_adapter::backward_parameters`: fewer FLOPs in its first
  // layer). The whole batch at once (what every `Adapter` can do):
  template <class H>
  static void backward_of(H& h, const matrix_type& dy) {
    if constexpr (requires { h.backward_parameters(dy); }) h.backward_parameters(dy);
    else h.backward(dy);
  }
  // A slice, added to the gradients held with `accumulate`, calling `finished` after each layer
  // where the adapter can (gradient caching needs an adapter that accumulates).
  template <class H, class F>
  static void backward_of(H& h, const matrix_type& dy, bool accumulate, F& finished) {
    if constexpr (requires { h.backward_parameters(dy, accumulate, finished); })
      h.backward_parameters(dy, accumulate, finished);
    else if constexpr (requires { h.backward(dy, accumulate, finished); })
      h.backward(dy, accumulate, finished);
    else
      h.backward(dy, accumulate);
  }
  template <class StepFn, class PrefetchFn>
  epoch_record run_epoch(std::size_t n, const StepFn& step_fn, const PrefetchFn& prefetch_fn,
                         const progress_callback& progress, const std::atomic<bool>* stop);
};

template <class HX, class HY, class L>
trainer(HX&, HY&, L, train_options, typename HX::backend_type = {}) -> trainer<HX, HY, L>;
template <class HX, class HY>
trainer(HX&, HY&, train_options, typename HX::backend_type = {}) -> trainer<HX, HY>;

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
trainer<HX, HY, L>::trainer(HX& hx, HY& hy, L loss, train_options o, backend_type be)
    : hx_(hx), hy_(hy), o_(o), be_(be), loss_(std::move(loss)), opt_(be.make_optimizer({.weight_decay = o.weight_decay})),
      loss_opt_({.weight_decay = o.weight_decay}) {
  constexpr const char* where = "fusemix::trainer";
  if (hx.out_dim() != hy.out_dim())
    throw_shape_error(where, "both adapters must map into the same shared width", hx.out_dim(), hy.out_dim());
  if (o.epochs == 0) throw_expected<argument_error>(where, "epochs must be positive", ">= 1", 0);
  if (!(o.lr > 0)) throw_expected<argument_error>(where, "learning rate must be positive", "> 0", o.lr);
  if (!(o.weight_decay >= 0))
    throw_expected<argument_error>(where, "weight decay must not be negative", ">= 0", o.weight_decay);
  (void)mixed_rows(o.batch, o.mixup.mode);  // throws for an empty batch, or an odd one in halves mode
  if (!(o.mixup.alpha > 0)) throw_expected<argument_error>(where, "alpha must be positive", "> 0", o.mixup.alpha);
  if (o.mixup.schedule != alpha_schedule::constant && !(o.mixup.final_alpha > 0))
    throw_expected<argument_error>(where, "the final alpha of a schedule must be positive", "> 0", o.mixup.final_alpha);
  if (o.micro_batch != 0 && !slices)
    throw_expected<argument_error>(where, "micro_batch needs adapters with forward_slice and an accumulating backward",
                                   "0", o.micro_batch);
  // The loss in blocks of at most 1,024 rows: a product of 1,024 rows still runs at GEMM speed,
  // and a block of the logits then costs 4 KiB per mixed row (80 MiB at 20,480).
  if constexpr (requires { loss_.set_row_block(std::size_t{}); })
    if (o.micro_batch != 0) loss_.set_row_block(std::min<std::size_t>(o.micro_batch, 1024));
  opt_.add_model(hx_);
  opt_.add_model(hy_);
  loss_opt_.add(loss_.parameters().data(), loss_.gradients().data(), loss_.parameters().size(), false);
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
void trainer<HX, HY, L>::set_communicator(dist::any_communicator comm) {
  constexpr const char* where = "fusemix::trainer::set_communicator";
  if (comm.distributed()) {
    if (!backend_type::host_memory && !comm.device_memory())
      throw_expected<argument_error>(where, "a device backend across processes exchanges device memory",
                                     "a communicator over device memory (dist::nccl_communicator)",
                                     "one over host memory (MPI)");
    if (!slices)
      throw_expected<argument_error>(where, "training across processes runs each rank's rows as slices",
                                     "adapters with forward_slice and an accumulating backward", "adapters without");
    const std::size_t n = mixed_rows(o_.batch, o_.mixup.mode);
    if (n < static_cast<std::size_t>(comm.size()))
      throw_expected<argument_error>(where, "every rank needs at least one mixed row of each batch",
                                     concat(">= ", comm.size(), " mixed rows"), n);
    // At most 1,024 rows of the logits at a time (as with micro_batch): a sharded loss's rows
    // are the rank's (one block when they fit), a whole loss's the batch's, so a rank's memory
    // follows its share, not the B×B logits.
    const std::size_t k = static_cast<std::size_t>(comm.size()), share = ShardedLoss<L> ? (n + k - 1) / k : n / k;
    if constexpr (requires { loss_.set_row_block(std::size_t{}), loss_.row_block(); })
      if (loss_.row_block() == 0) loss_.set_row_block(std::min<std::size_t>(1024, share));
  }
  comm_ = comm;
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
void trainer<HX, HY, L>::keep_local_rows() {
  // The mixed batch's rows rows_a_, rows_b_ cut to this rank's share (in place: no allocation).
  local_total_ = rows_a_.size();
  local_ = dist::rank_rows(local_total_, comm_.rank(), comm_.size());
  if (!comm_.distributed()) return;
  for (auto* v : {&rows_a_, &rows_b_}) {
    v->erase(v->begin() + static_cast<std::ptrdiff_t>(local_.first + local_.count), v->end());
    v->erase(v->begin(), v->begin() + static_cast<std::ptrdiff_t>(local_.first));
  }
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
void trainer<HX, HY, L>::check_shapes(std::size_t rows_x, std::size_t cols_x, std::size_t rows_y,
                                      std::size_t cols_y) const {
  constexpr const char* where = "fusemix::trainer::validate";
  if (rows_x != rows_y) throw_shape_error(where, "X and Y must have the same number of rows (pairs)", rows_x, rows_y);
  if (cols_x != hx_.in_dim()) throw_shape_error(where, "X's width must equal the X adapter's in_dim", hx_.in_dim(), cols_x);
  if (cols_y != hy_.in_dim()) throw_shape_error(where, "Y's width must equal the Y adapter's in_dim", hy_.in_dim(), cols_y);
  if (o_.batch > rows_x)
    throw_shape_error(where, "the batch must not exceed the number of pairs", concat("<= ", rows_x), o_.batch);
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
void trainer<HX, HY, L>::validate(const matrix_type& zx, const matrix_type& zy) const {
  constexpr const char* where = "fusemix::trainer::validate";
  check_shapes(be_.rows(zx), be_.cols(zx), be_.rows(zy), be_.cols(zy));
  for (const matrix_type* z : {&zx, &zy}) {
    std::size_t r = 0, c = 0;
    if (be_.find_non_finite(*z, r, c))
      throw_expected<numeric_error>(
          where, concat(z == &zx ? "X" : "Y", " contains NaN or Inf at row ", r, ", column ", c),
          "finite latents", "a non-finite value");
  }
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
void trainer<HX, HY, L>::check_step(std::size_t n, std::span<const std::size_t> rows, const mix_plan& plan) const {
  constexpr const char* where = "fusemix::trainer::step";
  for (std::size_t r : rows)
    if (r >= n) throw_shape_error(where, "row index out of range", concat("< ", n), r);
  if (plan.first.size() != plan.second.size() || plan.first.empty())
    throw_shape_error(where, "the plan needs two equally long, non-empty pairings", plan.first.size(),
                              plan.second.size());
  for (const auto* half : {&plan.first, &plan.second})
    for (std::size_t i : *half)
      if (i >= rows.size()) throw_shape_error(where, "plan position out of range", concat("< ", rows.size()), i);
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
double trainer<HX, HY, L>::step(const matrix_type& zx, const matrix_type& zy, std::span<const std::size_t> rows,
                             const mix_plan& plan, double lr) {
  if (be_.rows(zx) != be_.rows(zy))
    throw_shape_error("fusemix::trainer::step", "X and Y must have the same number of rows", be_.rows(zx), be_.rows(zy));
  check_step(be_.rows(zx), rows, plan);
  loss_.prepare();
  mixed_dataset_rows(rows, plan, rows_a_, rows_b_);  // once for both modalities, no allocation after the first step
  keep_local_rows();
  apply_mix(be_, zx, std::span<const std::size_t>(rows_a_), std::span<const std::size_t>(rows_b_), plan.lambda, mx_);
  apply_mix(be_, zy, std::span<const std::size_t>(rows_a_), std::span<const std::size_t>(rows_b_), plan.lambda, my_);
  return forward_backward_update(lr);
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
template <class SX, class SY>
  requires LatentSource<SX, typename HX::backend_type::scalar_type> &&
           LatentSource<SY, typename HX::backend_type::scalar_type>
double trainer<HX, HY, L>::step(const SX& zx, const SY& zy, std::span<const std::size_t> rows, const mix_plan& plan,
                                double lr) {
  if (zx.rows() != zy.rows())
    throw_shape_error("fusemix::trainer::step", "X and Y must have the same number of rows", zx.rows(), zy.rows());
  check_step(zx.rows(), rows, plan);
  loss_.prepare();
  mixed_dataset_rows(rows, plan, rows_a_, rows_b_);
  keep_local_rows();
  gather_mixed(zx, piece_x_, mx_, plan.lambda, "X");
  gather_mixed(zy, piece_y_, my_, plan.lambda, "Y");
  return forward_backward_update(lr);
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
template <class S>
void trainer<HX, HY, L>::gather_mixed(const S& z, matrix_type& piece, matrix_type& out, double lambda,
                                      const char* side) {
  // The mixed rows a piece at a time: each piece's two parts (dataset rows rows_a_, rows_b_)
  // gathered into `piece` (sized once for the largest piece) and mixed from there, so the batch's
  // rows are never all held unmixed (a mixed row is the same float expression of the same values
  // as from a matrix).
  constexpr std::size_t rows_per_piece = 2048;
  const std::size_t n = rows_a_.size(), d = static_cast<std::size_t>(z.cols());
  be_.resize(out, n, d);
  be_.resize(piece, 2 * std::min(rows_per_piece, n), d);
  for (std::size_t first = 0; first < n; first += rows_per_piece) {
    const std::size_t count = std::min(rows_per_piece, n - first);
    piece_rows_.assign(rows_a_.begin() + first, rows_a_.begin() + first + count);
    piece_rows_.insert(piece_rows_.end(), rows_b_.begin() + first, rows_b_.begin() + first + count);
    const std::size_t values = 2 * count * d;
    const std::span<const std::size_t> wanted(piece_rows_);
    auto refuse = [&](std::size_t row_in_piece, std::size_t column) {
      throw_expected<numeric_error>("fusemix::trainer::step",
                                    concat(side, " contains NaN or Inf at row ", piece_rows_[row_in_piece], ", column ", column),
                                    "finite latents", "a non-finite value");
    };
    const auto parts = be_.map(std::as_const(piece).data(), 2 * count, d);
    bool checked = false;
    if constexpr (requires { z.gather_to(wanted, piece.data()); }) {
      z.gather_to(wanted, piece.data());  // a source in the backend's own memory
    } else if constexpr (backend_type::host_memory) {
      z.gather(wanted, std::span<scalar_type>(piece.data(), values));
    } else if constexpr (requires { be_.staging(values); }) {
      // Into page-locked memory, checked there, and copied without waiting: the gathering waits
      // for the device only to reuse a buffer, so the host reads a piece while the one before is
      // copied, and the next step's first pieces while the device finishes this step.
      const std::span<scalar_type> stage = be_.staging(values);
      z.gather(wanted, stage);
      for (std::size_t i = 0; i < values; ++i)
        if (!std::isfinite(stage[i])) refuse(i / d, i % d);
      checked = true;
      be_.upload_staged(stage, piece.data());
    } else {
      host_batch_.resize(values);
      z.gather(wanted, std::span<scalar_type>(host_batch_));
      be_.upload(std::span<const scalar_type>(host_batch_), piece.data());
    }
    std::size_t r = 0, c = 0;
    if (!checked && be_.find_non_finite(parts, r, c)) refuse(r, c);
    piece_a_.resize(count), piece_b_.resize(count);
    std::iota(piece_a_.begin(), piece_a_.end(), std::size_t{0});
    std::iota(piece_b_.begin(), piece_b_.end(), count);
    auto rows_out = be_.map(out.data() + first * d, count, d);
    be_.gather_mix(parts, std::span<const std::size_t>(piece_a_), std::span<const std::size_t>(piece_b_),
                   static_cast<scalar_type>(lambda), rows_out);
  }
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
double trainer<HX, HY, L>::forward_backward_update(double lr) {
  hx_.set_training(true);
  hy_.set_training(true);
  double loss = 0;
  // Across processes every rank's share runs as the slices of gradient caching do in one.
  const std::size_t n = be_.rows(mx_);
  const bool cached = slices && (comm_.distributed() || (o_.micro_batch != 0 && o_.micro_batch < n));
  if constexpr (slices) {
    if (cached) {
      loss = cached_forward_backward(o_.micro_batch != 0 ? std::min(o_.micro_batch, n) : n);
    }
  }
  if (!cached) {
    loss = static_cast<double>(loss_.forward(hx_.forward(mx_), hy_.forward(my_)));
    loss_.backward();
    backward_of(hx_, loss_.dx());
    backward_of(hy_, loss_.dy());
  }
  opt_.step(lr);
  loss_opt_.step(lr);
  ++global_step_;
  return loss;
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
void trainer<HX, HY, L>::copy_rows(const matrix_type& from, std::size_t first, std::size_t count,
                                   matrix_type& to) const {
  const std::size_t d = be_.cols(from);
  be_.resize(to, count, d);
  be_.copy_n(from.data() + first * d, count * d, to.data());
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
double trainer<HX, HY, L>::cached_forward_backward(std::size_t micro) {
  // This process's rows of the mixed batch, from row `at` of the whole batch (all of it in one
  // process).
  const std::size_t n = be_.rows(mx_), at = local_.first;
  const bool distributed = comm_.distributed();
  // Every slice draws the masks the whole batch would (its rows' places in it); the draw count
  // then moves on by one, as after one forward of the whole batch. The two sides are independent
  // until the loss and after it, so each is run through all its slices in turn.
  const std::uint64_t draw_x = hx_.dropout_draws(), draw_y = hy_.dropout_draws();
  // 1. The batch's embeddings, a slice at a time; each slice's activations are dropped. Across
  //    processes, each rank's embeddings are then all-gathered into the whole batch's.
  auto embed = [&](auto& h, const matrix_type& m, std::uint64_t draw, matrix_type& slice, matrix_type& mine,
                   matrix_type& e) {
    const std::size_t w = h.out_dim();
    matrix_type& out = distributed ? mine : e;
    be_.resize(out, n, w);
    for (std::size_t first = 0; first < n; first += micro) {
      const std::size_t count = std::min(micro, n - first);
      if (micro < n) copy_rows(m, first, count, slice);  // (one slice: the rows themselves)
      be_.copy_n(h.forward_slice(micro < n ? slice : m, draw, at + first).data(), count * w, out.data() + first * w);
    }
    if (distributed) {
      be_.resize(e, local_total_, w);
      comm_.all_gather(std::span<const scalar_type>(mine.data(), n * w), std::span<const std::size_t>(gather_counts_),
                       std::span<scalar_type>(e.data(), local_total_ * w));
    }
  };
  // The values each rank contributes to a gather: its rows times the shared width.
  if (distributed) dist::rank_counts(local_total_, comm_.size(), hx_.out_dim(), gather_counts_);
  embed(hx_, mx_, draw_x, sx_, lx_, ex_);
  embed(hy_, my_, draw_y, sy_, ly_, ey_);
  // 2. The loss over the whole batch: every row a negative of every other. Across processes a
  //    sharded loss takes this rank's rows' terms, its gradients those rows' (from row 0).
  const bool shard = distributed && ShardedLoss<L>;
  double loss = 0;
  if constexpr (ShardedLoss<L>)
    loss = static_cast<double>(shard ? loss_.forward_shard(ex_, ey_, comm_) : loss_.forward(ex_, ey_));
  else
    loss = static_cast<double>(loss_.forward(ex_, ey_));
  loss_.backward();
  const std::size_t grad_at = shard ? 0 : at;
  // 3. Each slice again, back-propagating its rows of the embeddings' gradient; the parameter
  //    gradients summed over the slices in place (the first slice writes them, the rest add).
  //    Across processes the last slice's backward starts the sums over ranks of the layers it has
  //    finished, a bucket at a time (`bucket_bytes`), and they run while the layers below and the
  //    other adapter's backward do.
  auto backpropagate = [&](auto& h, const matrix_type& m, const matrix_type& grad, std::uint64_t draw,
                           matrix_type& slice, matrix_type& slice_grad) {
    // One slice (a rank's whole share): the adapter still holds its activations from step 1.
    const bool recompute = micro < n;
    for (std::size_t first = 0; first < n; first += micro) {
      const std::size_t count = std::min(micro, n - first);
      copy_rows(grad, grad_at + first, count, slice_grad);
      if (recompute) {
        copy_rows(m, first, count, slice);
        h.forward_slice(slice, draw, at + first);
      }
      if (!distributed) {
        auto none = [](std::size_t) {};
        backward_of(h, slice_grad, first != 0, none);
        continue;
      }
      const bool last = first + count == n;
      const auto grads = h.gradients();
      std::size_t unsent = grads.size();  // gradients [from, unsent) are final and not yet summed
      auto finished = [&](std::size_t from) {
        if (last && unsent > from && (from == 0 || (unsent - from) * sizeof(scalar_type) >= o_.bucket_bytes)) {
          comm_.start_all_reduce_sum(grads.subspan(from, unsent - from));
          unsent = from;
        }
        comm_.progress();
      };
      backward_of(h, slice_grad, first != 0, finished);
      finished(0);  // (nothing left where the layers said so)
    }
    h.set_dropout_draws(draw + 1);
  };
  backpropagate(hx_, mx_, loss_.dx(), draw_x, sx_, gx_);
  backpropagate(hy_, my_, loss_.dy(), draw_y, sy_, gy_);
  comm_.finish();
  return loss;
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
epoch_record trainer<HX, HY, L>::train_epoch(const matrix_type& zx, const matrix_type& zy, const progress_callback& progress,
                                          const std::atomic<bool>* stop) {
  validate(zx, zy);
  return run_epoch(
      be_.rows(zx),
      [&](std::span<const std::size_t> rows, const mix_plan& plan, double lr) { return step(zx, zy, rows, plan, lr); },
      [](std::span<const std::size_t>) {}, progress, stop);
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
template <class SX, class SY>
  requires LatentSource<SX, typename HX::backend_type::scalar_type> &&
           LatentSource<SY, typename HX::backend_type::scalar_type>
epoch_record trainer<HX, HY, L>::train_epoch(const SX& zx, const SY& zy, const progress_callback& progress,
                                             const std::atomic<bool>* stop) {
  check_shapes(zx.rows(), zx.cols(), zy.rows(), zy.cols());
  return run_epoch(
      zx.rows(),
      [&](std::span<const std::size_t> rows, const mix_plan& plan, double lr) { return step(zx, zy, rows, plan, lr); },
      [&](std::span<const std::size_t> rows) {
        if constexpr (requires { zx.prefetch(rows); }) zx.prefetch(rows);
        if constexpr (requires { zy.prefetch(rows); }) zy.prefetch(rows);
      },
      progress, stop);
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
template <class SX, class SY>
  requires LatentSource<SX, typename HX::backend_type::scalar_type> &&
           LatentSource<SY, typename HX::backend_type::scalar_type>
void trainer<HX, HY, L>::validate(const SX& zx, const SY& zy) const {
  check_shapes(zx.rows(), zx.cols(), zy.rows(), zy.cols());
  // Every row once, a block at a time, the next block's pages requested while this one is checked.
  constexpr std::size_t block = 4096;
  std::vector<std::size_t> rows, next;
  std::vector<scalar_type> values;
  auto scan = [&](const auto& z, const char* side) {
    const std::size_t n = z.rows(), d = z.cols();
    auto fill = [&](std::vector<std::size_t>& r, std::size_t first) {
      r.resize(std::min(block, n - std::min(n, first)));
      std::iota(r.begin(), r.end(), first);
    };
    fill(rows, 0);
    for (std::size_t first = 0; first < n; first += block) {
      fill(next, first + block);
      if constexpr (requires { z.prefetch(std::span<const std::size_t>(next)); })
        z.prefetch(std::span<const std::size_t>(next));
      values.resize(rows.size() * d);
      z.gather(std::span<const std::size_t>(rows), std::span<scalar_type>(values));
      for (std::size_t i = 0; i < values.size(); ++i)
        if (!std::isfinite(values[i]))
          throw_expected<numeric_error>("fusemix::trainer::validate",
                                        concat(side, " contains NaN or Inf at row ", first + i / d, ", column ", i % d),
                                        "finite latents", "a non-finite value");
      std::swap(rows, next);
    }
  };
  scan(zx, "X");
  scan(zy, "Y");
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
template <class StepFn, class PrefetchFn>
epoch_record trainer<HX, HY, L>::run_epoch(std::size_t n, const StepFn& step_fn, const PrefetchFn& prefetch_fn,
                                           const progress_callback& progress, const std::atomic<bool>* stop) {
  const auto start = std::chrono::steady_clock::now();
  const std::size_t steps = n / o_.batch;
  if (step_in_epoch_ >= steps)
    throw_expected<argument_error>("fusemix::trainer::train_epoch",
                                           "the checkpoint's step within the epoch does not fit this data",
                                           concat("< ", steps), step_in_epoch_);
  order_.resize(n);
  std::iota(order_.begin(), order_.end(), std::size_t{0});
  philox_engine shuffle(o_.seed, epoch_);
  for (std::size_t i = n; i > 1; --i) std::swap(order_[i - 1], order_[shuffle.below(i)]);
  const lr_schedule sched = schedule();
  epoch_record rec{epoch_, steps, 0, 0, {}, 0, true};
  mixup_options mix = o_.mixup;
  mix.alpha = mixup_alpha(o_.mixup, epoch_, o_.epochs);
  for (; step_in_epoch_ < steps; ++step_in_epoch_) {
    if ((stop != nullptr && any_rank(stop->load(std::memory_order_relaxed))) ||
        (o_.max_steps != 0 && global_step_ >= o_.max_steps)) {
      rec.complete = false;
      break;
    }
    const std::size_t s = step_in_epoch_;
    // λ and the pairing of step k come from stream 2^40 + k, disjoint from the shuffles' streams.
    philox_engine rng(o_.seed, (std::uint64_t{1} << 40) + global_step_);
    draw_mix(rng, o_.batch, mix, plan_);
    rec.lr = sched.at(epoch_, s, steps);
    const std::span<const std::size_t> order(order_);
    if (s + 1 < steps) prefetch_fn(order.subspan((s + 1) * o_.batch, o_.batch));  // read while this step computes
    const double loss = step_fn(order.subspan(s * o_.batch, o_.batch), plan_, rec.lr);
    epoch_loss_sum_ += loss;
    if (progress) progress(s, steps, loss, rec.lr);
  }
  rec.steps = step_in_epoch_;
  rec.loss = rec.steps > 0 ? epoch_loss_sum_ / static_cast<double>(rec.steps) : 0.0;
  static_assert(L::parameter_names.size() <= max_loss_parameters);
  for (std::size_t i = 0; i < L::parameter_names.size(); ++i)
    rec.loss_parameters[i] = {L::parameter_names[i], static_cast<double>(loss_.parameters()[i])};
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (rec.complete) {
    ++epoch_;
    step_in_epoch_ = 0;
    epoch_loss_sum_ = 0;
  }
  return rec;
}

template <Adapter HX, Adapter HY, Loss L>
  requires std::same_as<typename HX::backend_type, typename HY::backend_type> &&
           std::same_as<typename HX::backend_type, typename L::backend_type>
std::map<std::string, std::string> trainer<HX, HY, L>::load_checkpoint(const std::filesystem::path& file) {
  std::map<std::string, std::string> metadata;
  const training_position at = fusemix::load_checkpoint(file, hx_, hy_, loss_, opt_, loss_opt_, &metadata);
  epoch_ = at.epoch;
  step_in_epoch_ = at.step_in_epoch;
  global_step_ = at.global_step;
  epoch_loss_sum_ = at.epoch_loss_sum;
  return metadata;
}

}  // namespace fusemix
