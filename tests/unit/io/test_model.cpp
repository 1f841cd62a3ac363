// SPDX-License-Identifier: Apache-2.0
// Model files back into adapters in one call (<fusemix/io/model.hpp>): the shape read from the
// tensors for every preset shape and for odd ones, a checked load into a compile-time shape that
// names the field that differs, both sides and the loss's scalars, and malformed files.
#include <boost/test/unit_test.hpp>

#include <span>
#include <string>
#include <vector>

#include <fusemix/fusemix.hpp>

#include "messages.hpp"
#include "temp_files.hpp"

namespace fm = fusemix;
namespace io = fusemix::io;
using fm::test::message_has;

namespace {

// The tensor names and shapes of an adapter of shape `s` under `prefix`, without values (the
// shapes are all inference reads), built from the PyTorch module's layout.
io::tensor_map shapes_of(const fm::adapter_shape& s, const std::string& p) {
  io::tensor_map t;
  const std::size_t d = s.in_dim, h = s.expansion * s.in_dim;
  for (std::size_t i = 0; i < s.depth; ++i) {
    const std::string b = p + std::to_string(i) + ".";
    t[b + "ln.weight"].shape = {d};
    t[b + "ln.bias"].shape = {d};
    t[b + "fn.0.weight"].shape = {h, d};
    t[b + "fn.0.bias"].shape = {h};
    t[b + "fn.3.weight"].shape = {d, h};
    t[b + "fn.3.bias"].shape = {d};
  }
  t[p + std::to_string(s.depth) + ".weight"].shape = {d};
  t[p + std::to_string(s.depth) + ".bias"].shape = {d};
  t[p + std::to_string(s.depth + 1) + ".weight"].shape = {s.out_dim, d};
  t[p + std::to_string(s.depth + 1) + ".bias"].shape = {s.out_dim};
  return t;
}

std::vector<float> params(const fm::fusion_adapter<>& h) {
  std::vector<float> v(h.parameters().size());
  h.copy_parameters_to(std::span<float>(v));
  return v;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(model_files)

BOOST_AUTO_TEST_CASE(the_shape_is_read_from_the_tensors) {
  const fm::adapter_shape cases[] = {
      fm::dinov2_vitg14, fm::bge_large,
      {.in_dim = 512, .out_dim = 512, .depth = 2, .expansion = 4},  // the audio presets (CLAP, depth 2)
      {.in_dim = 9, .out_dim = 3, .depth = 0, .expansion = 4},      // no blocks
      {.in_dim = 12, .out_dim = 7, .depth = 3, .expansion = 2},     // another widening
  };
  for (const auto& s : cases)
    for (const std::string prefix : {"vis_proj.", "text_proj."}) {
      BOOST_TEST_CONTEXT(prefix << " in " << s.in_dim << " out " << s.out_dim << " depth " << s.depth << " x"
                                << s.expansion) {
        auto t = shapes_of(s, prefix);
        const auto other = shapes_of({.in_dim = 5, .out_dim = 2, .depth = 1}, prefix == "vis_proj." ? "text_proj." : "vis_proj.");
        t.insert(other.begin(), other.end());
        const fm::adapter_shape got = io::infer_adapter_shape(t, prefix);
        BOOST_TEST((got == (s.depth == 0 ? fm::adapter_shape{s.in_dim, s.out_dim, 0, 4} : s)));
        BOOST_TEST(io::has_adapter(t, prefix));
      }
    }
}

BOOST_AUTO_TEST_CASE(load_adapter_returns_the_trained_adapter) {
  fm::test::temp_dir dir;
  const fm::adapter_shape sx{.in_dim = 12, .out_dim = 6, .depth = 2, .expansion = 3};
  const fm::adapter_shape sy{.in_dim = 8, .out_dim = 6, .depth = 1, .expansion = 4};
  fm::fusion_adapter<> hx(sx, {.seed = 1}), hy(sy, {.seed = 2});
  io::tensor_map t;
  io::store_parameters(hx, io::x_prefix, t);
  io::store_parameters(hy, io::y_prefix, t);
  t["temp"] = {.shape = {}, .data = {0.07f}};
  io::write_safetensors(dir / "m.safetensors", t);

  auto lx = io::load_adapter(dir / "m.safetensors", io::side::x);
  BOOST_TEST((lx.shape() == sx));
  BOOST_TEST(!lx.training());
  BOOST_TEST((params(lx) == params(hx)));
  const fm::matrix<float> z = fm::matrix<float>::Random(5, 12);
  hx.set_training(false);
  const fm::matrix<float> want = hx.forward(z);
  BOOST_TEST((lx.forward(z) == want));

  // Into a compile-time shape: the same weights; a field that differs is named.
  constexpr fm::adapter_shape fixed{.in_dim = 12, .out_dim = 6, .depth = 2, .expansion = 3};
  auto sl = io::load_adapter<fixed>(dir / "m.safetensors", io::side::x);
  BOOST_TEST((sl.shape() == sx));
  constexpr fm::adapter_shape deeper{.in_dim = 12, .out_dim = 6, .depth = 3, .expansion = 3};
  BOOST_CHECK_EXCEPTION(static_cast<void>(io::load_adapter<deeper>(dir / "m.safetensors", io::side::x)), fm::shape_error,
                        message_has({"fusemix::io::load_adapter: ", "m.safetensors", "the compile-time shape's depth",
                                     "vis_proj.", "expected 3, got 2"}));
  constexpr fm::adapter_shape wider{.in_dim = fm::dynamic, .out_dim = 8, .depth = fm::dynamic, .expansion = fm::dynamic};
  BOOST_CHECK_EXCEPTION(static_cast<void>(io::load_adapter<wider>(dir / "m.safetensors", io::side::y)), fm::shape_error,
                        message_has({"out_dim", "text_proj.", "expected 8, got 6"}));

  // Both sides and the loss in one call.
  const auto m = io::load_model(dir / "m.safetensors");
  BOOST_TEST_REQUIRE((m.x && m.y));
  BOOST_TEST((params(*m.y) == params(hy)));
  BOOST_TEST(m.loss == "contrastive");
  BOOST_TEST_REQUIRE(m.loss_parameters.size() == 1u);
  BOOST_TEST(m.loss_parameters[0].first == "temp");
  BOOST_TEST(m.loss_parameters[0].second == 0.07f);
}

BOOST_AUTO_TEST_CASE(load_model_reads_the_sigmoid_loss_and_an_identity_side) {
  fm::test::temp_dir dir;
  fm::fusion_adapter<> hx({.in_dim = 6, .out_dim = 4, .depth = 1}, {.seed = 3});
  io::tensor_map t;
  io::store_parameters(hx, io::x_prefix, t);
  t["logit_scale"] = {.shape = {}, .data = {2.3f}};
  t["logit_bias"] = {.shape = {}, .data = {-10.0f}};
  io::write_safetensors(dir / "x_only.safetensors", t);
  const auto m = io::load_model(dir / "x_only.safetensors");
  BOOST_TEST(m.x.has_value());
  BOOST_TEST(!m.y.has_value());
  BOOST_TEST(m.loss == "sigmoid");
  BOOST_TEST_REQUIRE(m.loss_parameters.size() == 2u);
  BOOST_TEST(m.loss_parameters[1].second == -10.0);
  BOOST_CHECK_EXCEPTION(static_cast<void>(io::load_adapter(dir / "x_only.safetensors", io::side::y)), fm::io_error,
                        message_has({"fusemix::io::load_adapter: ", "x_only.safetensors", "no adapter for side y",
                                     "text_proj.*"}));
}

BOOST_AUTO_TEST_CASE(malformed_files_are_refused_by_name) {
  fm::test::temp_dir dir;
  fm::fusion_adapter<> hx({.in_dim = 6, .out_dim = 4, .depth = 2}, {.seed = 4}), hy({.in_dim = 5, .out_dim = 3, .depth = 1});
  io::tensor_map t;
  io::store_parameters(hx, io::x_prefix, t);
  io::store_parameters(hy, io::y_prefix, t);
  io::write_safetensors(dir / "widths.safetensors", t);
  BOOST_CHECK_EXCEPTION(static_cast<void>(io::load_model(dir / "widths.safetensors")), fm::shape_error,
                        message_has({"fusemix::io::load_model: ", "widths.safetensors", "same shared width",
                                     "expected 4, got 3"}));
  auto no_proj = t;
  no_proj.erase("vis_proj.3.weight");
  io::write_safetensors(dir / "no_proj.safetensors", no_proj);
  BOOST_CHECK_EXCEPTION(static_cast<void>(io::load_adapter(dir / "no_proj.safetensors", io::side::x)), fm::io_error,
                        message_has({"fusemix::io::infer_adapter_shape: ", "no_proj.safetensors",
                                     "no adapter under \"vis_proj.\" (2 block(s) found)", "vis_proj.3.weight"}));
  // A prefix without its trailing dot is refused, not read as "no such tensors".
  BOOST_CHECK_EXCEPTION(static_cast<void>(io::infer_adapter_shape(t, "vis_proj")), fm::argument_error,
                        message_has({"fusemix::io::infer_adapter_shape: ", "must end with '.'",
                                     "expected \"vis_proj.\", got \"vis_proj\""}));
  fm::fusion_adapter<> copy = hx;
  BOOST_CHECK_EXCEPTION(io::load_parameters(copy, "vis_proj", t), fm::argument_error,
                        message_has({"fusemix::io::load_parameters: ", "must end with '.'"}));
  io::tensor_map none;
  none["temp"] = {.shape = {}, .data = {0.1f}};
  io::write_safetensors(dir / "none.safetensors", none);
  BOOST_CHECK_EXCEPTION(static_cast<void>(io::load_model(dir / "none.safetensors")), fm::io_error,
                        message_has({"fusemix::io::load_model: ", "none.safetensors", "no adapter"}));
  // A tensor the shape does not account for still fails the strict load, by name.
  auto extra = t;
  extra["vis_proj.0.fn.9.weight"] = {.shape = {2}, .data = {1, 2}};
  io::write_safetensors(dir / "extra.safetensors", extra);
  BOOST_CHECK_EXCEPTION(static_cast<void>(io::load_adapter(dir / "extra.safetensors", io::side::x)), fm::io_error,
                        message_has({"vis_proj.0.fn.9.weight"}));
}

BOOST_AUTO_TEST_SUITE_END()
