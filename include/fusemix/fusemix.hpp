// SPDX-License-Identifier: Apache-2.0
/// @file
/// Umbrella header: every CPU header of the library (never the CUDA ones, which need nvcc and
/// are included as <fusemix/backend/cuda.cuh>).
#pragma once

#include <fusemix/version.hpp>
#include <fusemix/config.hpp>
#include <fusemix/error.hpp>
#include <fusemix/concepts.hpp>
#include <fusemix/random.hpp>
#include <fusemix/backend/cpu.hpp>
#include <fusemix/layers.hpp>
#include <fusemix/adapter.hpp>
#include <fusemix/mixup.hpp>
#include <fusemix/loss.hpp>
#include <fusemix/optim.hpp>
#include <fusemix/trainer.hpp>
#include <fusemix/retrieval.hpp>
#include <fusemix/dpp.hpp>
#include <fusemix/io/npy.hpp>
#include <fusemix/io/safetensors.hpp>
#include <fusemix/io/weights.hpp>
