// SPDX-License-Identifier: Apache-2.0
// The C++-compiler half of the mixed-compiler program (see mixed_tu.hpp), and its checks: the
// two files agree on the host system's types and context, and compute the same results.
#include <cmath>
#include <cstdio>
#include <exception>

#include "mixed_tu.hpp"

namespace mixed_tu {
report from_cxx() { return compute(); }
}  // namespace mixed_tu

int main() {
  int failures = 0, checks = 0;
  const auto expect = [&](bool ok, const char* what) {
    ++checks;
    if (!ok) {
      ++failures;
      std::fprintf(stderr, "test_mixed_tu: check failed: %s\n", what);
    }
  };
  try {
    const mixed_tu::report a = mixed_tu::from_nvcc(), b = mixed_tu::from_cxx();
    expect(a.context != nullptr && a.context == b.context, "one process-wide host context");
    expect(a.context_size == b.context_size, "sizeof(context<host_system>)");
    expect(a.backend_size == b.backend_size, "sizeof(backend<float, host_system>)");
    expect(a.matrix_size == b.matrix_size, "sizeof(matrix<float, host_system>)");
    expect(a.adapter_size == b.adapter_size, "sizeof(fusion_adapter<…, backend<float, host_system>>)");
    expect(a.embedding.size() == 6 * 4 && a.embedding == b.embedding, "the adapter's forward (bit for bit)");
    expect(std::isfinite(a.sigmoid_loss) && a.sigmoid_loss == b.sigmoid_loss, "sigmoid_cross_entropy (bit for bit)");
    // Allocated by the nvcc file's code, read and freed by this file's.
    {
      const mixed_tu::backend be;
      const mixed_tu::backend::matrix_type m = mixed_tu::matrix_from_nvcc();
      const std::vector<float> h = be.download(m);
      bool ok = m.rows() == 3 && m.cols() == 5 && h.size() == 15;
      for (std::size_t i = 0; ok && i < h.size(); ++i) ok = h[i] == static_cast<float>(i);
      expect(ok, "a matrix made by the nvcc file");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test_mixed_tu: unexpected exception: %s\n", e.what());
    return 1;
  }
  std::printf("%d of %d mixed translation unit checks passed\n", checks - failures, checks);
  return failures == 0 ? 0 : 1;
}
