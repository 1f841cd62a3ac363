// SPDX-License-Identifier: Apache-2.0
// `fusemix demo`: the main job on the bundled dataset (emoji images and their CLDR names, see
// data/emoji/README.md): untrained adapters, a ridge-regression baseline and FuseMix trained as
// `fusemix train` trains by default (settings from the data, the best epoch on pairs held out of the
// training split), compared by retrieval on the fixed 300-pair test split, read once at the end;
// training curves as metrics.jsonl and a picture.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <fusemix/fusemix.hpp>

#include "commands.hpp"
#include "training.hpp"

#ifndef FUSEMIX_SOURCE_DIR
#  define FUSEMIX_SOURCE_DIR "."
#endif

namespace fs = std::filesystem;

namespace {

struct demo_options {
  std::string data = FUSEMIX_SOURCE_DIR "/data/emoji";
  fusemix_cli::train_settings train;
  bool plot = true;
};

using dmat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Ridge regression from X to Y (W = (XᵀX + λ·mean(diag XᵀX)·I)⁻¹XᵀY on centred inputs), λ chosen
// by mean recall on the last fifth of the training pairs, then refitted on all of them.
fusemix::retrieval_result ridge_baseline(const fusemix::matrix<float>& xtr, const fusemix::matrix<float>& ytr,
                                         const fusemix::matrix<float>& xte, const fusemix::matrix<float>& yte,
                                         double& chosen) {
  auto fit = [](const dmat& x, const dmat& y, double lambda) {
    dmat a = x.transpose() * x;
    a.diagonal().array() += lambda * a.diagonal().mean();
    return dmat(a.ldlt().solve(x.transpose() * y));
  };
  const dmat x = xtr.cast<double>(), y = ytr.cast<double>();
  const Eigen::RowVectorXd mx = x.colwise().mean(), my = y.colwise().mean();
  const dmat xc = x.rowwise() - mx, yc = y.rowwise() - my;
  const Eigen::Index n_fit = x.rows() * 4 / 5;
  double best = -1;
  for (double lambda : {1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0}) {
    const dmat w = fit(xc.topRows(n_fit), yc.topRows(n_fit), lambda);
    const fusemix::matrix<float> p = (xc.bottomRows(x.rows() - n_fit) * w).cast<float>();
    const fusemix::matrix<float> t = yc.bottomRows(x.rows() - n_fit).cast<float>();
    const double score = fusemix::evaluate_retrieval<float>(p, t).mean;
    if (score > best) best = score, chosen = lambda;
  }
  const dmat w = fit(xc, yc, chosen);
  const fusemix::matrix<float> p = ((xte.cast<double>().rowwise() - mx) * w).cast<float>();
  const fusemix::matrix<float> t = (yte.cast<double>().rowwise() - my).cast<float>();
  return fusemix::evaluate_retrieval<float>(p, t);
}

void run_demo(demo_options o) {
  const fs::path dir = o.data;
  auto& s = o.train;
  s.x = (dir / "x_train.npy").string();
  s.y = (dir / "y_train.npy").string();
  const std::string x_test = (dir / "x_test.npy").string(), y_test = (dir / "y_test.npy").string();
  for (const auto& f : {s.x, s.y, x_test, y_test})
    if (!fs::exists(f))
      throw fusemix::io_error("fusemix demo: " + f + ": missing (is --data the bundled data/emoji directory?)");
  auto d = fusemix_cli::load_data(s);
  // The ridge baseline needs the training pairs in memory (FuseMix reads them from the files).
  d.x = fusemix::io::to_matrix<float>(*d.x_files);
  d.y = fusemix::io::to_matrix<float>(*d.y_files);
  std::printf("bundled data %s: %td train pairs; X %td-d (MobileNetV2 images), Y %td-d (GloVe names)\n",
              dir.string().c_str(), d.x.rows(), d.x.cols(), d.y.cols());
  fusemix_cli::prepare_run(s, d);
  if (s.auto_search) fusemix_cli::search_settings(s, d);
  // The test split, read once every setting is chosen, by the training pairs alone.
  const fusemix::matrix<float> xte = fusemix_cli::read_latents("fusemix demo", "x_test", x_test);
  const fusemix::matrix<float> yte = fusemix_cli::read_latents("fusemix demo", "y_test", y_test);

  std::vector<std::pair<std::string, fusemix::retrieval_result>> rows;
  {
    fusemix::fusion_adapter<> hx({.in_dim = static_cast<std::size_t>(d.x.cols()), .out_dim = s.shared_dim,
                                  .depth = s.depth_x, .expansion = s.expansion},
                                 {.dropout = s.dropout, .seed = s.train.seed * 2 + 1});
    fusemix::fusion_adapter<> hy({.in_dim = static_cast<std::size_t>(d.y.cols()), .out_dim = s.shared_dim,
                                  .depth = s.depth_y, .expansion = s.expansion},
                                 {.dropout = s.dropout, .seed = s.train.seed * 2 + 2});
    rows.emplace_back("untrained adapters", fusemix_cli::retrieval_of(hx, hy, xte, yte, {}));
  }
  double lambda = 0;
  rows.emplace_back("ridge regression", ridge_baseline(d.x, d.y, xte, yte, lambda));

  std::printf("FuseMix: depth %zu/%zu, shared %zu, %zu epochs, batch %zu, lr %g, wd %g, dropout %g, mix %s, %s loss\n",
              s.depth_x, s.depth_y, s.shared_dim, s.train.epochs, s.train.batch, s.train.lr, s.train.weight_decay, s.dropout,
              fusemix::to_string(s.train.mixup.mode), s.loss.c_str());
  const auto result = fusemix_cli::train(s, d);
  {
    // What the run wrote: the best validation epoch's weights.
    auto m = fusemix::io::load_model(s.out / "adapters.safetensors");
    const std::string name = s.auto_search ? "FuseMix --auto" : "FuseMix";
    rows.emplace_back(result.best_epoch > 0 ? fusemix::concat(name, " (epoch ", result.best_epoch, ")") : name,
                      fusemix_cli::retrieval_of(*m.x, *m.y, xte, yte, {}));
  }
  std::printf("\nretrieval on the %td-pair test split (percent; chance R@1 = %.1f%%; ridge lambda %g):\n",
              xte.rows(), 100.0 / static_cast<double>(xte.rows()), lambda);
  fusemix_cli::print_retrieval_table(rows);

  if (o.plot) {
    const fs::path script = fs::path(FUSEMIX_SOURCE_DIR) / "tools" / "plot_metrics.py";
    const fs::path png = s.out / "training.png";
    const std::string cmd = "/usr/bin/python3 '" + script.string() + "' '" + (s.out / "metrics.jsonl").string() + "' '" +
                            png.string() + "' 2>/dev/null";
    if (fs::exists(script) && fs::exists("/usr/bin/python3") && std::system(cmd.c_str()) == 0)
      std::printf("training curves: %s\n", png.string().c_str());
    else
      std::printf("training curves: %s (no picture: needs /usr/bin/python3 with matplotlib, see tools/plot_metrics.py)\n",
                  (s.out / "metrics.jsonl").string().c_str());
  }
}

}  // namespace

void register_demo(CLI::App& app) {
  auto o = std::make_shared<demo_options>();
  // `fusemix train`'s defaults: settings from the data (see README: "The demo's settings").
  auto& s = o->train;
  s.shared_dim = 512;
  s.out = "fusemix-demo";
  s.checkpoint_every = 0;
  s.print_every = 20;
  auto* cmd = app.add_subcommand("demo", "Train FuseMix on the bundled emoji data and compare with baselines");
  cmd->add_option("--data", o->data, "directory with x_train/y_train/x_test/y_test .npy (data/emoji, data/icons)")
      ->capture_default_str();
  cmd->add_option("--out", s.out, "output directory")->capture_default_str();
  auto* epochs = cmd->add_option("--epochs", s.train.epochs, "epochs (default: from the data)")->check(fusemix_cli::positive);
  auto* batch = cmd->add_option("--batch", s.train.batch, "rows per step (default: from the data)")->check(fusemix_cli::positive);
  auto* lr = cmd->add_option("--lr", s.train.lr, "peak learning rate (default: from the data)")->check(fusemix_cli::positive);
  auto* wd = cmd->add_option("--weight-decay", s.train.weight_decay, "AdamW decay (default: from the data)")
                 ->check(fusemix_cli::non_negative);
  auto* depth = cmd->add_option("--depth", s.depth_x, "blocks per adapter (default: from the data)")->check(fusemix_cli::non_negative);
  cmd->add_option("--val-fraction", s.val_fraction,
                  "hold out this fraction of the training split for validation (default: as fusemix train, a tenth "
                  "from 1,000 pairs on)");
  cmd->add_option("--patience", s.patience, "stop after N epochs without a better validation recall (0: never)")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  auto* shared = cmd->add_option("--shared-dim", s.shared_dim, "shared width")->check(fusemix_cli::positive)->capture_default_str();
  auto* dropout = cmd->add_option("--dropout", s.dropout, "dropout")->check(fusemix_cli::probability)->capture_default_str();
  cmd->add_flag("--auto", s.auto_search, "search the settings as `fusemix train --auto` does (on the training split)");
  cmd->add_option("--budget-minutes", s.budget_minutes, "--auto: the search's time (default 15)")->check(fusemix_cli::positive);
  cmd->add_option("--seed", s.train.seed, "seed")->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--loss", s.loss, "contrastive or sigmoid")
      ->check(CLI::IsMember({"contrastive", "sigmoid"}))->capture_default_str();
  cmd->add_option("--threads", s.threads, "GEMM threads (0: Eigen's default)")->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_flag("--quiet", s.quiet, "no per-epoch lines");
  cmd->add_flag("--resume", s.resume, "continue a run that SIGINT/SIGTERM or a crash stopped (same settings)");
  cmd->add_flag("!--no-plot", o->plot, "do not draw training.png");
  cmd->callback([=] {
    o->train.depth_y = o->train.depth_x;
    o->train.given = {.epochs = epochs->count() > 0, .batch = batch->count() > 0, .lr = lr->count() > 0,
                      .weight_decay = wd->count() > 0, .depth_x = depth->count() > 0, .depth_y = depth->count() > 0,
                      .shared_dim = shared->count() > 0, .dropout = dropout->count() > 0};
    run_demo(*o);
  });
}
