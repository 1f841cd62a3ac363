// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend: the primitives of `fusemix::Backend` on the memory of a CUDA system, composed
/// of one class per group of primitives, each in its own file beside this one (the same files as
/// the CPU backend's); each primitive is a launch of a functor from backend/cuda/kernels/ or a
/// GEMM (backend/cuda/gemm.hpp).
///
/// Layers, adapters, the losses and the trainer are the library's templates instantiated with
/// `cuda::backend<float>`; nothing of the method is written twice. On a GPU the GEMMs are cuBLAS
/// calls (fp32, or TF32 / bf16 tensor-core products with float accumulation, `gemm_precision`),
/// the elementwise passes are Thrust kernels, the row-wise ones (LayerNorm, row normalisation,
/// the losses) a thread block per row, and bias gradients cuBLAS GEMVs. On the host system the
/// same functors run in host loops and the GEMMs are the CPU backend's (include
/// <fusemix/backend/cuda/host_gemm.hpp> too).
#pragma once

#include <fusemix/backend/concepts.hpp>
#include <fusemix/backend/cuda/activation.hpp>
#include <fusemix/backend/cuda/gemm.hpp>
#include <fusemix/backend/cuda/kdpp.hpp>
#include <fusemix/backend/cuda/layer_norm.hpp>
#include <fusemix/backend/cuda/loss.hpp>
#include <fusemix/backend/cuda/optim.hpp>
#include <fusemix/backend/cuda/rows.hpp>
#include <fusemix/backend/cuda/search.hpp>
#include <fusemix/backend/cuda/storage.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cuda {

/// The CUDA backend on system `S`: the primitives of `cpu::backend` (same names, same semantics,
/// same dropout masks) on memory of the backend's `context<S>`. Objects are cheap handles: copies
/// share the context (stream, cuBLAS handle, scratch), so layers can each hold one.
///
/// The groups other than `storage` reach the context through this class (they take it as their
/// last template argument), so that the one context lives in `storage` and `ctx()` names one
/// member.
///
/// @tparam T `float` (training; TF32/bf16 GEMMs optional on a GPU) or `double` (checks).
/// @tparam S `device_system` (a GPU; the file must be compiled by nvcc) or `host_system` (any
///         compiler; include <fusemix/backend/cuda/host_gemm.hpp> for its GEMMs).
///
/// **Example**
///
///     using B = fusemix::cuda::backend<float>;      // host_backend<float> on the host system
///     B be;                                         // the process-wide context
///     fusemix::fusion_adapter<fusemix::dynamic_shape, B> hx({.in_dim = 1536, .out_dim = 512, .depth = 4}, {}, be);
///     const B::matrix_type z = be.upload(host_latents);  // once
///     const auto& s = hx.forward(z);                // on the device
template <Scalar T, System S = device_system>
class backend : public storage<T, S>,
                public dense_ops<T, S, backend<T, S>>,
                public row_ops<T, S, backend<T, S>>,
                public layer_norm_ops<T, S, backend<T, S>>,
                public activation_ops<T, S, backend<T, S>>,
                public loss_ops<T, S, backend<T, S>>,
                public optimizer_ops<T, S, backend<T, S>>,
                public kdpp_ops<T, S, backend<T, S>>,
                public search_ops<T, S, backend<T, S>> {
 public:
  using storage<T, S>::storage;
};

/// The CUDA backend's code on the host (any C++20 compiler).
template <Scalar T>
using host_backend = backend<T, host_system>;

static_assert(Backend<backend<float, host_system>>);
static_assert(Backend<backend<double, host_system>>);
#if defined(__CUDACC__)
static_assert(Backend<backend<float, device_system>>);
static_assert(Backend<backend<double, device_system>>);
#endif

}  // namespace fusemix::cuda
