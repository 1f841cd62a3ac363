// SPDX-License-Identifier: Apache-2.0
// The nvcc half of the mixed-compiler program (see mixed_tu.hpp); no GPU is needed.
#include "mixed_tu.hpp"

namespace mixed_tu {

report from_nvcc() { return compute(); }

backend::matrix_type matrix_from_nvcc() {
  const backend be;
  backend::matrix_type m(3, 5);
  std::vector<float> values(m.size());
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  be.upload(values, m.data());
  return m;
}

}  // namespace mixed_tu
