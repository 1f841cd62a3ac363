// SPDX-License-Identifier: Apache-2.0
// AdamW (PyTorch semantics, groups) and the learning-rate schedule.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <numbers>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/nn/adapter.hpp>
#include <fusemix/optim/adamw.hpp>
#include <fusemix/optim/schedule.hpp>

namespace fm = fusemix;

BOOST_AUTO_TEST_SUITE(adamw)

BOOST_AUTO_TEST_CASE(adamw_follows_the_decoupled_update) {
  // Two ranges, one decayed; compare three steps with the textbook formulas in double.
  std::vector<double> p{1.0, -2.0, 0.5}, g{0.1, -0.3, 2.0};
  fm::adamw<double> opt({.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1});
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

BOOST_AUTO_TEST_CASE(only_linear_weights_decay) {
  // With zero gradients, only decay moves parameters: exactly the Linear weight matrices shrink.
  fm::fusion_adapter<fm::dynamic_shape, fm::cpu::backend<double>> a(fm::adapter_shape{.in_dim = 4, .out_dim = 2, .depth = 1});
  // Non-zero LayerNorm biases, so that a wrongly decayed one would show.
  for (const auto& e : a.named_parameters())
    if (e.name.ends_with("bias")) std::fill_n(a.parameters().begin() + static_cast<std::ptrdiff_t>(e.offset), e.size, 0.5);
  const std::vector<double> before(a.parameters().begin(), a.parameters().end());
  std::fill(a.gradients().begin(), a.gradients().end(), 0.0);
  fm::adamw<double> opt({.weight_decay = 0.5});
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
