// SPDX-License-Identifier: Apache-2.0
/// @file
/// Shared plumbing of the libFuzzer targets: hand the fuzz input to a reader that takes a path,
/// first as a regular file and then as a pipe, and let only `fusemix::error` through.
///
/// Why a memfd for the regular file: the readers take a path, libFuzzer gives bytes in memory.
/// One `memfd_create` file per process, rewritten for every input with `pwrite` + `ftruncate`
/// and opened by the readers as `/proc/self/fd/N`, costs no disk I/O, leaves no directory entry
/// behind when a run crashes, and holds a single descriptor for the whole run (nothing to create,
/// unlink or leak per input). `fstat` reports it as a regular file of the exact size, so the
/// readers take their regular-file paths (size checks before allocating, `pread` per tensor).
/// Each `open` of `/proc/self/fd/N` makes a new open file description, so the reader's offset is
/// its own and the rewrite at offset 0 is unaffected.
///
/// Why a pipe as well: the readers also accept pipes (`/dev/stdin`, process substitution), where
/// the size is unknown up front and truncation and trailing bytes are found while reading: a
/// second set of code paths. A fresh pipe per reader call (the reader drains it), written whole
/// before the reader opens its read end through `/proc/self/fd/N` and with the write end closed,
/// so the reader sees the input and then end-of-file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fusemix/core/error.hpp>

namespace fusemix::fuzz {

/// Aborts (a libFuzzer finding) with a message: for failures of the harness itself and for
/// broken invariants of a reader's result.
[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "fusemix fuzz: %s\n", what);
  std::abort();
}

/// Runs `read()`; a `fusemix::error` is the expected answer to a malformed input and is
/// swallowed. Any other exception escapes to libFuzzer, which reports it as a crash ("deadly
/// signal" after std::terminate): that includes std::bad_alloc, std::length_error and the
/// exceptions of nlohmann::json, none of which a reader may throw.
template <class Fn>
bool succeeds(Fn&& read) {
  try {
    read();
    return true;
  } catch (const fusemix::error&) {
    return false;
  }
}

/// The per-process memfd that holds the current input (see the file comment).
class memfd_file {
 public:
  memfd_file() {
    fd_ = ::memfd_create("fusemix-fuzz-input", MFD_CLOEXEC);
    if (fd_ < 0) die("memfd_create failed");
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~memfd_file() { ::close(fd_); }
  memfd_file(const memfd_file&) = delete;
  memfd_file& operator=(const memfd_file&) = delete;

  /// Replaces the contents with `data` and returns the path to open.
  const std::filesystem::path& write(const std::uint8_t* data, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      const ::ssize_t put = ::pwrite(fd_, data + done, size - done, static_cast<::off_t>(done));
      if (put <= 0) die("pwrite to the memfd failed");
      done += static_cast<std::size_t>(put);
    }
    if (::ftruncate(fd_, static_cast<::off_t>(size)) != 0) die("ftruncate of the memfd failed");
    return path_;
  }

 private:
  int fd_ = -1;
  std::filesystem::path path_;
};

/// Calls `read(path)` with `data` behind a fresh pipe. Inputs larger than the pipe can buffer
/// (64 KiB unless raised; the script's -max_len is 4096) are skipped, since writing them before
/// reading would block.
template <class Fn>
void with_pipe(const std::uint8_t* data, std::size_t size, Fn&& read) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) die("pipe2 failed");
  struct closer {
    int fd;
    ~closer() {
      if (fd >= 0) ::close(fd);
    }
  } read_end{fds[0]}, write_end{fds[1]};
  const int capacity = ::fcntl(fds[1], F_GETPIPE_SZ);
  if (capacity < 0 || size > static_cast<std::size_t>(capacity)) return;
  std::size_t done = 0;
  while (done < size) {
    const ::ssize_t put = ::write(fds[1], data + done, size - done);
    if (put <= 0) die("write to the pipe failed");
    done += static_cast<std::size_t>(put);
  }
  ::close(write_end.fd);
  write_end.fd = -1;
  read(std::filesystem::path("/proc/self/fd/" + std::to_string(fds[0])));
}

/// The body of both targets: reads the input as a regular file and, where a pipe can be made,
/// through a pipe, checks each outcome, and checks that the two agree. `read_all(with_path)` runs
/// every reader of the target on the path that `with_path` hands it.
template <class ReadAll, class Check, class CheckSame>
void read_both_ways(const std::uint8_t* data, std::size_t size, ReadAll&& read_all, Check&& check,
                    CheckSame&& check_same) {
  static memfd_file file;
  const std::filesystem::path& path = file.write(data, size);
  const auto as_file = read_all([&](auto&& read) { read(path); });
  check(as_file);
  bool piped = false;
  const auto as_pipe = read_all([&](auto&& read) {
    with_pipe(data, size, [&](const std::filesystem::path& p) {
      piped = true;
      read(p);
    });
  });
  if (piped) {
    check(as_pipe);
    check_same(as_file, as_pipe);
  }
}

}  // namespace fusemix::fuzz
