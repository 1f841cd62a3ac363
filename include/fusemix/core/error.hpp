// SPDX-License-Identifier: Apache-2.0
/// @file
/// The exception types thrown for bad input, and the helpers that build their messages (public:
/// the program and extensions report errors the same way).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fusemix {

/// Base of every exception fusemix throws for bad input. The message starts with the qualified
/// name of the function (or the file) that refused, then says what was expected and what was found.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A matrix or tensor had the wrong shape, or a size argument was out of range.
class shape_error : public error {
 public:
  using error::error;
};

/// A file could not be read or written, or its contents are malformed.
class io_error : public error {
 public:
  using error::error;
};

/// A value is NaN, infinite or otherwise outside the domain the computation needs.
class numeric_error : public error {
 public:
  using error::error;
};

/// An option or argument value is invalid (not a shape, not a file, not a number).
class argument_error : public error {
 public:
  using error::error;
};

/// A compute device that was asked for is not there (no CUDA device or driver, or a program
/// built without CUDA). Failures of a device that is there are `std::system_error`s in the
/// "cuda" and "cublas" categories.
class device_error : public error {
 public:
  using error::error;
};

/// Joins the pieces into one string with `operator<<`.
template <class... Parts>
[[nodiscard]] std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

/// Throws `E` with the message "`where`: `what` (expected `expected`, got `got`)".
template <class E, class Expected, class Got>
[[noreturn]] void throw_expected(std::string_view where, std::string_view what,
                                 const Expected& expected, const Got& got) {
  throw E(concat(where, ": ", what, " (expected ", expected, ", got ", got, ")"));
}

/// Throws `shape_error` with expected vs. got, as in
/// "fusemix::greedy_kdpp: k must not exceed the item count (expected <= 3, got 5)".
template <class Expected, class Got>
[[noreturn]] void throw_shape_error(std::string_view where, std::string_view what,
                                    const Expected& expected, const Got& got) {
  throw_expected<shape_error>(where, what, expected, got);
}

/// Throws `io_error` with the message "`where`: `file`: `what`".
template <class Path>
[[noreturn]] void throw_io_error(std::string_view where, const Path& file, std::string_view what) {
  throw io_error(concat(where, ": ", file, ": ", what));
}

}  // namespace fusemix
