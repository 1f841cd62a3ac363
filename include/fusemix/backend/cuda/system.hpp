// SPDX-License-Identifier: Apache-2.0
/// @file
/// Where the CUDA backend's code runs: on a GPU (nvcc, Thrust's CUDA system, cuBLAS) or, from
/// the very same source, on the host (any C++20 compiler, Thrust's CPP system, the CPU
/// backend's GEMMs).
///
/// The backend is written once over Thrust algorithms and `FUSEMIX_HD` functors. Compiled by
/// nvcc, `FUSEMIX_CUDA_DEVICE` is 1: memory is `cudaMalloc`ed, algorithms are kernels on the
/// context's stream, GEMMs go to cuBLAS and the row-wise passes to one thread block per row.
/// Compiled by g++ (or by nvcc with `FUSEMIX_CUDA_HOST_SYSTEM` defined), it is 0: "device"
/// memory is host memory, the same functors run in host loops, GEMMs go to the CPU backend's
/// (Eigen, or OpenBLAS where linked). That is how CI, which has no GPU, executes the backend's
/// code (tests/cuda/backend_checks.hpp).
///
/// Include this header before any Thrust header: it chooses Thrust's device system.
#pragma once

#if defined(__CUDACC__) && !defined(FUSEMIX_CUDA_HOST_SYSTEM)
#  define FUSEMIX_CUDA_DEVICE 1
#else
#  define FUSEMIX_CUDA_DEVICE 0
#  if defined(THRUST_DEVICE_SYSTEM) && THRUST_DEVICE_SYSTEM != 2 /* THRUST_DEVICE_SYSTEM_CPP */
#    error "fusemix's CUDA backend on the host needs THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP (or include this header first)"
#  endif
#  define THRUST_DEVICE_SYSTEM THRUST_DEVICE_SYSTEM_CPP
#endif

#if defined(__CUDACC__)
#  define FUSEMIX_HD __host__ __device__
#else
#  define FUSEMIX_HD
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#if FUSEMIX_CUDA_DEVICE
#  include <cuda_bf16.h>
#  include <thrust/system/cuda/execution_policy.h>
#  include <fusemix/backend/cuda/device.cuh>
#  include <fusemix/backend/cuda/error.cuh>
#else
#  include <thrust/system/cpp/execution_policy.h>
#endif

#include <fusemix/error.hpp>

namespace fusemix::cuda {

/// Whether this translation unit runs the backend on a GPU (else on the host, Thrust's CPP system).
inline constexpr bool on_device = FUSEMIX_CUDA_DEVICE != 0;

/// How the backend's float GEMMs use the tensor cores. Every mode keeps float parameters,
/// activations and accumulation; only the GEMM operands are rounded.
enum class gemm_precision {
  fp32,  ///< IEEE float products (cuBLAS's default math)
  tf32,  ///< operands rounded to TF32 (10-bit mantissa) on the tensor cores
  bf16,  ///< operands converted to bfloat16 (8-bit mantissa), products accumulated in float
};

[[nodiscard]] constexpr const char* to_string(gemm_precision p) noexcept {
  return p == gemm_precision::tf32 ? "tf32" : p == gemm_precision::bf16 ? "bf16" : "fp32";
}
/// Parses "fp32", "tf32" or "bf16". @throws argument_error otherwise.
[[nodiscard]] inline gemm_precision parse_gemm_precision(std::string_view s) {
  if (s == "fp32") return gemm_precision::fp32;
  if (s == "tf32") return gemm_precision::tf32;
  if (s == "bf16") return gemm_precision::bf16;
  ::fusemix::detail::throw_expected<argument_error>("fusemix::cuda::parse_gemm_precision", "unknown precision",
                                                    "fp32, tf32 or bf16", s);
}

namespace math {
// Elementary functions callable from host and device code with float or double.
template <class T>
FUSEMIX_HD inline T sqrt(T x) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) return ::sqrtf(x); else return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}
template <class T>
FUSEMIX_HD inline T exp(T x) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) return ::expf(x); else return ::exp(x);
#else
  return std::exp(x);
#endif
}
template <class T>
FUSEMIX_HD inline T log(T x) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) return ::logf(x); else return ::log(x);
#else
  return std::log(x);
#endif
}
template <class T>
FUSEMIX_HD inline T erf(T x) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) return ::erff(x); else return ::erf(x);
#else
  return std::erf(x);
#endif
}
template <class T>
FUSEMIX_HD inline T max(T a, T b) noexcept { return a < b ? b : a; }
template <class T>
FUSEMIX_HD inline bool isfinite(T x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::isfinite(x);
#else
  return std::isfinite(x);
#endif
}
}  // namespace math

// ------------------------------------------------------------------------------------------------
// Memory
// ------------------------------------------------------------------------------------------------

namespace detail {
inline std::atomic<std::uint64_t>& allocation_counter() noexcept {
  static std::atomic<std::uint64_t> n{0};
  return n;
}
inline void* allocate_bytes(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  allocation_counter().fetch_add(1, std::memory_order_relaxed);
#if FUSEMIX_CUDA_DEVICE
  void* p = nullptr;
  FUSEMIX_CUDA_CHECK(::cudaMalloc(&p, bytes));
  return p;
#else
  return ::operator new(bytes, std::align_val_t{64});
#endif
}
inline void free_bytes(void* p) noexcept {
  if (p == nullptr) return;
#if FUSEMIX_CUDA_DEVICE
  static_cast<void>(::cudaFree(p));
#else
  ::operator delete(p, std::align_val_t{64});
#endif
}
}  // namespace detail

/// How many blocks of backend memory this process has allocated so far (arrays, matrices,
/// scratch, Thrust's temporaries): a warm training step adds none (tests/cuda/backend_checks.hpp).
[[nodiscard]] inline std::uint64_t allocations() noexcept {
  return detail::allocation_counter().load(std::memory_order_relaxed);
}

/// Owning, uninitialised storage for `size()` elements of `T` in the backend's memory (device
/// memory on a GPU, 64-byte aligned host memory otherwise). Copies are deep; moves steal.
template <class T>
  requires std::is_trivially_copyable_v<T>
class array {
 public:
  using value_type = T;
  array() noexcept = default;
  explicit array(std::size_t n) : data_(static_cast<T*>(detail::allocate_bytes(bytes_of(n)))), size_(n) {}
  array(const array& o);
  array& operator=(const array& o) {
    if (this != &o) *this = array(o);
    return *this;
  }
  array(array&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  array& operator=(array&& o) noexcept {
    if (this != &o) {
      detail::free_bytes(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~array() { detail::free_bytes(data_); }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

 private:
  static std::size_t bytes_of(std::size_t n) {
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    return n * sizeof(T);
  }
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

// ------------------------------------------------------------------------------------------------
// The context: stream, cuBLAS handle, scratch
// ------------------------------------------------------------------------------------------------

/// What every copy of a backend shares: the stream all its work is queued on, the cuBLAS handle
/// bound to it, the GEMM precision, and scratch memory that grows to the largest request (so a
/// training step after the first allocates nothing).
///
/// One context serialises everything on one stream; the process-wide `context::shared()` is what a
/// default-constructed backend uses, so two adapters and a loss built separately still share it.
class context {
 public:
  /// Named scratch slots; each caller owns one, so two live scratch areas never alias.
  enum slot : unsigned {
    index_a, index_b, ones, row_stats, col_partials, col_stats, reduce, operand_a, operand_b, mask, slot_count
  };

  /// Creates the stream and cuBLAS handle (on a GPU).
  /// @throws device_error if no CUDA device can be used; std::system_error for CUDA failures.
  context() {
#if FUSEMIX_CUDA_DEVICE
    int n = 0;
    const cudaError_t e = ::cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
      static_cast<void>(::cudaGetLastError());
      throw device_error(std::string("fusemix::cuda::context: no usable CUDA device (cudaGetDeviceCount: ") +
                         (e == cudaSuccess ? "0 devices" : ::cudaGetErrorString(e)) + ")");
    }
    handle_ = std::make_unique<handle>();
#endif
  }
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  /// The process-wide context, created on first use.
  static const std::shared_ptr<context>& shared() {
    static const std::shared_ptr<context> c = std::make_shared<context>();
    return c;
  }

#if FUSEMIX_CUDA_DEVICE
  [[nodiscard]] cudaStream_t stream() const noexcept { return handle_->stream(); }
  [[nodiscard]] cublasHandle_t cublas() const noexcept { return handle_->cublas(); }
  /// The execution policy of this context's Thrust calls: asynchronous on its stream, temporary
  /// storage (reductions, searches) from a cache, so no call allocates once warm.
  [[nodiscard]] auto policy() const { return thrust::cuda::par_nosync(temp_).on(stream()); }
#else
  [[nodiscard]] auto policy() const { return thrust::cpp::par; }
#endif
  /// Waits for all queued work. @throws std::system_error if that work failed.
  void synchronize() const {
#if FUSEMIX_CUDA_DEVICE
    handle_->synchronize();
#endif
  }

  [[nodiscard]] gemm_precision precision() const noexcept { return precision_; }
  /// Sets the tensor-core mode of float GEMMs (ignored on the host system and for double).
  void set_precision(gemm_precision p) noexcept { precision_ = p; }

  // Profiling ------------------------------------------------------------------------------

  /// Time spent in one kind of primitive while profiling was on.
  struct profile_entry {
    std::string name;
    double ms = 0;
    std::size_t calls = 0;
  };
  /// Records the time of the work a `profile` scope encloses (benchmarks; off by default).
  class profile_scope {
   public:
    profile_scope(context* c, const char* name) : c_(c), name_(name) {
      if (c_ != nullptr) start_ = c_->mark();
    }
    profile_scope(const profile_scope&) = delete;
    profile_scope& operator=(const profile_scope&) = delete;
    ~profile_scope() {
      if (c_ != nullptr) c_->records_.push_back({name_, start_, c_->mark()});
    }

   private:
    context* c_;
    const char* name_;
    std::size_t start_ = 0;
  };
  /// Starts or stops recording; starting drops what was recorded before.
  void set_profiling(bool on) {
    synchronize();
    profiling_ = on;
    records_.clear();
    marks_used_ = 0;
  }
  /// A scope that times the work queued inside it (nothing when profiling is off).
  [[nodiscard]] profile_scope profile(const char* name) { return {profiling_ ? this : nullptr, name}; }
  /// The recorded time per name (first-seen order), after the queued work has finished.
  [[nodiscard]] std::vector<profile_entry> profile_report() {
    synchronize();
    std::vector<profile_entry> out;
    for (const auto& r : records_) {
      auto it = std::find_if(out.begin(), out.end(), [&](const profile_entry& e) { return e.name == r.name; });
      if (it == out.end()) it = out.insert(out.end(), profile_entry{r.name});
      it->ms += elapsed_ms(r.start, r.stop);
      ++it->calls;
    }
    return out;
  }

  /// The host indices `host` in backend memory (slot `s`: `index_a` or `index_b`). Not copied
  /// again when the slot already holds these values: both modalities of a step gather the same
  /// rows, so the second gather moves nothing.
  const std::size_t* indices(slot s, std::span<const std::size_t> host);

  /// Scratch of at least `n` elements of `U` in slot `s`; its contents are unspecified.
  template <class U>
  U* scratch(slot s, std::size_t n) {
    auto& a = scratch_[s];
    const std::size_t bytes = n * sizeof(U);
    if (a.size() < bytes) {
      synchronize();  // queued work may still read the old area
      a = array<std::byte>(std::max(bytes, a.size() + a.size() / 2));
    }
    return reinterpret_cast<U*>(a.data());
  }

 private:
#if FUSEMIX_CUDA_DEVICE
  // Thrust's temporary storage: blocks are kept for reuse (stream order makes reuse safe).
  struct temp_allocator {
    using value_type = char;
    temp_allocator() = default;
    temp_allocator(const temp_allocator&) = delete;
    temp_allocator& operator=(const temp_allocator&) = delete;
    ~temp_allocator() {
      for (auto& [size, p] : free_) static_cast<void>(::cudaFree(p));
      for (auto& [p, size] : used_) static_cast<void>(::cudaFree(p));
    }
    char* allocate(std::ptrdiff_t n) {
      const auto bytes = static_cast<std::size_t>(n);
      if (auto it = free_.lower_bound(bytes); it != free_.end()) {
        char* p = it->second;
        used_.emplace(p, it->first);
        free_.erase(it);
        return p;
      }
      void* p = nullptr;
      FUSEMIX_CUDA_CHECK(::cudaMalloc(&p, bytes));
      detail::allocation_counter().fetch_add(1, std::memory_order_relaxed);
      used_.emplace(static_cast<char*>(p), bytes);
      return static_cast<char*>(p);
    }
    void deallocate(char* p, std::size_t) {
      const auto it = used_.find(p);
      if (it == used_.end()) return;
      free_.emplace(it->second, p);
      used_.erase(it);
    }
    std::multimap<std::size_t, char*> free_;
    std::map<char*, std::size_t> used_;
  };
  mutable temp_allocator temp_;
  std::unique_ptr<handle> handle_;
#endif
  // A time mark: an event recorded on the stream (GPU) or the host clock (CPP system).
  std::size_t mark() {
    if (marks_used_ == marks_.size()) {
#if FUSEMIX_CUDA_DEVICE
      cudaEvent_t e = nullptr;
      FUSEMIX_CUDA_CHECK(::cudaEventCreate(&e));
      marks_.push_back(std::shared_ptr<CUevent_st>(e, [](cudaEvent_t x) { static_cast<void>(::cudaEventDestroy(x)); }));
#else
      marks_.emplace_back();
#endif
    }
#if FUSEMIX_CUDA_DEVICE
    FUSEMIX_CUDA_CHECK(::cudaEventRecord(marks_[marks_used_].get(), stream()));
#else
    marks_[marks_used_] = std::chrono::steady_clock::now();
#endif
    return marks_used_++;
  }
  double elapsed_ms(std::size_t a, std::size_t b) const {
#if FUSEMIX_CUDA_DEVICE
    float ms = 0;
    FUSEMIX_CUDA_CHECK(::cudaEventElapsedTime(&ms, marks_[a].get(), marks_[b].get()));
    return ms;
#else
    return std::chrono::duration<double, std::milli>(marks_[b] - marks_[a]).count();
#endif
  }
  struct record {
    const char* name;
    std::size_t start, stop;
  };

#if FUSEMIX_CUDA_DEVICE
  std::vector<std::shared_ptr<CUevent_st>> marks_;
#else
  std::vector<std::chrono::steady_clock::time_point> marks_;
#endif
  std::size_t marks_used_ = 0;
  struct index_mirror {  // what an index slot holds, and where
    const std::size_t* at = nullptr;
    std::vector<std::size_t> values;
  } index_mirror_[2];
  std::vector<record> records_;
  bool profiling_ = false;
  gemm_precision precision_ = gemm_precision::fp32;
  array<std::byte> scratch_[slot_count];
};

// ------------------------------------------------------------------------------------------------
// Transfers and launches
// ------------------------------------------------------------------------------------------------

/// Copies `n` elements from host memory to the backend's memory and waits.
template <class T>
void copy_to_device(const context& c, const T* host, T* dev, std::size_t n) {
  if (n == 0) return;
#if FUSEMIX_CUDA_DEVICE
  FUSEMIX_CUDA_CHECK(::cudaMemcpyAsync(dev, host, n * sizeof(T), cudaMemcpyHostToDevice, c.stream()));
  c.synchronize();
#else
  static_cast<void>(c);
  std::memcpy(dev, host, n * sizeof(T));
#endif
}
/// Copies `n` elements from the backend's memory to host memory, after the work queued before.
template <class T>
void copy_to_host(const context& c, const T* dev, T* host, std::size_t n) {
  if (n == 0) return;
#if FUSEMIX_CUDA_DEVICE
  FUSEMIX_CUDA_CHECK(::cudaMemcpyAsync(host, dev, n * sizeof(T), cudaMemcpyDeviceToHost, c.stream()));
  c.synchronize();
#else
  static_cast<void>(c);
  std::memcpy(host, dev, n * sizeof(T));
#endif
}
/// Copies `n` elements within the backend's memory (queued).
template <class T>
void copy_within(const context& c, const T* src, T* dst, std::size_t n) {
  if (n == 0 || src == dst) return;
#if FUSEMIX_CUDA_DEVICE
  FUSEMIX_CUDA_CHECK(::cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice, c.stream()));
#else
  static_cast<void>(c);
  std::memmove(dst, src, n * sizeof(T));
#endif
}

inline const std::size_t* context::indices(slot s, std::span<const std::size_t> host) {
  index_mirror& m = index_mirror_[s == index_a ? 0 : 1];
  std::size_t* d = scratch<std::size_t>(s, host.size());
  if (d != m.at || !std::equal(host.begin(), host.end(), m.values.begin(), m.values.end())) {
    copy_to_device(*this, host.data(), d, host.size());
    m.at = d;
    m.values.assign(host.begin(), host.end());
  }
  return d;
}

template <class T>
  requires std::is_trivially_copyable_v<T>
array<T>::array(const array& o) : array(o.size_) {
  if (size_ == 0) return;
#if FUSEMIX_CUDA_DEVICE
  FUSEMIX_CUDA_CHECK(::cudaMemcpy(data_, o.data_, size_ * sizeof(T), cudaMemcpyDeviceToDevice));
#else
  std::memcpy(data_, o.data_, size_ * sizeof(T));
#endif
}

/// Runs `f(i)` for every `i` in [0, n): a kernel of one thread per index on a GPU, a loop on the host.
template <class F>
void for_n(const context& c, std::size_t n, const F& f) {
  if (n == 0) return;
  thrust::for_each_n(c.policy(), thrust::counting_iterator<std::size_t>(0), n, f);
#if FUSEMIX_CUDA_DEVICE
  FUSEMIX_CUDA_CHECK_LAUNCH();
#endif
}

/// The threads that cooperate on one row of a row-wise pass. On the host: one thread, the
/// reductions are the identity.
struct serial_group {
  FUSEMIX_HD static constexpr unsigned rank() noexcept { return 0; }
  FUSEMIX_HD static constexpr unsigned size() noexcept { return 1; }
  template <class U>
  FUSEMIX_HD U sum(U v) const noexcept { return v; }
  template <class U>
  FUSEMIX_HD U max(U v) const noexcept { return v; }
};

#if FUSEMIX_CUDA_DEVICE
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

namespace detail {
template <class F>
__global__ void __launch_bounds__(256) rows_kernel(F f, std::size_t rows) {
  __shared__ double smem[32];
  const block_group g{smem};
  for (std::size_t r = blockIdx.x; r < rows; r += gridDim.x) f(g, r);
}
}  // namespace detail
#endif

/// Runs the row functor `f(group, i)` for every row `i` in [0, rows): one thread block of 256
/// per row on a GPU (the functor strides its columns by `group.size()` and reduces with
/// `group.sum` / `group.max`), one host thread per row otherwise.
template <class F>
void for_rows(const context& c, std::size_t rows, const F& f) {
  if (rows == 0) return;
#if FUSEMIX_CUDA_DEVICE
  const auto grid = static_cast<unsigned>(std::min<std::size_t>(rows, 1u << 20));
  detail::rows_kernel<<<grid, 256, 0, c.stream()>>>(f, rows);
  FUSEMIX_CUDA_CHECK_LAUNCH();
#else
  static_cast<void>(c);
  const serial_group g;
  for (std::size_t i = 0; i < rows; ++i) f(g, i);
#endif
}

}  // namespace fusemix::cuda
