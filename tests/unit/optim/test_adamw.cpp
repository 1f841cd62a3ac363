// SPDX-License-Identifier: Apache-2.0
// AdamW (PyTorch semantics, groups), both update policies (the portable scalar loop and the CPU
// backend's Eigen arrays), and the learning-rate schedule.
#include <boost/test/unit_test.hpp>

#include <boost/mpl/list.hpp>

#include <cmath>
#include <numbers>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/nn/adapter.hpp>
#include <fusemix/optim/adamw.hpp>
#include <fusemix/optim/schedule.hpp>

namespace fm = fusemix;

namespace {
using optimizers = boost::mpl::list<fm::adamw<double>, fm::cpu::adamw<double>>;
}  // namespace

BOOST_AUTO_TEST_SUITE(adamw)

BOOST_AUTO_TEST_CASE_TEMPLATE(adamw_follows_the_decoupled_update, Optimizer, optimizers) {
  // Two ranges, one decayed; compare three steps with the textbook formulas in double.
  std::vector<double> p{1.0, -2.0, 0.5}, g{0.1, -0.3, 2.0};
  Optimizer opt({.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1});
  opt.add(p.data(), g.data(), 2, true);
  opt.add(p.data() + 2, g.data() + 2, 1, false);
  std::vector<double> ref = p, m(3, 0), v(3, 0);
  const double lr = 0.01;
  for (int t = 1; t <= 3; ++t) {
    opt.step(lr);
    for (int i = 0; i < 3; ++i) {
      if (i < 2) ref[i] -= lr * 0.1 * ref[i];  // decoupled decay, before the Adam step
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.999, t));
      ref[i] -= lr * mhat / (std::sqrt(vhat) + 1e-8);
    }
    for (int i = 0; i < 3; ++i) BOOST_TEST(std::abs(p[i] - ref[i]) < 1e-14);
  }
  BOOST_TEST(opt.steps() == 3u);
  BOOST_TEST(opt.first_moments().size() == 3u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(only_linear_weights_decay, Optimizer, optimizers) {
  // With zero gradients, only decay moves parameters: exactly the Linear weight matrices shrink.
  fm::fusion_adapter<fm::dynamic_shape, fm::cpu::backend<double>> a(fm::adapter_shape{.in_dim = 4, .out_dim = 2, .depth = 1});
  // Non-zero LayerNorm biases, so that a wrongly decayed one would show.
  for (const auto& e : a.named_parameters())
    if (e.name.ends_with("bias")) std::fill_n(a.parameters().begin() + static_cast<std::ptrdiff_t>(e.offset), e.size, 0.5);
  const std::vector<double> before(a.parameters().begin(), a.parameters().end());
  std::fill(a.gradients().begin(), a.gradients().end(), 0.0);
  Optimizer opt({.weight_decay = 0.5});
  opt.add_model(a);
  opt.step(0.1);
  for (const auto& e : a.named_parameters()) {
    const bool linear_weight = e.name == "0.fn.0.weight" || e.name == "0.fn.3.weight" || e.name == "2.weight";
    BOOST_TEST(e.decay == linear_weight, e.name);
    for (std::size_t i = 0; i < e.size; ++i) {
      const double want = linear_weight ? before[e.offset + i] * (1 - 0.1 * 0.5) : before[e.offset + i];
      BOOST_TEST_REQUIRE(std::abs(a.parameters()[e.offset + i] - want) < 1e-15, e.name);
    }
  }
}

BOOST_AUTO_TEST_CASE(both_update_policies_agree_over_long_ranges) {
  // 3000 floats (chunks of 1024 and a tail) through 5 steps: the vectorised update computes the
  // scalar one's formula, so they agree to float rounding (contraction into FMAs may differ).
  const std::size_t n = 3000;
  std::vector<float> pa(n), pb(n), g(n);
  for (std::size_t i = 0; i < n; ++i)
    pa[i] = pb[i] = std::sin(static_cast<float>(i)), g[i] = 0.01f * std::cos(0.7f * static_cast<float>(i));
  fm::adamw<float> a({.weight_decay = 0.1});
  fm::cpu::adamw<float> b({.weight_decay = 0.1});
  a.add(pa.data(), g.data(), n, true);
  b.add(pb.data(), g.data(), n, true);
  for (int t = 0; t < 5; ++t) a.step(1e-2), b.step(1e-2);
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(static_cast<double>(pa[i]) - pb[i]));
  BOOST_TEST(worst < 1e-6);
}

BOOST_AUTO_TEST_CASE(schedule_warms_up_then_decays) {
  const fm::lr_schedule s{.lr = 1e-3, .min_lr = 1e-6, .epochs = 10};
  BOOST_TEST(s.at(0, 0, 100) == 1e-6);
  BOOST_TEST(std::abs(s.at(0, 99, 100) - 1e-3) < 1e-15);
  BOOST_TEST(s.at(0, 50, 100) < s.at(0, 51, 100));
  const double e5 = (1e-3 - 1e-6) * 0.5 * (1 + std::cos(std::numbers::pi * 0.5)) + 1e-6;
  BOOST_TEST(std::abs(s.at(5, 3, 100) - e5) < 1e-18);
  BOOST_TEST(s.at(9, 0, 100) < 3e-5);  // ~min_lr by the last epoch
  for (std::size_t e = 1; e < 10; ++e) BOOST_TEST(s.at(e, 0, 100) < s.at(e - 1, 99, 100) + 1e-18);
  const fm::lr_schedule flat{.lr = 1e-3, .min_lr = 1e-6, .epochs = 10, .warmup = false};
  BOOST_TEST(flat.at(0, 0, 100) == 1e-3);
}

BOOST_AUTO_TEST_SUITE_END()
