// SPDX-License-Identifier: Apache-2.0
// The CPU backend's row and elementwise passes on several threads (backend/cpu/parallel.hpp): at
// sizes large enough to be shared out, every pass gives the same bits at 1, 2 and 3 threads, and
// those bits are the right values (against double-precision formulas written here), so a pass
// that skipped its pieces or summed them in a thread-dependent order fails. Odd sizes: column runs
// and vector chunks end part-way, rows are not aligned to the SIMD width.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/optim/adamw.hpp>

#include "gradcheck.hpp"
#include "loss_blocks.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fm = fusemix;
namespace cpu = fusemix::cpu;
using fm::test::dmatrix;

namespace {

using matrix = fm::matrix<float>;
using vector = cpu::column_vector<float>;

// Restores the thread count when a test case ends.
struct keep_threads {
  int saved = cpu::threads();
  ~keep_threads() { cpu::set_threads(saved); }
};

// What a pass wrote, as bytes, to compare bit for bit.
struct bits {
  std::vector<unsigned char> bytes;
  template <class M>
  void add(const M& m) {
    const auto* p = reinterpret_cast<const unsigned char*>(m.data());
    bytes.insert(bytes.end(), p, p + sizeof(*m.data()) * static_cast<std::size_t>(m.size()));
  }
  void add(double x) {
    const auto* p = reinterpret_cast<const unsigned char*>(&x);
    bytes.insert(bytes.end(), p, p + sizeof x);
  }
};

// Runs `pass` at 1, 2 and 3 threads and checks that it writes the same bits each time. `pass`
// returns what it wrote; the 1-thread run's values are checked by `pass` itself.
void same_bits_at_every_thread_count(const std::function<bits(int)>& pass) {
  const keep_threads keep;
  cpu::set_threads(1);
  const bits one = pass(1);
  BOOST_TEST_REQUIRE(!one.bytes.empty());
  for (const int t : {2, 3}) {
    cpu::set_threads(t);
    BOOST_TEST((pass(t).bytes == one.bytes), t << " threads: not the bits of 1 thread");
  }
}

matrix random(Eigen::Index r, Eigen::Index c, std::uint64_t seed, double scale = 1.0) {
  return fm::test::random_matrix(static_cast<std::size_t>(r), static_cast<std::size_t>(c), seed, scale).cast<float>();
}
double max_error(const dmatrix& got, const dmatrix& want) { return (got - want).cwiseAbs().maxCoeff(); }
double gelu(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_grad(double x) {
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}

// 389 × 283: 110,087 elements, enough work for three threads (see cpu::min_parallel_work).
constexpr Eigen::Index rows = 389, cols = 283;

}  // namespace

BOOST_AUTO_TEST_SUITE(parallel)

BOOST_AUTO_TEST_CASE(every_piece_runs_once_and_large_passes_use_the_threads) {
  const keep_threads keep;
  for (const int t : {1, 2, 3}) {
    cpu::set_threads(t);
    for (const Eigen::Index pieces : {Eigen::Index{1}, Eigen::Index{7}, Eigen::Index{1000}}) {
      std::vector<std::atomic<int>> seen(static_cast<std::size_t>(pieces));
      std::vector<std::atomic<int>> by_thread(8);
      cpu::for_each_piece(pieces, 1000, [&](Eigen::Index i) {
        seen[static_cast<std::size_t>(i)].fetch_add(1);
#if defined(_OPENMP)
        by_thread[static_cast<std::size_t>(omp_get_thread_num())].fetch_add(1);
#endif
      });
      BOOST_TEST(std::all_of(seen.begin(), seen.end(), [](const auto& s) { return s.load() == 1; }),
                 pieces << " pieces at " << t << " threads: a piece missed or repeated");
#if defined(_OPENMP)
      // 1,000 pieces of 1,000 elements: worth every thread; 7 small ones: not worth a second.
      const auto used = std::count_if(by_thread.begin(), by_thread.end(), [](const auto& s) { return s.load() > 0; });
      const long want = pieces == 1000 ? t : 1;
      BOOST_TEST(used == want, pieces << " pieces at " << t << " threads ran on " << used << " threads");
#endif
    }
  }
}

BOOST_AUTO_TEST_CASE(layer_norm_forward_and_backward) {
  const matrix x = random(rows, cols, 1, 2.0), dy = random(rows, cols, 2);
  const vector gamma = random(cols, 1, 3).col(0), beta = random(cols, 1, 4).col(0);
  same_bits_at_every_thread_count([&](int t) {
    cpu::backend<float> be;
    matrix y(rows, cols), dx(rows, cols);
    vector mean, rstd, dgamma(cols), dbeta(cols);
    be.layer_norm_forward(x, gamma, beta, 1e-5f, y, mean, rstd);
    be.layer_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta);
    if (t == 1) {
      const dmatrix xd = x.cast<double>(), dyd = dy.cast<double>();
      const Eigen::VectorXd g = gamma.cast<double>(), b = beta.cast<double>();
      dmatrix want_y(rows, cols), want_dx(rows, cols);
      Eigen::VectorXd want_dg = Eigen::VectorXd::Zero(cols), want_db = Eigen::VectorXd::Zero(cols);
      for (Eigen::Index i = 0; i < rows; ++i) {
        const double mu = xd.row(i).mean();
        const double r = 1 / std::sqrt((xd.row(i).array() - mu).square().mean() + 1e-5);
        const Eigen::RowVectorXd xhat = (xd.row(i).array() - mu) * r;
        want_y.row(i) = xhat.array() * g.transpose().array() + b.transpose().array();
        const Eigen::RowVectorXd gg = dyd.row(i).array() * g.transpose().array();
        want_dx.row(i) = r * (gg.array() - gg.mean() - xhat.array() * gg.cwiseProduct(xhat).mean());
        want_dg += dyd.row(i).cwiseProduct(xhat).transpose();
        want_db += dyd.row(i).transpose();
      }
      BOOST_TEST(max_error(y.cast<double>(), want_y) < 1e-4);
      BOOST_TEST(max_error(dx.cast<double>(), want_dx) < 1e-4);
      BOOST_TEST(max_error(dgamma.cast<double>(), want_dg) < 1e-3);
      BOOST_TEST(max_error(dbeta.cast<double>(), want_db) < 1e-3);
    }
    bits out;
    out.add(y), out.add(mean), out.add(rstd), out.add(dx), out.add(dgamma), out.add(dbeta);
    return out;
  });
}

// A first layer's parameter gradients (fusion_adapter::backward_parameters): dW by rows, dγ and
// dβ by column runs down the rows; written, then accumulated.
BOOST_AUTO_TEST_CASE(layer_norm_linear_gradients) {
  const matrix m0 = random(rows, cols, 21), w = random(rows, cols, 22);
  const vector gamma = random(cols, 1, 23).col(0), beta = random(cols, 1, 24).col(0), s = random(rows, 1, 25).col(0);
  same_bits_at_every_thread_count([&](int t) {
    cpu::backend<float> be;
    matrix m = m0, dw(rows, cols);
    vector db(rows), dgamma(cols), dbeta(cols);
    be.layer_norm_linear_gradients(m, w, gamma, beta, s, dw, db, dgamma, dbeta);
    be.layer_norm_linear_gradients(m, w, gamma, beta, s, dw, db, dgamma, dbeta, true);  // twice the values
    if (t == 1) {
      const dmatrix md = m0.cast<double>(), wd = w.cast<double>();
      const Eigen::VectorXd g = gamma.cast<double>(), b = beta.cast<double>(), sd = s.cast<double>();
      dmatrix want_dw(rows, cols);
      for (Eigen::Index k = 0; k < rows; ++k)
        want_dw.row(k) = 2 * (md.row(k).array() * g.transpose().array() + sd[k] * b.transpose().array());
      const Eigen::VectorXd want_dg = 2 * (wd.array() * md.array()).colwise().sum().transpose();
      const Eigen::VectorXd want_dbeta = 2 * wd.transpose() * sd;
      BOOST_TEST(max_error(dw.cast<double>(), want_dw) < 1e-5);
      BOOST_TEST(max_error(db.cast<double>(), 2 * sd) < 1e-6);
      BOOST_TEST(max_error(dgamma.cast<double>(), want_dg) < 1e-3);
      BOOST_TEST(max_error(dbeta.cast<double>(), want_dbeta) < 1e-3);
    }
    bits out;
    out.add(dw), out.add(db), out.add(dgamma), out.add(dbeta);
    return out;
  });
}

BOOST_AUTO_TEST_CASE(gelu_and_dropout_alone_and_fused) {
  const matrix a0 = random(rows, cols, 5, 2.0), dh = random(rows, cols, 6);
  const vector bias = random(cols, 1, 7).col(0);
  const fm::dropout_key key{.seed = 11, .draw = 3, .p = 0.4};
  same_bits_at_every_thread_count([&](int t) {
    cpu::backend<float> be;
    matrix a = a0, h(rows, cols), da(rows, cols), y(rows, cols), dx(rows, cols), mask(rows, cols);
    be.bias_gelu_dropout_forward(a, bias, key, h);
    be.gelu_dropout_backward(dh, a, key, da);
    be.gelu_forward(a0, y);
    be.gelu_backward(dh, a0, dx);
    be.dropout_forward(matrix::Ones(rows, cols), key, mask);
    if (t == 1) {
      const double keep = 1 / (1 - key.p);
      BOOST_TEST(((mask.array() == 0.0f) || (mask.array() == static_cast<float>(keep))).all());
      const double kept = (mask.array() != 0.0f).cast<double>().mean();
      BOOST_TEST(std::abs(kept - 0.6) < 0.01, "kept fraction " << kept);
      // Each element's decision is the scalar reference's, also where a row (283 wide) or a draw
      // offset (37) starts or ends inside a group of 64 elements.
      fm::dropout_key shifted = key;
      shifted.offset = 37;
      matrix mask2(rows, cols);
      be.dropout_forward(matrix::Ones(rows, cols), shifted, mask2);
      std::size_t wrong = 0;
      for (Eigen::Index i = 0; i < rows; ++i)
        for (Eigen::Index j = 0; j < cols; ++j) {
          const auto e = static_cast<std::uint64_t>(i * cols + j);
          wrong += (mask(i, j) != 0.0f) != fm::detail::dropout_keep(key.seed, key.draw, e, key.p);
          wrong += (mask2(i, j) != 0.0f) != fm::detail::dropout_keep(key.seed, key.draw, e + 37, key.p);
        }
      BOOST_TEST(wrong == 0u);
      dmatrix want_h(rows, cols), want_da(rows, cols), want_y(rows, cols), want_dx(rows, cols);
      for (Eigen::Index i = 0; i < rows; ++i)
        for (Eigen::Index j = 0; j < cols; ++j) {
          const double pre = static_cast<double>(a0(i, j)) + bias[j], m = mask(i, j);
          want_h(i, j) = gelu(pre) * m;
          want_da(i, j) = dh(i, j) * m * gelu_grad(pre);
          want_y(i, j) = gelu(a0(i, j));
          want_dx(i, j) = dh(i, j) * gelu_grad(a0(i, j));
        }
      BOOST_TEST(max_error(a.cast<double>(), a0.cast<double>().rowwise() + bias.cast<double>().transpose()) < 1e-6);
      BOOST_TEST(max_error(h.cast<double>(), want_h) < 1e-5);
      BOOST_TEST(max_error(da.cast<double>(), want_da) < 1e-5);
      BOOST_TEST(max_error(y.cast<double>(), want_y) < 1e-5);
      BOOST_TEST(max_error(dx.cast<double>(), want_dx) < 1e-5);
    }
    bits out;
    out.add(a), out.add(h), out.add(da), out.add(y), out.add(dx), out.add(mask);
    return out;
  });
}

BOOST_AUTO_TEST_CASE(row_passes_and_column_sums) {
  const matrix z = random(rows + 50, cols, 8), dn = random(rows, cols, 9);
  std::vector<std::size_t> ia(rows), ib(rows);
  for (std::size_t i = 0; i < ia.size(); ++i) ia[i] = (i * 7) % (rows + 50), ib[i] = (i * 13 + 5) % (rows + 50);
  const vector b = random(cols, 1, 10).col(0);
  same_bits_at_every_thread_count([&](int t) {
    cpu::backend<float> be;
    matrix mixed(rows, cols), n(rows, cols), dp(rows, cols);
    vector norms, sums(cols);
    be.gather_mix(z, ia, ib, 0.3f, mixed);
    be.normalize_rows_forward(mixed, 1e-6f, n, norms);
    be.normalize_rows_backward(dn, n, norms, 1e-6f, dp);
    be.column_sums(dn, sums);
    matrix shifted = mixed;
    be.add_row_vector(shifted, b);
    if (t == 1) {
      dmatrix want_mix(rows, cols), want_n(rows, cols), want_dp(rows, cols);
      for (Eigen::Index i = 0; i < rows; ++i) {
        const auto r = static_cast<std::size_t>(i);
        want_mix.row(i) = 0.3 * z.row(static_cast<Eigen::Index>(ia[r])).cast<double>() +
                          0.7 * z.row(static_cast<Eigen::Index>(ib[r])).cast<double>();
        const double norm = want_mix.row(i).norm();
        want_n.row(i) = want_mix.row(i) / norm;
        const Eigen::RowVectorXd d = dn.row(i).cast<double>();
        want_dp.row(i) = (d - want_n.row(i) * want_n.row(i).dot(d)) / norm;
      }
      BOOST_TEST(max_error(mixed.cast<double>(), want_mix) < 1e-5);
      BOOST_TEST(max_error(n.cast<double>(), want_n) < 1e-5);
      BOOST_TEST(max_error(dp.cast<double>(), want_dp) < 1e-4);
      BOOST_TEST(max_error(sums.cast<double>(), dn.cast<double>().colwise().sum().transpose()) < 1e-3);
      BOOST_TEST(max_error(shifted.cast<double>(), want_mix.rowwise() + b.cast<double>().transpose()) < 1e-5);
    }
    bits out;
    out.add(mixed), out.add(n), out.add(norms), out.add(dp), out.add(sums), out.add(shifted);
    return out;
  });
}

BOOST_AUTO_TEST_CASE(losses_and_reductions) {
  constexpr Eigen::Index b = 331;  // 331² = 109,561 logits
  const matrix logits = random(b, b, 12, 3.0), other = random(b, b, 13);
  same_bits_at_every_thread_count([&](int t) {
    cpu::backend<float> be;
    matrix g(b, b), gs(b, b), filled(b, b);
    // Blocks of 100 rows: the columns' statistics merged across blocks, the last block shorter.
    const double ce = fm::test::contrastive_in_blocks(be, logits, g, 100);
    const double sig = fm::test::sigmoid_in_blocks(be, logits, gs, 100);
    const double dot = be.dot(logits, other), sum = be.sum(other);
    be.fill(filled, 2.5f);
    if (t == 1) {
      const dmatrix l = logits.cast<double>();
      Eigen::VectorXd row_lse(b), col_lse(b);
      for (Eigen::Index i = 0; i < b; ++i) {
        row_lse[i] = std::log(l.row(i).array().exp().sum());
        col_lse[i] = std::log(l.col(i).array().exp().sum());
      }
      double want_ce = 0, want_sig = 0;
      dmatrix want_g(b, b);
      for (Eigen::Index i = 0; i < b; ++i) {
        want_ce += (row_lse[i] - l(i, i) + col_lse[i] - l(i, i)) / (2.0 * b);
        for (Eigen::Index j = 0; j < b; ++j) {
          want_g(i, j) = (std::exp(l(i, j) - row_lse[i]) + std::exp(l(i, j) - col_lse[j]) - 2.0 * (i == j)) / (2.0 * b);
          want_sig += std::log1p(std::exp(i == j ? -l(i, j) : l(i, j))) / b;
        }
      }
      BOOST_TEST(std::abs(ce - want_ce) < 1e-5 * std::abs(want_ce));
      BOOST_TEST(max_error(g.cast<double>(), want_g) < 1e-7);
      BOOST_TEST(std::abs(sig - want_sig) < 1e-5 * std::abs(want_sig));
      const double want_dot = l.cwiseProduct(other.cast<double>()).sum(), want_sum = other.cast<double>().sum();
      BOOST_TEST(std::abs(dot - want_dot) < 1e-3, "dot " << dot << " want " << want_dot);
      BOOST_TEST(std::abs(sum - want_sum) < 1e-3, "sum " << sum << " want " << want_sum);
      BOOST_TEST((filled.array() == 2.5f).all());
    }
    bits out;
    out.add(g), out.add(gs), out.add(ce), out.add(sig), out.add(dot), out.add(sum), out.add(filled);
    return out;
  });
}

BOOST_AUTO_TEST_CASE(vector_and_matrix_updates_and_adamw) {
  constexpr Eigen::Index n = 100'003;  // 25 chunks, the last part-full
  const vector x = random(n, 1, 14).col(0), g = random(n, 1, 15).col(0);
  const matrix mx = random(rows, cols, 16);
  same_bits_at_every_thread_count([&](int t) {
    cpu::backend<float> be;
    vector y = random(n, 1, 17).col(0), copied(n);
    matrix my = random(rows, cols, 18), mcopy(rows, cols);
    const vector y0 = y;
    const matrix my0 = my;
    be.axpy(0.25f, x, y);
    be.scale(-2.0f, y);
    be.copy(x, copied);
    be.axpy(0.5f, mx, my);
    be.copy(mx, mcopy);
    // Two AdamW steps over one range (decayed), against the plain scalar loop.
    vector p = x, p_ref = x;
    auto opt = be.make_optimizer({.weight_decay = 0.1});
    opt.add(p.data(), g.data(), static_cast<std::size_t>(n), true);
    fm::adamw<float> ref({.weight_decay = 0.1});
    ref.add(p_ref.data(), g.data(), static_cast<std::size_t>(n), true);
    for (int step = 0; step < 2; ++step) opt.step(1e-2), ref.step(1e-2);
    if (t == 1) {
      BOOST_TEST(max_error(y.cast<double>(), -2.0 * (y0.cast<double>() + 0.25 * x.cast<double>())) < 1e-5);
      BOOST_TEST((copied.array() == x.array()).all());
      BOOST_TEST(max_error(my.cast<double>(), my0.cast<double>() + 0.5 * mx.cast<double>()) < 1e-6);
      BOOST_TEST((mcopy.array() == mx.array()).all());
      BOOST_TEST(max_error(p.cast<double>(), p_ref.cast<double>()) < 1e-6);
      BOOST_TEST(max_error(p.cast<double>(), x.cast<double>()) > 1e-3);  // it moved
    }
    bits out;
    out.add(y), out.add(copied), out.add(my), out.add(mcopy), out.add(p);
    return out;
  });
}

BOOST_AUTO_TEST_SUITE_END()
