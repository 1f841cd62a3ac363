// SPDX-License-Identifier: Apache-2.0
/// @file
/// The context every CUDA backend object of one system shares: the stream and cuBLAS handle (on a
/// GPU), the GEMM precision, scratch memory and profiling; and the copies between host and
/// backend memory.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fusemix/backend/cuda/memory.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/error.hpp>

#if defined(__CUDACC__)
#include <map>
#include <utility>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

namespace fusemix::cuda {

/// How the backend's float GEMMs use the tensor cores (on a GPU; the host system computes every
/// GEMM in fp32). Every mode keeps float parameters, activations and accumulation; only the GEMM
/// operands are rounded.
enum class gemm_precision {
  fp32,  ///< IEEE float products (cuBLAS's default math)
  tf32,  ///< operands rounded to TF32 (10-bit mantissa) on the tensor cores
  bf16,  ///< operands converted to bfloat16 (8-bit mantissa), products accumulated in float
};

/// "fp32", "tf32" or "bf16".
[[nodiscard]] constexpr const char* to_string(gemm_precision p) noexcept {
  return p == gemm_precision::tf32 ? "tf32" : p == gemm_precision::bf16 ? "bf16" : "fp32";
}

/// Parses "fp32", "tf32" or "bf16".
/// @throws argument_error otherwise.
[[nodiscard]] inline gemm_precision parse_gemm_precision(std::string_view s) {
  if (s == "fp32") return gemm_precision::fp32;
  if (s == "tf32") return gemm_precision::tf32;
  if (s == "bf16") return gemm_precision::bf16;
  throw_expected<argument_error>("fusemix::cuda::parse_gemm_precision", "unknown precision", "fp32, tf32 or bf16", s);
}

namespace detail {
enum class copy_kind { to_device, to_host, within };
/// What a context holds that depends on its system (the stream, handle and events on a GPU).
template <class S>
class context_state : unavailable_system<S> {};
}  // namespace detail

/// What every copy of a backend on system `S` shares: the stream all its work is queued on and
/// the cuBLAS handle bound to it (on a GPU), the GEMM precision, and scratch memory that grows to
/// the largest request (so a training step after the first allocates nothing).
///
/// One context serialises everything on one stream; the process-wide `context<S>::shared()` is
/// what a default-constructed backend uses, so two adapters and a loss built separately still
/// share it.
///
/// **Example**
///
///     auto ctx = std::make_shared<fusemix::cuda::context<>>();   // its own stream (GPU)
///     fusemix::cuda::backend<float> be(ctx);
///     ctx->set_precision(fusemix::cuda::gemm_precision::tf32);
template <System S>
class context : public detail::context_state<S> {
 public:
  static_assert(detail::available<S>);
  using system_type = S;

  /// Named scratch slots; each caller owns one, so two live scratch areas never alias.
  enum slot : unsigned {
    index_a, index_b, index_rows, ones, row_stats, col_partials, reduce, operand_a, operand_b, mask, slot_count
  };

  /// Creates the stream and cuBLAS handle (on a GPU).
  /// @throws device_error if no CUDA device can be used; std::system_error for CUDA failures.
  context() = default;
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  /// The process-wide context of system `S`, created on first use.
  static const std::shared_ptr<context>& shared() {
    static const std::shared_ptr<context> c = std::make_shared<context>();
    return c;
  }

  [[nodiscard]] gemm_precision precision() const noexcept { return precision_; }
  /// Sets the tensor-core mode of float GEMMs (ignored on the host system and for double).
  void set_precision(gemm_precision p) noexcept { precision_ = p; }

  // Profiling --------------------------------------------------------------------------------

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
    this->synchronize();
    profiling_ = on;
    records_.clear();
    marks_used_ = 0;
  }
  /// A scope that times the work queued inside it (nothing when profiling is off).
  [[nodiscard]] profile_scope profile(const char* name) { return {profiling_ ? this : nullptr, name}; }
  /// The recorded time per name (first-seen order), after the queued work has finished.
  [[nodiscard]] std::vector<profile_entry> profile_report() {
    this->synchronize();
    std::vector<profile_entry> out;
    for (const auto& r : records_) {
      auto it = std::find_if(out.begin(), out.end(), [&](const profile_entry& e) { return e.name == r.name; });
      if (it == out.end()) it = out.insert(out.end(), profile_entry{r.name});
      it->ms += this->elapsed_ms(marks_[r.start], marks_[r.stop]);
      ++it->calls;
    }
    return out;
  }

  // Scratch ----------------------------------------------------------------------------------

  /// The host indices `host` in backend memory (slot `s`: `index_a`, `index_b` or `index_rows`). Not copied
  /// again when the slot already holds these values: both modalities of a step gather the same
  /// rows, so the second gather moves nothing.
  const std::size_t* indices(slot s, std::span<const std::size_t> host);

  // Staging ----------------------------------------------------------------------------------

  /// Host memory for at least `bytes` on their way to backend memory (`upload_staged`):
  /// page-locked on a GPU, so the copy is asynchronous and runs at the bus's speed. Two buffers
  /// are handed out in turn, so the host fills one while the other's copy is in flight; this
  /// waits only for the copy that last read the buffer it returns. Grows to the largest request.
  std::span<std::byte> staging(std::size_t bytes);
  /// Queues the copy of the first `bytes` of the buffer `staging` returned last to `dev`, and
  /// returns without waiting for it (on the host system the copy is done on return).
  void upload_staged(void* dev, std::size_t bytes);

  ~context() {
    try {
      this->synchronize();  // no copy may still read a staging buffer
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor frees what it can
    }
    for (auto& b : staging_) this->free_pinned(b.data);
  }

  /// Scratch of at least `n` elements of `U` in slot `s`; its contents are unspecified.
  template <class U>
  U* scratch(slot s, std::size_t n) {
    auto& a = scratch_[s];
    const std::size_t bytes = n * sizeof(U);
    if (a.size() < bytes) {
      this->synchronize();  // queued work may still read the old area
      a = array<std::byte, S>(std::max(bytes, a.size() + a.size() / 2));
    }
    return reinterpret_cast<U*>(a.data());
  }

 private:
  using mark_type = typename detail::context_state<S>::mark_type;
  struct record {
    const char* name;
    std::size_t start, stop;
  };
  struct index_mirror {  // what an index slot holds, and where
    const std::size_t* at = nullptr;
    std::vector<std::size_t> values;
  };

  // A time mark: an event recorded on the stream (GPU) or the host clock.
  std::size_t mark() {
    if (marks_used_ == marks_.size()) marks_.push_back(this->new_mark());
    this->record_mark(marks_[marks_used_]);
    return marks_used_++;
  }

  struct staging_buffer {
    std::byte* data = nullptr;
    std::size_t size = 0;
    mark_type copied{};  // recorded after the copy that last read it
    bool in_flight = false;
  };

  std::vector<mark_type> marks_;
  std::size_t marks_used_ = 0;
  staging_buffer staging_[2];
  unsigned staging_next_ = 0;  // the buffer `staging` hands out next
  index_mirror index_mirror_[3];  // index_a, index_b, index_rows
  std::vector<record> records_;
  bool profiling_ = false;
  gemm_precision precision_ = gemm_precision::fp32;
  array<std::byte, S> scratch_[slot_count];
};

/// Copies `n` elements from host memory to the backend's memory and waits.
template <System S, class T>
void copy_to_device(const context<S>& c, const T* host, T* dev, std::size_t n) {
  if (n == 0) return;
  c.copy_bytes(dev, host, n * sizeof(T), detail::copy_kind::to_device);
  c.synchronize();
}

/// Copies `n` elements from the backend's memory to host memory, after the work queued before.
template <System S, class T>
void copy_to_host(const context<S>& c, const T* dev, T* host, std::size_t n) {
  if (n == 0) return;
  c.copy_bytes(host, dev, n * sizeof(T), detail::copy_kind::to_host);
  c.synchronize();
}

/// Copies `n` elements within the backend's memory (queued; the ranges may overlap on the host).
template <System S, class T>
void copy_within(const context<S>& c, const T* src, T* dst, std::size_t n) {
  if (n == 0 || src == dst) return;
  c.copy_bytes(dst, src, n * sizeof(T), detail::copy_kind::within);
}

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

namespace detail {

template <>
class context_state<host_system> {
 public:
  /// Nothing is queued on the host: every call has finished when it returns.
  void synchronize() const noexcept {}
  void copy_bytes(void* dst, const void* src, std::size_t bytes, copy_kind) const noexcept {
    std::memmove(dst, src, bytes);
  }

 protected:
  using mark_type = std::chrono::steady_clock::time_point;
  static mark_type new_mark() noexcept { return {}; }
  static void record_mark(mark_type& m) noexcept { m = std::chrono::steady_clock::now(); }
  static double elapsed_ms(const mark_type& a, const mark_type& b) noexcept {
    return std::chrono::duration<double, std::milli>(b - a).count();
  }
  static void wait_mark(const mark_type&) noexcept {}
  static std::byte* allocate_pinned(std::size_t bytes) {
    return static_cast<std::byte*>(::operator new(bytes, std::align_val_t{buffer_alignment}));
  }
  static void free_pinned(std::byte* p) noexcept {
    if (p != nullptr) ::operator delete(p, std::align_val_t{buffer_alignment});
  }
};

#if defined(__CUDACC__)
/// A stream and a cuBLAS handle bound to it, created on the current device and destroyed
/// together (the handle first).
class stream_handle {
 public:
  stream_handle() {
    FUSEMIX_CUDA_CHECK(::cudaStreamCreate(&stream_));
    try {
      FUSEMIX_CUBLAS_CHECK(::cublasCreate(&cublas_));
      FUSEMIX_CUBLAS_CHECK(::cublasSetStream(cublas_, stream_));
    } catch (...) {
      release();  // the destructor does not run when a constructor throws
      throw;
    }
  }
  stream_handle(const stream_handle&) = delete;
  stream_handle& operator=(const stream_handle&) = delete;
  ~stream_handle() { release(); }
  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }
  [[nodiscard]] cublasHandle_t cublas() const noexcept { return cublas_; }

 private:
  void release() noexcept {
    if (cublas_ != nullptr) static_cast<void>(::cublasDestroy(cublas_));
    if (stream_ != nullptr) static_cast<void>(::cudaStreamDestroy(stream_));
    cublas_ = nullptr;
    stream_ = nullptr;
  }
  cudaStream_t stream_ = nullptr;  // blocking: ordered with the legacy default stream
  cublasHandle_t cublas_ = nullptr;
};

/// Thrust's temporary storage (reductions, searches): blocks are kept for reuse, which the
/// stream's order makes safe, so no call allocates once warm.
class temp_allocator {
 public:
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
    allocation_counter().fetch_add(1, std::memory_order_relaxed);
    used_.emplace(static_cast<char*>(p), bytes);
    return static_cast<char*>(p);
  }
  void deallocate(char* p, std::size_t) {
    const auto it = used_.find(p);
    if (it == used_.end()) return;
    free_.emplace(it->second, p);
    used_.erase(it);
  }

 private:
  std::multimap<std::size_t, char*> free_;
  std::map<char*, std::size_t> used_;
};

template <>
class context_state<device_system> {
 public:
  context_state() : handle_(open()) {}

  [[nodiscard]] cudaStream_t stream() const noexcept { return handle_->stream(); }
  [[nodiscard]] cublasHandle_t cublas() const noexcept { return handle_->cublas(); }
  /// The execution policy of this context's Thrust calls: asynchronous on its stream, temporary
  /// storage from a cache.
  [[nodiscard]] auto policy() const { return thrust::cuda::par_nosync(temp_).on(stream()); }
  /// Waits for all queued work. @throws std::system_error if that work failed.
  void synchronize() const { FUSEMIX_CUDA_CHECK(::cudaStreamSynchronize(stream())); }
  /// Queues a copy on the stream.
  void copy_bytes(void* dst, const void* src, std::size_t bytes, copy_kind k) const {
    const cudaMemcpyKind kind = k == copy_kind::to_device ? cudaMemcpyHostToDevice
                                : k == copy_kind::to_host ? cudaMemcpyDeviceToHost
                                                          : cudaMemcpyDeviceToDevice;
    FUSEMIX_CUDA_CHECK(::cudaMemcpyAsync(dst, src, bytes, kind, stream()));
  }

 protected:
  using mark_type = std::shared_ptr<CUevent_st>;
  static mark_type new_mark() {
    cudaEvent_t e = nullptr;
    FUSEMIX_CUDA_CHECK(::cudaEventCreate(&e));
    return {e, [](cudaEvent_t x) { static_cast<void>(::cudaEventDestroy(x)); }};
  }
  void record_mark(const mark_type& m) const { FUSEMIX_CUDA_CHECK(::cudaEventRecord(m.get(), stream())); }
  static double elapsed_ms(const mark_type& a, const mark_type& b) {
    float ms = 0;
    FUSEMIX_CUDA_CHECK(::cudaEventElapsedTime(&ms, a.get(), b.get()));
    return ms;
  }
  static void wait_mark(const mark_type& m) { FUSEMIX_CUDA_CHECK(::cudaEventSynchronize(m.get())); }
  // Page-locked host memory: a copy from it is a DMA the host need not wait for.
  static std::byte* allocate_pinned(std::size_t bytes) {
    void* p = nullptr;
    FUSEMIX_CUDA_CHECK(::cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
    return static_cast<std::byte*>(p);
  }
  static void free_pinned(std::byte* p) noexcept {
    if (p != nullptr) static_cast<void>(::cudaFreeHost(p));
  }

 private:
  static std::unique_ptr<stream_handle> open() {
    int n = 0;
    const cudaError_t e = ::cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
      static_cast<void>(::cudaGetLastError());
      throw device_error(std::string("fusemix::cuda::context: no usable CUDA device (cudaGetDeviceCount: ") +
                         (e == cudaSuccess ? "0 devices" : ::cudaGetErrorString(e)) + ")");
    }
    return std::make_unique<stream_handle>();
  }

  mutable temp_allocator temp_;
  std::unique_ptr<stream_handle> handle_;
};
#endif

}  // namespace detail

template <System S>
std::span<std::byte> context<S>::staging(std::size_t bytes) {
  staging_buffer& b = staging_[staging_next_];
  staging_next_ ^= 1u;
  if (b.in_flight) this->wait_mark(b.copied);  // its last copy must have read it
  b.in_flight = false;
  if (b.size < bytes) {
    this->free_pinned(b.data);
    b.data = nullptr, b.size = 0;
    b.data = this->allocate_pinned(bytes);
    b.size = bytes;
    detail::allocation_counter().fetch_add(1, std::memory_order_relaxed);
  }
  return {b.data, bytes};
}

template <System S>
void context<S>::upload_staged(void* dev, std::size_t bytes) {
  staging_buffer& b = staging_[staging_next_ ^ 1u];  // the one `staging` returned last
  if (bytes > b.size)
    throw_expected<argument_error>("fusemix::cuda::context::upload_staged", "more bytes than the staging buffer holds",
                                   concat("<= ", b.size), bytes);
  if (bytes == 0) return;
  this->copy_bytes(dev, b.data, bytes, detail::copy_kind::to_device);
  if (b.copied == mark_type{}) b.copied = this->new_mark();
  this->record_mark(b.copied);
  b.in_flight = true;
}

template <System S>
const std::size_t* context<S>::indices(slot s, std::span<const std::size_t> host) {
  if (s > index_rows)
    throw_expected<argument_error>("fusemix::cuda::context::indices", "not an index slot",
                                   "index_a, index_b or index_rows", static_cast<unsigned>(s));
  index_mirror& m = index_mirror_[s];
  std::size_t* d = scratch<std::size_t>(s, host.size());
  if (d != m.at || !std::equal(host.begin(), host.end(), m.values.begin(), m.values.end())) {
    copy_to_device(*this, host.data(), d, host.size());
    m.at = d;
    m.values.assign(host.begin(), host.end());
  }
  return d;
}

}  // namespace fusemix::cuda
