// SPDX-License-Identifier: Apache-2.0
// The symmetric contrastive loss: gradient check (inputs and temperature), PyTorch parity,
// stability and input errors.
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/io/npy.hpp>
#include <fusemix/loss/contrastive.hpp>

#include "gradcheck.hpp"
#include "sharded_loss.hpp"

namespace fm = fusemix;
using fm::test::dmatrix;
namespace bdata = boost::unit_test::data;

BOOST_AUTO_TEST_SUITE(contrastive)

// The whole matrix, and rows in blocks of 4 (4 + 4 + 3: the columns' statistics merged across
// blocks, a shorter last block, each block's logits computed again in backward).
BOOST_DATA_TEST_CASE(gradients_of_inputs_and_temperature, bdata::make({0, 4}), row_block) {
  fm::contrastive_loss<fm::cpu::backend<double>> loss;
  loss.set_row_block(static_cast<std::size_t>(row_block));
  dmatrix px = fm::test::random_matrix(11, 5, 1), py = fm::test::random_matrix(11, 5, 2);
  double t = 0.3;
  loss.forward(px, py, t);
  loss.backward();
  const dmatrix dx = loss.dx(), dy = loss.dy();
  const double dt = loss.dtemperature();
  auto f = [&] { return loss.forward(px, py, t); };
  const double ex = fm::test::relative_error(fm::test::span_of(dx), fm::test::numeric_gradient(fm::test::span_of(px), f));
  const double ey = fm::test::relative_error(fm::test::span_of(dy), fm::test::numeric_gradient(fm::test::span_of(py), f));
  std::span<double> ts(&t, 1);
  const auto nt = fm::test::numeric_gradient(ts, f);
  const double et = fm::test::relative_error(std::span<const double>(&dt, 1), nt);
  BOOST_TEST_MESSAGE("loss gradient errors: x " << ex << ", y " << ey << ", temperature " << et);
  BOOST_TEST(ex < 1e-6);
  BOOST_TEST(ey < 1e-6);
  BOOST_TEST(et < 1e-6);
}

// Sharded over processes (forward_shard): one rank takes the rows of S/τ and of Sᵀ/τ, so its
// gradients are checked against central differences too; 2 and 3 ranks (threads) give the
// whole loss's values, rows of its gradients and dτ.
BOOST_DATA_TEST_CASE(sharded_gradients_and_ranks, bdata::make({0, 2}), row_block) {
  using dloss = fm::contrastive_loss<fm::cpu::backend<double>>;
  dmatrix px = fm::test::random_matrix(11, 5, 1), py = fm::test::random_matrix(11, 5, 2);
  dloss loss;
  loss.set_row_block(static_cast<std::size_t>(row_block));
  loss.set_temperature(0.3);
  loss.forward_shard(px, py, {});
  loss.backward();
  const dmatrix dx = loss.dx(), dy = loss.dy();
  const double dt = loss.dtemperature();
  auto f = [&] { return static_cast<double>(loss.forward_shard(px, py, {})); };
  const double ex = fm::test::relative_error(fm::test::span_of(dx), fm::test::numeric_gradient(fm::test::span_of(px), f));
  const double ey = fm::test::relative_error(fm::test::span_of(dy), fm::test::numeric_gradient(fm::test::span_of(py), f));
  const double et = fm::test::relative_error(std::span<const double>(&dt, 1), fm::test::numeric_gradient(loss.parameters(), f));
  BOOST_TEST_MESSAGE("sharded loss gradient errors, one rank: x " << ex << ", y " << ey << ", temperature " << et);
  BOOST_TEST(ex < 1e-6);
  BOOST_TEST(ey < 1e-6);
  BOOST_TEST(et < 1e-6);
  for (int ranks : {1, 2, 3})
    fm::test::check_shard_equals_whole<dloss>(ranks, static_cast<std::size_t>(row_block), px, py,
                                               [](dloss& l) { l.set_temperature(0.3); });
}

BOOST_DATA_TEST_CASE(matches_pytorch, bdata::make({0, 4}), row_block) {  // 6 rows: blocks of 4 and 2
  const std::string dir = std::string(FUSEMIX_FIXTURE_DIR) + "/parity/";
  const auto values = fm::io::read_npy_vector<double>(dir + "loss_values.npy");  // [temp, loss]
  const auto dx_ref = fm::io::read_npy<double>(dir + "loss_dx.npy");
  const auto dy_ref = fm::io::read_npy<double>(dir + "loss_dy.npy");
  const auto dt_ref = fm::io::read_npy_vector<double>(dir + "loss_dtemp.npy");
  auto check = [&](auto tag, double tol) {
    using T = decltype(tag);
    fm::contrastive_loss<fm::cpu::backend<T>> loss;
    loss.set_row_block(static_cast<std::size_t>(row_block));
    const auto x = fm::io::read_npy<T>(dir + "loss_x.npy"), y = fm::io::read_npy<T>(dir + "loss_y.npy");
    const double l = static_cast<double>(loss.forward(x, y, static_cast<T>(values[0])));
    loss.backward();
    const double el = std::abs(l - values[1]) / values[1];
    const double ex = (loss.dx().template cast<double>() - dx_ref).cwiseAbs().maxCoeff() / dx_ref.cwiseAbs().maxCoeff();
    const double ey = (loss.dy().template cast<double>() - dy_ref).cwiseAbs().maxCoeff() / dy_ref.cwiseAbs().maxCoeff();
    const double et = std::abs(static_cast<double>(loss.dtemperature()) - dt_ref[0]) / std::abs(dt_ref[0]);
    BOOST_TEST_MESSAGE(sizeof(T) * 8 << "-bit loss, row block " << row_block << ", vs PyTorch: loss " << el << ", dx " << ex << ", dy " << ey
                                     << ", dtemp " << et);
    BOOST_TEST(el < tol);
    BOOST_TEST(ex < tol);
    BOOST_TEST(ey < tol);
    BOOST_TEST(et < tol);
  };
  check(float{}, 1e-5);
  check(double{}, 1e-12);
}

BOOST_AUTO_TEST_CASE(perfect_alignment_and_stability) {
  fm::contrastive_loss<fm::cpu::backend<double>> loss;
  // Orthogonal, identical pairs at the smallest temperature: logits up to 1000, which would
  // overflow exp() without log-sum-exp; the loss is then ~0.
  const dmatrix e = dmatrix::Identity(4, 4) * 3.0;
  const double l = loss.forward(e, e, 0.001);
  BOOST_TEST(std::isfinite(l));
  BOOST_TEST(l < 1e-12);
  // Swapped pairs: each row's positive scores 0 while a negative scores 1/τ.
  dmatrix swapped = e;
  swapped.row(0).swap(swapped.row(1));
  BOOST_TEST(loss.forward(e, swapped, 0.001) > 100.0);
  // Scale invariance: inputs are normalised.
  const dmatrix a = fm::test::random_matrix(5, 3, 3), b = fm::test::random_matrix(5, 3, 4);
  BOOST_TEST(std::abs(loss.forward(a, b, 0.07) - loss.forward(a * 7.0, b * 0.01, 0.07)) < 1e-12);
}

BOOST_AUTO_TEST_CASE(bad_input) {
  fm::contrastive_loss<fm::cpu::backend<double>> loss;
  const dmatrix a = fm::test::random_matrix(4, 3, 1);
  BOOST_CHECK_EXCEPTION(loss.forward(a, fm::test::random_matrix(5, 3, 2), 0.07), fm::shape_error,
                        [](const fm::shape_error& e) { return std::string(e.what()).find("4x3") != std::string::npos; });
  BOOST_CHECK_THROW(loss.forward(a, a, 0.0), fm::numeric_error);
  BOOST_CHECK_THROW(loss.forward(a, a, std::nan("")), fm::numeric_error);
  dmatrix bad = a;
  bad(1, 1) = std::nan("");
  BOOST_CHECK_THROW(loss.forward(bad, a, 0.07), fm::numeric_error);
  BOOST_TEST(fm::temperature_limits::clamp(0.9) == 0.5);
  BOOST_TEST(fm::temperature_limits::clamp(1e-5) == 0.001);
}

BOOST_AUTO_TEST_SUITE_END()
