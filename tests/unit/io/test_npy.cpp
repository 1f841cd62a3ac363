// SPDX-License-Identifier: Apache-2.0
/// @file
/// Tests of <fusemix/io/npy.hpp> and the atomic writes of <fusemix/detail/file.hpp>.
#include <algorithm>
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
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include <fusemix/detail/file.hpp>
#include <fusemix/io/npy.hpp>

#include "temp_files.hpp"
#include "messages.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = fusemix::io;
using fusemix::io_error;

const fs::path fixtures = fs::path(FUSEMIX_FIXTURE_DIR) / "npy";

using fusemix::test::read_bytes;
using fusemix::test::temp_dir;
using fusemix::test::write_bytes;

/// A `.npy` file with the header dict `dict` as given (padded like numpy) and raw `data`.
std::string npy_bytes(std::string_view dict, std::string_view data, int version = 1) {
  const std::size_t prefix = version == 1 ? 10 : 12;
  std::string header(dict);
  header.append(63 - (prefix + header.size()) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(version);
  out += '\0';
  const std::size_t n = header.size();
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  if (version != 1) out += std::string(2, '\0');
  return out + header + std::string(data);
}

/// `count` little-endian float32 values 0, 1, 2, ... as bytes.
std::string f4_data(std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < count; ++i) {
    unsigned char b[4];
    fusemix::detail::store_le(b, std::bit_cast<std::uint32_t>(static_cast<float>(i)));
    out.append(reinterpret_cast<const char*>(b), 4);
  }
  return out;
}

using fusemix::test::message_has;

/// The 3x5 grid of tools/make_io_fixtures.py: (i*5 + j) * 0.25 - 1.5 (float), (i*5 + j) / 3
/// (double).
io::matrix<float> grid_f4() {
  io::matrix<float> m(3, 5);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) m(i, j) = static_cast<float>(i * 5 + j) * 0.25f - 1.5f;
  return m;
}
io::matrix<double> grid_f8() {
  io::matrix<double> m(3, 5);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) m(i, j) = static_cast<double>(i * 5 + j) / 3.0;
  return m;
}

template <class M>
bool bitwise_equal(const M& a, const M& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(*a.data())) ==
             0;
}

/// The names of the entries of `dir`, to show that no temporary file was left behind.
std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(npy)

// ----- writing and round trips --------------------------------------------------------------

BOOST_AUTO_TEST_CASE(float_round_trip_is_bitwise) {
  temp_dir dir;
  using lim = std::numeric_limits<float>;
  io::matrix<float> m(4, 3);
  m << 0.0f, -0.0f, 1.0f, lim::infinity(), -lim::infinity(), std::bit_cast<float>(0x7fc01234u),
      lim::denorm_min(), lim::max(), lim::lowest(), lim::epsilon(), 1.0f / 3.0f, -1e-30f;
  io::write_npy(dir / "a.npy", m);
  const io::matrix<float> back = io::read_npy(dir / "a.npy");
  BOOST_TEST(bitwise_equal(back, m));
  BOOST_TEST(entries(dir.path) == std::vector<std::string>{"a.npy"});
}

// npy_writer: rows appended in blocks give the bytes of write_npy on the whole; the file appears
// only on a commit after every declared row, and a writer abandoned (or refused) leaves the
// target as it was.
BOOST_AUTO_TEST_CASE(writer_appends_blocks_and_commits_atomically) {
  temp_dir dir;
  io::matrix<float> m(7, 3);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(i) * 0.5f - 2.0f;
  io::write_npy(dir / "whole.npy", m);
  {
    io::npy_writer<float> w(dir / "blocks.npy", 7, 3);
    w.append(m.topRows(3));
    w.append(m.middleRows(3, 0));  // an empty block changes nothing
    w.append(m.bottomRows(4));
    BOOST_TEST(w.rows_written() == 7u);
    BOOST_TEST(!fs::exists(dir / "blocks.npy"));  // not before the commit
    w.commit();
  }
  BOOST_TEST(fusemix::test::read_bytes(dir / "blocks.npy") == fusemix::test::read_bytes(dir / "whole.npy"));
  {  // too few rows: refused at commit, the old file kept; too many or too wide: refused at append
    io::npy_writer<float> w(dir / "whole.npy", 8, 3);
    w.append(m);
    BOOST_CHECK_EXCEPTION(w.append(io::matrix<float>(2, 3)), fusemix::shape_error,
                          message_has({"npy_writer", "more rows than the file was declared with", "<= 1", "2"}));
    BOOST_CHECK_EXCEPTION(w.append(io::matrix<float>(1, 4)), fusemix::shape_error,
                          message_has({"npy_writer", "the file's width", "3", "4"}));
    BOOST_CHECK_EXCEPTION(w.commit(), fusemix::shape_error, message_has({"npy_writer", "every declared row", "8", "7"}));
  }
  BOOST_TEST(fusemix::test::read_bytes(dir / "whole.npy") == fusemix::test::read_bytes(dir / "blocks.npy"));
  auto names = entries(dir.path);
  std::sort(names.begin(), names.end());
  BOOST_TEST(names == (std::vector<std::string>{"blocks.npy", "whole.npy"}));  // no temporaries left
}

BOOST_AUTO_TEST_CASE(double_round_trip_is_bitwise) {
  temp_dir dir;
  using lim = std::numeric_limits<double>;
  io::matrix<double> m(2, 5);
  m << 0.0, -0.0, lim::infinity(), std::bit_cast<double>(0x7ff8000000000abcull), lim::denorm_min(),
      lim::max(), lim::lowest(), 0.1, -1.0 / 3.0, 1e300;
  io::write_npy(dir / "a.npy", m);
  const io::matrix<double> back = io::read_npy<double>(dir / "a.npy");
  BOOST_TEST(bitwise_equal(back, m));
  const io::npy_header h = io::read_npy_header(dir / "a.npy");
  BOOST_TEST(h.descr == "<f8");
  BOOST_TEST(h.data_offset % 64 == 0u);
}

BOOST_AUTO_TEST_CASE(writer_output_matches_numpy_save_bytes) {
  // np.save of the same arrays (tools/make_io_fixtures.py): identical bytes prove that numpy
  // reads our files, header padding included.
  temp_dir dir;
  io::write_npy(dir / "f4.npy", grid_f4());
  BOOST_TEST(read_bytes(dir / "f4.npy") == read_bytes(fixtures / "f4_3x5.npy"));
  io::write_npy(dir / "f8.npy", grid_f8());
  BOOST_TEST(read_bytes(dir / "f8.npy") == read_bytes(fixtures / "f8_3x5.npy"));
  const std::vector<std::int64_t> idx{0, 0, 1, 2, 5, 3};
  io::write_npy(dir / "i8.npy", idx);
  BOOST_TEST(read_bytes(dir / "i8.npy") == read_bytes(fixtures / "i8_index.npy"));
}

BOOST_AUTO_TEST_CASE(column_major_input_is_written_in_c_order) {
  temp_dir dir;
  const Eigen::MatrixXf col_major = grid_f4();  // Eigen's default storage is column-major
  io::write_npy(dir / "c.npy", col_major);
  BOOST_TEST(read_bytes(dir / "c.npy") == read_bytes(fixtures / "f4_3x5.npy"));
  BOOST_TEST((io::read_npy(dir / "c.npy") == grid_f4()));
}

BOOST_AUTO_TEST_CASE(expressions_and_blocks_are_written_as_their_values) {
  temp_dir dir;
  const io::matrix<float> a = grid_f4();
  io::write_npy(dir / "t.npy", a.transpose());
  BOOST_TEST((io::read_npy(dir / "t.npy") == io::matrix<float>(a.transpose())));
  io::write_npy(dir / "b.npy", a.block(1, 1, 2, 3));
  BOOST_TEST((io::read_npy(dir / "b.npy") == io::matrix<float>(a.block(1, 1, 2, 3))));
  io::write_npy(dir / "s.npy", 2.0f * a);
  BOOST_TEST((io::read_npy(dir / "s.npy") == io::matrix<float>(2.0f * a)));
  const Eigen::VectorXd v = Eigen::VectorXd::LinSpaced(4, 0.0, 3.0);
  io::write_npy(dir / "v.npy", v);
  BOOST_TEST(io::read_npy_header(dir / "v.npy").shape == (std::vector<std::size_t>{4, 1}));
}

BOOST_AUTO_TEST_CASE(overwrite_replaces_the_file_atomically) {
  temp_dir dir;
  io::write_npy(dir / "a.npy", grid_f4());
  io::write_npy(dir / "a.npy", grid_f8());
  BOOST_TEST((io::read_npy<double>(dir / "a.npy") == grid_f8()));
  BOOST_TEST(entries(dir.path) == std::vector<std::string>{"a.npy"});
}

BOOST_AUTO_TEST_CASE(atomic_write_leaves_the_target_alone_when_the_body_throws) {
  temp_dir dir;
  write_bytes(dir / "t.bin", "old");
  struct boom {};
  BOOST_CHECK_THROW(fusemix::io::atomic_write("test", dir / "t.bin",
                                                  [](fusemix::io::atomic_file& out) {
                                                    out.write("partial new contents");
                                                    throw boom{};
                                                  }),
                    boom);
  BOOST_TEST(read_bytes(dir / "t.bin") == "old");
  BOOST_TEST(entries(dir.path) == std::vector<std::string>{"t.bin"});
  fusemix::io::atomic_write("test", dir / "t.bin",
                                [](fusemix::io::atomic_file& out) { out.write("new"); });
  BOOST_TEST(read_bytes(dir / "t.bin") == "new");
}

BOOST_AUTO_TEST_CASE(writing_into_a_missing_directory_is_an_io_error) {
  temp_dir dir;
  const fs::path p = dir / "no_such_dir" / "a.npy";
  BOOST_CHECK_EXCEPTION(io::write_npy(p, grid_f4()), io_error,
                        message_has({"fusemix::io::write_npy", p.string(), "No such file"}));
  const std::vector<std::int64_t> idx{1};
  BOOST_CHECK_EXCEPTION(io::write_npy(p, idx), io_error, message_has({"write_npy", p.string()}));
  BOOST_CHECK_EXCEPTION(io::write_npy(dir.path / "", grid_f4()), io_error,
                        message_has({"write_npy", "directory"}));
}

// ----- reading files written by numpy -------------------------------------------------------

BOOST_AUTO_TEST_CASE(reads_numpy_float32_and_float64) {
  BOOST_TEST(bitwise_equal(io::read_npy(fixtures / "f4_3x5.npy"), grid_f4()));
  BOOST_TEST(bitwise_equal(io::read_npy<double>(fixtures / "f4_3x5.npy"),
                           io::matrix<double>(grid_f4().cast<double>())));
  BOOST_TEST(bitwise_equal(io::read_npy<double>(fixtures / "f8_3x5.npy"), grid_f8()));
  // float64 read as float rounds to nearest, as a cast does.
  BOOST_TEST(bitwise_equal(io::read_npy<float>(fixtures / "f8_3x5.npy"),
                           io::matrix<float>(grid_f8().cast<float>())));
}

BOOST_AUTO_TEST_CASE(reads_numpy_float16_exactly) {
  const io::matrix<float> m = io::read_npy(fixtures / "f2_specials.npy");
  BOOST_TEST_REQUIRE(m.rows() == 2);
  BOOST_TEST_REQUIRE(m.cols() == 6);
  const float inf = std::numeric_limits<float>::infinity();
  const float want[] = {0.0f,     -0.0f,           1.0f, -2.5f, 65504.0f, -65504.0f, 0x1p-24f,
                        0x1p-14f, 1023 * 0x1p-24f, inf,  -inf};
  for (int k = 0; k < 11; ++k) {
    const float got = m(k / 6, k % 6);
    BOOST_TEST(std::bit_cast<std::uint32_t>(got) == std::bit_cast<std::uint32_t>(want[k]),
               "element " << k << ": got " << got << ", want " << want[k]);
  }
  BOOST_TEST(std::isnan(m(1, 5)));
  const io::matrix<double> d = io::read_npy<double>(fixtures / "f2_specials.npy");
  BOOST_TEST(d(1, 0) == 0x1p-24);
  BOOST_TEST(std::signbit(d(0, 1)));
}

BOOST_AUTO_TEST_CASE(reads_format_versions_2_and_3) {
  for (const auto& [name, version] :
       {std::pair{"f4_3x5_v2.npy", 2}, std::pair{"f4_3x5_v3.npy", 3}}) {
    const io::npy_header h = io::read_npy_header(fixtures / name);
    BOOST_TEST(h.version == version);
    BOOST_TEST(h.descr == "<f4");
    BOOST_TEST(!h.fortran_order);
    BOOST_TEST(h.shape == (std::vector<std::size_t>{3, 5}));
    BOOST_TEST(bitwise_equal(io::read_npy(fixtures / name), grid_f4()));
  }
  BOOST_TEST(io::read_npy_header(fixtures / "f4_3x5.npy").version == 1);
}

BOOST_AUTO_TEST_CASE(header_dict_variants_are_accepted) {
  temp_dir dir;
  const std::string data = f4_data(6);
  const char* dicts[] = {
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
      R"({"shape": (2, 3), "fortran_order": False, "descr": "<f4"})",  // order, quotes, no comma
      "{ 'fortran_order' :False,'descr':'<f4' , 'shape':( 2 ,3 ) , }",
      "{\n\t'descr': '=f4',\n\t'fortran_order': False,\n\t'shape': (2L, 3L),\n}",  // Python 2
      "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}",
  };
  io::matrix<float> want(2, 3);
  want << 0, 1, 2, 3, 4, 5;
  int k = 0;
  for (const char* dict : dicts) {
    const fs::path p = dir / (std::to_string(k++) + "_h.npy");
    write_bytes(p, npy_bytes(dict, data));
    BOOST_TEST_CONTEXT("header " << dict) { BOOST_TEST((io::read_npy(p) == want)); }
  }
  write_bytes(dir / "v2.npy", npy_bytes(dicts[0], data, 2));
  BOOST_TEST((io::read_npy(dir / "v2.npy") == want));
}

BOOST_AUTO_TEST_CASE(reads_vectors_and_index_arrays) {
  BOOST_TEST(io::read_npy_vector(fixtures / "f4_vector.npy") ==
             (std::vector<float>{1.5f, -2.0f, 0.0f, 3.25f}));
  BOOST_TEST(io::read_npy_vector<double>(fixtures / "f4_vector.npy") ==
             (std::vector<double>{1.5, -2.0, 0.0, 3.25}));
  BOOST_TEST(io::read_npy_int64(fixtures / "i8_index.npy") ==
             (std::vector<std::int64_t>{0, 0, 1, 2, 5, 3}));
  BOOST_TEST(io::read_npy_int64(fixtures / "i4_index.npy") ==
             (std::vector<std::int64_t>{4, -7, 2147483647, -2147483648LL}));
  BOOST_TEST(io::read_npy_int64(fixtures / "u8_index.npy") ==
             (std::vector<std::int64_t>{0, 9, std::numeric_limits<std::int64_t>::max()}));
  temp_dir dir;
  const std::vector<std::int64_t> empty;
  io::write_npy(dir / "e.npy", empty);
  BOOST_TEST(io::read_npy_int64(dir / "e.npy").empty());
  write_bytes(dir / "u1.npy", npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }",
                                        std::string("\x00\x07\xff", 3)));
  BOOST_TEST(io::read_npy_int64(dir / "u1.npy") == (std::vector<std::int64_t>{0, 7, 255}));
  write_bytes(dir / "i2.npy", npy_bytes("{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }",
                                        std::string("\xfe\xff\x05\x00", 4)));
  BOOST_TEST(io::read_npy_int64(dir / "i2.npy") == (std::vector<std::int64_t>{-2, 5}));
}

BOOST_AUTO_TEST_CASE(reads_from_a_pipe) {
  // A pipe has no size up front, so truncation and trailing bytes are found while reading.
  fusemix::test::with_pipe(read_bytes(fixtures / "f4_3x5.npy"),
               [](const fs::path& p) { BOOST_TEST(bitwise_equal(io::read_npy(p), grid_f4())); });
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
  fusemix::test::with_pipe(npy_bytes(dict, f4_data(3)), [](const fs::path& p) {
    BOOST_CHECK_EXCEPTION((void)io::read_npy(p), io_error,
                          message_has({"truncated: expected 16 bytes of data, found 12"}));
  });
  fusemix::test::with_pipe(npy_bytes(dict, f4_data(5)), [](const fs::path& p) {
    BOOST_CHECK_EXCEPTION((void)io::read_npy(p), io_error, message_has({"trailing"}));
  });
}

BOOST_AUTO_TEST_CASE(a_pipe_is_not_allocated_from_its_header_alone) {
  // A pipe has no size to check the shape against up front: a header claiming 4 TB followed by
  // 4 bytes must fail as truncated, not allocate (std::bad_alloc escaped until the fuzzer found
  // it; tests/fuzz/corpus/npy/regress-pipe-huge-shape.npy).
  const std::string vector_dict =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }";
  fusemix::test::with_pipe(npy_bytes(vector_dict, f4_data(1)), [](const fs::path& p) {
    BOOST_CHECK_EXCEPTION((void)io::read_npy_vector(p), io_error,
                          message_has({"read_npy_vector", "truncated: expected 4000000000000 "
                                                          "bytes of data, found 4"}));
  });
  fusemix::test::with_pipe(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }",
                         f4_data(2)),
               [](const fs::path& p) {
                 BOOST_CHECK_EXCEPTION(
                     (void)io::read_npy<double>(p), io_error,
                     message_has({"truncated: expected 8000000000000 bytes of data, found 8"}));
               });
  fusemix::test::with_pipe(npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1000000000000,), }",
                         "12345678"),
               [](const fs::path& p) {
                 BOOST_CHECK_EXCEPTION(
                     (void)io::read_npy_int64(p), io_error,
                     message_has({"truncated: expected 8000000000000 bytes of data, found 8"}));
               });
  // Values still decode exactly from the in-memory copy, and a <u8 beyond int64 still fails.
  const std::string u8_data("\x07\0\0\0\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff", 16);
  fusemix::test::with_pipe(npy_bytes("{'descr': '<u8', 'fortran_order': False, 'shape': (2,), }", u8_data),
               [](const fs::path& p) {
                 BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(p), io_error,
                                       message_has({"at index 1 does not fit in int64"}));
               });
  fusemix::test::with_pipe(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4_data(3)),
               [](const fs::path& p) {
                 BOOST_TEST(io::read_npy_vector(p) == (std::vector<float>{0.0f, 1.0f, 2.0f}));
               });
}

// ----- bad input ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(missing_file_and_directory) {
  temp_dir dir;
  const fs::path p = dir / "missing.npy";
  BOOST_CHECK_EXCEPTION(
      (void)io::read_npy(p), io_error,
      message_has({"fusemix::io::read_npy: ", p.string(), "No such file or directory"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_header(p), io_error,
                        message_has({"fusemix::io::read_npy_header: ", p.string()}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(p), io_error,
                        message_has({"fusemix::io::read_npy_int64: ", p.string()}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir.path), io_error, message_has({"directory"}));
}

BOOST_AUTO_TEST_CASE(bad_magic_and_version) {
  temp_dir dir;
  write_bytes(dir / "magic.npy", "PK\x03\x04 this is a zip file");
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "magic.npy"), io_error,
                        message_has({"magic.npy", "bad magic"}));
  write_bytes(dir / "empty.npy", "");
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "empty.npy"), io_error,
                        message_has({"empty.npy", "magic"}));
  std::string v4 =
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }", f4_data(1));
  v4[6] = 4;
  write_bytes(dir / "v4.npy", v4);
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "v4.npy"), io_error,
                        message_has({"v4.npy", "unsupported .npy format version 4.0"}));
}

BOOST_AUTO_TEST_CASE(truncated_header) {
  temp_dir dir;
  const std::string whole = read_bytes(fixtures / "f4_3x5.npy");
  write_bytes(dir / "short.npy", whole.substr(0, 40));
  BOOST_CHECK_EXCEPTION(
      (void)io::read_npy(dir / "short.npy"), io_error,
      message_has({"short.npy", "truncated: expected 118 bytes of header, found 30"}));
  write_bytes(dir / "prefix.npy", whole.substr(0, 9));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "prefix.npy"), io_error,
                        message_has({"prefix.npy", "truncated", "header length"}));
}

BOOST_AUTO_TEST_CASE(data_shorter_than_the_header_says) {
  temp_dir dir;
  // The header claims 3x5 float32 (60 bytes) but only 40 follow.
  const std::string whole = read_bytes(fixtures / "f4_3x5.npy");
  write_bytes(dir / "lying.npy", whole.substr(0, whole.size() - 20));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "lying.npy"), io_error,
                        message_has({"fusemix::io::read_npy: ", "lying.npy",
                                     "truncated: expected 60 bytes of data, found 40"}));
  write_bytes(dir / "idx.npy", read_bytes(fixtures / "i8_index.npy").substr(0, 130));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(dir / "idx.npy"), io_error,
                        message_has({"idx.npy", "truncated: expected 48 bytes of data, found 2"}));
}

BOOST_AUTO_TEST_CASE(data_longer_than_the_header_says) {
  temp_dir dir;
  write_bytes(dir / "long.npy", read_bytes(fixtures / "f4_3x5.npy") + "junk");
  BOOST_CHECK_EXCEPTION(
      (void)io::read_npy(dir / "long.npy"), io_error,
      message_has({"long.npy", "expected 60 bytes of data, found 64", "trailing"}));
}

BOOST_AUTO_TEST_CASE(big_endian_is_refused) {
  temp_dir dir;
  write_bytes(dir / "be.npy",
              npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", f4_data(4)));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "be.npy"), io_error,
                        message_has({"be.npy", "'>f4'", "big-endian", "not supported"}));
  write_bytes(dir / "be8.npy",
              npy_bytes("{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }", "12345678"));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(dir / "be8.npy"), io_error,
                        message_has({"be8.npy", "big-endian"}));
}

BOOST_AUTO_TEST_CASE(fortran_order_is_refused) {
  temp_dir dir;
  write_bytes(dir / "f.npy",
              npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f4_data(4)));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "f.npy"), io_error,
                        message_has({"f.npy", "fortran_order"}));
  BOOST_TEST(io::read_npy_header(dir / "f.npy").fortran_order);
}

BOOST_AUTO_TEST_CASE(wrong_rank_is_refused) {
  temp_dir dir;
  write_bytes(
      dir / "r3.npy",
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", f4_data(8)));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "r3.npy"), io_error,
                        message_has({"r3.npy", "expected a rank-2 array, got shape (2, 2, 2)"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(fixtures / "f4_vector.npy"), io_error,
                        message_has({"f4_vector.npy", "expected a rank-2 array, got shape (4,)"}));
  BOOST_CHECK_EXCEPTION(
      (void)io::read_npy_vector(fixtures / "f4_3x5.npy"), io_error,
      message_has({"read_npy_vector", "expected a rank-1 array, got shape (3, 5)"}));
  write_bytes(dir / "r0.npy",
              npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f4_data(1)));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "r0.npy"), io_error,
                        message_has({"r0.npy", "got shape ()"}));
}

BOOST_AUTO_TEST_CASE(empty_matrix_is_refused) {
  temp_dir dir;
  write_bytes(dir / "z.npy",
              npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", ""));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "z.npy"), io_error,
                        message_has({"z.npy", "non-empty", "(0, 5)"}));
  // The writer still writes what numpy would.
  io::write_npy(dir / "w.npy", io::matrix<float>(3, 0));
  BOOST_TEST(io::read_npy_header(dir / "w.npy").shape == (std::vector<std::size_t>{3, 0}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "w.npy"), io_error, message_has({"(3, 0)"}));
}

BOOST_AUTO_TEST_CASE(overflowing_shape_is_refused_before_allocating) {
  temp_dir dir;
  write_bytes(dir / "big.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                         "'shape': (1099511627776, 1099511627776), }",
                                         f4_data(4)));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "big.npy"), io_error,
                        message_has({"big.npy", "too large"}));
  // Large but not overflowing: refused by the size check, still without allocating.
  write_bytes(dir / "lie.npy",
              npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }",
                        f4_data(4)));
  BOOST_CHECK_EXCEPTION(
      (void)io::read_npy(dir / "lie.npy"), io_error,
      message_has({"lie.npy", "truncated: expected 8000000000000 bytes of data, found 16"}));
  write_bytes(dir / "digits.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                                            "'shape': (99999999999999999999999, 1), }",
                                            f4_data(4)));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "digits.npy"), io_error,
                        message_has({"digits.npy", "too large"}));
}

BOOST_AUTO_TEST_CASE(unsupported_dtypes_are_refused) {
  temp_dir dir;
  const auto file = [&](std::string_view descr, std::string_view shape) {
    const fs::path p = dir / "d.npy";
    write_bytes(
        p, npy_bytes(fusemix::concat("{'descr': '", descr,
                                             "', 'fortran_order': False, 'shape': ", shape, ", }"),
                     std::string(64, '\0')));
    return p;
  };
  BOOST_CHECK_EXCEPTION((void)io::read_npy(file("<c8", "(2, 4)")), io_error,
                        message_has({"d.npy", "'<c8' not supported"}));
  BOOST_CHECK_EXCEPTION(
      (void)io::read_npy(file("<i8", "(2, 4)")), io_error,
      message_has({"d.npy", "'<i8' not supported; expected '<f2', '<f4' or '<f8'"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(file("|f4", "(4, 4)")), io_error,
                        message_has({"d.npy", "byte order '|'"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(file("<U4", "(2, 2)")), io_error,
                        message_has({"d.npy", "not supported"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(file("<f8", "(8,)")), io_error,
                        message_has({"read_npy_int64", "d.npy", "expected an integer type"}));
  unsigned char too_big[8];
  fusemix::detail::store_le(too_big, std::uint64_t{1} << 63);
  write_bytes(dir / "u8.npy", npy_bytes("{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }",
                                        std::string(reinterpret_cast<const char*>(too_big), 8)));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(dir / "u8.npy"), io_error,
                        message_has({"u8.npy", "9223372036854775808", "does not fit in int64"}));
}

BOOST_AUTO_TEST_CASE(malformed_header_dicts_are_refused) {
  temp_dir dir;
  const std::pair<const char*, const char*> cases[] = {
      {"{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"},
      {"{'fortran_order': False, 'shape': (1, 1)}", "missing key 'descr'"},
      {"{'descr': '<f4', 'shape': (1, 1)}", "missing key 'fortran_order'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'extra': 1}",
       "unexpected key 'extra'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}",
       "duplicate key"},
      {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", "structured"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 1)}", "True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, -1)}", "non-negative"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': 4}", "tuple"},
      {"{'descr': '<f4' 'fortran_order': False, 'shape': (1, 1)}", "expected ','"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)} x", "after the closing"},
      {"['descr', '<f4']", "must start with '{'"},
      {"{'descr': '<f4", "unterminated"},
  };
  for (const auto& [dict, problem] : cases) {
    write_bytes(dir / "m.npy", npy_bytes(dict, f4_data(1)));
    BOOST_TEST_CONTEXT("header " << dict) {
      BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "m.npy"), io_error,
                            message_has({"m.npy", "malformed header", problem}));
    }
  }
}

// ----- bad input: the cases of the "Reliability" issue not covered above ------------------

BOOST_AUTO_TEST_CASE(unreadable_file_is_an_io_error) {
  temp_dir dir;
  if (::geteuid() == 0) {
    // chmod 000 does not stop root from reading; a directory passed as a file stands in for an
    // unreadable one (open succeeds, reading cannot).
    BOOST_TEST_MESSAGE("running as root: a directory stands in for a chmod-000 file");
    fs::create_directory(dir / "dir.npy");
    BOOST_CHECK_EXCEPTION((void)io::read_npy(dir / "dir.npy"), io_error,
                          message_has({"fusemix::io::read_npy: ", "dir.npy", "is a directory, not a file"}));
    BOOST_CHECK_EXCEPTION((void)io::read_npy_vector(dir / "dir.npy"), io_error,
                          message_has({"fusemix::io::read_npy_vector: ", "dir.npy", "is a directory"}));
    BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(dir / "dir.npy"), io_error,
                          message_has({"fusemix::io::read_npy_int64: ", "dir.npy", "is a directory"}));
    return;
  }
  const fs::path p = dir / "locked.npy";
  io::write_npy(p, grid_f4());
  fs::permissions(p, fs::perms::none);
  BOOST_CHECK_EXCEPTION((void)io::read_npy(p), io_error,
                        message_has({"fusemix::io::read_npy: ", p.string(), "cannot open for reading",
                                     "Permission denied"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_header(p), io_error,
                        message_has({"fusemix::io::read_npy_header: ", "Permission denied"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(p), io_error,
                        message_has({"fusemix::io::read_npy_int64: ", "Permission denied"}));
  fs::permissions(p, fs::perms::owner_all);
}

BOOST_AUTO_TEST_CASE(every_reader_refuses_types_it_does_not_read) {
  // complex, bool and unicode arrays, as numpy writes them; the message names the dtype found
  // and the types expected.
  temp_dir dir;
  const auto file = [&](std::string_view descr, std::string_view shape, std::size_t bytes) {
    const fs::path p = dir / "t.npy";
    write_bytes(p, npy_bytes(fusemix::concat("{'descr': '", descr,
                                                     "', 'fortran_order': False, 'shape': ", shape, ", }"),
                             std::string(bytes, '\0')));
    return p;
  };
  for (const char* descr : {"<c8", "|b1", "<U4", "|S4", "<m8"}) {
    BOOST_TEST_CONTEXT("dtype " << descr) {
      const std::string quoted = fusemix::concat("'", descr, "' not supported");
      BOOST_CHECK_EXCEPTION((void)io::read_npy(file(descr, "(2, 2)", 64)), io_error,
                            message_has({"fusemix::io::read_npy: ", "t.npy", quoted, "expected", "<f4"}));
      BOOST_CHECK_EXCEPTION((void)io::read_npy_vector(file(descr, "(4,)", 64)), io_error,
                            message_has({"fusemix::io::read_npy_vector: ", "t.npy", quoted}));
      BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(file(descr, "(4,)", 64)), io_error,
                            message_has({"fusemix::io::read_npy_int64: ", "t.npy", quoted}));
    }
  }
  // big-endian floats of every width, whichever reader
  for (const char* descr : {">f2", ">f4", ">f8"}) {
    BOOST_TEST_CONTEXT("dtype " << descr) {
      BOOST_CHECK_EXCEPTION((void)io::read_npy(file(descr, "(2, 2)", 64)), io_error,
                            message_has({"t.npy", "big-endian"}));
      BOOST_CHECK_EXCEPTION((void)io::read_npy_vector(file(descr, "(2,)", 64)), io_error,
                            message_has({"t.npy", "big-endian"}));
    }
  }
}

BOOST_AUTO_TEST_CASE(every_reader_refuses_bad_shapes_and_orders) {
  temp_dir dir;
  const auto file = [&](std::string_view shape, std::size_t count, bool fortran = false) {
    const fs::path p = dir / "s.npy";
    write_bytes(p, npy_bytes(fusemix::concat("{'descr': '<f4', 'fortran_order': ",
                                                     fortran ? "True" : "False", ", 'shape': ", shape, ", }"),
                             f4_data(count)));
    return p;
  };
  // rank 1 and rank 3 for the matrix reader, rank 2 for the vector readers
  BOOST_CHECK_EXCEPTION((void)io::read_npy(file("(6,)", 6)), io_error,
                        message_has({"fusemix::io::read_npy: ", "s.npy", "expected a rank-2 array, got shape (6,)"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(file("(1, 2, 3)", 6)), io_error,
                        message_has({"expected a rank-2 array, got shape (1, 2, 3)"}));
  write_bytes(dir / "i.npy", npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }",
                                       std::string(48, '\0')));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_int64(dir / "i.npy"), io_error,
                        message_has({"read_npy_int64", "i.npy", "expected a rank-1 array, got shape (2, 3)"}));
  // zero rows, zero columns: both named with the shape found
  BOOST_CHECK_EXCEPTION((void)io::read_npy(file("(0, 3)", 0)), io_error,
                        message_has({"s.npy", "expected a non-empty matrix, got shape (0, 3)"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy(file("(3, 0)", 0)), io_error,
                        message_has({"s.npy", "expected a non-empty matrix, got shape (3, 0)"}));
  // a shape whose product overflows, for each reader
  BOOST_CHECK_EXCEPTION((void)io::read_npy(file("(4294967296, 4294967296)", 1)), io_error,
                        message_has({"s.npy", "shape (4294967296, 4294967296) is too large"}));
  BOOST_CHECK_EXCEPTION((void)io::read_npy_vector(file("(18446744073709551615,)", 1)), io_error,
                        message_has({"read_npy_vector", "too large"}));
  // Fortran order, for the vector reader too (numpy writes 1-d arrays as C order, but a file may lie)
  BOOST_CHECK_EXCEPTION((void)io::read_npy_vector(file("(3,)", 3, true)), io_error,
                        message_has({"read_npy_vector", "s.npy", "fortran_order is True"}));
  // a lying header: a shape bigger than the data, for the vector reader
  BOOST_CHECK_EXCEPTION((void)io::read_npy_vector(file("(5,)", 3)), io_error,
                        message_has({"read_npy_vector", "truncated: expected 20 bytes of data, found 12"}));
}

BOOST_AUTO_TEST_SUITE_END()
