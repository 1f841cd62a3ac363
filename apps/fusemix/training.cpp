// SPDX-License-Identifier: Apache-2.0
// What `fusemix train` does with its settings once they are parsed, shared by the program and the
// Python module (libfusemix_training): presets, data, the run's signature, the CPU run.
#include <chrono>
#include <cmath>
#include <span>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <fusemix/fusemix.hpp>

#include "model_file.hpp"
#include "train_loop.hpp"
#include "training.hpp"

namespace fusemix_cli {

preset preset_named(const std::string& name) {
  if (name == "image-text") return {4, 4, false, 500, 20480, 1e-3, 0.1};
  if (name == "audio-text") return {2, 2, false, 50, 2048, 1e-4, 0.5};
  if (name == "audio-to-image") return {2, 0, true, 50, 2048, 1e-4, 0.5};
  fusemix::throw_expected<fusemix::argument_error>("fusemix train", "unknown preset",
                                                           "image-text, audio-text or audio-to-image", name);
}

std::string run_signature(const train_settings& s, std::size_t dx, std::size_t dy) {
  std::ostringstream os;
  os << "x=" << dx << " y=" << dy << " depth_x=" << s.depth_x << " depth_y=" << s.depth_y
     << " identity_y=" << s.identity_y << " shared=" << s.shared_dim << " expansion=" << s.expansion
     << " dropout=" << s.dropout << " epochs=" << s.train.epochs << " batch=" << s.train.batch << " lr=" << s.train.lr
     << " wd=" << s.train.weight_decay << " alpha=" << s.train.mixup.alpha << " mix=" << fusemix::to_string(s.train.mixup.mode)
     << " seed=" << s.train.seed;
  if (s.held_out > 0) os << " held_out=" << s.held_out;
  if (s.train.mixup.schedule != fusemix::alpha_schedule::constant)
    os << " alpha_schedule=" << fusemix::to_string(s.train.mixup.schedule) << " final_alpha=" << s.train.mixup.final_alpha;
  // (Runs of the default loss keep the signature they had before the loss was a choice.)
  if (s.loss != fusemix::contrastive_loss<>::name) os << " loss=" << s.loss;
  return os.str();
}

nlohmann::json retrieval_json(const fusemix::retrieval_result& r) {
  auto rec = [](const fusemix::recall& x) { return nlohmann::json{{"r1", x.r1}, {"r5", x.r5}, {"r10", x.r10}}; };
  return {{"image_to_text", rec(r.image_to_text)}, {"text_to_image", rec(r.text_to_image)}, {"mean", r.mean}};
}

void print_retrieval_table(const std::vector<std::pair<std::string, fusemix::retrieval_result>>& rows) {
  std::printf("%-22s %26s   %26s   %6s\n", "", "image -> text", "text -> image", "");
  std::printf("%-22s %8s %8s %8s   %8s %8s %8s   %6s\n", "model", "R@1", "R@5", "R@10", "R@1", "R@5", "R@10", "mean");
  for (const auto& [name, r] : rows)
    std::printf("%-22s %8.1f %8.1f %8.1f   %8.1f %8.1f %8.1f   %6.1f\n", name.c_str(), r.image_to_text.r1,
                r.image_to_text.r5, r.image_to_text.r10, r.text_to_image.r1, r.text_to_image.r5, r.text_to_image.r10, r.mean);
}

data_set load_data(const train_settings& s) {
  data_set d;
  d.x_files.emplace(latent_files("fusemix train", "--x", s.x));
  d.y_files.emplace(latent_files("fusemix train", "--y", s.y));
  if (!s.x_val.empty() != !s.y_val.empty())
    throw fusemix::argument_error("fusemix train: --x-val and --y-val go together (got only one)");
  if (!s.x_val.empty()) {
    // NaN/Inf refused here: the trainer validates --x and --y, but would only report NaN recalls for these.
    d.x_val = read_latents("fusemix train", "--x-val", s.x_val);
    d.y_val = read_latents("fusemix train", "--y-val", s.y_val);
    check_validation_pairs("fusemix train", d, {"--x", "--y", "--x-val", "--y-val"});
  }
  return d;
}

void check_validation_pairs(std::string_view where, const data_set& d, const std::array<std::string_view, 4>& names) {
  const auto [x, y, x_val, y_val] = names;
  if (d.x_val.size() == 0 && d.y_val.size() == 0) return;
  if (d.x_val.rows() != d.y_val.rows())
    fusemix::throw_shape_error(where, fusemix::concat(x_val, " and ", y_val, " must have the same number of rows"),
                               d.x_val.rows(), d.y_val.rows());
  // Checked now, not after the first epoch.
  if (static_cast<std::size_t>(d.x_val.cols()) != d.cols_x())
    fusemix::throw_shape_error(where, fusemix::concat(x_val, " must have ", x, "'s width"), d.cols_x(), d.x_val.cols());
  if (static_cast<std::size_t>(d.y_val.cols()) != d.cols_y())
    fusemix::throw_shape_error(where, fusemix::concat(y_val, " must have ", y, "'s width"), d.cols_y(), d.y_val.cols());
}

std::vector<std::string> recipe_warnings(const train_settings& s, std::size_t pairs) {
  std::vector<std::string> out;
  const std::size_t batch = s.train.batch, per_epoch = batch == 0 ? 0 : pairs / batch, steps = per_epoch * s.train.epochs;
  if (steps < enough_steps)
    out.push_back(fusemix::concat("fusemix train: warning: this run makes only ", steps, " optimiser steps (", s.train.epochs,
                                  " epochs x ", per_epoch, per_epoch == 1 ? " step" : " steps", " of ", batch,
                                  " rows, from ", pairs, " pairs); FuseMix usually needs about ", enough_steps,
                                  " or more: raise --epochs or lower --batch"));
  if (batch > pairs / 2)
    out.push_back(fusemix::concat("fusemix train: warning: --batch ", batch, " is over half of the ", pairs,
                                  " training pairs, so each epoch is ", per_epoch, per_epoch == 1 ? " step" : " steps",
                                  " and leaves ", pairs - per_epoch * batch,
                                  " pairs unseen; a batch of at most a quarter of the pairs gives several steps per epoch"));
  return out;
}

void apply_recipe(train_settings& s, const std::string& name, const std::string& mix, const given_settings& given) {
  s.train.mixup.mode = fusemix::parse_mix_mode(mix);
  s.given = given;
  s.preset = !name.empty();
  if (name.empty()) return;
  const preset p = preset_named(name);
  if (!given.depth_x) s.depth_x = p.depth_x;
  if (!given.depth_y) s.depth_y = p.depth_y;
  s.identity_y = s.identity_y || p.identity_y;
  if (!given.epochs) s.train.epochs = p.epochs;
  // The SPEC's batch counts mixed pairs; halves mode mixes two rows into one pair.
  if (!given.batch) s.train.batch = s.train.mixup.mode == fusemix::mix_mode::halves ? 2 * p.batch : p.batch;
  if (!given.lr) s.train.lr = p.lr;
  if (!given.weight_decay) s.train.weight_decay = p.weight_decay;
}

namespace {

template <class S>
fusemix::matrix<float> gather_rows(const S& z, std::span<const std::size_t> rows) {
  fusemix::matrix<float> m(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(z.cols()));
  z.gather(rows, std::span<float>(m.data(), static_cast<std::size_t>(m.size())));
  return m;
}

// Holds `count` pairs of `d` out for validation (seeded by the run's seed).
void hold_out(train_settings& s, data_set& d, std::size_t count) {
  const std::size_t n = d.x_files ? d.x_files->rows() : static_cast<std::size_t>(d.x.rows());
  fusemix::row_split split = fusemix::split_rows(n, count, s.train.seed);
  if (d.x_files) {
    d.x_val = gather_rows(*d.x_files, split.validation);
    d.y_val = gather_rows(*d.y_files, split.validation);
  } else {
    d.x_val = gather_rows(fusemix::latent_view<float>(d.x), split.validation);
    d.y_val = gather_rows(fusemix::latent_view<float>(d.y), split.validation);
  }
  // The trainer checks the rows it trains on; these would only give NaN recalls.
  require_finite("fusemix train", "--x (held-out validation pairs)", fusemix::latent_view<float>(d.x_val));
  require_finite("fusemix train", "--y (held-out validation pairs)", fusemix::latent_view<float>(d.y_val));
  d.train_rows = std::move(split.train);
  s.held_out = count;
  s.notes.push_back(fusemix::concat("validation: ", count, " of the ", n, " pairs held out (seed ", s.train.seed,
                                    "); recall on them after every epoch, ", s.keep_last ? "the last epoch's" : "the best epoch's",
                                    " weights written"));
}

}  // namespace

fusemix::matrix<float> training_matrix(const data_set& d, bool x_side) {
  const auto& files = x_side ? d.x_files : d.y_files;
  const auto& m = x_side ? d.x : d.y;
  if (d.train_rows.empty()) return files ? fusemix::io::to_matrix<float>(*files) : m;
  return files ? gather_rows(*files, d.train_rows) : gather_rows(fusemix::latent_view<float>(m), d.train_rows);
}

void prepare_run(train_settings& s, data_set& d) {
  constexpr std::string_view where = "fusemix train";
  const std::size_t n = d.x_files ? d.x_files->rows() : static_cast<std::size_t>(d.x.rows());
  const bool given_val = d.x_val.size() > 0;
  if (s.gpu_latents != "auto" && s.device != "cuda")
    throw fusemix::argument_error(fusemix::concat("fusemix train: --gpu-latents ", s.gpu_latents,
                                                  " chooses how the GPU reads the pairs; it needs --device cuda"));
  if (s.precision != "fp32" && s.device != "cuda")
    throw fusemix::argument_error(fusemix::concat("fusemix train: --precision ", s.precision,
                                                  " chooses the GPU's GEMM operands; it needs --device cuda (the CPU "
                                                  "computes in fp32)"));
  if (s.identity_y && s.given.depth_y)
    throw fusemix::argument_error("fusemix train: --identity-y has no Y adapter, so no depth: drop --depth-y");
  if (s.no_val && given_val)
    throw fusemix::argument_error("fusemix train: --no-val and --x-val/--y-val contradict each other");
  if (s.budget_minutes && !s.auto_search)
    throw fusemix::argument_error("fusemix train: --budget-minutes is the time of an --auto search; without --auto there is none");
  if (s.budget_minutes && !(*s.budget_minutes > 0))
    fusemix::throw_expected<fusemix::argument_error>(where, "--budget-minutes is the search's time", "minutes > 0",
                                                     *s.budget_minutes);
  if (s.auto_search && s.resume)
    throw fusemix::argument_error("fusemix train: --auto does not resume (it searches afresh); drop --resume, or resume a "
                                  "run with the settings it chose");
  if (s.auto_search && s.train.max_steps > 0)
    throw fusemix::argument_error("fusemix train: --auto chooses when its runs stop; drop --max-steps");
  if (s.auto_search && process_group().distributed())
    throw fusemix::argument_error("fusemix train: --auto searches in one process; run it without mpirun, then train the "
                                  "settings it chose across processes");
  if (s.auto_search && s.no_val)
    throw fusemix::argument_error("fusemix train: --auto judges settings on validation pairs; --no-val leaves none");
  if (s.val_fraction) {
    const double f = *s.val_fraction;
    if (!(f > 0 && f < 1))
      fusemix::throw_expected<fusemix::argument_error>(where, "--val-fraction is the fraction of pairs held out",
                                                       "a number between 0 and 1, both excluded", f);
    if (given_val)
      throw fusemix::argument_error("fusemix train: --val-fraction holds out training pairs; --x-val/--y-val give "
                                    "validation pairs: use one or the other");
    if (s.no_val) throw fusemix::argument_error("fusemix train: --val-fraction and --no-val contradict each other");
    const auto count = static_cast<std::size_t>(std::llround(f * static_cast<double>(n)));
    if (count == 0 || count >= n)
      fusemix::throw_expected<fusemix::argument_error>(
          where, fusemix::concat("--val-fraction ", f, " of ", n, " pairs must hold out at least one pair and leave one"),
          fusemix::concat("between 1 and ", n - 1, " pairs"), count);
    hold_out(s, d, count);
  } else if (!given_val && !s.no_val && n >= auto_validation_min_pairs) {
    hold_out(s, d, std::min(n / 10, auto_validation_max_pairs));
  }
  if (s.auto_search && d.x_val.size() == 0)
    throw fusemix::argument_error(fusemix::concat(
        "fusemix train: --auto judges settings on validation pairs: give --val-fraction or --x-val/--y-val (the default "
        "hold-out needs at least ", auto_validation_min_pairs, " pairs; got ", n, ")"));
  if (s.patience > 0 && d.x_val.size() == 0)
    throw fusemix::argument_error(fusemix::concat(
        "fusemix train: --patience ", s.patience, " needs validation pairs (--val-fraction, --x-val/--y-val, or at least ",
        auto_validation_min_pairs, " pairs for the default hold-out; got none", s.no_val ? ": --no-val" : "", ")"));
  if (s.preset) return;
  const auto& g = s.given;
  if (g.epochs && g.batch && g.lr && g.weight_decay && g.depth_x && g.depth_y) return;
  const fusemix::recipe r = fusemix::recipe_for(d.pairs(), d.cols_x(), d.cols_y());
  s.notes.push_back(fusemix::concat("settings from the data (", d.pairs(), " training pairs, widths ", d.cols_x(), " and ",
                                    d.cols_y(), "), flags given kept:"));
  if (!g.batch) s.train.batch = r.batch, s.notes.push_back("  " + r.reasons[0]);
  if (!g.epochs) {
    s.train.epochs = fusemix::epochs_for(d.pairs(), s.train.batch);
    s.notes.push_back(g.batch ? fusemix::concat("  epochs ", s.train.epochs, ": ", s.train.epochs * (d.pairs() / s.train.batch),
                                                " optimiser steps at --batch ", s.train.batch)
                              : "  " + r.reasons[1]);
  }
  if (!g.depth_x) s.depth_x = r.depth;
  if (!g.depth_y) s.depth_y = r.depth;
  if (!g.lr) s.train.lr = r.lr;
  if (!g.weight_decay) s.train.weight_decay = r.weight_decay;
  if (!g.depth_x || !g.depth_y || !g.lr || !g.weight_decay) s.notes.push_back("  " + r.reasons[2]);
}

namespace {

// The search's space: the defaults, each setting given on the command line fixed.
fusemix::search_space space_for(const train_settings& s) {
  fusemix::search_space space;
  const auto& g = s.given;
  if (g.depth_x || g.depth_y) space.depth = {g.depth_x ? s.depth_x : s.depth_y};
  if (g.shared_dim || s.identity_y) space.shared_dim = {s.shared_dim};
  if (g.lr) space.lr = {s.train.lr};
  if (g.weight_decay) space.weight_decay = {s.train.weight_decay};
  if (g.alpha) space.alpha = {s.train.mixup.alpha};
  if (g.mix || s.train.batch % 2 != 0) space.mix = {s.train.mixup.mode};  // (halves needs an even batch)
  if (g.dropout) space.dropout = {s.dropout};
  return space;
}

void apply_candidate(train_settings& s, const fusemix::hyperparameters& h) {
  s.depth_x = h.depth;
  s.depth_y = s.identity_y ? 0 : h.depth;
  s.shared_dim = h.shared_dim;
  s.train.lr = h.lr;
  s.train.weight_decay = h.weight_decay;
  s.train.mixup.alpha = h.alpha;
  s.train.mixup.mode = h.mix;
  s.dropout = h.dropout;
}

std::string describe(const fusemix::hyperparameters& h) {
  return fusemix::concat("depth ", h.depth, ", shared ", h.shared_dim, ", lr ", h.lr, ", weight decay ", h.weight_decay,
                         ", alpha ", h.alpha, ", mix ", fusemix::to_string(h.mix), ", dropout ", h.dropout);
}

}  // namespace

fusemix::search_report search_settings(train_settings& s, data_set& d) {
  const std::size_t dy = d.cols_y();
  const std::size_t shared = s.identity_y ? dy : (s.shared_dim == 0 ? 512 : s.shared_dim);
  s.shared_dim = shared;
  const fusemix::hyperparameters rule{s.depth_x,          shared, s.train.lr, s.train.weight_decay, s.train.mixup.alpha,
                                      s.train.mixup.mode, s.dropout};
  const std::vector<fusemix::hyperparameters> candidates =
      fusemix::sample_candidates(space_for(s), s.search_candidates, s.train.seed, {rule});
  const std::vector<fusemix::rung> plan = fusemix::halving_plan(candidates.size(), 3, s.train.epochs);
  const double budget = 60 * s.budget_minutes.value_or(15.0);
  const std::size_t all_pairs = d.pairs() + (d.train_rows.empty() ? 0 : s.held_out);
  const fs::path dir = s.out / "search", table = s.out / "search.jsonl";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw fusemix::io_error("fusemix train: " + dir.string() + ": cannot create the search directory: " + ec.message());
  if (!s.quiet) {
    std::string rounds;
    for (const auto& r : plan) rounds += fusemix::concat(rounds.empty() ? "" : ", ", r.candidates, " x ", r.epochs, " epochs");
    for (const std::string& note : s.notes) std::printf("%s\n", note.c_str());
    std::printf("search: %zu candidates (0: the settings above), successive halving: %s; judged on %td validation pairs; "
                "budget %.4g min\n",
                candidates.size(), rounds.c_str(), d.x_val.rows(), budget / 60);
    std::printf("%5s %5s %6s %5s %6s %8s %6s %5s %-11s %7s %8s %5s %8s\n", "cand", "round", "epochs", "depth", "shared",
                "lr", "wd", "alpha", "mix", "dropout", "val mean", "best", "seconds");
    std::fflush(stdout);
  }
  std::string lines;
  // SIGINT/SIGTERM between trials are kept for the next check; within one, the trial stops.
  const stop_on_signals on_signals;
  auto stopped = [&](int signal, const std::string& when) {
    fs::remove_all(dir, ec);
    return interrupted(signal, fusemix::concat("fusemix train --auto: stopped by ", signal == SIGTERM ? "SIGTERM" : "SIGINT",
                                               " ", when, "; the trials so far are in ", table.string(),
                                               "; a search does not resume: run it again"));
  };
  auto signal_taken = [] { return stop_signal == SIGTERM ? SIGTERM : SIGINT; };
  auto evaluate = [&](const fusemix::trial& tr) {
    const std::size_t c = tr.candidate, round = tr.rung, epochs = tr.epochs;
    if (stop_requested.load()) throw stopped(signal_taken(), fusemix::concat("before training candidate ", c));
    train_settings t = s;
    apply_candidate(t, candidates[c]);
    t.train.epochs = epochs;
    t.out = dir / fusemix::concat("candidate-", c, "-round-", round);
    // (keep_last: a trial's weights are written once, at the end, not at every better epoch; its
    // best epoch and score are tracked all the same.)
    t.quiet = true, t.resume = false, t.keep_last = true, t.patience = 0, t.checkpoint_every = 0, t.checkpoint_minutes = 0;
    t.notes.clear();
    t.on_warning = [](const std::string&) {};  // (short rounds are meant to be short)
    t.on_epoch = nullptr;
    const auto start = std::chrono::steady_clock::now();
    fusemix::trial_outcome out;
    try {
      const train_result r = train(t, d);
      out.score = r.best ? r.best->mean : 0;
      out.best_epoch = r.best_epoch;
    } catch (const diverged&) {
      out.score = -std::numeric_limits<double>::infinity();
    } catch (const interrupted& e) {
      throw stopped(e.signal(), fusemix::concat("while training candidate ", c));
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    fs::remove_all(t.out, ec);
    const auto& h = candidates[c];
    nlohmann::json j{{"candidate", c},        {"round", round},          {"epochs", epochs},
                     {"depth", h.depth},      {"shared_dim", h.shared_dim}, {"lr", h.lr},
                     {"weight_decay", h.weight_decay}, {"alpha", h.alpha}, {"mix", fusemix::to_string(h.mix)},
                     {"dropout", h.dropout},  {"best_epoch", out.best_epoch}, {"seconds", out.seconds}};
    j["val_mean"] = std::isfinite(out.score) ? nlohmann::json(out.score) : nlohmann::json(nullptr);
    lines += j.dump() + '\n';
    fusemix::io::atomic_write("fusemix train", table, [&](fusemix::io::atomic_file& f) { f.write(lines.data(), lines.size()); });
    if (!s.quiet) {
      std::printf("%5zu %5zu %6zu %5zu %6zu %8.1e %6.3g %5.3g %-11s %7.2g %8.2f %5zu %8.1f\n", c, round, epochs, h.depth,
                  h.shared_dim, h.lr, h.weight_decay, h.alpha, fusemix::to_string(h.mix), h.dropout, out.score,
                  out.best_epoch, out.seconds);
      std::fflush(stdout);
    }
    return out;
  };
  // (No cost model per candidate: the adapters' weights predicted the measured epoch times badly on
  // the bundled data, where row passes and validation weigh as much as the GEMMs.)
  const double grow = static_cast<double>(all_pairs) / static_cast<double>(d.pairs());
  fusemix::search_report report = fusemix::successive_halving(
      plan, evaluate,
      {.keep_first = true, .budget_seconds = budget, .reserve_epochs = static_cast<double>(s.train.epochs) * grow});
  if (stop_requested.load()) throw stopped(signal_taken(), "after the last trial");
  fs::remove_all(dir, ec);

  const fusemix::hyperparameters& w = candidates[report.winner];
  apply_candidate(s, w);
  s.train.epochs = report.winner_epochs;
  s.notes.clear();
  s.notes.push_back(fusemix::concat("search: candidate ", report.winner, " won (", describe(w), "): validation mean ",
                                    report.best.score, " at epoch ", report.best.best_epoch, " of ", report.winner_epochs,
                                    "; ", report.trials.size(), " trials in ", std::llround(report.seconds), " s",
                                    report.budget_cut ? " (some skipped: they would not have fitted the budget)" : ""));
  if (!d.train_rows.empty()) {
    // The held-out pairs rejoin: the final run trains on every pair and stops where the winner was
    // best (its schedule still spans the round's epochs).
    d.train_rows.clear();
    d.x_val = {}, d.y_val = {};
    s.held_out = 0;
    const std::size_t best = std::max<std::size_t>(report.best.best_epoch, 1);
    s.train.max_steps = best * (d.pairs() / s.train.batch);
    s.notes.push_back(fusemix::concat("final run: the winner on all ", d.pairs(), " pairs, stopped after epoch ", best,
                                      " of ", s.train.epochs, " (", s.train.max_steps, " optimiser steps)"));
  } else {
    s.notes.push_back(fusemix::concat("final run: the winner on all ", d.pairs(), " training pairs, validated as before"));
  }
  return report;
}

void choose_gemm_library(const std::string& name) {
  if (name == "eigen") fusemix::cpu::set_gemm_library(fusemix::cpu::gemm_library::eigen);
  if (name == "openblas") fusemix::cpu::set_gemm_library(fusemix::cpu::gemm_library::openblas);
}

train_result train(const train_settings& s, const data_set& d) {
  if (s.device == "cuda") return train_cuda(s, d);
  fusemix::cpu::set_threads(static_cast<int>(s.threads));
  choose_gemm_library(s.gemm);
  const fusemix::cpu::backend<float> be;
  // Files are read a batch at a time; both forms give the same bits on the same values.
  if (!d.train_rows.empty()) {
    // Pairs held out for validation: the trainer reads the other rows in place.
    auto train_on = [&](const auto& zx, const auto& zy) {
      const fusemix::row_subset tx(zx, d.train_rows), ty(zy, d.train_rows);
      return train_adapters(s, tx, ty, d.cols_x(), d.cols_y(), be, validate_on(d));
    };
    if (d.x_files) return train_on(*d.x_files, *d.y_files);
    return train_on(fusemix::latent_view<float>(d.x), fusemix::latent_view<float>(d.y));
  }
  if (d.x_files) return train_adapters(s, *d.x_files, *d.y_files, d.cols_x(), d.cols_y(), be, validate_on(d));
  return train_adapters(s, d.x, d.y, d.cols_x(), d.cols_y(), be, validate_on(d));
}

namespace {

/// Scales each row to unit length (in double); zero rows stay zero.
fusemix::io::matrix<float> normalized_rows(const fusemix::latent_view<float>& z) {
  fusemix::io::matrix<float> out(static_cast<Eigen::Index>(z.rows()), static_cast<Eigen::Index>(z.cols()));
  for (std::size_t i = 0; i < z.rows(); ++i) {
    const auto row = z.row(i);
    double sq = 0;
    for (const float v : row) sq += double(v) * double(v);
    for (std::size_t c = 0; c < row.size(); ++c)
      out(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(c)) =
          sq > 0 ? static_cast<float>(row[c] / std::sqrt(sq)) : row[c];
  }
  return out;
}

// Times the selection (a uniform draw, or `greedy()`), then gives log det(L_S): the greedy's gains
// add up to it; a drawn or windowed subset is scored afresh by `score(picks)`.
template <class Greedy, class Score>
select_result timed_selection(const select_settings& o, std::size_t items, const Greedy& greedy, const Score& score) {
  const auto start = std::chrono::steady_clock::now();
  select_result r;
  if (o.uniform) r.selection.picks = fusemix::uniform_subset(items, o.k, o.seed);
  else r.selection = greedy();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.log_det = o.uniform || o.window != 0 ? score(r.selection.picks) : r.selection.log_det();
  return r;
}

// `f(kernel)` with the kernel `o` names, for latents `cols` wide.
template <class F>
select_result with_kernel(const select_settings& o, std::size_t cols, const F& f) {
  if (o.kernel == "linear") return f(fusemix::linear_kernel{});
  if (o.kernel == "cosine") return f(fusemix::cosine_kernel{});
  if (o.kernel == "rbf") return f(fusemix::rbf_kernel{.gamma = o.gamma > 0 ? o.gamma : 1.0 / static_cast<double>(cols)});
  if (o.kernel != "poly")
    fusemix::throw_expected<fusemix::argument_error>("fusemix select", "unknown kernel", "poly, linear, cosine or rbf",
                                                     o.kernel);
  return f(fusemix::polynomial_kernel{.offset = o.offset, .degree = o.degree});
}

// The latents the selector sees: `z`, or its rows scaled to unit length (held in `unit`) with
// --normalize; the selector's threads set.
fusemix::latent_view<float> prepared(const select_settings& o, const fusemix::latent_view<float>& z,
                                     fusemix::io::matrix<float>& unit) {
  fusemix::cpu::set_threads(static_cast<int>(o.threads));
  if (!o.normalize) return z;
  unit = normalized_rows(z);
  return fusemix::latent_view<float>(unit);
}

}  // namespace

select_result select(const select_settings& o, const fusemix::latent_view<float>& z) {
  fusemix::io::matrix<float> unit;
  const fusemix::latent_view<float> v = prepared(o, z, unit);
  return with_kernel(o, v.cols(), [&](const auto& kernel) {
    const fusemix::kdpp_options ko{.relative_threshold = o.threshold, .window = o.window};
    return timed_selection(
        o, v.rows(),
        [&] { return o.device == "cuda" ? select_cuda(v, o.k, kernel, ko) : fusemix::greedy_kdpp(v, o.k, kernel, ko); },
        [&](const std::vector<std::size_t>& picks) { return fusemix::subset_log_det(v, picks, kernel); });
  });
}

select_result select_sharded(const select_settings& o, const fusemix::latent_view<float>& shard, std::size_t items,
                             const std::function<fusemix::io::matrix<float>(const std::vector<std::size_t>&)>& rows_of) {
  if (o.device != "cpu")
    throw fusemix::argument_error("fusemix select: across processes the selector runs on the CPU (MPI); drop --device " +
                                  o.device);
  fusemix::io::matrix<float> unit;
  const fusemix::latent_view<float> v = prepared(o, shard, unit);
  return with_kernel(o, v.cols(), [&](const auto& kernel) {
    return timed_selection(
        o, items,
        [&] {
          return fusemix::greedy_kdpp(v, o.k, kernel, process_group(),
                                      {.relative_threshold = o.threshold, .window = o.window});
        },
        [&](const std::vector<std::size_t>& picks) {
          // On the picked rows alone (read by every rank: a few rows).
          fusemix::io::matrix<float> picked = rows_of(picks);
          if (o.normalize) picked = normalized_rows(fusemix::latent_view<float>(picked));
          std::vector<std::size_t> order(picks.size());
          std::iota(order.begin(), order.end(), std::size_t{0});
          return fusemix::subset_log_det(fusemix::latent_view<float>(picked), std::span<const std::size_t>(order),
                                         kernel);
        });
  });
}

}  // namespace fusemix_cli
