// SPDX-License-Identifier: Apache-2.0
/// @file
/// CUDA devices: how many there are, RAII device memory, and the cuBLAS handle and stream.
#ifndef __CUDACC__
#  error "<fusemix/backend/cuda/device.cuh> needs nvcc; CPU code includes <fusemix/fusemix.hpp>"
#endif
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <limits>
#include <new>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <fusemix/backend/cuda/error.cuh>
#include <fusemix/error.hpp>

namespace fusemix::cuda {

/// The number of CUDA devices this process can use.
///
/// @returns 0 when there is no device or no usable driver (`cudaErrorNoDevice`,
///          `cudaErrorInsufficientDriver`), so that callers can skip GPU work.
/// @throws std::system_error (category "cuda") for any other failure of `cudaGetDeviceCount`.
///
/// **Example**
///
///     if (fusemix::cuda::device_count() == 0) return 77;  // ctest's SKIP_RETURN_CODE
[[nodiscard]] inline int device_count();

/// Whether at least one CUDA device can be used; the same as `device_count() > 0`.
[[nodiscard]] inline bool has_device();

/// Device memory for `size()` elements of `T`, allocated with `cudaMalloc` and freed on
/// destruction. Move-only, like `std::unique_ptr<T[]>`.
///
/// Transfers are synchronous for the host: `upload` and `download` enqueue the copy on `stream`
/// (the legacy default stream unless given) and wait for that stream, so the host buffer may be
/// reused, or read, as soon as they return.
///
/// @tparam T an element type that can be copied as bytes.
///
/// **Example**
///
///     std::vector<float> x(1024, 1.0f);
///     fusemix::cuda::device_buffer<float> d(x);   // cudaMalloc + upload
///     scale<<<4, 256>>>(d.size(), 2.0f, d.data());
///     FUSEMIX_CUDA_CHECK_LAUNCH();
///     std::vector<float> y = d.download();         // y[i] == 2
template <class T>
  requires std::is_trivially_copyable_v<T>
class device_buffer {
 public:
  using value_type = T;

  /// An empty buffer that owns no memory.
  device_buffer() noexcept = default;
  /// Allocates `n` uninitialised elements (no allocation when `n == 0`).
  /// @throws std::bad_array_new_length if `n * sizeof(T)` overflows.
  /// @throws std::system_error (category "cuda") if `cudaMalloc` fails.
  explicit device_buffer(std::size_t n);
  /// Allocates `host.size()` elements and uploads `host` to them.
  /// @throws std::system_error (category "cuda") if the allocation or the copy fails.
  explicit device_buffer(std::span<const T> host, cudaStream_t stream = nullptr);

  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  /// Takes the memory of `other`, which is left empty.
  device_buffer(device_buffer&& other) noexcept;
  /// Frees this buffer's memory and takes that of `other`, which is left empty.
  device_buffer& operator=(device_buffer&& other) noexcept;
  /// Frees the memory (errors from `cudaFree` are ignored: a destructor cannot report them).
  ~device_buffer();

  /// The device pointer (null when empty); dereference it only in device code.
  [[nodiscard]] T* data() noexcept { return data_; }
  /// The device pointer (null when empty); dereference it only in device code.
  [[nodiscard]] const T* data() const noexcept { return data_; }
  /// The number of elements.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// The number of bytes, `size() * sizeof(T)`.
  [[nodiscard]] std::size_t size_bytes() const noexcept { return size_ * sizeof(T); }
  /// Whether the buffer holds no elements.
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

  /// Copies `host` to the device and waits for `stream`.
  /// @throws fusemix::shape_error if `host.size() != size()`.
  /// @throws std::system_error (category "cuda") if the copy fails.
  void upload(std::span<const T> host, cudaStream_t stream = nullptr);
  /// Copies the buffer into `host` and waits for `stream`, after the work queued on it before.
  /// @throws fusemix::shape_error if `host.size() != size()`.
  /// @throws std::system_error (category "cuda") if the copy fails.
  void download(std::span<T> host, cudaStream_t stream = nullptr) const;
  /// Copies the buffer into a new vector and waits for `stream`, after the work queued on it.
  /// @throws std::system_error (category "cuda") if the copy fails.
  [[nodiscard]] std::vector<T> download(cudaStream_t stream = nullptr) const;

 private:
  void release() noexcept;

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A CUDA stream and a cuBLAS handle bound to it, created on the current device and destroyed
/// together. Move-only. The CUDA backend owns one, so its primitives are member functions.
///
/// The stream is a blocking one (`cudaStreamCreate`): work on it is ordered with the legacy
/// default stream, which `device_buffer` uses unless given this stream.
///
/// **Example**
///
///     fusemix::cuda::handle h;
///     const float one = 1, zero = 0;  // row-major C(m×n) = A(m×k) B(k×n), via column-major C' = B' A'
///     FUSEMIX_CUBLAS_CHECK(cublasSgemm(h.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one,
///                                      b.data(), n, a.data(), k, &zero, c.data(), n));
///     auto c_host = c.download(h.stream());
class handle {
 public:
  /// Creates the stream and the cuBLAS handle on the current device.
  /// @throws std::system_error (category "cuda" or "cublas") if either cannot be created.
  handle();

  handle(const handle&) = delete;
  handle& operator=(const handle&) = delete;
  /// Takes the stream and handle of `other`, which is left empty.
  handle(handle&& other) noexcept;
  /// Destroys this handle's stream and cuBLAS handle and takes those of `other`.
  handle& operator=(handle&& other) noexcept;
  /// Destroys the cuBLAS handle, then the stream (errors are ignored).
  ~handle();

  /// The cuBLAS handle; its stream is `stream()`. Null once moved from.
  [[nodiscard]] cublasHandle_t cublas() const noexcept { return cublas_; }
  /// The stream the cuBLAS calls run on. Null once moved from.
  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }
  /// Waits for all work queued on `stream()`.
  /// @throws std::system_error (category "cuda") if that work failed.
  void synchronize() const;

 private:
  void release() noexcept;

  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
};

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

inline int device_count() {
  int n = 0;
  const cudaError_t e = ::cudaGetDeviceCount(&n);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
    static_cast<void>(::cudaGetLastError());  // not an error for the caller: clear it
    return 0;
  }
  detail::check(e, "cudaGetDeviceCount(&n)");
  return n;
}

inline bool has_device() { return device_count() > 0; }

template <class T>
  requires std::is_trivially_copyable_v<T>
device_buffer<T>::device_buffer(std::size_t n) {
  if (n == 0) return;
  if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
  void* p = nullptr;
  FUSEMIX_CUDA_CHECK(::cudaMalloc(&p, n * sizeof(T)));
  data_ = static_cast<T*>(p);
  size_ = n;
}

template <class T>
  requires std::is_trivially_copyable_v<T>
device_buffer<T>::device_buffer(std::span<const T> host, cudaStream_t stream)
    : device_buffer(host.size()) {
  upload(host, stream);  // a throw here still frees: the delegated-to constructor has completed
}

template <class T>
  requires std::is_trivially_copyable_v<T>
device_buffer<T>::device_buffer(device_buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

template <class T>
  requires std::is_trivially_copyable_v<T>
device_buffer<T>& device_buffer<T>::operator=(device_buffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

template <class T>
  requires std::is_trivially_copyable_v<T>
device_buffer<T>::~device_buffer() {
  release();
}

template <class T>
  requires std::is_trivially_copyable_v<T>
void device_buffer<T>::release() noexcept {
  if (data_ != nullptr) static_cast<void>(::cudaFree(data_));
  data_ = nullptr;
  size_ = 0;
}

template <class T>
  requires std::is_trivially_copyable_v<T>
void device_buffer<T>::upload(std::span<const T> host, cudaStream_t stream) {
  if (host.size() != size_)
    ::fusemix::detail::throw_shape_error("fusemix::cuda::device_buffer::upload",
                                         "the host span must have the buffer's size", size_,
                                         host.size());
  if (size_ == 0) return;
  FUSEMIX_CUDA_CHECK(::cudaMemcpyAsync(data_, host.data(), size_bytes(), cudaMemcpyHostToDevice, stream));
  FUSEMIX_CUDA_CHECK(::cudaStreamSynchronize(stream));
}

template <class T>
  requires std::is_trivially_copyable_v<T>
void device_buffer<T>::download(std::span<T> host, cudaStream_t stream) const {
  if (host.size() != size_)
    ::fusemix::detail::throw_shape_error("fusemix::cuda::device_buffer::download",
                                         "the host span must have the buffer's size", size_,
                                         host.size());
  if (size_ == 0) return;
  FUSEMIX_CUDA_CHECK(::cudaMemcpyAsync(host.data(), data_, size_bytes(), cudaMemcpyDeviceToHost, stream));
  FUSEMIX_CUDA_CHECK(::cudaStreamSynchronize(stream));
}

template <class T>
  requires std::is_trivially_copyable_v<T>
std::vector<T> device_buffer<T>::download(cudaStream_t stream) const {
  std::vector<T> host(size_);
  download(std::span<T>(host), stream);
  return host;
}

inline handle::handle() {
  FUSEMIX_CUDA_CHECK(::cudaStreamCreate(&stream_));
  try {
    FUSEMIX_CUBLAS_CHECK(::cublasCreate(&cublas_));
    FUSEMIX_CUBLAS_CHECK(::cublasSetStream(cublas_, stream_));
  } catch (...) {
    release();  // the destructor does not run when a constructor throws
    throw;
  }
}

inline handle::handle(handle&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)), cublas_(std::exchange(other.cublas_, nullptr)) {}

inline handle& handle::operator=(handle&& other) noexcept {
  if (this != &other) {
    release();
    stream_ = std::exchange(other.stream_, nullptr);
    cublas_ = std::exchange(other.cublas_, nullptr);
  }
  return *this;
}

inline handle::~handle() { release(); }

inline void handle::release() noexcept {
  if (cublas_ != nullptr) static_cast<void>(::cublasDestroy(cublas_));
  if (stream_ != nullptr) static_cast<void>(::cudaStreamDestroy(stream_));
  cublas_ = nullptr;
  stream_ = nullptr;
}

inline void handle::synchronize() const { FUSEMIX_CUDA_CHECK(::cudaStreamSynchronize(stream_)); }

}  // namespace fusemix::cuda
