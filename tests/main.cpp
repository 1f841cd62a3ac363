// SPDX-License-Identifier: Apache-2.0
/// @file
/// The one Boost.Test module of the unit tests (linked against the shared Boost.Test library).
#define BOOST_TEST_MODULE fusemix
#ifndef BOOST_TEST_DYN_LINK
#  define BOOST_TEST_DYN_LINK
#endif
#include <boost/test/unit_test.hpp>
