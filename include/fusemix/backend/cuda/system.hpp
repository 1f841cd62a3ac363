// SPDX-License-Identifier: Apache-2.0
/// @file
/// Where the CUDA backend runs, as a type (like Thrust's `thrust::cpp::par` / `thrust::cuda::par`):
/// `device_system` on a GPU, `host_system` on the host; and the four launches the backend is
/// written over, once for both (`for_n`, `for_rows` and `for_rows_scratch`, `reduce_n`, `find_first`).
///
/// | system | compiler | memory | passes | GEMM |
/// |---|---|---|---|---|
/// | `device_system` | nvcc | `cudaMalloc` | Thrust kernels on the context's stream; a block per row | cuBLAS |
/// | `host_system` | any C++20 compiler | 64-byte-aligned host memory | plain host loops | the CPU backend's |
///
/// Every system-dependent piece is an explicit specialization per system (`detail::dispatch<S>`
/// here, `detail::memory<S>`, `detail::context_state<S>`, `detail::gemm_ops<S>`): the host ones
/// are the same code in every translation unit, and the device ones exist only under nvcc, so a
/// `.cu` and a `.cpp` file of one program agree on what `backend<float, host_system>` is.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <type_traits>
#include <vector>

#include <fusemix/core/config.hpp>

#if defined(__CUDACC__)
#include <thrust/execution_policy.h>
#include <thrust/find.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/system/cuda/execution_policy.h>
#include <thrust/transform_reduce.h>

#include <fusemix/backend/cuda/error.cuh>
#endif

namespace fusemix::cuda {

/// The backend on a GPU: memory from `cudaMalloc`, passes as kernels on the context's stream,
/// GEMMs on cuBLAS. Usable only in files compiled by nvcc.
struct device_system {};

/// The backend's code on the host, from any C++20 compiler: "device" memory is 64-byte-aligned
/// host memory, the functors run in plain host loops (a row is one "thread"), GEMMs are the CPU
/// backend's (`<fusemix/backend/cuda/host_gemm.hpp>`). What CI, which has no GPU, executes.
struct host_system {};

/// One of the two systems.
template <class S>
concept System = std::same_as<S, device_system> || std::same_as<S, host_system>;

template <System S = device_system>
class context;  // context.hpp

/// The threads that cooperate on one row of a row-wise pass on the host: one, and its reductions
/// are the identity.
struct serial_group {
  FUSEMIX_HOST_DEVICE static constexpr unsigned rank() noexcept { return 0; }
  FUSEMIX_HOST_DEVICE static constexpr unsigned size() noexcept { return 1; }
  template <class U>
  FUSEMIX_HOST_DEVICE U sum(U v) const noexcept { return v; }
  template <class U>
  FUSEMIX_HOST_DEVICE U max(U v) const noexcept { return v; }
  FUSEMIX_HOST_DEVICE static void sync() noexcept {}
  /// `*p += v`, returning the old value (one thread: no atomics).
  FUSEMIX_HOST_DEVICE static unsigned fetch_add(unsigned* p, unsigned v) noexcept {
    const unsigned old = *p;
    *p += v;
    return old;
  }
};

#if defined(__CUDACC__)
/// All threads of a block (a multiple of 32, at most 1024); every thread gets the same result of
/// a reduction (each warp reduces the warps' partials in the same order).
struct block_group {
  double* smem;  // 32 slots
  __device__ unsigned rank() const noexcept { return threadIdx.x; }
  __device__ unsigned size() const noexcept { return blockDim.x; }
  template <class U>
  __device__ U sum(U v) const noexcept { return reduce(v, [](U a, U b) { return a + b; }, U(0)); }
  template <class U>
  __device__ U max(U v) const noexcept { return reduce(v, [](U a, U b) { return a < b ? b : a; }, v); }
  /// A barrier for the block (every thread must reach it).
  __device__ static void sync() noexcept { __syncthreads(); }
  /// `*p += v` atomically (`p` in shared or global memory), returning the old value.
  __device__ static unsigned fetch_add(unsigned* p, unsigned v) noexcept { return atomicAdd(p, v); }

 private:
  // `identity` fills the lanes past the last warp (0 for sums; any member of the set for max).
  template <class U, class Op>
  __device__ U reduce(U v, Op op, U identity) const noexcept {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    const unsigned lane = threadIdx.x % 32, warps = blockDim.x / 32;
    __syncthreads();  // the previous reduction's readers are done with smem
    if (lane == 0) smem[threadIdx.x / 32] = static_cast<double>(v);
    __syncthreads();
    U t = lane < warps ? static_cast<U>(smem[lane]) : identity;
    for (int o = 16; o > 0; o >>= 1) t = op(t, __shfl_xor_sync(0xffffffffu, t, o));
    return t;
  }
};
#endif

/// Runs `f(i)` for every `i` in [0, n) (queued): a thread per index on a GPU, a loop on the host.
template <System S, class F>
void for_n(const context<S>& c, std::size_t n, const F& f);

/// Runs the row functor `f(group, i)` for every row `i` in [0, rows) (queued): a block of 256
/// threads per row on a GPU (the functor strides its columns by `group.size()` and reduces with
/// `group.sum` / `group.max`), a `serial_group` per row on the host.
template <System S, class F>
void for_rows(const context<S>& c, std::size_t rows, const F& f);

/// `for_rows` with `bytes` of scratch memory per row group, 16-byte aligned: `f(group, i,
/// scratch)`. On a GPU the scratch is the block's shared memory (at most 48 KiB) and the group
/// synchronises with `group.sync()` and appends with `group.fetch_add`; on the host it is one
/// buffer reused row after row.
template <System S, class F>
void for_rows_scratch(const context<S>& c, std::size_t rows, std::size_t bytes, const F& f);

/// `op(… op(op(init, f(0)), f(1)) …, f(n − 1))`, after the queued work; waits for the result.
/// The host folds in index order; a GPU in a tree, so `op` must be associative and commutative
/// (what is summed there is summed in double).
template <System S, class U, class F, class Op>
[[nodiscard]] U reduce_n(const context<S>& c, std::size_t n, const F& f, U init, Op op);

/// The lowest `i` in [0, n) with `pred(i)`, or `n`; waits for the result.
template <System S, class P>
[[nodiscard]] std::size_t find_first(const context<S>& c, std::size_t n, const P& pred);

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

namespace detail {

/// The primary template of every per-system piece: instantiated only for a system that this
/// translation unit cannot run, to say why.
template <class S>
struct unavailable_system {
  static_assert(!std::is_same_v<S, device_system>,
                "fusemix::cuda::device_system runs on a GPU and needs nvcc: compile this file as CUDA (.cu), "
                "or use fusemix::cuda::host_system (e.g. fusemix::cuda::backend<float, fusemix::cuda::host_system>)");
  static_assert(std::is_same_v<S, device_system>, "fusemix::cuda: not a system (device_system or host_system)");
};

/// How a system launches the four passes (the context is a template parameter: it is declared,
/// not defined, at this point).
template <class S>
struct dispatch : unavailable_system<S> {};

template <>
struct dispatch<host_system> {
  template <class C, class F>
  static void for_n(const C&, std::size_t n, const F& f) {
    for (std::size_t i = 0; i < n; ++i) f(i);
  }
  template <class C, class F>
  static void for_rows(const C&, std::size_t rows, const F& f) {
    const serial_group g;
    for (std::size_t i = 0; i < rows; ++i) f(g, i);
  }
  template <class C, class F>
  static void for_rows_scratch(const C&, std::size_t rows, std::size_t bytes, const F& f) {
    const serial_group g;
    std::vector<std::max_align_t> scratch((bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
    for (std::size_t i = 0; i < rows; ++i) f(g, i, static_cast<void*>(scratch.data()));
  }
  template <class C, class U, class F, class Op>
  static U reduce_n(const C&, std::size_t n, const F& f, U init, Op op) {
    for (std::size_t i = 0; i < n; ++i) init = op(init, f(i));
    return init;
  }
  template <class C, class P>
  static std::size_t find_first(const C&, std::size_t n, const P& pred) {
    for (std::size_t i = 0; i < n; ++i)
      if (pred(i)) return i;
    return n;
  }
};

#if defined(__CUDACC__)
template <class F>
__global__ void __launch_bounds__(256) rows_kernel(F f, std::size_t rows) {
  __shared__ double smem[32];
  const block_group g{smem};
  for (std::size_t r = blockIdx.x; r < rows; r += gridDim.x) f(g, r);
}

template <class F>
__global__ void __launch_bounds__(256) rows_scratch_kernel(F f, std::size_t rows) {
  __shared__ double smem[32];
  extern __shared__ float4 scratch[];  // dynamic: the launch's bytes
  const block_group g{smem};
  for (std::size_t r = blockIdx.x; r < rows; r += gridDim.x) {
    f(g, r, static_cast<void*>(scratch));
    __syncthreads();  // the next row's writers wait for this row's readers
  }
}

template <>
struct dispatch<device_system> {
  template <class C, class F>
  static void for_n(const C& c, std::size_t n, const F& f) {
    thrust::for_each_n(c.policy(), thrust::counting_iterator<std::size_t>(0), n, f);
    FUSEMIX_CUDA_CHECK_LAUNCH();
  }
  template <class C, class F>
  static void for_rows(const C& c, std::size_t rows, const F& f) {
    const auto grid = static_cast<unsigned>(std::min<std::size_t>(rows, 1u << 20));
    rows_kernel<<<grid, 256, 0, c.stream()>>>(f, rows);
    FUSEMIX_CUDA_CHECK_LAUNCH();
  }
  template <class C, class F>
  static void for_rows_scratch(const C& c, std::size_t rows, std::size_t bytes, const F& f) {
    const auto grid = static_cast<unsigned>(std::min<std::size_t>(rows, 1u << 20));
    rows_scratch_kernel<<<grid, 256, bytes, c.stream()>>>(f, rows);
    FUSEMIX_CUDA_CHECK_LAUNCH();
  }
  template <class C, class U, class F, class Op>
  static U reduce_n(const C& c, std::size_t n, const F& f, U init, Op op) {
    return thrust::transform_reduce(c.policy(), thrust::counting_iterator<std::size_t>(0),
                                    thrust::counting_iterator<std::size_t>(n), f, init, op);
  }
  template <class C, class P>
  static std::size_t find_first(const C& c, std::size_t n, const P& pred) {
    return *thrust::find_if(c.policy(), thrust::counting_iterator<std::size_t>(0),
                            thrust::counting_iterator<std::size_t>(n), pred);
  }
};
#endif

/// True for a system that this translation unit can run; for one it cannot (`device_system`
/// outside nvcc), naming it is the compile error that says why. Class templates over a system
/// check it first, so the error comes before any other.
template <class S>
inline constexpr bool available = sizeof(dispatch<S>) != 0;

}  // namespace detail

template <System S, class F>
void for_n(const context<S>& c, std::size_t n, const F& f) {
  if (n != 0) detail::dispatch<S>::for_n(c, n, f);
}

template <System S, class F>
void for_rows(const context<S>& c, std::size_t rows, const F& f) {
  if (rows != 0) detail::dispatch<S>::for_rows(c, rows, f);
}

template <System S, class F>
void for_rows_scratch(const context<S>& c, std::size_t rows, std::size_t bytes, const F& f) {
  if (rows != 0) detail::dispatch<S>::for_rows_scratch(c, rows, bytes, f);
}

template <System S, class U, class F, class Op>
U reduce_n(const context<S>& c, std::size_t n, const F& f, U init, Op op) {
  return n == 0 ? init : detail::dispatch<S>::reduce_n(c, n, f, init, op);
}

template <System S, class P>
std::size_t find_first(const context<S>& c, std::size_t n, const P& pred) {
  return n == 0 ? 0 : detail::dispatch<S>::find_first(c, n, pred);
}

}  // namespace fusemix::cuda
