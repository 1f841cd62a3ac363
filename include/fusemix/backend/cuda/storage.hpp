// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's storage: the context every group of primitives reaches through, the
/// matrices and buffers of backend memory, views, and the copies between host and backend.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/elementwise.hpp>
#include <fusemix/backend/cuda/memory.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cuda {

/// The storage group of `cuda::backend` (`BackendStorage`): types, shapes, views and copies, and
/// the shared context (stream, cuBLAS handle, scratch) that the other groups run on.
template <Scalar T, System S>
class storage {
 public:
  static_assert(detail::available<S>);
  using system_type = S;
  using scalar_type = T;
  using context_type = context<S>;
  using matrix_type = matrix<T, S>;
  using vector_type = vector<T, S>;
  using matrix_map = matrix_ref<T>;
  using const_matrix_map = matrix_ref<const T>;
  using vector_map = vector_ref<T>;
  using const_vector_map = vector_ref<const T>;
  /// Flat parameter storage in backend memory.
  template <class U>
  using buffer = array<U, S>;
  /// Whether the host can dereference this backend's pointers.
  static constexpr bool host_memory = std::is_same_v<S, host_system>;

  /// A backend on the process-wide context (`context<S>::shared()`).
  /// @throws device_error on a GPU when no CUDA device can be used.
  storage() : ctx_(context<S>::shared()) {}
  explicit storage(std::shared_ptr<context<S>> c) : ctx_(std::move(c)) {}

  [[nodiscard]] context<S>& ctx() const noexcept { return *ctx_; }
  [[nodiscard]] const std::shared_ptr<context<S>>& shared_context() const noexcept { return ctx_; }

  template <class M>
  static std::size_t rows(const M& a) noexcept { return a.rows(); }
  template <class M>
  static std::size_t cols(const M& a) noexcept { return a.cols(); }
  static void resize(matrix_type& a, std::size_t r, std::size_t c) { a.resize(r, c); }
  static void resize(vector_type& a, std::size_t n) { a.resize(n); }
  static matrix_map map(T* p, std::size_t r, std::size_t c) noexcept { return {p, r, c}; }
  static const_matrix_map map(const T* p, std::size_t r, std::size_t c) noexcept { return {p, r, c}; }
  static vector_map map(T* p, std::size_t n) noexcept { return {p, n}; }
  static const_vector_map map(const T* p, std::size_t n) noexcept { return {p, n}; }

  /// `n` zeros in backend memory (a model's parameter or gradient buffer).
  buffer<T> zero_buffer(std::size_t n) const {
    buffer<T> b(n);
    for_n(*ctx_, n, detail::fill_elements<T>{b.data(), T(0)});
    return b;
  }
  /// Copies host values to backend memory at `dst` and waits.
  void upload(std::span<const T> host, T* dst) const { copy_to_device(*ctx_, host.data(), dst, host.size()); }
  /// Page-locked host room for `n` values on their way to backend memory (`context::staging`:
  /// two buffers in turn, so filling one overlaps the other's copy).
  std::span<T> staging(std::size_t n) const {
    const std::span<std::byte> b = ctx_->staging(n * sizeof(T));
    return {reinterpret_cast<T*>(b.data()), n};
  }
  /// Queues the copy of `host`, the span `staging` returned last, to `dst`; does not wait.
  void upload_staged(std::span<const T> host, T* dst) const { ctx_->upload_staged(dst, host.size() * sizeof(T)); }
  /// Copies backend memory at `src` into `host`, after the work queued before (of any trivially
  /// copyable type: scores, indices).
  template <class U>
  void download(const U* src, std::span<U> host) const { copy_to_host(*ctx_, src, host.data(), host.size()); }
  /// Copies `n` elements within backend memory.
  void copy_n(const T* src, std::size_t n, T* dst) const { copy_within(*ctx_, src, dst, n); }
  /// A row-major host matrix (anything with `data()`, `rows()`, `cols()`) in backend memory.
  template <class M>
  matrix_type upload(const M& host) const {
    matrix_type m(static_cast<std::size_t>(host.rows()), static_cast<std::size_t>(host.cols()));
    upload(std::span<const T>(host.data(), m.size()), m.data());
    return m;
  }
  /// The values of `a` (row-major) on the host.
  template <class M>
  std::vector<T> download(const M& a) const {
    std::vector<T> h(a.rows() * a.cols());
    download(a.data(), std::span<T>(h));
    return h;
  }

 private:
  std::shared_ptr<context<S>> ctx_;
};

}  // namespace fusemix::cuda
