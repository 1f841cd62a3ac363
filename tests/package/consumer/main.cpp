// SPDX-License-Identifier: Apache-2.0
/// @file
/// A program that uses fusemix as a user would: the package tests build and run it against an
/// install, the build tree, add_subdirectory and FetchContent.
#include <fusemix/fusemix.hpp>

#include <cstdio>

// The paper's image adapter has as many parameters as the PyTorch module.
static_assert(fusemix::fusion_adapter<fusemix::adapter_shape{.in_dim = 1536, .out_dim = 512, .depth = 4}>::
                  parameter_count == 76'330'496);

int main() {
  fusemix::fusion_adapter<> a(fusemix::adapter_shape{.in_dim = 8, .out_dim = 4, .depth = 1});
  using matrix = fusemix::fusion_adapter<>::matrix_type;  // row-major float, one sample per row
  const matrix x = matrix::Ones(3, 8);
  const matrix y = a.forward(x);
  if (y.rows() != 3 || y.cols() != 4 || !y.allFinite()) {
    std::fprintf(stderr, "consumer: expected a finite 3x4 output, got %ldx%ld\n",
                 static_cast<long>(y.rows()), static_cast<long>(y.cols()));
    return 1;
  }
  std::printf("consumer ok (fusemix %s, adapter with %zu parameters)\n", fusemix::version_string,
              a.size());
  return 0;
}
