// SPDX-License-Identifier: Apache-2.0
// The pairwise sigmoid loss (SigLIP): gradient check (inputs, logit_scale, logit_bias), PyTorch
// parity, stability and input errors.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <numbers>
#include <string>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/io/safetensors.hpp>
#include <fusemix/loss/sigmoid.hpp>

#include "gradcheck.hpp"
#include "sharded_loss.hpp"
#include "messages.hpp"

namespace fm = fusemix;
using fm::test::dmatrix;
using dloss = fm::sigmoid_loss<fm::cpu::backend<double>>;

namespace {

// The analytic gradients of every input of the loss against central differences in double.
// `row_block`: the loss's rows in blocks of that many (0: all at once).
void check_gradients(double logit_scale, double logit_bias, double scale_of_inputs, std::size_t row_block = 0) {
  dloss loss;
  loss.set_row_block(row_block);
  dmatrix px = fm::test::random_matrix(6, 5, 1, scale_of_inputs), py = fm::test::random_matrix(6, 5, 2, scale_of_inputs);
  py.row(2) = px.row(2) * 1.5;  // a well-aligned pair: both signs of the margin occur
  loss.set_logit_scale(logit_scale);
  loss.set_logit_bias(logit_bias);
  loss.forward(px, py);
  loss.backward();
  const dmatrix dx = loss.dx(), dy = loss.dy();
  const std::vector<double> dparams(loss.gradients().begin(), loss.gradients().end());
  auto f = [&] { return static_cast<double>(loss.forward(px, py)); };
  const double ex = fm::test::relative_error(fm::test::span_of(dx), fm::test::numeric_gradient(fm::test::span_of(px), f));
  const double ey = fm::test::relative_error(fm::test::span_of(dy), fm::test::numeric_gradient(fm::test::span_of(py), f));
  const double ep = fm::test::relative_error(dparams, fm::test::numeric_gradient(loss.parameters(), f));
  BOOST_TEST_MESSAGE("sigmoid loss gradient errors at t' = " << logit_scale << ", b = " << logit_bias << ", row block "
                                                               << row_block << ": x " << ex
                                                               << ", y " << ey << ", (t', b) " << ep);
  BOOST_TEST(ex < 1e-6);
  BOOST_TEST(ey < 1e-6);
  BOOST_TEST(ep < 1e-6);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sigmoid)

BOOST_AUTO_TEST_CASE(gradients_of_inputs_scale_and_bias) {
  check_gradients(0.7, -1.3, 1.0);
  check_gradients(std::numbers::ln10, -10.0, 1.0);  // the initial values
  check_gradients(std::log(50.0), 2.0, 0.01);       // tiny inputs: the normalisation's gradient matters
  check_gradients(0.7, -1.3, 1.0, 4);               // rows in blocks of 4 and 2, each computed again in backward
}

// Sharded over processes (forward_shard): one rank takes the rows of S and of Sᵀ, so its
// gradients are checked against central differences too; 2 and 3 ranks (threads) give the
// whole loss's values, rows of its gradients and those of t′ and b.
BOOST_AUTO_TEST_CASE(sharded_gradients_and_ranks) {
  dmatrix px = fm::test::random_matrix(7, 5, 1), py = fm::test::random_matrix(7, 5, 2);
  py.row(2) = px.row(2) * 1.5;
  auto setup = [](dloss& l) {
    l.set_logit_scale(0.7);
    l.set_logit_bias(-1.3);
  };
  for (std::size_t row_block : {0, 2}) {
    dloss loss;
    setup(loss);
    loss.set_row_block(row_block);
    loss.forward_shard(px, py, {});
    loss.backward();
    const dmatrix dx = loss.dx(), dy = loss.dy();
    const std::vector<double> dparams(loss.gradients().begin(), loss.gradients().end());
    auto f = [&] { return static_cast<double>(loss.forward_shard(px, py, {})); };
    const double ex = fm::test::relative_error(fm::test::span_of(dx), fm::test::numeric_gradient(fm::test::span_of(px), f));
    const double ey = fm::test::relative_error(fm::test::span_of(dy), fm::test::numeric_gradient(fm::test::span_of(py), f));
    const double ep = fm::test::relative_error(dparams, fm::test::numeric_gradient(loss.parameters(), f));
    BOOST_TEST_MESSAGE("sharded sigmoid loss gradient errors, one rank, row block " << row_block << ": x " << ex << ", y "
                                                                                   << ey << ", (t', b) " << ep);
    BOOST_TEST(ex < 1e-6);
    BOOST_TEST(ey < 1e-6);
    BOOST_TEST(ep < 1e-6);
    for (int ranks : {1, 2, 3}) fm::test::check_shard_equals_whole<dloss>(ranks, row_block, px, py, setup);
  }
}

BOOST_AUTO_TEST_CASE(initial_values_and_names) {
  const fm::sigmoid_loss<> loss;
  BOOST_TEST(std::abs(static_cast<double>(loss.logit_scale()) - std::log(10.0)) < 1e-6);
  BOOST_TEST(loss.logit_bias() == -10.0f);
  BOOST_TEST(fm::sigmoid_loss<>::parameter_names[0] == "logit_scale");
  BOOST_TEST(fm::sigmoid_loss<>::parameter_names[1] == "logit_bias");
}

BOOST_AUTO_TEST_CASE(matches_a_direct_evaluation) {
  // The definition written out in plain double loops, as a reference independent of the backend.
  dloss loss;
  const dmatrix px = fm::test::random_matrix(5, 4, 7), py = fm::test::random_matrix(5, 4, 8);
  loss.set_logit_scale(1.1);
  loss.set_logit_bias(-0.4);
  const double l = loss.forward(px, py);
  double ref = 0;
  for (Eigen::Index i = 0; i < 5; ++i)
    for (Eigen::Index j = 0; j < 5; ++j) {
      const double s = px.row(i).normalized().dot(py.row(j).normalized());
      const double z = i == j ? 1.0 : -1.0, logit = std::exp(1.1) * s - 0.4;
      ref -= std::log(1.0 / (1.0 + std::exp(-z * logit)));
    }
  ref /= 5;
  BOOST_TEST(std::abs(l - ref) < 1e-13 * ref);
}

BOOST_AUTO_TEST_CASE(matches_pytorch) {
  // tests/fixtures/parity/sigmoid_loss.safetensors (tools/make_parity_fixtures.py): float32
  // inputs, loss and gradients computed by torch in float64.
  const auto f = fm::io::read_safetensors<double>(std::string(FUSEMIX_FIXTURE_DIR) + "/parity/sigmoid_loss.safetensors");
  for (const std::string c : {"a", "b"})
    for (const std::size_t row_block : {0, 3}) {
    auto at = [&](const std::string& name) -> const fm::io::basic_tensor<double>& {
      return f.tensors.at(c + "." + name);
    };
    const auto& x = at("px");
    const auto rows = x.shape[0], cols = x.shape[1];
    const fm::matrix<float> px = Eigen::Map<const dmatrix>(x.data.data(), static_cast<Eigen::Index>(rows),
                                                           static_cast<Eigen::Index>(cols)).cast<float>();
    const fm::matrix<float> py = Eigen::Map<const dmatrix>(at("py").data.data(), static_cast<Eigen::Index>(rows),
                                                           static_cast<Eigen::Index>(cols)).cast<float>();
    fm::sigmoid_loss<> loss;
    loss.set_row_block(row_block);
    loss.set_logit_scale(static_cast<float>(at("logit_scale").data[0]));
    loss.set_logit_bias(static_cast<float>(at("logit_bias").data[0]));
    const double l = loss.forward(px, py);
    loss.backward();
    auto max_rel = [](const auto& ours, const std::vector<double>& ref) {
      double diff = 0, scale = 0;
      for (std::size_t i = 0; i < ref.size(); ++i)
        diff = std::max(diff, std::abs(static_cast<double>(ours.data()[i]) - ref[i])), scale = std::max(scale, std::abs(ref[i]));
      return diff / scale;
    };
    const double el = std::abs(l - at("loss").data[0]) / std::abs(at("loss").data[0]);
    const double ex = max_rel(loss.dx(), at("grad_px").data), ey = max_rel(loss.dy(), at("grad_py").data);
    const double es = std::abs(loss.gradients()[0] - at("grad_logit_scale").data[0]) / std::abs(at("grad_logit_scale").data[0]);
    const double eb = std::abs(loss.gradients()[1] - at("grad_logit_bias").data[0]) / std::abs(at("grad_logit_bias").data[0]);
    BOOST_TEST_MESSAGE("case " << c << ", row block " << row_block << ", float32 vs PyTorch: loss " << el << ", dpx " << ex << ", dpy " << ey
                               << ", dt' " << es << ", db " << eb);
    BOOST_TEST(el < 1e-5);
    BOOST_TEST(ex < 1e-5);
    BOOST_TEST(ey < 1e-5);
    BOOST_TEST(es < 1e-5);
    BOOST_TEST(eb < 1e-5);
  }
}

BOOST_AUTO_TEST_CASE(stable_at_extreme_logits) {
  // t = 1e4, b = −5e3 and identical orthogonal pairs: logits of ±5e3 would overflow exp() in a
  // naive log(1 + e^u); every pair is right by a wide margin, the loss ~0, every gradient finite.
  fm::sigmoid_loss<> loss;
  fm::matrix<float> p = fm::matrix<float>::Identity(4, 4);
  loss.set_logit_scale(static_cast<float>(std::log(1e4)));
  loss.set_logit_bias(-5e3f);
  const double l = loss.forward(p, p);
  loss.backward();
  BOOST_TEST(std::isfinite(l));
  BOOST_TEST(l < 1e-6);
  BOOST_TEST(loss.dx().allFinite());
  BOOST_TEST(std::isfinite(loss.gradients()[0]));
  // Every negative pair wrong by a large margin: the loss grows linearly, without overflow.
  loss.set_logit_bias(1e4);
  const double wrong = loss.forward(p, p);
  BOOST_TEST(std::isfinite(wrong));
  BOOST_TEST(wrong > 1e4);
}

BOOST_AUTO_TEST_CASE(refuses_bad_input) {
  using fm::test::message_has;
  fm::sigmoid_loss<fm::cpu::backend<double>> loss;
  const dmatrix a = fm::test::random_matrix(4, 3, 1);
  BOOST_CHECK_EXCEPTION(loss.forward(a, fm::test::random_matrix(5, 3, 2)), fm::shape_error,
                        message_has({"fusemix::sigmoid_loss::forward", "same shape", "expected 4x3, got 5x3"}));
  BOOST_CHECK_EXCEPTION(loss.forward(dmatrix(0, 3), dmatrix(0, 3)), fm::shape_error, message_has({"must not be empty"}));
  loss.set_logit_scale(std::numeric_limits<double>::infinity());
  BOOST_CHECK_EXCEPTION(loss.forward(a, a), fm::numeric_error, message_has({"logit_scale and logit_bias must be finite"}));
  loss.set_logit_scale(1);
  dmatrix bad = a;
  bad(1, 1) = std::nan("");
  BOOST_CHECK_EXCEPTION(loss.forward(bad, a), fm::numeric_error, message_has({"the loss is not finite"}));
}

BOOST_AUTO_TEST_SUITE_END()
