// SPDX-License-Identifier: Apache-2.0
// `fusemix select`: a diverse subset by greedy k-DPP (or a uniform one), optionally applied to
// a paired dataset.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fusemix/select/kdpp.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/io/mapped_latents.hpp>
#include <fusemix/io/npy.hpp>

#include "commands.hpp"
#include "model_file.hpp"
#include "training.hpp"

namespace {

constexpr std::string_view where = "fusemix select";

struct select_options {
  fusemix_cli::select_settings s;
  std::string in, x, y, out, out_x, out_y;
  bool json = false;
};

/// The rows `picks` of the latents in `value` (a file or shards), in selection order; they must
/// have `n` rows. Only the picked rows are read.
fusemix::io::matrix<float> selected_rows(const std::string& value, std::string_view flag, std::size_t n,
                                         const std::vector<std::size_t>& picks) {
  const fusemix::io::mapped_latents m(fusemix_cli::latent_files(where, flag, value));
  if (m.rows() != n)
    fusemix::throw_shape_error(where, fusemix::concat(flag, " must have one row per item selected from"),
                                       fusemix::concat(n, " rows"), fusemix::concat(m.rows(), " rows"));
  fusemix::io::matrix<float> out(static_cast<Eigen::Index>(picks.size()), static_cast<Eigen::Index>(m.cols()));
  m.gather(std::span<const std::size_t>(picks), std::span<float>(out.data(), static_cast<std::size_t>(out.size())));
  return out;
}

// Writes and prints the result of a selection from `items` items (rank 0 of a job alone).
void report(const select_options& o, const fusemix_cli::select_result& result, std::size_t items) {
  const auto& [sel, log_det, seconds] = result;
  const auto& group = fusemix_cli::process_group();
  // --x and --y are read and checked on every rank (a refused run fails everywhere alike), and
  // before anything is written: a refused run leaves no output.
  fusemix::io::matrix<float> x_rows, y_rows;
  if (!o.out_x.empty()) x_rows = selected_rows(o.x, "--x", items, sel.picks);
  if (!o.out_y.empty()) y_rows = selected_rows(o.y, "--y", items, sel.picks);
  if (group.rank() != 0) return;
  const std::vector<std::int64_t> picks(sel.picks.begin(), sel.picks.end());
  fusemix::io::write_npy(o.out, std::span<const std::int64_t>(picks));
  if (!o.out_x.empty()) fusemix::io::write_npy(o.out_x, x_rows);
  if (!o.out_y.empty()) fusemix::io::write_npy(o.out_y, y_rows);

  if (o.json) {
    nlohmann::ordered_json j;
    j["picks"] = sel.picks.size();
    j["stop"] = std::string(fusemix::to_string(sel.stop));
    j["seconds"] = seconds;
    j["log_det"] = log_det;  // -inf (a singular subset) is written as null
    j["world_size"] = group.size();
    std::cout << j.dump() << '\n';
  } else {
    std::cout << (o.s.uniform ? "drew " : "selected ") << sel.picks.size() << " of " << items << " items ("
              << fusemix::to_string(sel.stop) << ") in " << seconds << " s, log det " << log_det << " -> "
              << o.out << (group.distributed() ? fusemix::concat(" (", group.size(), " processes)") : std::string())
              << '\n';
  }
}

void run_with(const select_options& o, const fusemix::latent_view<float>& v) {
  report(o, fusemix_cli::select(o.s, v), v.rows());
}

// Under mpirun: each rank reads its rows of the files only (its shard), and the ranks select
// together (fusemix::greedy_kdpp with a communicator); rank 0 writes.
void run_sharded(const select_options& o, const std::vector<std::filesystem::path>& files) {
  const fusemix::io::mapped_latents m(files);
  const auto& group = fusemix_cli::process_group();
  const auto mine = fusemix::dist::rank_rows(m.rows(), group.rank(), group.size());
  fusemix::io::matrix<float> shard(static_cast<Eigen::Index>(mine.count), static_cast<Eigen::Index>(m.cols()));
  std::vector<std::size_t> rows(mine.count);
  std::iota(rows.begin(), rows.end(), mine.first);
  m.gather(std::span<const std::size_t>(rows), std::span<float>(shard.data(), static_cast<std::size_t>(shard.size())));
  // NaN/Inf are refused, --uniform included, as in one process. Each rank looks in its own rows and
  // the ranks agree whether any found one before going on (a uniform draw exchanges nothing else
  // before rank 0 writes): the rank that did ends the job with one line naming the global row,
  // and the others wait at a barrier to be ended with it.
  std::optional<fusemix::numeric_error> bad;
  try {
    fusemix_cli::require_finite(where, fusemix::concat("--in ", o.in), fusemix::latent_view<float>(shard), mine.first);
  } catch (const fusemix::numeric_error& e) {
    bad = e;
  }
  double ranks_bad = bad ? 1.0 : 0.0;
  group.all_reduce_sum(std::span<double>(&ranks_bad, 1));
  if (bad) throw *bad;
  if (ranks_bad > 0) {
    group.barrier();
    throw fusemix::numeric_error("fusemix select: --in " + o.in + ": another rank's latents are not finite");
  }
  auto rows_of = [&](const std::vector<std::size_t>& picks) {
    fusemix::io::matrix<float> out(static_cast<Eigen::Index>(picks.size()), static_cast<Eigen::Index>(m.cols()));
    m.gather(std::span<const std::size_t>(picks), std::span<float>(out.data(), static_cast<std::size_t>(out.size())));
    return out;
  };
  report(o, fusemix_cli::select_sharded(o.s, fusemix::latent_view<float>(shard), m.rows(), rows_of), m.rows());
}

void run_select(select_options o) {
  if (!o.out_x.empty() && o.x.empty())
    throw fusemix::argument_error("fusemix select: --out-x needs --x (the matrix to take rows from)");
  if (!o.out_y.empty() && o.y.empty())
    throw fusemix::argument_error("fusemix select: --out-y needs --y (the matrix to take rows from)");
  if (o.in.empty()) o.in = o.x;
  if (o.in.empty()) throw fusemix::argument_error("fusemix select: --in is required (or --x to select on X)");
  // (Rank 0 alone writes; a refusal there ends every rank.)
  if (fusemix_cli::process_group().rank() == 0)
    fusemix_cli::check_outputs(where, {{"--out", o.out}, {"--out-x", o.out_x}, {"--out-y", o.out_y}});

  // One float32 file is selected on in place (its pages stay the page cache's); anything else
  // (float16/float64, shards, a pipe) is read into float32 first: the selector visits every row at
  // every pick. NaN/Inf are refused either way, --uniform included.
  const std::vector<std::filesystem::path> files = fusemix_cli::latent_files(where, "--in", o.in);
  if (fusemix_cli::process_group().distributed()) {
    run_sharded(o, files);
    return;
  }
  if (files.size() == 1 && std::filesystem::is_regular_file(files.front())) {
    const fusemix::io::mapped_latents m(files.front());
    if (const auto v = m.float_view()) {
      fusemix_cli::require_finite(where, fusemix::concat("--in ", o.in), *v);
      run_with(o, *v);
      return;
    }
  }
  const auto z = fusemix_cli::read_latents(where, "--in", o.in);
  run_with(o, fusemix::latent_view<float>(z));
}

}  // namespace

void register_select(CLI::App& app) {
  auto o = std::make_shared<select_options>();
  auto* cmd = app.add_subcommand("select", "Pick a diverse subset of latents by greedy k-DPP (or a uniform one)");
  cmd->add_option("--in", o->in, "latents to select on, N x D .npy (default: --x) (or shards: a.npy,b.npy,...)");
  cmd->add_option("--k", o->s.k, "how many items to pick")->required()->check(fusemix_cli::positive);
  cmd->add_option("--kernel", o->s.kernel, "similarity: (a.b + offset)^degree, linear, cosine, or exp(-gamma |a-b|^2)")
      ->check(CLI::IsMember({"poly", "linear", "cosine", "rbf"}))
      ->capture_default_str();
  cmd->add_option("--degree", o->s.degree, "poly: the exponent")->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--offset", o->s.offset, "poly: the constant added to a.b")->check(fusemix_cli::finite)->capture_default_str();
  cmd->add_option("--gamma", o->s.gamma, "rbf: the width (default 1/D)")->check(fusemix_cli::positive);
  cmd->add_flag("--normalize", o->s.normalize, "L2-normalise the latents first (the paper's setting, with poly)");
  cmd->add_option("--threshold", o->s.threshold,
                  "stop when the best residual is at most this times the largest diagonal entry")
      ->check(fusemix_cli::non_negative)
      ->capture_default_str();
  cmd->add_option("--window", o->s.window, "only the last W picks must be diverse (0: all)")
      ->check(fusemix_cli::non_negative)
      ->capture_default_str();
  cmd->add_option("--threads", o->s.threads,
                  "CPU threads (0: the libraries' default, all cores); the picks do not depend on it")
      ->check(fusemix_cli::non_negative)
      ->capture_default_str();
  cmd->add_option("--device", o->s.device, "cpu, or cuda (the GPU selector; window 0 only)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--uniform", o->s.uniform, "draw k items uniformly at random instead (the baseline)");
  cmd->add_option("--seed", o->s.seed, "--uniform: the random seed")->check(fusemix_cli::non_negative)->capture_default_str();
  cmd->add_option("--out", o->out, "picks, int64 .npy in selection order")->required();
  cmd->add_option("--x", o->x, "paired dataset: X latents, N x D_x .npy (or shards: a.npy,b.npy,...)");
  cmd->add_option("--y", o->y, "paired dataset: Y latents, N x D_y .npy (or shards: a.npy,b.npy,...)");
  cmd->add_option("--out-x", o->out_x, "write the selected rows of --x here");
  cmd->add_option("--out-y", o->out_y, "write the selected rows of --y here");
  cmd->add_flag("--json", o->json, R"(print {"picks","stop","seconds","log_det"} as JSON)");
  cmd->callback([o] { run_select(*o); });
}
