// SPDX-License-Identifier: Apache-2.0
/// @file
/// Reading and writing NumPy `.npy` files: little-endian, C-order matrices, vectors and indices.
///
/// Reads format versions 1.0, 2.0 and 3.0 with element types `<f2`, `<f4` and `<f8` (and the
/// integer types for index arrays); writes version 1.0 with the byte-for-byte header layout of
/// `numpy.save`, so `np.load` reads the files and `np.save` of the same array gives the same bytes.
/// Writes are atomic (a temporary file renamed over the target).
#pragma once

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include <fusemix/core/concepts.hpp>
#include <fusemix/detail/file.hpp>
#include <fusemix/io/atomic_file.hpp>
#include <fusemix/core/error.hpp>

namespace fusemix::io {

/// The dynamic, row-major Eigen matrix the readers return (one sample per row).
template <Scalar T = float>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// What the header of a `.npy` file says, before any data is read.
struct npy_header {
  /// The dtype string as written, e.g. `"<f4"`.
  std::string descr;
  /// True for Fortran (column-major) order, which the readers refuse.
  bool fortran_order = false;
  /// The array's shape; empty for a 0-d array.
  std::vector<std::size_t> shape;
  /// The byte offset of the first data byte.
  std::size_t data_offset = 0;
  /// The major format version: 1, 2 or 3.
  int version = 1;
};

/// Reads and checks the header of a `.npy` file without reading the data.
///
/// @param path the file to read.
/// @returns the dtype, order, shape and data offset as the header states them (not checked
///          against the file size).
/// @throws io_error if the file cannot be opened, does not start with the NumPy magic string,
///         has an unsupported version or a malformed header dictionary.
///
/// **Example**
///
///     fusemix::io::npy_header h = fusemix::io::read_npy_header("emb.npy");
///     std::size_t n = h.shape.at(0);
[[nodiscard]] npy_header read_npy_header(const std::filesystem::path& path);

/// Reads a rank-2, C-order `.npy` array of `<f2`, `<f4` or `<f8` into a row-major matrix.
///
/// Half and single precision convert exactly; `<f8` read as float rounds to nearest.
///
/// @tparam T the element type of the result (float or double).
/// @param path the file to read.
/// @returns the matrix, shaped as the file says.
/// @throws io_error naming the file if it cannot be read, is not a `.npy` file, is big-endian,
///         Fortran-ordered, not of rank 2, has a zero dimension, a shape whose size overflows, an
///         unsupported dtype, or data shorter or longer than the shape needs.
///
/// **Example**
///
///     fusemix::io::matrix<float> z = fusemix::io::read_npy("image_latents.npy");
///     fusemix::io::matrix<double> y = fusemix::io::read_npy<double>("reference.npy");
template <Scalar T = float>
[[nodiscard]] matrix<T> read_npy(const std::filesystem::path& path);

/// Reads a rank-1 `.npy` array of `<f2`, `<f4` or `<f8` (length 0 allowed).
///
/// @tparam T the element type of the result.
/// @throws io_error as `read_npy` does, but requires rank 1.
///
/// **Example**
///
///     std::vector<double> v = fusemix::io::read_npy_vector<double>("loss_values.npy");
template <Scalar T = float>
[[nodiscard]] std::vector<T> read_npy_vector(const std::filesystem::path& path);

/// Reads a rank-1 `.npy` array of integers (`|i1`, `<i2`, `<i4`, `<i8`, `|u1`, `<u2`, `<u4`,
/// `<u8`), such as an index array, as `std::int64_t`.
///
/// @throws io_error as `read_npy_vector` does, and if a `<u8` value exceeds the int64 range.
///
/// **Example**
///
///     std::vector<std::int64_t> image_of_text = fusemix::io::read_npy_int64("text_to_image.npy");
[[nodiscard]] std::vector<std::int64_t> read_npy_int64(const std::filesystem::path& path);

/// Writes a float or double matrix as a rank-2, C-order `.npy` file (`<f4` or `<f8`), atomically.
///
/// Any Eigen expression is accepted; column-major inputs are written row by row so the file is
/// in C order. The header is the one `numpy.save` writes (version 1.0, padded with spaces to a
/// multiple of 64 bytes, ending in a newline). A column vector is written with shape (n, 1).
/// Empty matrices are written as numpy would, though `read_npy` refuses them. Elements may be
/// float (`<f4`), double (`<f8`) or std::int64_t (`<i8`, e.g. the indices of `top_k`).
///
/// @param path the file to create or replace.
/// @param m the matrix.
/// @throws io_error if the file cannot be written (the target is then unchanged).
///
/// **Example**
///
///     Eigen::MatrixXd a = Eigen::MatrixXd::Identity(3, 3);
///     fusemix::io::write_npy("eye.npy", a);  // np.load("eye.npy") == np.eye(3)
template <class Derived>
  requires std::same_as<typename Derived::Scalar, float> || std::same_as<typename Derived::Scalar, double> ||
           std::same_as<typename Derived::Scalar, std::int64_t>
void write_npy(const std::filesystem::path& path, const Eigen::MatrixBase<Derived>& m);

/// Writes a rank-2, C-order `.npy` file of `rows × cols` elements (`<f4`, `<f8` or `<i8`) a block
/// of rows at a time, atomically: the rows go to a temporary file beside the target, which takes
/// the target's name on `commit()` once every row has been appended. Destroyed without a commit
/// (an exception on the way), it removes the temporary and leaves the target as it was. For
/// results too large to hold (`fusemix embed` on millions of rows); `write_npy` is one block.
///
/// **Example**
///
///     fusemix::io::npy_writer<float> out("emb.npy", n, 512);
///     for (...) out.append(block);  // rows in order, any number per call
///     out.commit();                 // emb.npy appears, with all n rows
template <class S>
  requires std::same_as<S, float> || std::same_as<S, double> || std::same_as<S, std::int64_t>
class npy_writer {
 public:
  /// Creates the temporary file and writes the header. `where` names the public function in
  /// error messages.
  /// @throws io_error if the temporary cannot be created.
  npy_writer(const std::filesystem::path& path, std::size_t rows, std::size_t cols,
             std::string_view where = "fusemix::io::npy_writer");
  /// Appends the rows of `block` (any Eigen expression with `cols` columns).
  /// @throws shape_error if `block` has another width or would pass the declared rows; io_error on
  ///         a write error.
  template <class Derived>
  void append(const Eigen::MatrixBase<Derived>& block);
  /// Renames the finished file over the target.
  /// @throws shape_error if fewer rows than declared were appended; io_error if a step fails.
  void commit();
  [[nodiscard]] std::size_t rows_written() const noexcept { return written_; }

 private:
  std::string where_;
  std::size_t rows_, cols_, written_ = 0;
  atomic_file out_;
  std::vector<unsigned char> swapped_;  // a row in little-endian order, on a big-endian host
};

/// Writes integers as a rank-1 `<i8` `.npy` file, atomically.
///
/// @throws io_error if the file cannot be written.
///
/// **Example**
///
///     std::vector<std::int64_t> idx{0, 0, 1, 2};
///     fusemix::io::write_npy("text_to_image.npy", idx);
void write_npy(const std::filesystem::path& path, std::span<const std::int64_t> values);

}  // namespace fusemix::io

// ============================================================================================
// Definitions
// ============================================================================================

namespace fusemix::detail {

/// A decoded `descr`: the kind of element ('f', 'i' or 'u') and its size in bytes.
struct npy_dtype {
  char kind = 'f';
  std::size_t itemsize = 4;
};

/// Parses the Python literal dict of a `.npy` header. Written by hand because the header is a
/// Python `repr`, not JSON: single or double quotes, `True`/`False`, tuples, trailing commas, and
/// (from Python 2 writers) `3L` for long integers.
class npy_dict_parser {
 public:
  npy_dict_parser(const input_file& in, std::string_view text) : in_(in), s_(text) {}

  io::npy_header parse() {
    io::npy_header h;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    skip_space();
    expect('{', "the header dictionary must start with '{'");
    for (;;) {
      skip_space();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      const std::string key = parse_string("a quoted key");
      skip_space();
      expect(':', concat("expected ':' after key '", key, "'"));
      skip_space();
      if (key == "descr") {
        if (seen_descr) fail("duplicate key 'descr'");
        if (peek() != '\'' && peek() != '"')
          fail("'descr' is not a string (structured dtypes are not supported)");
        h.descr = parse_string("the descr string");
        seen_descr = true;
      } else if (key == "fortran_order") {
        if (seen_order) fail("duplicate key 'fortran_order'");
        h.fortran_order = parse_bool();
        seen_order = true;
      } else if (key == "shape") {
        if (seen_shape) fail("duplicate key 'shape'");
        h.shape = parse_shape();
        seen_shape = true;
      } else {
        fail(concat("unexpected key '", key, "' (expected descr, fortran_order and shape)"));
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != '}') {
        fail("expected ',' or '}' after a value");
      }
    }
    skip_space();
    if (pos_ != s_.size()) fail("unexpected text after the closing '}'");
    if (!seen_descr) fail("missing key 'descr'");
    if (!seen_order) fail("missing key 'fortran_order'");
    if (!seen_shape) fail("missing key 'shape'");
    return h;
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    in_.fail(concat("malformed header: ", what, " at offset ", pos_, " of \"", s_, "\""));
  }
  [[nodiscard]] char peek() const noexcept { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_space() noexcept {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' ||
                                s_[pos_] == '\r'))
      ++pos_;
  }
  void expect(char c, std::string_view what) {
    if (peek() != c) fail(what);
    ++pos_;
  }
  std::string parse_string(std::string_view what) {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail(concat("expected ", what));
    const std::size_t start = ++pos_;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\') fail("escape sequences in strings are not supported");
      ++pos_;
    }
    if (pos_ == s_.size()) fail("unterminated string");
    return std::string(s_.substr(start, pos_++ - start));
  }
  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("'fortran_order' must be True or False");
  }
  std::size_t parse_dim() {
    if (peek() < '0' || peek() > '9') fail("a shape entry is not a non-negative integer");
    std::size_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const auto digit = static_cast<std::size_t>(peek() - '0');
      if (v > (std::numeric_limits<std::size_t>::max() - digit) / 10)
        fail("a shape entry is too large");
      v = v * 10 + digit;
      ++pos_;
    }
    if (peek() == 'L' || peek() == 'l') ++pos_;
    return v;
  }
  std::vector<std::size_t> parse_shape() {
    const char open = peek();
    if (open != '(' && open != '[') fail("'shape' must be a tuple of integers");
    const char close = open == '(' ? ')' : ']';
    ++pos_;
    std::vector<std::size_t> shape;
    for (;;) {
      skip_space();
      if (peek() == close) {
        ++pos_;
        return shape;
      }
      shape.push_back(parse_dim());
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != close) {
        fail("expected ',' or the end of the shape");
      }
    }
  }

  const input_file& in_;
  std::string_view s_;
  std::size_t pos_ = 0;
};

/// Reads the magic string, version and header of an open `.npy` file, leaving the file at the
/// first data byte.
inline io::npy_header npy_read_header(input_file& in) {
  // The header may claim up to 4 GiB; a real one is a few hundred bytes. The cap keeps a corrupt
  // length field from allocating gigabytes before the truncation is noticed.
  constexpr std::size_t max_header = std::size_t{1} << 20;
  unsigned char prefix[8];
  const std::size_t got = in.read_some(prefix, sizeof prefix);
  static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (got < sizeof magic || std::memcmp(prefix, magic, sizeof magic) != 0)
    in.fail("not a .npy file (bad magic string; expected \"\\x93NUMPY\")");
  if (got < sizeof prefix)
    in.fail(concat("truncated: expected 8 bytes of magic and version, found ", got));
  const int major = prefix[6], minor = prefix[7];
  if (major < 1 || major > 3 || minor != 0)
    in.fail(concat("unsupported .npy format version ", major, ".", minor,
                   " (expected 1.0, 2.0 or 3.0)"));
  std::size_t header_len = 0;
  if (major == 1) {
    unsigned char len[2];
    in.read_exact(len, sizeof len, "header length");
    header_len = load_le<std::uint16_t>(len);
  } else {
    unsigned char len[4];
    in.read_exact(len, sizeof len, "header length");
    header_len = load_le<std::uint32_t>(len);
  }
  if (header_len > max_header)
    in.fail(concat("header length ", header_len, " exceeds the limit of ", max_header, " bytes"));
  std::string text(header_len, '\0');
  in.read_exact(text.data(), header_len, "header");
  io::npy_header h = npy_dict_parser(in, text).parse();
  h.data_offset = static_cast<std::size_t>(in.position());
  h.version = major;
  return h;
}

/// Decodes `descr`, refusing big-endian and unknown types.
inline npy_dtype npy_parse_descr(const input_file& in, std::string_view descr) {
  if (descr.size() < 3) in.fail(concat("dtype '", descr, "' not supported"));
  const char order = descr[0];
  const char kind = descr[1];
  const std::string_view size_text = descr.substr(2);
  std::size_t itemsize = 0;
  if (size_text == "1") itemsize = 1;
  else if (size_text == "2") itemsize = 2;
  else if (size_text == "4") itemsize = 4;
  else if (size_text == "8") itemsize = 8;
  const bool known =
      (kind == 'f' && itemsize >= 2) || ((kind == 'i' || kind == 'u') && itemsize >= 1);
  if (!known || (order != '<' && order != '>' && order != '=' && order != '|'))
    in.fail(concat("dtype '", descr, "' not supported; expected a float (<f2, <f4, <f8) "
                   "or integer (<i4, <i8, ...) type"));
  const bool big = order == '>' || (order == '=' && std::endian::native == std::endian::big);
  if (big && itemsize > 1)
    in.fail(concat("dtype '", descr, "' is big-endian; big-endian data is not supported "
                   "(convert with arr.astype(arr.dtype.newbyteorder('<')))"));
  if (order == '|' && itemsize > 1)
    in.fail(concat("dtype '", descr, "' has byte order '|', which is only valid for 1-byte types"));
  return {kind, itemsize};
}

/// "(a, b, c)" in Python's tuple notation, as numpy prints shapes.
inline std::string npy_shape_repr(const std::vector<std::size_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

/// Checks order and rank, then returns the element count, refusing a product that overflows or
/// that cannot be addressed by `Eigen::Index` in bytes.
inline std::size_t npy_checked_count(const input_file& in, const io::npy_header& h,
                                     const npy_dtype& dt, std::size_t rank) {
  if (h.fortran_order)
    in.fail("fortran_order is True; only C-order arrays are supported "
            "(save np.ascontiguousarray(arr))");
  if (h.shape.size() != rank)
    in.fail(concat("expected a rank-", rank, " array, got shape ", npy_shape_repr(h.shape)));
  constexpr auto limit = static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());
  std::size_t count = 1;
  for (const std::size_t d : h.shape) {
    if (d != 0 && count > limit / d / dt.itemsize)
      in.fail(concat("shape ", npy_shape_repr(h.shape), " is too large (its byte size overflows)"));
    count *= d;
  }
  return count;
}

/// Checks that the file holds exactly `bytes` bytes after the header (regular files only; for
/// pipes `npy_read_data` detects truncation and `npy_expect_end` the trailing bytes).
inline void npy_check_data_size(const input_file& in, const io::npy_header& h, std::size_t bytes) {
  if (!in.is_regular()) return;
  const std::uint64_t found = in.size() > h.data_offset ? in.size() - h.data_offset : 0;
  if (found < bytes)
    in.fail(concat("truncated: expected ", bytes, " bytes of data, found ", found));
  if (found > bytes)
    in.fail(concat("expected ", bytes, " bytes of data, found ", found, " (",
                   found - bytes, " trailing bytes)"));
}

inline void npy_expect_end(input_file& in, std::size_t bytes) {
  if (in.is_regular()) return;
  char extra = 0;
  if (in.read_some(&extra, 1) != 0)
    in.fail(concat("expected ", bytes, " bytes of data, found more (trailing bytes)"));
}

/// Decodes `n` little-endian floats of 2, 4 or 8 bytes (`itemsize`) at `p` into `out`: half and
/// single precision exactly, double rounded to `T`. (Also the row decoder of io::mapped_latents.)
template <std::floating_point T>
void npy_decode_floats(std::size_t itemsize, const unsigned char* p, T* out, std::size_t n) noexcept {
  if (itemsize == 2) {
    for (std::size_t i = 0; i < n; ++i, p += 2) out[i] = static_cast<T>(half_to_float(load_le<std::uint16_t>(p)));
  } else if (itemsize == 4) {
    for (std::size_t i = 0; i < n; ++i, p += 4) out[i] = static_cast<T>(std::bit_cast<float>(load_le<std::uint32_t>(p)));
  } else {
    for (std::size_t i = 0; i < n; ++i, p += 8) out[i] = static_cast<T>(std::bit_cast<double>(load_le<std::uint64_t>(p)));
  }
}

/// Decodes `n` little-endian elements of type `dt` at `p` into `out`; `first` is the index of
/// the first one in the array (for messages).
template <class T>
void npy_decode_values(const input_file& in, const npy_dtype& dt, const unsigned char* p, T* out,
                       std::size_t n, std::size_t first) {
  if constexpr (std::is_floating_point_v<T>) {
    npy_decode_floats(dt.itemsize, p, out, n);
  } else {
    static_assert(std::same_as<T, std::int64_t>);
    for (std::size_t i = 0; i < n; ++i, p += dt.itemsize) {
      std::uint64_t u = 0;
      switch (dt.itemsize) {
        case 1: u = p[0]; break;
        case 2: u = load_le<std::uint16_t>(p); break;
        case 4: u = load_le<std::uint32_t>(p); break;
        default: u = load_le<std::uint64_t>(p); break;
      }
      if (dt.kind == 'i') {
        // Sign-extend from the stored width; the shifts are on unsigned values, so defined.
        const unsigned shift = static_cast<unsigned>(64 - 8 * dt.itemsize);
        out[i] = static_cast<std::int64_t>(u << shift) >> shift;
      } else {
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          in.fail(concat("value ", u, " at index ", first + i, " does not fit in int64"));
        out[i] = static_cast<std::int64_t>(u);
      }
    }
  }
}

/// Decodes `count` little-endian elements of type `dt` from the file into `out`.
template <class T>
void npy_read_values(input_file& in, const npy_dtype& dt, T* out, std::size_t count) {
  if constexpr (std::is_floating_point_v<T> && std::endian::native == std::endian::little) {
    if (dt.kind == 'f' && dt.itemsize == sizeof(T) &&
        (std::same_as<T, float> || std::same_as<T, double>)) {
      in.read_exact(out, count * sizeof(T), "data");  // already in the right representation
      return;
    }
  }
  constexpr std::size_t chunk_bytes = std::size_t{1} << 16;
  std::vector<unsigned char> buf(chunk_bytes);
  const std::size_t per_chunk = chunk_bytes / dt.itemsize;
  for (std::size_t done = 0; done < count;) {
    const std::size_t n = std::min(per_chunk, count - done);
    in.read_exact(buf.data(), n * dt.itemsize, "data");
    npy_decode_values(in, dt, buf.data(), out + done, n, done);
    done += n;
  }
}

/// Reads the `count` elements of `dt` after the header into the buffer that `alloc()` returns.
///
/// A regular file's size has been checked against the shape (`npy_check_data_size`), so the
/// buffer is allocated first and filled straight from the file. A pipe has no size up front: its
/// bytes are read into memory first, growing as they arrive, and `alloc` is only called once they
/// are all there. Otherwise a header claiming a huge shape would be allocated before the data
/// ran out (std::bad_alloc for a few hundred bytes; found by tests/fuzz/fuzz_npy.cpp).
template <class T, class Alloc>
void npy_read_data(input_file& in, const npy_dtype& dt, std::size_t count, Alloc&& alloc) {
  if (in.is_regular()) {
    npy_read_values(in, dt, alloc(), count);
    return;
  }
  const std::size_t bytes = count * dt.itemsize;
  const std::string data = in.read_exact_string(bytes, "data");
  npy_expect_end(in, bytes);
  npy_decode_values(in, dt, reinterpret_cast<const unsigned char*>(data.data()), alloc(), count,
                    0);
}

/// Reads a float `.npy` file of the given rank into `out` (resized by `alloc(shape)`).
template <class T, class Alloc>
void npy_read_float_array(std::string_view where, const std::filesystem::path& path,
                          std::size_t rank, Alloc&& alloc) {
  input_file in(where, path);
  const io::npy_header h = npy_read_header(in);
  const npy_dtype dt = npy_parse_descr(in, h.descr);
  if (dt.kind != 'f')
    in.fail(concat("dtype '", h.descr, "' not supported; expected '<f2', '<f4' or '<f8'"));
  const std::size_t count = npy_checked_count(in, h, dt, rank);
  if (rank == 2 && count == 0)
    in.fail(concat("expected a non-empty matrix, got shape ", npy_shape_repr(h.shape)));
  npy_check_data_size(in, h, count * dt.itemsize);
  npy_read_data<T>(in, dt, count, [&]() -> T* { return alloc(h.shape); });
}

/// The header `numpy.save` writes for a C-order array (numpy >= 1.23 layout): the sorted dict,
/// spaces so the first dimension can grow to 21 digits in place, then spaces to a multiple of
/// 64 bytes and a newline. Version 2.0 only if the header would not fit a 16-bit length.
inline std::string npy_header_bytes(std::string_view descr, const std::vector<std::size_t>& shape) {
  constexpr std::size_t align = 64, growth_digits = 21;
  std::string dict = concat("{'descr': '", descr, "', 'fortran_order': False, 'shape': ",
                            npy_shape_repr(shape), ", }");
  if (!shape.empty()) {
    const std::size_t digits = std::to_string(shape[0]).size();
    if (digits < growth_digits) dict.append(growth_digits - digits, ' ');
  }
  const std::size_t hlen = dict.size() + 1;  // + '\n'
  std::size_t prefix = 10;
  std::size_t pad = align - (prefix + hlen) % align;
  const bool v2 = hlen + pad > 0xffff;
  if (v2) {
    prefix = 12;
    pad = align - (prefix + hlen) % align;
  }
  std::string out = "\x93NUMPY";
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  unsigned char len[4];
  if (v2) {
    store_le(len, static_cast<std::uint32_t>(hlen + pad));
    out.append(reinterpret_cast<const char*>(len), 4);
  } else {
    store_le(len, static_cast<std::uint16_t>(hlen + pad));
    out.append(reinterpret_cast<const char*>(len), 2);
  }
  out += dict;
  out.append(pad, ' ');
  out += '\n';
  return out;
}

}  // namespace fusemix::detail

namespace fusemix::io {

inline npy_header read_npy_header(const std::filesystem::path& path) {
  detail::input_file in("fusemix::io::read_npy_header", path);
  return detail::npy_read_header(in);
}

template <Scalar T>
matrix<T> read_npy(const std::filesystem::path& path) {
  matrix<T> m;
  detail::npy_read_float_array<T>("fusemix::io::read_npy", path, 2,
                                  [&](const std::vector<std::size_t>& shape) {
                                    m.resize(static_cast<Eigen::Index>(shape[0]),
                                             static_cast<Eigen::Index>(shape[1]));
                                    return m.data();
                                  });
  return m;
}

template <Scalar T>
std::vector<T> read_npy_vector(const std::filesystem::path& path) {
  std::vector<T> v;
  detail::npy_read_float_array<T>("fusemix::io::read_npy_vector", path, 1,
                                  [&](const std::vector<std::size_t>& shape) {
                                    v.resize(shape[0]);
                                    return v.data();
                                  });
  return v;
}

inline std::vector<std::int64_t> read_npy_int64(const std::filesystem::path& path) {
  detail::input_file in("fusemix::io::read_npy_int64", path);
  const npy_header h = detail::npy_read_header(in);
  const detail::npy_dtype dt = detail::npy_parse_descr(in, h.descr);
  if (dt.kind != 'i' && dt.kind != 'u')
    in.fail(concat("dtype '", h.descr, "' not supported; expected an integer type "
                           "such as '<i8' or '<i4'"));
  const std::size_t count = detail::npy_checked_count(in, h, dt, 1);
  detail::npy_check_data_size(in, h, count * dt.itemsize);
  std::vector<std::int64_t> v;
  detail::npy_read_data<std::int64_t>(in, dt, count, [&] {
    v.resize(count);
    return v.data();
  });
  return v;
}

template <class S>
  requires std::same_as<S, float> || std::same_as<S, double> || std::same_as<S, std::int64_t>
npy_writer<S>::npy_writer(const std::filesystem::path& path, std::size_t rows, std::size_t cols, std::string_view where)
    : where_(where), rows_(rows), cols_(cols), out_(where, path) {
  out_.write(detail::npy_header_bytes(std::is_integral_v<S> ? "<i8" : sizeof(S) == 4 ? "<f4" : "<f8", {rows, cols}));
}

template <class S>
  requires std::same_as<S, float> || std::same_as<S, double> || std::same_as<S, std::int64_t>
template <class Derived>
void npy_writer<S>::append(const Eigen::MatrixBase<Derived>& block) {
  static_assert(std::same_as<typename Derived::Scalar, S>, "append rows of the file's element type");
  // Ref binds row-major storage directly and evaluates anything else (column-major matrices,
  // expressions) into a row-major temporary, so each row below is contiguous.
  const Eigen::Ref<const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> rm(block);
  const auto rows = static_cast<std::size_t>(rm.rows());
  if (rows == 0) return;
  if (static_cast<std::size_t>(rm.cols()) != cols_)
    throw_shape_error(where_, "the rows must have the file's width", cols_, rm.cols());
  if (rows > rows_ - written_)
    throw_shape_error(where_, "more rows than the file was declared with", concat("<= ", rows_ - written_), rows);
  for (std::size_t i = 0; i < rows; ++i) {
    const S* row = rm.row(static_cast<Eigen::Index>(i)).data();
    if constexpr (std::endian::native == std::endian::little) {
      out_.write(row, cols_ * sizeof(S));
    } else {
      using U = std::conditional_t<sizeof(S) == 4, std::uint32_t, std::uint64_t>;
      swapped_.resize(cols_ * sizeof(S));
      for (std::size_t j = 0; j < cols_; ++j) detail::store_le(swapped_.data() + j * sizeof(S), std::bit_cast<U>(row[j]));
      out_.write(swapped_.data(), swapped_.size());
    }
  }
  written_ += rows;
}

template <class S>
  requires std::same_as<S, float> || std::same_as<S, double> || std::same_as<S, std::int64_t>
void npy_writer<S>::commit() {
  if (written_ != rows_) throw_shape_error(where_, "every declared row must be written before commit", rows_, written_);
  out_.commit();
}

template <class Derived>
  requires std::same_as<typename Derived::Scalar, float> || std::same_as<typename Derived::Scalar, double> ||
           std::same_as<typename Derived::Scalar, std::int64_t>
void write_npy(const std::filesystem::path& path, const Eigen::MatrixBase<Derived>& m) {
  npy_writer<typename Derived::Scalar> out(path, static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols()),
                                           "fusemix::io::write_npy");
  out.append(m);
  out.commit();
}

inline void write_npy(const std::filesystem::path& path, std::span<const std::int64_t> values) {
  const std::string header = detail::npy_header_bytes("<i8", {values.size()});
  io::atomic_write("fusemix::io::write_npy", path, [&](io::atomic_file& out) {
    out.write(header);
    if constexpr (std::endian::native == std::endian::little) {
      out.write(values.data(), values.size_bytes());
    } else {
      unsigned char b[8];
      for (const std::int64_t v : values) {
        detail::store_le(b, static_cast<std::uint64_t>(v));
        out.write(b, sizeof b);
      }
    }
  });
}

}  // namespace fusemix::io
