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
#include <fusemix/train/trainer.hpp>

#include "gradcheck.hpp"
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
