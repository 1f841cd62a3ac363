// SPDX-License-Identifier: Apache-2.0
/// @file
/// The element-type concept, the latent-matrix view that every layer of the library shares, and
/// `LatentSource`, what the trainer reads pairs from (a view, or files: <fusemix/io/mapped_latents.hpp>).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>

#include <fusemix/core/config.hpp>
#include <fusemix/core/error.hpp>

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
  /// Copies rows `rows[0], rows[1], ...` to consecutive rows of `out` (row-major,
  /// `rows.size() * cols()` values), converted to `U`: the `LatentSource` interface.
  template <Scalar U>
  void gather(std::span<const std::size_t> rows, std::span<U> out) const noexcept {
    FUSEMIX_ASSERT(out.size() == rows.size() * cols_);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const std::span<const T> r = row(rows[i]);
      std::transform(r.begin(), r.end(), out.begin() + static_cast<std::ptrdiff_t>(i * cols_),
                     [](T v) { return static_cast<U>(v); });
    }
  }

 private:
  const T* data_ = nullptr;
  std::size_t rows_ = 0, cols_ = 0;
};

namespace detail {
/// Throws `numeric_error` for the first NaN or infinity in `z`: "`where`: `what` (expected finite
/// values, got V at row R, column C)", rows numbered from `first_row` (where `z` begins in the
/// whole). One scan for every place that refuses non-finite latents or embeddings.
template <Scalar T>
void require_finite(std::string_view where, std::string_view what, const latent_view<T>& z, std::size_t first_row = 0) {
  for (std::size_t i = 0; i < z.rows(); ++i) {
    const std::span<const T> r = z.row(i);
    for (std::size_t c = 0; c < r.size(); ++c)
      if (!std::isfinite(r[c]))
        throw_expected<numeric_error>(where, what, "finite values", concat(r[c], " at row ", first_row + i, ", column ", c));
  }
}
}  // namespace detail

template <class M>
latent_view(const M&) -> latent_view<std::remove_cv_t<std::remove_pointer_t<decltype(std::declval<const M&>().data())>>>;

/// Rows of latents that can be read by index into a buffer of `T`: what `trainer::train_epoch`
/// reads a batch from, so pairs in memory (`latent_view`) and pairs in files
/// (`io::mapped_latents`: memory-mapped `.npy` shards of float16, float32 or float64) train the
/// same way and give the same bits.
///
/// `s.gather(rows, out)` writes row `rows[i]` to `out[i * s.cols() ...]`, converted to `T`; the
/// caller keeps every index below `s.rows()`. A source may also have `s.prefetch(rows)` (a hint
/// that those rows are read next; the trainer calls it one step ahead).
template <class S, class T>
concept LatentSource = Scalar<T> && requires(const S& s, std::span<const std::size_t> rows, std::span<T> out) {
  { s.rows() } -> std::convertible_to<std::size_t>;
  { s.cols() } -> std::convertible_to<std::size_t>;
  s.gather(rows, out);
};

static_assert(LatentSource<latent_view<float>, float> && LatentSource<latent_view<float>, double>);

}  // namespace fusemix
