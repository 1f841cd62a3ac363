// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend's storage: Eigen's row-major matrices, aligned flat buffers, views and copies.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include <Eigen/Core>

#include <fusemix/core/concepts.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::cpu {

/// An owning row-major matrix, one sample per row (what `.npy` files hold).
template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// An owning column vector (per-row statistics).
template <class T>
using column_vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// The storage group of `cpu::backend` (`BackendStorage`): types, shapes, views and copies.
template <Scalar T>
class storage {
 public:
  using scalar_type = T;
  /// An owning matrix (activations, gradients of activations).
  using matrix_type = row_matrix<T>;
  /// An owning column vector (per-row statistics).
  using vector_type = column_vector<T>;
  /// Views into flat parameter storage.
  using matrix_map = Eigen::Map<matrix_type>;
  using const_matrix_map = Eigen::Map<const matrix_type>;
  using vector_map = Eigen::Map<vector_type>;
  using const_vector_map = Eigen::Map<const vector_type>;
  /// Flat parameter storage (64-byte aligned, see docs/design.md).
  template <class U>
  using buffer = std::vector<U, detail::aligned_allocator<U>>;
  /// Whether the host can dereference this backend's pointers.
  static constexpr bool host_memory = true;

  template <class M>
  static std::size_t rows(const M& a) noexcept { return static_cast<std::size_t>(a.rows()); }
  template <class M>
  static std::size_t cols(const M& a) noexcept { return static_cast<std::size_t>(a.cols()); }
  /// Gives `a` the shape `r × c`, reallocating only when the shape changes.
  static void resize(matrix_type& a, std::size_t r, std::size_t c) {
    if (rows(a) != r || cols(a) != c) a.resize(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
  }
  static void resize(vector_type& a, std::size_t n) {
    if (static_cast<std::size_t>(a.size()) != n) a.resize(static_cast<Eigen::Index>(n));
  }
  static matrix_map map(T* p, std::size_t r, std::size_t c) noexcept {
    return {p, static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)};
  }
  static const_matrix_map map(const T* p, std::size_t r, std::size_t c) noexcept {
    return {p, static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)};
  }
  static vector_map map(T* p, std::size_t n) noexcept { return {p, static_cast<Eigen::Index>(n)}; }
  static const_vector_map map(const T* p, std::size_t n) noexcept { return {p, static_cast<Eigen::Index>(n)}; }

  /// `n` zeros (a model's parameter or gradient buffer).
  static buffer<T> zero_buffer(std::size_t n) { return buffer<T>(n, T(0)); }
  /// Copies host values to `dst` (the same memory here; the CUDA backend's moves them to the device).
  static void upload(std::span<const T> host, T* dst) { std::copy(host.begin(), host.end(), dst); }
  /// Copies the values at `src` into `host` (of any trivially copyable type: scores, indices).
  template <class U>
  static void download(const U* src, std::span<U> host) { std::copy_n(src, host.size(), host.begin()); }
  /// Copies `n` values from `src` to `dst`.
  static void copy_n(const T* src, std::size_t n, T* dst) { std::copy_n(src, n, dst); }
};

}  // namespace fusemix::cpu
