// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's loss reductions over a B×B logit matrix (positives on the diagonal), and
/// the plain sum and fill.
#pragma once

#include <cstddef>

#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/elementwise.hpp>
#include <fusemix/backend/cuda/kernels/loss.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>

namespace fusemix::cuda {

/// The loss group of `cuda::backend` (`LossPrimitives`), which is `Derived`. The softmax's row
/// and column statistics are the context's scratch.
template <Scalar T, System S, class Derived>
class loss_ops {
 public:
  /// The symmetric InfoNCE loss over `logits` (B×B, positives on the diagonal) and its gradient
  /// `g`: one pass over the logits for the rows' log-sum-exp, one for the columns', one for `g`.
  template <class L, class G>
  T symmetric_cross_entropy(const L& logits, G& g) const;
  /// The pairwise sigmoid loss over `logits` (B×B; label +1 on the diagonal, −1 elsewhere):
  /// `(1/B)·Σ_ij −log σ(z_ij·l_ij)`, a row's terms summed in double, then the rows. Returns the
  /// loss (waits for it) and writes its gradient with respect to the logits into `g`.
  template <class L, class G>
  T sigmoid_cross_entropy(const L& logits, G& g) const;
  /// `Σ_ij a_ij`, summed in double; waits for the result.
  template <class A>
  T sum(const A& a) const {
    const auto prof = self().ctx().profile("sum");
    return static_cast<T>(
        reduce_n(self().ctx(), a.size(), detail::element_terms<T>{a.data()}, 0.0, detail::sum_of{}));
  }
  /// `y_ij = v` for every element.
  template <class Y>
  void fill(Y& y, T v) const {
    const auto prof = self().ctx().profile("fill");
    for_n(self().ctx(), y.size(), detail::fill_elements<T>{y.data(), v});
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

template <Scalar T, System S, class Derived>
template <class L, class G>
T loss_ops<T, S, Derived>::symmetric_cross_entropy(const L& logits, G& g) const {
  context<S>& c = self().ctx();
  const auto prof = c.profile("symmetric_cross_entropy");
  const std::size_t n = logits.rows();
  constexpr std::size_t rows_per_chunk = 256;
  const std::size_t chunks = (n + rows_per_chunk - 1) / rows_per_chunk;
  T* row_lse = c.template scratch<T>(context<S>::row_stats, n);
  T* col_lse = c.template scratch<T>(context<S>::col_stats, n);
  T* part = c.template scratch<T>(context<S>::col_partials, 2 * chunks * n);
  for_rows(c, n, detail::row_lse_rows<T>{logits.data(), row_lse, n});
  for_n(c, chunks * n, detail::column_lse_partials<T>{logits.data(), part, part + chunks * n, n, rows_per_chunk});
  for_n(c, n, detail::column_lse_combine<T>{part, part + chunks * n, col_lse, n, chunks});
  const T scale = T(0.5) / static_cast<T>(n);
  for_rows(c, n, detail::softmax_gradient_rows<T>{logits.data(), row_lse, col_lse, g.data(), scale, n});
  const double loss =
      reduce_n(c, n, detail::diagonal_terms<T>{logits.data(), row_lse, col_lse, n}, 0.0, detail::sum_of{});
  return static_cast<T>(loss * 0.5 / static_cast<double>(n));
}

template <Scalar T, System S, class Derived>
template <class L, class G>
T loss_ops<T, S, Derived>::sigmoid_cross_entropy(const L& logits, G& g) const {
  context<S>& c = self().ctx();
  const auto prof = c.profile("sigmoid_cross_entropy");
  const std::size_t n = logits.rows();
  double* row_loss = c.template scratch<double>(context<S>::row_stats, n);
  for_rows(c, n, detail::sigmoid_rows<T>{logits.data(), g.data(), row_loss, T(1) / static_cast<T>(n), n});
  const double loss = reduce_n(c, n, detail::element_terms<double>{row_loss}, 0.0, detail::sum_of{});
  return static_cast<T>(loss / static_cast<double>(n));
}

}  // namespace fusemix::cuda
