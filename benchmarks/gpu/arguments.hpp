// SPDX-License-Identifier: Apache-2.0
// The command lines of the GPU benchmark programs: `--name value` options and `--flag`s, read in
// order; a missing value or an unknown name ends the program with exit code 2 and one line.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace fusemix_bench {

class arguments {
 public:
  arguments(const char* program, int argc, char** argv) : program_(program), argc_(argc), argv_(argv) {}
  /// The next option's name (empty after the last).
  std::string next() { return ++i_ < argc_ ? std::string(argv_[i_]) : std::string(); }
  /// The current option's value.
  std::string value() {
    if (i_ + 1 >= argc_) fail("needs a value");
    return argv_[++i_];
  }
  std::size_t size() { return static_cast<std::size_t>(std::stoull(value())); }
  [[noreturn]] void unknown() { fail("is not an option"); }

 private:
  [[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "%s: %s %s\n", program_, argv_[i_], what);
    std::exit(2);
  }
  const char* program_;
  int argc_;
  char** argv_;
  int i_ = 0;
};

}  // namespace fusemix_bench
