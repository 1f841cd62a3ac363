// SPDX-License-Identifier: Apache-2.0
// The error types and the shape of their messages.
#include <boost/test/unit_test.hpp>

#include <string>

#include <fusemix/core/error.hpp>

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
    fm::throw_shape_error("fusemix::greedy_kdpp", "k must not exceed the item count", "<= 3", 5);
    BOOST_FAIL("no throw");
  } catch (const fm::shape_error& e) {
    BOOST_TEST(std::string(e.what()) == "fusemix::greedy_kdpp: k must not exceed the item count (expected <= 3, got 5)");
  }
}

BOOST_AUTO_TEST_CASE(io_message_names_file) {
  try {
    fm::throw_io_error("fusemix::io::read_npy", "a.npy", "truncated");
    BOOST_FAIL("no throw");
  } catch (const fm::io_error& e) {
    BOOST_TEST(std::string(e.what()) == "fusemix::io::read_npy: a.npy: truncated");
  }
}

BOOST_AUTO_TEST_CASE(throw_expected_keeps_the_type_and_the_message_shape) {
  // Every entry point reports bad input through these helpers: the type says which kind of
  // problem, the message "where: what (expected X, got Y)".
  try {
    fm::throw_expected<fm::numeric_error>("fusemix embed", "--in a.npy: latents must be finite",
                                                  "finite values", "nan at row 1, column 5");
    BOOST_FAIL("no throw");
  } catch (const fm::numeric_error& e) {
    BOOST_TEST(std::string(e.what()) ==
               "fusemix embed: --in a.npy: latents must be finite (expected finite values, got nan at row 1, column 5)");
  }
  try {
    fm::throw_expected<fm::argument_error>("fusemix train", "unknown preset", "image-text", "x");
    BOOST_FAIL("no throw");
  } catch (const fm::error& e) {  // caught as the base, still the derived type
    BOOST_TEST(dynamic_cast<const fm::argument_error*>(&e) != nullptr);
    BOOST_TEST(std::string(e.what()) == "fusemix train: unknown preset (expected image-text, got x)");
  }
}

BOOST_AUTO_TEST_SUITE_END()
