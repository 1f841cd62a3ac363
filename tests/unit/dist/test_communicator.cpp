// SPDX-License-Identifier: Apache-2.0
// dist/communicator.hpp without MPI: `any_communicator`'s overlapping sums over a model that has
// them and one that does not, and the trainer's gradient buckets on K ranks as K threads (so the
// sanitizer run covers them; tests/dist runs the same under mpirun with the Open MPI model).
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <span>
#include <variant>
#include <vector>

#include <fusemix/backend/cpu.hpp>
#include <fusemix/dist/communicator.hpp>
#include <fusemix/loss/contrastive.hpp>
#include <fusemix/nn/adapter.hpp>
#include <fusemix/train/trainer.hpp>

#include "gradcheck.hpp"
#include "thread_group.hpp"

namespace fm = fusemix;
namespace dist = fusemix::dist;
using fm::test::dmatrix;
using fm::test::thread_group;
using dbackend = fm::cpu::backend<double>;

namespace {

// A thread rank whose started sums are made only at `finish` (or before any other operation):
// the latest an `OverlappingCommunicator` may make them. A caller that read or wrote a span
// between start and finish, or started a sum before its values were final, gets other bits
// here than from the blocking model, which sums at once.
class deferred_sums {
 public:
  explicit deferred_sums(thread_group::rank_view& g) : g_(&g) {}
  [[nodiscard]] int rank() const noexcept { return g_->rank(); }
  [[nodiscard]] int size() const noexcept { return g_->size(); }
  template <class T>
  void all_reduce_sum(std::span<T> v) {
    finish();
    g_->all_reduce_sum(v);
  }
  template <class T>
  void all_gather(std::span<const T> mine, std::span<const std::size_t> counts, std::span<T> all) {
    finish();
    g_->all_gather(mine, counts, all);
  }
  void broadcast(std::span<std::byte> bytes, int root) {
    finish();
    g_->broadcast(bytes, root);
  }
  void barrier() {
    finish();
    g_->barrier();
  }
  [[noreturn]] void abort(std::string_view why) const { g_->abort(why); }
  template <class T>
  void start_all_reduce_sum(std::span<T> v) {
    started_.emplace_back(v);
  }
  void progress() {}
  void finish() {
    for (auto& v : started_) std::visit([&](auto s) { g_->all_reduce_sum(s); }, v);
    started_.clear();
  }
  [[nodiscard]] std::size_t pending() const noexcept { return started_.size(); }

 private:
  thread_group::rank_view* g_;
  std::vector<std::variant<std::span<float>, std::span<double>>> started_;
};
static_assert(dist::OverlappingCommunicator<deferred_sums>);
static_assert(!dist::OverlappingCommunicator<thread_group::rank_view>);

using adapter = fm::fusion_adapter<fm::dynamic_shape, dbackend>;
using trainer_type = fm::trainer<adapter, adapter, fm::contrastive_loss<dbackend>>;

// Weights after 6 steps of the same run (depth 2, dropout, mixup), in one process (no group) or
// as this rank of one; both adapters' parameters, then the loss's.
std::vector<double> train_weights(std::size_t bucket_bytes, dist::any_communicator comm) {
  fm::cpu::set_threads(1);  // (per thread: OpenMP's thread count is each thread's own setting)
  const dmatrix zx = fm::test::random_matrix(48, 7, 21), zy = fm::test::random_matrix(48, 5, 22);
  adapter hx(fm::adapter_shape{.in_dim = 7, .out_dim = 4, .depth = 2, .expansion = 2}, {.dropout = 0.3, .seed = 1});
  adapter hy(fm::adapter_shape{.in_dim = 5, .out_dim = 4, .depth = 2, .expansion = 2}, {.dropout = 0.3, .seed = 2});
  trainer_type tr(hx, hy, fm::contrastive_loss<dbackend>{},
                  {.epochs = 3, .batch = 16, .lr = 1e-2, .mixup = {.alpha = 1.0, .mode = fm::mix_mode::permutation},
                   .seed = 5, .max_steps = 6, .bucket_bytes = bucket_bytes});
  tr.set_communicator(comm);
  while (tr.global_step() < 6) tr.train_epoch(zx, zy);
  std::vector<double> w(hx.parameters().begin(), hx.parameters().end());
  w.insert(w.end(), hy.parameters().begin(), hy.parameters().end());
  w.insert(w.end(), tr.loss().parameters().begin(), tr.loss().parameters().end());
  return w;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(communicator)

BOOST_AUTO_TEST_CASE(any_communicator_starts_sums_on_every_model) {
  // What each rank saw, checked on this thread (Boost.Test's checks are not thread-safe).
  struct seen {
    double blocking_after_start = 0, after_progress = 0, after_finish = 0, after_barrier = 0;
    std::size_t pending_after_progress = 0, pending_after_barrier = 0;
  };
  std::vector<seen> of(2);
  thread_group group(2);
  group.run([&](thread_group::rank_view& g) {
    seen& s = of[static_cast<std::size_t>(g.rank())];
    const double mine = g.rank() == 0 ? 1.5 : 2.25;
    // A model without the three: the sum is made when started.
    std::vector<double> v{mine};
    const dist::any_communicator blocking(g);
    blocking.start_all_reduce_sum(std::span<double>(v));
    s.blocking_after_start = v[0];
    blocking.progress();
    blocking.finish();
    // One with them: left alone until finished, or until another operation finishes it.
    deferred_sums d(g);
    const dist::any_communicator overlapping(d);
    std::vector<double> a{mine}, b{mine};
    overlapping.start_all_reduce_sum(std::span<double>(a));
    overlapping.progress();
    s.after_progress = a[0], s.pending_after_progress = d.pending();
    overlapping.finish();
    s.after_finish = a[0];
    overlapping.start_all_reduce_sum(std::span<double>(b));
    overlapping.barrier();
    s.after_barrier = b[0], s.pending_after_barrier = d.pending();
  });
  for (std::size_t r = 0; r < 2; ++r) {
    BOOST_TEST(of[r].blocking_after_start == 3.75);
    BOOST_TEST(of[r].after_progress == (r == 0 ? 1.5 : 2.25));
    BOOST_TEST(of[r].pending_after_progress == 1u);
    BOOST_TEST(of[r].after_finish == 3.75);
    BOOST_TEST(of[r].after_barrier == 3.75);
    BOOST_TEST(of[r].pending_after_barrier == 0u);
  }
}

BOOST_AUTO_TEST_CASE(gradient_buckets_give_the_bits_of_one_sum_per_adapter) {
  // Eigen's GEMM: safe to call from several threads at once, and the same on every rank.
  const auto gemm = fm::cpu::default_gemm_library();
  fm::cpu::set_gemm_library(fm::cpu::gemm_library::eigen);
  const std::vector<double> one = train_weights(fm::train_options{}.bucket_bytes, {});
  for (const int ranks : {2, 3}) {
    // Per rank: sums made at once / deferred to finish; a bucket per layer / the default (25 MiB:
    // one per adapter here).
    std::vector<std::vector<double>> at_once(static_cast<std::size_t>(ranks)), deferred = at_once, per_adapter = at_once;
    thread_group group(ranks);
    group.run([&](thread_group::rank_view& g) {
      const auto r = static_cast<std::size_t>(g.rank());
      at_once[r] = train_weights(0, g);
      deferred_sums d(g);
      deferred[r] = train_weights(0, d);
      per_adapter[r] = train_weights(fm::train_options{}.bucket_bytes, d);
    });
    for (int r = 0; r < ranks; ++r) {
      const auto k = static_cast<std::size_t>(r);
      BOOST_TEST(at_once[k] == at_once[0]);  // the same bits on every rank
      BOOST_TEST(deferred[k] == at_once[k]);
      BOOST_TEST(per_adapter[k] == at_once[k]);
    }
    const double rel = fm::test::relative_error(at_once[0], one);
    BOOST_TEST_MESSAGE(ranks << " ranks against one process: " << rel);
    BOOST_TEST(rel < 1e-10);  // double: only the summation order differs
    BOOST_TEST(fm::test::relative_error(one, train_weights(0, {})) == 0.0);
  }
  fm::cpu::set_gemm_library(gemm);
}

BOOST_AUTO_TEST_SUITE_END()
