// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CPU backend: the primitives every layer is written against, implemented with Eigen.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include <Eigen/Core>

#include <fusemix/concepts.hpp>
#include <fusemix/detail/math.hpp>
#include <fusemix/random.hpp>

namespace fusemix {

/// Which elements a dropout draw keeps: a pure function of `(seed, draw, element index)`.
/// `p` is the probability of dropping; kept elements are scaled by `1 / (1 - p)` (inverted dropout).
struct dropout_key {
  std::uint64_t seed = 0;
  std::uint64_t draw = 0;
  double p = 0;
};

namespace cpu {

/// The CPU backend over Eigen: dense row-major matrices, one sample per row.
///
/// Layers, adapters and (later) the loss and trainer call only these primitives, so another
/// backend (CUDA) supplies the same members and the algorithms are not written twice.
/// Every primitive overwrites its outputs (no accumulation) and never allocates unless an
/// output must change shape.
///
/// @tparam T `float` for training, `double` for gradient checks.
template <Scalar T>
class backend {
 public:
  using scalar_type = T;
  /// An owning matrix (activations, gradients of activations).
  using matrix_type = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  /// An owning column vector (per-row statistics).
  using vector_type = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  /// Views into flat parameter storage.
  using matrix_map = Eigen::Map<matrix_type>;
  using const_matrix_map = Eigen::Map<const matrix_type>;
  using vector_map = Eigen::Map<vector_type>;
  using const_vector_map = Eigen::Map<const vector_type>;

  // Shapes and storage ---------------------------------------------------------------------

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

  // Dense linear algebra -------------------------------------------------------------------

  /// `c = alpha · op(a) · op(b) + beta · c`, where `op(m)` is `m` or `mᵀ`.
  template <class A, class Bm, class C>
  void gemm(T alpha, const A& a, bool trans_a, const Bm& b, bool trans_b, T beta, C& c) const {
    if (beta == T(0))
      c.setZero();
    else if (beta != T(1))
      c *= beta;
    if (!trans_a && !trans_b)
      c.noalias() += alpha * a * b;
    else if (!trans_a && trans_b)
      c.noalias() += alpha * a * b.transpose();
    else if (trans_a && !trans_b)
      c.noalias() += alpha * a.transpose() * b;
    else
      c.noalias() += alpha * a.transpose() * b.transpose();
  }
  /// `y += alpha · x`.
  template <class X, class Y>
  void axpy(T alpha, const X& x, Y& y) const { y.noalias() += alpha * x; }
  /// `y = x`.
  template <class X, class Y>
  void copy(const X& x, Y& y) const { y = x; }

  // Rows -----------------------------------------------------------------------------------

  /// `out_i = lambda · z[ia_i] + (1 − lambda) · z[ib_i]`: FuseMix's mixup folded into the gather
  /// of a batch's rows (lambda = 1 with ia = ib is a plain gather).
  template <class Z, class Out>
  void gather_mix(const Z& z, std::span<const std::size_t> ia, std::span<const std::size_t> ib, T lambda,
                  Out& out) const {
    for (std::size_t i = 0; i < ia.size(); ++i) {
      const auto a = static_cast<Eigen::Index>(ia[i]), b = static_cast<Eigen::Index>(ib[i]);
      if (lambda == T(1))
        out.row(static_cast<Eigen::Index>(i)) = z.row(a);
      else
        out.row(static_cast<Eigen::Index>(i)) = lambda * z.row(a) + (T(1) - lambda) * z.row(b);
    }
  }
  /// `n_i = p_i / max(‖p_i‖, eps)` (as `F.normalize`), keeping each row's norm for backward.
  template <class P, class N>
  void normalize_rows_forward(const P& p, T eps, N& n, vector_type& norms) const {
    resize(norms, static_cast<std::size_t>(p.rows()));
    for (Eigen::Index i = 0; i < p.rows(); ++i) {
      norms[i] = p.row(i).norm();
      n.row(i) = p.row(i) / std::max(norms[i], eps);
    }
  }
  /// Gradient of `normalize_rows_forward`: `dp_i = (dn_i − n_i (n_i·dn_i)) / ‖p_i‖`, or
  /// `dn_i / eps` for a row whose norm was clamped to eps.
  template <class Dn, class N, class Dp>
  void normalize_rows_backward(const Dn& dn, const N& n, const vector_type& norms, T eps, Dp& dp) const {
    for (Eigen::Index i = 0; i < n.rows(); ++i) {
      if (norms[i] > eps)
        dp.row(i) = (dn.row(i) - n.row(i) * n.row(i).dot(dn.row(i))) / norms[i];
      else
        dp.row(i) = dn.row(i) / eps;
    }
  }
  /// The symmetric InfoNCE loss over `logits` (B×B, positives on the diagonal):
  /// `½(mean_i CE(row i, i) + mean_j CE(column j, j))`, with log-sum-exp in each direction.
  /// Returns the loss and writes its gradient with respect to the logits into `g`.
  template <class L, class G>
  T symmetric_cross_entropy(const L& logits, G& g) const {
    const Eigen::Index n = logits.rows();
    vector_type row_max = logits.rowwise().maxCoeff(), col_max = logits.colwise().maxCoeff().transpose();
    vector_type row_sum = vector_type::Zero(n), col_sum = vector_type::Zero(n);
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < n; ++j) {
        row_sum[i] += std::exp(logits(i, j) - row_max[i]);
        col_sum[j] += std::exp(logits(i, j) - col_max[j]);
      }
    double loss = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      const T row_lse = row_max[i] + std::log(row_sum[i]), col_lse = col_max[i] + std::log(col_sum[i]);
      loss += static_cast<double>(row_lse - logits(i, i)) + static_cast<double>(col_lse - logits(i, i));
      row_sum[i] = row_lse;  // reuse as the log-normaliser
      col_sum[i] = col_lse;
    }
    const T scale = T(0.5) / static_cast<T>(n);
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < n; ++j)
        g(i, j) = scale * (std::exp(logits(i, j) - row_sum[i]) + std::exp(logits(i, j) - col_sum[j]) -
                           (i == j ? T(2) : T(0)));
    return static_cast<T>(loss * 0.5 / static_cast<double>(n));
  }
  /// Whether `a` holds a NaN or an infinity; if so, where the first one is (row-major order).
  template <class A>
  bool find_non_finite(const A& a, std::size_t& row, std::size_t& col) const {
    if (a.allFinite()) return false;
    for (Eigen::Index i = 0; i < a.rows(); ++i)
      for (Eigen::Index j = 0; j < a.cols(); ++j)
        if (!std::isfinite(a(i, j))) {
          row = static_cast<std::size_t>(i), col = static_cast<std::size_t>(j);
          return true;
        }
    return false;
  }
  /// `Σ_ij a_ij · b_ij`.
  template <class A, class Bm>
  T dot(const A& a, const Bm& b) const { return a.cwiseProduct(b).sum(); }
  /// `y = alpha · y`.
  template <class Y>
  void scale(T alpha, Y& y) const { y *= alpha; }

  // Bias -----------------------------------------------------------------------------------

  /// Adds the vector `b` to every row of `y`.
  template <class Y, class V>
  void add_row_vector(Y& y, const V& b) const { y.rowwise() += b.transpose(); }
  /// `out = Σ_rows dy` (the gradient of a bias).
  template <class M, class V>
  void column_sums(const M& dy, V& out) const { out.noalias() = dy.colwise().sum().transpose(); }

  // LayerNorm over each row ----------------------------------------------------------------

  /// `y = (x − mean) · rstd · gamma + beta` per row; saves `mean` and `rstd = 1/√(var + eps)`
  /// (biased variance, as PyTorch) for backward.
  template <class X, class G, class Bv, class Y>
  void layer_norm_forward(const X& x, const G& gamma, const Bv& beta, T eps, Y& y, vector_type& mean,
                          vector_type& rstd) const {
    const Eigen::Index n = x.rows(), d = x.cols();
    resize(mean, static_cast<std::size_t>(n));
    resize(rstd, static_cast<std::size_t>(n));
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto row = x.row(i);
      const T mu = row.mean();
      const T var = (row.array() - mu).square().sum() / static_cast<T>(d);
      const T r = T(1) / std::sqrt(var + eps);
      mean[i] = mu;
      rstd[i] = r;
      y.row(i) = ((row.array() - mu) * r * gamma.transpose().array() + beta.transpose().array()).matrix();
    }
  }
  /// Gradients of LayerNorm: `dx`, and `dgamma`, `dbeta` summed over rows.
  template <class Dy, class X, class G, class Dx, class Dg, class Db>
  void layer_norm_backward(const Dy& dy, const X& x, const G& gamma, const vector_type& mean,
                           const vector_type& rstd, Dx& dx, Dg& dgamma, Db& dbeta) const {
    const Eigen::Index n = x.rows(), d = x.cols();
    dgamma.setZero();
    dbeta.setZero();
    Eigen::Array<T, 1, Eigen::Dynamic> xhat(d), g(d);
    for (Eigen::Index i = 0; i < n; ++i) {
      xhat = (x.row(i).array() - mean[i]) * rstd[i];
      g = dy.row(i).array() * gamma.transpose().array();
      dgamma.transpose().array() += dy.row(i).array() * xhat;
      dbeta.transpose().array() += dy.row(i).array();
      const T mean_g = g.mean();
      const T mean_gx = (g * xhat).mean();
      dx.row(i) = (rstd[i] * (g - mean_g - xhat * mean_gx)).matrix();
    }
  }

  // Activations ----------------------------------------------------------------------------

  /// `y = GELU(x)` (exact erf form).
  template <class X, class Y>
  void gelu_forward(const X& x, Y& y) const {
    y = x.unaryExpr([](T v) { return detail::gelu(v); });
  }
  /// `dx = dy · GELU'(x)`.
  template <class Dy, class X, class Dx>
  void gelu_backward(const Dy& dy, const X& x, Dx& dx) const {
    dx = dy.binaryExpr(x, [](T g, T v) { return g * detail::gelu_grad(v); });
  }
  /// `y = mask ⊙ x / (1 − p)` with the mask of `key`.
  template <class X, class Y>
  void dropout_forward(const X& x, const dropout_key& key, Y& y) const {
    for_each_mask(key, x.size(), [&](std::size_t i, T scale) { y.data()[i] = x.data()[i] * scale; });
  }
  /// `dx = mask ⊙ dy / (1 − p)`, regenerating the mask of `key`.
  template <class Dy, class Dx>
  void dropout_backward(const Dy& dy, const dropout_key& key, Dx& dx) const {
    dropout_forward(dy, key, dx);
  }
  /// Fused `a += b` (row-wise bias), `h = dropout(GELU(a))`, in one pass; `a` keeps the
  /// pre-activation that backward needs.
  template <class A, class V, class H>
  void bias_gelu_dropout_forward(A& a, const V& b, const dropout_key& key, H& h) const {
    const std::size_t width = static_cast<std::size_t>(a.cols());
    const T* bias = b.data();
    T* pa = a.data();
    T* ph = h.data();
    for_each_mask(key, static_cast<std::size_t>(a.size()), [&](std::size_t i, T scale) {
      const T v = pa[i] + bias[i % width];
      pa[i] = v;
      ph[i] = scale == T(0) ? T(0) : detail::gelu(v) * scale;
    });
  }
  /// `da = dh ⊙ mask / (1 − p) ⊙ GELU'(a)`.
  template <class Dh, class A, class Da>
  void gelu_dropout_backward(const Dh& dh, const A& a, const dropout_key& key, Da& da) const {
    const T* pdh = dh.data();
    const T* pa = a.data();
    T* pda = da.data();
    for_each_mask(key, static_cast<std::size_t>(a.size()), [&](std::size_t i, T scale) {
      pda[i] = scale == T(0) ? T(0) : pdh[i] * scale * detail::gelu_grad(pa[i]);
    });
  }

 private:
  // Calls f(i, scale) for i in [0, n): scale is 0 for dropped elements, 1/(1-p) for kept ones
  // (1 everywhere when p == 0). One Philox block serves four consecutive elements.
  template <class F>
  static void for_each_mask(const dropout_key& key, std::size_t n, F&& f) {
    if (key.p <= 0.0) {
      for (std::size_t i = 0; i < n; ++i) f(i, T(1));
      return;
    }
    const T keep_scale = key.p >= 1.0 ? T(0) : T(1) / (T(1) - static_cast<T>(key.p));
    const std::array<std::uint32_t, 2> k{static_cast<std::uint32_t>(key.seed),
                                         static_cast<std::uint32_t>(key.seed >> 32)};
    for (std::size_t block = 0; block * 4 < n; ++block) {
      const auto r = philox4x32({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                 static_cast<std::uint32_t>(key.draw), static_cast<std::uint32_t>(key.draw >> 32)},
                                k);
      for (std::size_t j = 0; j < 4 && block * 4 + j < n; ++j)
        f(block * 4 + j, static_cast<double>(uniform_float(r[j])) >= key.p ? keep_scale : T(0));
    }
  }
};

}  // namespace cpu

/// The CPU matrix: dense, row-major, one sample per row (what `.npy` files hold).
template <Scalar T = float>
using matrix = typename cpu::backend<T>::matrix_type;

}  // namespace fusemix
