// SPDX-License-Identifier: Apache-2.0
// Data-parallel training over MPI against one process. A plain program run by ctest under
// `mpirun -np K` (K = 1, 2, 3): every rank trains, every rank also trains the one-process
// reference itself (the model is small), and the ranks agree on the verdict. Exit 0 when every
// check passes on every rank.
//
//   test_dist_mpi            the checks
//   test_dist_mpi --hang S   rank 1 stops answering; the others must end the job within S
//                            seconds with the communicator's one-line error
//   test_dist_mpi --die      rank 1 is killed during training; mpirun must end the others
#include <fusemix/dist/mpi.hpp>
#include <fusemix/fusemix.hpp>

#include <array>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace fm = fusemix;
namespace dist = fusemix::dist;

namespace {

int failures = 0;
int my_rank = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "rank %d: FAILED %s\n", my_rank, what.c_str());
  }
}

// Pairs with a learnable relation: y = x·A + noise (the same values on every rank).
std::pair<fm::matrix<float>, fm::matrix<float>> toy_pairs(std::size_t n, std::size_t dx, std::size_t dy) {
  std::mt19937_64 gen(81);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd x(n, dx), a(dx, dy), noise(n, dy);
  for (auto* m : {&x, &a, &noise})
    for (Eigen::Index i = 0; i < m->size(); ++i) m->data()[i] = normal(gen);
  const Eigen::MatrixXd y = x * a + 0.1 * noise;
  return {x.cast<float>(), y.cast<float>()};
}

std::pair<fm::fusion_adapter<>, fm::fusion_adapter<>> adapters(std::size_t dx, std::size_t dy) {
  return {fm::fusion_adapter<>(fm::adapter_shape{.in_dim = dx, .out_dim = 6, .depth = 1}, {.dropout = 0.3, .seed = 1}),
          fm::fusion_adapter<>(fm::adapter_shape{.in_dim = dy, .out_dim = 6, .depth = 1}, {.dropout = 0.3, .seed = 2})};
}

struct run_result {
  std::vector<double> losses;   // per step
  std::vector<double> weights;  // both adapters, then the loss's scalars
};

template <class Loss, class ZX, class ZY>
void train_to(fm::trainer<fm::fusion_adapter<>, fm::fusion_adapter<>, Loss>& tr, const ZX& zx, const ZY& zy,
              std::uint64_t steps, std::vector<double>& losses) {
  while (tr.global_step() < steps)
    tr.train_epoch(zx, zy, [&](std::size_t, std::size_t, double loss, double) { losses.push_back(loss); });
}

std::vector<double> weights_of(const fm::fusion_adapter<>& hx, const fm::fusion_adapter<>& hy,
                               std::span<const float> loss_parameters) {
  std::vector<double> w(hx.parameters().begin(), hx.parameters().end());
  w.insert(w.end(), hy.parameters().begin(), hy.parameters().end());
  w.insert(w.end(), loss_parameters.begin(), loss_parameters.end());
  return w;
}

fm::train_options options(fm::mix_mode mode, std::size_t micro, std::uint64_t max_steps = 20) {
  return {.epochs = 7, .batch = 32, .lr = 3e-3, .weight_decay = 0.1, .mixup = {.alpha = 1.0, .mode = mode}, .seed = 4,
          .max_steps = max_steps, .micro_batch = micro};
}

template <class Loss, class ZX, class ZY>
run_result train(const ZX& zx, const ZY& zy, fm::mix_mode mode, std::size_t micro, dist::any_communicator comm,
                 std::size_t bucket_bytes = fm::train_options{}.bucket_bytes) {
  auto [hx, hy] = adapters(12, 8);
  fm::train_options o = options(mode, micro);
  o.bucket_bytes = bucket_bytes;
  fm::trainer tr(hx, hy, Loss{}, o);
  tr.set_communicator(comm);
  run_result r;
  train_to(tr, zx, zy, 20, r.losses);
  r.weights = weights_of(hx, hy, tr.loss().parameters());
  return r;
}

double norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// Whether every rank holds the same bits as rank 0.
bool same_on_every_rank(dist::mpi_communicator& comm, const std::vector<double>& v) {
  const auto k = static_cast<std::size_t>(comm.size());
  std::vector<std::size_t> counts(k, v.size());
  std::vector<double> all(k * v.size());
  comm.all_gather(std::span<const double>(v), std::span<const std::size_t>(counts), std::span<double>(all));
  for (std::size_t r = 1; r < k; ++r)
    if (std::memcmp(all.data(), all.data() + r * v.size(), v.size() * sizeof(double)) != 0) return false;
  return true;
}

template <class Loss>
void matches_one_process(dist::mpi_communicator& comm, const fm::matrix<float>& zx, const fm::matrix<float>& zy, const char* name) {
  for (const auto mode : {fm::mix_mode::permutation, fm::mix_mode::halves}) {
    const run_result one = train<Loss>(zx, zy, mode, 0, {});
    // The weights moved: the comparison is not between two untouched initialisations.
    const auto [ux, uy] = adapters(12, 8);
    double moved = 0;
    for (std::size_t i = 0; i < ux.parameters().size(); ++i)
      moved = std::max(moved, std::fabs(one.weights[i] - ux.parameters()[i]));
    check(moved > 1e-3, std::string(name) + ": the one-process run moved its weights");
    for (const std::size_t micro : {std::size_t{0}, std::size_t{5}}) {
      const std::string what = std::string(name) + " " + std::string(fm::to_string(mode)) + " micro " +
                               std::to_string(micro) + " on " + std::to_string(comm.size()) + " ranks";
      const run_result many = train<Loss>(zx, zy, mode, micro, comm);
      check(many.losses.size() == 20, what + ": 20 steps");
      for (std::size_t s = 0; s < std::min<std::size_t>(20, many.losses.size()); ++s)
        check(std::fabs(many.losses[s] - one.losses[s]) <= 1e-5 * std::fabs(one.losses[s]),
              what + ": loss of step " + std::to_string(s) + " " + std::to_string(many.losses[s]) + " vs " +
                  std::to_string(one.losses[s]));
      std::vector<double> diff(one.weights.size());
      for (std::size_t i = 0; i < diff.size(); ++i) diff[i] = many.weights[i] - one.weights[i];
      const double rel = norm(diff) / norm(one.weights);
      if (my_rank == 0) std::printf("%s: weights within %.2e relative of one process\n", what.c_str(), rel);
      check(rel <= 1e-5, what + ": weights within 1e-5 relative, got " + std::to_string(rel));
      check(same_on_every_rank(comm, many.weights), what + ": the same bits on every rank");
      // The host-memory source path (gathered a piece at a time) gives the matrix path's bits.
      if (micro == 5) {
        const fm::latent_view<float> vx(zx), vy(zy);
        const run_result from_source = train<Loss>(vx, vy, mode, micro, comm);
        check(from_source.weights == many.weights, what + ": a latent source trains the matrices' bits");
      }
      // A sum per layer, started while the layers below run, gives the bits of one per adapter.
      const run_result per_layer = train<Loss>(zx, zy, mode, micro, comm, 0);
      check(per_layer.weights == many.weights && per_layer.losses == many.losses,
            what + ": gradients summed a layer at a time give the bits of a sum per adapter");
    }
  }
}

void sums_in_rank_order(dist::mpi_communicator& comm) {
  // Values whose sum depends on the order of addition; every element must be rank 0's + 1's + ….
  const std::size_t n = 1001;
  auto value = [](int rank, std::size_t i) {
    const float big[] = {1.0f, 1e8f, -1e8f};
    return big[(static_cast<std::size_t>(rank) + i) % 3] + 1e-3f * static_cast<float>(rank + 1) * static_cast<float>(i % 7);
  };
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = value(comm.rank(), i);
  comm.all_reduce_sum(std::span<float>(v));
  bool ok = true;
  for (std::size_t i = 0; i < n; ++i) {
    float s = value(0, i);
    for (int r = 1; r < comm.size(); ++r) s += value(r, i);
    ok = ok && std::memcmp(&s, &v[i], sizeof s) == 0;
  }
  check(ok, "all_reduce_sum adds in rank order");
  // Sums started together, moved on, interrupted by another operation (which finishes them first)
  // and finished: each gives all_reduce_sum's bits, including one with fewer values than ranks.
  std::vector<float> a(n), one_value{value(comm.rank(), 5)};
  std::vector<double> b{1e16 * (comm.rank() + 1), 1.0 + comm.rank()}, b_sum = b;
  for (std::size_t i = 0; i < n; ++i) a[i] = value(comm.rank(), i + 3);
  std::vector<float> a_sum = a, one_sum = one_value;
  comm.all_reduce_sum(std::span<float>(a_sum));
  comm.all_reduce_sum(std::span<double>(b_sum));
  comm.all_reduce_sum(std::span<float>(one_sum));
  comm.start_all_reduce_sum(std::span<float>(a));
  comm.start_all_reduce_sum(std::span<double>(b));
  comm.progress();
  std::vector<double> ranks(static_cast<std::size_t>(comm.size()));
  const double me = comm.rank();
  const std::vector<std::size_t> ones(static_cast<std::size_t>(comm.size()), 1);
  comm.all_gather(std::span<const double>(&me, 1), std::span<const std::size_t>(ones), std::span<double>(ranks));
  check(a == a_sum && b == b_sum, "started sums are finished by the next operation, with all_reduce_sum's bits");
  comm.start_all_reduce_sum(std::span<float>(one_value));
  for (int i = 0; i < 3; ++i) comm.progress();
  comm.finish();
  check(one_value == one_sum, "a started sum of fewer values than ranks has all_reduce_sum's bits");
  bool gathered = true;
  for (int r = 0; r < comm.size(); ++r) gathered = gathered && ranks[static_cast<std::size_t>(r)] == r;
  check(gathered, "an all_gather after started sums gathers its own values");
  // rank_rows covers 0 … n−1 once, in rank order.
  std::size_t next = 0;
  for (int r = 0; r < comm.size(); ++r) {
    const auto rr = dist::rank_rows(17, r, comm.size());
    check(rr.first == next, "rank_rows is contiguous");
    next = rr.first + rr.count;
  }
  check(next == 17, "rank_rows covers every row");
}

void resumes_bitwise(dist::mpi_communicator& comm, const fm::matrix<float>& zx, const fm::matrix<float>& zy) {
  // A checkpoint written by rank 0 at step 10 and read by every rank continues to the bits of an
  // uninterrupted run (the checkpoint's path chosen by rank 0 and broadcast).
  std::array<char, 256> path{};
  if (comm.rank() == 0) {
    const auto p = std::filesystem::temp_directory_path() / ("fusemix_dist_" + std::to_string(::getpid()) + ".ckpt");
    std::snprintf(path.data(), path.size(), "%s", p.c_str());
  }
  comm.broadcast(std::as_writable_bytes(std::span<char>(path)), 0);
  const std::filesystem::path file(path.data());
  const auto mode = fm::mix_mode::halves;
  const run_result whole = train<fm::contrastive_loss<>>(zx, zy, mode, 5, comm);
  {
    auto [hx, hy] = adapters(12, 8);
    fm::trainer tr(hx, hy, options(mode, 5, 10));
    tr.set_communicator(comm);
    std::vector<double> losses;
    train_to(tr, zx, zy, 10, losses);
    if (comm.rank() == 0) tr.save_checkpoint(file);
    comm.barrier();
  }
  auto [hx, hy] = adapters(12, 8);
  fm::trainer tr(hx, hy, options(mode, 5));
  tr.set_communicator(comm);
  tr.load_checkpoint(file);
  std::vector<double> losses;
  train_to(tr, zx, zy, 20, losses);
  check(weights_of(hx, hy, tr.loss().parameters()) == whole.weights,
        "a run resumed from a rank-0 checkpoint equals the uninterrupted one bitwise");
  comm.barrier();
  if (comm.rank() == 0) std::filesystem::remove(file);
}

template <class K>
void selects_as_one_process(dist::mpi_communicator& comm, const K& kernel, std::size_t window, const char* name) {
  // Items on the unit sphere (the same on every rank); each rank passes only its rows.
  const std::size_t n = 601, d = 16, k = 60;
  std::mt19937_64 gen(5);
  std::normal_distribution<double> normal;
  fm::matrix<float> z(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d));
  for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = static_cast<float>(normal(gen));
  z.rowwise().normalize();
  const fm::latent_view<float> all(z);
  const fm::kdpp_options eager{.window = window, .evaluation = fm::kdpp_evaluation::eager};
  const fm::selection one = fm::greedy_kdpp(all, k, kernel, eager);
  const auto mine = dist::rank_rows(n, comm.rank(), comm.size());
  const fm::latent_view<float> shard(z.data() + mine.first * d, mine.count, d);
  const fm::selection many = fm::greedy_kdpp(shard, k, kernel, dist::any_communicator(comm), {.window = window});
  const std::string what = std::string(name) + " window " + std::to_string(window) + " on " +
                           std::to_string(comm.size()) + " ranks";
  check(one.picks.size() == k, what + ": k picks in one process");
  check(many.picks == one.picks, what + ": the same picks as one process");
  check(many.gains == one.gains, what + ": the same gains, bit for bit");
  check(same_on_every_rank(comm, std::vector<double>(many.gains)), what + ": the same on every rank");
  if (window == 0) {
    const fm::selection lazy = fm::greedy_kdpp(all, k, kernel);
    check(many.picks == lazy.picks, what + ": the picks of the default (lazy) selector");
  }
  if (my_rank == 0) std::printf("%s: %zu picks, log det %.6f\n", what.c_str(), many.picks.size(), many.log_det());
}

}  // namespace

int main(int argc, char** argv) {
  dist::mpi_session mpi(&argc, &argv);
  const bool hang = argc >= 3 && std::strcmp(argv[1], "--hang") == 0;
  const bool die = argc >= 2 && std::strcmp(argv[1], "--die") == 0;
  dist::mpi_communicator comm(MPI_COMM_WORLD, {.timeout_seconds = hang ? std::atof(argv[2]) : 120.0});
  my_rank = comm.rank();
  const auto [zx, zy] = toy_pairs(96, 12, 8);

  if (hang) {
    comm.barrier();
    if (comm.rank() == 1) std::raise(SIGSTOP);  // alive, never answering
    auto [hx, hy] = adapters(12, 8);
    fm::trainer tr(hx, hy, options(fm::mix_mode::halves, 0));
    tr.set_communicator(comm);
    std::vector<double> losses;
    train_to(tr, zx, zy, 20, losses);
    std::fprintf(stderr, "rank %d: training finished although a rank hangs\n", comm.rank());
    return 1;
  }
  if (die) {
    auto [hx, hy] = adapters(12, 8);
    fm::trainer tr(hx, hy, options(fm::mix_mode::halves, 0, 1000));
    tr.set_communicator(comm);
    std::vector<double> losses;
    tr.train_epoch(zx, zy);
    if (comm.rank() == 1) std::raise(SIGKILL);
    train_to(tr, zx, zy, 1000, losses);
    std::fprintf(stderr, "rank %d: training finished although a rank died\n", comm.rank());
    return 1;
  }

  sums_in_rank_order(comm);
  matches_one_process<fm::contrastive_loss<>>(comm, zx, zy, "contrastive");
  matches_one_process<fm::sigmoid_loss<>>(comm, zx, zy, "sigmoid");
  resumes_bitwise(comm, zx, zy);
  selects_as_one_process(comm, fm::polynomial_kernel{.offset = 1, .degree = 2}, 0, "polynomial");
  selects_as_one_process(comm, fm::rbf_kernel{.gamma = 0.5}, 0, "rbf");
  selects_as_one_process(comm, fm::polynomial_kernel{.offset = 1, .degree = 2}, 12, "polynomial");

  // Every rank's verdict.
  std::vector<double> failed{static_cast<double>(failures)};
  comm.all_reduce_sum(std::span<double>(failed));
  if (comm.rank() == 0)
    std::printf("%s: %g failed check(s) over %d rank(s)\n", failed[0] == 0 ? "passed" : "FAILED", failed[0], comm.size());
  return failed[0] == 0 ? 0 : 1;
}
