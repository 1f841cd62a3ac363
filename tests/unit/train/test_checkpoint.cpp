// SPDX-License-Identifier: Apache-2.0
// Stopping and resuming: a stop request inside an epoch, checkpointed and resumed in a fresh
// trainer, gives the uninterrupted run's bits; a diverging step leaves the weights untouched;
// a writer killed mid-file leaves the target as it was and only litter that is cleaned up.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/detail/file.hpp>
#include <fusemix/loss/sigmoid.hpp>
#include <fusemix/train/trainer.hpp>

#include "gradcheck.hpp"
#include "messages.hpp"
#include "temp_files.hpp"

namespace fm = fusemix;
using fmatrix = fm::matrix<float>;

namespace {

std::pair<fmatrix, fmatrix> toy_pairs(std::size_t n, std::size_t dx, std::size_t dy, std::uint64_t seed) {
  const fm::test::dmatrix x = fm::test::random_matrix(n, dx, seed);
  const fm::test::dmatrix a = fm::test::random_matrix(dx, dy, seed + 1);
  const fm::test::dmatrix y = x * a + 0.1 * fm::test::random_matrix(n, dy, seed + 2);
  return {x.cast<float>(), y.cast<float>()};
}

std::pair<fm::fusion_adapter<>, fm::fusion_adapter<>> adapters(std::uint64_t seed) {
  return {fm::fusion_adapter<>(fm::adapter_shape{.in_dim = 12, .out_dim = 6, .depth = 1}, {.dropout = 0.3, .seed = seed}),
          fm::fusion_adapter<>(fm::adapter_shape{.in_dim = 8, .out_dim = 6, .depth = 2}, {.dropout = 0.3, .seed = seed + 1})};
}

const fm::train_options options{.epochs = 3, .batch = 16, .lr = 3e-3, .weight_decay = 0.1,
                                .mixup = {.alpha = 1.0, .mode = fm::mix_mode::permutation}, .seed = 9};

template <class A>
bool same_bits(const A& a, const A& b) {
  return std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin(), b.parameters().end());
}

// A process that has exited and been reaped: its pid names no running process.
pid_t dead_pid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  waitpid(pid, &status, 0);
  return pid;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(checkpoint)

BOOST_AUTO_TEST_CASE(stop_inside_an_epoch_then_resume_is_bitwise_equal) {
  const auto [zx, zy] = toy_pairs(100, 12, 8, 3);  // 6 steps an epoch, 4 rows left out
  auto [ax, ay] = adapters(1);
  fm::trainer full(ax, ay, options);
  std::vector<double> full_losses;
  while (full.epoch() < options.epochs) full_losses.push_back(full.train_epoch(zx, zy).loss);

  fm::test::temp_dir dir;
  // Stop after step 4 of epoch 2 (of 6), from the progress callback as a signal handler would.
  auto [bx, by] = adapters(1);
  {
    fm::trainer first(bx, by, options);
    BOOST_TEST(first.train_epoch(zx, zy).complete);
    std::atomic<bool> stop{false};
    const auto rec = first.train_epoch(zx, zy, [&](std::size_t s, std::size_t, double, double) { stop = s == 3; }, &stop);
    BOOST_TEST(!rec.complete);
    BOOST_TEST(rec.steps == 4u);
    BOOST_TEST(first.epoch() == 1u);
    BOOST_TEST(first.step_in_epoch() == 4u);
    BOOST_TEST(first.global_step() == 10u);
    first.save_checkpoint(dir / "ckpt.safetensors");
    // Asked to stop before its first step, an epoch does nothing.
    const auto none = first.train_epoch(zx, zy, {}, &stop);
    BOOST_TEST(!none.complete);
    BOOST_TEST(first.global_step() == 10u);
  }
  auto [cx, cy] = adapters(77);  // a fresh process: everything comes from the checkpoint
  fm::trainer resumed(cx, cy, options);
  resumed.load_checkpoint(dir / "ckpt.safetensors");
  BOOST_TEST(resumed.epoch() == 1u);
  BOOST_TEST(resumed.step_in_epoch() == 4u);
  const auto rest = resumed.train_epoch(zx, zy);
  BOOST_TEST(rest.complete);
  BOOST_TEST(rest.steps == 6u);
  // The epoch's mean covers the steps before the stop too, with the same bits.
  BOOST_TEST(rest.loss == full_losses[1]);
  BOOST_TEST(resumed.step_in_epoch() == 0u);
  resumed.train_epoch(zx, zy);
  BOOST_TEST(same_bits(cx, ax));
  BOOST_TEST(same_bits(cy, ay));
  BOOST_TEST(resumed.temperature() == full.temperature());
  BOOST_TEST(resumed.global_step() == full.global_step());
}

BOOST_AUTO_TEST_CASE(the_sigmoid_loss_resumes_bitwise_and_a_checkpoint_keeps_its_loss) {
  using sigmoid_trainer = fm::trainer<fm::fusion_adapter<>, fm::fusion_adapter<>, fm::sigmoid_loss<>>;
  const auto [zx, zy] = toy_pairs(64, 12, 8, 31);
  const fm::train_options o{.epochs = 3, .batch = 16, .lr = 3e-3, .mixup = {.mode = fm::mix_mode::halves}, .seed = 4};
  auto [ax, ay] = adapters(1);
  sigmoid_trainer full(ax, ay, o);
  for (int e = 0; e < 3; ++e) full.train_epoch(zx, zy);

  const fm::test::temp_dir dir;
  const auto file = dir / "ckpt.safetensors";
  auto [bx, by] = adapters(1);
  {
    sigmoid_trainer first(bx, by, o);
    first.train_epoch(zx, zy);
    std::atomic<bool> stop{false};
    first.train_epoch(zx, zy, [&](std::size_t s, std::size_t, double, double) { stop = s == 1; }, &stop);
    first.save_checkpoint(file);
  }
  BOOST_TEST(fm::io::read_safetensors(file).metadata.at("loss") == "sigmoid");
  auto [cx, cy] = adapters(50);
  sigmoid_trainer resumed(cx, cy, o);
  resumed.load_checkpoint(file);
  while (resumed.epoch() < 3) resumed.train_epoch(zx, zy);
  BOOST_TEST(same_bits(cx, ax));
  BOOST_TEST(same_bits(cy, ay));
  BOOST_TEST(resumed.loss().logit_scale() == full.loss().logit_scale());
  BOOST_TEST(resumed.loss().logit_bias() == full.loss().logit_bias());

  // A run with the other loss refuses it, naming both, and is left as it was.
  auto [dx, dy] = adapters(7);
  const auto before = std::vector<float>(dx.parameters().begin(), dx.parameters().end());
  fm::trainer other(dx, dy, o);
  BOOST_CHECK_EXCEPTION(other.load_checkpoint(file), fm::io_error,
                        fm::test::message_has({"fusemix::load_checkpoint", "ckpt.safetensors",
                                               "trained with the sigmoid loss, this run uses contrastive"}));
  BOOST_TEST(std::equal(before.begin(), before.end(), dx.parameters().begin()));
}

BOOST_AUTO_TEST_CASE(a_checkpoint_from_before_the_loss_was_a_policy_still_loads) {
  // tests/fixtures/checkpoint_v1*.safetensors: written by main at 1c6aed7 (no "loss" metadata;
  // the temperature as "temp"), two epochs into a four-epoch run on the data below, and the
  // weights that run ended with (tests/fixtures/README.md).
  const std::string fixtures = FUSEMIX_FIXTURE_DIR;
  const fm::test::dmatrix x = fm::test::random_matrix(48, 12, 71);
  const fm::test::dmatrix a = fm::test::random_matrix(12, 8, 72);
  const fm::test::dmatrix y = x * a + 0.1 * fm::test::random_matrix(48, 8, 73);
  const fmatrix zx = x.cast<float>(), zy = y.cast<float>();
  fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 12, .out_dim = 6, .depth = 1}, {.dropout = 0.3, .seed = 100});
  fm::fusion_adapter<> hy(fm::adapter_shape{.in_dim = 8, .out_dim = 6, .depth = 1}, {.dropout = 0.3, .seed = 200});
  const fm::train_options o{.epochs = 4, .batch = 16, .lr = 3e-3, .weight_decay = 0.1,
                            .mixup = {.alpha = 1.0, .mode = fm::mix_mode::permutation}, .seed = 9};
  fm::trainer tr(hx, hy, o);
  const auto old = fm::io::read_safetensors(fixtures + "/checkpoint_v1.safetensors");
  BOOST_TEST(old.metadata.count("loss") == 0u);
  const auto meta = tr.load_checkpoint(fixtures + "/checkpoint_v1.safetensors");
  BOOST_TEST(meta.at("run") == "fixture");
  BOOST_TEST(tr.epoch() == 2u);
  BOOST_TEST(tr.global_step() == 6u);
  BOOST_TEST(tr.temperature() == fm::io::require(old, "temp", {}).data[0]);
  BOOST_TEST(hx.dropout_seed() == 1u);  // the random state is the file's, not the constructor's
  fm::io::tensor_map loaded;
  fm::io::store_parameters(hx, fm::io::x_prefix, loaded);
  for (const auto& [name, t] : loaded) BOOST_TEST(t.data == old.tensors.at(name).data, name);
  // Two more epochs land where the old code's run ended (to rounding: the code changed since).
  tr.train_epoch(zx, zy);
  tr.train_epoch(zx, zy);
  const auto final = fm::io::read_safetensors(fixtures + "/checkpoint_v1_final.safetensors");
  fm::io::tensor_map ours;
  fm::io::store_parameters(hx, fm::io::x_prefix, ours);
  fm::io::store_parameters(hy, fm::io::y_prefix, ours);
  double worst = 0;
  for (const auto& [name, t] : ours) {
    const auto& ref = final.tensors.at(name).data;
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < ref.size(); ++i)
      diff = std::max(diff, static_cast<double>(std::abs(t.data[i] - ref[i]))), scale = std::max(scale, static_cast<double>(std::abs(ref[i])));
    worst = std::max(worst, diff / scale);
  }
  BOOST_TEST_MESSAGE("resumed old checkpoint vs the old code's run: worst relative difference " << worst);
  BOOST_TEST(worst < 1e-4);
  BOOST_TEST(std::abs(tr.temperature() - final.tensors.at("temp").data[0]) < 1e-6);
}

BOOST_AUTO_TEST_CASE(checkpoint_position_must_fit_the_data) {
  const auto [zx, zy] = toy_pairs(100, 12, 8, 3);
  fm::test::temp_dir dir;
  auto [ax, ay] = adapters(1);
  fm::trainer tr(ax, ay, options);
  std::atomic<bool> stop{false};
  tr.train_epoch(zx, zy, [&](std::size_t s, std::size_t, double, double) { stop = s == 4; }, &stop);
  tr.save_checkpoint(dir / "ckpt.safetensors");
  auto [bx, by] = adapters(1);
  fm::trainer other(bx, by, options);
  other.load_checkpoint(dir / "ckpt.safetensors");
  // Fewer pairs: 3 steps an epoch, but the checkpoint sits after step 5.
  const fmatrix sx = zx.topRows(50), sy = zy.topRows(50);
  BOOST_CHECK_EXCEPTION(other.train_epoch(sx, sy), fm::argument_error, [](const fm::argument_error& e) {
    return std::string(e.what()).find("step within the epoch") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(a_diverging_step_leaves_the_weights_as_they_were) {
  const auto [zx, zy] = toy_pairs(100, 12, 8, 3);
  auto [ax, ay] = adapters(1);
  fm::trainer tr(ax, ay, options);
  tr.train_epoch(zx, zy);
  // Weights so large that the forward pass overflows float: the loss is NaN.
  for (float& w : ax.parameters()) w *= 1e37f;
  const std::vector<float> before_x(ax.parameters().begin(), ax.parameters().end());
  const std::vector<float> before_y(ay.parameters().begin(), ay.parameters().end());
  const auto step = tr.global_step();
  BOOST_CHECK_EXCEPTION(tr.train_epoch(zx, zy), fm::numeric_error, [](const fm::numeric_error& e) {
    return std::string(e.what()).find("loss is not finite") != std::string::npos;
  });
  BOOST_TEST(std::equal(before_x.begin(), before_x.end(), ax.parameters().begin()));
  BOOST_TEST(std::equal(before_y.begin(), before_y.end(), ay.parameters().begin()));
  BOOST_TEST(tr.global_step() == step);
}

BOOST_AUTO_TEST_CASE(a_writer_killed_mid_file_leaves_the_target_whole) {
  fm::test::temp_dir dir;
  const auto target = dir / "weights.bin";
  fm::test::write_bytes(target, "old contents");
  int ready[2];
  BOOST_REQUIRE(pipe(ready) == 0);
  const pid_t pid = fork();
  if (pid == 0) {
    fm::io::atomic_write("test", target, [&](fm::io::atomic_file& f) {
      f.write(std::string(1 << 20, 'x'));  // past the buffer: bytes are in the temporary
      const char c = 1;
      if (write(ready[1], &c, 1) != 1) _exit(3);
      pause();  // killed here, before commit
    });
    _exit(0);
  }
  char c = 0;
  BOOST_REQUIRE(read(ready[0], &c, 1) == 1);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  close(ready[0]);
  close(ready[1]);
  BOOST_TEST(WIFSIGNALED(status));
  BOOST_TEST(fm::test::read_bytes(target) == "old contents");
  // The child's temporary: "<target>.tmp.<pid>.<n>" (n counts this process's writes so far).
  std::filesystem::path litter;
  for (const auto& e : std::filesystem::directory_iterator(dir.path))
    if (e.path().filename().string().starts_with("weights.bin.tmp." + std::to_string(pid) + ".")) litter = e.path();
  BOOST_TEST_REQUIRE(!litter.empty());
  BOOST_TEST(std::filesystem::file_size(litter) > 0u);  // some bytes reached it (the rest sat in the buffer)
  BOOST_TEST(fm::io::remove_stale_temporaries(target) == 1u);
  BOOST_TEST(!std::filesystem::exists(litter));
  BOOST_TEST(fm::test::read_bytes(target) == "old contents");
}

BOOST_AUTO_TEST_CASE(only_dead_writers_temporaries_are_removed) {
  fm::test::temp_dir dir;
  const auto target = dir / "ckpt.safetensors";
  const std::string dead = std::to_string(dead_pid()), mine = std::to_string(getpid());
  const std::vector<std::string> kept{
      "ckpt.safetensors",
      "ckpt.safetensors.tmp." + mine + ".4",  // a live writer (this process)
      "ckpt.safetensors.tmp." + dead,         // not our pattern
      "ckpt.safetensors.tmp." + dead + ".x",  //
      "ckpt.safetensors.tmp." + dead + ".1.2",
      "ckpt.safetensors.tmp.-1.2",
      "other.safetensors.tmp." + dead + ".1",  // another target
  };
  for (const auto& f : kept) fm::test::write_bytes(dir / f, "x");
  fm::test::write_bytes(dir / ("ckpt.safetensors.tmp." + dead + ".0"), "x");
  fm::test::write_bytes(dir / ("ckpt.safetensors.tmp." + dead + ".17"), "x");
  BOOST_TEST(fm::io::remove_stale_temporaries(target) == 2u);
  for (const auto& f : kept) BOOST_TEST(std::filesystem::exists(dir / f), f);
  BOOST_TEST(fm::io::remove_stale_temporaries(dir / "missing_dir" / "x") == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
