// SPDX-License-Identifier: Apache-2.0
/// @file
/// What `fusemix train`, `eval` and `demo` share: settings, data, retrieval of a model.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <fusemix/fusemix.hpp>

#include "device_group.hpp"
#include "model_file.hpp"

namespace fusemix_cli {

/// A run that stopped cleanly on SIGINT or SIGTERM after saving its state; the program prints the
/// message and exits with 128 + the signal number, as a shell reports a process the signal ended;
/// the Python module raises KeyboardInterrupt with it.
class interrupted : public std::runtime_error {
 public:
  interrupted(int signal, const std::string& what) : std::runtime_error(what), signal_(signal) {}
  [[nodiscard]] int signal() const noexcept { return signal_; }

 private:
  int signal_;
};

/// A run whose loss stopped being finite (bad recipe, not bad input: the data were checked
/// first): the program exits 1, Python raises fusemix.NumericError. The last checkpoint stays.
class diverged : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The processes this program runs as: one, unless main started it as one rank of an MPI job
/// (`mpirun -np K fusemix train|select|eval …`, in a build with FUSEMIX_MPI). Training, selection
/// and evaluation share their work across it; rank 0 writes the files and prints.
inline fusemix::dist::any_communicator& process_group() noexcept {
  static fusemix::dist::any_communicator group;
  return group;
}

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

/// Which recipe settings were given explicitly (a preset or the data-aware rule fills in the others).
struct given_settings {
  bool epochs = false, batch = false, lr = false, weight_decay = false, depth_x = false, depth_y = false;
  /// (Only `--auto` reads these: a setting given is not searched.)
  bool shared_dim = false, dropout = false, alpha = false, mix = false;
};

/// Validation pairs held out of the training pairs by default: a tenth of them, at most this many
/// (retrieval over V pairs costs V² per epoch), when there are at least `auto_validation_min_pairs`.
inline constexpr std::size_t auto_validation_max_pairs = 5000;
inline constexpr std::size_t auto_validation_min_pairs = 1000;

struct train_settings {
  std::string x, y, x_val, y_val, gemm = "auto";
  std::string device = "cpu", precision = "fp32";  ///< --device cpu|cuda; --precision of the GPU's GEMMs
  /// --device cuda with pairs from files: "resident" (copied to the GPU in the files' precision),
  /// "stream" (each batch gathered on the host and copied through page-locked buffers), or
  /// "auto" (resident when the pairs take at most half the GPU's free memory).
  std::string gpu_latents = "auto";
  std::string loss = "contrastive";                  ///< --loss contrastive|sigmoid
  std::filesystem::path out;
  std::size_t depth_x = 2, depth_y = 2, shared_dim = 0, expansion = 4, threads = 0, checkpoint_every = 1;
  std::size_t print_every = 1;  ///< a summary line every this many epochs (and the last)
  /// --checkpoint-minutes: also a checkpoint inside an epoch once this long has passed since the
  /// last one (0: at epoch ends only), for epochs that take hours.
  double checkpoint_minutes = 0;
  /// --progress-seconds: without a terminal, a progress line inside an epoch at most this often.
  double progress_seconds = 60;
  bool identity_y = false, resume = false, quiet = false;
  double dropout = 0.6;
  /// --val-fraction: hold out this fraction of the training pairs for validation (unset: the default,
  /// a tenth up to auto_validation_max_pairs when there are enough pairs and no --x-val);
  /// --no-val: none. The weights of the best validation epoch are what adapters.safetensors holds
  /// unless `keep_last`; `patience` > 0 stops after that many epochs without a better one.
  std::optional<double> val_fraction;
  bool no_val = false, keep_last = false;
  std::size_t patience = 0;
  std::size_t held_out = 0;  ///< pairs `prepare_run` held out (part of the run's signature)
  /// --auto: search the settings not given (`search_settings`) within `budget_minutes`, from
  /// `search_candidates` candidates, the rule's settings first.
  bool auto_search = false;
  std::optional<double> budget_minutes;
  std::size_t search_candidates = 9;
  /// Set by `apply_recipe`: what was given, and whether a preset filled in the rest (otherwise
  /// `prepare_run` applies fusemix::recipe_for).
  given_settings given{};
  bool preset = false;
  /// What `prepare_run` chose and why (printed before training unless quiet).
  std::vector<std::string> notes;
  fusemix::train_options train{};
  /// Called with each epoch's metrics record (the line metrics.jsonl gets) once it is written.
  std::function<void(const nlohmann::json&)> on_epoch;
  /// Given each of `recipe_warnings` before training; unset, the program prints them on stdout.
  std::function<void(const std::string&)> on_warning;
  /// The processes to train over when not `process_group()`: the group over device memory
  /// (NCCL) that `--device cuda` trains over under mpirun.
  std::optional<fusemix::dist::any_communicator> group;
};


/// The smallest number of optimiser steps a run should make without a warning.
inline constexpr std::size_t enough_steps = 1000;

/// What is likely wrong with training `s` on `pairs` pairs, one sentence each (none when nothing
/// is): fewer than `enough_steps` optimiser steps in all; a batch over half the pairs (one step per
/// epoch that leaves the rest of the data unseen). Advice, not errors: the run goes ahead.
std::vector<std::string> recipe_warnings(const train_settings& s, std::size_t pairs);

struct data_set {
  /// The training pairs read in place from their files (the program's `--x`, `--y`: one `.npy`
  /// file or shards, memory-mapped, any float dtype). Without them, the pairs are `x`, `y` (the
  /// Python module's arrays).
  std::optional<fusemix::io::mapped_latents> x_files, y_files;
  fusemix::matrix<float> x, y, x_val, y_val;
  /// The rows of x, y (or the files) that train when pairs are held out for validation; empty:
  /// every row.
  std::vector<std::size_t> train_rows;
  /// The number of training pairs (after any hold-out).
  [[nodiscard]] std::size_t pairs() const noexcept {
    if (!train_rows.empty()) return train_rows.size();
    return x_files ? x_files->rows() : static_cast<std::size_t>(x.rows());
  }
  [[nodiscard]] std::size_t cols_x() const noexcept { return x_files ? x_files->cols() : static_cast<std::size_t>(x.cols()); }
  [[nodiscard]] std::size_t cols_y() const noexcept { return y_files ? y_files->cols() : static_cast<std::size_t>(y.cols()); }
};

struct train_result {
  double last_loss = 0;
  std::optional<fusemix::retrieval_result> val;   ///< the last epoch's validation
  std::optional<fusemix::retrieval_result> best;  ///< the best epoch's (what adapters.safetensors holds)
  std::size_t best_epoch = 0;                      ///< 1-based; 0 without validation
  std::size_t epochs_trained = 0;
  bool stopped_early = false;                      ///< by --patience
};
/// Applies the preset `name` (none if empty) to `s` for the settings not `given`, and the mixing
/// mode `mix`: as `fusemix train --preset` does (halves mode doubles the preset's batch: the SPEC's
/// batch counts mixed pairs). @throws argument_error for an unknown preset or mixing mode.
void apply_recipe(train_settings& s, const std::string& name, const std::string& mix, const given_settings& given);

data_set load_data(const train_settings& s);
/// What `fusemix train` does once the data are loaded, before training (the program and the Python
/// module alike): holds out validation pairs (--val-fraction, or the default), then chooses the
/// settings not given by fusemix::recipe_for on the training pairs unless a preset did, noting the
/// choices in `s.notes`. @throws argument_error for contradictory settings.
void prepare_run(train_settings& s, data_set& d);
/// `fusemix train --auto`, after `prepare_run`: successive halving over the settings not given
/// (fusemix::successive_halving; candidate 0 is what `prepare_run` chose), each trial trained as
/// `train` trains under OUT/search/ and judged by its best validation mean recall, a table row
/// printed per trial and OUT/search.jsonl written. Leaves `s` and `d` set for the final run: the
/// winner on every training pair (held-out pairs rejoin and the run stops after the winner's best
/// epoch, the schedule of its last round kept) or, with --x-val/--y-val, validated as before.
/// @throws argument_error without validation pairs or with --resume/--max-steps; interrupted.
fusemix::search_report search_settings(train_settings& s, data_set& d);
/// Checks the validation pairs of `d` (if any) against each other and the training pairs;
/// `names` are what messages call x, y, x_val and y_val. @throws shape_error.
void check_validation_pairs(std::string_view where, const data_set& d, const std::array<std::string_view, 4>& names);
/// The training pairs of one side (X if `x_side`, else Y) in host memory, the held-out rows left
/// out: what a backend that keeps the pairs in its own memory uploads.
fusemix::matrix<float> training_matrix(const data_set& d, bool x_side);
/// Trains as `fusemix train` does, writing OUT/{adapters,checkpoint}.safetensors and metrics.jsonl.
train_result train(const train_settings& s, const data_set& d);
/// The settings a checkpoint must have been written with to be resumed.
std::string run_signature(const train_settings& s, std::size_t dx, std::size_t dy);

/// The settings of `fusemix select` that decide its picks.
struct select_settings {
  std::string kernel = "poly", device = "cpu";
  std::size_t k = 0, window = 0, threads = 0;  ///< threads: 0 keeps the libraries' default
  unsigned degree = 2;
  double offset = 1.0, gamma = 0.0, threshold = fusemix::kdpp_options{}.relative_threshold;
  bool normalize = false, uniform = false;
  std::uint64_t seed = 0;
};

struct select_result {
  fusemix::selection selection;
  double log_det = 0;  ///< log det of the picks' kernel matrix (-inf for a singular subset)
  double seconds = 0;  ///< the selection's wall time
};

/// Picks as `fusemix select` does from latents `z` (checked finite by the caller; normalised on a
/// copy when `o.normalize`). @throws what greedy_kdpp and uniform_subset throw.
select_result select(const select_settings& o, const fusemix::latent_view<float>& z);
/// `select` across the processes of `process_group()`: `shard` is this rank's rows of the
/// `items` latents (`fusemix::dist::rank_rows`), `rows_of(picks)` reads the picked rows of the
/// whole (a windowed or uniform subset is scored on them). Every rank returns the same result.
select_result select_sharded(const select_settings& o, const fusemix::latent_view<float>& shard, std::size_t items,
                             const std::function<fusemix::io::matrix<float>(const std::vector<std::size_t>&)>& rows_of);

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

/// `h(z)` in evaluation mode for latents read a block of rows at a time (a CPU adapter): the
/// activations of one block are held, not those of every row. Across the processes of `group`,
/// each rank reads and embeds a contiguous run of the blocks and the embeddings are all-gathered:
/// every rank gets every row's, each block's the bits one process gives it.
template <class H>
fusemix::matrix<float> embed_blocks(H& h, const latent_blocks& z, const fusemix::dist::any_communicator& group = {}) {
  h.set_training(false);
  const std::size_t n = z.rows(), w = h.out_dim(), blocks = (n + embed_block_rows - 1) / embed_block_rows;
  fusemix::matrix<float> out(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(w));
  auto rows_of = [&](int rank) {  // rank's rows: its blocks'
    const auto b = fusemix::dist::rank_rows(blocks, rank, group.size());
    const std::size_t first = std::min(n, b.first * embed_block_rows);
    return fusemix::dist::row_range{first, std::min(n, (b.first + b.count) * embed_block_rows) - first};
  };
  const auto mine = rows_of(group.rank());
  fusemix::matrix<float> block;
  for (std::size_t first = mine.first; first < mine.first + mine.count; first += embed_block_rows) {
    const std::size_t count = std::min(embed_block_rows, mine.first + mine.count - first);
    z.read(first, count, block);
    out.middleRows(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(count)) = h.forward(block);
  }
  if (group.distributed()) {
    const std::vector<float> own(out.data() + mine.first * w, out.data() + (mine.first + mine.count) * w);
    std::vector<std::size_t> counts(static_cast<std::size_t>(group.size()));
    for (int r = 0; r < group.size(); ++r) counts[static_cast<std::size_t>(r)] = rows_of(r).count * w;
    group.all_gather(std::span<const float>(own), std::span<const std::size_t>(counts),
                     std::span<float>(out.data(), n * w));
  }
  return out;
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
/// A gallery a block of rows at a time (`fusemix::top_k_by_blocks`'s `gallery(first, rows)`).
using gallery_blocks = std::function<fusemix::latent_view<float>(std::size_t first, std::size_t rows)>;
fusemix::search_result<float> search_cuda(const fusemix::latent_view<float>& queries, std::size_t gallery_rows,
                                          const gallery_blocks& gallery, std::size_t k);

}  // namespace fusemix_cli
