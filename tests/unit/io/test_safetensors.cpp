// SPDX-License-Identifier: Apache-2.0
/// @file
/// Tests of <fusemix/io/safetensors.hpp>.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include <fusemix/detail/file.hpp>
#include <fusemix/io/safetensors.hpp>

#include "temp_files.hpp"
#include "messages.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = fusemix::io;
using fusemix::io_error;

const fs::path fixtures = fs::path(FUSEMIX_FIXTURE_DIR) / "safetensors";

using fusemix::test::read_bytes;
using fusemix::test::temp_dir;
using fusemix::test::write_bytes;

/// A safetensors file with the header text as given (no padding) and `data_bytes` zero bytes.
std::string st_bytes(std::string_view header, std::size_t data_bytes) {
  unsigned char len[8];
  fusemix::detail::store_le(len, static_cast<std::uint64_t>(header.size()));
  return std::string(reinterpret_cast<const char*>(len), 8) + std::string(header) +
         std::string(data_bytes, '\0');
}

using fusemix::test::message_has;

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

io::tensor_map sample_tensors() {
  using lim = std::numeric_limits<float>;
  io::tensor_map t;
  t["layer.weight"] = {.shape = {2, 3},
                       .data = {1.0f, -0.0f, lim::infinity(), std::bit_cast<float>(0x7fc00042u),
                                lim::denorm_min(), 1.0f / 3.0f}};
  t["layer.bias"] = {.shape = {3}, .data = {0.5f, -0.25f, 8.0f}};
  t["scale"] = {.shape = {}, .data = {0.07f}};
  t["empty"] = {.shape = {0, 4}, .data = {}};
  t["A.upper"] = {.shape = {1, 1}, .data = {2.0f}};
  return t;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(safetensors)

// ----- writing and round trips --------------------------------------------------------------

BOOST_AUTO_TEST_CASE(float_round_trip_is_bitwise) {
  temp_dir dir;
  const io::tensor_map t = sample_tensors();
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"note", "fusemix \xc3\xa9"}};
  io::write_safetensors(dir / "a.safetensors", t, meta);
  const io::safetensors_file f = io::read_safetensors(dir / "a.safetensors");
  BOOST_TEST(f.metadata == meta);
  BOOST_TEST(f.path == dir / "a.safetensors");
  BOOST_TEST_REQUIRE(f.tensors.size() == t.size());
  for (const auto& [name, want] : t) {
    BOOST_TEST_CONTEXT("tensor " << name) {
      const io::tensor& got = f.tensors.at(name);
      BOOST_TEST(got.shape == want.shape);
      BOOST_TEST(bitwise_equal(got.data, want.data));
    }
  }
  // No temporary left behind.
  BOOST_TEST(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

BOOST_AUTO_TEST_CASE(double_round_trip_is_bitwise) {
  temp_dir dir;
  io::basic_tensor_map<double> t;
  t["g"] = {.shape = {2, 2},
            .data = {0.1, -1.0 / 3.0, 1e300, std::numeric_limits<double>::denorm_min()}};
  io::write_safetensors(dir / "d.safetensors", t);
  const auto f = io::read_safetensors<double>(dir / "d.safetensors");
  BOOST_TEST(bitwise_equal(f.tensors.at("g").data, t.at("g").data));
  BOOST_TEST(f.metadata.empty());
  // Read as float, F64 rounds to nearest like a cast.
  const auto g = io::read_safetensors<float>(dir / "d.safetensors");
  const std::vector<float> want{0.1f, static_cast<float>(-1.0 / 3.0),
                                std::numeric_limits<float>::infinity(), 0.0f};
  BOOST_TEST(bitwise_equal(g.tensors.at("g").data, want));
}

BOOST_AUTO_TEST_CASE(layout_is_name_ordered_and_padded) {
  temp_dir dir;
  const io::tensor_map t = sample_tensors();
  io::write_safetensors(dir / "a.safetensors", t, {{"format", "pt"}});
  const std::string bytes = read_bytes(dir / "a.safetensors");
  BOOST_TEST_REQUIRE(bytes.size() >= 8u);
  const auto n =
      fusemix::detail::load_le<std::uint64_t>(reinterpret_cast<const unsigned char*>(bytes.data()));
  BOOST_TEST(n % 8 == 0u);
  const std::string header = bytes.substr(8, n);
  BOOST_TEST(header.rfind("{\"__metadata__\":{\"format\":\"pt\"}", 0) == 0u);
  const std::size_t close = header.find_last_of('}');
  BOOST_TEST(header.find_first_not_of(' ', close + 1) == std::string::npos);
  const auto j = nlohmann::ordered_json::parse(header);
  std::vector<std::string> names;
  std::uint64_t offset = 0;
  for (const auto& [name, e] : j.items()) {
    if (name == "__metadata__") continue;
    names.push_back(name);
    BOOST_TEST(e["dtype"] == "F32");
    BOOST_TEST(e["data_offsets"][0].get<std::uint64_t>() == offset);
    offset = e["data_offsets"][1].get<std::uint64_t>();
  }
  BOOST_TEST(names ==
             (std::vector<std::string>{"A.upper", "empty", "layer.bias", "layer.weight", "scale"}));
  BOOST_TEST(bytes.size() == 8 + n + offset);
  BOOST_TEST(offset == (1 + 0 + 3 + 6 + 1) * 4u);
  // Empty metadata writes no "__metadata__" entry.
  io::write_safetensors(dir / "b.safetensors", t);
  BOOST_TEST(read_bytes(dir / "b.safetensors").find("__metadata__") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(writer_refuses_bad_tensors) {
  temp_dir dir;
  io::tensor_map t;
  t["w"] = {.shape = {2, 3}, .data = {1, 2, 3, 4, 5}};
  BOOST_CHECK_EXCEPTION(io::write_safetensors(dir / "a.safetensors", t), fusemix::shape_error,
                        message_has({"fusemix::io::write_safetensors", "tensor \"w\"", "[2, 3]",
                                     "expected 6, got 5"}));
  t.clear();
  t["__metadata__"] = {.shape = {1}, .data = {1}};
  BOOST_CHECK_EXCEPTION(io::write_safetensors(dir / "a.safetensors", t), fusemix::argument_error,
                        message_has({"write_safetensors", "__metadata__", "reserved"}));
  t.clear();
  t["bad\xff"] = {.shape = {1}, .data = {1}};
  BOOST_CHECK_EXCEPTION(io::write_safetensors(dir / "a.safetensors", t), fusemix::argument_error,
                        message_has({"write_safetensors", "UTF-8"}));
  t.clear();
  t["w"] = {.shape = {1}, .data = {1}};
  const fs::path missing = dir / "no_dir" / "a.safetensors";
  BOOST_CHECK_EXCEPTION(io::write_safetensors(missing, t), io_error,
                        message_has({"write_safetensors", missing.string(), "No such file"}));
  BOOST_TEST(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 0);
}

// Views (pieces laid end to end, written in place) give the bytes of the same tensors owned; a
// view whose pieces do not fill its shape is refused as an owned tensor is.
BOOST_AUTO_TEST_CASE(views_write_the_bytes_of_owned_tensors) {
  temp_dir dir;
  const std::vector<float> a{1, 2, 3, 4, 5, 6}, b{7, 8}, c{-1.5f};
  io::tensor_map owned;
  owned["m"] = {.shape = {2, 4}, .data = {1, 2, 3, 4, 5, 6, 7, 8}};
  owned["s"] = {.shape = {}, .data = {-1.5f}};
  io::basic_tensor_view_map<float> views;
  views["m"] = {{2, 4}, {std::span<const float>(a), std::span<const float>(b)}};
  views["s"] = {{}, {std::span<const float>(c)}};
  io::write_safetensors(dir / "owned.safetensors", owned, {{"k", "v"}});
  io::write_safetensors(dir / "views.safetensors", views, {{"k", "v"}});
  BOOST_TEST(read_bytes(dir / "views.safetensors") == read_bytes(dir / "owned.safetensors"));
  views["m"].parts.pop_back();
  BOOST_CHECK_EXCEPTION(io::write_safetensors(dir / "short.safetensors", views), fusemix::shape_error,
                        message_has({"fusemix::io::write_safetensors", "tensor \"m\"", "expected 8, got 6"}));
  BOOST_TEST(!fs::exists(dir / "short.safetensors"));
}

// ----- reading a file written elsewhere -----------------------------------------------------

BOOST_AUTO_TEST_CASE(reads_f64_f16_bf16_fixture) {
  const io::safetensors_file f = io::read_safetensors(fixtures / "mixed_dtypes.safetensors");
  BOOST_TEST(f.metadata == (std::map<std::string, std::string>{{"format", "pt"},
                                                               {"source", "make_io_fixtures.py"}}));
  BOOST_TEST_REQUIRE(f.tensors.size() == 5u);
  const float inf = std::numeric_limits<float>::infinity();
  const io::tensor& a = io::require(f, "a_f64", {2, 3});
  BOOST_TEST(
      bitwise_equal(a.data, {0.1f, -2.5f, static_cast<float>(1.0 / 3.0), static_cast<float>(1e-3),
                             static_cast<float>(123456.789), -0.0f}));
  BOOST_TEST(
      bitwise_equal(io::require(f, "b_f16", {5}).data, {1.0f, -0.5f, 65504.0f, 0x1p-24f, inf}));
  BOOST_TEST(
      bitwise_equal(io::require(f, "c_bf16", {2, 2}).data, {1.0f, -3.5f, 0.15625f, 0x1p-130f}));
  BOOST_TEST(io::require(f, "d_f32_scalar", {}).data == (std::vector<float>{42.5f}));
  BOOST_TEST(io::require(f, "e_f32_empty", {0, 3}).data.empty());
  const auto d = io::read_safetensors<double>(fixtures / "mixed_dtypes.safetensors");
  BOOST_TEST(
      bitwise_equal(d.tensors.at("a_f64").data, {0.1, -2.5, 1.0 / 3.0, 1e-3, 123456.789, -0.0}));
  BOOST_TEST(d.tensors.at("c_bf16").data[3] == 0x1p-130);
}

BOOST_AUTO_TEST_CASE(reads_from_a_pipe) {
  fusemix::test::with_pipe(read_bytes(fixtures / "mixed_dtypes.safetensors"), [](const fs::path& p) {
    const auto f = io::read_safetensors(p);
    BOOST_TEST(f.tensors.size() == 5u);
    BOOST_TEST(bitwise_equal(f.tensors.at("b_f16").data, {1.0f, -0.5f, 65504.0f, 0x1p-24f,
                                                          std::numeric_limits<float>::infinity()}));
  });
}

BOOST_AUTO_TEST_CASE(require_checks_presence_and_shape) {
  temp_dir dir;
  io::write_safetensors(dir / "a.safetensors", sample_tensors());
  const io::safetensors_file f = io::read_safetensors(dir / "a.safetensors");
  BOOST_TEST(io::require(f, "layer.weight", {2, 3}).data.size() == 6u);
  const std::vector<std::size_t> shape{3};
  BOOST_TEST(io::require(f.tensors, "layer.bias", shape).data[2] == 8.0f);
  BOOST_CHECK_EXCEPTION(
      (void)io::require(f, "layer.gamma", {3}), io_error,
      message_has({"fusemix::io::require", "missing tensor \"layer.gamma\"", "a.safetensors"}));
  BOOST_CHECK_EXCEPTION((void)io::require(f.tensors, "nope", {3}), io_error,
                        message_has({"missing tensor \"nope\""}));
  BOOST_CHECK_EXCEPTION((void)io::require(f, "layer.weight", {3, 2}), fusemix::shape_error,
                        message_has({"fusemix::io::require", "tensor \"layer.weight\"",
                                     "a.safetensors", "(expected [3, 2], got [2, 3])"}));
  BOOST_CHECK_EXCEPTION((void)io::require(f.tensors, "scale", {1}), fusemix::shape_error,
                        message_has({"expected [1], got []"}));
}

// ----- bad input ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(missing_and_short_files) {
  temp_dir dir;
  const fs::path p = dir / "missing.safetensors";
  BOOST_CHECK_EXCEPTION(
      (void)io::read_safetensors(p), io_error,
      message_has({"fusemix::io::read_safetensors: ", p.string(), "No such file"}));
  write_bytes(dir / "short.safetensors", "abc");
  BOOST_CHECK_EXCEPTION((void)io::read_safetensors(dir / "short.safetensors"), io_error,
                        message_has({"short.safetensors", "too short", "found 3"}));
  std::string big = st_bytes("{}", 0);
  big[1] = 0x10;  // header length 4098, file 10 bytes
  write_bytes(dir / "big.safetensors", big);
  BOOST_CHECK_EXCEPTION(
      (void)io::read_safetensors(dir / "big.safetensors"), io_error,
      message_has({"big.safetensors", "header length 4098 runs past the end of the file"}));
  big[7] = '\x7f';  // an absurd length must not be allocated
  write_bytes(dir / "huge.safetensors", big);
  BOOST_CHECK_EXCEPTION((void)io::read_safetensors(dir / "huge.safetensors"), io_error,
                        message_has({"huge.safetensors", "runs past the end"}));
}

BOOST_AUTO_TEST_CASE(malformed_json_is_refused) {
  temp_dir dir;
  write_bytes(dir / "j.safetensors", st_bytes(R"({"a": {"dtype": "F32",)", 0));
  BOOST_CHECK_EXCEPTION((void)io::read_safetensors(dir / "j.safetensors"), io_error,
                        message_has({"j.safetensors", "malformed JSON header", "parse error"}));
  write_bytes(dir / "arr.safetensors", st_bytes("[1, 2]", 0));
  BOOST_CHECK_EXCEPTION((void)io::read_safetensors(dir / "arr.safetensors"), io_error,
                        message_has({"arr.safetensors", "not a JSON object"}));
}

BOOST_AUTO_TEST_CASE(json_number_overflow_is_an_io_error) {
  // nlohmann::json reports a number beyond double's range as out_of_range, not parse_error; it
  // escaped the reader until the fuzzer found it (tests/fuzz/corpus/safetensors/regress-*).
  temp_dir dir;
  write_bytes(dir / "n.safetensors", st_bytes("[1e400", 0));
  BOOST_CHECK_EXCEPTION(
      (void)io::read_safetensors(dir / "n.safetensors"), io_error,
      message_has({"n.safetensors", "malformed JSON header", "number overflow parsing '1e400'"}));
  write_bytes(dir / "m.safetensors",
              st_bytes(R"({"a": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})", 4));
  BOOST_CHECK_EXCEPTION((void)io::read_safetensors<double>(dir / "m.safetensors"), io_error,
                        message_has({"m.safetensors", "malformed JSON header", "1e400"}));
}

BOOST_AUTO_TEST_CASE(a_pipe_header_length_is_not_allocated_up_front) {
  // A pipe has no size to check the header length against: 8 bytes claiming a 100 MB header
  // (the limit) must fail as truncated without allocating 100 MB first.
  std::string bytes = st_bytes("", 0);
  fusemix::detail::store_le(reinterpret_cast<unsigned char*>(bytes.data()),
                            std::uint64_t{100'000'000});
  fusemix::test::with_pipe(bytes, [](const fs::path& p) {
    BOOST_CHECK_EXCEPTION((void)io::read_safetensors(p), io_error,
                          message_has({"truncated: expected 100000000 bytes of header, found 0"}));
  });
}

BOOST_AUTO_TEST_CASE(malformed_entries_are_refused) {
  temp_dir dir;
  const std::pair<const char*, const char*> cases[] = {
      {R"({"a": 5})", "tensor \"a\": entry is not a JSON object"},
      {R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", "tensor \"a\": entry lacks \"dtype\""},
      {R"({"a": {"dtype": "F32", "data_offsets": [0, 8]}})", "entry lacks \"shape\""},
      {R"({"a": {"dtype": "F32", "shape": [2]}})", "entry lacks \"data_offsets\""},
      {R"({"a": {"dtype": 32, "shape": [2], "data_offsets": [0, 8]}})",
       "\"dtype\" is not a string"},
      {R"({"a": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})",
       "tensor \"a\": dtype I32 not supported; expected F32, F64, F16 or BF16"},
      {R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})",
       "non-negative integers"},
      {R"({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})",
       "non-negative integers"},
      {R"({"a": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})", "non-negative integers"},
      {R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
       "shape [4294967296, 4294967296] is too large"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 16]}})", "two non-negative"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, -8]}})", "two non-negative"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})",
       "data_offsets [0, 4] span 4 bytes, but shape [2] of F32 needs 8"},
      {R"({"a": {"dtype": "F64", "shape": [2, 1], "data_offsets": [0, 8]}})",
       "span 8 bytes, but shape [2, 1] of F64 needs 16"},
      {R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
       "data_offsets [8, 24] run past the end of the data (16 bytes)"},
      {R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})",
       "reversed (begin > end)"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
       "tensors \"a\" and \"b\" overlap (data_offsets [0, 8] and [4, 12])"},
      {R"({"a": {"dtype": "F16", "shape": [2], "data_offsets": [12, 16]},
           "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
       "overlap"},
      {R"({"__metadata__": {"format": "pt", "step": 3}})",
       "metadata value for key \"step\" is not a string"},
      {R"({"__metadata__": ["format", "pt"]})", "\"__metadata__\" is not a JSON object"},
  };
  for (const auto& [header, problem] : cases) {
    write_bytes(dir / "m.safetensors", st_bytes(header, 16));
    BOOST_TEST_CONTEXT("header " << header) {
      BOOST_CHECK_EXCEPTION(
          (void)io::read_safetensors(dir / "m.safetensors"), io_error,
          message_has({"fusemix::io::read_safetensors: ", "m.safetensors", problem}));
    }
  }
}

BOOST_AUTO_TEST_CASE(valid_oddities_are_accepted) {
  // Trailing padding bytes after the last tensor, gaps between tensors, empty tensors sharing an
  // offset, and entries in any order are all valid.
  temp_dir dir;
  const std::string header =
      R"({"z": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
          "e1": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
          "e2": {"dtype": "BF16", "shape": [3, 0], "data_offsets": [4, 4]},
          "a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4], "extra": true}})";
  std::string bytes = st_bytes(header, 0);
  bytes += std::string("\x00\x3c\x00\xc0", 4);  // F16 1.0, -2.0
  bytes += std::string(4, '\0');                // gap
  bytes += std::string("\x00\x00\x80\x3f", 4);  // F32 1.0
  bytes += std::string(4, '\0');                // trailing
  write_bytes(dir / "ok.safetensors", bytes);
  const auto f = io::read_safetensors(dir / "ok.safetensors");
  BOOST_TEST(f.tensors.at("a").data == (std::vector<float>{1.0f, -2.0f}));
  BOOST_TEST(f.tensors.at("z").data == (std::vector<float>{1.0f}));
  BOOST_TEST(f.tensors.at("e2").shape == (std::vector<std::size_t>{3, 0}));
  BOOST_TEST(f.tensors.at("e1").data.empty());
}

// ----- bad input: the cases of the "Reliability" issue not covered above ------------------

BOOST_AUTO_TEST_CASE(unreadable_file_is_an_io_error) {
  temp_dir dir;
  if (::geteuid() == 0) {
    // chmod 000 does not stop root from reading; a directory passed as a file stands in.
    BOOST_TEST_MESSAGE("running as root: a directory stands in for a chmod-000 file");
    fs::create_directory(dir / "dir.safetensors");
    BOOST_CHECK_EXCEPTION((void)io::read_safetensors(dir / "dir.safetensors"), io_error,
                          message_has({"fusemix::io::read_safetensors: ", "dir.safetensors",
                                       "is a directory, not a file"}));
    return;
  }
  const fs::path p = dir / "locked.safetensors";
  io::write_safetensors(p, sample_tensors());
  fs::permissions(p, fs::perms::none);
  BOOST_CHECK_EXCEPTION((void)io::read_safetensors(p), io_error,
                        message_has({"fusemix::io::read_safetensors: ", p.string(),
                                     "cannot open for reading", "Permission denied"}));
  fs::permissions(p, fs::perms::owner_all);
}

BOOST_AUTO_TEST_CASE(non_float_dtypes_are_refused) {
  // Integer, bool and 8-bit float tensors cannot be weights: refused by name, never reinterpreted.
  temp_dir dir;
  for (const auto& [dtype, bytes] : {std::pair{"I32", 8}, std::pair{"U8", 2}, std::pair{"I64", 16},
                                     std::pair{"BOOL", 2}, std::pair{"F8_E4M3", 2}}) {
    const std::string header = fusemix::concat(R"({"w": {"dtype": ")", dtype,
                                                       R"(", "shape": [2], "data_offsets": [0, )", bytes,
                                                       "]}}");
    write_bytes(dir / "d.safetensors", st_bytes(header, 16));
    BOOST_TEST_CONTEXT("dtype " << dtype) {
      BOOST_CHECK_EXCEPTION((void)io::read_safetensors(dir / "d.safetensors"), io_error,
                            message_has({"fusemix::io::read_safetensors: ", "d.safetensors",
                                         fusemix::concat("tensor \"w\": dtype ", dtype,
                                                                 " not supported; expected F32, F64, F16 or BF16")}));
      BOOST_CHECK_EXCEPTION((void)io::read_safetensors<double>(dir / "d.safetensors"), io_error,
                            message_has({"d.safetensors", "not supported"}));
    }
  }
}

BOOST_AUTO_TEST_CASE(header_length_and_offsets_beyond_the_file) {
  // A header length one byte past the end, and offsets one byte past the data, are both named.
  temp_dir dir;
  const std::string header = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  std::string bytes = st_bytes(header, 8);
  fusemix::detail::store_le(reinterpret_cast<unsigned char*>(bytes.data()),
                            static_cast<std::uint64_t>(bytes.size() - 8 + 1));
  write_bytes(dir / "len.safetensors", bytes);
  BOOST_CHECK_EXCEPTION((void)io::read_safetensors(dir / "len.safetensors"), io_error,
                        message_has({"len.safetensors",
                                     fusemix::concat("header length ", bytes.size() - 7,
                                                             " runs past the end of the file (",
                                                             bytes.size(), " bytes)")}));
  write_bytes(dir / "off.safetensors", st_bytes(header, 7));
  BOOST_CHECK_EXCEPTION((void)io::read_safetensors(dir / "off.safetensors"), io_error,
                        message_has({"off.safetensors", "tensor \"w\"",
                                     "data_offsets [0, 8] run past the end of the data (7 bytes)"}));
}

BOOST_AUTO_TEST_SUITE_END()
