// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend: Eigen (and OpenBLAS where linked) behind the `Backend` concept, composed of
/// one class per group of primitives, each in its own file beside this one.
#pragma once

#include <fusemix/backend/concepts.hpp>
#include <fusemix/backend/cpu/activation.hpp>
#include <fusemix/backend/cpu/gemm.hpp>
#include <fusemix/backend/cpu/kdpp.hpp>
#include <fusemix/backend/cpu/layer_norm.hpp>
#include <fusemix/backend/cpu/loss.hpp>
#include <fusemix/backend/cpu/optim.hpp>
#include <fusemix/backend/cpu/rows.hpp>
#include <fusemix/backend/cpu/search.hpp>
#include <fusemix/backend/cpu/storage.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix {
namespace cpu {

/// The CPU backend over Eigen: dense row-major matrices, one sample per row.
///
/// Layers, adapters, losses and the trainer call only the primitives of `fusemix::Backend`, so
/// the CUDA backend supplies the same members and the algorithms are not written twice. Every
/// primitive overwrites its outputs (no accumulation) and never allocates unless an output must
/// change shape. Some groups keep small scratch rows (sized on first use), so one object must
/// not be used by two threads at once; copies are independent.
///
/// @tparam T `float` for training, `double` for gradient checks.
template <Scalar T>
class backend : public storage<T>,
                public dense_ops<T>,
                public row_ops<T>,
                public layer_norm_ops<T>,
                public activation_ops<T>,
                public loss_ops<T>,
                public optimizer_ops<T>,
                public kdpp_ops<T>,
                public search_ops<T> {};

static_assert(Backend<backend<float>>);
static_assert(Backend<backend<double>>);

}  // namespace cpu

/// The CPU matrix: dense, row-major, one sample per row (what `.npy` files hold).
template <Scalar T = float>
using matrix = cpu::row_matrix<T>;

}  // namespace fusemix
