// SPDX-License-Identifier: Apache-2.0
// `fusemix select`: a diverse subset by greedy k-DPP (or a uniform one), optionally applied to
// a paired dataset.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fusemix/select/kdpp.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/io/npy.hpp>

#include "commands.hpp"
#include "model_file.hpp"
#include "training.hpp"

namespace {

constexpr std::string_view where = "fusemix select";

struct select_options {
  std::string in, x, y, out, out_x, out_y, kernel = "poly", device = "cpu";
  std::size_t k = 0, window = 0;
  unsigned degree = 2;
  double offset = 1.0, gamma = 0.0, threshold = fusemix::kdpp_options{}.relative_threshold;
  bool normalize = false, uniform = false, json = false;
  std::uint64_t seed = 0;
};

/// Refuses a leading minus sign, which CLI11 would wrap around for an unsigned option.
const CLI::Validator not_negative(
    [](const std::string& value) {
      const auto first = value.find_first_not_of(" \t");
      return first != std::string::npos && value[first] == '-' ? std::string("must not be negative") : std::string{};
    },
    ">= 0");

/// Scales each row to unit length; zero rows stay zero.
void normalize_rows(fusemix::io::matrix<float>& z) {
  for (Eigen::Index i = 0; i < z.rows(); ++i) {
    double sq = 0;
    for (Eigen::Index c = 0; c < z.cols(); ++c) sq += double(z(i, c)) * double(z(i, c));
    if (sq > 0)
      for (Eigen::Index c = 0; c < z.cols(); ++c) z(i, c) = static_cast<float>(z(i, c) / std::sqrt(sq));
  }
}

/// The rows `picks` of the matrix in `path`, in selection order; it must have `n` rows.
fusemix::io::matrix<float> selected_rows(const std::string& path, std::string_view flag, std::size_t n,
                                         const std::vector<std::size_t>& picks) {
  const auto m = fusemix::io::read_npy<float>(path);
  if (static_cast<std::size_t>(m.rows()) != n)
    fusemix::throw_shape_error(where, fusemix::concat(flag, " must have one row per item selected from"),
                                       fusemix::concat(n, " rows"), fusemix::concat(m.rows(), " rows"));
  fusemix::io::matrix<float> out(static_cast<Eigen::Index>(picks.size()), m.cols());
  for (std::size_t r = 0; r < picks.size(); ++r) out.row(static_cast<Eigen::Index>(r)) = m.row(static_cast<Eigen::Index>(picks[r]));
  return out;
}

template <class Kernel>
void run_with(const select_options& o, const fusemix::io::matrix<float>& z, const Kernel& kernel) {
  const fusemix::latent_view<float> v(z);
  const auto start = std::chrono::steady_clock::now();
  fusemix::selection sel;
  if (o.uniform) {
    sel.picks = fusemix::uniform_subset(v.rows(), o.k, o.seed);
  } else {
    const fusemix::kdpp_options ko{.relative_threshold = o.threshold, .window = o.window};
    sel = o.device == "cuda" ? fusemix_cli::select_cuda(v, o.k, kernel, ko) : fusemix::greedy_kdpp(v, o.k, kernel, ko);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // log det(L_S): the greedy's gains add up to it; a uniform or windowed subset is scored afresh
  const double log_det = o.uniform || o.window != 0 ? fusemix::subset_log_det(v, sel.picks, kernel) : sel.log_det();

  const std::vector<std::int64_t> picks(sel.picks.begin(), sel.picks.end());
  // --x and --y are read and checked before anything is written: a refused run leaves no output.
  fusemix::io::matrix<float> x_rows, y_rows;
  if (!o.out_x.empty()) x_rows = selected_rows(o.x, "--x", v.rows(), sel.picks);
  if (!o.out_y.empty()) y_rows = selected_rows(o.y, "--y", v.rows(), sel.picks);
  fusemix::io::write_npy(o.out, std::span<const std::int64_t>(picks));
  if (!o.out_x.empty()) fusemix::io::write_npy(o.out_x, x_rows);
  if (!o.out_y.empty()) fusemix::io::write_npy(o.out_y, y_rows);

  if (o.json) {
    nlohmann::ordered_json j;
    j["picks"] = sel.picks.size();
    j["stop"] = std::string(fusemix::to_string(sel.stop));
    j["seconds"] = seconds;
    j["log_det"] = log_det;  // -inf (a singular subset) is written as null
    std::cout << j.dump() << '\n';
  } else {
    std::cout << (o.uniform ? "drew " : "selected ") << sel.picks.size() << " of " << v.rows() << " items ("
              << fusemix::to_string(sel.stop) << ") in " << seconds << " s, log det " << log_det << " -> "
              << o.out << '\n';
  }
}

void run_select(select_options o) {
  if (!o.out_x.empty() && o.x.empty())
    throw fusemix::argument_error("fusemix select: --out-x needs --x (the matrix to take rows from)");
  if (!o.out_y.empty() && o.y.empty())
    throw fusemix::argument_error("fusemix select: --out-y needs --y (the matrix to take rows from)");
  if (o.in.empty()) o.in = o.x;
  if (o.in.empty()) throw fusemix::argument_error("fusemix select: --in is required (or --x to select on X)");

  auto z = fusemix_cli::read_latents(where, "--in", o.in);  // NaN/Inf refused, --uniform included
  if (o.normalize) normalize_rows(z);
  if (o.kernel == "linear") {
    run_with(o, z, fusemix::linear_kernel{});
  } else if (o.kernel == "cosine") {
    run_with(o, z, fusemix::cosine_kernel{});
  } else if (o.kernel == "rbf") {
    const double gamma = o.gamma > 0 ? o.gamma : 1.0 / static_cast<double>(z.cols());
    run_with(o, z, fusemix::rbf_kernel{.gamma = gamma});
  } else {
    run_with(o, z, fusemix::polynomial_kernel{.offset = o.offset, .degree = o.degree});
  }
}

}  // namespace

void register_select(CLI::App& app) {
  auto o = std::make_shared<select_options>();
  auto* cmd = app.add_subcommand("select", "Pick a diverse subset of latents by greedy k-DPP (or a uniform one)");
  cmd->add_option("--in", o->in, "latents to select on, N x D .npy (default: --x)");
  cmd->add_option("--k", o->k, "how many items to pick")->required()->check(not_negative);
  cmd->add_option("--kernel", o->kernel, "similarity: (a.b + offset)^degree, linear, cosine, or exp(-gamma |a-b|^2)")
      ->check(CLI::IsMember({"poly", "linear", "cosine", "rbf"}))
      ->capture_default_str();
  cmd->add_option("--degree", o->degree, "poly: the exponent")->check(not_negative)->capture_default_str();
  cmd->add_option("--offset", o->offset, "poly: the constant added to a.b")->capture_default_str();
  cmd->add_option("--gamma", o->gamma, "rbf: the width (default 1/D)")->check(CLI::PositiveNumber);
  cmd->add_flag("--normalize", o->normalize, "L2-normalise the latents first (the paper's setting, with poly)");
  cmd->add_option("--threshold", o->threshold,
                  "stop when the best residual is at most this times the largest diagonal entry")
      ->check(not_negative)
      ->capture_default_str();
  cmd->add_option("--window", o->window, "only the last W picks must be diverse (0: all)")
      ->check(not_negative)
      ->capture_default_str();
  cmd->add_option("--device", o->device, "cpu, or cuda (the GPU selector; window 0 only)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--uniform", o->uniform, "draw k items uniformly at random instead (the baseline)");
  cmd->add_option("--seed", o->seed, "--uniform: the random seed")->check(not_negative)->capture_default_str();
  cmd->add_option("--out", o->out, "picks, int64 .npy in selection order")->required();
  cmd->add_option("--x", o->x, "paired dataset: X latents, N x D_x .npy");
  cmd->add_option("--y", o->y, "paired dataset: Y latents, N x D_y .npy");
  cmd->add_option("--out-x", o->out_x, "write the selected rows of --x here");
  cmd->add_option("--out-y", o->out_y, "write the selected rows of --y here");
  cmd->add_flag("--json", o->json, R"(print {"picks","stop","seconds","log_det"} as JSON)");
  cmd->callback([o] { run_select(*o); });
}
