// SPDX-License-Identifier: Apache-2.0
/// @file
/// Tests of <fusemix/io/mapped_latents.hpp>: memory-mapped `.npy` shards read by row index give
/// the values `read_npy` gives, in every dtype and across shard boundaries, and bad shards are
/// refused naming the file.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <fusemix/detail/file.hpp>
#include <fusemix/io/mapped_latents.hpp>
#include <fusemix/io/npy.hpp>

#include "half_files.hpp"
#include "messages.hpp"
#include "temp_files.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = fusemix::io;
using fusemix::test::halves_to_floats;
using fusemix::test::message_has;
using fusemix::test::random_halves;
using fusemix::test::write_f2;
using fusemix::test::temp_dir;
using fmatrix = io::matrix<float>;

fmatrix random_floats(std::size_t rows, std::size_t cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  fmatrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = nd(rng);
  return m;
}

/// Gathers `rows` of `z` into a matrix of T.
template <class T>
io::matrix<T> gathered(const io::mapped_latents& z, const std::vector<std::size_t>& rows) {
  io::matrix<T> out(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(z.cols()));
  z.gather(std::span<const std::size_t>(rows), std::span<T>(out.data(), static_cast<std::size_t>(out.size())));
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(mapped_latents)

BOOST_AUTO_TEST_CASE(rows_in_every_dtype_are_the_values_read_npy_gives) {
  temp_dir dir;
  const std::size_t n = 37, d = 13;
  const auto h = random_halves(n, d, 1);
  write_f2(dir / "h.npy", h, n, d);
  const fmatrix f = random_floats(n, d, 2);
  io::write_npy(dir / "f.npy", f);
  const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> g = random_floats(n, d, 3).cast<double>() / 3.0;
  io::write_npy(dir / "g.npy", g);
  const std::vector<std::size_t> rows{36, 0, 5, 5, 17, 1, 36};  // any order, repeats allowed
  for (const char* name : {"h.npy", "f.npy", "g.npy"}) {
    const io::mapped_latents z(dir / name);
    BOOST_TEST(z.rows() == n);
    BOOST_TEST(z.cols() == d);
    BOOST_TEST(z.shards() == 1u);
    const fmatrix whole_f = io::read_npy<float>(dir / name);
    const auto whole_d = io::read_npy<double>(dir / name);
    const fmatrix got_f = gathered<float>(z, rows);
    const auto got_d = gathered<double>(z, rows);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto r = static_cast<Eigen::Index>(rows[i]), k = static_cast<Eigen::Index>(i);
      BOOST_TEST((got_f.row(k).array() == whole_f.row(r).array()).all(), name << " row " << rows[i] << " as float");
      BOOST_TEST((got_d.row(k).array() == whole_d.row(r).array()).all(), name << " row " << rows[i] << " as double");
    }
  }
  BOOST_TEST(io::mapped_latents(dir / "h.npy").dtype() == "<f2");
  BOOST_TEST(io::mapped_latents(dir / "h.npy").data_bytes() == n * d * 2);
  // float16 converts exactly: the floats of the bit patterns.
  BOOST_TEST((io::read_npy_shards<float>({dir / "h.npy"}).array() == halves_to_floats(h, n, d).array()).all());
}

BOOST_AUTO_TEST_CASE(shards_concatenate_by_rows) {
  temp_dir dir;
  const std::size_t d = 6;
  const fmatrix whole = random_floats(50, d, 4);
  // 20 + 0 + 29 + 1 rows: boundaries in the middle, an empty shard, a one-row last shard.
  const std::vector<std::pair<Eigen::Index, Eigen::Index>> parts{{0, 20}, {20, 0}, {20, 29}, {49, 1}};
  std::vector<fs::path> files;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    files.push_back(dir / ("s" + std::to_string(i) + ".npy"));
    const fmatrix part = whole.middleRows(parts[i].first, parts[i].second);
    io::write_npy(files.back(), part);
  }
  const io::mapped_latents z(files);
  BOOST_TEST(z.rows() == 50u);
  BOOST_TEST(z.shards() == 4u);
  BOOST_TEST(z.file(2) == files[2]);
  std::vector<std::size_t> all(50);
  for (std::size_t i = 0; i < 50; ++i) all[i] = 49 - i;
  const fmatrix got = gathered<float>(z, all);
  BOOST_TEST((got.colwise().reverse().array() == whole.array()).all());
  BOOST_TEST((io::read_npy_shards<float>(files).array() == whole.array()).all());
  // Out-of-range indices are an error for gather, ignored by the prefetch hint.
  const std::vector<std::size_t> bad{3, 50};
  z.prefetch(std::span<const std::size_t>(bad));
  BOOST_CHECK_EXCEPTION(gathered<float>(z, bad), fusemix::shape_error, message_has({"gather", "row index out of range", "< 50", "50"}));
  std::vector<float> small(d);
  BOOST_CHECK_EXCEPTION(z.gather(std::span<const std::size_t>(all), std::span<float>(small)), fusemix::shape_error,
                        message_has({"gather", "rows.size() * cols()", "300", "6"}));
}

BOOST_AUTO_TEST_CASE(gather_bytes_copies_rows_as_the_files_store_them) {
  temp_dir dir;
  const std::size_t d = 5;
  const auto h = random_halves(30, d, 8);
  // Two float16 shards, 12 + 18 rows; the bytes of row r are bytes [2·d·r, 2·d·(r+1)) of the data.
  write_f2(dir / "a.npy", std::vector<std::uint16_t>(h.begin(), h.begin() + 12 * d), 12, d);
  write_f2(dir / "b.npy", std::vector<std::uint16_t>(h.begin() + 12 * d, h.end()), 18, d);
  const io::mapped_latents z({dir / "a.npy", dir / "b.npy"});
  BOOST_TEST(z.itemsize() == 2u);
  const std::vector<std::size_t> rows{29, 0, 11, 12, 12};
  std::vector<std::byte> got(rows.size() * d * 2);
  z.gather_bytes(std::span<const std::size_t>(rows), std::span<std::byte>(got));
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::size_t j = 0; j < d; ++j) {
      std::uint16_t v = 0;
      std::memcpy(&v, got.data() + (i * d + j) * 2, 2);
      BOOST_TEST(v == h[rows[i] * d + j], "row " << rows[i] << " column " << j);
    }
  BOOST_TEST(!z.float_view(), "float16 shards have no float view");
  std::vector<std::byte> small(7);
  BOOST_CHECK_EXCEPTION(z.gather_bytes(std::span<const std::size_t>(rows), std::span<std::byte>(small)),
                        fusemix::shape_error, message_has({"gather_bytes", "itemsize()", "50", "7"}));
  const std::vector<std::size_t> bad{30};
  std::vector<std::byte> one(d * 2);
  BOOST_CHECK_EXCEPTION(z.gather_bytes(std::span<const std::size_t>(bad), std::span<std::byte>(one)),
                        fusemix::shape_error, message_has({"gather_bytes", "row index out of range", "< 30"}));
}

BOOST_AUTO_TEST_CASE(one_float32_file_is_viewed_in_place) {
  temp_dir dir;
  const fmatrix f = random_floats(9, 4, 9);
  io::write_npy(dir / "f.npy", f);
  const io::mapped_latents z(dir / "f.npy");
  const auto v = z.float_view();
  BOOST_TEST_REQUIRE(v.has_value());
  BOOST_TEST((v->rows() == 9u && v->cols() == 4u));
  BOOST_TEST(std::equal(v->data(), v->data() + 36, f.data()));
  BOOST_TEST(!io::mapped_latents({dir / "f.npy", dir / "f.npy"}).float_view(), "two shards are not contiguous");
  io::write_npy(dir / "g.npy", Eigen::MatrixXd::Ones(3, 4));
  BOOST_TEST(!io::mapped_latents(dir / "g.npy").float_view(), "float64 is not float");
}

BOOST_AUTO_TEST_CASE(refuses_bad_shards_naming_the_file) {
  temp_dir dir;
  io::write_npy(dir / "a.npy", random_floats(4, 3, 5));
  io::write_npy(dir / "wide.npy", random_floats(4, 5, 6));
  io::write_npy(dir / "double.npy", Eigen::MatrixXd::Ones(4, 3));
  io::write_npy(dir / "empty.npy", fmatrix(0, 3));
  const std::vector<std::int64_t> ints{1, 2, 3};
  io::write_npy(dir / "ints.npy", std::span<const std::int64_t>(ints));
  std::string bytes = fusemix::test::read_bytes(dir / "a.npy");
  fusemix::test::write_bytes(dir / "short.npy", bytes.substr(0, bytes.size() - 5));
  using fusemix::io_error;
  const auto a = (dir / "a.npy").string();
  BOOST_CHECK_EXCEPTION(io::mapped_latents({dir / "a.npy", dir / "wide.npy"}), fusemix::shape_error,
                        message_has({"fusemix::io::mapped_latents", "wide.npy", "width of the first", "expected 3", "5"}));
  BOOST_CHECK_EXCEPTION(io::mapped_latents({dir / "a.npy", dir / "double.npy"}), io_error,
                        message_has({"double.npy", "'<f8' differs from '<f4'", "one dtype"}));
  BOOST_CHECK_EXCEPTION(io::mapped_latents({dir / "a.npy", dir / "short.npy"}), io_error,
                        message_has({"short.npy", "truncated"}));
  BOOST_CHECK_EXCEPTION(io::mapped_latents(dir / "ints.npy"), io_error, message_has({"ints.npy", "'<i8' not supported"}));
  BOOST_CHECK_EXCEPTION(io::mapped_latents(dir / "missing.npy"), io_error, message_has({"missing.npy", "cannot open"}));
  BOOST_CHECK_EXCEPTION(io::mapped_latents(dir / "empty.npy"), io_error,
                        message_has({"empty.npy", "expected a non-empty matrix, got shape (0, 3)"}));
  BOOST_CHECK_EXCEPTION(io::mapped_latents({dir / "empty.npy", dir / "empty.npy"}), io_error,
                        message_has({"empty.npy", "the other 1 shards hold no rows"}));
  BOOST_CHECK_EXCEPTION(io::mapped_latents(std::vector<fs::path>{}), fusemix::argument_error, message_has({"no files"}));
  // An empty shard among others is fine.
  BOOST_TEST(io::mapped_latents({dir / "empty.npy", dir / "a.npy"}).rows() == 4u);
}

BOOST_AUTO_TEST_CASE(a_shard_changed_during_a_run_is_an_error) {
  temp_dir dir;
  io::write_npy(dir / "a.npy", random_floats(8, 3, 7));
  io::write_npy(dir / "b.npy", random_floats(8, 3, 8));
  const std::vector<std::size_t> rows{0, 9};
  {
    const io::mapped_latents z({dir / "a.npy", dir / "b.npy"});
    BOOST_CHECK_NO_THROW(gathered<float>(z, rows));
    io::write_npy(dir / "b.npy", random_floats(8, 3, 9));  // same size, replaced (atomic write: a new inode)
    BOOST_CHECK_EXCEPTION(gathered<float>(z, rows), fusemix::io_error,
                          message_has({"b.npy", "changed while it was being read", "replaced"}));
  }
  {
    const io::mapped_latents z({dir / "a.npy", dir / "b.npy"});
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a later modification time
    fs::resize_file(dir / "a.npy", fs::file_size(dir / "a.npy") + 12);  // grown in place
    BOOST_CHECK_EXCEPTION(z.check_unchanged(), fusemix::io_error, message_has({"a.npy", "changed", "->", " bytes"}));
  }
  {
    const io::mapped_latents z({dir / "b.npy"});  // (a.npy has trailing bytes now)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    {  // rewritten in place: the same inode and size, a new modification time
      std::fstream f(dir / "b.npy", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(-4, std::ios::end);
      f.write("\0\0\0\0", 4);
    }
    BOOST_CHECK_EXCEPTION(z.check_unchanged(), fusemix::io_error,
                          message_has({"b.npy", "changed while it was being read (modified: same size, new modification time)"}));
  }
}

BOOST_AUTO_TEST_SUITE_END()
