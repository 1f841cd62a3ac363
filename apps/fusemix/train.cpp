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
#include "train_loop.hpp"
#include "training.hpp"

namespace fs = std::filesystem;

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
  d.x = fusemix::io::read_npy<float>(s.x);
  d.y = fusemix::io::read_npy<float>(s.y);
  if (!s.x_val.empty() != !s.y_val.empty())
    throw fusemix::argument_error("fusemix train: --x-val and --y-val go together (got only one)");
  if (!s.x_val.empty()) {
    // NaN/Inf refused here: the trainer validates --x and --y, but would only report NaN recalls for these.
    d.x_val = read_latents("fusemix train", "--x-val", s.x_val);
    d.y_val = read_latents("fusemix train", "--y-val", s.y_val);
    if (d.x_val.rows() != d.y_val.rows())
      fusemix::throw_shape_error("fusemix train", "--x-val and --y-val must have the same number of rows",
                                         d.x_val.rows(), d.y_val.rows());
    // Checked now, not after the first epoch.
    if (d.x_val.cols() != d.x.cols())
      fusemix::throw_shape_error("fusemix train", "--x-val must have --x's width", d.x.cols(), d.x_val.cols());
    if (d.y_val.cols() != d.y.cols())
      fusemix::throw_shape_error("fusemix train", "--y-val must have --y's width", d.y.cols(), d.y_val.cols());
  }
  return d;
}

void choose_gemm_library(const std::string& name) {
  if (name == "eigen") fusemix::cpu::set_gemm_library(fusemix::cpu::gemm_library::eigen);
  if (name == "openblas") fusemix::cpu::set_gemm_library(fusemix::cpu::gemm_library::openblas);
}

train_result train(const train_settings& s, const data_set& d) {
  if (s.device == "cuda") return train_cuda(s, d);
  fusemix::cpu::set_threads(static_cast<int>(s.threads));
  choose_gemm_library(s.gemm);
  return train_adapters(s, d.x, d.y, static_cast<std::size_t>(d.x.cols()), static_cast<std::size_t>(d.y.cols()),
                        fusemix::cpu::backend<float>{}, validate_on(d));
}

}  // namespace fusemix_cli

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
  const auto zx = fusemix_cli::read_latents(where, "--x", o.x), zy = fusemix_cli::read_latents(where, "--y", o.y);
  fusemix_cli::require_width(where, "--x", o.x, zx.cols(), fusemix::io::x_prefix, hx.in_dim(), o.model);
  std::vector<std::int64_t> owner;
  if (!o.image_of_text.empty()) owner = fusemix::io::read_npy_int64(o.image_of_text);
  fusemix::retrieval_result r;
  if (hy) {
    fusemix_cli::require_width(where, "--y", o.y, zy.cols(), fusemix::io::y_prefix, hy->in_dim(), o.model);
    r = fusemix_cli::retrieval_of(hx, *hy, zx, zy, owner);
  } else {
    if (static_cast<std::size_t>(zy.cols()) != hx.out_dim())
      fusemix::throw_shape_error(
          where, fusemix::concat("--y ", o.y, ": ", o.model, " has no text_proj. adapter, so the latent width "
                                         "must equal vis_proj.'s output width"),
          hx.out_dim(), zy.cols());
    fusemix::identity_adapter<> id(static_cast<std::size_t>(zy.cols()));
    r = fusemix_cli::retrieval_of(hx, id, zx, zy, owner);
  }
  if (o.json)
    std::cout << fusemix_cli::retrieval_json(r).dump() << '\n';
  else
    fusemix_cli::print_retrieval_table({{fs::path(o.model).filename().string(), r}});
}

}  // namespace

void register_train(CLI::App& app) {
  auto s = std::make_shared<fusemix_cli::train_settings>();
  auto preset_name = std::make_shared<std::string>();
  auto mix = std::make_shared<std::string>("permutation");
  auto* cmd = app.add_subcommand("train", "Train two fusion adapters with FuseMix on paired latents");
  cmd->add_option("--x", s->x, "X latents (e.g. image), N x D_x .npy")->required();
  cmd->add_option("--y", s->y, "Y latents (e.g. text), N x D_y .npy, rows paired with X")->required();
  cmd->add_option("--out", s->out, "output directory: adapters.safetensors, checkpoint.safetensors, metrics.jsonl")
      ->required();
  cmd->add_option("--preset", *preset_name, "image-text, audio-text or audio-to-image (SPEC settings; flags override)");
  auto* epochs = cmd->add_option("--epochs", s->train.epochs, "epochs")->check(CLI::PositiveNumber);
  auto* batch = cmd->add_option("--batch", s->train.batch, "rows per step")->check(CLI::PositiveNumber);
  auto* lr = cmd->add_option("--lr", s->train.lr, "peak learning rate")->check(CLI::PositiveNumber);
  auto* wd = cmd->add_option("--weight-decay", s->train.weight_decay, "AdamW decay on Linear weights")->check(CLI::NonNegativeNumber);
  auto* depth_x = cmd->add_option("--depth-x", s->depth_x, "blocks of the X adapter")->check(CLI::NonNegativeNumber);
  auto* depth_y = cmd->add_option("--depth-y", s->depth_y, "blocks of the Y adapter")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--identity-y", s->identity_y, "no Y adapter: align X into Y's space (audio-to-image)");
  cmd->add_option("--shared-dim", s->shared_dim, "shared space width (default 512; Y's width with --identity-y)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--expansion", s->expansion, "block widening factor")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--dropout", s->dropout, "dropout probability in the blocks")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--alpha", s->train.mixup.alpha, "mixup: lambda ~ Beta(alpha, alpha)")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--mix", *mix, "mixup pairing: permutation (paper) or halves (authors' code)")
      ->check(CLI::IsMember({"permutation", "halves"}))->capture_default_str();
  cmd->add_option("--loss", s->loss, "contrastive (the paper's symmetric InfoNCE, learnable temperature) or sigmoid "
                                     "(SigLIP: pairwise, learnable logit_scale and logit_bias)")
      ->check(CLI::IsMember({"contrastive", "sigmoid"}))->capture_default_str();
  cmd->add_option("--seed", s->train.seed, "seed of every random draw")->capture_default_str();
  cmd->add_option("--threads", s->threads, "GEMM threads (0: the libraries' default); results are bitwise reproducible per count")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--gemm", s->gemm, "GEMM library: auto (OpenBLAS where linked, Eigen where OpenBLAS is pinned to a non-AVX-512 kernel), eigen or openblas;"
                                     " like --threads, it changes the last bits")
      ->check(CLI::IsMember({"auto", "eigen", "openblas"}))->capture_default_str();
  cmd->add_option("--device", s->device, "cpu, or cuda (the GPU backend; needs a build with FUSEMIX_CUDA)")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--precision", s->precision, "--device cuda: GEMM operands in fp32, tf32 or bf16 (float accumulation and weights)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))->capture_default_str();
  cmd->add_option("--x-val", s->x_val, "validation X latents (recall after every epoch)");
  cmd->add_option("--y-val", s->y_val, "validation Y latents");
  cmd->add_option("--checkpoint-every", s->checkpoint_every, "write a checkpoint every N epochs (and at the end)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_flag("--resume", s->resume,
                "continue from OUT/checkpoint.safetensors if present (same settings, --epochs included: the schedule depends on it)");
  cmd->add_flag("--quiet", s->quiet, "no progress output");
  cmd->callback([=] {
    if (!preset_name->empty()) {
      const auto p = fusemix_cli::preset_named(*preset_name);
      if (!*depth_x) s->depth_x = p.depth_x;
      if (!*depth_y) s->depth_y = p.depth_y;
      s->identity_y = s->identity_y || p.identity_y;
      if (!*epochs) s->train.epochs = p.epochs;
      // The SPEC's batch counts mixed pairs; halves mode mixes two rows into one pair.
      if (!*batch) s->train.batch = *mix == "halves" ? 2 * p.batch : p.batch;
      if (!*lr) s->train.lr = p.lr;
      if (!*wd) s->train.weight_decay = p.weight_decay;
    }
    s->train.mixup.mode = fusemix::parse_mix_mode(*mix);
    const auto d = fusemix_cli::load_data(*s);
    fusemix_cli::train(*s, d);
    if (!s->quiet) std::cout << "wrote " << (s->out / "adapters.safetensors").string() << '\n';
  });
}

void register_eval(CLI::App& app) {
  auto o = std::make_shared<eval_options>();
  auto* cmd = app.add_subcommand("eval", "Cross-modal retrieval (Recall@1/5/10 both ways) of a trained model");
  cmd->add_option("--model", o->model, "adapters.safetensors")->required();
  cmd->add_option("--x", o->x, "X (image) latents, N_x x D_x .npy")->required();
  cmd->add_option("--y", o->y, "Y (text) latents, N_y x D_y .npy")->required();
  cmd->add_option("--image-of-text", o->image_of_text, "int64 .npy: the image row of each text row (several captions per image)");
  cmd->add_flag("--json", o->json, "print one JSON object (percent)");
  cmd->callback([o] { run_eval(*o); });
}
