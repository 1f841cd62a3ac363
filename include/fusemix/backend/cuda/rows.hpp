// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's row-wise passes: the mixup gather, bias rows and their gradient (column
/// sums), row normalisation, finiteness.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>

#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/gemm.hpp>
#include <fusemix/backend/cuda/kernels/elementwise.hpp>
#include <fusemix/backend/cuda/kernels/rows.hpp>
#include <fusemix/backend/cuda/memory.hpp>
#include <fusemix/backend/cuda/storage.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cuda {
namespace detail {

/// `out = Σ_rows a` (with `accumulate`, `out += Σ_rows a`) for a `rows × cols` row-major `a` in
/// the memory of `ctx`'s system: a GEMV with a vector of ones on a GPU. (The gradient of a bias,
/// and LayerNorm's dγ and dβ.)
template <Scalar T, System S>
void column_sums(context<S>& ctx, const T* a, std::size_t rows, std::size_t cols, T* out, bool accumulate = false);

}  // namespace detail

/// The row group of `cuda::backend` (`RowOps`), which is `Derived`.
template <Scalar T, System S, class Derived>
class row_ops {
 public:
  /// `out_i = lambda · z[ia_i] + (1 − lambda) · z[ib_i]` (the indices are host spans, uploaded).
  template <class Z, class Out>
  void gather_mix(const Z& z, std::span<const std::size_t> ia, std::span<const std::size_t> ib, T lambda,
                  Out& out) const {
    context<S>& c = self().ctx();
    const auto prof = c.profile("gather_mix");
    const std::size_t* da = c.indices(context<S>::index_a, ia);
    const std::size_t* db = c.indices(context<S>::index_b, ib);
    for_rows(c, ia.size(), detail::gather_mix_rows<T>{z.data(), da, db, lambda, out.data(), z.cols()});
  }
  /// Adds the vector `b` to every row of `y`.
  template <class Y, class V>
  void add_row_vector(Y& y, const V& b) const {
    const auto prof = self().ctx().profile("add_row_vector");
    for_rows(self().ctx(), y.rows(), detail::add_row_vector_rows<T>{y.data(), b.data(), y.cols()});
  }
  /// `out = Σ_rows dy` (a GEMV with a vector of ones on a GPU); with `accumulate`, `out += Σ_rows dy`.
  template <class M, class V>
  void column_sums(const M& dy, V& out, bool accumulate = false) const {
    detail::column_sums(self().ctx(), dy.data(), dy.rows(), dy.cols(), out.data(), accumulate);
  }
  /// Whether `a` holds a NaN or an infinity; if so, where the first one is (row-major order).
  template <class A>
  bool find_non_finite(const A& a, std::size_t& row, std::size_t& col) const {
    const auto prof = self().ctx().profile("find_non_finite");
    const std::size_t n = a.rows() * a.cols();
    const std::size_t e = find_first(self().ctx(), n, detail::not_finite<T>{a.data()});
    if (e >= n) return false;
    row = e / a.cols(), col = e % a.cols();
    return true;
  }
  /// `n_i = p_i / max(‖p_i‖, eps)`, keeping each row's norm.
  template <class P, class N>
  void normalize_rows_forward(const P& p, T eps, N& n, vector<T, S>& norms) const {
    const auto prof = self().ctx().profile("normalize_rows_forward");
    storage<T, S>::resize(norms, p.rows());
    for_rows(self().ctx(), p.rows(),
             detail::normalize_rows_forward_rows<T>{p.data(), eps, n.data(), norms.data(), p.cols()});
  }
  /// Gradient of `normalize_rows_forward`.
  template <class Dn, class N, class Dp>
  void normalize_rows_backward(const Dn& dn, const N& n, const vector<T, S>& norms, T eps, Dp& dp) const {
    const auto prof = self().ctx().profile("normalize_rows_backward");
    for_rows(self().ctx(), n.rows(),
             detail::normalize_rows_backward_rows<T>{dn.data(), n.data(), norms.data(), eps, dp.data(), n.cols()});
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

namespace detail {

template <Scalar T, System S>
void column_sums(context<S>& ctx, const T* a, std::size_t rows, std::size_t cols, T* out, bool accumulate) {
  if (cols == 0) return;
  const auto prof = ctx.profile("column_sums");
  if (rows == 0) {  // (a GEMV over no rows returns without writing)
    if (!accumulate) for_n(ctx, cols, fill_elements<T>{out, T(0)});
  } else if constexpr (std::is_same_v<S, host_system>) {
    for_n(ctx, cols, column_sums_columns<T>{a, out, rows, cols, accumulate});
  } else {
    gemm_ops<S>::column_sums(ctx, a, rows, cols, out, accumulate);
  }
}

}  // namespace detail

}  // namespace fusemix::cuda
