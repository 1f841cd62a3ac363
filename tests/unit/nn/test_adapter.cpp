// SPDX-License-Identifier: Apache-2.0
// The fusion adapter: shapes, names, counts, gradient check of a whole depth-2 adapter.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/nn/adapter.hpp>
#include <fusemix/nn/identity_adapter.hpp>
#include <fusemix/io/safetensors.hpp>
#include <fusemix/io/weights.hpp>

#include "gradcheck.hpp"
#include "messages.hpp"
#include "temp_files.hpp"

namespace fm = fusemix;
using fm::test::dmatrix;
using dbackend = fm::cpu::backend<double>;

BOOST_AUTO_TEST_SUITE(adapter)

BOOST_AUTO_TEST_CASE(parameter_counts_match_pytorch) {
  // sum(p.numel() for p in vis_proj.parameters()) of the authors' modules.
  static_assert(fm::image_adapter::parameter_count == 76'330'496);
  static_assert(fm::text_adapter::parameter_count == 34'109'952);
  static_assert(fm::fusion_adapter<>::parameter_count == fm::dynamic);
  static_assert(fm::adapter_shape{.in_dim = 12, .out_dim = 8, .depth = 0}.parameter_count() == 2 * 12 + 8 * 12 + 8);
  fm::fusion_adapter<> a(fm::adapter_shape{.in_dim = 12, .out_dim = 8, .depth = 2}, {.dropout = 0.0});
  BOOST_TEST(a.size() == (fm::adapter_shape{.in_dim = 12, .out_dim = 8, .depth = 2}.parameter_count()));
}

BOOST_AUTO_TEST_CASE(names_follow_pytorch) {
  fm::fusion_adapter<> a(fm::adapter_shape{.in_dim = 6, .out_dim = 3, .depth = 2, .expansion = 2});
  std::vector<std::string> names;
  for (const auto& p : a.named_parameters()) names.push_back(p.name);
  const std::vector<std::string> want{
      "0.ln.weight", "0.ln.bias", "0.fn.0.weight", "0.fn.0.bias", "0.fn.3.weight", "0.fn.3.bias",
      "1.ln.weight", "1.ln.bias", "1.fn.0.weight", "1.fn.0.bias", "1.fn.3.weight", "1.fn.3.bias",
      "2.weight",    "2.bias",    "3.weight",      "3.bias"};
  BOOST_TEST(names == want, boost::test_tools::per_element());
  const auto& w1 = a.named_parameters()[2];
  BOOST_TEST((w1.shape == std::vector<std::size_t>{12, 6}));
  BOOST_TEST((a.named_parameters()[14].shape == std::vector<std::size_t>{3, 6}));
  BOOST_TEST(a.parameter("3.bias").size() == 3u);
  BOOST_CHECK_THROW((void)a.parameter("4.weight"), fm::argument_error);
}

BOOST_AUTO_TEST_CASE(static_and_dynamic_shapes_agree) {
  constexpr fm::adapter_shape s{.in_dim = 10, .out_dim = 4, .depth = 1};
  fm::fusion_adapter<s> fixed({.dropout = 0.1, .seed = 5});
  fm::fusion_adapter<> run_time(s, {.dropout = 0.1, .seed = 5});
  BOOST_TEST((std::vector<float>(fixed.parameters().begin(), fixed.parameters().end()) ==
              std::vector<float>(run_time.parameters().begin(), run_time.parameters().end())));
  fm::fusion_adapter<fm::adapter_shape{.in_dim = fm::dynamic, .out_dim = 4, .depth = 1}> partial(s);
  BOOST_TEST(partial.size() == fixed.size());
  BOOST_CHECK_EXCEPTION((fm::fusion_adapter<s>(fm::adapter_shape{.in_dim = 11, .out_dim = 4, .depth = 1})),
                        fm::shape_error, [](const fm::shape_error& e) {
                          return std::string(e.what()).find("in_dim differs") != std::string::npos &&
                                 std::string(e.what()).find("expected 10, got 11") != std::string::npos;
                        });
  BOOST_CHECK_THROW((fm::fusion_adapter<>(fm::adapter_shape{.in_dim = 0})), fm::shape_error);
  BOOST_CHECK_THROW((fm::fusion_adapter<>(fm::adapter_shape{})), fm::shape_error);  // in_dim dynamic
  BOOST_CHECK_THROW((fm::fusion_adapter<>(s, {.dropout = -0.1})), fm::argument_error);
}

BOOST_AUTO_TEST_CASE(forward_checks_width_and_is_deterministic) {
  fm::fusion_adapter<> a(fm::adapter_shape{.in_dim = 8, .out_dim = 4, .depth = 1}, {.seed = 3});
  fm::fusion_adapter<> b(fm::adapter_shape{.in_dim = 8, .out_dim = 4, .depth = 1}, {.seed = 3});
  fm::fusion_adapter<> c(fm::adapter_shape{.in_dim = 8, .out_dim = 4, .depth = 1}, {.seed = 4});
  const fm::cpu::backend<float>::matrix_type x = fm::test::random_matrix(3, 8, 1).cast<float>();
  const auto ya = a.forward(x);
  BOOST_TEST((ya == b.forward(x)));
  BOOST_TEST((ya != c.forward(x)));
  fm::cpu::backend<float>::matrix_type bad(3, 7);
  BOOST_CHECK_THROW(a.forward(bad), fm::shape_error);
  // Training mode draws a new dropout mask each call; evaluation mode never drops.
  a.set_training(true);
  const auto t1 = a.forward(x);
  const auto t2 = a.forward(x);
  BOOST_TEST((t1 != t2));
  BOOST_TEST(a.dropout_draws() == 2u);
  a.set_training(false);
  BOOST_TEST((a.forward(x) == ya));
}

BOOST_AUTO_TEST_CASE(copies_are_independent) {
  fm::fusion_adapter<> a(fm::adapter_shape{.in_dim = 5, .out_dim = 2, .depth = 1}, {.seed = 1});
  fm::fusion_adapter<> b = a;
  b.parameters()[0] += 1.0f;
  const fm::cpu::backend<float>::matrix_type x = fm::test::random_matrix(2, 5, 2).cast<float>();
  const auto ya = a.forward(x);
  BOOST_TEST((ya != b.forward(x)));  // b's layers point at b's buffer, not a's
  fm::fusion_adapter<> c = std::move(b);
  BOOST_TEST((c.forward(x) != ya));
}

BOOST_AUTO_TEST_CASE(assignment_keeps_buffers_and_backward_checks_shape) {
  fm::fusion_adapter<> a(fm::adapter_shape{.in_dim = 5, .out_dim = 2, .depth = 1}, {.seed = 1});
  const fm::fusion_adapter<> b(fm::adapter_shape{.in_dim = 5, .out_dim = 2, .depth = 1}, {.seed = 2});
  const float* where = a.parameters().data();
  a = b;  // same layout: values copied in place, so an optimiser's pointers stay valid
  BOOST_TEST(a.parameters().data() == where);
  BOOST_TEST(std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin()));
  const fm::cpu::backend<float>::matrix_type x = fm::test::random_matrix(3, 5, 1).cast<float>();
  a.forward(x);
  fm::cpu::backend<float>::matrix_type wrong(3, 3);
  BOOST_CHECK_THROW(a.backward(wrong), fm::shape_error);
  BOOST_CHECK_THROW((fm::fusion_adapter<>(fm::adapter_shape{.in_dim = std::size_t{1} << 31, .out_dim = std::size_t{1} << 31, .depth = 1})),
                    fm::shape_error);
}

BOOST_AUTO_TEST_CASE(whole_adapter_gradients_depth_2) {
  for (bool training : {false, true}) {
    fm::fusion_adapter<fm::dynamic_shape, dbackend> a(fm::adapter_shape{.in_dim = 5, .out_dim = 3, .depth = 2},
                                                      {.dropout = 0.25, .seed = 9});
    // Non-default LayerNorm parameters so that their gradients are exercised fully.
    fm::philox_engine rng(4);
    for (const auto& p : a.named_parameters())
      if (p.name.find("ln.") != std::string::npos || p.name.rfind("2.", 0) == 0)
        for (std::size_t i = 0; i < p.size; ++i) a.parameters()[p.offset + i] += 0.2 * (rng.uniform() - 0.5);
    a.set_training(training);
    dmatrix x = fm::test::random_matrix(4, 5, 10);
    const dmatrix r = fm::test::random_matrix(4, 3, 11);
    auto run = [&] {
      a.set_dropout_draws(7);  // the same mask for every evaluation
      return fm::test::weighted_sum(a.forward(x), r);
    };
    run();
    const dmatrix dx = a.backward(r);
    const std::vector<double> grads(a.gradients().begin(), a.gradients().end());
    const auto nx = fm::test::numeric_gradient(fm::test::span_of(x), run);
    const auto np = fm::test::numeric_gradient(a.parameters(), run);
    const double ex = fm::test::relative_error(fm::test::span_of(dx), nx);
    const double ep = fm::test::relative_error(grads, np);
    BOOST_TEST_MESSAGE("adapter depth 2, training=" << training << ": input " << ex << ", parameters " << ep);
    BOOST_TEST(ex < 1e-6);
    BOOST_TEST(ep < 1e-6);
    // Every parameter tensor individually, so a wrong small tensor cannot hide behind a big one.
    for (const auto& p : a.named_parameters()) {
      const double e = fm::test::relative_error(std::span<const double>(grads).subspan(p.offset, p.size),
                                                std::span<const double>(np).subspan(p.offset, p.size));
      BOOST_TEST(e < 1e-6, p.name << ": " << e);
    }
  }
}

// Gradient caching's backward: the slices of a batch, each after its forward_slice, the first
// writing the parameter gradients and the rest adding to them, give the whole batch's gradients.
BOOST_AUTO_TEST_CASE(accumulating_backward_sums_the_slices) {
  fm::fusion_adapter<fm::dynamic_shape, dbackend> a(fm::adapter_shape{.in_dim = 5, .out_dim = 3, .depth = 2},
                                                    {.dropout = 0.25, .seed = 9});
  a.set_training(true);
  const dmatrix x = fm::test::random_matrix(7, 5, 10), r = fm::test::random_matrix(7, 3, 11);
  a.set_dropout_draws(3);
  a.forward(x);
  a.backward(r);
  const std::vector<double> whole(a.gradients().begin(), a.gradients().end());
  auto in_slices = [&](bool accumulate) {
    const dmatrix x1 = x.topRows(4), x2 = x.bottomRows(3), r1 = r.topRows(4), r2 = r.bottomRows(3);
    a.forward_slice(x1, 3, 0);
    a.backward(r1);
    a.forward_slice(x2, 3, 4);
    a.backward(r2, accumulate);
    return std::vector<double>(a.gradients().begin(), a.gradients().end());
  };
  const double summed = fm::test::relative_error(in_slices(true), whole);
  const double last_only = fm::test::relative_error(in_slices(false), whole);
  BOOST_TEST_MESSAGE("slices accumulated vs the whole batch: " << summed << " (the last slice alone: " << last_only << ")");
  BOOST_TEST(summed < 1e-12);
  BOOST_TEST(last_only > 1e-2);
}

BOOST_AUTO_TEST_CASE(backward_says_which_gradients_are_final_layer_by_layer) {
  // What a data-parallel trainer sums while the layers below still run: each call's range must
  // already hold its final values, the ranges must start at the layers' first parameters, from the
  // projection down to block 0, and end at element 0.
  fm::fusion_adapter<fm::dynamic_shape, dbackend> a(fm::adapter_shape{.in_dim = 5, .out_dim = 3, .depth = 2},
                                                    {.dropout = 0.25, .seed = 9});
  a.set_training(true);
  const dmatrix x = fm::test::random_matrix(7, 5, 12), r = fm::test::random_matrix(7, 3, 13);
  a.forward(x);
  std::vector<std::size_t> firsts;
  std::vector<std::vector<double>> seen;  // gradients()[first, end) at each call
  a.backward(r, false, [&](std::size_t first) {
    firsts.push_back(first);
    seen.emplace_back(a.gradients().begin() + static_cast<std::ptrdiff_t>(first), a.gradients().end());
  });
  std::vector<std::size_t> want;  // the first parameter of each layer, last layer first
  for (const char* layer : {"3.", "2.", "1.", "0."})
    for (const auto& p : a.named_parameters())
      if (p.name.starts_with(layer)) {
        want.push_back(p.offset);
        break;
      }
  BOOST_TEST(firsts == want, boost::test_tools::per_element());
  BOOST_TEST(firsts.back() == 0u);
  bool final_values = true;
  for (std::size_t i = 0; i < firsts.size(); ++i)
    final_values = final_values && std::equal(seen[i].begin(), seen[i].end(), a.gradients().begin() + static_cast<std::ptrdiff_t>(firsts[i]));
  BOOST_TEST(final_values);
  // And the plain backward writes the same gradients.
  const std::vector<double> hooked(a.gradients().begin(), a.gradients().end());
  a.backward(r);
  BOOST_TEST(std::equal(hooked.begin(), hooked.end(), a.gradients().begin()));
}

// The trainer's backward: no input gradient, the first layer's parameter gradients from dyᵀ·x̂
// (layer_norm_linear_parameter_gradients). The same gradients as backward's, checked against
// central differences too, at depth 0 (the final LayerNorm and the projection are the first
// layer), 1 and 2, written and accumulated over slices, with non-default LayerNorm parameters.
BOOST_AUTO_TEST_CASE(backward_parameters_equals_backward_without_the_input_gradient) {
  for (const std::size_t depth : {std::size_t{0}, std::size_t{1}, std::size_t{2}}) {
    fm::fusion_adapter<fm::dynamic_shape, dbackend> a(fm::adapter_shape{.in_dim = 5, .out_dim = 3, .depth = depth},
                                                      {.dropout = 0.25, .seed = 9});
    fm::philox_engine rng(4);
    for (const auto& p : a.named_parameters())  // γ ≠ 1, β ≠ 0 everywhere (padding stays zero)
      for (std::size_t i = 0; i < p.size; ++i) a.parameters()[p.offset + i] += 0.4 * (rng.uniform() - 0.5);
    a.set_training(true);
    const dmatrix x = fm::test::random_matrix(7, 5, 10), r = fm::test::random_matrix(7, 3, 11);
    auto run = [&] {
      a.set_dropout_draws(3);
      return fm::test::weighted_sum(a.forward(x), r);
    };
    run();
    a.backward(r);
    const std::vector<double> full(a.gradients().begin(), a.gradients().end());
    for (const auto& p : a.named_parameters())  // every gradient must be written
      std::fill_n(a.gradients().begin() + static_cast<std::ptrdiff_t>(p.offset), p.size, 99.0);
    run();
    std::vector<std::size_t> firsts;
    a.backward_parameters(r, false, [&](std::size_t first) { firsts.push_back(first); });
    const std::vector<double> params_only(a.gradients().begin(), a.gradients().end());
    const auto numeric = fm::test::numeric_gradient(a.parameters(), run);
    const double vs_backward = fm::test::relative_error(params_only, full);
    const double vs_numeric = fm::test::relative_error(params_only, numeric);
    BOOST_TEST_MESSAGE("depth " << depth << ": backward_parameters vs backward " << vs_backward << ", vs central differences "
                                << vs_numeric);
    BOOST_TEST(vs_backward < 1e-12);
    BOOST_TEST(vs_numeric < 1e-6);
    for (const auto& p : a.named_parameters())
      BOOST_TEST(fm::test::relative_error(std::span<const double>(params_only).subspan(p.offset, p.size),
                                          std::span<const double>(full).subspan(p.offset, p.size)) < 1e-12,
                 "depth " << depth << ", " << p.name);
    BOOST_TEST(firsts.size() == depth + 2);  // one call per layer, as backward makes
    BOOST_TEST(firsts.back() == 0u);
    // Slices, the second accumulated: the whole batch's gradients.
    const dmatrix x1 = x.topRows(4), x2 = x.bottomRows(3), r1 = r.topRows(4), r2 = r.bottomRows(3);
    a.forward_slice(x1, 3, 0);
    a.backward_parameters(r1);
    a.forward_slice(x2, 3, 4);
    a.backward_parameters(r2, true);
    const std::vector<double> sliced(a.gradients().begin(), a.gradients().end());
    BOOST_TEST(fm::test::relative_error(sliced, full) < 1e-12, "depth " << depth << ": slices");
  }
}

BOOST_AUTO_TEST_CASE(identity_adapter_passes_through) {
  fm::identity_adapter<> id(4);
  const fm::cpu::backend<float>::matrix_type x = fm::test::random_matrix(3, 4, 1).cast<float>();
  BOOST_TEST((id.forward(x) == x));
  BOOST_TEST((id.backward(x) == x));
  BOOST_TEST(id.size() == 0u);
  BOOST_TEST(id.named_parameters().empty());
  fm::cpu::backend<float>::matrix_type bad(3, 5);
  BOOST_CHECK_THROW(id.forward(bad), fm::shape_error);
}

// ---- bad input: the cases of the "Reliability" issue -----------------------------------------

using fm::test::message_has;

BOOST_AUTO_TEST_CASE(forward_refuses_a_wrong_width_naming_both) {
  fm::fusion_adapter<> a(fm::adapter_shape{.in_dim = 8, .out_dim = 4, .depth = 1});
  for (Eigen::Index cols : {7, 9, 0}) {
    const fm::cpu::backend<float>::matrix_type x = fm::cpu::backend<float>::matrix_type::Zero(3, cols);
    BOOST_CHECK_EXCEPTION(a.forward(x), fm::shape_error,
                          message_has({"fusemix::fusion_adapter::forward: input columns must equal in_dim",
                                       "expected 8, got " + std::to_string(cols)}));
  }
  fm::identity_adapter<> id(4);
  BOOST_CHECK_EXCEPTION(id.forward(fm::cpu::backend<float>::matrix_type::Zero(2, 5)), fm::shape_error,
                        message_has({"fusemix::identity_adapter::forward", "expected 4, got 5"}));
}

BOOST_AUTO_TEST_CASE(load_parameters_refuses_missing_extra_and_misshapen_tensors) {
  const fm::adapter_shape shape{.in_dim = 6, .out_dim = 3, .depth = 1, .expansion = 2};
  fm::fusion_adapter<> source(shape, {.seed = 1});
  fm::io::tensor_map good;
  fm::io::store_parameters(source, fm::io::x_prefix, good);
  fm::io::store_parameters(source, fm::io::y_prefix, good);  // the other side's tensors are ignored
  fm::fusion_adapter<> a(shape, {.seed = 2});
  fm::io::load_parameters(a, fm::io::x_prefix, good);
  BOOST_TEST(std::equal(a.parameters().begin(), a.parameters().end(), source.parameters().begin()));

  // Written to a file and read back, so that the file overload can name it.
  fusemix::test::temp_dir dir;
  auto file_with = [&](const fm::io::tensor_map& t) {
    fm::io::write_safetensors(dir / "m.safetensors", t);
    return fm::io::read_safetensors(dir / "m.safetensors");
  };

  auto missing = good;
  missing.erase("vis_proj.0.fn.3.bias");
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(a, fm::io::x_prefix, missing), fm::io_error,
                        message_has({"fusemix::io::load_parameters: missing tensor \"vis_proj.0.fn.3.bias\""}));
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(a, fm::io::x_prefix, file_with(missing)), fm::io_error,
                        message_has({"fusemix::io::load_parameters: missing tensor \"vis_proj.0.fn.3.bias\"",
                                     "m.safetensors"}));

  // An extra tensor under the prefix (a deeper model, a typo) must not be ignored.
  auto extra = good;
  extra["vis_proj.9.weight"] = {.shape = {3}, .data = {1, 2, 3}};
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(a, fm::io::x_prefix, extra), fm::io_error,
                        message_has({"fusemix::io::load_parameters: unexpected tensor \"vis_proj.9.weight\"",
                                     "no such parameter"}));
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(a, fm::io::x_prefix, file_with(extra)), fm::io_error,
                        message_has({"unexpected tensor \"vis_proj.9.weight\"", "m.safetensors"}));

  // Tensors of another adapter, the last one misshapen: nothing of them may be loaded.
  fm::io::tensor_map misshapen;
  fm::io::store_parameters(fm::fusion_adapter<>(shape, {.seed = 3}), fm::io::x_prefix, misshapen);
  misshapen["vis_proj.2.bias"] = {.shape = {2}, .data = {1, 2}};
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(a, fm::io::x_prefix, misshapen), fm::shape_error,
                        message_has({"fusemix::io::load_parameters: tensor \"vis_proj.2.bias\"",
                                     "has the wrong shape (expected [3], got [2])"}));
  BOOST_TEST(std::equal(a.parameters().begin(), a.parameters().end(), source.parameters().begin()));

  // A NaN or infinite weight (a diverged model from elsewhere) is refused by name, and a double
  // too large for a float as well; nothing is loaded.
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    auto poisoned = good;
    poisoned.at("vis_proj.0.fn.3.weight").data[5] = bad;
    BOOST_CHECK_EXCEPTION(fm::io::load_parameters(a, fm::io::x_prefix, file_with(poisoned)), fm::numeric_error,
                          message_has({"fusemix::io::load_parameters: tensor \"vis_proj.0.fn.3.weight\"", "m.safetensors",
                                       "must be finite", " at index 5"}));
  }
  fm::io::basic_tensor_map<double> wide;
  fm::io::store_parameters(source, fm::io::x_prefix, wide);
  wide.at("vis_proj.2.bias").data[1] = 1e300;
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(a, fm::io::x_prefix, wide), fm::numeric_error,
                        message_has({"tensor \"vis_proj.2.bias\" must be finite", "inf at index 1"}));
  BOOST_TEST(std::equal(a.parameters().begin(), a.parameters().end(), source.parameters().begin()));
  misshapen = good;
  misshapen["vis_proj.0.fn.3.bias"] = {.shape = {2, 3}, .data = {1, 2, 3, 4, 5, 6}};
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(a, fm::io::x_prefix, misshapen), fm::shape_error,
                        message_has({"fusemix::io::load_parameters: tensor \"vis_proj.0.fn.3.bias\"",
                                     "has the wrong shape (expected [6], got [2, 3])"}));
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(a, fm::io::x_prefix, file_with(misshapen)), fm::shape_error,
                        message_has({"m.safetensors", "wrong shape (expected [6], got [2, 3])"}));

  // An adapter of other dimensions than the file's: the first tensor that differs is named.
  fm::fusion_adapter<> wider(fm::adapter_shape{.in_dim = 7, .out_dim = 3, .depth = 1, .expansion = 2});
  BOOST_CHECK_EXCEPTION(fm::io::load_parameters(wider, fm::io::x_prefix, good), fm::shape_error,
                        message_has({"wrong shape", "expected [7], got [6]"}));
  // None of the refused loads changed the adapter.
  BOOST_TEST(std::equal(a.parameters().begin(), a.parameters().end(), source.parameters().begin()));
}

BOOST_AUTO_TEST_CASE(embed_equals_forward_and_leaves_the_adapter_alone) {
  using fmatrix = fm::matrix<float>;
  for (const std::size_t depth : {0, 1, 2, 3}) {
    BOOST_TEST_CONTEXT("depth " << depth) {
      fm::fusion_adapter<> h({.in_dim = 10, .out_dim = 6, .depth = depth, .expansion = 3}, {.dropout = 0.5, .seed = 7});
      const fmatrix x = fmatrix::Random(9, 10), dy = fmatrix::Random(9, 6);
      const fmatrix want = h.forward(x);  // evaluation mode
      BOOST_TEST((h.embed(x) == want));   // bit for bit
      // In training mode embed still evaluates (no dropout) and does not touch forward's state:
      // the backward after it is the one of the last forward, and no mask is drawn.
      h.set_training(true);
      const fmatrix train_out = h.forward(x);
      const auto draws = h.dropout_draws();
      const fmatrix e = h.embed(x);
      BOOST_TEST((e == want));
      BOOST_TEST(h.dropout_draws() == draws);
      fm::fusion_adapter<> g = h;  // the same state, without the embed call
      const fmatrix dx_h = h.backward(dy);
      g.set_dropout_draws(draws - 1);
      BOOST_TEST((g.forward(x) == train_out));
      BOOST_TEST((g.backward(dy) == dx_h));
      BOOST_CHECK_THROW(static_cast<void>(h.embed(fmatrix::Random(2, 11))), fm::shape_error);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
