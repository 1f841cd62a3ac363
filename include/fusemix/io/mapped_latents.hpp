// SPDX-License-Identifier: Apache-2.0
/// @file
/// Latents read in place from `.npy` files: one file or a list of shards, memory-mapped and
/// concatenated by rows, in float16, float32 or float64, gathered by row index into buffers of
/// the compute type. A `LatentSource`: the trainer reads each batch's rows from it, so a data set
/// larger than memory trains with only the batch in anonymous memory.
#pragma once

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fusemix/backend/cpu/parallel.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/detail/file.hpp>
#include <fusemix/io/npy.hpp>

namespace fusemix::io {

/// Rows of latents in one or more `.npy` files, read in place.
///
/// Each file (a *shard*) must be a rank-2, C-order, little-endian array of `<f2`, `<f4` or `<f8`;
/// all shards must have the same width and dtype; the rows are the shards' rows in the order
/// given (shards of 0 rows are allowed, the total must not be 0). The files are memory-mapped
/// read-only, never copied whole: `gather` decodes only the rows asked for (float16 → float is
/// exact, so a float16 shard gives the bits of a float32 file holding the same rounded values).
/// The mapped pages are the page cache's, not the process's: they count as file-backed resident
/// memory, which the kernel drops under pressure, not as anonymous memory.
///
/// Each file's identity (device, inode, size, modification time) is recorded when it is opened,
/// and every `gather` checks it: a shard rewritten, replaced or truncated during a run is an
/// `io_error` naming the file, not a silent change of data. (Truncating a file while a gather is
/// reading it is still undefined: the process gets SIGBUS. Leave shards alone while they are read.)
///
/// **Example**
///
///     // shards written from Python: np.save(f"x_{i:03}.npy", chunk.astype(np.float16))
///     fusemix::io::mapped_latents zx({"x_000.npy", "x_001.npy", "x_002.npy"});
///     std::vector<float> batch(2 * zx.cols());
///     const std::size_t rows[] = {7, 123456};
///     zx.gather(std::span<const std::size_t>(rows), std::span<float>(batch));
class mapped_latents {
 public:
  /// No rows.
  mapped_latents() = default;
  /// One file. @throws as the list form.
  explicit mapped_latents(const std::filesystem::path& file)
      : mapped_latents(std::vector<std::filesystem::path>{file}) {}
  /// The shards `files`, concatenated by rows.
  /// @throws io_error naming the file if one cannot be opened or mapped, is not a `.npy` file,
  ///         is not a rank-2 float array, is truncated or has trailing bytes, or has another
  ///         dtype than the first, or if all the shards together hold no rows; shape_error if a
  ///         width differs from the first shard's; argument_error if the list is empty.
  explicit mapped_latents(std::vector<std::filesystem::path> files);
  mapped_latents(mapped_latents&& o) noexcept : shards_(std::move(o.shards_)), cols_(o.cols_), rows_(o.rows_) {
    o.shards_.clear();
  }
  mapped_latents& operator=(mapped_latents&& o) noexcept {
    std::swap(shards_, o.shards_);
    std::swap(cols_, o.cols_);
    std::swap(rows_, o.rows_);
    return *this;
  }
  mapped_latents(const mapped_latents&) = delete;
  mapped_latents& operator=(const mapped_latents&) = delete;
  ~mapped_latents() { unmap(); }

  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
  [[nodiscard]] std::size_t shards() const noexcept { return shards_.size(); }
  [[nodiscard]] const std::filesystem::path& file(std::size_t shard) const { return shards_.at(shard).path; }
  /// The dtype as the files state it: `"<f2"`, `"<f4"` or `"<f8"` (empty with no shards).
  [[nodiscard]] std::string_view dtype() const noexcept;
  /// Bytes of data in all shards (what reading every row once moves).
  [[nodiscard]] std::uint64_t data_bytes() const noexcept { return std::uint64_t{rows_} * cols_ * itemsize(); }
  /// Bytes per value in the files: 2, 4 or 8.
  [[nodiscard]] std::size_t itemsize() const noexcept { return itemsize_; }

  /// Writes row `rows[i]` to `out[i * cols() ...]`, converted to `T`.
  /// @throws shape_error if `out` does not hold `rows.size() * cols()` values or a row is out of
  ///         range; io_error if a shard changed on disk since it was opened.
  template <Scalar T>
  void gather(std::span<const std::size_t> rows, std::span<T> out) const;
  /// Copies row `rows[i]`'s bytes as the files hold them (little-endian, `itemsize()` bytes per
  /// value, no conversion) to `out[i * cols() * itemsize() ...]`: what a store of the values in
  /// their file precision (e.g. `cuda::resident_latents`) is filled from.
  /// @throws as `gather`.
  void gather_bytes(std::span<const std::size_t> rows, std::span<std::byte> out) const;
  /// The rows in place, as float: when one shard holds them all as float32 (and the host is
  /// little-endian, as x86 and ARM are). What a reader that visits every row many times (the k-DPP
  /// selector) uses instead of a copy: the pages stay the page cache's. Empty otherwise. Valid
  /// while this object lives; `check_unchanged` applies as to `gather`.
  [[nodiscard]] std::optional<latent_view<float>> float_view() const noexcept {
    if (shards_.size() != 1 || itemsize_ != 4 || std::endian::native != std::endian::little) return std::nullopt;
    const shard& s = shards_.front();
    if ((s.data_offset % alignof(float)) != 0) return std::nullopt;  // numpy aligns the data to 64 bytes
    return latent_view<float>(reinterpret_cast<const float*>(s.map + s.data_offset), rows_, cols_);
  }
  /// Tells the kernel that `rows` are read next (`madvise(MADV_WILLNEED)`), so their pages are
  /// read from disk in the background while the current step computes. Indices out of range
  /// are ignored; never throws.
  void prefetch(std::span<const std::size_t> rows) const noexcept;
  /// @throws io_error naming the first shard whose device, inode, size or modification time is
  ///         not what it was when it was opened.
  void check_unchanged() const;

 private:
  struct shard {
    std::filesystem::path path;
    const unsigned char* map = nullptr;  // the whole file
    std::size_t map_bytes = 0, data_offset = 0, rows = 0, first_row = 0;
    struct stat identity {};
  };
  [[nodiscard]] const shard& shard_of(std::size_t row) const noexcept;
  void unmap() noexcept;

  std::vector<shard> shards_;
  std::size_t cols_ = 0, rows_ = 0, itemsize_ = 0;
};

static_assert(LatentSource<mapped_latents, float> && LatentSource<mapped_latents, double>);

/// Every row of `z` in one row-major matrix of `T` (for data that fits in memory).
/// @throws as `gather`.
template <Scalar T = float>
[[nodiscard]] matrix<T> to_matrix(const mapped_latents& z);

/// Reads the shards `files` (concatenated by rows, as `mapped_latents` reads them) into one
/// row-major matrix of `T`.
/// @throws as `mapped_latents`'s constructor.
///
/// **Example**
///
///     fusemix::io::matrix<float> z = fusemix::io::read_npy_shards({"q_0.npy", "q_1.npy"});
template <Scalar T = float>
[[nodiscard]] matrix<T> read_npy_shards(std::vector<std::filesystem::path> files) {
  return to_matrix<T>(mapped_latents(std::move(files)));
}

// ============================================================================================
// Definitions
// ============================================================================================

namespace detail_mapped {

inline bool same_file_state(const struct stat& a, const struct stat& b) noexcept {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace detail_mapped

inline mapped_latents::mapped_latents(std::vector<std::filesystem::path> files) {
  constexpr std::string_view where = "fusemix::io::mapped_latents";
  if (files.empty()) throw_expected<argument_error>(where, "no files given", "at least one .npy file", 0);
  std::string first_descr;
  try {
    for (auto& path : files) {
      detail::input_file in(where, path);
      const npy_header h = detail::npy_read_header(in);
      const detail::npy_dtype dt = detail::npy_parse_descr(in, h.descr);
      if (dt.kind != 'f') in.fail(concat("dtype '", h.descr, "' not supported; expected '<f2', '<f4' or '<f8'"));
      const std::size_t count = detail::npy_checked_count(in, h, dt, 2);
      if (!in.is_regular()) in.fail("not a regular file (a pipe or device cannot be memory-mapped)");
      detail::npy_check_data_size(in, h, count * dt.itemsize);
      const std::size_t width = h.shape[1];
      if (shards_.empty()) {
        if (width == 0) in.fail(concat("expected a non-empty matrix, got shape ", detail::npy_shape_repr(h.shape)));
        cols_ = width;
        itemsize_ = dt.itemsize;
        first_descr = h.descr;
      } else if (width != cols_) {
        throw_shape_error(where, concat(path, ": every shard must have the width of the first (", shards_.front().path, ")"),
                          cols_, width);
      } else if (dt.itemsize != itemsize_) {
        in.fail(concat("dtype '", h.descr, "' differs from '", first_descr, "' of the first shard (",
                       shards_.front().path, "); write every shard with one dtype"));
      }
      shard s;
      s.path = std::move(path);
      s.data_offset = h.data_offset;
      s.rows = h.shape[0];
      s.first_row = rows_;
      if (::fstat(in.descriptor(), &s.identity) != 0) in.fail_errno("cannot stat", errno);
      s.map_bytes = static_cast<std::size_t>(in.size());
      void* p = ::mmap(nullptr, s.map_bytes, PROT_READ, MAP_SHARED, in.descriptor(), 0);
      if (p == MAP_FAILED) in.fail_errno("cannot memory-map", errno);
      // A batch is a random set of rows: read only the pages asked for, no read-ahead around them.
      ::madvise(p, s.map_bytes, MADV_RANDOM);
      s.map = static_cast<const unsigned char*>(p);
      rows_ += s.rows;
      shards_.push_back(std::move(s));
    }
  } catch (...) {
    unmap();
    throw;
  }
  if (rows_ == 0) {
    const std::filesystem::path first = shards_.front().path;
    const std::size_t n = shards_.size();
    unmap();
    throw_io_error(where, first, n == 1 ? concat("expected a non-empty matrix, got shape (0, ", cols_, ")")
                                        : concat("this and the other ", n - 1, " shards hold no rows"));
  }
}

inline void mapped_latents::unmap() noexcept {
  for (shard& s : shards_)
    if (s.map != nullptr) ::munmap(const_cast<unsigned char*>(s.map), s.map_bytes);
  shards_.clear();
}

inline std::string_view mapped_latents::dtype() const noexcept {
  switch (itemsize_) {
    case 2: return "<f2";
    case 4: return "<f4";
    case 8: return "<f8";
    default: return "";
  }
}

inline const mapped_latents::shard& mapped_latents::shard_of(std::size_t row) const noexcept {
  // The last shard whose first row is <= row (shards of 0 rows are skipped by taking the last).
  const auto it = std::upper_bound(shards_.begin(), shards_.end(), row,
                                   [](std::size_t r, const shard& s) { return r < s.first_row; });
  return *(it - 1);
}

inline void mapped_latents::check_unchanged() const {
  for (const shard& s : shards_) {
    struct stat now {};
    if (::stat(s.path.c_str(), &now) != 0)
      throw_io_error("fusemix::io::mapped_latents", s.path,
                     concat("cannot stat a shard that was open at the start of the run: ", std::strerror(errno)));
    if (!detail_mapped::same_file_state(now, s.identity)) {
      // Say what changed: a file rewritten in place with the same size shows only its time.
      const std::string what = now.st_dev != s.identity.st_dev || now.st_ino != s.identity.st_ino
                                   ? std::string("replaced by another file")
                               : now.st_size != s.identity.st_size
                                   ? concat("size ", s.identity.st_size, " -> ", now.st_size, " bytes")
                                   : std::string("modified: same size, new modification time");
      throw_io_error("fusemix::io::mapped_latents", s.path,
                     concat("the file changed while it was being read (", what,
                            "); shards must stay unchanged during a run"));
    }
  }
}

template <Scalar T>
void mapped_latents::gather(std::span<const std::size_t> rows, std::span<T> out) const {
  constexpr std::string_view where = "fusemix::io::mapped_latents::gather";
  if (out.size() != rows.size() * cols_)
    throw_shape_error(where, "the output must hold rows.size() * cols() values", rows.size() * cols_, out.size());
  for (const std::size_t r : rows)
    if (r >= rows_) throw_shape_error(where, "row index out of range", concat("< ", rows_), r);
  check_unchanged();
  const std::size_t row_bytes = cols_ * itemsize_;
  // A row per piece, on the CPU backend's threads: a row's values do not depend on who copies
  // them, and several threads keep several page faults (disk reads) in flight at once.
  cpu::for_each_piece(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(cols_), [&](Eigen::Index i) {
    const std::size_t r = rows[static_cast<std::size_t>(i)];
    T* dst = out.data() + static_cast<std::size_t>(i) * cols_;
    const shard& s = shard_of(r);
    const unsigned char* p = s.map + s.data_offset + (r - s.first_row) * row_bytes;
    if (itemsize_ == sizeof(T) && std::endian::native == std::endian::little) {
      std::memcpy(dst, p, row_bytes);  // already in the compute type's representation
    } else {
      detail::npy_decode_floats(itemsize_, p, dst, cols_);  // the decoding read_npy uses
    }
  });
}

inline void mapped_latents::gather_bytes(std::span<const std::size_t> rows, std::span<std::byte> out) const {
  constexpr std::string_view where = "fusemix::io::mapped_latents::gather_bytes";
  const std::size_t row_bytes = cols_ * itemsize_;
  if (out.size() != rows.size() * row_bytes)
    throw_shape_error(where, "the output must hold rows.size() * cols() * itemsize() bytes", rows.size() * row_bytes,
                      out.size());
  for (const std::size_t r : rows)
    if (r >= rows_) throw_shape_error(where, "row index out of range", concat("< ", rows_), r);
  check_unchanged();
  std::byte* dst = out.data();
  for (const std::size_t r : rows) {
    const shard& s = shard_of(r);
    std::memcpy(dst, s.map + s.data_offset + (r - s.first_row) * row_bytes, row_bytes);
    dst += row_bytes;
  }
}

inline void mapped_latents::prefetch(std::span<const std::size_t> rows) const noexcept {
  static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t row_bytes = cols_ * itemsize_;
  for (const std::size_t r : rows) {
    if (r >= rows_) continue;
    const shard& s = shard_of(r);
    const std::size_t begin = s.data_offset + (r - s.first_row) * row_bytes, end = begin + row_bytes;
    const std::size_t first_page = begin / page * page;
    ::madvise(const_cast<unsigned char*>(s.map) + first_page, end - first_page, MADV_WILLNEED);
  }
}

template <Scalar T>
matrix<T> to_matrix(const mapped_latents& z) {
  matrix<T> m(static_cast<Eigen::Index>(z.rows()), static_cast<Eigen::Index>(z.cols()));
  std::vector<std::size_t> all(z.rows());  // (an index per row: small beside the matrix)
  std::iota(all.begin(), all.end(), std::size_t{0});
  z.gather(std::span<const std::size_t>(all), std::span<T>(m.data(), static_cast<std::size_t>(m.size())));
  return m;
}

}  // namespace fusemix::io
