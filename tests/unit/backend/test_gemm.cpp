// SPDX-License-Identifier: Apache-2.0
// backend::gemm through every GEMM library this build has (Eigen always; OpenBLAS where the tests
// are built with FUSEMIX_USE_OPENBLAS): all four transpositions, beta 0 / 1 / ½, float and
// double, owning matrices and maps into flat storage, against a double-precision reference.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <fusemix/backend/cpu.hpp>

#include "gradcheck.hpp"

namespace fm = fusemix;
namespace cpu = fusemix::cpu;

namespace {

// Restores the process-wide choice when a test case ends.
struct keep_gemm_library {
  cpu::gemm_library saved = cpu::current_gemm_library();
  ~keep_gemm_library() { cpu::set_gemm_library(saved); }
};

std::vector<cpu::gemm_library> libraries() {
  std::vector<cpu::gemm_library> all{cpu::gemm_library::eigen};
  if (cpu::openblas_linked()) all.push_back(cpu::gemm_library::openblas);
  return all;
}

template <class T>
void check_all_cases(double tol) {
  using matrix = fm::matrix<T>;
  const fm::test::dmatrix a0 = fm::test::random_matrix(7, 5, 1), b0 = fm::test::random_matrix(5, 6, 2);
  const fm::test::dmatrix c0 = fm::test::random_matrix(7, 6, 3);
  cpu::backend<T> be;
  for (const auto lib : libraries()) {
    cpu::set_gemm_library(lib);
    BOOST_TEST_CONTEXT("library " << cpu::to_string(lib)) {
      for (const bool ta : {false, true})
        for (const bool tb : {false, true})
          for (const double beta : {0.0, 1.0, 0.5}) {
            // op(a) is 7×5 and op(b) 5×6 whatever the transposition.
            const matrix a = (ta ? fm::test::dmatrix(a0.transpose()) : a0).template cast<T>();
            const matrix b = (tb ? fm::test::dmatrix(b0.transpose()) : b0).template cast<T>();
            matrix c = c0.cast<T>();
            // beta = 0 must not read c: a NaN there would poison a "0 · c".
            if (beta == 0.0) c.fill(std::numeric_limits<T>::quiet_NaN());
            // b as a map into flat storage, as the layers pass their weights.
            std::vector<T> flat(b.data(), b.data() + b.size());
            const auto bmap = be.map(static_cast<const T*>(flat.data()), static_cast<std::size_t>(b.rows()),
                                     static_cast<std::size_t>(b.cols()));
            be.gemm(T(1.5), a, ta, bmap, tb, static_cast<T>(beta), c);
            const fm::test::dmatrix want = 1.5 * a0 * b0 + (beta == 0.0 ? fm::test::dmatrix::Zero(7, 6) : (beta * c0).eval());
            const double err = (c.template cast<double>() - want).cwiseAbs().maxCoeff();
            BOOST_TEST(err < tol, "ta " << ta << " tb " << tb << " beta " << beta << ": error " << err);
          }
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gemm)

BOOST_AUTO_TEST_CASE(every_library_every_transposition_float) {
  keep_gemm_library keep;
  check_all_cases<float>(1e-5);
}

BOOST_AUTO_TEST_CASE(every_library_every_transposition_double) {
  keep_gemm_library keep;
  check_all_cases<double>(1e-13);
}

BOOST_AUTO_TEST_CASE(choosing_a_library_the_build_lacks_is_refused) {
  keep_gemm_library keep;
  BOOST_TEST_MESSAGE("GEMM libraries in this build: " << libraries().size() << ", default "
                                                       << cpu::to_string(cpu::default_gemm_library()));
  if (!cpu::openblas_linked()) {
    BOOST_CHECK_EXCEPTION(cpu::set_gemm_library(cpu::gemm_library::openblas), fm::argument_error,
                          [](const fm::argument_error& e) {
                            return std::string(e.what()).find("without OpenBLAS") != std::string::npos;
                          });
  }
  cpu::set_gemm_library(cpu::gemm_library::eigen);
  BOOST_TEST((cpu::current_gemm_library() == cpu::gemm_library::eigen));
}

BOOST_AUTO_TEST_SUITE_END()
