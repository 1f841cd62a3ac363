// SPDX-License-Identifier: Apache-2.0
// `fusemix embed` and `fusemix info`: use a trained model file.
#include <iostream>
#include <memory>
#include <string>

#include <fusemix/fusemix.hpp>

#include "commands.hpp"
#include "model_file.hpp"

namespace {

struct embed_options {
  std::string model, side = "x", in, out;
  bool normalize = false;
};

void run_embed(const embed_options& o) {
  const auto side = o.side == "x" ? fusemix::io::side::x : fusemix::io::side::y;
  const std::string_view prefix = fusemix::io::prefix_of(side);
  constexpr const char* where = "fusemix embed";
  fusemix_cli::check_outputs(where, {{"--out", o.out}});
  auto adapter = fusemix::io::load_adapter(o.model, side);
  adapter.set_training(false);
  const fusemix_cli::latent_blocks z(where, "--in", o.in);
  fusemix_cli::require_width(where, "--in", o.in, static_cast<Eigen::Index>(z.cols()), prefix, adapter.in_dim(), o.model);
  // A block of rows at a time, in and out: memory is that of one block, however many rows. The
  // output appears whole on success; on an error (NaN in a later block) nothing is written.
  fusemix::io::npy_writer<float> out(o.out, z.rows(), adapter.out_dim(), where);
  z.for_each(fusemix_cli::embed_block_rows, [&](const fusemix::io::matrix<float>& block, std::size_t) {
    fusemix::io::matrix<float> s = adapter.forward(block);
    if (o.normalize) s = fusemix::normalize_rows(fusemix::latent_view<float>(s));  // a zero row stays zero
    out.append(s);
  });
  out.commit();
  std::cout << "embedded " << z.rows() << " rows: " << z.cols() << " -> " << adapter.out_dim() << " (" << o.out << ")\n";
}

void run_info(const std::string& model) {
  const auto f = fusemix::io::read_safetensors(model);
  for (const auto& [name, t] : f.tensors) {
    std::cout << name << " [";
    for (std::size_t i = 0; i < t.shape.size(); ++i) std::cout << (i ? ", " : "") << t.shape[i];
    std::cout << "]\n";
  }
  for (auto prefix : {fusemix::io::x_prefix, fusemix::io::y_prefix}) {
    if (fusemix::io::has_adapter(f.tensors, prefix)) {
      const auto s = fusemix::io::infer_adapter_shape(f.tensors, prefix, model);
      std::cout << prefix << ": in_dim " << s.in_dim << ", out_dim " << s.out_dim << ", depth " << s.depth
                << ", expansion " << s.expansion << ", " << s.parameter_count() << " parameters\n";
    } else {
      std::cout << prefix << ": none (identity side)\n";
    }
  }
  // The loss the model was trained with, known by the scalars it learned.
  const auto scalar = [&](const char* name) -> const float* {
    const auto it = f.tensors.find(name);
    return it != f.tensors.end() && it->second.data.size() == 1 ? &it->second.data[0] : nullptr;
  };
  if (const float* t = scalar("temp"))
    std::cout << "loss: contrastive (temp " << *t << ")\n";
  else if (const float *s = scalar("logit_scale"), *b = scalar("logit_bias"); s != nullptr && b != nullptr)
    std::cout << "loss: sigmoid (logit_scale " << *s << ", logit_bias " << *b << ")\n";
  else
    std::cout << "loss: none recorded\n";
}

}  // namespace

void register_embed(CLI::App& app) {
  auto o = std::make_shared<embed_options>();
  auto* cmd = app.add_subcommand("embed", "Map latents through one trained adapter into the shared space");
  cmd->add_option("--model", o->model, "adapters.safetensors written by fusemix train (or PyTorch)")->required();
  cmd->add_option("--side", o->side, "x (vis_proj.) or y (text_proj.)")->check(CLI::IsMember({"x", "y"}))->capture_default_str();
  cmd->add_option("--in", o->in, "latents, N x in_dim .npy (or shards: a.npy,b.npy,...)")->required();
  cmd->add_option("--out", o->out, "embeddings, N x out_dim .npy (float32)")->required();
  cmd->add_flag("--normalize", o->normalize, "L2-normalise each embedding");
  cmd->callback([o] { run_embed(*o); });
}

void register_info(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("info", "List the tensors of a model file and the adapters they form");
  cmd->add_option("model", *model, "a .safetensors file")->required();
  cmd->callback([model] { run_info(*model); });
}
