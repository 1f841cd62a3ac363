// SPDX-License-Identifier: Apache-2.0
/// @file
/// The element-type concept and the latent-matrix view that every layer of the library shares.
#pragma once

#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>

#include <fusemix/core/config.hpp>

namespace fusemix {

/// A floating-point element type (float for speed, double for gradient checks).
template <class T>
concept Scalar = std::floating_point<T>;

/// A non-owning, row-major view of N latents of dimension D (one sample per row).
///
/// The backends meet at this view: it holds a pointer and a shape, nothing of Eigen or CUDA.
///
/// **Example**
///
///     Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> z = ...;
///     fusemix::latent_view<float> v(z.data(), z.rows(), z.cols());
template <Scalar T>
class latent_view {
 public:
  using value_type = T;

  constexpr latent_view() noexcept = default;
  constexpr latent_view(const T* data, std::size_t rows, std::size_t cols) noexcept
      : data_(data), rows_(rows), cols_(cols) {}
  /// Views any row-major contiguous matrix type with `data()`, `rows()` and `cols()` (e.g. Eigen's).
  template <class M>
    requires requires(const M& m) {
      { m.data() } -> std::convertible_to<const T*>;
      m.rows();
      m.cols();
    } && (!std::is_same_v<std::remove_cvref_t<M>, latent_view>)
  constexpr latent_view(const M& m) noexcept  // NOLINT(google-explicit-constructor)
      : data_(m.data()), rows_(static_cast<std::size_t>(m.rows())), cols_(static_cast<std::size_t>(m.cols())) {
    if constexpr (requires { M::IsRowMajor; }) static_assert(M::IsRowMajor || M::ColsAtCompileTime == 1,
                                                             "latent_view needs a row-major matrix");
  }

  [[nodiscard]] constexpr std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] constexpr std::size_t cols() const noexcept { return cols_; }
  [[nodiscard]] constexpr const T* data() const noexcept { return data_; }
  /// Row `i` as a span of `cols()` values.
  [[nodiscard]] constexpr std::span<const T> row(std::size_t i) const noexcept {
    FUSEMIX_ASSERT(i < rows_);
    return {data_ + i * cols_, cols_};
  }

 private:
  const T* data_ = nullptr;
  std::size_t rows_ = 0, cols_ = 0;
};

template <class M>
latent_view(const M&) -> latent_view<std::remove_cv_t<std::remove_pointer_t<decltype(std::declval<const M&>().data())>>>;

}  // namespace fusemix
