// SPDX-License-Identifier: Apache-2.0
/// @file
/// Tests of <fusemix/backend/cuda.cuh> below the backend: error categories, device memory
/// (`array`, the context's copies), a kernel launch and a cuBLAS SGEMM on the context's handle.
/// Exits 0 on success, 1 on a failure and 77 (ctest's SKIP_RETURN_CODE) when no CUDA device can
/// be used; the error-category checks need no device and run first.
#include <fusemix/backend/cuda.cuh>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what, int line) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "test_device.cu:%d: check failed: %s\n", line, what);
  }
}
#define EXPECT(cond) expect((cond), #cond, __LINE__)

/// Runs `f` and checks that it throws std::system_error in the category named `category`.
template <class F>
void expect_system_error(F&& f, const char* category, int value, int line) {
  try {
    std::forward<F>(f)();
    expect(false, "expected std::system_error, nothing was thrown", line);
  } catch (const std::system_error& e) {
    expect(std::strcmp(e.code().category().name(), category) == 0, "category name", line);
    if (value >= 0) expect(e.code().value() == value, "error value", line);
    std::printf("  caught as expected: [%s] %s\n", e.code().category().name(), e.what());
  }
}

__global__ void axpy(int n, float a, const float* x, float* y) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] += a * x[i];
}

// Checks that need no device: the categories, the messages and detail::check.
void test_errors_without_device() {
  namespace fc = fusemix::cuda;
  EXPECT(std::strcmp(fc::cuda_category().name(), "cuda") == 0);
  EXPECT(std::strcmp(fc::cublas_category().name(), "cublas") == 0);
  EXPECT(&fc::cuda_category() == &fc::cuda_category());
  EXPECT(fc::cuda_category() != fc::cublas_category());
  EXPECT(!fc::cuda_category().message(cudaErrorMemoryAllocation).empty());
  EXPECT(!fc::cublas_category().message(CUBLAS_STATUS_INVALID_VALUE).empty());

  fc::detail::check(cudaSuccess, "nothing");             // must not throw
  fc::detail::check(CUBLAS_STATUS_SUCCESS, "nothing");   // must not throw
  expect_system_error([] { FUSEMIX_CUDA_CHECK(cudaErrorInvalidValue); }, "cuda",
                      cudaErrorInvalidValue, __LINE__);
  expect_system_error([] { FUSEMIX_CUBLAS_CHECK(CUBLAS_STATUS_NOT_INITIALIZED); }, "cublas",
                      CUBLAS_STATUS_NOT_INITIALIZED, __LINE__);
  try {
    FUSEMIX_CUDA_CHECK(cudaErrorInvalidValue);
  } catch (const std::system_error& e) {
    // The message starts with the call as written.
    EXPECT(std::strncmp(e.what(), "cudaErrorInvalidValue", 21) == 0);
  }
}

using device_array = fusemix::cuda::array<float, fusemix::cuda::device_system>;

std::vector<float> download(const fusemix::cuda::context<>& ctx, const device_array& d) {
  std::vector<float> h(d.size());
  fusemix::cuda::copy_to_host(ctx, d.data(), h.data(), h.size());
  return h;
}

void test_array_round_trip(const fusemix::cuda::context<>& ctx) {
  std::vector<float> host(1000);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = 0.5f * static_cast<float>(i) - 7.0f;
  const std::uint64_t before = fusemix::cuda::allocations();
  device_array d(host.size());
  EXPECT(fusemix::cuda::allocations() == before + 1);
  fusemix::cuda::copy_to_device(ctx, host.data(), d.data(), host.size());
  EXPECT(d.size() == host.size());
  EXPECT(download(ctx, d) == host);

  // Copies are deep, moves leave the source empty.
  device_array copy(d);
  EXPECT(copy.data() != d.data() && download(ctx, copy) == host);
  device_array moved(std::move(d));
  EXPECT(d.empty() && d.data() == nullptr);
  EXPECT(moved.size() == host.size() && download(ctx, moved) == host);

  // Within device memory, queued on the stream.
  device_array half(500);
  fusemix::cuda::copy_within(ctx, moved.data() + 500, half.data(), 500);
  EXPECT(download(ctx, half) == std::vector<float>(host.begin() + 500, host.end()));

  device_array empty(0);
  EXPECT(empty.empty() && empty.data() == nullptr);
}

void test_kernel_launch(const fusemix::cuda::context<>& ctx) {
  const int n = 1000;
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) {
    x[i] = static_cast<float>(i);
    y[i] = 1.0f;
  }
  device_array dx(n), dy(n);
  fusemix::cuda::copy_to_device(ctx, x.data(), dx.data(), n);
  fusemix::cuda::copy_to_device(ctx, y.data(), dy.data(), n);
  axpy<<<(n + 255) / 256, 256, 0, ctx.stream()>>>(n, 2.0f, dx.data(), dy.data());
  FUSEMIX_CUDA_CHECK_LAUNCH();
  const std::vector<float> out = download(ctx, dy);
  bool ok = true;
  for (int i = 0; i < n; ++i) ok = ok && out[i] == 1.0f + 2.0f * x[i];
  EXPECT(ok);

  // A launch with too many threads per block fails, and the check reports it (as an invalid
  // configuration, or, from CUDA 13 on Hopper, an invalid argument).
  axpy<<<1, 4096, 0, ctx.stream()>>>(n, 2.0f, dx.data(), dy.data());
  try {
    FUSEMIX_CUDA_CHECK_LAUNCH();
    EXPECT(false);  // nothing was thrown
  } catch (const std::system_error& e) {
    EXPECT(std::strcmp(e.code().category().name(), "cuda") == 0);
    EXPECT(e.code().value() == cudaErrorInvalidConfiguration || e.code().value() == cudaErrorInvalidValue);
    std::printf("  caught as expected: [%s] %s\n", e.code().category().name(), e.what());
  }
  FUSEMIX_CUDA_CHECK_LAUNCH();  // the error was cleared: this one must not throw
}

void test_sgemm(const fusemix::cuda::context<>& ctx) {
  // Row-major C(m×n) = A(m×k) B(k×n), computed by cuBLAS (column-major) as C' = B' A'.
  const int m = 5, k = 7, n = 3;
  std::vector<float> a(m * k), b(k * n), expected(m * n, 0.0f);
  for (int i = 0; i < m * k; ++i) a[i] = std::sin(0.3f * static_cast<float>(i));
  for (int i = 0; i < k * n; ++i) b[i] = std::cos(0.7f * static_cast<float>(i));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      for (int l = 0; l < k; ++l) expected[i * n + j] += a[i * k + l] * b[l * n + j];

  device_array da(a.size()), db(b.size()), dc(expected.size());
  fusemix::cuda::copy_to_device(ctx, a.data(), da.data(), a.size());
  fusemix::cuda::copy_to_device(ctx, b.data(), db.data(), b.size());
  const float one = 1.0f, zero = 0.0f;
  FUSEMIX_CUBLAS_CHECK(cublasSgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, db.data(), n,
                                   da.data(), k, &zero, dc.data(), n));
  const std::vector<float> got = download(ctx, dc);
  float worst = 0.0f;
  for (int i = 0; i < m * n; ++i) worst = std::fmax(worst, std::fabs(got[i] - expected[i]));
  std::printf("  sgemm: max |cuBLAS - CPU| = %g\n", static_cast<double>(worst));
  EXPECT(worst < 1e-5f);  // k = 7 products of values in [-1, 1]: a few ulps of 7

  // A bad argument becomes std::system_error in the cublas category.
  expect_system_error(
      [&] {
        FUSEMIX_CUBLAS_CHECK(cublasSgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, -1, m, k, &one,
                                         db.data(), n, da.data(), k, &zero, dc.data(), n));
      },
      "cublas", CUBLAS_STATUS_INVALID_VALUE, __LINE__);

  // A failed allocation becomes std::system_error in the cuda category.
  expect_system_error([] { device_array huge(std::numeric_limits<std::size_t>::max() / 8); }, "cuda",
                      cudaErrorMemoryAllocation, __LINE__);
  ctx.synchronize();
}

}  // namespace

int main() {
  try {
    std::puts("error categories (no device needed)");
    test_errors_without_device();

    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
      std::printf("no CUDA device: skipped (cudaGetDeviceCount: %s)\n",
                  e == cudaSuccess ? "0 devices" : cudaGetErrorString(e));
      if (e == cudaSuccess || e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
        EXPECT(fusemix::cuda::device_count() == 0);  // other errors make device_count() throw
      return failures == 0 ? 77 : 1;
    }
    EXPECT(fusemix::cuda::device_count() == n && fusemix::cuda::has_device());

    const fusemix::cuda::context<> ctx;  // its own stream and cuBLAS handle
    std::puts("device array round trip");
    test_array_round_trip(ctx);
    std::puts("kernel launch");
    test_kernel_launch(ctx);
    std::puts("cuBLAS SGEMM");
    test_sgemm(ctx);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "unexpected exception: %s\n", ex.what());
    return 1;
  }
  if (failures != 0) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::puts("all CUDA checks passed");
  return 0;
}
