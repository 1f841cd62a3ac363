// SPDX-License-Identifier: Apache-2.0
/// @file
/// The subcommands of the `fusemix` program; each file adds one to the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

#include "training.hpp"  // interrupted

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
