// SPDX-License-Identifier: Apache-2.0
/// @file
/// Checking what an error says.
#pragma once

#include <exception>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

namespace fusemix::test {

/// A predicate for BOOST_CHECK_EXCEPTION: the message contains every one of `parts` (the first
/// one missing is logged).
inline auto message_has(std::vector<std::string> parts) {
  return [parts](const std::exception& e) {
    const std::string what = e.what();
    for (const auto& p : parts)
      if (what.find(p) == std::string::npos) {
        BOOST_TEST_MESSAGE("message \"" << what << "\" lacks \"" << p << "\"");
        return false;
      }
    return true;
  };
}

}  // namespace fusemix::test
