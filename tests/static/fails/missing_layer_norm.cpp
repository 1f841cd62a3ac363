// expect: required for the satisfaction of .*LayerNormOps<
// SPDX-License-Identifier: Apache-2.0
// Must not compile: a backend without the LayerNorm group is not a Backend, and the compiler's
// message names the group (ctest static.missing_layer_norm builds this file and reads that message).
#include <fusemix/backend/cpu.hpp>

namespace fm = fusemix;

// Every group of the CPU backend but LayerNorm.
struct no_layer_norm : fm::cpu::storage<float>,
                       fm::cpu::dense_ops<float>,
                       fm::cpu::row_ops<float>,
                       fm::cpu::activation_ops<float>,
                       fm::cpu::loss_ops<float>,
                       fm::cpu::optimizer_ops<float>,
                       fm::cpu::kdpp_ops<float>,
                       fm::cpu::search_ops<float> {};

static_assert(fm::Backend<no_layer_norm>);
