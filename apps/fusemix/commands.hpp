// SPDX-License-Identifier: Apache-2.0
/// @file
/// The subcommands of the `fusemix` program; each file adds one to the CLI11 app.
#pragma once

#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>

/// A run that stopped cleanly on SIGINT or SIGTERM after saving its state; `main` prints the
/// message and exits with 128 + the signal number, as a shell reports a process the signal ended.
class interrupted : public std::runtime_error {
 public:
  interrupted(int signal, const std::string& what) : std::runtime_error(what), signal_(signal) {}
  [[nodiscard]] int signal() const noexcept { return signal_; }

 private:
  int signal_;
};

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
