// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend (`fusemix::cpu::backend<T>`), the library's default backend, and the paper's
/// image-text adapters on it.
#pragma once

#include <fusemix/backend/cpu/backend.hpp>
#include <fusemix/nn/adapter.hpp>

namespace fusemix {

/// The image side of the paper's image-text setting.
using image_adapter = fusion_adapter<dinov2_vitg14>;
/// The text side of the paper's image-text setting.
using text_adapter = fusion_adapter<bge_large>;

}  // namespace fusemix
