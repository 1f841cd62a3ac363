// SPDX-License-Identifier: Apache-2.0
// The FuseMix trainer: a full step's gradients, 20 AdamW steps against PyTorch, resume equals an
// uninterrupted run bitwise, learning on a toy problem, and input validation.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/io/npy.hpp>
#include <fusemix/eval/retrieval.hpp>
#include <fusemix/nn/identity_adapter.hpp>
#include <fusemix/loss/sigmoid.hpp>
#include <fusemix/train/split.hpp>
#include <fusemix/train/trainer.hpp>

#include <fusemix/io/mapped_latents.hpp>

#include "gradcheck.hpp"
#include "half_files.hpp"
#include "messages.hpp"
#include "temp_files.hpp"

namespace fm = fusemix;
using fm::test::dmatrix;
using dbackend = fm::cpu::backend<double>;
using fmatrix = fm::matrix<float>;

namespace {

// Paired toy data: y is a fixed linear map of x plus a little noise, so pairs are learnable.
std::pair<fmatrix, fmatrix> toy_pairs(std::size_t n, std::size_t dx, std::size_t dy, std::uint64_t seed) {
  const dmatrix x = fm::test::random_matrix(n, dx, seed);
  const dmatrix a = fm::test::random_matrix(dx, dy, seed + 1);
  const dmatrix y = x * a + 0.1 * fm::test::random_matrix(n, dy, seed + 2);
  return {x.cast<float>(), y.cast<float>()};
}

std::filesystem::path scratch(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "fusemix_test_trainer";
  std::filesystem::create_directories(dir);
  return dir / name;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(trainer)

BOOST_AUTO_TEST_CASE(full_step_gradients_through_mixup_adapters_and_loss) {
  using adapter = fm::fusion_adapter<fm::dynamic_shape, dbackend>;
  adapter hx(fm::adapter_shape{.in_dim = 5, .out_dim = 3, .depth = 1}, {.dropout = 0.2, .seed = 1});
  adapter hy(fm::adapter_shape{.in_dim = 4, .out_dim = 3, .depth = 1}, {.dropout = 0.2, .seed = 2});
  hx.set_training(true), hy.set_training(true);
  const dmatrix zx = fm::test::random_matrix(7, 5, 3), zy = fm::test::random_matrix(7, 4, 4);
  const std::vector<std::size_t> rows{4, 1, 6, 0};
  const fm::mix_plan plan{0.3, {0, 1, 2, 3}, {2, 0, 3, 1}};
  fm::contrastive_loss<dbackend> loss;
  dbackend be;
  dmatrix mx, my;
  double t = 0.2;
  auto run = [&] {
    hx.set_dropout_draws(5), hy.set_dropout_draws(5);
    fm::apply_mix(be, zx, rows, plan, mx);
    fm::apply_mix(be, zy, rows, plan, my);
    return loss.forward(hx.forward(mx), hy.forward(my), t);
  };
  run();
  loss.backward();
  hx.backward(loss.dx());
  hy.backward(loss.dy());
  const double dt = loss.dtemperature();
  const std::vector<double> gx(hx.gradients().begin(), hx.gradients().end());
  const std::vector<double> gy(hy.gradients().begin(), hy.gradients().end());
  const double ex = fm::test::relative_error(gx, fm::test::numeric_gradient(hx.parameters(), run));
  const double ey = fm::test::relative_error(gy, fm::test::numeric_gradient(hy.parameters(), run));
  const double et = fm::test::relative_error(std::span<const double>(&dt, 1), fm::test::numeric_gradient({&t, 1}, run));
  BOOST_TEST_MESSAGE("full step gradient errors: h_X " << ex << ", h_Y " << ey << ", temperature " << et);
  BOOST_TEST(ex < 1e-6);
  BOOST_TEST(ey < 1e-6);
  BOOST_TEST(et < 1e-6);
}

BOOST_AUTO_TEST_CASE(twenty_adamw_steps_match_pytorch) {
  const std::string dir = std::string(FUSEMIX_FIXTURE_DIR) + "/parity/";
  fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 12, .out_dim = 8, .depth = 1}, {.dropout = 0.0});
  fm::fusion_adapter<> hy(fm::adapter_shape{.in_dim = 10, .out_dim = 8, .depth = 1}, {.dropout = 0.0});
  const auto init = fm::io::read_safetensors(dir + "train20_init.safetensors");
  fm::io::load_parameters(hx, fm::io::x_prefix, init.tensors);
  fm::io::load_parameters(hy, fm::io::y_prefix, init.tensors);
  fm::trainer tr(hx, hy, {.epochs = 1, .batch = 8, .lr = 1e-3, .weight_decay = 0.1});
  tr.set_temperature(fm::io::require(init, "temp", {}).data[0]);
  const auto zx = fm::io::read_npy<float>(dir + "train20_zx.npy"), zy = fm::io::read_npy<float>(dir + "train20_zy.npy");
  const auto lambdas = fm::io::read_npy_vector<double>(dir + "train20_lambdas.npy");
  const auto perm_flat = fm::io::read_npy_int64(dir + "train20_perms.npy");
  const auto losses = fm::io::read_npy_vector<double>(dir + "train20_losses_f32.npy");
  const std::vector<std::size_t> rows{0, 1, 2, 3, 4, 5, 6, 7};
  double worst = 0;
  for (std::size_t s = 0; s < 20; ++s) {
    fm::mix_plan plan{lambdas[s], {0, 1, 2, 3, 4, 5, 6, 7}, {}};
    for (std::size_t i = 0; i < 8; ++i) plan.second.push_back(static_cast<std::size_t>(perm_flat[s * 8 + i]));
    const double l = tr.step(zx, zy, rows, plan, 1e-3);
    const double e = std::abs(l - losses[s]) / std::abs(losses[s]);
    worst = std::max(worst, e);
    BOOST_TEST(e < 1e-4, "step " << s << ": " << l << " vs " << losses[s]);
  }
  BOOST_TEST_MESSAGE("20 AdamW steps: worst relative loss difference from PyTorch " << worst);
  const auto final = fm::io::read_safetensors(dir + "train20_final.safetensors");
  fm::io::tensor_map ours;
  fm::io::store_parameters(hx, fm::io::x_prefix, ours);
  fm::io::store_parameters(hy, fm::io::y_prefix, ours);
  for (const auto& [name, t] : ours) {
    const auto& ref = fm::io::require(final.tensors, name, std::span<const std::size_t>(t.shape));
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < t.data.size(); ++i)
      diff = std::max(diff, static_cast<double>(std::abs(t.data[i] - ref.data[i]))),
      scale = std::max(scale, static_cast<double>(std::abs(ref.data[i])));
    BOOST_TEST(diff <= 1e-4 * scale, name << ": " << diff / scale);
  }
  BOOST_TEST(std::abs(tr.temperature() - fm::io::require(final, "temp", {}).data[0]) < 1e-6);
}

BOOST_AUTO_TEST_CASE(resume_equals_uninterrupted_bitwise) {
  const auto [zx, zy] = toy_pairs(96, 12, 8, 11);
  const fm::train_options o{.epochs = 4, .batch = 32, .lr = 3e-3, .weight_decay = 0.1,
                            .mixup = {.alpha = 1.0, .mode = fm::mix_mode::halves}, .seed = 5};
  auto make = [](std::uint64_t s) {
    return std::pair{fm::fusion_adapter<>(fm::adapter_shape{.in_dim = 12, .out_dim = 6, .depth = 1}, {.dropout = 0.3, .seed = s}),
                     fm::fusion_adapter<>(fm::adapter_shape{.in_dim = 8, .out_dim = 6, .depth = 1}, {.dropout = 0.3, .seed = s + 1})};
  };
  auto [ax, ay] = make(1);
  fm::trainer full(ax, ay, o);
  for (int e = 0; e < 4; ++e) full.train_epoch(zx, zy);

  auto [bx, by] = make(1);
  {
    fm::trainer first(bx, by, o);
    first.train_epoch(zx, zy);
    first.train_epoch(zx, zy);
    first.save_checkpoint(scratch("ckpt.safetensors"));
    first.train_epoch(zx, zy);  // work lost to a "crash": the resumed run must not depend on it
  }
  auto [cx, cy] = make(99);  // fresh process, different init: everything comes from the checkpoint
  fm::trainer resumed(cx, cy, o);
  resumed.load_checkpoint(scratch("ckpt.safetensors"));
  BOOST_TEST(resumed.epoch() == 2u);
  while (resumed.epoch() < 4) resumed.train_epoch(zx, zy);
  BOOST_TEST(std::equal(cx.parameters().begin(), cx.parameters().end(), ax.parameters().begin()));
  BOOST_TEST(std::equal(cy.parameters().begin(), cy.parameters().end(), ay.parameters().begin()));
  BOOST_TEST(resumed.temperature() == full.temperature());
  BOOST_TEST(resumed.global_step() == full.global_step());
}

BOOST_AUTO_TEST_CASE(learns_a_toy_alignment) {
  const auto [zx, zy] = toy_pairs(256, 16, 12, 21);
  fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 16, .out_dim = 16, .depth = 1}, {.dropout = 0.1, .seed = 1});
  fm::fusion_adapter<> hy(fm::adapter_shape{.in_dim = 12, .out_dim = 16, .depth = 1}, {.dropout = 0.1, .seed = 2});
  fm::trainer tr(hx, hy, {.epochs = 30, .batch = 64, .lr = 3e-3, .weight_decay = 0.01, .seed = 3});
  hx.set_training(false), hy.set_training(false);
  const auto before = fm::evaluate_retrieval<float>(fmatrix(hx.forward(zx)), fmatrix(hy.forward(zy)));
  double first = 0, last = 0;
  for (int e = 0; e < 30; ++e) {
    const auto r = tr.train_epoch(zx, zy);
    (e == 0 ? first : last) = r.loss;
  }
  hx.set_training(false), hy.set_training(false);
  const auto after = fm::evaluate_retrieval<float>(fmatrix(hx.forward(zx)), fmatrix(hy.forward(zy)));
  BOOST_TEST_MESSAGE("toy: loss " << first << " -> " << last << ", R@1 i->t " << before.image_to_text.r1 << " -> "
                                  << after.image_to_text.r1);
  BOOST_TEST(last < 0.7 * first);
  BOOST_TEST(after.image_to_text.r1 > before.image_to_text.r1 + 20);
  BOOST_TEST(after.text_to_image.r1 > before.text_to_image.r1 + 20);
}

BOOST_AUTO_TEST_CASE(full_step_gradients_with_the_sigmoid_loss_in_both_mix_modes) {
  using adapter = fm::fusion_adapter<fm::dynamic_shape, dbackend>;
  const dmatrix zx = fm::test::random_matrix(7, 5, 13), zy = fm::test::random_matrix(7, 4, 14);
  const std::vector<std::size_t> rows{4, 1, 6, 0};
  // permutation: 4 mixed pairs of 4 rows; halves: row i with row i + 2, 2 mixed pairs
  for (const fm::mix_plan& plan : {fm::mix_plan{0.3, {0, 1, 2, 3}, {2, 0, 3, 1}}, fm::mix_plan{0.8, {0, 1}, {2, 3}}}) {
    adapter hx(fm::adapter_shape{.in_dim = 5, .out_dim = 3, .depth = 1}, {.dropout = 0.2, .seed = 1});
    adapter hy(fm::adapter_shape{.in_dim = 4, .out_dim = 3, .depth = 1}, {.dropout = 0.2, .seed = 2});
    hx.set_training(true), hy.set_training(true);
    fm::sigmoid_loss<dbackend> loss;
    loss.set_logit_scale(0.9), loss.set_logit_bias(-0.7);
    dbackend be;
    dmatrix mx, my;
    auto run = [&] {
      hx.set_dropout_draws(5), hy.set_dropout_draws(5);
      fm::apply_mix(be, zx, rows, plan, mx);
      fm::apply_mix(be, zy, rows, plan, my);
      return static_cast<double>(loss.forward(hx.forward(mx), hy.forward(my)));
    };
    run();
    loss.backward();
    hx.backward(loss.dx());
    hy.backward(loss.dy());
    const std::vector<double> gx(hx.gradients().begin(), hx.gradients().end());
    const std::vector<double> gy(hy.gradients().begin(), hy.gradients().end());
    const std::vector<double> gl(loss.gradients().begin(), loss.gradients().end());
    const double ex = fm::test::relative_error(gx, fm::test::numeric_gradient(hx.parameters(), run));
    const double ey = fm::test::relative_error(gy, fm::test::numeric_gradient(hy.parameters(), run));
    const double el = fm::test::relative_error(gl, fm::test::numeric_gradient(loss.parameters(), run));
    BOOST_TEST_MESSAGE("sigmoid full step (" << plan.first.size() << " mixed pairs) gradient errors: h_X " << ex
                                             << ", h_Y " << ey << ", (t', b) " << el);
    BOOST_TEST(ex < 1e-6);
    BOOST_TEST(ey < 1e-6);
    BOOST_TEST(el < 1e-6);
  }
}

BOOST_AUTO_TEST_CASE(the_sigmoid_loss_learns_a_toy_alignment_in_both_mix_modes) {
  const auto [zx, zy] = toy_pairs(256, 16, 12, 21);
  for (const auto mode : {fm::mix_mode::permutation, fm::mix_mode::halves}) {
    fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 16, .out_dim = 16, .depth = 1}, {.dropout = 0.1, .seed = 1});
    fm::fusion_adapter<> hy(fm::adapter_shape{.in_dim = 12, .out_dim = 16, .depth = 1}, {.dropout = 0.1, .seed = 2});
    fm::trainer tr(hx, hy, fm::sigmoid_loss<>{},
                   {.epochs = 30, .batch = 64, .lr = 3e-3, .weight_decay = 0.01, .mixup = {.mode = mode}, .seed = 3});
    static_assert(std::is_same_v<decltype(tr)::loss_type, fm::sigmoid_loss<>>);
    hx.set_training(false), hy.set_training(false);
    const auto before = fm::evaluate_retrieval<float>(fmatrix(hx.forward(zx)), fmatrix(hy.forward(zy)));
    double first = 0, last = 0;
    fm::epoch_record r;
    for (int e = 0; e < 30; ++e) {
      r = tr.train_epoch(zx, zy);
      (e == 0 ? first : last) = r.loss;
    }
    hx.set_training(false), hy.set_training(false);
    const auto after = fm::evaluate_retrieval<float>(fmatrix(hx.forward(zx)), fmatrix(hy.forward(zy)));
    BOOST_TEST_MESSAGE("sigmoid toy (" << fm::to_string(mode) << "): loss " << first << " -> " << last << ", R@1 i->t "
                                       << before.image_to_text.r1 << " -> " << after.image_to_text.r1 << ", t' "
                                       << r.loss_parameters[0].second << ", b " << r.loss_parameters[1].second);
    BOOST_TEST(last < 0.7 * first);
    BOOST_TEST(after.image_to_text.r1 > before.image_to_text.r1 + 20);
    BOOST_TEST(after.text_to_image.r1 > before.text_to_image.r1 + 20);
    // the epoch reports the loss's own scalars, and they moved from their initial values
    BOOST_TEST(r.loss_parameters[0].first == "logit_scale");
    BOOST_TEST(r.loss_parameters[1].first == "logit_bias");
    BOOST_TEST(r.loss_parameters[1].second != -10.0);
    BOOST_TEST(tr.optimizer().moment_count() == hx.size() + hy.size());  // t' and b have their own
  }
}

BOOST_AUTO_TEST_CASE(weights_hold_the_loss_parameters_by_name) {
  const auto [zx, zy] = toy_pairs(64, 6, 5, 61);
  fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 6, .out_dim = 4, .depth = 1}, {.seed = 1});
  fm::fusion_adapter<> hy(fm::adapter_shape{.in_dim = 5, .out_dim = 4, .depth = 1}, {.seed = 2});
  fm::trainer<fm::fusion_adapter<>, fm::fusion_adapter<>, fm::sigmoid_loss<>> tr(hx, hy, {.epochs = 1, .batch = 16});
  tr.train_epoch(zx, zy);
  tr.save_weights(scratch("sigmoid.safetensors"));
  const auto f = fm::io::read_safetensors(scratch("sigmoid.safetensors"));
  BOOST_TEST(f.tensors.count("temp") == 0u);
  BOOST_TEST(fm::io::require(f, "logit_scale", {}).data[0] == tr.loss().logit_scale());
  BOOST_TEST(fm::io::require(f, "logit_bias", {}).data[0] == tr.loss().logit_bias());
  BOOST_TEST(f.tensors.count("vis_proj.0.fn.0.weight") == 1u);  // the adapters' names do not change
  fm::sigmoid_loss<> back;
  fm::io::load_loss_parameters(back, f);
  BOOST_TEST(back.logit_bias() == tr.loss().logit_bias());
  // a contrastive loss finds no temperature there, and says why
  fm::contrastive_loss<> other;
  BOOST_CHECK_EXCEPTION(fm::io::load_loss_parameters(other, f), fm::io_error,
                        fm::test::message_has({"fusemix::io::load_loss_parameters", "sigmoid.safetensors",
                                               "no tensor \"temp\" of the contrastive loss"}));
}

BOOST_AUTO_TEST_CASE(identity_side_aligns_into_a_fixed_space) {
  const auto [zx, zy] = toy_pairs(64, 10, 6, 31);
  fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 10, .out_dim = 6, .depth = 1}, {.dropout = 0.0, .seed = 1});
  fm::identity_adapter<> hy(6);
  fm::trainer tr(hx, hy, {.epochs = 2, .batch = 32, .lr = 1e-3});
  const auto r = tr.train_epoch(zx, zy);
  BOOST_TEST(std::isfinite(r.loss));
  BOOST_TEST(tr.optimizer().moment_count() == hx.size());  // the adapter only (τ has its own)
  fm::identity_adapter<> wrong(5);
  BOOST_CHECK_THROW(fm::trainer(hx, wrong, {}), fm::shape_error);
}

BOOST_AUTO_TEST_CASE(refuses_bad_data_and_options) {
  const auto [zx, zy] = toy_pairs(40, 6, 5, 41);
  fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 6, .out_dim = 4, .depth = 0});
  fm::fusion_adapter<> hy(fm::adapter_shape{.in_dim = 5, .out_dim = 4, .depth = 0});
  auto message_has = [](const std::string& s) {
    return [s](const fm::error& e) { return std::string(e.what()).find(s) != std::string::npos; };
  };
  {
    fm::trainer tr(hx, hy, {.batch = 64});
    BOOST_CHECK_EXCEPTION(tr.train_epoch(zx, zy), fm::shape_error, message_has("batch must not exceed"));
  }
  fm::trainer tr(hx, hy, {.batch = 8});
  BOOST_CHECK_EXCEPTION(tr.train_epoch(zx, fmatrix(zy.topRows(39))), fm::shape_error, message_has("same number of rows"));
  BOOST_CHECK_EXCEPTION(tr.train_epoch(zy, zy), fm::shape_error, message_has("X's width"));
  fmatrix nan = zx;
  nan(7, 2) = std::nanf("");
  BOOST_CHECK_EXCEPTION(tr.train_epoch(nan, zy), fm::numeric_error, message_has("row 7, column 2"));
  BOOST_CHECK_EXCEPTION(fm::trainer(hx, hy, {.batch = 7, .mixup = {.mode = fm::mix_mode::halves}}), fm::shape_error,
                        message_has("even"));
  BOOST_CHECK_THROW(fm::trainer(hx, hy, {.epochs = 0}), fm::argument_error);
  const std::vector<std::size_t> rows{0, 1, 2, 40};  // 40 is past the data
  BOOST_CHECK_EXCEPTION(tr.step(zx, zy, rows, {0.5, {0, 1}, {2, 3}}, 1e-3), fm::shape_error, message_has("row index"));
  const std::vector<std::size_t> ok_rows{0, 1, 2, 3};
  BOOST_CHECK_EXCEPTION(tr.step(zx, zy, ok_rows, {0.5, {0, 1}, {2, 4}}, 1e-3), fm::shape_error, message_has("plan position"));
  BOOST_CHECK_THROW(fm::trainer(hx, hy, {.lr = -1}), fm::argument_error);
}

BOOST_AUTO_TEST_CASE(validate_names_each_bad_input) {
  // The "Reliability" cases at the library level: each refused with its type, naming the
  // function, what was expected and what was found.
  const auto [zx, zy] = toy_pairs(40, 6, 5, 51);
  fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 6, .out_dim = 4, .depth = 1});
  fm::fusion_adapter<> hy(fm::adapter_shape{.in_dim = 5, .out_dim = 4, .depth = 1});
  using fm::test::message_has;
  const std::string where = "fusemix::trainer::validate: ";
  fm::trainer tr(hx, hy, {.batch = 8});
  BOOST_CHECK_NO_THROW(tr.validate(zx, zy));
  // X and Y with different row counts
  BOOST_CHECK_EXCEPTION(tr.validate(zx, fmatrix(zy.topRows(39))), fm::shape_error,
                        message_has({where + "X and Y must have the same number of rows", "expected 40, got 39"}));
  // widths that do not match the adapters, either side
  BOOST_CHECK_EXCEPTION(tr.validate(fmatrix(zx.leftCols(5)), zy), fm::shape_error,
                        message_has({where + "X's width must equal the X adapter's in_dim", "expected 6, got 5"}));
  BOOST_CHECK_EXCEPTION(tr.validate(zx, fmatrix(zx)), fm::shape_error,
                        message_has({where + "Y's width must equal the Y adapter's in_dim", "expected 5, got 6"}));
  // NaN and Inf, either side, located
  fmatrix bad_x = zx, bad_y = zy;
  bad_x(3, 1) = std::numeric_limits<float>::quiet_NaN();
  bad_y(39, 4) = -std::numeric_limits<float>::infinity();
  BOOST_CHECK_EXCEPTION(tr.validate(bad_x, zy), fm::numeric_error,
                        message_has({where + "X contains NaN or Inf at row 3, column 1", "expected finite latents"}));
  BOOST_CHECK_EXCEPTION(tr.validate(zx, bad_y), fm::numeric_error,
                        message_has({where + "Y contains NaN or Inf at row 39, column 4"}));
  // a batch larger than the data
  fm::trainer big(hx, hy, {.batch = 41});
  BOOST_CHECK_EXCEPTION(big.validate(zx, zy), fm::shape_error,
                        message_has({where + "the batch must not exceed the number of pairs", "expected <= 40, got 41"}));
  // an odd batch in halves mode, and an empty batch
  BOOST_CHECK_EXCEPTION(fm::trainer(hx, hy, {.batch = 9, .mixup = {.mode = fm::mix_mode::halves}}), fm::shape_error,
                        message_has({"halves mode needs an even batch", "expected an even size, got 9"}));
  BOOST_CHECK_EXCEPTION(fm::trainer(hx, hy, {.batch = 0}), fm::shape_error,
                        message_has({"batch must not be empty", "got 0"}));
  // adapters whose shared (output) widths differ
  fm::fusion_adapter<> hy5(fm::adapter_shape{.in_dim = 5, .out_dim = 5, .depth = 1});
  BOOST_CHECK_EXCEPTION(fm::trainer(hx, hy5, {.batch = 8}), fm::shape_error,
                        message_has({"fusemix::trainer: both adapters must map into the same shared width",
                                     "expected 4, got 5"}));
  fm::identity_adapter<> id3(3);
  BOOST_CHECK_EXCEPTION(fm::trainer(hx, id3, {.batch = 8}), fm::shape_error,
                        message_has({"same shared width", "expected 4, got 3"}));
}

namespace {

/// Two adapters with dropout, the same initial weights for the same seed.
std::pair<fm::fusion_adapter<>, fm::fusion_adapter<>> source_adapters(std::size_t dx, std::size_t dy) {
  return {fm::fusion_adapter<>(fm::adapter_shape{.in_dim = dx, .out_dim = 6, .depth = 1}, {.dropout = 0.3, .seed = 1}),
          fm::fusion_adapter<>(fm::adapter_shape{.in_dim = dy, .out_dim = 6, .depth = 1}, {.dropout = 0.3, .seed = 2})};
}

/// The adapters' weights after `epochs` epochs of training from `zx`, `zy` (matrices or sources).
template <class ZX, class ZY>
std::vector<float> trained_weights(const ZX& zx, const ZY& zy, std::size_t dx, std::size_t dy, fm::mixup_options mixup,
                                   std::vector<double>* losses = nullptr) {
  auto [hx, hy] = source_adapters(dx, dy);
  fm::trainer tr(hx, hy, {.epochs = 3, .batch = 16, .lr = 3e-3, .weight_decay = 0.1, .mixup = mixup, .seed = 7});
  for (int e = 0; e < 3; ++e) {
    const auto rec = tr.train_epoch(zx, zy);
    if (losses != nullptr) losses->push_back(rec.loss);
  }
  std::vector<float> w(hx.parameters().begin(), hx.parameters().end());
  w.insert(w.end(), hy.parameters().begin(), hy.parameters().end());
  return w;
}

template <class ZX, class ZY>
std::vector<float> trained_weights(const ZX& zx, const ZY& zy, std::size_t dx, std::size_t dy, fm::mix_mode mode,
                                   std::vector<double>* losses = nullptr) {
  return trained_weights(zx, zy, dx, dy, fm::mixup_options{.alpha = 1.0, .mode = mode}, losses);
}

}  // namespace

BOOST_AUTO_TEST_CASE(files_shards_and_float16_train_bitwise_like_the_matrices_in_memory) {
  // 70 pairs, batch 16: 4 steps an epoch and 6 rows never drawn, so a wrong row offset shows.
  const std::size_t n = 70, dx = 12, dy = 8;
  fm::test::temp_dir dir;
  const auto hx16 = fm::test::random_halves(n, dx, 1), hy16 = fm::test::random_halves(n, dy, 2);
  const fmatrix zx = fm::test::halves_to_floats(hx16, n, dx), zy = fm::test::halves_to_floats(hy16, n, dy);
  fm::io::write_npy(dir / "x.npy", zx);
  fm::io::write_npy(dir / "y.npy", zy);
  // The same rows as float16, in three shards of 30 + 25 + 15 rows.
  std::vector<std::filesystem::path> x16, y16, x32;
  for (auto [first, count] : {std::pair<std::size_t, std::size_t>{0, 30}, {30, 25}, {55, 15}}) {
    const std::string i = std::to_string(first);
    x16.push_back(dir / ("x16_" + i + ".npy"));
    y16.push_back(dir / ("y16_" + i + ".npy"));
    x32.push_back(dir / ("x32_" + i + ".npy"));
    fm::test::write_f2(x16.back(), {hx16.begin() + long(first * dx), hx16.begin() + long((first + count) * dx)}, count, dx);
    fm::test::write_f2(y16.back(), {hy16.begin() + long(first * dy), hy16.begin() + long((first + count) * dy)}, count, dy);
    fm::io::write_npy(x32.back(), fmatrix(zx.middleRows(long(first), long(count))));
  }
  for (const auto mode : {fm::mix_mode::permutation, fm::mix_mode::halves}) {
    std::vector<double> memory_losses, file_losses;
    const auto in_memory = trained_weights(zx, zy, dx, dy, mode, &memory_losses);
    const fm::io::mapped_latents fx(dir / "x.npy"), fy(dir / "y.npy");
    BOOST_TEST(trained_weights(fx, fy, dx, dy, mode, &file_losses) == in_memory, "one float32 file, " << fm::to_string(mode));
    BOOST_TEST(file_losses == memory_losses);
    const fm::io::mapped_latents sx(x32), sy(y16);
    BOOST_TEST(trained_weights(sx, sy, dx, dy, mode) == in_memory, "float32 and float16 shards, " << fm::to_string(mode));
    const fm::io::mapped_latents hx(x16), hy(y16);
    BOOST_TEST(trained_weights(hx, hy, dx, dy, mode) == in_memory, "float16 shards, " << fm::to_string(mode));
    BOOST_TEST(trained_weights(fm::latent_view<float>(zx), fm::latent_view<float>(zy), dx, dy, mode) == in_memory,
               "latent_view, " << fm::to_string(mode));
  }
  // Not a vacuous equality: other data give other weights.
  fmatrix other = zx;
  other(3, 3) += 1.0f;
  BOOST_TEST(trained_weights(other, zy, dx, dy, fm::mix_mode::halves) !=
             trained_weights(zx, zy, dx, dy, fm::mix_mode::halves));
}

BOOST_AUTO_TEST_CASE(a_row_subset_trains_bitwise_like_its_rows_gathered) {
  // What `fusemix train` trains on when it holds pairs out: the other rows, read in place.
  const std::size_t n = 90, dx = 7, dy = 5;
  const auto [zx, zy] = toy_pairs(n, dx, dy, 83);
  const fm::row_split split = fm::split_rows(n, 20, 4);
  fmatrix gx(70, dx), gy(70, dy);
  for (std::size_t i = 0; i < split.train.size(); ++i) {
    gx.row(long(i)) = zx.row(long(split.train[i]));
    gy.row(long(i)) = zy.row(long(split.train[i]));
  }
  const fm::latent_view<float> vx(zx), vy(zy);
  const fm::row_subset sx(vx, split.train), sy(vy, split.train);
  for (const auto mode : {fm::mix_mode::permutation, fm::mix_mode::halves}) {
    std::vector<double> gathered_losses, subset_losses;
    const auto gathered = trained_weights(gx, gy, dx, dy, mode, &gathered_losses);
    BOOST_TEST(trained_weights(sx, sy, dx, dy, mode, &subset_losses) == gathered, fm::to_string(mode));
    BOOST_TEST(subset_losses == gathered_losses);
    // Not vacuous: the first 70 rows are other pairs.
    BOOST_TEST(trained_weights(fmatrix(zx.topRows(70)), fmatrix(zy.topRows(70)), dx, dy, mode) != gathered);
  }
}

BOOST_AUTO_TEST_CASE(an_alpha_schedule_moves_alpha_per_epoch) {
  const auto [zx, zy] = toy_pairs(64, 6, 5, 67);
  const fm::mixup_options constant{.alpha = 0.4};
  const auto reference = trained_weights(zx, zy, 6, 5, constant);
  // A schedule that stays at alpha is the constant one, bit for bit.
  for (const auto schedule : {fm::alpha_schedule::cosine, fm::alpha_schedule::exponential})
    BOOST_TEST(trained_weights(zx, zy, 6, 5, {.alpha = 0.4, .schedule = schedule, .final_alpha = 0.4}) == reference);
  // Towards another alpha: the first epoch draws with 0.4 still, the later ones with other values.
  for (const auto schedule : {fm::alpha_schedule::cosine, fm::alpha_schedule::exponential}) {
    const auto moved = trained_weights(zx, zy, 6, 5, {.alpha = 0.4, .schedule = schedule, .final_alpha = 4.0});
    BOOST_TEST(moved != reference, fm::to_string(schedule));
  }
  auto [hx, hy] = source_adapters(6, 5);
  BOOST_CHECK_EXCEPTION(
      (fm::trainer(hx, hy, {.mixup = {.schedule = fm::alpha_schedule::cosine, .final_alpha = 0}})), fm::argument_error,
      fm::test::message_has({"final alpha"}));
}

BOOST_AUTO_TEST_CASE(max_steps_stops_training_where_it_says) {
  const auto [zx, zy] = toy_pairs(64, 6, 5, 61);
  auto [hx, hy] = source_adapters(6, 5);
  fm::trainer tr(hx, hy, {.epochs = 5, .batch = 16, .max_steps = 6});
  const auto first = tr.train_epoch(zx, zy);
  BOOST_TEST(first.complete);
  BOOST_TEST(tr.global_step() == 4u);
  const auto second = tr.train_epoch(fm::latent_view<float>(zx), fm::latent_view<float>(zy));
  BOOST_TEST(!second.complete);
  BOOST_TEST(second.steps == 2u);
  BOOST_TEST(tr.global_step() == 6u);
  BOOST_TEST(tr.epoch() == 1u);
  BOOST_TEST(tr.step_in_epoch() == 2u);
  BOOST_TEST(!tr.train_epoch(zx, zy).complete);  // nothing more
  BOOST_TEST(tr.global_step() == 6u);
}

BOOST_AUTO_TEST_CASE(sources_with_bad_values_or_shapes_are_refused) {
  using fm::test::message_has;
  const auto [zx, zy] = toy_pairs(40, 6, 5, 71);
  auto [hx, hy] = source_adapters(6, 5);
  fm::trainer tr(hx, hy, {.batch = 8, .seed = 1});
  fmatrix bad = zx;
  bad(33, 4) = std::numeric_limits<float>::infinity();
  const fm::latent_view<float> vx(zx), vy(zy), vbad(bad);
  BOOST_CHECK_NO_THROW(tr.validate(vx, vy));
  BOOST_CHECK_EXCEPTION(tr.validate(vbad, vy), fm::numeric_error,
                        message_has({"fusemix::trainer::validate: X contains NaN or Inf at row 33, column 4"}));
  BOOST_CHECK_EXCEPTION(tr.validate(vx, vx), fm::shape_error, message_has({"Y's width", "expected 5, got 6"}));
  BOOST_CHECK_EXCEPTION(tr.train_epoch(vx, fm::latent_view<float>(zy.data(), 39, 5)), fm::shape_error,
                        message_has({"same number of rows", "expected 40, got 39"}));
  // Without validate, the bad row is found when its batch is gathered, before that step's update.
  const std::vector<float> before(hx.parameters().begin(), hx.parameters().end());
  const std::vector<std::size_t> rows{1, 33, 2, 3};
  BOOST_CHECK_EXCEPTION(tr.step(vbad, vy, rows, {0.5, {0, 1}, {2, 3}}, 1e-3), fm::numeric_error,
                        message_has({"fusemix::trainer::step: X contains NaN or Inf at row 33, column 4"}));
  BOOST_TEST(std::equal(before.begin(), before.end(), hx.parameters().begin()));
  BOOST_TEST(tr.global_step() == 0u);
  BOOST_CHECK_THROW(tr.train_epoch(vbad, vy), fm::numeric_error);
}

BOOST_AUTO_TEST_CASE(gradient_caching_trains_the_whole_batch_function) {
  // 20 steps with mixup and dropout, the batch in slices of 5 rows (the last one shorter), against
  // the whole batch at once: per-step losses and final weights within 1e-5 relative.
  const auto [zx, zy] = toy_pairs(96, 12, 8, 81);
  auto norm = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return std::sqrt(s);
  };
  for (const auto mode : {fm::mix_mode::permutation, fm::mix_mode::halves}) {
    auto run = [&](std::size_t micro, std::vector<double>& losses) {
      auto [hx, hy] = source_adapters(12, 8);
      fm::trainer tr(hx, hy, {.epochs = 7, .batch = 32, .lr = 3e-3, .weight_decay = 0.1,
                              .mixup = {.alpha = 1.0, .mode = mode}, .seed = 4, .max_steps = 20,
                              .micro_batch = micro});
      while (tr.global_step() < 20)
        tr.train_epoch(zx, zy, [&](std::size_t, std::size_t, double loss, double) { losses.push_back(loss); });
      BOOST_TEST(hx.dropout_draws() == 20u);  // one draw per step, however many slices
      std::vector<double> w(hx.parameters().begin(), hx.parameters().end());
      w.insert(w.end(), hy.parameters().begin(), hy.parameters().end());
      w.push_back(tr.temperature());
      return w;
    };
    std::vector<double> whole_losses, cached_losses;
    const auto whole = run(0, whole_losses), cached = run(5, cached_losses);
    BOOST_TEST_REQUIRE(cached_losses.size() == 20u);
    for (std::size_t s = 0; s < 20; ++s)
      BOOST_TEST(std::fabs(cached_losses[s] - whole_losses[s]) <= 1e-5 * std::fabs(whole_losses[s]),
                 fm::to_string(mode) << " step " << s << ": " << cached_losses[s] << " vs " << whole_losses[s]);
    std::vector<double> diff(whole.size());
    for (std::size_t i = 0; i < whole.size(); ++i) diff[i] = cached[i] - whole[i];
    BOOST_TEST_MESSAGE(fm::to_string(mode) << ": weights differ by " << norm(diff) / norm(whole) << " relative");
    BOOST_TEST(norm(diff) <= 1e-5 * norm(whole), fm::to_string(mode));
    // The weights moved: the comparison is not between two untouched initialisations.
    auto [ux, uy] = source_adapters(12, 8);
    std::vector<double> init(ux.parameters().begin(), ux.parameters().end());
    double moved = 0;
    for (std::size_t i = 0; i < init.size(); ++i) moved = std::max(moved, std::fabs(whole[i] - init[i]));
    BOOST_TEST(moved > 1e-3);
  }
  // An identity side runs in slices too.
  auto [hx, hy] = source_adapters(12, 6);
  fm::identity_adapter<> id(6);
  fm::trainer with_identity(hx, id, {.batch = 32, .micro_batch = 5});
  const fmatrix y6 = zy.leftCols(6);
  BOOST_TEST(std::isfinite(with_identity.train_epoch(zx, y6).loss));
}

BOOST_AUTO_TEST_SUITE_END()
