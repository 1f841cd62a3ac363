// SPDX-License-Identifier: Apache-2.0
/// @file
/// POSIX file helpers for the readers and writers in `io/`: atomic writes, exact reads, and the
/// little-endian and half-precision decoding that the file formats share.
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

#include <fusemix/error.hpp>

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

/// A temporary file that replaces `target` atomically on `commit()`, or vanishes if not committed.
///
/// The temporary is `<target>.tmp.<pid>.<n>` in the target's directory (so `rename` stays within
/// one file system), created with `O_EXCL` and mode 0666 less the umask. Writes are buffered. If
/// the object is destroyed without `commit()` (for example while an exception unwinds), the
/// temporary is closed and removed and the target is left as it was. `rename` replaces a symbolic
/// link at `target` rather than the file it points to.
///
/// **Example**
///
///     detail::atomic_file out("fusemix::io::write_npy", "a.npy");
///     out.write(header);
///     out.write(data.data(), data.size());
///     out.commit();  // a.npy now holds the new contents, or still the old ones if this threw
class atomic_file {
 public:
  /// Creates the temporary file next to `target`.
  /// @throws io_error if the temporary cannot be created (missing directory, no permission, ...).
  atomic_file(std::string_view where, std::filesystem::path target);
  ~atomic_file();
  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;

  /// Appends `n` bytes.
  /// @throws io_error on a write error (e.g. "No space left on device").
  void write(const void* data, std::size_t n);
  /// Appends the bytes of `bytes`.
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  /// Flushes, `fsync`s and closes the temporary, renames it over the target, then `fsync`s the
  /// directory. After it returns, the target holds exactly the bytes written.
  /// @throws io_error if any step fails (the temporary is then removed).
  void commit();

  /// The final path.
  [[nodiscard]] const std::filesystem::path& target() const noexcept { return target_; }
  /// The temporary path (exists until `commit()` or destruction).
  [[nodiscard]] const std::filesystem::path& temp_path() const noexcept { return temp_; }

 private:
  void flush_buffer();
  void discard() noexcept;
  [[noreturn]] void fail_errno(std::string_view what, int err);

  std::string where_;
  std::filesystem::path target_, temp_;
  int fd_ = -1;
  bool committed_ = false;
  std::vector<char> buffer_;
  std::size_t used_ = 0;
};

/// Writes `target` atomically: calls `write_body(file)` with an `atomic_file&`, then commits.
///
/// @param where the qualified name of the public function, put first in error messages.
/// @param target the file to create or replace.
/// @param write_body a callable taking `atomic_file&` that writes the whole contents.
/// @throws io_error if the file cannot be written; any exception from `write_body` is rethrown
///         after the temporary is removed, and the target is then unchanged.
///
/// **Example**
///
///     detail::atomic_write("fusemix::io::write_npy", path, [&](detail::atomic_file& out) {
///       out.write(header);
///     });
template <class Fn>
void atomic_write(std::string_view where, const std::filesystem::path& target, Fn&& write_body);

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

/// Distinguishes the temporaries of concurrent writers within one process (the pid alone only
/// separates processes).
inline std::atomic<unsigned long> atomic_file_counter{0};

/// The directory holding `p`, as a path that `open` accepts ("." for a bare file name).
inline std::filesystem::path parent_directory(const std::filesystem::path& p) {
  std::filesystem::path dir = p.parent_path();
  return dir.empty() ? std::filesystem::path(".") : dir;
}

inline atomic_file::atomic_file(std::string_view where, std::filesystem::path target)
    : where_(where), target_(std::move(target)) {
  if (target_.empty()) throw_io_error(where_, target_, "empty path");
  if (!target_.has_filename())
    throw_io_error(where_, target_, "path names a directory, not a file");
  // O_EXCL guarantees we never write into somebody else's file; on the rare clash (a stale
  // temporary from a crashed process that reused our pid) try the next counter value.
  for (int attempt = 0;; ++attempt) {
    temp_ = target_;
    temp_ += concat(".tmp.", ::getpid(), ".", atomic_file_counter.fetch_add(1));
    do {
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ >= 0) break;
    const int err = errno;
    if (err != EEXIST || attempt >= 100)
      throw_io_error(where_, target_, concat("cannot create temporary file ", temp_, ": ",
                                             std::strerror(err)));
  }
  buffer_.resize(std::size_t{1} << 16);
}

inline atomic_file::~atomic_file() {
  if (!committed_) discard();
}

inline void atomic_file::discard() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_.empty()) {
    ::unlink(temp_.c_str());
    temp_.clear();
  }
}

inline void atomic_file::fail_errno(std::string_view what, int err) {
  discard();
  throw_io_error(where_, target_, concat(what, ": ", std::strerror(err)));
}

inline void atomic_file::flush_buffer() {
  std::size_t done = 0;
  while (done < used_) {
    const ::ssize_t put = ::write(fd_, buffer_.data() + done, used_ - done);
    if (put < 0) {
      if (errno == EINTR) continue;
      fail_errno("write error", errno);
    }
    done += static_cast<std::size_t>(put);
  }
  used_ = 0;
}

inline void atomic_file::write(const void* data, std::size_t n) {
  if (fd_ < 0) throw_io_error(where_, target_, "write after commit or failure");
  const auto* in = static_cast<const char*>(data);
  while (n > 0) {
    if (used_ == buffer_.size()) flush_buffer();
    const std::size_t take = std::min(n, buffer_.size() - used_);
    std::memcpy(buffer_.data() + used_, in, take);
    used_ += take;
    in += take;
    n -= take;
  }
}

inline void atomic_file::commit() {
  if (fd_ < 0) throw_io_error(where_, target_, "commit after commit or failure");
  flush_buffer();
  if (::fsync(fd_) != 0) fail_errno("cannot fsync temporary file", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0 && errno != EINTR) fail_errno("cannot close temporary file", errno);
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    fail_errno("cannot rename the temporary file over it", errno);
  temp_.clear();
  committed_ = true;
  // Without syncing the directory, a crash can lose the rename even though the data is on disk.
  // Some file systems cannot sync directories (EINVAL); the rename itself has succeeded then.
  const std::filesystem::path dir = parent_directory(target_);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    throw_io_error(where_, target_,
                   concat("cannot open the directory to fsync it: ", std::strerror(errno)));
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0 && err != EINVAL && err != EROFS)
    throw_io_error(where_, target_, concat("cannot fsync directory: ", std::strerror(err)));
}

template <class Fn>
void atomic_write(std::string_view where, const std::filesystem::path& target, Fn&& write_body) {
  atomic_file out(where, target);
  std::forward<Fn>(write_body)(out);
  out.commit();
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

/// Removes the temporaries that `atomic_file` left next to `target` in processes that died before
/// committing (kill -9, power loss): `<target>.tmp.<pid>.<n>` whose pid is no longer running.
/// A live process's temporary is left alone, as is anything that only looks similar.
/// @returns how many files were removed. Never throws: a file that cannot be removed stays.
inline std::size_t remove_stale_temporaries(const std::filesystem::path& target) noexcept {
  std::size_t removed = 0;
  std::error_code ec;
  const std::string prefix = target.filename().string() + ".tmp.";
  for (std::filesystem::directory_iterator it(parent_directory(target), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    // "<pid>.<n>", both decimal
    const char* first = name.data() + prefix.size();
    const char* last = name.data() + name.size();
    long pid = 0;
    unsigned long n = 0;
    const auto p1 = std::from_chars(first, last, pid);
    if (p1.ec != std::errc{} || p1.ptr == last || *p1.ptr != '.' || pid <= 0) continue;
    const auto p2 = std::from_chars(p1.ptr + 1, last, n);
    if (p2.ec != std::errc{} || p2.ptr != last || p2.ptr == p1.ptr + 1) continue;
    // Our own temporaries may belong to a writer still running in another thread.
    if (pid != ::getpid() && ::kill(static_cast<::pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code rm;
      removed += std::filesystem::remove(it->path(), rm) ? 1 : 0;
    }
  }
  return removed;
}

}  // namespace fusemix::detail
