// SPDX-License-Identifier: Apache-2.0
/// @file
/// POSIX file helpers for the readers in `io/`: exact reads, and the little-endian and
/// half-precision decoding that the file formats share (atomic writes: <fusemix/io/atomic_file.hpp>).
///
/// Writers never leave a half-written file under the target name: they write a temporary file in
/// the same directory, flush and `fsync` it, `rename` it over the target (atomic on POSIX within
/// one file system) and `fsync` the directory so that the new name itself survives a crash.
/// Readers report short reads as "truncated: expected N bytes of <what>, found M" rather than
/// returning garbage. Every failure is a `fusemix::io_error` whose message starts with the public
/// function that was called (the `where` argument), then the path, then `std::strerror(errno)`.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <concepts>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fusemix/core/error.hpp>
#include <fusemix/io/atomic_file.hpp>

namespace fusemix::detail {

/// A file opened for reading, with reads that either deliver every byte asked for or throw.
///
/// The file is closed by the destructor. Errors name `where` (the public function being run),
/// the path and the reason.
///
/// **Example**
///
///     detail::input_file in("fusemix::io::read_npy", path);
///     char magic[6];
///     in.read_exact(magic, sizeof magic, "magic string");
class input_file {
 public:
  /// Opens `path` for reading.
  /// @param where the qualified name of the public function, put first in error messages.
  /// @param path the file to open.
  /// @throws io_error if the file cannot be opened or is a directory.
  input_file(std::string_view where, std::filesystem::path path);
  ~input_file();
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;

  /// The path as given to the constructor.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// The function name used in error messages.
  [[nodiscard]] std::string_view where() const noexcept { return where_; }
  /// True for a regular file, whose `size()` is known up front (false for pipes and devices).
  [[nodiscard]] bool is_regular() const noexcept { return regular_; }
  /// The size in bytes at open time; 0 unless `is_regular()`.
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  /// The offset of the next sequential read.
  [[nodiscard]] std::uint64_t position() const noexcept { return position_; }
  /// The open file descriptor (e.g. to map the file; it stays owned by this object).
  [[nodiscard]] int descriptor() const noexcept { return fd_; }

  /// Reads up to `n` bytes at the current position; returns how many were read (0 only at the end).
  /// @throws io_error on a read error.
  std::size_t read_some(void* dst, std::size_t n);
  /// Reads exactly `n` bytes at the current position.
  /// @param what names the bytes in the message, e.g. "header" or "data".
  /// @throws io_error "truncated: expected N bytes of <what>, found M" if the file ends first.
  void read_exact(void* dst, std::size_t n, std::string_view what);
  /// Reads exactly `n` bytes at absolute `offset` (`pread`); the sequential position is unchanged.
  /// @throws io_error "truncated: ..." if the file ends first.
  void read_exact_at(std::uint64_t offset, void* dst, std::size_t n, std::string_view what);
  /// Reads exactly `n` bytes at the current position into a string that grows as the bytes
  /// arrive, 64 KiB at a time. For sizes taken from the file itself (a header length, a shape):
  /// a pipe has no size to check them against up front, and a corrupt or hostile one must not
  /// make the reader allocate more than the input really holds.
  /// @throws io_error "truncated: expected N bytes of <what>, found M" if the file ends first.
  [[nodiscard]] std::string read_exact_string(std::size_t n, std::string_view what);
  /// Reads from the current position to the end of the file.
  [[nodiscard]] std::string read_rest();
  /// Throws io_error "`where`: `path`: `what`".
  [[noreturn]] void fail(std::string_view what) const {
    throw_io_error(where_, path_, what);
  }
  /// Throws io_error "`where`: `path`: `what`: strerror(err)".
  [[noreturn]] void fail_errno(std::string_view what, int err) const;

 private:
  std::string where_;
  std::filesystem::path path_;
  int fd_ = -1;
  bool regular_ = false;
  std::uint64_t size_ = 0;
  std::uint64_t position_ = 0;
};

/// Reads an unsigned integer stored little-endian at `p`, whatever the host's byte order.
template <std::unsigned_integral U>
[[nodiscard]] constexpr U load_le(const unsigned char* p) noexcept;

/// Stores `v` little-endian at `p`, whatever the host's byte order.
template <std::unsigned_integral U>
constexpr void store_le(unsigned char* p, U v) noexcept;

/// Converts IEEE 754 binary16 bits to float exactly (subnormals, infinities, NaN payloads kept).
[[nodiscard]] constexpr float half_to_float(std::uint16_t bits) noexcept;

/// Converts bfloat16 bits (the top half of a binary32) to float exactly.
[[nodiscard]] constexpr float bfloat16_to_float(std::uint16_t bits) noexcept;

/// Reads a whole file into a string.
/// @throws io_error naming `where` and the path if the file cannot be opened or read.
///
/// **Example**
///
///     std::string text = detail::read_file("fusemix::io::load_config", "config.json");
[[nodiscard]] std::string read_file(std::string_view where, const std::filesystem::path& path);

// ============================================================================================
// Definitions
// ============================================================================================

inline input_file::input_file(std::string_view where, std::filesystem::path path)
    : where_(where), path_(std::move(path)) {
  do {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd_ < 0 && errno == EINTR);
  if (fd_ < 0) fail_errno("cannot open for reading", errno);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    fail_errno("cannot stat", err);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    fail("is a directory, not a file");
  }
  regular_ = S_ISREG(st.st_mode);
  size_ = regular_ ? static_cast<std::uint64_t>(st.st_size) : 0;
}

inline input_file::~input_file() {
  if (fd_ >= 0) ::close(fd_);
}

inline void input_file::fail_errno(std::string_view what, int err) const {
  throw_io_error(where_, path_, concat(what, ": ", std::strerror(err)));
}

inline std::size_t input_file::read_some(void* dst, std::size_t n) {
  // A single read() may return less than asked for (signals, pipes, >2 GiB requests), so loop
  // until the request is met or the file ends.
  auto* out = static_cast<char*>(dst);
  std::size_t done = 0;
  while (done < n) {
    const std::size_t chunk = std::min<std::size_t>(n - done, std::size_t{1} << 30);
    const ::ssize_t got = ::read(fd_, out + done, chunk);
    if (got < 0) {
      if (errno == EINTR) continue;
      fail_errno("read error", errno);
    }
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  position_ += done;
  return done;
}

inline void input_file::read_exact(void* dst, std::size_t n, std::string_view what) {
  const std::size_t got = read_some(dst, n);
  if (got != n) fail(concat("truncated: expected ", n, " bytes of ", what, ", found ", got));
}

inline void input_file::read_exact_at(std::uint64_t offset, void* dst, std::size_t n,
                                      std::string_view what) {
  auto* out = static_cast<char*>(dst);
  std::size_t done = 0;
  while (done < n) {
    const std::size_t chunk = std::min<std::size_t>(n - done, std::size_t{1} << 30);
    const ::ssize_t got = ::pread(fd_, out + done, chunk, static_cast<::off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      fail_errno("read error", errno);
    }
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  if (done != n) fail(concat("truncated: expected ", n, " bytes of ", what, ", found ", done));
}

inline std::string input_file::read_exact_string(std::size_t n, std::string_view what) {
  constexpr std::size_t step = std::size_t{1} << 16;
  std::string out;
  while (out.size() < n) {
    const std::size_t have = out.size();
    const std::size_t want = std::min(step, n - have);
    out.resize(have + want);  // geometric growth: at most twice what has arrived
    const std::size_t got = read_some(out.data() + have, want);
    out.resize(have + got);
    if (got != want)
      fail(concat("truncated: expected ", n, " bytes of ", what, ", found ", out.size()));
  }
  return out;
}

inline std::string input_file::read_rest() {
  std::string out;
  if (regular_ && size_ > position_) out.reserve(static_cast<std::size_t>(size_ - position_));
  char chunk[65536];
  for (;;) {
    const std::size_t got = read_some(chunk, sizeof chunk);
    if (got == 0) break;
    out.append(chunk, got);
  }
  return out;
}

template <std::unsigned_integral U>
constexpr U load_le(const unsigned char* p) noexcept {
  // Assembling from bytes is byte-order independent; GCC and Clang turn it into one load.
  U v = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) v |= static_cast<U>(static_cast<U>(p[i]) << (8 * i));
  return v;
}

template <std::unsigned_integral U>
constexpr void store_le(unsigned char* p, U v) noexcept {
  for (std::size_t i = 0; i < sizeof(U); ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

constexpr float half_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24 is exact in binary32 (at most 10 significant bits).
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1f)  // infinity or NaN; the payload moves to the top of the wider mantissa
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

constexpr float bfloat16_to_float(std::uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

inline std::string read_file(std::string_view where, const std::filesystem::path& path) {
  input_file in(where, path);
  return in.read_rest();
}

}  // namespace fusemix::detail
