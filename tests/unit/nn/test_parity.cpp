// SPDX-License-Identifier: Apache-2.0
// Parity with the authors' PyTorch modules: weights, inputs, outputs and gradients written by
// tools/make_parity_fixtures.py (reference computed in float64 by PyTorch).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/nn/adapter.hpp>
#include <fusemix/io/npy.hpp>
#include <fusemix/io/safetensors.hpp>
#include <fusemix/io/weights.hpp>

namespace fm = fusemix;

namespace {

const std::string dir = std::string(FUSEMIX_FIXTURE_DIR) + "/parity/";

struct parity_case {
  const char* name;
  fm::adapter_shape shape;
};
const parity_case cases[] = {
    {"adapter_d2", {.in_dim = 12, .out_dim = 8, .depth = 2, .expansion = 4}},
    {"adapter_d0", {.in_dim = 12, .out_dim = 8, .depth = 0, .expansion = 4}},
    {"adapter_d1_e2", {.in_dim = 10, .out_dim = 6, .depth = 1, .expansion = 2}},
};

// max |a − ref| / max(max |ref|, 1): the error relative to the tensor's scale.
template <class A, class R>
double scaled_error(const A& a, const R& ref, std::size_t n) {
  double diff = 0, scale = 1;
  for (std::size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - static_cast<double>(ref[i])));
    scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
  }
  return diff / scale;
}

// Runs one case on backend B and checks output, input gradient and every parameter gradient.
template <fm::Scalar T>
void check_case(const parity_case& c, double tol) {
  using backend = fm::cpu::backend<T>;
  fm::fusion_adapter<fm::dynamic_shape, backend> a(c.shape, {.dropout = 0.6, .seed = 1});
  const auto weights = fm::io::read_safetensors<T>(dir + c.name + ".safetensors");
  fm::io::load_parameters(a, fm::io::x_prefix, weights.tensors);
  const auto x = fm::io::read_npy<T>(dir + c.name + "_x.npy");
  const auto dy = fm::io::read_npy<T>(dir + c.name + "_dy.npy");
  const auto y_ref = fm::io::read_npy<double>(dir + c.name + "_y.npy");
  const auto dx_ref = fm::io::read_npy<double>(dir + c.name + "_dx.npy");
  const auto grads_ref = fm::io::read_safetensors<double>(dir + c.name + "_grads.safetensors");

  const auto y = a.forward(x);  // evaluation mode: dropout off, as the module's eval()
  BOOST_REQUIRE_EQUAL(y.rows(), y_ref.rows());
  BOOST_REQUIRE_EQUAL(y.cols(), y_ref.cols());
  const double ey = scaled_error(y.data(), y_ref.data(), static_cast<std::size_t>(y.size()));
  BOOST_TEST(ey < tol, c.name << " output: " << ey);
  const auto dx = a.backward(dy);
  const double edx = scaled_error(dx.data(), dx_ref.data(), static_cast<std::size_t>(dx.size()));
  BOOST_TEST(edx < tol, c.name << " input gradient: " << edx);
  double worst = 0;
  // The gradients must cover exactly the module's parameters, by name.
  BOOST_TEST(grads_ref.tensors.size() == a.named_parameters().size());
  for (const auto& p : a.named_parameters()) {
    const auto& ref = fm::io::require(grads_ref.tensors, std::string(fm::io::x_prefix) + p.name,
                                      std::span<const std::size_t>(p.shape));
    const double e = scaled_error(a.gradients().data() + p.offset, ref.data.data(), p.size);
    BOOST_TEST(e < tol, c.name << " " << p.name << ": " << e);
    worst = std::max(worst, e);
  }
  BOOST_TEST_MESSAGE(c.name << " (" << sizeof(T) * 8 << "-bit): output " << ey << ", input gradient " << edx
                            << ", worst parameter gradient " << worst);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(parity)

// float32 within 1e-5 of the float64 reference (PyTorch's own float32 run is within 5e-7).
BOOST_AUTO_TEST_CASE(adapters_float32) {
  for (const auto& c : cases) check_case<float>(c, 1e-5);
}

// In double the only difference from PyTorch is summation order.
BOOST_AUTO_TEST_CASE(adapters_float64) {
  for (const auto& c : cases) check_case<double>(c, 1e-12);
}

BOOST_AUTO_TEST_CASE(weights_round_trip_by_name) {
  const auto& c = cases[0];
  fm::fusion_adapter<> a(c.shape);
  const auto weights = fm::io::read_safetensors(dir + c.name + ".safetensors");
  fm::io::load_parameters(a, fm::io::x_prefix, weights.tensors);
  fm::io::tensor_map out;
  fm::io::store_parameters(a, fm::io::x_prefix, out);
  BOOST_TEST(out.size() == weights.tensors.size());
  for (const auto& [name, t] : weights.tensors) {
    BOOST_TEST_REQUIRE(out.count(name) == 1u, name);
    BOOST_TEST((out.at(name).shape == t.shape), name);
    BOOST_TEST((out.at(name).data == t.data), name);
  }
}

BOOST_AUTO_TEST_CASE(loading_refuses_mismatched_models) {
  const auto weights = fm::io::read_safetensors(dir + std::string("adapter_d2.safetensors"));
  // Depth 1 model: the file has block 1 tensors the model lacks.
  fm::fusion_adapter<> shallow(fm::adapter_shape{.in_dim = 12, .out_dim = 8, .depth = 1});
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(shallow, fm::io::x_prefix, weights.tensors), fm::io_error,
                        [](const fm::io_error& e) { return std::string(e.what()).find("unexpected tensor") != std::string::npos; });
  // Depth 3 model: block 2 is missing from the file.
  fm::fusion_adapter<> deep(fm::adapter_shape{.in_dim = 12, .out_dim = 8, .depth = 3});
  BOOST_CHECK_THROW(fm::io::load_parameters(deep, fm::io::x_prefix, weights.tensors), fm::io_error);
  // Wrong width: shapes differ.
  fm::fusion_adapter<> wide(fm::adapter_shape{.in_dim = 12, .out_dim = 9, .depth = 2});
  BOOST_CHECK_THROW(fm::io::load_parameters(wide, fm::io::x_prefix, weights.tensors), fm::shape_error);
  // Wrong prefix: nothing there.
  fm::fusion_adapter<> a(fm::adapter_shape{.in_dim = 12, .out_dim = 8, .depth = 2});
  BOOST_CHECK_THROW(fm::io::load_parameters(a, fm::io::y_prefix, weights.tensors), fm::io_error);
}

BOOST_AUTO_TEST_SUITE_END()
