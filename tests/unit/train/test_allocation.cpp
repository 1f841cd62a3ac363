// SPDX-License-Identifier: Apache-2.0
// The training loop allocates nothing once it is warm: every workspace (activations, gradients,
// the loss's B×B matrices, the mixing plan, the backends' scratch rows) is sized on the first
// step and reused. Counted by wrapping glibc's allocator in this executable. The GEMM libraries'
// own allocations are counted apart: Eigen's and OpenBLAS's multi-threaded drivers allocate a
// small job array per call, and OpenBLAS's small-matrix kernels a scratch buffer; that is theirs
// to do, and reported, not asserted.
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstddef>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/train/trainer.hpp>

#include "gradcheck.hpp"

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#define FUSEMIX_COUNT_ALLOCATIONS 1
namespace {
std::atomic<bool> counting{false}, in_gemm{false};
std::atomic<std::size_t> allocations{0}, gemm_allocations{0};
void note() noexcept {
  if (!counting.load(std::memory_order_relaxed)) return;
  (in_gemm.load(std::memory_order_relaxed) ? gemm_allocations : allocations).fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// glibc's own entry points; every C++ allocation (operator new, Eigen's aligned_malloc, aligned
// operator new) ends in one of the functions below, which count and forward.
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);

void* malloc(std::size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size) {
  note();
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n) {
  note();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t alignment, std::size_t n) {
  note();
  return __libc_memalign(alignment, n);
}
void* memalign(std::size_t alignment, std::size_t n) {
  note();
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** p, std::size_t alignment, std::size_t n) {
  note();
  *p = __libc_memalign(alignment, n);
  return *p != nullptr || n == 0 ? 0 : 12 /* ENOMEM */;
}
}
#endif

namespace fm = fusemix;

#if defined(FUSEMIX_COUNT_ALLOCATIONS)
namespace {
// The CPU backend with its GEMM calls marked, so that their allocations are told apart.
struct marked_gemm_backend : fm::cpu::backend<float> {
  template <class A, class Bm, class C>
  void gemm(float alpha, const A& a, bool ta, const Bm& b, bool tb, float beta, C& c) const {
    in_gemm = true;
    fm::cpu::backend<float>::gemm(alpha, a, ta, b, tb, beta, c);
    in_gemm = false;
  }
  // (The base's gemm_shared would call the base's gemm, unmarked.)
  template <class A, class B1, class C1, class B2, class C2>
  void gemm_shared(float alpha, const A& a, bool ta1, const B1& b1, bool tb1, C1& c1, bool ta2, const B2& b2, bool tb2,
                   C2& c2) const {
    gemm(alpha, a, ta1, b1, tb1, 0.0f, c1);
    gemm(alpha, a, ta2, b2, tb2, 0.0f, c2);
  }
};
}  // namespace
#endif

BOOST_AUTO_TEST_SUITE(allocation)

BOOST_AUTO_TEST_CASE(a_warm_epoch_allocates_nothing) {
#if defined(FUSEMIX_COUNT_ALLOCATIONS)
  using adapter = fm::fusion_adapter<fm::dynamic_shape, marked_gemm_backend>;
  const auto saved = fm::cpu::current_gemm_library();
  std::vector<fm::cpu::gemm_library> libraries{fm::cpu::gemm_library::eigen};
  if (fm::cpu::openblas_linked()) libraries.push_back(fm::cpu::gemm_library::openblas);
  for (const auto library : libraries)
    for (const auto mode : {fm::mix_mode::permutation, fm::mix_mode::halves}) {
      fm::cpu::set_gemm_library(library);
      const fm::matrix<float> zx = fm::test::random_matrix(256, 48, 1).cast<float>();
      const fm::matrix<float> zy = fm::test::random_matrix(256, 32, 2).cast<float>();
      adapter hx(fm::adapter_shape{.in_dim = 48, .out_dim = 24, .depth = 2}, {.dropout = 0.5, .seed = 1});
      adapter hy(fm::adapter_shape{.in_dim = 32, .out_dim = 24, .depth = 1}, {.dropout = 0.5, .seed = 2});
      fm::trainer tr(hx, hy, {.epochs = 3, .batch = 64, .mixup = {.mode = mode}, .seed = 3});
      tr.train_epoch(zx, zy);  // warm-up: sizes every workspace
      // Sanity check of the counter itself: a vector must be seen.
      counting = true;
      { std::vector<int> probe(1000); }
      counting = false;
      BOOST_TEST_REQUIRE(allocations.exchange(0) >= 1u);

      counting = true;
      const auto rec = tr.train_epoch(zx, zy);  // 4 steps: mixup, forward, loss, backward, AdamW
      counting = false;
      const std::size_t ours = allocations.exchange(0), theirs = gemm_allocations.exchange(0);
      BOOST_TEST(rec.steps == 4u);
      BOOST_TEST(ours == 0u, "allocations outside the GEMMs in a warm epoch (" << fm::cpu::to_string(library) << ", "
                                                                              << fm::to_string(mode) << "): " << ours);
      BOOST_TEST_MESSAGE(fm::cpu::to_string(library) << ", " << fm::to_string(mode) << ": " << theirs
                                                     << " allocations inside the GEMM library in 4 steps");
    }
  fm::cpu::set_gemm_library(saved);
#else
  BOOST_TEST_MESSAGE("allocation counting needs glibc without AddressSanitizer: not checked in this build");
#endif
}

// From a latent source (gathered and mixed 2,048 mixed rows at a time: 2,200 rows are a piece and a
// shorter one) and with gradient caching (slices of 550, the loss in blocks of 550 rows), a warm
// epoch still allocates nothing.
BOOST_AUTO_TEST_CASE(a_warm_epoch_from_a_source_with_gradient_caching_allocates_nothing) {
#if defined(FUSEMIX_COUNT_ALLOCATIONS)
  using adapter = fm::fusion_adapter<fm::dynamic_shape, marked_gemm_backend>;
  const fm::matrix<float> zx = fm::test::random_matrix(4400, 12, 1).cast<float>();
  const fm::matrix<float> zy = fm::test::random_matrix(4400, 8, 2).cast<float>();
  const fm::latent_view<float> vx(zx), vy(zy);
  for (const std::size_t micro : {std::size_t{0}, std::size_t{550}}) {
    adapter hx(fm::adapter_shape{.in_dim = 12, .out_dim = 8, .depth = 1, .expansion = 2}, {.dropout = 0.5, .seed = 1});
    adapter hy(fm::adapter_shape{.in_dim = 8, .out_dim = 8, .depth = 1, .expansion = 2}, {.dropout = 0.5, .seed = 2});
    fm::trainer tr(hx, hy, {.epochs = 3, .batch = 2200, .seed = 3, .micro_batch = micro});
    tr.train_epoch(vx, vy);  // warm-up
    allocations.exchange(0), gemm_allocations.exchange(0);
    counting = true;
    const auto rec = tr.train_epoch(vx, vy);
    counting = false;
    const std::size_t ours = allocations.exchange(0);
    gemm_allocations.exchange(0);
    BOOST_TEST(rec.steps == 2u);
    BOOST_TEST(ours == 0u, "allocations outside the GEMMs in a warm epoch from a source, micro_batch " << micro << ": "
                                                                                                        << ours);
  }
#else
  BOOST_TEST_MESSAGE("allocation counting needs glibc without AddressSanitizer: not checked in this build");
#endif
}

BOOST_AUTO_TEST_SUITE_END()
