// SPDX-License-Identifier: Apache-2.0
// `fusemix demo`: builds the paper's image-text adapters, runs a forward and backward pass on a
// batch of latents, and writes PyTorch-loadable weights. (Training on the bundled dataset replaces
// this once the trainer lands.)
#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include <fusemix/fusemix.hpp>

#include "commands.hpp"
#include "model_file.hpp"

namespace {

struct demo_options {
  std::size_t dim_x = 1536, dim_y = 1024, shared = 512, depth = 4, batch = 64;
  std::uint64_t seed = 0;
  std::string out = "fusemix-demo";
};

using clock_type = std::chrono::steady_clock;
double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

void run_demo(const demo_options& o) {
  using matrix = fusemix::io::matrix<float>;
  fusemix::fusion_adapter<> hx({.in_dim = o.dim_x, .out_dim = o.shared, .depth = o.depth}, {.seed = o.seed});
  fusemix::fusion_adapter<> hy({.in_dim = o.dim_y, .out_dim = o.shared, .depth = o.depth}, {.seed = o.seed + 1});
  std::cout << "image adapter: " << o.dim_x << " -> " << o.shared << ", depth " << o.depth << ", " << hx.size()
            << " parameters\n"
            << "text adapter:  " << o.dim_y << " -> " << o.shared << ", depth " << o.depth << ", " << hy.size()
            << " parameters\n";

  fusemix::philox_engine rng(o.seed);
  auto latents = [&](std::size_t d) {
    matrix z(static_cast<Eigen::Index>(o.batch), static_cast<Eigen::Index>(d));
    for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = static_cast<float>(2 * rng.uniform() - 1);
    return z;
  };
  const matrix zx = latents(o.dim_x), zy = latents(o.dim_y);

  hx.set_training(true), hy.set_training(true);
  auto t = clock_type::now();
  const matrix sx = hx.forward(zx);
  const matrix sy = hy.forward(zy);
  const double forward_ms = ms_since(t);
  t = clock_type::now();
  hx.backward(matrix::Ones(sx.rows(), sx.cols()));
  hy.backward(matrix::Ones(sy.rows(), sy.cols()));
  const double backward_ms = ms_since(t);
  std::cout << "batch " << o.batch << ": forward " << forward_ms << " ms, backward " << backward_ms
            << " ms (training mode, dropout 0.6)\n";

  std::filesystem::create_directories(o.out);
  const std::string file = o.out + "/adapters.safetensors";
  fusemix::io::tensor_map tensors;
  fusemix::io::store_parameters(hx, fusemix::io::x_prefix, tensors);
  fusemix::io::store_parameters(hy, fusemix::io::y_prefix, tensors);
  tensors["temp"] = {{}, {0.07f}};
  fusemix::io::write_safetensors(file, tensors, {{"format", "pt"}});
  // Read it back the way `fusemix embed` does and check the embeddings agree bit for bit.
  auto back = fusemix_cli::load_adapter(file, fusemix::io::x_prefix);
  hx.set_training(false);
  const bool same = back.forward(zx) == hx.forward(zx);
  std::cout << "wrote " << file << " (" << tensors.size() << " tensors, PyTorch names); reloaded: "
            << (same ? "identical embeddings" : "MISMATCH") << '\n';
  if (!same) throw std::runtime_error("fusemix demo: reloaded weights give different embeddings");
}

}  // namespace

void register_demo(CLI::App& app) {
  auto o = std::make_shared<demo_options>();
  auto* cmd = app.add_subcommand("demo", "Build the paper's adapters, run them, write PyTorch-loadable weights");
  cmd->add_option("--dim-x", o->dim_x, "image latent width")->capture_default_str();
  cmd->add_option("--dim-y", o->dim_y, "text latent width")->capture_default_str();
  cmd->add_option("--shared-dim", o->shared, "shared space width")->capture_default_str();
  cmd->add_option("--depth", o->depth, "blocks per adapter")->capture_default_str();
  cmd->add_option("--batch", o->batch, "rows per batch")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->seed, "seed of every draw")->capture_default_str();
  cmd->add_option("--out", o->out, "output directory")->capture_default_str();
  cmd->callback([o] { run_demo(*o); });
}
