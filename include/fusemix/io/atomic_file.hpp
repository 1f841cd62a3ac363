// SPDX-License-Identifier: Apache-2.0
/// @file
/// Atomic file writes: a file is replaced whole or not at all, so an interrupted run never leaves
/// a broken checkpoint, weight file or metrics file.
///
/// Writers never leave a half-written file under the target name: they write a temporary file in
/// the same directory, flush and `fsync` it, `rename` it over the target (atomic on POSIX within
/// one file system) and `fsync` the directory so that the new name itself survives a crash.
/// Every failure is a `fusemix::io_error` whose message starts with the public function that was
/// called (the `where` argument), then the path, then `std::strerror(errno)`.
#pragma once

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fusemix/core/error.hpp>

namespace fusemix::io {

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
///     io::atomic_file out("fusemix::io::write_npy", "a.npy");
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
///     io::atomic_write("fusemix::io::write_npy", path, [&](io::atomic_file& out) {
///       out.write(header);
///     });
template <class Fn>
void atomic_write(std::string_view where, const std::filesystem::path& target, Fn&& write_body);

/// Removes the temporaries that `atomic_file` left next to `target` in processes that died before
/// committing (kill -9, power loss): `<target>.tmp.<pid>.<n>` whose pid is no longer running.
/// A live process's temporary is left alone, as is anything that only looks similar.
/// @returns how many files were removed. Never throws: a file that cannot be removed stays.
[[nodiscard]] inline std::size_t remove_stale_temporaries(const std::filesystem::path& target) noexcept;

}  // namespace fusemix::io

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

namespace fusemix::detail {
/// Distinguishes the temporaries of concurrent writers within one process (the pid alone only
/// separates processes).
inline std::atomic<unsigned long> atomic_file_counter{0};

/// The directory holding `p`, as a path that `open` accepts ("." for a bare file name).
inline std::filesystem::path parent_directory(const std::filesystem::path& p) {
  std::filesystem::path dir = p.parent_path();
  return dir.empty() ? std::filesystem::path(".") : dir;
}

}  // namespace fusemix::detail

namespace fusemix::io {

inline atomic_file::atomic_file(std::string_view where, std::filesystem::path target)
    : where_(where), target_(std::move(target)) {
  if (target_.empty()) throw_io_error(where_, target_, "empty path");
  if (!target_.has_filename())
    throw_io_error(where_, target_, "path names a directory, not a file");
  // O_EXCL guarantees we never write into somebody else's file; on the rare clash (a stale
  // temporary from a crashed process that reused our pid) try the next counter value.
  for (int attempt = 0;; ++attempt) {
    temp_ = target_;
    temp_ += concat(".tmp.", ::getpid(), ".", detail::atomic_file_counter.fetch_add(1));
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
  const std::filesystem::path dir = detail::parent_directory(target_);
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

inline std::size_t remove_stale_temporaries(const std::filesystem::path& target) noexcept {
  std::size_t removed = 0;
  std::error_code ec;
  const std::string prefix = target.filename().string() + ".tmp.";
  for (std::filesystem::directory_iterator it(detail::parent_directory(target), ec), end; !ec && it != end; it.increment(ec)) {
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

}  // namespace fusemix::io
