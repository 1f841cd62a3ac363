// SPDX-License-Identifier: Apache-2.0
// `fusemix search`: the top k gallery rows of each query, through a trained model.
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <fusemix/fusemix.hpp>

#include "commands.hpp"
#include "model_file.hpp"
#include "training.hpp"

namespace {

namespace fs = std::filesystem;

struct search_options {
  std::string model, query_side = "x", queries, gallery, out, device = "cpu";
  std::size_t k = 10;
};

/// `z` through `h` (the identity when the side has no adapter), in blocks of rows so that a
/// gallery of millions needs only one block's activations.
fusemix::matrix<float> embed(std::optional<fusemix::fusion_adapter<>>& h, const fusemix::io::matrix<float>& z) {
  if (!h) return z;
  constexpr Eigen::Index block = 8192;
  fusemix::matrix<float> out(z.rows(), static_cast<Eigen::Index>(h->out_dim()));
  for (Eigen::Index r = 0; r < z.rows(); r += block) {
    const Eigen::Index n = std::min(block, z.rows() - r);
    out.middleRows(r, n) = h->embed(z.middleRows(r, n));
  }
  return out;
}

void run_search(const search_options& o) {
  constexpr std::string_view where = "fusemix search";
  auto m = fusemix::io::load_model(o.model);
  const bool qx = o.query_side == "x";
  auto& hq = qx ? m.x : m.y;
  auto& hg = qx ? m.y : m.x;
  const auto zq = fusemix_cli::read_latents(where, "--queries", o.queries);
  const auto zg = fusemix_cli::read_latents(where, "--gallery", o.gallery);
  const auto width = [&](std::optional<fusemix::fusion_adapter<>>& h, std::optional<fusemix::fusion_adapter<>>& other,
                         std::string_view flag, const std::string& path, Eigen::Index cols, bool x_side) {
    const std::string_view prefix = x_side ? fusemix::io::x_prefix : fusemix::io::y_prefix;
    if (h)
      fusemix_cli::require_width(where, flag, path, cols, prefix, h->in_dim(), o.model);
    else if (static_cast<std::size_t>(cols) != other->out_dim())
      fusemix::throw_shape_error(where,
                                 fusemix::concat(flag, " ", path, ": ", o.model, " has no ", prefix,
                                                 " adapter, so the latent width must equal the shared width"),
                                 other->out_dim(), cols);
  };
  width(hq, hg, "--queries", o.queries, zq.cols(), qx);
  width(hg, hq, "--gallery", o.gallery, zg.cols(), !qx);
  if (o.k > static_cast<std::size_t>(zg.rows()))
    fusemix::throw_shape_error(where, fusemix::concat("--k must not exceed the gallery's rows (", o.gallery, ")"),
                               fusemix::concat("<= ", zg.rows()), o.k);
  const fusemix::matrix<float> sq = embed(hq, zq), sg = embed(hg, zg);
  const auto r = o.device == "cuda" ? fusemix_cli::search_cuda(sq, sg, o.k) : fusemix::top_k<float>(sq, sg, o.k);
  fs::create_directories(o.out);
  fusemix::io::write_npy(fs::path(o.out) / "indices.npy", r.indices);
  fusemix::io::write_npy(fs::path(o.out) / "scores.npy", r.scores);
  std::cout << "searched " << zq.rows() << " queries (side " << o.query_side << ") over " << zg.rows()
            << " gallery rows: top " << o.k << " in " << (fs::path(o.out) / "indices.npy").string() << " and scores.npy\n";
}

}  // namespace

void register_search(CLI::App& app) {
  auto o = std::make_shared<search_options>();
  auto* cmd = app.add_subcommand("search", "Exact top-k cross-modal search through a trained model");
  cmd->add_option("--model", o->model, "adapters.safetensors written by fusemix train (or PyTorch)")->required();
  cmd->add_option("--query-side", o->query_side, "the side the queries come from: x (vis_proj.) or y (text_proj.); "
                                                 "the gallery is the other side")
      ->check(CLI::IsMember({"x", "y"}))->capture_default_str();
  cmd->add_option("--queries", o->queries, "query latents, Q x in_dim .npy (or shards: a.npy,b.npy,...)")->required();
  cmd->add_option("--gallery", o->gallery, "gallery latents of the other side, G x in_dim .npy (or shards: a.npy,b.npy,...)")->required();
  cmd->add_option("--k", o->k, "results per query")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--device", o->device, "cpu, or cuda (the products and the selection on the GPU; k <= 1024)")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--out", o->out, "output directory: indices.npy (int64, Q x k, best first), scores.npy (float32 cosines)")
      ->required();
  cmd->callback([o] { run_search(*o); });
}
