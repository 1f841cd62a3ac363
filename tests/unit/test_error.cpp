// SPDX-License-Identifier: Apache-2.0
// The error types and the shape of their messages.
#include <boost/test/unit_test.hpp>

#include <string>

#include <fusemix/error.hpp>

namespace fm = fusemix;

BOOST_AUTO_TEST_SUITE(error)

BOOST_AUTO_TEST_CASE(hierarchy) {
  BOOST_CHECK_THROW(throw fm::shape_error("x"), fm::error);
  BOOST_CHECK_THROW(throw fm::io_error("x"), fm::error);
  BOOST_CHECK_THROW(throw fm::numeric_error("x"), fm::error);
  BOOST_CHECK_THROW(throw fm::argument_error("x"), fm::error);
  BOOST_CHECK_THROW(throw fm::error("x"), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(shape_message_names_function_expected_and_got) {
  try {
    fm::detail::throw_shape_error("fusemix::greedy_kdpp", "k must not exceed the item count", "<= 3", 5);
    BOOST_FAIL("no throw");
  } catch (const fm::shape_error& e) {
    BOOST_TEST(std::string(e.what()) == "fusemix::greedy_kdpp: k must not exceed the item count (expected <= 3, got 5)");
  }
}

BOOST_AUTO_TEST_CASE(io_message_names_file) {
  try {
    fm::detail::throw_io_error("fusemix::io::read_npy", "a.npy", "truncated");
    BOOST_FAIL("no throw");
  } catch (const fm::io_error& e) {
    BOOST_TEST(std::string(e.what()) == "fusemix::io::read_npy: a.npy: truncated");
  }
}

BOOST_AUTO_TEST_SUITE_END()
