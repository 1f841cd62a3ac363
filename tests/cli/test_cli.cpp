// SPDX-License-Identifier: Apache-2.0
// End-to-end tests of the `fusemix` program: train, embed, eval; kill -9 (at fixed delays and
// inside checkpoint writes), SIGINT/SIGTERM and --resume, each bitwise equal to an uninterrupted
// run; divergence keeping the checkpoint; one-line errors with exit code 2.
#define BOOST_TEST_MODULE fusemix_cli
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <fusemix/fusemix.hpp>

namespace fs = std::filesystem;
namespace fm = fusemix;

namespace {

const fs::path exe = FUSEMIX_EXE;
const fs::path source_dir = FUSEMIX_SOURCE_DIR;

fs::path scratch() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("fusemix_cli_test_" + std::to_string(getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

struct result {
  int code;
  std::string out, err;
};

// Runs a shell command line, capturing stdout and stderr.
result run(const std::string& args) {
  const fs::path out = scratch() / "stdout.txt", err = scratch() / "stderr.txt";
  const std::string cmd = args + " >" + out.string() + " 2>" + err.string();
  const int status = std::system(cmd.c_str());
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

std::string program(const std::string& args) { return exe.string() + " " + args; }

std::string bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Learnable paired latents: y is a linear map of x plus noise.
void write_pairs(std::size_t n, const std::string& stem) {
  fm::philox_engine rng(7);
  fm::matrix<float> x(static_cast<Eigen::Index>(n), 24), a(24, 16);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(fm::sample_normal(rng));
  for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = static_cast<float>(fm::sample_normal(rng));
  fm::matrix<float> y = x * a;
  for (Eigen::Index i = 0; i < y.size(); ++i) y.data()[i] += 0.3f * static_cast<float>(fm::sample_normal(rng));
  fm::io::write_npy(scratch() / (stem + "_x.npy"), x);
  fm::io::write_npy(scratch() / (stem + "_y.npy"), y);
}

std::string train_args(const fs::path& out) {
  const auto d = scratch();
  return "train --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() + " --out " + out.string() +
         " --epochs 12 --batch 64 --depth-x 2 --depth-y 1 --shared-dim 32 --lr 2e-3 --dropout 0.3 --seed 3 --threads 1"
         " --checkpoint-every 1 --quiet";
}

// Starts `fusemix args` in the background with stderr going to `err`.
pid_t spawn(const std::string& args, const fs::path& err) {
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + program(args) + " 2>" + err.string()).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

bool has_temporary(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

struct data_fixture {
  data_fixture() {
    if (!fs::exists(scratch() / "data_x.npy")) write_pairs(1536, "data");
  }
};

// Removes the scratch directory when the module ends.
struct cleanup {
  ~cleanup() {
    std::error_code ec;
    fs::remove_all(scratch(), ec);
  }
};

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(cleanup);

BOOST_FIXTURE_TEST_SUITE(cli, data_fixture)

BOOST_AUTO_TEST_CASE(train_embed_eval) {
  const fs::path out = scratch() / "run";
  const auto r = run(program(train_args(out)));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  for (const char* f : {"adapters.safetensors", "checkpoint.safetensors", "metrics.jsonl"})
    BOOST_TEST(fs::exists(out / f), f);
  std::ifstream metrics(out / "metrics.jsonl");
  std::size_t lines = 0;
  for (std::string l; std::getline(metrics, l);) ++lines;
  BOOST_TEST(lines == 12u);

  // The weights carry PyTorch names and the temperature; embed equals the library's forward.
  const auto f = fm::io::read_safetensors(out / "adapters.safetensors");
  BOOST_TEST(f.tensors.count("vis_proj.0.fn.0.weight") == 1u);
  BOOST_TEST(f.tensors.count("text_proj.2.weight") == 1u);
  BOOST_TEST(f.tensors.count("temp") == 1u);
  const auto e = run(program("embed --model " + (out / "adapters.safetensors").string() + " --side x --in " +
                             (scratch() / "data_x.npy").string() + " --out " + (scratch() / "emb.npy").string()));
  BOOST_TEST_REQUIRE(e.code == 0, e.err);
  fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 24, .out_dim = 32, .depth = 2}, {.dropout = 0});
  fm::io::load_parameters(hx, fm::io::x_prefix, f.tensors);
  const auto z = fm::io::read_npy<float>(scratch() / "data_x.npy");
  BOOST_TEST((fm::io::read_npy<float>(scratch() / "emb.npy") == hx.forward(z)));

  const auto ev = run(program("eval --json --model " + (out / "adapters.safetensors").string() + " --x " +
                              (scratch() / "data_x.npy").string() + " --y " + (scratch() / "data_y.npy").string()));
  BOOST_TEST_REQUIRE(ev.code == 0, ev.err);
  const auto j = nlohmann::json::parse(ev.out);
  const double r10 = j["image_to_text"]["r10"].get<double>();
  BOOST_TEST(r10 > 50.0);  // learnt: chance is 10/1536
  BOOST_TEST(j.contains("mean"));

  // search: the top 10 of each X row among the Y rows, through the model; its recall@10 is
  // eval's, its lists are the library's top_k over the library's embeddings.
  const auto se = run(program("search --model " + (out / "adapters.safetensors").string() + " --query-side x --queries " +
                              (scratch() / "data_x.npy").string() + " --gallery " + (scratch() / "data_y.npy").string() +
                              " --k 10 --out " + (scratch() / "found").string()));
  BOOST_TEST_REQUIRE(se.code == 0, se.err);
  {
    const auto model = fm::io::load_model(out / "adapters.safetensors");
    const auto want = fm::top_k<float>(model.x->embed(z),
                                       model.y->embed(fm::io::read_npy<float>(scratch() / "data_y.npy")), 10);
    const auto scores = fm::io::read_npy<float>(scratch() / "found" / "scores.npy");
    // The program reads, embeds and scores the gallery a block at a time, top_k the whole: GEMMs of
    // other shapes, the same bits on OpenBLAS's SkylakeX kernel and an ulp apart on its Zen one.
    const float score_tol = 1e-6f;
    BOOST_TEST((scores - want.scores).cwiseAbs().maxCoeff() <= score_tol);
    // (read_npy_int64 reads vectors: this is the header numpy.save writes, then the int64s)
    const std::string bytes = bytes_of(scratch() / "found" / "indices.npy");
    const std::size_t header = 10 + static_cast<unsigned char>(bytes[8]) + 256 * static_cast<unsigned char>(bytes[9]);
    BOOST_TEST(bytes.substr(0, header).find("'descr': '<i8'") != std::string::npos);
    BOOST_TEST(bytes.substr(0, header).find("'shape': (1536, 10)") != std::string::npos);
    std::vector<std::int64_t> indices((bytes.size() - header) / 8);
    std::memcpy(indices.data(), bytes.data() + header, indices.size() * 8);
    BOOST_TEST_REQUIRE(indices.size() == static_cast<std::size_t>(want.indices.size()));
    std::size_t hits = 0;
    for (std::size_t i = 0; i < indices.size(); ++i) {
      // Equal lists, but for neighbours whose scores tie within that tolerance.
      const std::size_t slot = i % 10;
      const float* row = want.scores.data() + (i - slot);
      const bool tied = (slot > 0 && row[slot - 1] - row[slot] <= score_tol) ||
                        (slot < 9 && row[slot] - row[slot + 1] <= score_tol);
      BOOST_TEST((indices[i] == want.indices.data()[i] || tied));
      hits += indices[i] == static_cast<std::int64_t>(i / 10);
    }
    BOOST_TEST(100.0 * static_cast<double>(hits) / 1536.0 == r10, "search's recall@10 is eval's");
  }
  BOOST_TEST(run(program("search --model " + (out / "adapters.safetensors").string() + " --queries " +
                         (scratch() / "data_x.npy").string() + " --gallery " + (scratch() / "data_y.npy").string() +
                         " --k 1537 --out " + (scratch() / "found2").string())).code == 2);
  BOOST_TEST(!fs::exists(scratch() / "found2"));

  // The authors' PyTorch module loads these weights and gives the same embeddings (skipped where
  // Debian's python3-torch is not installed: exit 77).
  const auto py = run("/usr/bin/python3 " + (source_dir / "tools/check_pytorch_load.py").string() + " --model " +
                      (out / "adapters.safetensors").string() + " --side x --in " + (scratch() / "data_x.npy").string() +
                      " --embeddings " + (scratch() / "emb.npy").string() + " --tol 1e-4");
  if (py.code == 77 || py.code == 127)
    BOOST_TEST_MESSAGE("PyTorch load check skipped: no torch for /usr/bin/python3");
  else
    BOOST_TEST(py.code == 0, py.out << py.err);
}

// embed and eval read their latents a block of 4,096 rows at a time: 5,000 rows from two shards
// give the library's forward of the whole (to rounding: the products run on blocks of rows) and
// bytewise what one file gives; a NaN in the second block exits 2 naming its row, writing nothing.
BOOST_AUTO_TEST_CASE(embed_and_eval_stream_blocks_of_rows) {
  const fs::path d = scratch() / "blocks";
  fs::create_directories(d);
  fm::fusion_adapter<> hx(fm::adapter_shape{.in_dim = 24, .out_dim = 32, .depth = 2}, {.dropout = 0, .seed = 1});
  fm::fusion_adapter<> hy(fm::adapter_shape{.in_dim = 16, .out_dim = 32, .depth = 1}, {.dropout = 0, .seed = 2});
  const std::string model = (d / "model.safetensors").string();
  fm::save_weights(model, hx, hy, fm::contrastive_loss<>{});
  fm::philox_engine rng(11);
  fm::matrix<float> x(5000, 24), y(5000, 16);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(fm::sample_normal(rng));
  for (Eigen::Index i = 0; i < y.size(); ++i) y.data()[i] = static_cast<float>(fm::sample_normal(rng));
  fm::io::write_npy(d / "x.npy", x), fm::io::write_npy(d / "y.npy", y);
  fm::io::write_npy(d / "x0.npy", x.topRows(3000)), fm::io::write_npy(d / "x1.npy", x.bottomRows(2000));
  fm::io::write_npy(d / "y0.npy", y.topRows(3000)), fm::io::write_npy(d / "y1.npy", y.bottomRows(2000));
  const std::string xs = (d / "x0.npy").string() + "," + (d / "x1.npy").string();
  const std::string ys = (d / "y0.npy").string() + "," + (d / "y1.npy").string();

  auto embed = [&](const std::string& in, const fs::path& out) {
    return run(program("embed --model " + model + " --side x --in " + in + " --out " + out.string()));
  };
  BOOST_TEST_REQUIRE(embed(xs, d / "emb_shards.npy").code == 0);
  BOOST_TEST_REQUIRE(embed((d / "x.npy").string(), d / "emb_one.npy").code == 0);
  BOOST_TEST(bytes_of(d / "emb_shards.npy") == bytes_of(d / "emb_one.npy"));
  const fm::matrix<float> got = fm::io::read_npy<float>(d / "emb_shards.npy"), want = hx.forward(x);
  BOOST_TEST_REQUIRE(got.rows() == 5000);
  const double err = (got - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff();
  BOOST_TEST_MESSAGE("embed in blocks vs the whole forward: " << err);
  BOOST_TEST(err < 1e-5);

  auto eval = [&](const std::string& xa, const std::string& ya) {
    return run(program("eval --json --model " + model + " --x " + xa + " --y " + ya));
  };
  const auto e_shards = eval(xs, ys), e_one = eval((d / "x.npy").string(), (d / "y.npy").string());
  BOOST_TEST_REQUIRE(e_shards.code == 0, e_shards.err);
  BOOST_TEST(e_shards.out == e_one.out);
  const auto j = nlohmann::json::parse(e_shards.out);
  const auto direct = fm::evaluate_retrieval<float>(want, hy.forward(y));
  BOOST_TEST(std::abs(j["image_to_text"]["r10"].get<double>() - direct.image_to_text.r10) <= 100.0 / 5000);

  // search reads, embeds and searches the gallery a block at a time: shards give one file's bytes,
  // and the lists are the library's top_k over the whole embeddings (to rounding).
  auto search = [&](const std::string& q, const std::string& g, const fs::path& out) {
    return run(program("search --model " + model + " --queries " + q + " --gallery " + g + " --k 5 --out " + out.string()));
  };
  const auto s_shards = search(xs, ys, d / "found_shards"), s_one = search((d / "x.npy").string(), (d / "y.npy").string(), d / "found_one");
  BOOST_TEST_REQUIRE(s_shards.code == 0, s_shards.err);
  BOOST_TEST_REQUIRE(s_one.code == 0, s_one.err);
  for (const char* f : {"indices.npy", "scores.npy"})
    BOOST_TEST(bytes_of(d / "found_shards" / f) == bytes_of(d / "found_one" / f), f);
  const auto whole = fm::top_k<float>(want, hy.forward(y), 5);
  const fm::matrix<float> scores = fm::io::read_npy<float>(d / "found_one" / "scores.npy");
  BOOST_TEST((scores - whole.scores).cwiseAbs().maxCoeff() < 1e-5);
  const std::string ib = bytes_of(d / "found_one" / "indices.npy");
  std::vector<std::int64_t> found(5000 * 5);
  BOOST_TEST_REQUIRE(ib.size() >= found.size() * 8);
  std::memcpy(found.data(), ib.data() + ib.size() - found.size() * 8, found.size() * 8);
  std::size_t same = 0;
  for (std::size_t i = 0; i < found.size(); ++i) same += found[i] == whole.indices.data()[i];
  BOOST_TEST(same >= found.size() * 99 / 100, same << " of " << found.size() << " list entries as top_k's");

  fm::matrix<float> bad = x.bottomRows(2000);
  bad(1500, 7) = std::numeric_limits<float>::quiet_NaN();  // row 4500 of the whole: the second block
  fm::io::write_npy(d / "x1.npy", bad);
  const auto e = embed(xs, d / "emb_bad.npy");
  BOOST_TEST(e.code == 2);
  BOOST_TEST(e.err.find("row 4500, column 7") != std::string::npos, e.err);
  BOOST_TEST(!fs::exists(d / "emb_bad.npy"));
  BOOST_TEST(!has_temporary(d));
}

BOOST_AUTO_TEST_CASE(recipes_likely_to_train_poorly_get_a_warning_and_still_run) {
  // 1,536 pairs, 153 held out for validation: 12 epochs of 21 steps of 64 rows is 252 steps in all.
  const auto few = run(program(train_args(scratch() / "few_steps")));
  BOOST_TEST_REQUIRE(few.code == 0, few.err);
  BOOST_TEST(few.err.empty(), few.err);
  BOOST_TEST(few.out.find("fusemix train: warning: this run makes only 252 optimiser steps (12 epochs x 21 steps of 64 "
                          "rows, from 1383 pairs)") != std::string::npos, few.out);
  BOOST_TEST(few.out.find("over half") == std::string::npos, few.out);
  BOOST_TEST(fs::exists(scratch() / "few_steps" / "adapters.safetensors"));
  // train_args with other --epochs and --batch (CLI11 refuses an option given twice).
  const auto recipe = [](const fs::path& out, const std::string& epochs_and_batch) {
    std::string a = train_args(out);
    const std::string from = "--epochs 12 --batch 64";
    return a.replace(a.find(from), from.size(), epochs_and_batch);
  };
  // One step of 1,000 rows per epoch: both warnings.
  const auto big = run(program(recipe(scratch() / "big_batch", "--epochs 1 --batch 1000")));
  BOOST_TEST_REQUIRE(big.code == 0, big.err);
  BOOST_TEST(big.out.find("only 1 optimiser steps") != std::string::npos, big.out);
  BOOST_TEST(big.out.find("--batch 1000 is over half of the 1383 training pairs, so each epoch is 1 step and leaves "
                          "383 pairs unseen") != std::string::npos, big.out);
  // 48 epochs of 21 steps: 1,008 steps, nothing to say.
  const auto enough = run(program(recipe(scratch() / "enough", "--epochs 48 --batch 64")));
  BOOST_TEST_REQUIRE(enough.code == 0, enough.err);
  BOOST_TEST(enough.out.find("warning") == std::string::npos, enough.out);
}

BOOST_AUTO_TEST_CASE(settings_not_given_come_from_the_data_and_are_printed) {
  // No recipe flag: 1,383 training pairs of widths 24 and 16 give batch 128 (10 steps an epoch),
  // 100 epochs, depth 2. Run for 3 steps only: what is checked is what was chosen.
  const auto d = scratch();
  const fs::path out = d / "defaults";
  const auto r = run(program("train --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() +
                             " --out " + out.string() + " --threads 1 --max-steps 3"));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  for (const char* expected : {"validation: 153 of the 1536 pairs held out (seed 0)",
                               "settings from the data (1383 training pairs, widths 24 and 16)", "batch 128: ",
                               "epochs 100: 1000 optimiser steps", "depth 2, lr 1e-4, weight decay 0.5"})
    BOOST_TEST(r.out.find(expected) != std::string::npos, expected << " in " << r.out);
  BOOST_TEST(r.out.find("warning") == std::string::npos, r.out);
  const auto f = fm::io::read_safetensors(out / "checkpoint.safetensors");
  BOOST_TEST(f.metadata.at("run").find("depth_x=2 depth_y=2") != std::string::npos, f.metadata.at("run"));
  BOOST_TEST(f.metadata.at("run").find("epochs=100 batch=128 lr=0.0001 wd=0.5") != std::string::npos, f.metadata.at("run"));
  BOOST_TEST(f.metadata.at("run").find("held_out=153") != std::string::npos, f.metadata.at("run"));
  // A flag given is kept, and the epochs follow it.
  const auto kept = run(program("train --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() +
                                " --out " + (d / "defaults_kept").string() + " --threads 1 --max-steps 1 --batch 64 --no-val"));
  BOOST_TEST_REQUIRE(kept.code == 0, kept.err);
  BOOST_TEST(kept.out.find("epochs 42: 1008 optimiser steps at --batch 64") != std::string::npos, kept.out);
  BOOST_TEST(kept.out.find("validation") == std::string::npos, kept.out);
}

// The epochs' records of a run's metrics.jsonl.
std::vector<nlohmann::json> metric_records(const fs::path& out) {
  std::vector<nlohmann::json> records;
  std::ifstream in(out / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  return records;
}

BOOST_AUTO_TEST_CASE(the_best_validation_epoch_is_what_adapters_hold) {
  // A high learning rate on a small model: validation recall peaks before the last epoch.
  const auto d = scratch();
  const std::string loud = "train --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() +
                           " --epochs 12 --batch 64 --depth-x 1 --depth-y 1 --shared-dim 16 --lr 3e-2 --weight-decay 0"
                           " --dropout 0.3 --val-fraction 0.25 --seed 5 --threads 1 --checkpoint-every 1",
                    args = loud + " --quiet";
  const fs::path best = d / "best_run";
  BOOST_TEST_REQUIRE(run(program(args + " --out " + best.string())).code == 0);
  const auto records = metric_records(best);
  BOOST_TEST_REQUIRE(records.size() == 12u);
  std::size_t argmax = 0;
  for (std::size_t e = 0; e < records.size(); ++e) {
    if (records[e]["val"]["mean"].get<double>() > records[argmax]["val"]["mean"].get<double>()) argmax = e;
    BOOST_TEST(records[e]["best_epoch"].get<std::size_t>() == argmax + 1, "epoch " << e + 1);
  }
  const std::size_t b = argmax + 1;
  BOOST_TEST_REQUIRE(b < 12u, "the test needs a best epoch before the last");
  // The same run stopped after epoch b, keeping its last weights: the same bytes.
  const std::size_t steps = (1536 - 384) / 64;
  const fs::path upto = d / "best_upto";
  BOOST_TEST_REQUIRE(run(program(args + " --out " + upto.string() + " --keep-last --max-steps " +
                                 std::to_string(b * steps))).code == 0);
  BOOST_TEST(bytes_of(best / "adapters.safetensors") == bytes_of(upto / "adapters.safetensors"));
  // --keep-last writes the last epoch's, which differ.
  const fs::path last = d / "best_last";
  BOOST_TEST_REQUIRE(run(program(args + " --out " + last.string() + " --keep-last")).code == 0);
  BOOST_TEST(bytes_of(best / "adapters.safetensors") != bytes_of(last / "adapters.safetensors"));
  // Early stopping: patience 2 ends the run 2 epochs after its best, keeping that epoch.
  const fs::path early = d / "best_early";
  const auto r = run(program(loud + " --out " + early.string() + " --patience 2"));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  const auto early_records = metric_records(early);
  const std::size_t early_best = early_records.back()["best_epoch"].get<std::size_t>();
  BOOST_TEST(early_records.size() == early_best + 2);
  BOOST_TEST(early_best <= b);
  BOOST_TEST(r.out.find("stopped early after epoch " + std::to_string(early_best + 2)) != std::string::npos, r.out);
  BOOST_TEST(r.out.find("the weights of epoch " + std::to_string(early_best)) != std::string::npos, r.out);
  // Resumed, a run that stopped early stays stopped.
  const auto again = run(program(args + " --out " + early.string() + " --patience 2 --resume"));
  BOOST_TEST_REQUIRE(again.code == 0, again.err);
  BOOST_TEST(metric_records(early).size() == early_records.size());
}

BOOST_AUTO_TEST_CASE(auto_searches_by_successive_halving_then_trains_the_winner_on_every_pair) {
  // 9 candidates (0: the rule's), rounds of 1, 3 and 9 epochs; a small shared width keeps it quick
  // and, given, is not searched.
  const auto d = scratch();
  const std::string args = "train --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() +
                           " --auto --epochs 9 --batch 128 --shared-dim 32 --seed 4 --threads 1";
  const fs::path out = d / "auto";
  const auto r = run(program(args + " --out " + out.string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  BOOST_TEST(r.out.find("search: 9 candidates (0: the settings above), successive halving: 9 x 1 epochs, 3 x 3 epochs, "
                        "1 x 9 epochs; judged on 153 validation pairs") != std::string::npos, r.out);
  BOOST_TEST(!fs::exists(out / "search"));  // the trials' files are gone
  std::vector<nlohmann::json> rows;
  {
    std::ifstream in(out / "search.jsonl");
    for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  }
  BOOST_TEST(rows[0]["lr"].get<double>() == 1e-4);  // candidate 0: the rule's settings
  BOOST_TEST(rows[0]["depth"].get<std::size_t>() == 2u);
  // Each round holds the previous round's best (three, then one; ties to the lower candidate)
  // and candidate 0 whatever its score.
  auto kept_from = [&](std::size_t first, std::size_t count, std::size_t keep) {
    std::vector<std::pair<double, std::size_t>> ranked;
    for (std::size_t i = first; i < first + count; ++i)
      ranked.emplace_back(rows[i]["val_mean"].get<double>(), rows[i]["candidate"].get<std::size_t>());
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<std::size_t> kept;
    for (std::size_t k = 0; k < keep; ++k) kept.push_back(ranked[k].second);
    if (std::find(kept.begin(), kept.end(), 0u) == kept.end()) kept.push_back(0);
    std::sort(kept.begin(), kept.end());
    return kept;
  };
  BOOST_TEST_REQUIRE(rows.size() > 9u);
  const auto round1 = kept_from(0, 9, 3);
  BOOST_TEST_REQUIRE(rows.size() > 9 + round1.size());
  const auto round2 = kept_from(9, round1.size(), 1);
  BOOST_TEST_REQUIRE(rows.size() == 9 + round1.size() + round2.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::size_t round = i < 9 ? 0 : i < 9 + round1.size() ? 1 : 2;
    BOOST_TEST(rows[i]["shared_dim"].get<std::size_t>() == 32u);
    BOOST_TEST(rows[i]["round"].get<std::size_t>() == round);
    BOOST_TEST(rows[i]["epochs"].get<std::size_t>() == (round == 0 ? 1u : round == 1 ? 3u : 9u));
    if (round == 1) BOOST_TEST(rows[i]["candidate"].get<std::size_t>() == round1[i - 9]);
    if (round == 2) BOOST_TEST(rows[i]["candidate"].get<std::size_t>() == round2[i - 9 - round1.size()]);
  }
  // The winner: the best of the last round.
  std::size_t last = 9 + round1.size();
  for (std::size_t i = last + 1; i < rows.size(); ++i)
    if (rows[i]["val_mean"].get<double>() > rows[last]["val_mean"].get<double>()) last = i;
  const std::size_t winner = rows[last]["candidate"].get<std::size_t>();
  const std::size_t best_epoch = rows[last]["best_epoch"].get<std::size_t>();
  BOOST_TEST(r.out.find("search: candidate " + std::to_string(winner) + " won") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("final run: the winner on all 1536 pairs, stopped after epoch " + std::to_string(best_epoch) +
                        " of 9 (" + std::to_string(best_epoch * 12) + " optimiser steps)") != std::string::npos, r.out);
  // The final run has the winner's settings, no held-out pairs, and trains that many steps.
  const auto f = fm::io::read_safetensors(out / "checkpoint.safetensors");
  const std::string run_sig = f.metadata.at("run");
  std::ostringstream expected;
  expected << "depth_x=" << rows[last]["depth"].get<std::size_t>() << " depth_y=" << rows[last]["depth"].get<std::size_t>();
  BOOST_TEST(run_sig.find(expected.str()) != std::string::npos, run_sig);
  expected.str("");
  expected << "epochs=9 batch=128 lr=" << rows[last]["lr"].get<double>() << " wd=" << rows[last]["weight_decay"].get<double>();
  BOOST_TEST(run_sig.find(expected.str()) != std::string::npos, run_sig << " lacks " << expected.str());
  BOOST_TEST(run_sig.find("held_out") == std::string::npos, run_sig);
  BOOST_TEST(metric_records(out).size() == best_epoch);
  // Deterministic per seed: the same search, the same weights.
  const fs::path again = d / "auto_again";
  BOOST_TEST_REQUIRE(run(program(args + " --quiet --out " + again.string())).code == 0);
  BOOST_TEST(bytes_of(out / "adapters.safetensors") == bytes_of(again / "adapters.safetensors"));
}

BOOST_AUTO_TEST_CASE(the_demo_validates_on_training_pairs_and_reports_the_test_split) {
  // Two short epochs of the smallest adapters on the bundled data: what is checked is where each
  // split goes, not the figures.
  const fs::path out = scratch() / "demo";
  const auto r = run(program("demo --epochs 2 --depth 0 --threads 1 --no-plot --out " + out.string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  for (const char* expected : {"validation: 124 of the 1243 pairs held out", "settings from the data (1119 training pairs",
                               "retrieval on the 300-pair test split", "ridge regression", "FuseMix (epoch "})
    BOOST_TEST(r.out.find(expected) != std::string::npos, expected << " in " << r.out);
  const auto records = metric_records(out);
  BOOST_TEST_REQUIRE(records.size() == 2u);
  // Validation ran on 124 pairs (every recall a whole number of 124ths), not on the 300 test pairs.
  double sum = 0;
  for (const char* direction : {"image_to_text", "text_to_image"})
    for (const char* k : {"r1", "r5", "r10"}) {
      const double v = records.back()["val"][direction][k].get<double>(), hits = v * 124 / 100;
      BOOST_TEST(std::abs(hits - std::round(hits)) < 1e-9, direction << " " << k << " = " << v);
      sum += v;
    }
  BOOST_TEST(sum > 0);
}

BOOST_AUTO_TEST_CASE(the_sigmoid_loss_through_the_program) {
  const fs::path out = scratch() / "run_sigmoid";
  const auto r = run(program(train_args(out) + " --loss sigmoid --mix halves"));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  const auto f = fm::io::read_safetensors(out / "adapters.safetensors");
  BOOST_TEST(f.tensors.count("temp") == 0u);
  BOOST_TEST(f.tensors.count("logit_scale") == 1u);
  BOOST_TEST(f.tensors.count("logit_bias") == 1u);
  BOOST_TEST(fm::io::read_safetensors(out / "checkpoint.safetensors").metadata.at("loss") == "sigmoid");
  std::ifstream metrics(out / "metrics.jsonl");
  std::string first;
  std::getline(metrics, first);
  const auto j = nlohmann::json::parse(first);
  BOOST_TEST((j.contains("logit_scale") && j.contains("logit_bias") && !j.contains("temp")));

  const std::string model = (out / "adapters.safetensors").string();
  const auto info = run(program("info " + model));
  BOOST_TEST_REQUIRE(info.code == 0, info.err);
  BOOST_TEST(info.out.find("loss: sigmoid (logit_scale ") != std::string::npos, info.out);
  BOOST_TEST(info.out.find("vis_proj.: in_dim 24, out_dim 32, depth 2") != std::string::npos, info.out);
  const auto e = run(program("embed --model " + model + " --side y --in " + (scratch() / "data_y.npy").string() +
                             " --out " + (scratch() / "emb_sigmoid.npy").string()));
  BOOST_TEST_REQUIRE(e.code == 0, e.err);
  const auto ev = run(program("eval --json --model " + model + " --x " + (scratch() / "data_x.npy").string() + " --y " +
                              (scratch() / "data_y.npy").string()));
  BOOST_TEST_REQUIRE(ev.code == 0, ev.err);
  BOOST_TEST(nlohmann::json::parse(ev.out)["image_to_text"]["r10"].get<double>() > 50.0);  // learnt

  // --resume with the other loss is refused, naming both; an unknown loss is a usage error.
  const auto other = run(program(train_args(out) + " --mix halves --resume"));
  BOOST_TEST(other.code == 2);
  BOOST_TEST(other.err.find("trained with the sigmoid loss, this run uses contrastive") != std::string::npos, other.err);
  BOOST_TEST(run(program(train_args(out) + " --loss hinge")).code == 2);
}

BOOST_AUTO_TEST_CASE(float16_shards_train_like_one_float32_file_and_max_steps_resumes_bitwise) {
  // The pairs rounded to float16: one float32 file of the rounded values, and three float16
  // shards per side (600 + 500 + 436 rows) written as numpy writes them.
  const fs::path d = scratch();
  std::vector<std::string> shards_x, shards_y;
  for (const char* side : {"x", "y"}) {
    const fm::matrix<float> m = fm::io::read_npy<float>(d / ("data_" + std::string(side) + ".npy"));
    fm::matrix<float> rounded = m;
    std::vector<std::uint16_t> bits(static_cast<std::size_t>(m.size()));
    for (Eigen::Index i = 0; i < m.size(); ++i) {
      const Eigen::half h(m.data()[i]);
      bits[static_cast<std::size_t>(i)] = Eigen::numext::bit_cast<std::uint16_t>(h);
      rounded.data()[i] = static_cast<float>(h);
    }
    fm::io::write_npy(d / ("rounded_" + std::string(side) + ".npy"), rounded);
    for (auto [first, count] : {std::pair<Eigen::Index, Eigen::Index>{0, 600}, {600, 500}, {1100, 436}}) {
      const fs::path p = d / ("half_" + std::string(side) + "_" + std::to_string(first) + ".npy");
      std::string bytes = fm::detail::npy_header_bytes("<f2", {static_cast<std::size_t>(count), static_cast<std::size_t>(m.cols())});
      bytes.append(reinterpret_cast<const char*>(bits.data() + first * m.cols()), static_cast<std::size_t>(count * m.cols()) * 2);
      std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      (side[0] == 'x' ? shards_x : shards_y).push_back(p.string());
    }
  }
  auto args = [&](const std::string& x, const std::string& y, const fs::path& out) {
    return "train --x " + x + " --y " + y + " --out " + out.string() +
           " --epochs 2 --batch 256 --depth-x 2 --depth-y 1 --shared-dim 32 --lr 2e-3 --dropout 0.3 --seed 3 --threads 1"
           " --no-val";
  };
  const fs::path one = d / "rounded_run", sharded = d / "half_run", stopped = d / "max_steps_run";
  BOOST_TEST_REQUIRE(run(program(args((d / "rounded_x.npy").string(), (d / "rounded_y.npy").string(), one) + " --quiet")).code == 0);
  const auto r = run(program(args(shards_x[0] + "," + shards_x[1] + "," + shards_x[2],
                                  shards_y[0] + "," + shards_y[1] + "," + shards_y[2], sharded) + " --quiet"));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  const std::string want = bytes_of(one / "adapters.safetensors");
  BOOST_TEST(bytes_of(sharded / "adapters.safetensors") == want, "float16 shards vs one float32 file");
  // --max-steps 8 stops inside the second epoch (6 steps each) with weights and a checkpoint;
  // resuming without it ends where the uninterrupted run ended, bitwise.
  const std::string base = args((d / "rounded_x.npy").string(), (d / "rounded_y.npy").string(), stopped);
  const auto s = run(program(base + " --max-steps 8"));
  BOOST_TEST_REQUIRE(s.code == 0, s.err);
  BOOST_TEST(s.out.find("stopped at --max-steps 8 (after 1 epochs and 2 steps)") != std::string::npos, s.out);
  BOOST_TEST(fs::exists(stopped / "adapters.safetensors"));
  BOOST_TEST(bytes_of(stopped / "adapters.safetensors") != want);
  BOOST_TEST_REQUIRE(run(program(base + " --resume --quiet")).code == 0);
  BOOST_TEST(bytes_of(stopped / "adapters.safetensors") == want, "--max-steps then --resume vs uninterrupted");
  // A new run in a directory holding an earlier run's files, stopped inside its first epoch: its
  // metrics.jsonl is its own (empty), not the earlier run's.
  const fs::path reused = d / "reused_run";
  fs::copy(one, reused, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  BOOST_TEST_REQUIRE(fs::file_size(reused / "metrics.jsonl") > 0);
  const auto again = run(program(args((d / "rounded_x.npy").string(), (d / "rounded_y.npy").string(), reused) +
                                 " --max-steps 3"));
  BOOST_TEST_REQUIRE(again.code == 0, again.err);
  BOOST_TEST(again.out.find("the earlier run's weights and checkpoint removed") != std::string::npos, again.out);
  BOOST_TEST(fs::exists(reused / "metrics.jsonl"));
  BOOST_TEST(bytes_of(reused / "metrics.jsonl").empty(), "an earlier run's metrics.jsonl left beside a new run's weights");
  // One that diverges in its first step writes no weights of its own: none of the earlier run's
  // may be left there either.
  fs::copy(one, reused, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  std::string huge_lr = args((d / "rounded_x.npy").string(), (d / "rounded_y.npy").string(), reused) + " --quiet";
  huge_lr.replace(huge_lr.find("--lr 2e-3"), 9, "--lr 1e30");
  const auto diverged = run(program(huge_lr));
  BOOST_TEST(diverged.code == 1, diverged.err);
  BOOST_TEST(diverged.err.find("training diverged") != std::string::npos, diverged.err);
  BOOST_TEST(!fs::exists(reused / "adapters.safetensors"), "the earlier run's weights left beside a diverged run");
  // --resume of a checkpoint of other shapes names the settings; a model file is no checkpoint.
  std::string deeper = base;
  deeper.replace(deeper.find("--depth-x 2"), 11, "--depth-x 3");
  const auto other = run(program(deeper + " --resume"));
  BOOST_TEST(other.code == 2, other.err);
  BOOST_TEST(other.err.find("was written by a run with other shapes (latent widths, --depth-x/-y") != std::string::npos,
             other.err);
  fs::copy_file(stopped / "adapters.safetensors", stopped / "checkpoint.safetensors", fs::copy_options::overwrite_existing);
  const auto model = run(program(base + " --resume"));
  BOOST_TEST(model.code == 2, model.err);
  BOOST_TEST(model.err.find("not a fusemix checkpoint (expected format \"fusemix-checkpoint-1\", got") != std::string::npos,
             model.err);
  // --micro-batch 100 (slices of 100, 100 and 56 rows): the same weights up to rounding.
  const fs::path cached = d / "micro_batch_run";
  const auto c = run(program(args((d / "rounded_x.npy").string(), (d / "rounded_y.npy").string(), cached) +
                             " --micro-batch 100 --quiet"));
  BOOST_TEST_REQUIRE(c.code == 0, c.err);
  const auto got = fm::io::read_safetensors(cached / "adapters.safetensors"),
             ref = fm::io::read_safetensors(one / "adapters.safetensors");
  double diff = 0, norm = 0;
  for (const auto& [name, t] : ref.tensors) {
    const auto& g = got.tensors.at(name);
    BOOST_TEST_REQUIRE(g.data.size() == t.data.size());
    for (std::size_t i = 0; i < t.data.size(); ++i) {
      const double e = double(g.data[i]) - double(t.data[i]);
      diff += e * e, norm += double(t.data[i]) * double(t.data[i]);
    }
  }
  BOOST_TEST_MESSAGE("--micro-batch 100: weights differ by " << std::sqrt(diff / norm) << " relative");
  BOOST_TEST(diff > 0);  // really another summation order
  BOOST_TEST(std::sqrt(diff / norm) < 1e-5);
}

BOOST_AUTO_TEST_CASE(kill_and_resume_is_bitwise_equal) {
  const fs::path ref = scratch() / "uninterrupted";
  BOOST_TEST_REQUIRE(run(program(train_args(ref))).code == 0);
  const std::string want = bytes_of(ref / "adapters.safetensors");
  // SIGKILL after different delays (before the first checkpoint, between, during writes), then
  // resume; the final weights must not depend on where the run died.
  // The last case waits for the first checkpoint instead of a fixed delay, so that one kill
  // always has a checkpoint to resume from however slow the machine (a sanitizer build, a loaded
  // CI runner); delay -1 marks it.
  int resumed_from_checkpoint = 0;
  for (int delay_ms : {30, 150, 400, 700, -1}) {
    const fs::path out = scratch() / ("killed_" + std::to_string(delay_ms));
    const pid_t pid = fork();
    if (pid == 0) {
      execl("/bin/sh", "sh", "-c", ("exec " + program(train_args(out))).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    if (delay_ms >= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    } else {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      while (!fs::exists(out / "checkpoint.safetensors") && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    resumed_from_checkpoint += fs::exists(out / "checkpoint.safetensors");
    // No temporary file may be mistaken for output, and the checkpoint (if any) must be whole.
    if (fs::exists(out / "checkpoint.safetensors")) BOOST_CHECK_NO_THROW(fm::io::read_safetensors(out / "checkpoint.safetensors"));
    const auto r = run(program(train_args(out) + " --resume"));
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(bytes_of(out / "adapters.safetensors") == want, "killed after " << delay_ms << " ms");
  }
  BOOST_TEST_MESSAGE(resumed_from_checkpoint << " of 5 killed runs had a checkpoint to resume from");
  BOOST_TEST(resumed_from_checkpoint >= 1);
}

BOOST_AUTO_TEST_CASE(kill_inside_checkpoint_writes_then_resume_is_bitwise_equal) {
  const fs::path ref = scratch() / "uninterrupted_w";
  BOOST_TEST_REQUIRE(run(program(train_args(ref))).code == 0);
  const std::string want = bytes_of(ref / "adapters.safetensors");
  // SIGKILL the moment the k-th checkpoint temporary is created (inotify), so the process dies
  // while writing it: the previous checkpoint must be intact and resuming must not care.
  int killed_mid_write = 0;
  for (int k : {1, 4, 9}) {
    const fs::path out = scratch() / ("killed_in_write_" + std::to_string(k));
    fs::create_directories(out);
    const int fd = inotify_init1(IN_CLOEXEC);
    BOOST_TEST_REQUIRE(fd >= 0);
    BOOST_TEST_REQUIRE(inotify_add_watch(fd, out.c_str(), IN_CREATE) >= 0);
    const pid_t pid = spawn(train_args(out), out / "stderr.txt");
    int seen = 0;
    bool killed = false;
    alignas(inotify_event) char buf[4096];
    while (!killed) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20000) <= 0) break;  // the run ended (or hung) before the k-th checkpoint
      const ssize_t got = read(fd, buf, sizeof buf);
      for (char* at = buf; at < buf + got && !killed;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(at);
        if (ev->len > 0 && std::string(ev->name).starts_with("checkpoint.safetensors.tmp.") && ++seen == k) {
          kill(pid, SIGKILL);
          killed = true;
        }
        at += sizeof(inotify_event) + ev->len;
      }
    }
    close(fd);
    const int status = wait_for(pid);
    BOOST_TEST_REQUIRE(killed, "checkpoint " << k << " never started");
    BOOST_TEST(WIFSIGNALED(status));
    const bool mid_write = has_temporary(out);
    killed_mid_write += mid_write;
    if (fs::exists(out / "checkpoint.safetensors"))
      BOOST_CHECK_NO_THROW(fm::io::read_safetensors(out / "checkpoint.safetensors"));
    const auto r = run(program(train_args(out) + " --resume"));
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(bytes_of(out / "adapters.safetensors") == want, "killed in checkpoint write " << k);
    BOOST_TEST(!has_temporary(out), "the resumed run clears the dead run's temporary");
  }
  BOOST_TEST_MESSAGE(killed_mid_write << " of 3 kills landed before the temporary was renamed");
  BOOST_TEST(killed_mid_write >= 1);
}

BOOST_AUTO_TEST_CASE(sigint_and_sigterm_save_and_exit_then_resume_is_bitwise_equal) {
  const fs::path ref = scratch() / "uninterrupted_s";
  BOOST_TEST_REQUIRE(run(program(train_args(ref))).code == 0);
  const std::string want = bytes_of(ref / "adapters.safetensors");
  for (const auto& [sig, name] : {std::pair{SIGINT, "SIGINT"}, std::pair{SIGTERM, "SIGTERM"}}) {
    const fs::path out = scratch() / (std::string("signalled_") + name);
    fs::create_directories(out);
    const pid_t pid = spawn(train_args(out), out / "stderr.txt");
    // Signal once the first epoch is saved, mid-way through a later one.
    for (int i = 0; i < 2000 && !fs::exists(out / "checkpoint.safetensors"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    kill(pid, sig);
    const int status = wait_for(pid);
    const std::string err = bytes_of(out / "stderr.txt");
    BOOST_TEST_REQUIRE(WIFEXITED(status), name << ": ended by a signal, not by exit");
    BOOST_TEST(WEXITSTATUS(status) == 128 + sig, name << " -> exit " << WEXITSTATUS(status));
    BOOST_TEST(err.find(std::string("stopped by ") + name) != std::string::npos, err);
    BOOST_TEST(err.find("--resume") != std::string::npos, err);
    BOOST_TEST(std::count(err.begin(), err.end(), '\n') == 1, err);
    // adapters.safetensors holds the best validation epoch so far, written before the checkpoint
    // that names it: present exactly when the checkpoint names one.
    const auto ckpt = fm::io::read_safetensors(out / "checkpoint.safetensors");
    BOOST_TEST(fs::exists(out / "adapters.safetensors") == ckpt.metadata.contains("best_epoch"));
    BOOST_TEST_MESSAGE(name << " stopped after epoch " << ckpt.metadata.at("epoch") << " and step "
                            << ckpt.metadata.at("step_in_epoch"));
    const auto r = run(program(train_args(out) + " --resume"));
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    BOOST_TEST(bytes_of(out / "adapters.safetensors") == want, name);
    // metrics.jsonl lists every epoch once, as the uninterrupted run's does.
    std::ifstream metrics(out / "metrics.jsonl");
    std::size_t lines = 0;
    for (std::string l; std::getline(metrics, l);) ++lines;
    BOOST_TEST(lines == 12u);
  }
}

BOOST_AUTO_TEST_CASE(checkpoint_minutes_saves_inside_epochs_and_changes_no_bit) {
  const fs::path ref = scratch() / "uninterrupted_m";
  BOOST_TEST_REQUIRE(run(program(train_args(ref))).code == 0);
  const std::string want = bytes_of(ref / "adapters.safetensors"), want_metrics = bytes_of(ref / "metrics.jsonl");
  // A period shorter than any step: the run pauses after every step to save, and ends with the
  // bits, the losses and the recalls of the run that never paused (only "seconds" may differ).
  const std::string every_step = " --checkpoint-minutes 1e-6";
  auto without_seconds = [](const std::string& lines) {
    std::istringstream in(lines);
    std::vector<nlohmann::json> out;
    for (std::string l; std::getline(in, l);) {
      auto j = nlohmann::json::parse(l);
      j.erase("seconds");
      out.push_back(j);
    }
    return out;
  };
  const fs::path paused = scratch() / "paused_m";
  const auto r = run(program(train_args(paused) + every_step));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  BOOST_TEST(bytes_of(paused / "adapters.safetensors") == want);
  BOOST_TEST((without_seconds(bytes_of(paused / "metrics.jsonl")) == without_seconds(want_metrics)));
  // Killed once a checkpoint from inside an epoch is on disk: resumed from it, the same bits.
  const fs::path out = scratch() / "killed_m";
  fs::create_directories(out);
  const pid_t pid = spawn(train_args(out) + every_step, out / "stderr.txt");
  std::string inside;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (inside.empty() && std::chrono::steady_clock::now() < give_up) {
    try {
      const auto c = fm::io::read_safetensors(out / "checkpoint.safetensors");
      if (c.metadata.at("step_in_epoch") != "0")
        inside = "epoch " + c.metadata.at("epoch") + ", step " + c.metadata.at("step_in_epoch");
    } catch (const std::exception&) {  // not written yet
    }
    if (inside.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGKILL);
  wait_for(pid);
  BOOST_TEST_REQUIRE(!inside.empty(), "no checkpoint from inside an epoch appeared");
  BOOST_TEST_MESSAGE("a checkpoint inside an epoch: " << inside);
  const auto resumed = run(program(train_args(out) + every_step + " --resume"));
  BOOST_TEST_REQUIRE(resumed.code == 0, resumed.err);
  BOOST_TEST(bytes_of(out / "adapters.safetensors") == want);
  BOOST_TEST((without_seconds(bytes_of(out / "metrics.jsonl")) == without_seconds(want_metrics)));
  // A SIGTERM while pauses fall due after every step is not taken for one: the run stops with
  // the signal's exit and message, and resumes to the same bits. Steps and pauses take about as
  // long here, so eight signals at different delays land in both.
  for (int delay_ms = 20; delay_ms < 36; delay_ms += 2) {
    const fs::path term = scratch() / ("signalled_m_" + std::to_string(delay_ms));
    fs::create_directories(term);
    const pid_t spid = spawn(train_args(term) + every_step, term / "stderr.txt");
    for (int i = 0; i < 2000 && !fs::exists(term / "checkpoint.safetensors"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(spid, SIGTERM);
    const int status = wait_for(spid);
    const std::string err = bytes_of(term / "stderr.txt");
    BOOST_TEST_REQUIRE(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 128 + SIGTERM, "after " << delay_ms << " ms: exit " << WEXITSTATUS(status));
    BOOST_TEST(err.find("stopped by SIGTERM") != std::string::npos, err);
    const auto again = run(program(train_args(term) + every_step + " --resume"));
    BOOST_TEST_REQUIRE(again.code == 0, again.err);
    BOOST_TEST(bytes_of(term / "adapters.safetensors") == want);
  }
}

BOOST_AUTO_TEST_CASE(without_a_terminal_a_progress_line_comes_at_most_every_progress_seconds) {
  // Not --quiet, stdout a file: no bar, a line per epoch, and lines inside epochs only as often
  // as --progress-seconds allows (the default, 60 s, is longer than this whole run).
  std::string args = train_args(scratch() / "progress_default");
  args.erase(args.find(" --quiet"));
  auto inside = [](const std::string& out) {
    std::size_t n = 0;
    for (std::size_t p = out.find("  step "); p != std::string::npos; p = out.find("  step ", p + 1)) ++n;
    return n;
  };
  const auto quiet_default = run(program(args));
  BOOST_TEST_REQUIRE(quiet_default.code == 0, quiet_default.err);
  BOOST_TEST(quiet_default.out.find("epoch 12/12  loss") != std::string::npos, quiet_default.out);
  BOOST_TEST(inside(quiet_default.out) == 0u, quiet_default.out);
  BOOST_TEST(quiet_default.out.find('\r') == std::string::npos);  // no bar drawn into a file
  // A period shorter than any step: a line after every step but each epoch's last (21 steps of 64
  // rows from the 1,383 pairs not held out), each with the rate and an ETA.
  args = train_args(scratch() / "progress_every_step");
  args.erase(args.find(" --quiet"));
  const auto r = run(program(args + " --progress-seconds 1e-9"));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  BOOST_TEST(inside(r.out) == 12u * 20u, r.out);
  BOOST_TEST(r.out.find("epoch 1/12  step 1/21  loss ") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("epoch 12/12  step 20/21  loss ") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("epoch 1/12  step 21/21") == std::string::npos, r.out);
  BOOST_TEST(r.out.find(" samples/s  ETA ") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(an_interrupted_search_exits_with_one_line_and_leaves_no_trial_files) {
  const auto d = scratch();
  const fs::path out = d / "auto_signalled";
  fs::create_directories(out);
  const pid_t pid = spawn("train --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() +
                              " --auto --epochs 90 --batch 128 --shared-dim 32 --threads 1 --quiet --out " + out.string(),
                          out / "stderr.txt");
  // Signal once the first trial is recorded: during a later trial, or between two.
  for (int i = 0; i < 4000 && !fs::exists(out / "search.jsonl"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(pid, SIGINT);
  const int status = wait_for(pid);
  const std::string err = bytes_of(out / "stderr.txt");
  BOOST_TEST_REQUIRE(WIFEXITED(status), "ended by the signal, not by exit");
  BOOST_TEST(WEXITSTATUS(status) == 128 + SIGINT);
  BOOST_TEST(err.find("fusemix train --auto: stopped by SIGINT") != std::string::npos, err);
  BOOST_TEST(err.find("a search does not resume") != std::string::npos, err);
  BOOST_TEST(std::count(err.begin(), err.end(), '\n') == 1, err);
  BOOST_TEST(!fs::exists(out / "search"));  // no trial's files left
  BOOST_TEST(!fs::exists(out / "adapters.safetensors"));
  BOOST_TEST(!bytes_of(out / "search.jsonl").empty());
}

BOOST_AUTO_TEST_CASE(divergence_exits_1_and_keeps_the_checkpoint) {
  const fs::path out = scratch() / "diverging";
  BOOST_TEST_REQUIRE(run(program(train_args(out))).code == 0);
  // Rewind the finished run's checkpoint to epoch 1 with weights that overflow float.
  auto f = fm::io::read_safetensors(out / "checkpoint.safetensors");
  for (auto& [name, t] : f.tensors)
    if (name.ends_with("weight"))
      for (float& w : t.data) w *= 1e37f;
  f.metadata["epoch"] = "1";
  fm::io::write_safetensors(out / "checkpoint.safetensors", f.tensors, f.metadata);
  fs::remove(out / "adapters.safetensors");
  const std::string before = bytes_of(out / "checkpoint.safetensors");
  const auto r = run(program(train_args(out) + " --resume"));
  BOOST_TEST(r.code == 1, r.err);
  BOOST_TEST(r.err.find("diverged in epoch 2, step 1") != std::string::npos, r.err);
  BOOST_TEST(r.err.find("kept") != std::string::npos, r.err);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  BOOST_TEST(bytes_of(out / "checkpoint.safetensors") == before);
  BOOST_TEST(!fs::exists(out / "adapters.safetensors"));
}

BOOST_AUTO_TEST_CASE(resume_refuses_other_settings) {
  const fs::path out = scratch() / "other";
  BOOST_TEST_REQUIRE(run(program(train_args(out))).code == 0);
  const auto r = run(program(train_args(out) + " --resume --alpha 0.5"));
  BOOST_TEST(r.code == 2);
  BOOST_TEST(r.err.find("other settings") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(bad_input_is_one_line_and_exit_2) {
  const auto d = scratch();
  write_pairs(100, "small");
  fm::matrix<float> fewer = fm::io::read_npy<float>(d / "small_y.npy").topRows(99);
  fm::io::write_npy(d / "fewer_y.npy", fewer);
  const std::string base = "train --out " + (d / "bad").string() + " --quiet";
  struct bad_case {
    std::string args, message;
  };
  const std::vector<bad_case> cases{
      {base + " --x " + (d / "missing.npy").string() + " --y " + (d / "small_y.npy").string(), "missing.npy"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "fewer_y.npy").string(), "same number of rows"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --batch 101",
       "batch must not exceed"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --batch 7 --mix halves",
       "even"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --preset nonsense",
       "unknown preset"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --val-fraction 0",
       "--val-fraction is the fraction of pairs held out (expected a number between 0 and 1, both excluded, got 0)"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --val-fraction 1",
       "both excluded, got 1)"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --val-fraction 0.001",
       "must hold out at least one pair"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --val-fraction 0.2 --x-val " +
           (d / "small_x.npy").string() + " --y-val " + (d / "small_y.npy").string(),
       "use one or the other"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --patience 3",
       "--patience 3 needs validation pairs"},
      {base + " --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() + " --patience 3 --no-val",
       "got none: --no-val"},
      {base + " --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() + " --auto --budget-minutes 0",
       "--budget-minutes: out of range (expected a number > 0, got 0)"},
      {base + " --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() + " --budget-minutes 5",
       "without --auto there is none"},
      {base + " --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() + " --auto --no-val",
       "--auto judges settings on validation pairs; --no-val leaves none"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --auto",
       "needs at least 1000 pairs; got 100"},
      {base + " --x " + (d / "data_x.npy").string() + " --y " + (d / "data_y.npy").string() + " --auto --resume",
       "--auto does not resume"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --gpu-latents stream",
       "--gpu-latents stream chooses how the GPU reads the pairs; it needs --device cuda"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --alpha-schedule cosine "
           "--final-alpha 0",
       "--final-alpha: out of range (expected a number > 0, got 0)"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --final-alpha 0.5",
       "--final-alpha is where --alpha-schedule ends"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --shared-dim 0",
       "--shared-dim: out of range (expected a number > 0, got 0)"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --precision bf16",
       "--precision bf16 chooses the GPU's GEMM operands; it needs --device cuda"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --identity-y --depth-y 2",
       "--identity-y has no Y adapter, so no depth"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --x-val " +
           (d / "small_x.npy").string() + " --y-val " + (d / "small_y.npy").string() + " --no-val",
       "--no-val and --x-val/--y-val contradict each other"},
      {base + " --x " + (d / "small_x.npy").string() + " --y " + (d / "small_y.npy").string() + " --checkpoint-minutes inf",
       "--checkpoint-minutes: out of range (expected a number >= 0, got inf)"},
      {"eval --model " + (d / "small_x.npy").string() + " --x " + (d / "small_x.npy").string() + " --y " +
           (d / "small_y.npy").string(),
       "small_x.npy"},
  };
  for (const auto& c : cases) {
    const auto r = run(program(c.args));
    BOOST_TEST(r.code == 2, c.args << " -> " << r.code);
    BOOST_TEST(r.err.find(c.message) != std::string::npos, c.args << " -> " << r.err);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  }
  BOOST_TEST(run(program("train --x")).code == 2);  // usage error
}

BOOST_AUTO_TEST_CASE(select_writes_picks_and_refuses_bad_input) {
  const auto d = scratch();
  const std::string x = (d / "data_x.npy").string(), y = (d / "data_y.npy").string();
  const auto r = run(program("select --in " + x + " --k 20 --normalize --json --out " + (d / "picks.npy").string() +
                             " --x " + x + " --y " + y + " --out-x " + (d / "x_sel.npy").string() + " --out-y " +
                             (d / "y_sel.npy").string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  const auto j = nlohmann::json::parse(r.out);
  BOOST_TEST(j["picks"].get<int>() == 20);
  BOOST_TEST(j["stop"].get<std::string>() == "k_reached");
  const auto picks = fm::io::read_npy_int64(d / "picks.npy");
  BOOST_TEST_REQUIRE(picks.size() == 20u);
  // Row r of the selected files is pair picks[r] of the inputs.
  const auto zx = fm::io::read_npy<float>(x), sx = fm::io::read_npy<float>(d / "x_sel.npy");
  const auto zy = fm::io::read_npy<float>(y), sy = fm::io::read_npy<float>(d / "y_sel.npy");
  for (std::size_t i = 0; i < picks.size(); ++i) {
    BOOST_TEST((sx.row(static_cast<Eigen::Index>(i)) == zx.row(picks[i])));
    BOOST_TEST((sy.row(static_cast<Eigen::Index>(i)) == zy.row(picks[i])));
  }
  // --threads changes the speed only: 1 and 2 threads pick the same items as the default.
  for (const char* t : {"1", "2"}) {
    const auto out = d / (std::string("picks_") + t + ".npy");
    const auto rt = run(program("select --in " + x + " --k 20 --normalize --threads " + t + " --out " + out.string()));
    BOOST_TEST_REQUIRE(rt.code == 0, rt.err);
    BOOST_TEST(fm::io::read_npy_int64(out) == picks, boost::test_tools::per_element());
  }
  // Bad input: one line on stderr naming the problem, exit 2.
  fm::matrix<float> nan = zx.topRows(10);
  nan(3, 4) = std::nanf("");
  fm::io::write_npy(d / "nan.npy", nan);
  {
    std::ofstream empty(d / "empty.npy");
  }
  const std::vector<std::pair<std::string, std::string>> cases{
      {"--in " + x + " --k 0", "k"},
      {"--in " + x + " --k 5000", "k must not exceed"},
      {"--in " + (d / "nan.npy").string() + " --k 3", "must be finite"},
      {"--in " + (d / "empty.npy").string() + " --k 3", "empty.npy"},
  };
  for (const auto& [args, message] : cases) {
    const auto bad = run(program("select " + args + " --out " + (d / "bad_picks.npy").string()));
    BOOST_TEST(bad.code == 2, args << " -> " << bad.code);
    BOOST_TEST(bad.err.find(message) != std::string::npos, args << " -> " << bad.err);
    BOOST_TEST(std::count(bad.err.begin(), bad.err.end(), '\n') == 1, bad.err);
  }
}

BOOST_AUTO_TEST_CASE(bench_train_reports_a_step_against_the_roofline) {
  const auto r = run(program("bench train --dim-x 48 --dim-y 32 --depth-x 1 --depth-y 0 --batch 64 --shared-dim 16"
                             " --steps 3 --warmup 1 --json"));
  BOOST_TEST_REQUIRE(r.code == 0, r.err);
  const auto j = nlohmann::json::parse(r.out);
  // GEMM FLOPs: 6·b·m·n per Linear (48→192→48, 48→16; 32→16) plus 6·b²·s for the loss.
  const double b = 64, want = 6 * b * (48 * 192 * 2 + 48 * 16 + 32 * 16) + 6 * b * b * 16;
  BOOST_TEST(j["gemm_gflop_per_step"].get<double>() * 1e9 == want, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(j["ms_per_step"].get<double>() > 0);
  BOOST_TEST(j["samples_per_s"].get<double>() == 64 / (j["ms_per_step"].get<double>() / 1e3),
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(j["roofline_gflops"].get<double>() > 0);
  BOOST_TEST(j["roofline_fraction"].get<double>() > 0);
  // The FLOPs run: less each adapter's first Linear's input gradient, 2·b·m·n (48→192; 32→16).
  BOOST_TEST(j["gemm_gflop_run_per_step"].get<double>() * 1e9 == want - 2 * b * (48 * 192 + 32 * 16),
             boost::test_tools::tolerance(1e-9));
  // The cores' FMA peak (0 only in a build without FMA), and the roofline's share of it.
  const double peak = j["fma_peak_gflops"].get<double>();
  BOOST_TEST(peak >= 0);
  if (peak > 0)
    BOOST_TEST(j["roofline_fraction_of_fma_peak"].get<double>() == j["roofline_gflops"].get<double>() / peak,
               boost::test_tools::tolerance(1e-9));
  BOOST_TEST(std::isfinite(j["last_loss"].get<double>()));
  BOOST_TEST(j["parameters"].get<double>() == 48 * 2 + 48 * 192 + 192 + 192 * 48 + 48 + 48 * 2 + 48 * 16 + 16 + 32 * 2 + 32 * 16 + 16);
  BOOST_TEST(run(program("bench train --batch 7 --mix halves")).code == 2);
}

BOOST_AUTO_TEST_SUITE_END()
