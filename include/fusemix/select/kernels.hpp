// SPDX-License-Identifier: Apache-2.0
/// @file
/// Kernels of the k-DPP selector: the `Kernel` concepts and the built-in similarity functions.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>

#include <fusemix/core/concepts.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix {

/// Positive semi-definite similarity of two latent rows; `k(a, b) == k(b, a)`.
template <class K, class T>
concept Kernel = Scalar<T> && requires(const K& k, std::span<const T> a, std::span<const T> b) {
  { k(a, b) } -> std::convertible_to<double>;
};

/// A kernel that can also fill a whole row K(Z, z_j) at once (one GEMV for dot-product kernels).
template <class K, class T>
concept RowKernel = Kernel<K, T> && requires(const K& k, const latent_view<T>& z, std::size_t j,
                                             std::span<T> out) { k.row(z, j, out); };

// ---------------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------------

/// A kernel that is a function of the dot product and the two squared norms,
/// `K(a, b) = f(a·b, a·a, b·b)`. A row K(Z, z_j) is then one GEMV over the latent matrix and an
/// elementwise map, with the squared norms computed once; `greedy_kdpp` takes that path.
template <class K>
concept DotProductKernel = requires(const K& k, double ab, double aa, double bb) {
  { k.from_dots(ab, aa, bb) } -> std::convertible_to<double>;
};

/// `K(a, b) = a·b`. Its rank is at most D, so a selection stops after at most D picks.
struct linear_kernel {
  [[nodiscard]] FUSEMIX_HOST_DEVICE double from_dots(double ab, double /*aa*/, double /*bb*/) const noexcept {
    return ab;
  }
  template <Scalar T>
  [[nodiscard]] double operator()(std::span<const T> a, std::span<const T> b) const;
  template <Scalar T>
  void row(const latent_view<T>& z, std::size_t j, std::span<T> out) const;
};

/// `K(a, b) = a·b / (|a|·|b|)`, and 0 when either vector is zero. Rank at most D.
struct cosine_kernel {
  [[nodiscard]] FUSEMIX_HOST_DEVICE double from_dots(double ab, double aa, double bb) const noexcept {
    // one sqrt of the product: the diagonal x / sqrt(x·x) is then exactly 1
    return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
  }
  template <Scalar T>
  [[nodiscard]] double operator()(std::span<const T> a, std::span<const T> b) const;
  template <Scalar T>
  void row(const latent_view<T>& z, std::size_t j, std::span<T> out) const;
};

/// `K(a, b) = (a·b + offset)^degree`. The default `(a·b + 1)²` on L2-normalised latents is the
/// paper's kernel; on the unit sphere in D dimensions its rank is C(D+2, 2) − 1.
/// @pre `offset >= 0` (otherwise the kernel need not be positive semi-definite).
struct polynomial_kernel {
  double offset = 1.0;
  unsigned degree = 2;

  [[nodiscard]] FUSEMIX_HOST_DEVICE double from_dots(double ab, double /*aa*/, double /*bb*/) const noexcept;
  template <Scalar T>
  [[nodiscard]] double operator()(std::span<const T> a, std::span<const T> b) const;
  template <Scalar T>
  void row(const latent_view<T>& z, std::size_t j, std::span<T> out) const;
};

/// `K(a, b) = exp(−gamma·|a − b|²)`, with |a − b|² = a·a + b·b − 2a·b (clamped at 0). Full rank.
/// @pre `gamma > 0`.
struct rbf_kernel {
  double gamma = 1.0;

  [[nodiscard]] FUSEMIX_HOST_DEVICE double from_dots(double ab, double aa, double bb) const noexcept {
    return std::exp(-gamma * std::max(0.0, aa + bb - 2.0 * ab));
  }
  template <Scalar T>
  [[nodiscard]] double operator()(std::span<const T> a, std::span<const T> b) const;
  template <Scalar T>
  void row(const latent_view<T>& z, std::size_t j, std::span<T> out) const;
};

/// A kernel matrix L that the user already has (N × N, row-major, symmetric PSD).
///
/// The "latents" handed to `greedy_kdpp` are then the rows of L itself: item i is row i, and
/// `k(row i, row j)` reads L_ij. The overload `greedy_kdpp(precomputed, k)` does this for you.
///
/// **Example**
///
///     Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> l = ...;
///     fusemix::precomputed_kernel<double> pk(l);
///     auto sel = fusemix::greedy_kdpp(pk, 10);
template <Scalar T>
class precomputed_kernel {
 public:
  /// @throws shape_error if `l` is not square.
  explicit precomputed_kernel(const latent_view<T>& l);
  /// The kernel keeps a view of L, so a temporary matrix would dangle: refused at compile time.
  template <class M>
    requires(!std::is_lvalue_reference_v<M> && !std::is_same_v<std::remove_cvref_t<M>, latent_view<T>>)
  explicit precomputed_kernel(M&&) = delete;

  /// The matrix, as the latents to select from.
  [[nodiscard]] const latent_view<T>& matrix() const noexcept { return l_; }
  /// L_ij, where `a` is row i of L and `b` is row j of L.
  /// @throws shape_error if `b` is not a row of this kernel's matrix.
  [[nodiscard]] double operator()(std::span<const T> a, std::span<const T> b) const;
  /// Copies row `j` of L. @throws shape_error if `z` is not this kernel's matrix.
  void row(const latent_view<T>& z, std::size_t j, std::span<T> out) const;

 private:
  latent_view<T> l_;
};

template <class M>
precomputed_kernel(const M&) -> precomputed_kernel<typename decltype(latent_view(std::declval<const M&>()))::value_type>;

}  // namespace fusemix
