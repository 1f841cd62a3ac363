// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's memory: the one owning buffer (`array`), the matrix and vector built on
/// it, and non-owning views (`matrix_ref`, `vector_ref`).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::cuda {

/// How many blocks of backend memory this process has allocated so far, on either system
/// (arrays, matrices, scratch, Thrust's temporaries): a warm training step adds none.
[[nodiscard]] inline std::uint64_t allocations() noexcept;

/// Owning, uninitialised storage for `size()` elements of `T` in the memory of system `S`
/// (device memory on a GPU, 64-byte-aligned host memory on the host). Copies are deep (and
/// synchronous); moves steal.
///
/// **Example**
///
///     fusemix::cuda::array<float> z(n * d);                      // device memory
///     fusemix::cuda::copy_to_device(*ctx, host.data(), z.data(), z.size());
template <class T, System S = device_system>
  requires std::is_trivially_copyable_v<T>
class array {
 public:
  static_assert(detail::available<S>);
  using value_type = T;
  using system_type = S;

  array() noexcept = default;
  /// Allocates `n` uninitialised elements (nothing when `n == 0`).
  /// @throws std::bad_array_new_length if `n * sizeof(T)` overflows; std::bad_alloc or
  ///         std::system_error (category "cuda") if the allocation fails.
  explicit array(std::size_t n);
  array(const array& o);
  array& operator=(const array& o) {
    if (this != &o) *this = array(o);
    return *this;
  }
  array(array&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  array& operator=(array&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~array() { release(); }

  /// The backend pointer (null when empty); on a GPU, dereference it only in device code.
  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

 private:
  void release() noexcept;

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A non-owning row-major view of backend memory (`T` may be const); the backend's `matrix_map`.
template <class T>
class matrix_ref {
 public:
  using value_type = std::remove_const_t<T>;
  matrix_ref() noexcept = default;
  matrix_ref(T* p, std::size_t r, std::size_t c) noexcept : p_(p), r_(r), c_(c) {}
  template <class U>
    requires std::is_convertible_v<U*, T*>
  matrix_ref(const matrix_ref<U>& o) noexcept : p_(o.data()), r_(o.rows()), c_(o.cols()) {}  // NOLINT
  [[nodiscard]] T* data() const noexcept { return p_; }
  [[nodiscard]] std::size_t rows() const noexcept { return r_; }
  [[nodiscard]] std::size_t cols() const noexcept { return c_; }
  [[nodiscard]] std::size_t size() const noexcept { return r_ * c_; }

 private:
  T* p_ = nullptr;
  std::size_t r_ = 0, c_ = 0;
};

/// A non-owning view of a vector in backend memory (`T` may be const); the backend's `vector_map`.
template <class T>
class vector_ref {
 public:
  using value_type = std::remove_const_t<T>;
  vector_ref(T* p, std::size_t n) noexcept : p_(p), n_(n) {}
  [[nodiscard]] T* data() const noexcept { return p_; }
  [[nodiscard]] std::size_t size() const noexcept { return n_; }
  [[nodiscard]] std::size_t rows() const noexcept { return n_; }
  [[nodiscard]] std::size_t cols() const noexcept { return 1; }

 private:
  T* p_;
  std::size_t n_;
};

/// An owning row-major matrix in the memory of system `S` (uninitialised after `resize`).
template <Scalar T, System S = device_system>
class matrix {
 public:
  using value_type = T;
  matrix() = default;
  matrix(std::size_t r, std::size_t c) : a_(r * c), r_(r), c_(c) {}
  [[nodiscard]] T* data() noexcept { return a_.data(); }
  [[nodiscard]] const T* data() const noexcept { return a_.data(); }
  [[nodiscard]] std::size_t rows() const noexcept { return r_; }
  [[nodiscard]] std::size_t cols() const noexcept { return c_; }
  [[nodiscard]] std::size_t size() const noexcept { return r_ * c_; }
  /// Gives the matrix the shape `r × c`, reallocating only when it needs more elements than it
  /// has held (so a shorter last slice of a batch, then a full one again, allocates nothing).
  void resize(std::size_t r, std::size_t c) {
    if (r * c > a_.size()) a_ = array<T, S>(r * c);
    r_ = r, c_ = c;
  }

 private:
  array<T, S> a_;
  std::size_t r_ = 0, c_ = 0;
};

/// An owning vector in the memory of system `S` (uninitialised after `resize`).
template <Scalar T, System S = device_system>
class vector {
 public:
  using value_type = T;
  [[nodiscard]] T* data() noexcept { return a_.data(); }
  [[nodiscard]] const T* data() const noexcept { return a_.data(); }
  [[nodiscard]] std::size_t size() const noexcept { return n_; }
  [[nodiscard]] std::size_t rows() const noexcept { return n_; }
  [[nodiscard]] std::size_t cols() const noexcept { return 1; }
  /// Gives the vector `n` elements, reallocating only when it needs more than it has held.
  void resize(std::size_t n) {
    if (n > a_.size()) a_ = array<T, S>(n);
    n_ = n;
  }

 private:
  array<T, S> a_;
  std::size_t n_ = 0;
};

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

namespace detail {

inline std::atomic<std::uint64_t>& allocation_counter() noexcept {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

/// Allocation and whole-buffer copies of a system's memory.
template <class S>
struct memory : unavailable_system<S> {};

template <>
struct memory<host_system> {
  static void* allocate(std::size_t bytes) { return ::operator new(bytes, std::align_val_t{buffer_alignment}); }
  static void free(void* p) noexcept { ::operator delete(p, std::align_val_t{buffer_alignment}); }
  static void copy(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
};

#if defined(__CUDACC__)
template <>
struct memory<device_system> {
  static void* allocate(std::size_t bytes) {
    void* p = nullptr;
    FUSEMIX_CUDA_CHECK(::cudaMalloc(&p, bytes));
    return p;
  }
  static void free(void* p) noexcept { static_cast<void>(::cudaFree(p)); }
  // Synchronous (the legacy default stream, which waits for the backend's blocking stream).
  static void copy(void* dst, const void* src, std::size_t bytes) {
    FUSEMIX_CUDA_CHECK(::cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
  }
};
#endif

}  // namespace detail

inline std::uint64_t allocations() noexcept { return detail::allocation_counter().load(std::memory_order_relaxed); }

template <class T, System S>
  requires std::is_trivially_copyable_v<T>
array<T, S>::array(std::size_t n) {
  if (n == 0) return;
  if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
  data_ = static_cast<T*>(detail::memory<S>::allocate(n * sizeof(T)));
  size_ = n;
  detail::allocation_counter().fetch_add(1, std::memory_order_relaxed);
}

template <class T, System S>
  requires std::is_trivially_copyable_v<T>
array<T, S>::array(const array& o) : array(o.size_) {
  if (size_ != 0) detail::memory<S>::copy(data_, o.data_, size_ * sizeof(T));
}

template <class T, System S>
  requires std::is_trivially_copyable_v<T>
void array<T, S>::release() noexcept {
  if (data_ != nullptr) detail::memory<S>::free(data_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace fusemix::cuda
