// SPDX-License-Identifier: Apache-2.0
// `fusemix train` and `fusemix eval`: FuseMix training from two .npy files of cached latents, and
// retrieval figures of a trained model.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include <fusemix/fusemix.hpp>

#include "commands.hpp"
#include "model_file.hpp"
#include "training.hpp"

namespace fs = std::filesystem;


namespace {

struct eval_options {
  std::string model, x, y, image_of_text;
  bool json = false;
};

void run_eval(const eval_options& o) {
  constexpr std::string_view where = "fusemix eval";
  // (an identity Y side is allowed; the two sides' widths are checked by load_model)
  auto m = fusemix::io::load_model(o.model);
  if (!m.x)
    fusemix::throw_expected<fusemix::io_error>(where, fusemix::concat(o.model, ": no X adapter"), "tensors named vis_proj.*",
                                               "none");
  auto& hx = *m.x;
  auto& hy = m.y;
  // Latents read and embedded a block of rows at a time: the embeddings are held, not the latents
  // or the activations of every row. Under mpirun each rank embeds its share of the blocks, and
  // every rank then scores the whole (rank 0 prints).
  const auto& group = fusemix_cli::process_group();
  const fusemix_cli::latent_blocks zx(where, "--x", o.x), zy(where, "--y", o.y);
  const auto width = [](const fusemix_cli::latent_blocks& z) { return static_cast<Eigen::Index>(z.cols()); };
  fusemix_cli::require_width(where, "--x", o.x, width(zx), fusemix::io::x_prefix, hx.in_dim(), o.model);
  std::vector<std::int64_t> owner;
  if (!o.image_of_text.empty()) owner = fusemix::io::read_npy_int64(o.image_of_text);
  fusemix::retrieval_result r;
  if (hy) {
    fusemix_cli::require_width(where, "--y", o.y, width(zy), fusemix::io::y_prefix, hy->in_dim(), o.model);
    r = fusemix::evaluate_retrieval<float>(fusemix_cli::embed_blocks(hx, zx, group),
                                           fusemix_cli::embed_blocks(*hy, zy, group), owner);
  } else {
    if (zy.cols() != hx.out_dim())
      fusemix::throw_shape_error(
          where, fusemix::concat("--y ", o.y, ": ", o.model, " has no text_proj. adapter, so the latent width "
                                         "must equal vis_proj.'s output width"),
          hx.out_dim(), zy.cols());
    fusemix::identity_adapter<> id(zy.cols());
    r = fusemix::evaluate_retrieval<float>(fusemix_cli::embed_blocks(hx, zx, group),
                                           fusemix_cli::embed_blocks(id, zy, group), owner);
  }
  if (group.rank() != 0) return;
  if (o.json) {
    auto j = fusemix_cli::retrieval_json(r);
    j["world_size"] = group.size();
    std::cout << j.dump() << '\n';
  } else {
    fusemix_cli::print_retrieval_table({{fs::path(o.model).filename().string(), r}});
  }
}

}  // namespace

void register_train(CLI::App& app) {
  auto s = std::make_shared<fusemix_cli::train_settings>();
  auto preset_name = std::make_shared<std::string>();
  auto mix = std::make_shared<std::string>("permutation");
  auto alpha_schedule = std::make_shared<std::string>("constant");
  auto* cmd = app.add_subcommand("train", "Train two fusion adapters with FuseMix on paired latents");
  cmd->add_option("--x", s->x, "X latents (e.g. image), N x D_x .npy (or shards: a.npy,b.npy,...)")->required();
  cmd->add_option("--y", s->y, "Y latents (e.g. text), N x D_y .npy, rows paired with X (or shards: a.npy,b.npy,...)")->required();
  cmd->add_option("--out", s->out, "output directory: adapters.safetensors, checkpoint.safetensors, metrics.jsonl")
      ->required();
  cmd->add_option("--preset", *preset_name, "image-text, audio-text or audio-to-image (SPEC settings; flags override); "
                                            "without one, settings not given are chosen from the data (docs/training.md)");
  auto* epochs = cmd->add_option("--epochs", s->train.epochs, "epochs")->check(fusemix_cli::positive);
  auto* batch = cmd->add_option("--batch", s->train.batch, "rows per step")->check(fusemix_cli::positive);
  auto* lr = cmd->add_option("--lr", s->train.lr, "peak learning rate")->check(fusemix_cli::positive);
  auto* wd = cmd->add_option("--weight-decay", s->train.weight_decay, "AdamW decay on Linear weights")->check(fusemix_cli::non_negative);
  auto* depth_x = cmd->add_option("--depth-x", s->depth_x, "blocks of the X adapter")->check(fusemix_cli::non_negative);
  auto* depth_y = cmd->add_option("--depth-y", s->depth_y, "blocks of the Y adapter")->check(fusemix_cli::non_negative);
  cmd->add_flag("--identity-y", s->identity_y, "no Y adapter: align X into Y's space (audio-to-image)");
  auto* shared_dim = cmd->add_option("--shared-dim", s->shared_dim, "shared space width (default 512; Y's width with --identity-y)")
      ->check(fusemix_cli::positive);
  cmd->add_option("--expansion", s->expansion, "block widening factor")->check(fusemix_cli::positive)->capture_default_str();
  auto* dropout = cmd->add_option("--dropout", s->dropout, "dropout probability in the blocks")->check(fusemix_cli::probability)->capture_default_str();
  auto* alpha = cmd->add_option("--alpha", s->train.mixup.alpha, "mixup: lambda ~ Beta(alpha, alpha)")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--alpha-schedule", *alpha_schedule,
                  "mixup alpha per epoch from --alpha to --final-alpha: constant (the paper), cosine or exponential "
                  "(the authors' code)")
      ->check(CLI::IsMember({"constant", "cosine", "exponential"}))->capture_default_str();
  auto* final_alpha = cmd->add_option("--final-alpha", s->train.mixup.final_alpha, "alpha after the last epoch (with --alpha-schedule)")
      ->check(fusemix_cli::positive)->capture_default_str();
  auto* mix_option = cmd->add_option("--mix", *mix, "mixup pairing: permutation (paper) or halves (authors' code)")
      ->check(CLI::IsMember({"permutation", "halves"}))->capture_default_str();
  cmd->add_option("--loss", s->loss, "contrastive (the paper's symmetric InfoNCE, learnable temperature) or sigmoid "
                                     "(SigLIP: pairwise, learnable logit_scale and logit_bias)")
      ->check(CLI::IsMember({"contrastive", "sigmoid"}))->capture_default_str();
  cmd->add_option("--seed", s->train.seed, "seed of every random draw")->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--threads", s->threads, "GEMM threads (0: the libraries' default); results are bitwise reproducible per count")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--gemm", s->gemm, "GEMM library: auto (OpenBLAS where linked, Eigen where OpenBLAS is pinned to a non-AVX-512 kernel), eigen or openblas;"
                                     " like --threads, it changes the last bits")
      ->check(CLI::IsMember({"auto", "eigen", "openblas"}))->capture_default_str();
  cmd->add_option("--device", s->device, "cpu, or cuda (the GPU backend; needs a build with FUSEMIX_CUDA)")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--precision", s->precision, "--device cuda: GEMM operands in fp32, tf32 or bf16 (float accumulation and weights)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))->capture_default_str();
  cmd->add_option("--gpu-latents", s->gpu_latents,
                  "--device cuda, pairs from files: resident (on the GPU in the files' precision), stream (a batch at a "
                  "time through page-locked host buffers), or auto (resident when they take at most half the free GPU memory)")
      ->check(CLI::IsMember({"auto", "resident", "stream"}))->capture_default_str();
  cmd->add_option("--x-val", s->x_val, "validation X latents (recall after every epoch) (or shards: a.npy,b.npy,...)");
  cmd->add_option("--y-val", s->y_val, "validation Y latents (or shards: a.npy,b.npy,...)");
  cmd->add_option("--val-fraction", s->val_fraction,
                  "hold out this fraction of the pairs (seeded) for validation after every epoch; default: a tenth, "
                  "at most 5,000 pairs, when there are 1,000 or more and no --x-val");
  cmd->add_flag("--no-val", s->no_val, "no validation pairs held out: train on every pair, write the last epoch's weights");
  cmd->add_flag("--keep-last", s->keep_last,
                "write the last epoch's weights (default with validation: the best epoch's by mean recall)");
  cmd->add_option("--patience", s->patience, "stop after N epochs without a better validation recall (0: never)")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_flag("--auto", s->auto_search,
                "search depth, shared width, lr, weight decay, mixup alpha and mode, dropout and epochs (those not "
                "given) by successive halving on validation pairs, then train the winner (docs/training.md)");
  cmd->add_option("--budget-minutes", s->budget_minutes, "--auto: the search's time, final run included (default 15)")
      ->check(fusemix_cli::positive);
  cmd->add_option("--checkpoint-every", s->checkpoint_every, "write a checkpoint every N epochs (and at the end)")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--checkpoint-minutes", s->checkpoint_minutes,
                  "also write a checkpoint inside an epoch once this many minutes have passed since the last one "
                  "(0: at epoch ends only); --resume continues from the step it records")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--progress-seconds", s->progress_seconds,
                  "without a terminal (a log file, a batch job): a progress line inside an epoch at most every S "
                  "seconds (0: none; on a terminal a bar is redrawn instead)")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--micro-batch", s->train.micro_batch,
                  "gradient caching: run the mixed batch this many rows at a time, the loss still over the whole "
                  "batch (0: all at once); activation memory of M rows, the same result up to rounding")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--max-steps", s->train.max_steps,
                  "stop after N optimiser steps in all, writing the checkpoint and the weights (0: no limit; "
                  "smoke runs, benchmarks; the schedule still spans --epochs)")
      ->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_flag("--resume", s->resume,
                "continue from OUT/checkpoint.safetensors if present (same settings, --epochs included: the schedule depends on it)");
  cmd->add_flag("--quiet", s->quiet, "no progress output");
  cmd->callback([=] {
    fusemix_cli::apply_recipe(*s, *preset_name, *mix,
                              {.epochs = epochs->count() > 0, .batch = batch->count() > 0, .lr = lr->count() > 0,
                               .weight_decay = wd->count() > 0, .depth_x = depth_x->count() > 0,
                               .depth_y = depth_y->count() > 0, .shared_dim = shared_dim->count() > 0,
                               .dropout = dropout->count() > 0, .alpha = alpha->count() > 0,
                               .mix = mix_option->count() > 0});
    s->train.mixup.schedule = fusemix::parse_alpha_schedule(*alpha_schedule);
    if (final_alpha->count() > 0 && s->train.mixup.schedule == fusemix::alpha_schedule::constant)
      throw fusemix::argument_error("fusemix train: --final-alpha is where --alpha-schedule ends; with the constant "
                                    "schedule alpha stays --alpha: give --alpha-schedule cosine or exponential");
    auto d = fusemix_cli::load_data(*s);
    fusemix_cli::prepare_run(*s, d);
    if (s->auto_search) fusemix_cli::search_settings(*s, d);
    fusemix_cli::train(*s, d);
    if (!s->quiet && fusemix_cli::process_group().rank() == 0) std::cout << "wrote " << (s->out / "adapters.safetensors").string() << '\n';
  });
}

void register_eval(CLI::App& app) {
  auto o = std::make_shared<eval_options>();
  auto* cmd = app.add_subcommand("eval", "Cross-modal retrieval (Recall@1/5/10 both ways) of a trained model");
  cmd->add_option("--model", o->model, "adapters.safetensors")->required();
  cmd->add_option("--x", o->x, "X (image) latents, N_x x D_x .npy (or shards: a.npy,b.npy,...)")->required();
  cmd->add_option("--y", o->y, "Y (text) latents, N_y x D_y .npy (or shards: a.npy,b.npy,...)")->required();
  cmd->add_option("--image-of-text", o->image_of_text, "int64 .npy: the image row of each text row (several captions per image)");
  cmd->add_flag("--json", o->json, "print one JSON object (percent)");
  cmd->callback([o] { run_eval(*o); });
}
