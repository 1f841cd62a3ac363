// SPDX-License-Identifier: Apache-2.0
// Bad input through the `fusemix` program (the "Reliability" issue): every case must end with
// exit code 2 and one line on stderr that names the problem (and the file, where there is one).
// The library-level tests of the same cases are in tests/unit (test_npy, test_safetensors,
// test_adapter, test_trainer, test_dpp).
#define BOOST_TEST_MODULE fusemix_cli_errors
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <fusemix/fusemix.hpp>

namespace fs = std::filesystem;
namespace fm = fusemix;

namespace {

const fs::path exe = FUSEMIX_EXE;

fs::path scratch() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("fusemix_cli_errors_" + std::to_string(getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

std::string at(std::string_view name) { return (scratch() / name).string(); }

struct result {
  int code;
  std::string out, err;
};

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  BOOST_REQUIRE(f.good());
}

// Runs the program with `args` (a shell command line), capturing stdout and stderr.
result run(const std::string& args) {
  const fs::path out = scratch() / "stdout.txt", err = scratch() / "stderr.txt";
  const std::string cmd = exe.string() + " " + args + " >" + out.string() + " 2>" + err.string();
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_bytes(out), read_bytes(err)};
}

// The program must refuse `args` with exit code 2 and exactly one line on stderr, starting
// "fusemix: " and holding every fragment of `message`.
void expect_refused(const std::string& args, const std::vector<std::string>& message) {
  const result r = run(args);
  BOOST_TEST_CONTEXT("fusemix " << args << "\n  stderr: " << r.err) {
    BOOST_TEST(r.code == 2);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    BOOST_TEST((!r.err.empty() && r.err.back() == '\n'));
    BOOST_TEST(r.err.rfind("fusemix: ", 0) == 0u);
    for (const auto& m : message) BOOST_TEST(r.err.find(m) != std::string::npos, "lacks \"" << m << "\"");
  }
}

// ---- fixture files, written by hand where numpy would not write them ------------------------

// A .npy file with the header dict `dict` as given (padded as numpy pads) and raw `data`.
std::string npy_bytes(std::string_view dict, std::string_view data) {
  std::string header(dict);
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\0';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  return out + header + std::string(data);
}

std::string npy_dict(std::string_view descr, std::string_view shape, bool fortran = false) {
  return fm::concat("{'descr': '", descr, "', 'fortran_order': ", fortran ? "True" : "False",
                            ", 'shape': ", shape, ", }");
}

// `count` little-endian float32 values 0.5, 1.5, ...
std::string f4_data(std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < count; ++i) {
    unsigned char b[4];
    fm::detail::store_le(b, std::bit_cast<std::uint32_t>(static_cast<float>(i) + 0.5f));
    out.append(reinterpret_cast<const char*>(b), 4);
  }
  return out;
}

fm::matrix<float> random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  fm::philox_engine rng(seed);
  fm::matrix<float> m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(fm::sample_normal(rng));
  return m;
}

// A model file as `fusemix train` writes it: vis_proj (x_in -> x_out), text_proj (6 -> y_out) unless
// y_out is 0, and temp.
void write_model(const fs::path& p, std::size_t x_in, std::size_t x_out, std::size_t y_out) {
  fm::io::tensor_map t;
  fm::io::store_parameters(fm::fusion_adapter<>(fm::adapter_shape{.in_dim = x_in, .out_dim = x_out, .depth = 1}),
                           fm::io::x_prefix, t);
  if (y_out != 0)
    fm::io::store_parameters(fm::fusion_adapter<>(fm::adapter_shape{.in_dim = 6, .out_dim = y_out, .depth = 1}),
                             fm::io::y_prefix, t);
  t["temp"] = {{}, {0.07f}};
  fm::io::write_safetensors(p, t, {{"format", "pt"}});
}

// The good data every case starts from: 40 pairs, X 8 wide, Y 6 wide, and a model for them.
constexpr Eigen::Index pairs = 40;

struct data_fixture {
  data_fixture() {
    if (fs::exists(scratch() / "model.safetensors")) return;
    fm::io::write_npy(scratch() / "x.npy", random_matrix(pairs, 8, 1));
    fm::io::write_npy(scratch() / "y.npy", random_matrix(pairs, 6, 2));
    write_model(scratch() / "model.safetensors", 8, 4, 4);
  }
};

// Removes the scratch directory when the module ends.
struct cleanup {
  ~cleanup() {
    std::error_code ec;
    fs::permissions(scratch() / "locked.npy", fs::perms::owner_all, ec);
    fs::remove_all(scratch(), ec);
  }
};

// The usual arguments of each subcommand with one file replaced, so that a bad file can be fed
// through every program path that reads it.
std::string train_with(const std::string& x, const std::string& y, const std::string& extra = "") {
  const std::string batch = extra.find("--batch") == std::string::npos ? " --batch 8" : "";
  return "train --x " + x + " --y " + y + " --out " + at("run") + " --epochs 1 --depth-x 1 --depth-y 1"
         " --shared-dim 4 --quiet --threads 1" + batch + extra;
}
std::string eval_with(const std::string& model, const std::string& x, const std::string& y) {
  return "eval --model " + model + " --x " + x + " --y " + y;
}
std::string embed_with(const std::string& model, const std::string& in, const std::string& extra = "") {
  return "embed --model " + model + " --in " + in + " --out " + at("emb.npy") + extra;
}
std::string select_with(const std::string& in, const std::string& extra = "") {
  return "select --in " + in + " --out " + at("picks.npy") + extra;
}

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(cleanup);

BOOST_FIXTURE_TEST_SUITE(cli_errors, data_fixture)

BOOST_AUTO_TEST_CASE(the_good_files_are_accepted) {
  // The baseline: every command below is refused only for the one file it replaces.
  for (const auto& args : {train_with(at("x.npy"), at("y.npy")), eval_with(at("model.safetensors"), at("x.npy"), at("y.npy")),
                           embed_with(at("model.safetensors"), at("x.npy")), select_with(at("x.npy"), " --k 5")}) {
    const result r = run(args);
    BOOST_TEST(r.code == 0, args << " -> " << r.code << ": " << r.err);
  }
  // The cases below check that a refused run writes nothing.
  for (const char* out : {"run", "emb.npy", "picks.npy"}) fs::remove_all(scratch() / out);
}

// 1. missing and unreadable files

BOOST_AUTO_TEST_CASE(missing_file) {
  const std::string npy = at("missing.npy"), st = at("missing.safetensors");
  const std::vector<std::string> npy_msg{"fusemix::io::read_npy: ", "missing.npy", "cannot open for reading",
                                         "No such file or directory"};
  const std::vector<std::string> st_msg{"fusemix::io::read_safetensors: ", "missing.safetensors", "No such file or directory"};
  // (train's pairs and select's --x/--y rows are read in place, by mapped_latents)
  std::vector<std::string> mapped_msg = npy_msg;
  mapped_msg.front() = "fusemix::io::mapped_latents: ";
  expect_refused(train_with(npy, at("y.npy")), mapped_msg);
  expect_refused(train_with(at("x.npy"), npy), mapped_msg);
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --x-val " + npy + " --y-val " + at("y.npy")), npy_msg);
  expect_refused(eval_with(st, at("x.npy"), at("y.npy")), st_msg);
  expect_refused(eval_with(at("model.safetensors"), npy, at("y.npy")), npy_msg);
  expect_refused(eval_with(at("model.safetensors"), at("x.npy"), npy), npy_msg);
  expect_refused(eval_with(at("model.safetensors"), at("x.npy"), at("y.npy")) + " --image-of-text " + npy,
                 {"fusemix::io::read_npy_int64: ", "missing.npy", "No such file or directory"});
  expect_refused(embed_with(st, at("x.npy")), st_msg);
  expect_refused(embed_with(at("model.safetensors"), npy), npy_msg);
  expect_refused(select_with(npy, " --k 3"), npy_msg);
  expect_refused(select_with(at("x.npy"), " --k 3 --y " + npy + " --out-y " + at("y_sel.npy")), mapped_msg);
  expect_refused("info " + st, st_msg);
  BOOST_TEST(!fs::exists(scratch() / "emb.npy"));
}

BOOST_AUTO_TEST_CASE(unreadable_file) {
  std::string npy, st;
  std::vector<std::string> npy_msg, st_msg;
  if (::geteuid() == 0) {
    // chmod 000 does not stop root from reading: a directory passed as a file stands in.
    BOOST_TEST_MESSAGE("running as root: a directory stands in for a chmod-000 file");
    fs::create_directories(scratch() / "dir.npy");
    fs::create_directories(scratch() / "dir.safetensors");
    npy = at("dir.npy"), st = at("dir.safetensors");
    npy_msg = {"fusemix::io::read_npy: ", "dir.npy", "is a directory, not a file"};
    st_msg = {"fusemix::io::read_safetensors: ", "dir.safetensors", "is a directory, not a file"};
  } else {
    fs::copy_file(scratch() / "x.npy", scratch() / "locked.npy", fs::copy_options::overwrite_existing);
    fs::copy_file(scratch() / "model.safetensors", scratch() / "locked.safetensors",
                  fs::copy_options::overwrite_existing);
    fs::permissions(scratch() / "locked.npy", fs::perms::none);
    fs::permissions(scratch() / "locked.safetensors", fs::perms::none);
    npy = at("locked.npy"), st = at("locked.safetensors");
    npy_msg = {"fusemix::io::read_npy: ", "locked.npy", "cannot open for reading", "Permission denied"};
    st_msg = {"fusemix::io::read_safetensors: ", "locked.safetensors", "Permission denied"};
  }
  std::vector<std::string> mapped_msg = npy_msg;
  mapped_msg.front() = "fusemix::io::mapped_latents: ";
  expect_refused(train_with(npy, at("y.npy")), mapped_msg);
  expect_refused(eval_with(st, at("x.npy"), at("y.npy")), st_msg);
  expect_refused(eval_with(at("model.safetensors"), at("x.npy"), npy), npy_msg);
  expect_refused(embed_with(st, at("x.npy")), st_msg);
  expect_refused(embed_with(at("model.safetensors"), npy), npy_msg);
  expect_refused(select_with(npy, " --k 3"), npy_msg);
  expect_refused("info " + st, st_msg);
  std::error_code ec;
  fs::permissions(scratch() / "locked.npy", fs::perms::owner_all, ec);
  fs::permissions(scratch() / "locked.safetensors", fs::perms::owner_all, ec);
}

// 2. malformed .npy files, through every command that reads latents

BOOST_AUTO_TEST_CASE(malformed_npy_files) {
  const std::string whole = read_bytes(scratch() / "x.npy");  // 40 x 8 float32, 1280 data bytes
  struct bad_file {
    std::string name, bytes, problem;
  };
  const std::vector<bad_file> files{
      {"truncated_data.npy", whole.substr(0, whole.size() - 6), "truncated: expected 1280 bytes of data, found 1274"},
      {"truncated_header.npy", whole.substr(0, 40), "truncated: expected 118 bytes of header, found 30"},
      {"lying_header.npy", npy_bytes(npy_dict("<f4", "(50, 8)"), f4_data(40 * 8)),
       "truncated: expected 1600 bytes of data, found 1280"},
      {"complex.npy", npy_bytes(npy_dict("<c8", "(4, 8)"), std::string(256, '\0')), "dtype '<c8' not supported"},
      {"bool.npy", npy_bytes(npy_dict("|b1", "(4, 8)"), std::string(32, '\0')), "dtype '|b1' not supported"},
      {"unicode.npy", npy_bytes(npy_dict("<U4", "(4, 8)"), std::string(512, '\0')), "dtype '<U4' not supported"},
      {"big_endian.npy", npy_bytes(npy_dict(">f4", "(4, 8)"), f4_data(32)), "dtype '>f4' is big-endian"},
      {"fortran.npy", npy_bytes(npy_dict("<f4", "(4, 8)", true), f4_data(32)), "fortran_order is True"},
      {"rank1.npy", npy_bytes(npy_dict("<f4", "(8,)"), f4_data(8)), "expected a rank-2 array, got shape (8,)"},
      {"rank3.npy", npy_bytes(npy_dict("<f4", "(2, 2, 8)"), f4_data(32)),
       "expected a rank-2 array, got shape (2, 2, 8)"},
      {"zero_rows.npy", npy_bytes(npy_dict("<f4", "(0, 8)"), ""), "expected a non-empty matrix, got shape (0, 8)"},
      {"zero_cols.npy", npy_bytes(npy_dict("<f4", "(40, 0)"), ""), "expected a non-empty matrix, got shape (40, 0)"},
      {"overflow.npy", npy_bytes(npy_dict("<f4", "(4294967296, 4294967296)"), f4_data(4)),
       "shape (4294967296, 4294967296) is too large (its byte size overflows)"},
  };
  for (const auto& f : files) {
    write_bytes(scratch() / f.name, f.bytes);
    const std::string p = at(f.name);
    // train, eval, embed and select read their latents in place (memory-mapped), with the
    // checks read_npy makes
    const std::vector<std::string> mapped{"fusemix::io::mapped_latents: ", f.name, f.problem};
    expect_refused(train_with(p, at("y.npy")), mapped);
    expect_refused(train_with(at("x.npy"), p), mapped);
    expect_refused(eval_with(at("model.safetensors"), at("x.npy"), p), mapped);
    expect_refused(embed_with(at("model.safetensors"), p), mapped);
    expect_refused(select_with(p, " --k 3"), mapped);
  }
  BOOST_TEST(!fs::exists(scratch() / "picks.npy"));
  // The index file of eval: a float array, and a rank-2 one.
  expect_refused(eval_with(at("model.safetensors"), at("x.npy"), at("y.npy")) + " --image-of-text " + at("x.npy"),
                 {"fusemix::io::read_npy_int64: ", "x.npy", "dtype '<f4' not supported; expected an integer type"});
  write_bytes(scratch() / "index2d.npy", npy_bytes(npy_dict("<i8", "(5, 8)"), std::string(320, '\0')));
  expect_refused(eval_with(at("model.safetensors"), at("x.npy"), at("y.npy")) + " --image-of-text " + at("index2d.npy"),
                 {"fusemix::io::read_npy_int64: ", "index2d.npy", "expected a rank-1 array, got shape (5, 8)"});
}

// 3. NaN and Inf in latents

BOOST_AUTO_TEST_CASE(non_finite_latents) {
  fm::matrix<float> x = fm::io::read_npy<float>(scratch() / "x.npy"), y = fm::io::read_npy<float>(scratch() / "y.npy");
  x(3, 4) = std::numeric_limits<float>::quiet_NaN();
  y(7, 1) = std::numeric_limits<float>::infinity();
  fm::io::write_npy(scratch() / "x_nan.npy", x);
  fm::io::write_npy(scratch() / "y_inf.npy", y);
  const std::string x_nan = at("x_nan.npy"), y_inf = at("y_inf.npy");
  // train: the trainer's validation, before anything is written
  expect_refused(train_with(x_nan, at("y.npy")),
                 {"fusemix::trainer::validate: ", "X contains NaN or Inf at row 3, column 4"});
  expect_refused(train_with(at("x.npy"), y_inf),
                 {"fusemix::trainer::validate: ", "Y contains NaN or Inf at row 7, column 1"});
  BOOST_TEST(!fs::exists(scratch() / "run" / "checkpoint.safetensors"));
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --x-val " + x_nan + " --y-val " + at("y.npy")),
                 {"fusemix train: --x-val ", "x_nan.npy", "latents must be finite", "got nan at row 3, column 4"});
  // select: greedy and uniform alike (uniform does not look at the values, but scores the subset)
  const std::vector<std::string> select_msg{"fusemix select: --in ", "x_nan.npy", "latents must be finite",
                                            "expected finite values, got nan at row 3, column 4"};
  expect_refused(select_with(x_nan, " --k 3"), select_msg);
  expect_refused(select_with(x_nan, " --k 3 --uniform"), select_msg);
  expect_refused(select_with(x_nan, " --k 3 --normalize --kernel cosine"), select_msg);
  // embed refuses rather than writing NaN embeddings
  expect_refused(embed_with(at("model.safetensors"), x_nan),
                 {"fusemix embed: --in ", "x_nan.npy", "latents must be finite", "got nan at row 3, column 4"});
  BOOST_TEST(!fs::exists(scratch() / "emb.npy"));
  // eval refuses rather than reporting recalls of NaN similarities
  expect_refused(eval_with(at("model.safetensors"), x_nan, at("y.npy")),
                 {"fusemix eval: --x ", "x_nan.npy", "latents must be finite", "got nan at row 3, column 4"});
  expect_refused(eval_with(at("model.safetensors"), at("x.npy"), y_inf),
                 {"fusemix eval: --y ", "y_inf.npy", "latents must be finite", "got inf at row 7, column 1"});
}

// 4. X and Y with different row counts

BOOST_AUTO_TEST_CASE(row_counts_differ) {
  fm::io::write_npy(scratch() / "y39.npy", fm::matrix<float>(fm::io::read_npy<float>(scratch() / "y.npy").topRows(39)));
  const std::string y39 = at("y39.npy");
  expect_refused(train_with(at("x.npy"), y39),
                 {"fusemix::trainer::validate: ", "X and Y must have the same number of rows", "expected 40, got 39"});
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --x-val " + at("x.npy") + " --y-val " + y39),
                 {"fusemix train: --x-val and --y-val must have the same number of rows", "expected 40, got 39"});
  expect_refused(eval_with(at("model.safetensors"), at("x.npy"), y39),
                 {"fusemix::evaluate_retrieval: ", "without image_of_text both sides need the same count",
                  "expected 40, got 39"});
  expect_refused(select_with(at("x.npy"), " --k 3 --y " + y39 + " --out-y " + at("y_sel.npy")),
                 {"fusemix select: --y must have one row per item selected from", "expected 40 rows, got 39 rows"});
  BOOST_TEST(!fs::exists(scratch() / "picks.npy"));  // refused before the picks were written
}

// 5. a batch larger than the data; an odd batch in halves mode

BOOST_AUTO_TEST_CASE(bad_batches) {
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --batch 41"),
                 {"fusemix::trainer::validate: ", "the batch must not exceed the number of pairs", "expected <= 40, got 41"});
  // the preset's batch (20,480 rows) on 40 pairs
  expect_refused("train --x " + at("x.npy") + " --y " + at("y.npy") + " --out " + at("run") + " --preset image-text --quiet",
                 {"the batch must not exceed the number of pairs", "got 20480"});
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --batch 7 --mix halves"),
                 {"fusemix::mixed_rows: ", "halves mode needs an even batch", "expected an even size, got 7"});
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --batch 0"), {"fusemix: usage error: ", "--batch"});
  BOOST_TEST(!fs::exists(scratch() / "run" / "adapters.safetensors"));
}

// 6. latents whose width differs from the model's adapters

BOOST_AUTO_TEST_CASE(widths_that_do_not_match_the_model) {
  fm::io::write_npy(scratch() / "x5.npy", random_matrix(pairs, 5, 3));
  const std::string model = at("model.safetensors"), x5 = at("x5.npy");
  expect_refused(embed_with(model, x5), {"fusemix embed: --in ", "x5.npy",
                                         "latent width must equal the in_dim of vis_proj. in ", "model.safetensors",
                                         "expected 8, got 5"});
  expect_refused(embed_with(model, at("x.npy"), " --side y"),
                 {"fusemix embed: --in ", "x.npy", "in_dim of text_proj.", "expected 6, got 8"});
  expect_refused(eval_with(model, x5, at("y.npy")),
                 {"fusemix eval: --x ", "x5.npy", "in_dim of vis_proj. in ", "model.safetensors", "expected 8, got 5"});
  expect_refused(eval_with(model, at("x.npy"), at("x.npy")),
                 {"fusemix eval: --y ", "x.npy", "in_dim of text_proj.", "expected 6, got 8"});
  // train builds its adapters from the data, so there it is the validation sets that can differ
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --x-val " + x5 + " --y-val " + at("y.npy")),
                 {"fusemix train: --x-val must have --x's width", "expected 8, got 5"});
  BOOST_TEST(!fs::exists(scratch() / "emb.npy"));
}

// 7. malformed model files, through embed and eval (and info, for the file format itself)

BOOST_AUTO_TEST_CASE(malformed_model_files) {
  const std::string whole = read_bytes(scratch() / "model.safetensors");
  const auto header_len = fm::detail::load_le<std::uint64_t>(reinterpret_cast<const unsigned char*>(whole.data()));
  const std::string data = whole.substr(8 + header_len);
  const nlohmann::json header = nlohmann::json::parse(whole.substr(8, header_len));
  const auto data_size = static_cast<std::uint64_t>(data.size());
  // A file with the header `h` and the data `d`.
  auto file = [](const nlohmann::json& h, const std::string& d) {
    const std::string text = h.dump();
    unsigned char len[8];
    fm::detail::store_le(len, static_cast<std::uint64_t>(text.size()));
    return std::string(reinterpret_cast<const char*>(len), 8) + text + d;
  };
  auto edited = [&](auto&& edit, std::string d = {}) {
    nlohmann::json h = header;
    if (d.empty()) d = data;
    edit(h, d);
    return file(h, d);
  };
  const std::string bias = "vis_proj.0.fn.3.bias";  // 8 floats
  const auto bias_begin = header[bias]["data_offsets"][0].get<std::uint64_t>();
  struct bad_model {
    std::string name, bytes;
    std::vector<std::string> problem;
    bool file_format;  // a problem of the file itself, which info also reports
  };
  std::string beyond = whole;
  fm::detail::store_le(reinterpret_cast<unsigned char*>(beyond.data()), static_cast<std::uint64_t>(whole.size()));
  const std::vector<bad_model> models{
      {"header_beyond.safetensors", beyond,
       {fm::concat("header length ", whole.size(), " runs past the end of the file (", whole.size(), " bytes)")},
       true},
      {"bad_json.safetensors", file(nlohmann::json::object(), data).replace(8, 2, "{\""),
       {"malformed JSON header", "parse error"}, true},
      {"offsets_out_of_range.safetensors",
       edited([&](nlohmann::json& h, std::string&) {
         h[bias]["data_offsets"] = {data_size - 16, data_size + 16};
       }),
       {"tensor \"" + bias + "\"", fm::concat("data_offsets [", data_size - 16, ", ", data_size + 16,
                                                     "] run past the end of the data (", data_size, " bytes)")},
       true},
      {"overlapping.safetensors",
       edited([&](nlohmann::json& h, std::string&) { h["vis_proj.0.ln.bias"]["data_offsets"] = {bias_begin, bias_begin + 32}; }),
       {"tensors \"", "\" overlap (data_offsets [", fm::concat(bias_begin, ", ", bias_begin + 32, "]")},
       true},
      {"wrong_dtype_i32.safetensors", edited([&](nlohmann::json& h, std::string&) { h[bias]["dtype"] = "I32"; }),
       {"tensor \"" + bias + "\": dtype I32 not supported; expected F32, F64, F16 or BF16"}, true},
      {"wrong_dtype_u8.safetensors",
       edited([&](nlohmann::json& h, std::string&) {
         h[bias]["dtype"] = "U8";
         h[bias]["data_offsets"] = {bias_begin, bias_begin + 8};
       }),
       {"tensor \"" + bias + "\": dtype U8 not supported"}, true},
      {"missing_tensor.safetensors", edited([&](nlohmann::json& h, std::string&) { h.erase(bias); }),
       {"fusemix::io::load_parameters: missing tensor \"" + bias + "\" in ", "missing_tensor.safetensors"}, false},
      {"extra_tensor.safetensors",
       edited([&](nlohmann::json& h, std::string& d) {
         h["vis_proj.9.weight"] = {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {d.size(), d.size() + 16}}};
         d += std::string(16, '\0');
       }),
       {"fusemix::io::load_parameters: unexpected tensor \"vis_proj.9.weight\" in ", "extra_tensor.safetensors"},
       false},
      {"wrong_shape.safetensors", edited([&](nlohmann::json& h, std::string&) { h[bias]["shape"] = {2, 4}; }),
       {"fusemix::io::load_parameters: tensor \"" + bias + "\" in ", "wrong_shape.safetensors",
        "has the wrong shape (expected [8], got [2, 4])"},
       false},
  };
  for (const auto& m : models) {
    write_bytes(scratch() / m.name, m.bytes);
    std::vector<std::string> msg = m.problem;
    msg.push_back(m.name);
    if (m.file_format) msg.push_back("fusemix::io::read_safetensors: ");
    expect_refused(embed_with(at(m.name), at("x.npy")), msg);
    expect_refused(eval_with(at(m.name), at("x.npy"), at("y.npy")), msg);
    if (m.file_format) expect_refused("info " + at(m.name), msg);
  }
  BOOST_TEST(!fs::exists(scratch() / "emb.npy"));
}

// 8. a model whose two sides map into different shared widths

BOOST_AUTO_TEST_CASE(shared_width_differs) {
  write_model(scratch() / "shared_4_5.safetensors", 8, 4, 5);
  expect_refused(eval_with(at("shared_4_5.safetensors"), at("x.npy"), at("y.npy")),
                 {"fusemix::io::load_model: ", "shared_4_5.safetensors", "vis_proj. and text_proj. must map into the same shared width",
                  "expected 4, got 5"});
  // Without text_proj (an identity Y side), vis_proj must map into Y's own width.
  write_model(scratch() / "x_only.safetensors", 8, 4, 0);
  expect_refused(eval_with(at("x_only.safetensors"), at("x.npy"), at("y.npy")),
                 {"fusemix eval: --y ", "y.npy", "x_only.safetensors", "has no text_proj. adapter",
                  "must equal vis_proj.'s output width", "expected 4, got 6"});
}

// 9. k out of range for select

BOOST_AUTO_TEST_CASE(k_out_of_range) {
  for (const std::string uniform : {"", " --uniform"}) {
    const std::string where = uniform.empty() ? "fusemix::greedy_kdpp: " : "fusemix::uniform_subset: ";
    expect_refused(select_with(at("x.npy"), " --k 0" + uniform), {"fusemix: usage error: --k: out of range (expected a number > 0, got 0)"});
    expect_refused(select_with(at("x.npy"), " --k 41" + uniform),
                   {where + "k must not exceed the item count (expected <= 40, got 41)"});
  }
  expect_refused(select_with(at("x.npy"), " --k -1"), {"fusemix: usage error: --k: out of range (expected a number > 0, got -1)"});
  // CLI11's own checks let NaN through and print their bound as a 309-digit number; ours say what a flag takes.
  expect_refused(select_with(at("x.npy"), " --k 5 --kernel rbf --gamma nan"), {"--gamma: out of range (expected a number > 0, got nan)"});
  expect_refused(select_with(at("x.npy"), " --k 5 --seed -1 --uniform"), {"--seed: out of range (expected a number >= 0, got -1)"});
  BOOST_TEST(!fs::exists(scratch() / "picks.npy"));
  const result ok = run(select_with(at("x.npy"), " --k 40 --kernel rbf"));  // k = N is allowed
  BOOST_TEST(ok.code == 0, ok.err);
  std::error_code ec;
  fs::remove(scratch() / "picks.npy", ec);
}

// A model with a NaN weight: NaN scores compare false both ways, so eval read them as 100% recall
// and embed wrote NaN rows. Refused at load, naming the tensor.
BOOST_AUTO_TEST_CASE(a_model_with_a_nan_weight) {
  auto f = fm::io::read_safetensors(scratch() / "model.safetensors");
  f.tensors.at("vis_proj.2.weight").data[3] = std::numeric_limits<float>::quiet_NaN();
  fm::io::write_safetensors(scratch() / "nan_model.safetensors", f.tensors, {{"format", "pt"}});
  const std::vector<std::string> msg{"fusemix::io::load_parameters: tensor \"vis_proj.2.weight\"", "nan_model.safetensors",
                                     "must be finite (expected finite values, got nan at index 3)"};
  expect_refused(eval_with(at("nan_model.safetensors"), at("x.npy"), at("y.npy")), msg);
  expect_refused(embed_with(at("nan_model.safetensors"), at("x.npy")), msg);
  BOOST_TEST(!fs::exists(scratch() / "emb.npy"));
}

// Commands writing several files check them all before the work: a refused run writes none
// (select used to write its picks and then fail on --out-y; search its indices, then fail on
// scores.npy).
BOOST_AUTO_TEST_CASE(outputs_are_checked_before_the_work) {
  const std::string picks = at("picks.npy");
  expect_refused("select --in " + at("x.npy") + " --k 5 --out " + picks + " --x " + at("x.npy") + " --out-x " + picks,
                 {"fusemix select: --out and --out-x name the same file"});
  fs::create_directories(scratch() / "a_directory");
  expect_refused("select --in " + at("x.npy") + " --k 5 --out " + picks + " --x " + at("x.npy") + " --out-x " +
                     at("sel_x.npy") + " --y " + at("y.npy") + " --out-y " + at("a_directory"),
                 {"fusemix select: --out-y is an output file (expected a file name, got the directory"});
  expect_refused("select --in " + at("x.npy") + " --k 5 --out " + at("no_such_dir/picks.npy"),
                 {"fusemix select: ", "no_such_dir/picks.npy"});
  BOOST_TEST(!fs::exists(scratch() / "picks.npy"));
  BOOST_TEST(!fs::exists(scratch() / "sel_x.npy"));

  const std::string search = "search --model " + at("model.safetensors") + " --queries " + at("x.npy") +
                             " --gallery " + at("x.npy") + " --k 3 --out ";
  fs::create_directories(scratch() / "found" / "scores.npy");
  expect_refused(search + at("found"), {"fusemix search: --out is an output file", "scores.npy"});
  BOOST_TEST(!fs::exists(scratch() / "found" / "indices.npy"));
  fs::remove_all(scratch() / "found");
  expect_refused(search + at("x.npy"), {"fusemix search: --out is the output directory (expected a directory, got the file"});
  expect_refused(search + at("x.npy/sub"), {"fusemix search: ", "cannot create the output directory"});
  BOOST_TEST(!fs::exists(scratch() / "found"));

  // A temporary left by a select killed while writing (its process is gone) is removed.
  const fs::path stale = scratch() / "picks.npy.tmp.999999999.0";
  write_bytes(stale, "half a file");
  const result ok = run("select --in " + at("x.npy") + " --k 5 --out " + picks);
  BOOST_TEST(ok.code == 0, ok.err);
  BOOST_TEST(!fs::exists(stale));
  std::error_code ec;
  fs::remove(scratch() / "picks.npy", ec);
}

// --device cuda where there is no device (CI), or in a build without CUDA: one line, exit 2,
// nothing written. (On a machine with a GPU the run succeeds; benchmarks/gpu/run.sh checks it.)
BOOST_AUTO_TEST_CASE(device_cuda_without_a_device) {
  const std::string select = select_with(at("x.npy"), " --k 3 --device cuda");
  // Without an NVIDIA device node there is certainly no device, so a run that succeeds there
  // has ignored --device; with one, success is what a GPU machine should give.
  const bool gpu_possible = fs::exists("/dev/nvidia0") || fs::exists("/dev/nvidiactl");
  if (gpu_possible && run(select).code == 0) {
    BOOST_TEST_MESSAGE("a CUDA device is present: --device cuda ran, nothing to refuse");
    return;
  }
  expect_refused(select, {"CUDA"});
  BOOST_TEST(!fs::exists(scratch() / "picks.npy"));
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --device cuda"), {"CUDA"});
  BOOST_TEST(!fs::exists(scratch() / "run" / "adapters.safetensors"));
  expect_refused("search --model " + at("model.safetensors") + " --queries " + at("x.npy") + " --gallery " +
                     at("y.npy") + " --k 3 --device cuda --out " + at("found"),
                 {"CUDA"});
  BOOST_TEST(!fs::exists(scratch() / "found"));
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --device gpu"), {"fusemix: usage error: ", "--device"});
}

// Shards: every latent option takes a comma-separated list of .npy files, concatenated by rows.

BOOST_AUTO_TEST_CASE(shards_that_do_not_fit_together) {
  const fm::matrix<float> x = fm::io::read_npy<float>(scratch() / "x.npy");
  fm::io::write_npy(scratch() / "x_a.npy", fm::matrix<float>(x.topRows(25)));
  fm::io::write_npy(scratch() / "x_b.npy", fm::matrix<float>(x.bottomRows(15)));
  fm::io::write_npy(scratch() / "x_wide.npy", random_matrix(15, 9, 3));
  fm::io::write_npy(scratch() / "x_f8.npy", Eigen::MatrixXd(x.bottomRows(15).cast<double>()));
  const std::string b = read_bytes(scratch() / "x_b.npy");
  write_bytes(scratch() / "x_short.npy", b.substr(0, b.size() - 4));
  // The good split reads as the whole file does, through every command.
  const std::string good = at("x_a.npy") + "," + at("x_b.npy");
  for (const auto& args : {train_with(good, at("y.npy")), eval_with(at("model.safetensors"), good, at("y.npy")),
                           embed_with(at("model.safetensors"), good), select_with(good, " --k 5")}) {
    const result r = run(args);
    BOOST_TEST(r.code == 0, args << " -> " << r.code << ": " << r.err);
  }
  for (const char* out : {"run", "emb.npy", "picks.npy"}) fs::remove_all(scratch() / out);
  struct bad_list {
    std::string list;
    std::vector<std::string> train_message, read_message;  // through train (mapped) and through the readers
  };
  const std::vector<bad_list> cases{
      {at("x_a.npy") + "," + at("x_wide.npy"),
       {"fusemix::io::mapped_latents: ", "x_wide.npy", "every shard must have the width of the first", "expected 8, got 9"},
       {"x_wide.npy", "expected 8, got 9"}},
      {at("x_a.npy") + "," + at("x_f8.npy"),
       {"fusemix::io::mapped_latents: ", "x_f8.npy", "dtype '<f8' differs from '<f4'"},
       {"x_f8.npy", "dtype '<f8' differs from '<f4'"}},
      {at("x_a.npy") + "," + at("x_short.npy"),
       {"fusemix::io::mapped_latents: ", "x_short.npy", "truncated: expected 480 bytes of data, found 476"},
       {"x_short.npy", "truncated"}},
      {at("x_a.npy") + ",," + at("x_b.npy"), {"fusemix train: --x: empty file name in the list"},
       {"empty file name in the list"}},
  };
  for (const auto& c : cases) {
    expect_refused(train_with(c.list, at("y.npy")), c.train_message);
    expect_refused(eval_with(at("model.safetensors"), c.list, at("y.npy")), c.read_message);
    expect_refused(embed_with(at("model.safetensors"), c.list), c.read_message);
    expect_refused(select_with(c.list, " --k 3"), c.read_message);
  }
  // X in shards of 25 + 15 + 15 rows against Y's 40: the row counts are the totals.
  expect_refused(train_with(good + "," + at("x_b.npy"), at("y.npy")),
                 {"fusemix::trainer::validate: ", "X and Y must have the same number of rows", "expected 55, got 40"});
  BOOST_TEST(!fs::exists(scratch() / "run" / "checkpoint.safetensors"));
  BOOST_TEST(!fs::exists(scratch() / "emb.npy"));
  BOOST_TEST(!fs::exists(scratch() / "picks.npy"));
}

// Usage errors: one line and exit 2 as well.

BOOST_AUTO_TEST_CASE(usage_errors_are_one_line) {
  expect_refused("train --x", {"fusemix: usage error: ", "--x"});
  expect_refused("", {"fusemix: usage error: ", "subcommand"});
  expect_refused("trian --x " + at("x.npy"), {"fusemix: usage error: unknown command 'trian' (expected one of train, eval,"});
  expect_refused("select --in " + at("x.npy") + " --out " + at("p.npy"), {"fusemix: usage error: ", "--k", "required"});
  expect_refused(train_with(at("x.npy"), at("y.npy"), " --mix sideways"), {"fusemix: usage error: ", "--mix", "sideways"});
  expect_refused(embed_with(at("model.safetensors"), at("x.npy"), " --side z"), {"fusemix: usage error: ", "--side"});
  expect_refused("eval --model " + at("model.safetensors") + " --no-such-flag", {"fusemix: usage error: "});
  const result help = run("--help");
  BOOST_TEST(help.code == 0);
  BOOST_TEST(help.out.find("train") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
