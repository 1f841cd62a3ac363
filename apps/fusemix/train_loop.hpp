// SPDX-License-Identifier: Apache-2.0
/// @file
/// The training loop of `fusemix train` (epochs, checkpoints, metrics, signals), written once
/// for every backend: train.cpp instantiates it for the CPU, cuda.cu for the GPU.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <fusemix/fusemix.hpp>

#include "training.hpp"

namespace fusemix_cli {
namespace fs = std::filesystem;

// Set by the first SIGINT/SIGTERM of a training run; the trainer polls it between steps.
inline std::atomic<bool> stop_requested{false};
inline volatile std::sig_atomic_t stop_signal = 0;
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" inline void request_stop(int sig) {
  stop_signal = sig;
  stop_requested.store(true, std::memory_order_relaxed);
}

// How many stop_on_signals scopes are open: a search's trials run inside the search's scope, and
// a signal taken between two trials must not be forgotten when the next one starts.
inline int signal_scopes = 0;

// Installs request_stop for SIGINT and SIGTERM while a run trains, one-shot (SA_RESETHAND): the
// first signal finishes the step and saves; a second one ends the program at once, which the
// atomic writes make safe too. The previous handlers come back on destruction.
class stop_on_signals {
 public:
  stop_on_signals() {
    if (signal_scopes++ == 0) {
      stop_requested.store(false);
      stop_signal = 0;
    }
    struct sigaction sa {};
    sa.sa_handler = request_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~stop_on_signals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    --signal_scopes;
  }
  stop_on_signals(const stop_on_signals&) = delete;
  stop_on_signals& operator=(const stop_on_signals&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// Progress inside an epoch: on a terminal a bar redrawn in place; otherwise (a log file, a batch
// job, where an epoch at the paper's scale can take hours) a line at most every `log_seconds`
// (0: none), before the epoch's own line at its end.
class progress_bar {
 public:
  progress_bar(bool quiet, double log_seconds, std::size_t batch)
      : tty_(!quiet && isatty(STDOUT_FILENO)), log_(!quiet && !tty_ && log_seconds > 0),
        log_period_(log_seconds), batch_(batch) {}
  void step(std::size_t epoch, std::size_t epochs, std::size_t s, std::size_t steps, double loss, double lr) {
    ++steps_seen_;
    if (!tty_ && !log_) return;
    const auto now = std::chrono::steady_clock::now();
    const double done = (static_cast<double>(epoch) + static_cast<double>(s + 1) / static_cast<double>(steps)) /
                        static_cast<double>(epochs);
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double eta = done > start_done_ ? elapsed * (1 - done) / (done - start_done_) : 0;
    if (log_) {
      if (s + 1 == steps || now - last_ < log_period_) return;
      last_ = now;
      std::printf("epoch %zu/%zu  step %zu/%zu  loss %.4f  lr %.2e  %.0f samples/s  ETA %s\n", epoch + 1, epochs, s + 1,
                  steps, loss, lr, static_cast<double>(steps_seen_ * batch_) / std::max(elapsed, 1e-9),
                  duration(eta).c_str());
      std::fflush(stdout);
      return;
    }
    if (s + 1 != steps && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const int width = 30, fill = static_cast<int>(done * width);
    std::printf("\r[%s%s] %5.1f%% epoch %zu/%zu loss %.4f lr %.2e ETA %s   ", std::string(static_cast<std::size_t>(fill), '#').c_str(),
                std::string(static_cast<std::size_t>(width - fill), '.').c_str(), 100 * done, epoch + 1, epochs, loss, lr,
                duration(eta).c_str());
    std::fflush(stdout);
  }
  void set_start(double done) { start_done_ = done; }
  void end_line() {
    if (tty_) std::printf("\r%100s\r", "");
  }

 private:
  static std::string duration(double s) {
    char buf[32];
    const long t = static_cast<long>(s);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    return buf;
  }
  bool tty_, log_;
  std::chrono::duration<double> log_period_;
  std::size_t batch_, steps_seen_ = 0;
  double start_done_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_ = start_;
};

/// The validation figures of epoch `epoch` (1-based) from the run's metrics lines.
inline std::optional<fusemix::retrieval_result> best_retrieval(const std::vector<std::string>& lines, std::size_t epoch) {
  if (epoch == 0 || epoch > lines.size()) return std::nullopt;
  const auto j = nlohmann::json::parse(lines[epoch - 1], nullptr, false);
  if (j.is_discarded() || !j.contains("val")) return std::nullopt;
  auto rec = [](const nlohmann::json& r) {
    return fusemix::recall{r.at("r1").get<double>(), r.at("r5").get<double>(), r.at("r10").get<double>()};
  };
  fusemix::retrieval_result r;
  r.image_to_text = rec(j["val"]["image_to_text"]);
  r.text_to_image = rec(j["val"]["text_to_image"]);
  r.mean = j["val"]["mean"].get<double>();
  return r;
}

/// Trains as `fusemix train` does, on any backend: `zx`, `zy` are the pairs in the adapters'
/// memory, `dim_x`, `dim_y` their widths (for the run signature), `validate_epoch(hx, hy)` the
/// retrieval of the validation pairs (an empty optional without them).
template <fusemix::Loss L, class HX, class HY, class M, class Validate>
train_result train_with(const train_settings& s, const M& zx, const M& zy, std::size_t dim_x, std::size_t dim_y, HX& hx,
                        HY& hy, const Validate& validate_epoch) {
  fusemix::trainer<HX, HY, L> tr(hx, hy, s.train, hx.backend());
  // Under mpirun every rank trains its share of each batch (the same weights everywhere); rank 0
  // alone writes the files and prints, and every rank reads the checkpoint on --resume.
  const fusemix::dist::any_communicator group = s.group.value_or(process_group());
  tr.set_communicator(group);
  const bool writer = group.rank() == 0, quiet = s.quiet || !writer;
  tr.validate(zx, zy);  // before anything is written
  std::error_code ec;
  if (writer) fs::create_directories(s.out, ec);
  if (ec) throw fusemix::io_error("fusemix train: " + s.out.string() + ": cannot create the output directory: " + ec.message());
  const fs::path ckpt = s.out / "checkpoint.safetensors", metrics = s.out / "metrics.jsonl",
                 weights = s.out / "adapters.safetensors";
  // Temporaries of a run killed while writing (kill -9, power loss) are litter, never output.
  if (writer)
    for (const auto& f : {ckpt, metrics, weights}) static_cast<void>(fusemix::io::remove_stale_temporaries(f));
  const std::string signature = run_signature(s, dim_x, dim_y);
  std::vector<std::string> metric_lines;
  // The best validation epoch so far (1-based; 0: none yet) and its mean recall: adapters.safetensors
  // holds its weights (written when it was reached), the checkpoint carries both for --resume.
  std::size_t best_epoch = 0;
  double best_score = 0;
  const bool resumed = s.resume && fs::exists(ckpt);
  if (resumed) {
    std::map<std::string, std::string> meta;
    try {
      meta = tr.load_checkpoint(ckpt);
    } catch (const fusemix::shape_error& e) {
      // Tensors of other shapes fail before the settings below can be compared.
      throw fusemix::argument_error("fusemix train: --resume: " + ckpt.string() + " was written by a run with other "
                                    "shapes (latent widths, --depth-x/-y, --shared-dim or --expansion): " + e.what());
    }
    if (const auto b = meta.find("best_epoch"); b != meta.end()) {
      best_epoch = std::stoull(b->second);
      best_score = std::stod(meta.at("best_score"));
    }
    const auto it = meta.find("run");
    if (it == meta.end() || it->second != signature)
      throw fusemix::argument_error("fusemix train: --resume: " + ckpt.string() +
                                    " was written by a run with other settings (checkpoint: " +
                                    (it == meta.end() ? std::string("none") : it->second) + "; now: " + signature + ")");
    // Keep the metrics of the epochs the checkpoint covers; later ones are redone.
    std::ifstream in(metrics);
    for (std::string line; std::getline(in, line) && metric_lines.size() < tr.epoch();) metric_lines.push_back(line);
    if (!quiet)
      std::cout << "resuming " << ckpt.string() << " at epoch " << tr.epoch() << ", step " << tr.step_in_epoch() << '\n';
  } else if (s.resume && !quiet) {
    std::cout << "no checkpoint in " << s.out.string() << ", starting afresh\n";
  }
  if (!quiet)
    for (const std::string& note : s.notes) std::cout << note << '\n';
  if (!quiet && group.distributed())
    std::cout << "data-parallel over " << group.size() << " processes: each embeds its share of every batch and "
              << "takes its rows of the whole batch's loss\n";
  for (const std::string& w : recipe_warnings(s, static_cast<std::size_t>(zx.rows()))) {
    if (!writer) break;
    if (s.on_warning) {
      s.on_warning(w);
    } else {
      std::cout << w << '\n';
    }
  }
  std::cout.flush();
  progress_bar bar(quiet, s.progress_seconds, s.train.batch);
  bar.set_start(static_cast<double>(tr.epoch()) / static_cast<double>(s.train.epochs));
  auto write_metrics = [&] {
    if (!writer) return;
    std::string all;
    for (const auto& l : metric_lines) all += l + '\n';
    fusemix::io::atomic_write("fusemix train", metrics,
                                  [&](fusemix::io::atomic_file& f) { f.write(all.data(), all.size()); });
  };
  // A new run in an earlier run's directory starts by removing that run's weights and checkpoint and
  // emptying its record, so that this run, stopped or killed before it writes its own (--max-steps, a
  // signal, SIGKILL), never leaves them beside its files as if they were its.
  if (!resumed && writer) {
    bool removed = false;
    for (const fs::path& f : {weights, ckpt}) {
      std::error_code rm;
      removed = fs::remove(f, rm) || removed;
      if (rm) fusemix::throw_io_error("fusemix train", f, "cannot remove the earlier run's file: " + rm.message());
    }
    if (removed && !quiet)
      std::cout << "a new run in " << s.out.string() << ": the earlier run's weights and checkpoint removed "
                << "(--resume continues a run)\n";
    write_metrics();
  }
  // The last checkpoint's time, for --checkpoint-minutes.
  using steady = std::chrono::steady_clock;
  auto last_save = steady::now();
  bool checkpoint_due = false;
  const auto checkpoint_period = std::chrono::duration<double>(60 * s.checkpoint_minutes);
  auto checkpoint_time = [&] { return s.checkpoint_minutes > 0 && steady::now() - last_save >= checkpoint_period; };
  // What the checkpoint on disk holds, for the messages below.
  std::string saved = fs::exists(ckpt) ? ckpt.string() + " (as it was)" : std::string("no checkpoint was written");
  auto done = [&] {
    return std::to_string(tr.epoch()) + " epochs and " + std::to_string(tr.step_in_epoch()) + " steps";
  };
  auto save = [&] {
    std::map<std::string, std::string> meta{{"run", signature}};
    if (best_epoch > 0) {
      char score[32];
      std::snprintf(score, sizeof score, "%.17g", best_score);
      meta["best_epoch"] = std::to_string(best_epoch);
      meta["best_score"] = score;
    }
    if (writer) tr.save_checkpoint(ckpt, std::move(meta));
    saved = ckpt.string() + " (after " + done() + ")";
    last_save = steady::now();
  };
  // --checkpoint-minutes: when one is due, the progress callback asks the trainer to pause through
  // the flag signals use (so that no second flag is polled), and `take_checkpoint_request` clears
  // that request again after the call unless a signal made one too.
  auto progress = [&](std::size_t e, std::size_t st, std::size_t steps, double loss, double lr) {
    bar.step(e, s.train.epochs, st, steps, loss, lr);
    if (!checkpoint_due && checkpoint_time()) {
      checkpoint_due = true;
      stop_requested.store(true, std::memory_order_relaxed);
    }
  };
  auto take_checkpoint_request = [&] {
    if (!checkpoint_due) return;
    checkpoint_due = false;
    // Cleared first, then set again if a signal came: a signal between the two sets it itself.
    stop_requested.store(false);
    if (stop_signal != 0) stop_requested.store(true);
  };
  auto stop_here = [&] {
    save();
    bar.end_line();
    // (stop_signal is 0 on a rank that stopped because another rank took the signal.)
    const char* name = stop_signal == SIGTERM ? "SIGTERM" : stop_signal == SIGINT ? "SIGINT" : "a signal to another rank";
    throw interrupted(stop_signal == SIGINT ? SIGINT : SIGTERM,
                      std::string("fusemix train: stopped by ") + name + "; saved " + saved +
                          "; continue with the same command and --resume");
  };
  auto divergence = [&](const std::string& when, const fusemix::numeric_error& err) {
    bar.end_line();
    return diverged("fusemix train: training diverged " + when + " (" + err.what() + "); " +
                    (fs::exists(ckpt) ? "kept " : "") + saved + "; " + weights.filename().string() +
                    " not written (try a lower learning rate)");
  };
  const stop_on_signals on_signals;
  train_result result;
  double epoch_seconds = 0;  // an epoch's time across --checkpoint-minutes pauses
  while (tr.epoch() < s.train.epochs) {
    // (Checked before an epoch as well as after one, so that a resumed run that had already
    // stopped early stays stopped.)
    if (s.patience > 0 && best_epoch > 0 && tr.epoch() - best_epoch >= s.patience) {
      result.stopped_early = true;
      break;
    }
    const std::size_t e = tr.epoch();
    fusemix::epoch_record rec;
    try {
      rec = tr.train_epoch(zx, zy, [&](std::size_t st, std::size_t steps, double loss, double lr) {
        progress(e, st, steps, loss, lr);
      }, &stop_requested);
    } catch (const fusemix::numeric_error& err) {
      // The data were checked finite up front, so this is divergence, not bad input: exit 1.
      throw divergence("in epoch " + std::to_string(e + 1) + ", step " + std::to_string(tr.step_in_epoch() + 1), err);
    }
    take_checkpoint_request();
    epoch_seconds += rec.seconds;
    // (Agreed by every rank: a signal may have reached only some of them, and so may a
    // checkpoint's time.)
    if (!rec.complete && tr.any_rank(stop_requested.load())) stop_here();
    if (!rec.complete && s.train.max_steps != 0 && tr.global_step() >= s.train.max_steps) {
      save();
      bar.end_line();
      if (!quiet)
        std::printf("stopped at --max-steps %llu (after %s); saved %s\n",
                    static_cast<unsigned long long>(s.train.max_steps), done().c_str(), ckpt.string().c_str());
      break;
    }
    if (!rec.complete) {  // a --checkpoint-minutes pause: the next call goes on with the epoch
      save();
      continue;
    }
    rec.seconds = std::exchange(epoch_seconds, 0.0);
    nlohmann::json j{{"epoch", rec.epoch + 1}, {"loss", rec.loss}, {"lr", rec.lr}, {"world_size", group.size()}};
    std::string loss_parameters;  // " temp 0.0700", " logit_scale 2.3026 logit_bias -10.0000"
    for (const auto& [name, value] : rec.loss_parameters)
      if (!name.empty()) {
        j[std::string(name)] = value;
        char buf[64];
        std::snprintf(buf, sizeof buf, "  %.*s %.4f", static_cast<int>(name.size()), name.data(), value);
        loss_parameters += buf;
      }
    j["steps"] = rec.steps;
    j["seconds"] = rec.seconds;
    bool improved = false;
    std::optional<fusemix::retrieval_result> r;
    try {
      r = validate_epoch(hx, hy);
    } catch (const fusemix::numeric_error& err) {
      // A last step with a finite loss can still leave weights that embed to NaN.
      throw divergence("in epoch " + std::to_string(e + 1) + " (its validation embeddings)", err);
    }
    if (r) {
      j["val"] = retrieval_json(*r);
      result.val = r;
      if (best_epoch == 0 || r->mean > best_score) {
        improved = true;
        best_epoch = rec.epoch + 1, best_score = r->mean;
        // Written now, before the checkpoint that records it: an interrupted run never leaves a
        // checkpoint naming a best epoch whose weights were not written.
        if (!s.keep_last && writer) tr.save_weights(weights);
      }
      j["best_epoch"] = best_epoch;
    }
    result.last_loss = rec.loss;
    metric_lines.push_back(j.dump());
    write_metrics();
    if (s.on_epoch) s.on_epoch(j);
    const bool early = s.patience > 0 && best_epoch > 0 && tr.epoch() - best_epoch >= s.patience;
    const bool last = tr.epoch() == s.train.epochs || early;
    if (last || (s.checkpoint_every > 0 && tr.epoch() % s.checkpoint_every == 0) || checkpoint_time()) save();
    if (!quiet && (last || tr.epoch() % s.print_every == 0)) {
      bar.end_line();
      std::printf("epoch %zu/%zu  loss %.4f  lr %.2e%s  %.1fs", rec.epoch + 1, s.train.epochs, rec.loss, rec.lr,
                  loss_parameters.c_str(), rec.seconds);
      if (j.contains("val"))
        std::printf("  val R@1 i->t %.1f t->i %.1f mean %.1f%s", j["val"]["image_to_text"]["r1"].get<double>(),
                    j["val"]["text_to_image"]["r1"].get<double>(), j["val"]["mean"].get<double>(), improved ? " *" : "");
      std::printf("\n");
      std::fflush(stdout);
    }
    if (tr.any_rank(stop_requested.load()) && !last) stop_here();
  }
  if (result.stopped_early && !quiet)
    std::printf("stopped early after epoch %zu: no better validation recall in %zu epochs (--patience)\n", tr.epoch(),
                s.patience);
  result.epochs_trained = tr.epoch();
  result.best_epoch = best_epoch;
  if (best_epoch > 0) result.best = best_retrieval(metric_lines, best_epoch);
  if (!writer) {
  } else if (best_epoch == 0 || s.keep_last || !fs::exists(weights)) {
    tr.save_weights(weights);
  } else if (!quiet) {
    std::printf("%s: the weights of epoch %zu, the best by validation mean recall (%.2f%%; --keep-last for the last)\n",
                weights.string().c_str(), best_epoch, best_score);
  }
  group.barrier();  // every rank returns once rank 0 has written
  return result;
}


/// `train_with` for the loss `s.loss` names ("contrastive" or "sigmoid").
template <class HX, class HY, class M, class Validate>
train_result train_with_loss(const train_settings& s, const M& zx, const M& zy, std::size_t dim_x, std::size_t dim_y,
                             HX& hx, HY& hy, const Validate& validate_epoch) {
  using B = typename HX::backend_type;
  if (s.loss == fusemix::sigmoid_loss<B>::name)
    return train_with<fusemix::sigmoid_loss<B>>(s, zx, zy, dim_x, dim_y, hx, hy, validate_epoch);
  return train_with<fusemix::contrastive_loss<B>>(s, zx, zy, dim_x, dim_y, hx, hy, validate_epoch);
}

/// Builds the run's adapters on backend `be`, with the same shapes and seeds on every backend,
/// and trains them with `train_with` (`zx`, `zy` in the backend's memory).
template <class B, class M, class Validate>
train_result train_adapters(const train_settings& s, const M& zx, const M& zy, std::size_t dx, std::size_t dy,
                            const B& be, const Validate& validate_epoch) {
  using adapter = fusemix::fusion_adapter<fusemix::dynamic_shape, B>;
  if (s.identity_y) {
    if (s.shared_dim != 0 && s.shared_dim != dy)
      fusemix::throw_shape_error("fusemix train", "with an identity Y side the shared width is Y's width", dy,
                                         s.shared_dim);
    adapter hx({.in_dim = dx, .out_dim = dy, .depth = s.depth_x, .expansion = s.expansion},
               {.dropout = s.dropout, .seed = s.train.seed * 2 + 1}, be);
    fusemix::identity_adapter<B> hy(dy, be);
    return train_with_loss(s, zx, zy, dx, dy, hx, hy, validate_epoch);
  }
  const std::size_t shared = s.shared_dim == 0 ? 512 : s.shared_dim;
  adapter hx({.in_dim = dx, .out_dim = shared, .depth = s.depth_x, .expansion = s.expansion},
             {.dropout = s.dropout, .seed = s.train.seed * 2 + 1}, be);
  adapter hy({.in_dim = dy, .out_dim = shared, .depth = s.depth_y, .expansion = s.expansion},
             {.dropout = s.dropout, .seed = s.train.seed * 2 + 2}, be);
  return train_with_loss(s, zx, zy, dx, dy, hx, hy, validate_epoch);
}

}  // namespace fusemix_cli
