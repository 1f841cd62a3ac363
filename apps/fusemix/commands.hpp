// SPDX-License-Identifier: Apache-2.0
/// @file
/// The subcommands of the `fusemix` program; each file adds one to the CLI11 app.
#pragma once

#include <cmath>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "training.hpp"  // interrupted

namespace fusemix_cli {

/// A number check for a flag. CLI11's own print their bound as a 309-digit double ("Value 0 not
/// in range 0.000000 to 1797..."), let NaN through a `Range` and let a minus sign wrap around in
/// an unsigned option; these say what the flag takes and refuse NaN, infinity and out-of-range
/// values alike. A value that is no number at all is left to the option's own conversion.
inline CLI::Validator number_check(std::string shown, bool (*in_range)(double), std::string expected) {
  return CLI::Validator(
      [in_range, expected](const std::string& value) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(value.c_str(), &end);
        if (end == value.c_str()) return {};
        return std::isfinite(v) && in_range(v) ? std::string() : "out of range (expected " + expected + ", got " + value + ")";
      },
      std::move(shown));
}
inline const CLI::Validator positive = number_check("> 0", [](double v) { return v > 0; }, "a number > 0");
inline const CLI::Validator non_negative = number_check(">= 0", [](double v) { return v >= 0; }, "a number >= 0");
inline const CLI::Validator finite = number_check("finite", [](double) { return true; }, "a finite number");
inline const CLI::Validator probability =
    number_check("in [0, 1]", [](double v) { return v >= 0 && v <= 1; }, "a number from 0 to 1");

}  // namespace fusemix_cli

/// `fusemix demo`: the main job, training and evaluating on the bundled dataset.
void register_demo(CLI::App& app);
/// `fusemix train`: FuseMix training from two .npy files of latents.
void register_train(CLI::App& app);
/// `fusemix eval`: retrieval figures of a trained model.
void register_eval(CLI::App& app);
/// `fusemix embed`: maps latents through one side of a trained model.
void register_embed(CLI::App& app);
/// `fusemix search`: exact top-k search of one side's queries in the other side's gallery.
void register_search(CLI::App& app);
/// `fusemix info`: lists the tensors of a model file and the adapter shapes they imply.
void register_info(CLI::App& app);
/// `fusemix select`: diverse subsets by greedy k-DPP.
void register_select(CLI::App& app);
/// `fusemix bench train`: training steps per second against the machine's GEMM rate.
void register_bench(CLI::App& app);
