// SPDX-License-Identifier: Apache-2.0
/// @file
/// libFuzzer target for the `.npy` reader (<fusemix/io/npy.hpp>).
///
/// Each input is read as a file by read_npy_header, read_npy<float>, read_npy<double>,
/// read_npy_vector<float> and read_npy_int64, once as a regular file and once through a pipe
/// (see fuzz_input.hpp), and as a regular file by io::mapped_latents (<fusemix/io/mapped_latents.hpp>). A malformed input must make a reader throw `fusemix::error`.
///
/// Findings: a crash, any other exception escaping (std::bad_alloc included: the readers must
/// check sizes against the file before allocating), an AddressSanitizer or UndefinedBehavior
/// Sanitizer report, a leak, a timeout, an allocation over -malloc_limit_mb, and a broken
/// invariant of a result, checked below: a read result has the shape its header states, the
/// float and double readers accept the same files and agree on the values, mapped_latents accepts
/// what read_npy accepts and gives its values, and a pipe gives the same answer as a regular file.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include <fusemix/io/mapped_latents.hpp>
#include <fusemix/io/npy.hpp>

#include "fuzz_input.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = fusemix::io;
using fusemix::fuzz::die;
using fusemix::fuzz::succeeds;

/// Sums land here so that every element is read (an out-of-bounds buffer would be caught).
volatile double sink = 0;

/// What every reader made of one input.
struct outcome {
  std::optional<io::npy_header> header;
  std::optional<io::matrix<float>> mf;
  std::optional<io::matrix<double>> md;
  std::optional<std::vector<float>> vf;
  std::optional<std::vector<std::int64_t>> vi;
  // io::mapped_latents, tried on regular files only (a pipe cannot be mapped)
  bool mapped_tried = false;
  std::optional<io::matrix<float>> mapped;
};

/// True if `a` and `b` are the same float (NaNs are equal to each other).
template <class T>
bool same(T a, T b) {
  return (std::isnan(a) && std::isnan(b)) ||
         (a == b && std::signbit(a) == std::signbit(b));
}

/// True if float `f` is `d` rounded to float, as read_npy<float> rounds `<f8`.
bool same_rounded(float f, double d) { return same(f, static_cast<float>(d)); }

template <class Derived>
void touch(const Eigen::MatrixBase<Derived>& m) {
  double s = 0;
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) s += static_cast<double>(m(i, j));
  sink = sink + s;
}

template <class T>
void touch(const std::vector<T>& v) {
  double s = 0;
  for (const T x : v) s += static_cast<double>(x);
  sink = sink + s;
}

/// Runs every reader, each on a fresh path from `with_path` (a pipe is drained by one reader).
template <class WithPath>
outcome read_all(WithPath&& with_path) {
  outcome o;
  with_path([&](const fs::path& p) { (void)succeeds([&] { o.header = io::read_npy_header(p); }); });
  with_path([&](const fs::path& p) { (void)succeeds([&] { o.mf = io::read_npy<float>(p); }); });
  with_path([&](const fs::path& p) { (void)succeeds([&] { o.md = io::read_npy<double>(p); }); });
  with_path(
      [&](const fs::path& p) { (void)succeeds([&] { o.vf = io::read_npy_vector<float>(p); }); });
  with_path([&](const fs::path& p) { (void)succeeds([&] { o.vi = io::read_npy_int64(p); }); });
  with_path([&](const fs::path& p) {
    if (!fs::is_regular_file(p)) return;
    o.mapped_tried = true;
    (void)succeeds([&] { o.mapped = io::to_matrix<float>(io::mapped_latents(p)); });
  });
  return o;
}

template <class T>
bool same_values(const T* a, const T* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!same(a[i], b[i])) return false;
  return true;
}

void check(const outcome& o) {
  if ((o.mf || o.md || o.vf || o.vi) && !o.header)
    die("a reader accepted a file whose header read_npy_header refuses");
  if (o.mf.has_value() != o.md.has_value())
    die("read_npy<float> and read_npy<double> disagree on whether the file is valid");
  if (o.mf) {
    touch(*o.mf);
    touch(*o.md);
    const std::vector<std::size_t> shape{static_cast<std::size_t>(o.mf->rows()),
                                         static_cast<std::size_t>(o.mf->cols())};
    if (shape != o.header->shape || o.md->rows() != o.mf->rows() || o.md->cols() != o.mf->cols())
      die("read_npy's matrix does not have the shape of the header");
    for (Eigen::Index i = 0; i < o.mf->size(); ++i)
      if (!same_rounded(o.mf->data()[i], o.md->data()[i]))
        die("read_npy<float> is not read_npy<double> rounded to float");
  }
  if (o.mapped_tried && o.mapped.has_value() != o.mf.has_value())
    die("mapped_latents and read_npy disagree on whether the file is valid");
  if (o.mapped && (o.mapped->rows() != o.mf->rows() || o.mapped->cols() != o.mf->cols() ||
                   !same_values(o.mapped->data(), o.mf->data(), static_cast<std::size_t>(o.mf->size()))))
    die("mapped_latents's rows are not read_npy's");
  if (o.vf) {
    touch(*o.vf);
    if (o.header->shape != std::vector<std::size_t>{o.vf->size()})
      die("read_npy_vector's length is not the header's shape");
  }
  if (o.vi) {
    touch(*o.vi);
    if (o.header->shape != std::vector<std::size_t>{o.vi->size()})
      die("read_npy_int64's length is not the header's shape");
  }
}

/// A regular file and a pipe with the same bytes must be accepted or refused alike, and give
/// the same values.
void check_same(const outcome& file, const outcome& pipe) {
  if (file.header.has_value() != pipe.header.has_value() || file.mf.has_value() != pipe.mf.has_value() ||
      file.md.has_value() != pipe.md.has_value() || file.vf.has_value() != pipe.vf.has_value() ||
      file.vi.has_value() != pipe.vi.has_value())
    die("a reader accepts the input as a regular file but not through a pipe, or vice versa");
  if (file.header && (file.header->shape != pipe.header->shape ||
                      file.header->descr != pipe.header->descr ||
                      file.header->data_offset != pipe.header->data_offset))
    die("read_npy_header differs between a regular file and a pipe");
  if (file.mf && (file.mf->rows() != pipe.mf->rows() || file.mf->cols() != pipe.mf->cols() ||
                  !same_values(file.mf->data(), pipe.mf->data(),
                               static_cast<std::size_t>(file.mf->size())) ||
                  !same_values(file.md->data(), pipe.md->data(),
                               static_cast<std::size_t>(file.md->size()))))
    die("read_npy differs between a regular file and a pipe");
  if (file.vf && (file.vf->size() != pipe.vf->size() ||
                  !same_values(file.vf->data(), pipe.vf->data(), file.vf->size())))
    die("read_npy_vector differs between a regular file and a pipe");
  if (file.vi && *file.vi != *pipe.vi) die("read_npy_int64 differs between a regular file and a pipe");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fusemix::fuzz::read_both_ways(
      data, size, [](auto&& with_path) { return read_all(with_path); }, check, check_same);
  return 0;
}
