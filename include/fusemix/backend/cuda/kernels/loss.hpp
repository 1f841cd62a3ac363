// SPDX-License-Identifier: Apache-2.0
/// @file
/// Functors of the CUDA backend's loss reductions over a block of rows of a B×B logit matrix: the
/// symmetric cross-entropy (row log-sum-exp, running column statistics, the diagonal terms, the
/// gradient) and the pairwise sigmoid loss (its per-logit terms are backend/common's).
#pragma once

#include <cstddef>
#include <limits>

#include <fusemix/backend/common/math.hpp>
#include <fusemix/backend/common/sigmoid.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::cuda::detail {

/// Row i's log-sum-exp.
template <class T>
struct row_lse_rows {
  const T* l;
  T* lse;
  std::size_t n;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& g, std::size_t i) const {
    const T* r = l + i * n;
    T m = -std::numeric_limits<T>::infinity();
    for (std::size_t j = g.rank(); j < n; j += g.size()) m = fusemix::detail::max(m, r[j]);
    m = g.max(m);
    T s = 0;
    for (std::size_t j = g.rank(); j < n; j += g.size()) s += fusemix::detail::exp(r[j] - m);
    s = g.sum(s);
    if (g.rank() == 0) lse[i] = m + fusemix::detail::log(s);
  }
};

// The columns' statistics of a block of rows in two passes that read rows (coalesced): partial
// (max, Σexp) over a chunk of rows for every (chunk, column), then the chunks merged per column
// into the running statistics of the blocks before.
template <class T>
struct column_lse_partials {
  const T* l;
  T* part_max;
  T* part_sum;
  std::size_t rows, n, rows_per_chunk;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t e) const {
    const std::size_t chunk = e / n, col = e % n;
    const std::size_t r0 = chunk * rows_per_chunk, r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    T m = -std::numeric_limits<T>::infinity(), s = 0;
    for (std::size_t r = r0; r < r1; ++r) {
      const T v = l[r * n + col];
      if (v > m) {
        s = s * fusemix::detail::exp(m - v) + T(1);
        m = v;
      } else {
        s += fusemix::detail::exp(v - m);
      }
    }
    part_max[e] = m, part_sum[e] = s;
  }
};
template <class T>
struct column_stats_merge {
  const T* part_max;
  const T* part_sum;
  T* col_max;
  T* col_sum;
  std::size_t n, chunks;
  bool first_block;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t col) const {
    T m = first_block ? -std::numeric_limits<T>::infinity() : col_max[col];
    for (std::size_t c = 0; c < chunks; ++c) m = fusemix::detail::max(m, part_max[c * n + col]);
    T s = first_block ? T(0) : col_sum[col] * fusemix::detail::exp(col_max[col] - m);
    for (std::size_t c = 0; c < chunks; ++c)
      s += part_sum[c * n + col] * fusemix::detail::exp(part_max[c * n + col] - m);
    col_max[col] = m, col_sum[col] = s;
  }
};

/// Row i's positive logit, `l[i, first + i]`.
template <class T>
struct block_diagonal {
  const T* l;
  T* diag;
  std::size_t n, first;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t i) const { diag[i] = l[i * n + first + i]; }
};

/// A column's log-sum-exp from its maximum and Σexp.
template <class T>
struct column_lse {
  const T* col_max;
  const T* col_sum;
  T* lse;
  FUSEMIX_HOST_DEVICE void operator()(std::size_t col) const {
    lse[col] = col_max[col] + fusemix::detail::log(col_sum[col]);
  }
};

/// The loss terms of row/column i: (lse_row_i − l_ii) + (lse_col_i − l_ii), in double.
template <class T>
struct diagonal_terms {
  const T* diag;
  const T* row_lse;
  const T* col_lse;
  FUSEMIX_HOST_DEVICE double operator()(std::size_t i) const {
    return static_cast<double>(row_lse[i] - diag[i]) + static_cast<double>(col_lse[i] - diag[i]);
  }
};

/// The gradient of the symmetric cross-entropy with respect to a block of rows `first …` of the
/// logits (`row_lse` from the block's first row).
template <class T>
struct softmax_gradient_rows {
  const T* l;
  const T* row_lse;
  const T* col_lse;
  T* g;
  T scale;
  std::size_t n, first;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& grp, std::size_t i) const {
    for (std::size_t j = grp.rank(); j < n; j += grp.size()) {
      const T v = l[i * n + j];
      T gij = scale * (fusemix::detail::exp(v - row_lse[i]) + fusemix::detail::exp(v - col_lse[j]));
      if (first + i == j) gij -= 2 * scale;
      g[i * n + j] = gij;
    }
  }
};

/// Row i of a block of rows `first …` of the pairwise sigmoid loss: the gradient of every logit,
/// and the row's sum of loss terms in double (in column order on the host, the CPU backend's
/// order).
template <class T>
struct sigmoid_rows {
  const T* l;
  T* g;
  double* row_loss;
  T inv_n;
  std::size_t n, first;
  template <class G>
  FUSEMIX_HOST_DEVICE void operator()(const G& grp, std::size_t i) const {
    double s = 0;
    for (std::size_t j = grp.rank(); j < n; j += grp.size()) {
      const T v = l[i * n + j];
      s += static_cast<double>(fusemix::detail::sigmoid_pair_term(v, first + i == j));
      g[i * n + j] = fusemix::detail::sigmoid_pair_gradient(v, first + i == j, inv_n);
    }
    s = grp.sum(s);
    if (grp.rank() == 0) row_loss[i] = s;
  }
};

}  // namespace fusemix::cuda::detail
