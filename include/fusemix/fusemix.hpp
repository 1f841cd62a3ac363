// SPDX-License-Identifier: Apache-2.0
/// @file
/// Umbrella header: every CPU header of the library (never the CUDA ones, which need their own
/// target; see <fusemix/backend/cuda.cuh>).
#pragma once

#include <fusemix/core/concepts.hpp>
#include <fusemix/core/config.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/core/random.hpp>
#include <fusemix/core/version.hpp>
#include <fusemix/backend/concepts.hpp>
#include <fusemix/backend/cpu.hpp>
#include <fusemix/nn/concepts.hpp>
#include <fusemix/nn/parameter.hpp>
#include <fusemix/nn/linear.hpp>
#include <fusemix/nn/layer_norm.hpp>
#include <fusemix/nn/activation.hpp>
#include <fusemix/nn/block.hpp>
#include <fusemix/nn/adapter.hpp>
#include <fusemix/nn/identity_adapter.hpp>
#include <fusemix/loss/concepts.hpp>
#include <fusemix/loss/contrastive.hpp>
#include <fusemix/loss/normalized_pair.hpp>
#include <fusemix/loss/sigmoid.hpp>
#include <fusemix/optim/adamw.hpp>
#include <fusemix/optim/schedule.hpp>
#include <fusemix/train/mixup.hpp>
#include <fusemix/train/recipe.hpp>
#include <fusemix/train/split.hpp>
#include <fusemix/train/tune.hpp>
#include <fusemix/train/checkpoint.hpp>
#include <fusemix/train/trainer.hpp>
#include <fusemix/dist/communicator.hpp>
#include <fusemix/eval/retrieval.hpp>
#include <fusemix/eval/search.hpp>
#include <fusemix/select/kernels.hpp>
#include <fusemix/select/kdpp.hpp>
#include <fusemix/select/kdpp_sharded.hpp>
#include <fusemix/io/npy.hpp>
#include <fusemix/io/mapped_latents.hpp>
#include <fusemix/io/safetensors.hpp>
#include <fusemix/io/weights.hpp>
#include <fusemix/io/model.hpp>
