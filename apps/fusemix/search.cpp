// SPDX-License-Identifier: Apache-2.0
// `fusemix search`: the top k gallery rows of each query, through a trained model.
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <unistd.h>

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

/// The rows of `z` through `h` (the identity when the side has no adapter), read and embedded a
/// block at a time: only the embeddings are held.
fusemix::matrix<float> embed_all(std::optional<fusemix::fusion_adapter<>>& h, const fusemix_cli::latent_blocks& z) {
  const std::size_t width = h ? h->out_dim() : z.cols();
  fusemix::matrix<float> out(static_cast<Eigen::Index>(z.rows()), static_cast<Eigen::Index>(width));
  z.for_each(fusemix_cli::embed_block_rows, [&](const fusemix::io::matrix<float>& block, std::size_t first) {
    if (h)
      out.middleRows(static_cast<Eigen::Index>(first), block.rows()) = h->embed(block);
    else
      out.middleRows(static_cast<Eigen::Index>(first), block.rows()) = block;
  });
  return out;
}

void run_search(const search_options& o) {
  constexpr std::string_view where = "fusemix search";
  // The output is checked before the work and made after it, so a refused search leaves nothing.
  // (The error-code forms: a directory this process may not search is a refusal, not a failure.)
  const fs::path out(o.out);
  std::error_code ec;
  if (const fs::file_status st = fs::status(out, ec); fs::exists(st)) {
    if (!fs::is_directory(st))
      fusemix::throw_expected<fusemix::argument_error>(where, "--out is the output directory", "a directory",
                                                       fusemix::concat("the file ", o.out));
    fusemix_cli::check_outputs(where, {{"--out", out / "indices.npy"}, {"--out", out / "scores.npy"}});
  } else {
    fs::path up = fs::absolute(out, ec).parent_path();
    while (!up.empty() && up != up.root_path() && !fs::exists(up, ec)) up = up.parent_path();
    if (!fs::is_directory(up, ec) || ::access(up.c_str(), W_OK | X_OK) != 0)
      fusemix::throw_io_error(where, o.out, fusemix::concat("cannot create the output directory (", up.string(),
                                                            " is not a directory this process can write in)"));
  }
  auto m = fusemix::io::load_model(o.model);
  const bool qx = o.query_side == "x";
  auto& hq = qx ? m.x : m.y;
  auto& hg = qx ? m.y : m.x;
  const fusemix_cli::latent_blocks zq(where, "--queries", o.queries), zg(where, "--gallery", o.gallery);
  const auto width = [&](std::optional<fusemix::fusion_adapter<>>& h, std::optional<fusemix::fusion_adapter<>>& other,
                         std::string_view flag, const std::string& path, std::size_t cols, bool x_side) {
    const std::string_view prefix = x_side ? fusemix::io::x_prefix : fusemix::io::y_prefix;
    if (h)
      fusemix_cli::require_width(where, flag, path, static_cast<Eigen::Index>(cols), prefix, h->in_dim(), o.model);
    else if (cols != other->out_dim())
      fusemix::throw_shape_error(where,
                                 fusemix::concat(flag, " ", path, ": ", o.model, " has no ", prefix,
                                                 " adapter, so the latent width must equal the shared width"),
                                 other->out_dim(), cols);
  };
  width(hq, hg, "--queries", o.queries, zq.cols(), qx);
  width(hg, hq, "--gallery", o.gallery, zg.cols(), !qx);
  if (o.k > zg.rows())
    fusemix::throw_shape_error(where, fusemix::concat("--k must not exceed the gallery's rows (", o.gallery, ")"),
                               fusemix::concat("<= ", zg.rows()), o.k);
  const fusemix::matrix<float> sq = embed_all(hq, zq);
  // The gallery is read, embedded and searched a block at a time: a gallery of millions of rows
  // needs one block of latents and embeddings, never the whole.
  fusemix::io::matrix<float> raw;
  fusemix::matrix<float> embedded;
  const fusemix_cli::gallery_blocks gallery = [&](std::size_t first, std::size_t rows) {
    zg.read(first, rows, raw);
    if (!hg) return fusemix::latent_view<float>(raw);
    embedded = hg->embed(raw);
    return fusemix::latent_view<float>(embedded);
  };
  const auto r = o.device == "cuda" ? fusemix_cli::search_cuda(sq, zg.rows(), gallery, o.k)
                                    : fusemix::top_k_by_blocks(fusemix::cpu::backend<float>{}, sq, zg.rows(), gallery, o.k);
  fs::create_directories(out, ec);
  if (ec) fusemix::throw_io_error(where, o.out, fusemix::concat("cannot create the output directory: ", ec.message()));
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
  cmd->add_option("--k", o->k, "results per query")->check(fusemix_cli::positive)->capture_default_str();
  cmd->add_option("--device", o->device, "cpu, or cuda (the products and the selection on the GPU; k <= 1024)")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--out", o->out, "output directory: indices.npy (int64, Q x k, best first), scores.npy (float32 cosines)")
      ->required();
  cmd->callback([o] { run_search(*o); });
}
