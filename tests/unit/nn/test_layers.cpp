// SPDX-License-Identifier: Apache-2.0
// Gradient checks and behaviour of every layer (Linear, LayerNorm, GELU, Dropout, Block).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/backend/common/math.hpp>
#include <fusemix/nn/block.hpp>

#include "gradcheck.hpp"

namespace fm = fusemix;
using fm::test::dmatrix;
using dbackend = fm::cpu::backend<double>;

namespace {

constexpr double grad_tol = 1e-6;

// A layer plus the flat buffers it is bound to.
struct buffers {
  fm::parameter_buffer<double> params, grads;
  explicit buffers(const fm::parameter_layout& layout) : params(layout.size()), grads(layout.size()) {}
};

// Checks the gradients of Σ f(x) ⊙ r with respect to x and (if any) every parameter.
template <class Forward, class Backward>
void check_gradients(dmatrix x, std::span<double> params, std::span<const double> grads, std::size_t out_cols,
                     Forward forward, Backward backward) {
  dmatrix y;
  forward(x, y);
  BOOST_REQUIRE_EQUAL(static_cast<std::size_t>(y.cols()), out_cols);
  const dmatrix r = fm::test::random_matrix(static_cast<std::size_t>(y.rows()), out_cols, 99);
  dmatrix dx;
  backward(x, r, dx);
  const std::vector<double> analytic_params(grads.begin(), grads.end());
  auto loss = [&] {
    dmatrix yy;
    forward(x, yy);
    return fm::test::weighted_sum(yy, r);
  };
  const auto nx = fm::test::numeric_gradient(fm::test::span_of(x), loss);
  const double ex = fm::test::relative_error(fm::test::span_of(dx), nx);
  BOOST_TEST_MESSAGE("input gradient relative error " << ex);
  BOOST_TEST(ex < grad_tol);
  if (!params.empty()) {
    const auto np = fm::test::numeric_gradient(params, loss);
    const double ep = fm::test::relative_error(analytic_params, np);
    BOOST_TEST_MESSAGE("parameter gradient relative error " << ep);
    BOOST_TEST(ep < grad_tol);
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(layers)

BOOST_AUTO_TEST_CASE(linear_gradients_and_layout) {
  fm::parameter_layout layout;
  fm::linear<dbackend> fc(layout, "fc.", 5, 3);
  BOOST_TEST(layout.parameter_count() == 5u * 3u + 3u);
  BOOST_TEST(layout.entries()[1].offset % fm::parameter_layout::tensor_alignment == 0u);
  BOOST_TEST(layout.entries()[0].name == "fc.weight");
  BOOST_TEST((layout.entries()[0].shape == std::vector<std::size_t>{3, 5}));
  BOOST_TEST(layout.entries()[0].decay);
  BOOST_TEST(!layout.entries()[1].decay);
  buffers buf(layout);
  fc.bind(buf.params.data(), buf.grads.data());
  fm::philox_engine rng(3);
  fc.reset_parameters(rng);
  // PyTorch's init bound: U(±1/√in).
  for (double v : buf.params) BOOST_TEST(std::abs(v) <= 1 / std::sqrt(5.0));
  check_gradients(fm::test::random_matrix(4, 5, 1), buf.params, buf.grads, 3,
                  [&](const dmatrix& x, dmatrix& y) { fc.forward(x, y); },
                  [&](const dmatrix& x, const dmatrix& dy, dmatrix& dx) { fc.backward(x, dy, dx); });
}

BOOST_AUTO_TEST_CASE(linear_matches_definition) {
  fm::parameter_layout layout;
  fm::linear<dbackend> fc(layout, "", 3, 2);
  buffers buf(layout);
  fc.bind(buf.params.data(), buf.grads.data());
  const auto& w = layout.entries()[0];
  const auto& b = layout.entries()[1];
  for (std::size_t i = 0; i < 6; ++i) buf.params[w.offset + i] = static_cast<double>(i + 1);  // W = [[1,2,3],[4,5,6]]
  buf.params[b.offset] = 0.5, buf.params[b.offset + 1] = -1;                                 // b = [0.5, -1]
  dmatrix x(1, 3);
  x << 1, 0, -1;
  dmatrix y;
  fc.forward(x, y);
  BOOST_TEST(y(0, 0) == 1 - 3 + 0.5);
  BOOST_TEST(y(0, 1) == 4 - 6 - 1.0);
}

BOOST_AUTO_TEST_CASE(linear_rejects_wrong_width) {
  fm::parameter_layout layout;
  fm::linear<dbackend> fc(layout, "", 3, 2);
  buffers buf(layout);
  fc.bind(buf.params.data(), buf.grads.data());
  dmatrix x(2, 4), y;
  BOOST_CHECK_EXCEPTION(fc.forward(x, y), fm::shape_error, [](const fm::shape_error& e) {
    return std::string(e.what()).find("fusemix::linear::forward") == 0 &&
           std::string(e.what()).find("expected 3, got 4") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(layer_norm_gradients) {
  fm::parameter_layout layout;
  fm::layer_norm<dbackend> ln(layout, "ln.", 6);
  buffers buf(layout);
  ln.bind(buf.params.data(), buf.grads.data());
  // Non-trivial affine parameters so dγ and dβ matter.
  const dmatrix gb = fm::test::random_matrix(1, 12, 5, 0.3);
  for (std::size_t i = 0; i < 6; ++i) {
    buf.params[layout.entries()[0].offset + i] = 1.0 + gb(0, static_cast<Eigen::Index>(i));
    buf.params[layout.entries()[1].offset + i] = gb(0, static_cast<Eigen::Index>(6 + i));
  }
  check_gradients(fm::test::random_matrix(5, 6, 2, 2.0), buf.params, buf.grads, 6,
                  [&](const dmatrix& x, dmatrix& y) { ln.forward(x, y); },
                  [&](const dmatrix& x, const dmatrix& dy, dmatrix& dx) { ln.backward(x, dy, dx); });
}

BOOST_AUTO_TEST_CASE(layer_norm_normalises_rows) {
  fm::parameter_layout layout;
  fm::layer_norm<dbackend> ln(layout, "", 4);
  buffers buf(layout);
  ln.bind(buf.params.data(), buf.grads.data());
  ln.reset_parameters();
  dmatrix x(2, 4), y;
  x << 1, 2, 3, 4, -10, 0, 10, 20;
  ln.forward(x, y);
  for (Eigen::Index i = 0; i < 2; ++i) {
    BOOST_TEST(std::abs(y.row(i).mean()) < 1e-12);
    const double var = y.row(i).squaredNorm() / 4;
    const double raw_var = (x.row(i).array() - x.row(i).mean()).square().mean();
    BOOST_TEST(std::abs(var - raw_var / (raw_var + 1e-5)) < 1e-12);  // eps 1e-5 inside the root
  }
}

BOOST_AUTO_TEST_CASE(gelu_gradients_and_values) {
  fm::gelu<dbackend> act;
  check_gradients(fm::test::random_matrix(3, 7, 4, 2.0), {}, {}, 7,
                  [&](const dmatrix& x, dmatrix& y) { act.forward(x, y); },
                  [&](const dmatrix& x, const dmatrix& dy, dmatrix& dx) { act.backward(x, dy, dx); });
  // Exact form, not the tanh approximation: GELU(1) = Φ(1) = 0.8413447460685429.
  BOOST_TEST(std::abs(fm::detail::gelu(1.0) - 0.8413447460685429) < 1e-15);
  BOOST_TEST(std::abs(fm::detail::gelu(-3.0) - (-3.0 * 0.0013498980316301)) < 1e-15);
}

BOOST_AUTO_TEST_CASE(dropout_gradients) {
  fm::dropout<dbackend> drop(0.5, 11);
  check_gradients(fm::test::random_matrix(4, 9, 6), {}, {}, 9,
                  [&](const dmatrix& x, dmatrix& y) { drop.forward(x, y, true, 3); },
                  [&](const dmatrix&, const dmatrix& dy, dmatrix& dx) { drop.backward(dy, dx); });
}

BOOST_AUTO_TEST_CASE(dropout_statistics_and_determinism) {
  const double p = 0.6;
  fm::dropout<dbackend> drop(p, 123);
  dmatrix x = dmatrix::Ones(200, 250), y, y2, y3;
  drop.forward(x, y, true, 0);
  const double kept = static_cast<double>((y.array() != 0).count()) / static_cast<double>(y.size());
  BOOST_TEST(std::abs(kept - (1 - p)) < 0.01);  // 50,000 draws: σ ≈ 0.0022
  BOOST_TEST((y.array() == 0 || (y.array() - 1 / (1 - p)).abs() < 1e-12).all());
  drop.forward(x, y2, true, 0);
  BOOST_TEST((y2 == y));  // same draw, same mask
  drop.forward(x, y3, true, 1);
  BOOST_TEST((y3 != y));  // next draw, new mask
  // The blocked CPU loop agrees with the per-element reference used by other backends.
  for (Eigen::Index i = 0; i < y.size(); ++i)
    BOOST_TEST_REQUIRE((y.data()[i] != 0) == fm::detail::dropout_keep(123, 0, static_cast<std::uint64_t>(i), 0.6));
  drop.forward(x, y, false, 0);
  BOOST_TEST((y == x));  // evaluation: identity
  BOOST_CHECK_THROW(fm::dropout<dbackend>(1.5), fm::argument_error);
}

BOOST_AUTO_TEST_CASE(block_gradients_with_and_without_dropout) {
  for (bool training : {false, true}) {
    fm::parameter_layout layout;
    fm::block<dbackend> blk(layout, "0.", 4, 3, 0.3, 77);
    BOOST_TEST(layout.parameter_count() == 2 * 4 + (12 * 4 + 12) + (4 * 12 + 4));
    buffers buf(layout);
    blk.bind(buf.params.data(), buf.grads.data());
    fm::philox_engine rng(8);
    blk.reset_parameters(rng);
    check_gradients(fm::test::random_matrix(5, 4, 9), buf.params, buf.grads, 4,
                    [&](const dmatrix& x, dmatrix& y) { blk.forward(x, y, training, 42); },
                    [&](const dmatrix& x, const dmatrix& dy, dmatrix& dx) { blk.backward(x, dy, dx); });
  }
}

BOOST_AUTO_TEST_CASE(block_is_residual) {
  // With W2 = 0 and b2 = 0 the block is the identity, whatever the rest.
  fm::parameter_layout layout;
  fm::block<dbackend> blk(layout, "0.", 3, 4, 0.0, 0);
  buffers buf(layout);
  blk.bind(buf.params.data(), buf.grads.data());
  fm::philox_engine rng(1);
  blk.reset_parameters(rng);
  for (const auto& e : layout.entries())
    if (e.name.rfind("0.fn.3.", 0) == 0)
      std::fill_n(buf.params.begin() + static_cast<std::ptrdiff_t>(e.offset), e.size, 0.0);
  const dmatrix x = fm::test::random_matrix(2, 3, 4);
  dmatrix y;
  blk.forward(x, y, false, 0);
  BOOST_TEST((y == x));
}

BOOST_AUTO_TEST_SUITE_END()
