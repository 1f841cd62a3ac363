// SPDX-License-Identifier: Apache-2.0
/// @file
/// Scratch directories and raw file bytes for the I/O tests.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include <unistd.h>

#include <boost/test/unit_test.hpp>

namespace fusemix::test {

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "fusemix_test_XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  std::filesystem::path operator/(std::string_view name) const { return path / name; }
};

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  BOOST_REQUIRE_MESSAGE(f, "cannot open " << p);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  BOOST_REQUIRE(f.good());
}

/// Calls `read(path)` with a path naming the read end of a pipe that holds `bytes` and is then
/// closed for writing: a file with no size up front, as the readers see stdin or a FIFO.
/// `bytes` must fit in the pipe's buffer (64 KiB on Linux): nothing reads while it is written.
template <class Read>
void with_pipe(std::string_view bytes, Read&& read) {
  int fds[2];
  BOOST_REQUIRE(::pipe(fds) == 0);
  BOOST_REQUIRE(::write(fds[1], bytes.data(), bytes.size()) == static_cast<::ssize_t>(bytes.size()));
  ::close(fds[1]);
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } guard{fds[0]};
  read(std::filesystem::path("/dev/fd") / std::to_string(fds[0]));
}

}  // namespace fusemix::test
