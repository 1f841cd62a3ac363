// SPDX-License-Identifier: Apache-2.0
/// @file
/// The NCCL model (<fusemix/dist/nccl.hpp>) under `mpirun -np K`, one GPU per rank: sums equal to
/// the rank-order sum bit for bit (device and host spans, float and double, values whose sum
/// depends on the order), the adding kernel itself with five ranks' parts, a gather with unequal
/// counts (device, host and mixed spans), a broadcast from the last rank, the bytes counted, the
/// refusals, and no allocation once warm. Every rank computes every rank's values from the rank
/// index, so each expected result is computed locally. Then the trainer on the CUDA backend across
/// the ranks against one process on the same GPU (20 steps, both losses, both mixing modes, with
/// and without gradient caching): losses and weights within 1e-5 relative, the same bits on every
/// rank. (With one rank the trainer runs as one process: that part needs two GPUs or more.)
///
/// A plain program (no Boost: GPU machines need not have it). Exits 0 on success, 1 on a failure
/// and 77 (ctest's SKIP_RETURN_CODE) when some rank has no usable CUDA device: decided after MPI is
/// up and before any CUDA or NCCL state is made, on every rank alike, so mpirun returns 77.
#include <fusemix/backend/cuda.cuh>
#include <fusemix/dist/nccl.hpp>
#include <fusemix/fusemix.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace dist = fusemix::dist;
namespace fc = fusemix::cuda;

namespace {

int failures = 0;
int my_rank = 0;

void expect(bool ok, const std::string& what, int line) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "rank %d: test_nccl.cu:%d: check failed: %s\n", my_rank, line, what.c_str());
  }
}
#define EXPECT(cond) expect((cond), #cond, __LINE__)

// One line per check, from rank 0.
void say(const std::string& line) {
  if (my_rank == 0) std::printf("%s\n", line.c_str());
}

/// Rank r's i-th value: magnitudes from 2^-20 to 2^19 and both signs, so that a sum over ranks
/// rounds differently in another order.
template <class T>
T value(int r, std::size_t i) {
  const int e = static_cast<int>((static_cast<std::size_t>(r) * 7 + i * 3) % 40) - 20;
  const T m = T(1) + T(0.37) * static_cast<T>(r) + T(0.001) * static_cast<T>(i % 17);
  return ((r + static_cast<int>(i)) % 2 == 0 ? m : -m) * static_cast<T>(std::ldexp(1.0, e));
}

/// value(0, i) + value(1, i) + … + value(k − 1, i), added in that order.
template <class T>
std::vector<T> rank_order_sum(std::size_t n, int k) {
  std::vector<T> s(n);
  for (std::size_t i = 0; i < n; ++i) {
    T v = value<T>(0, i);
    for (int r = 1; r < k; ++r) v += value<T>(r, i);
    s[i] = v;
  }
  return s;
}

template <class T>
std::vector<T> values_of(int r, std::size_t n) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = value<T>(r, i);
  return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
const char* type_name() {
  return std::is_same_v<T, float> ? "float" : "double";
}

template <class T>
std::vector<T> download(const fc::context<>& ctx, const fc::array<T>& d) {
  std::vector<T> h(d.size());
  fc::copy_to_host(ctx, d.data(), h.data(), h.size());
  return h;
}

// The test's device buffers, made once: the second round must allocate nothing.
template <class T>
struct buffers {
  static constexpr std::size_t n = 1031;  // not a multiple of 2 or 3: shares differ by one
  fc::array<T> sum{n};
  fc::array<T> parts{5 * n}, out{n};
  fc::array<T> mine, all;
  std::vector<std::size_t> counts;
  std::size_t total = 0;
  std::vector<T> host_sum = std::vector<T>(n), host_mine, host_all;

  explicit buffers(int k, int rank) : counts(static_cast<std::size_t>(k)) {
    for (int r = 0; r < k; ++r) counts[static_cast<std::size_t>(r)] = static_cast<std::size_t>(3 * r + 1 + (r == 0 ? 4 : 0));
    for (std::size_t c : counts) total += c;
    mine = fc::array<T>(counts[static_cast<std::size_t>(rank)]);
    all = fc::array<T>(total);
    host_mine.resize(mine.size());
    host_all.resize(total);
  }
};

// The adding kernel alone, with five ranks' parts (what one GPU can check of a five-rank sum).
template <class T>
void check_kernel(const fc::context<>& ctx, buffers<T>& b) {
  const std::size_t n = buffers<T>::n;
  std::vector<T> parts(5 * n);
  for (int r = 0; r < 5; ++r)
    for (std::size_t i = 0; i < n; ++i) parts[static_cast<std::size_t>(r) * n + i] = value<T>(r, i);
  fc::copy_to_device(ctx, parts.data(), b.parts.data(), parts.size());
  dist::detail::launch_add_in_rank_order(b.parts.data(), n, 5, b.out.data(), ctx.stream());
  EXPECT(same_bits(download(ctx, b.out), rank_order_sum<T>(n, 5)));
  // The order matters for these values: the reverse order gives other bits somewhere.
  bool differs = false;
  for (std::size_t i = 0; i < n && !differs; ++i) {
    T v = value<T>(4, i);
    for (int r = 3; r >= 0; --r) v += value<T>(r, i);
    differs = v != rank_order_sum<T>(n, 5)[i];
  }
  EXPECT(differs);
  say(std::string("rank-order adding kernel, 5 parts of ") + std::to_string(n) + " " + type_name<T>() + ": checked");
}

template <class T>
void check_all_reduce(const fc::context<>& ctx, dist::nccl_communicator& comm, buffers<T>& b, std::uint64_t& sent) {
  const std::size_t n = buffers<T>::n;
  const int k = comm.size();
  const std::vector<T> expected = rank_order_sum<T>(n, k);
  // What a sum of m values hands to NCCL: the others' shares of this rank's values, then its
  // share's sums to every other rank.
  const auto bytes_of_sum = [&](std::size_t m) -> std::uint64_t {
    const std::size_t share = dist::rank_rows(m, comm.rank(), k).count;
    return (m - share) * sizeof(T) + share * sizeof(T) * static_cast<std::uint64_t>(k - 1);
  };
  const std::uint64_t per_sum = bytes_of_sum(n);

  // Device span: queued, then waited for.
  const std::vector<T> own = values_of<T>(comm.rank(), n);
  fc::copy_to_device(ctx, own.data(), b.sum.data(), n);
  comm.all_reduce_sum(std::span<T>(b.sum.data(), n));
  comm.synchronize();
  sent += per_sum;
  EXPECT(same_bits(download(ctx, b.sum), expected));
  say(std::string("all_reduce_sum, device span of ") + std::to_string(n) + " " + type_name<T>() + ": checked");

  // Host span: staged, waited for inside.
  b.host_sum = own;
  comm.all_reduce_sum(std::span<T>(b.host_sum));
  sent += per_sum;
  EXPECT(same_bits(b.host_sum, expected));
  // One host scalar, as the trainer passes a loss.
  T one = value<T>(comm.rank(), 5);
  comm.all_reduce_sum(std::span<T>(&one, 1));
  sent += bytes_of_sum(1);
  EXPECT(std::memcmp(&one, &rank_order_sum<T>(6, k)[5], sizeof(T)) == 0);
  say(std::string("all_reduce_sum, host spans (") + std::to_string(n) + " and 1 " + type_name<T>() + "): checked");
}

template <class T>
void check_all_gather(const fc::context<>& ctx, dist::nccl_communicator& comm, buffers<T>& b, std::uint64_t& sent) {
  const int k = comm.size();
  const auto me = static_cast<std::size_t>(comm.rank());
  std::vector<T> expected;
  for (int r = 0; r < k; ++r) {
    const std::vector<T> v = values_of<T>(r + 100, b.counts[static_cast<std::size_t>(r)]);
    expected.insert(expected.end(), v.begin(), v.end());
  }
  const std::vector<T> own = values_of<T>(comm.rank() + 100, b.counts[me]);
  const std::uint64_t per_gather = b.counts[me] * sizeof(T) * static_cast<std::uint64_t>(k - 1);
  const std::span<const std::size_t> counts(b.counts);

  // Device spans.
  fc::copy_to_device(ctx, own.data(), b.mine.data(), own.size());
  const std::vector<T> zeros(b.total, T(0));
  fc::copy_to_device(ctx, zeros.data(), b.all.data(), zeros.size());
  comm.all_gather(std::span<const T>(b.mine.data(), b.mine.size()), counts, std::span<T>(b.all.data(), b.all.size()));
  comm.synchronize();
  sent += per_gather;
  EXPECT(download(ctx, b.all) == expected);

  // Host spans, both.
  b.host_mine = own;
  std::fill(b.host_all.begin(), b.host_all.end(), T(0));
  comm.all_gather(std::span<const T>(b.host_mine), counts, std::span<T>(b.host_all));
  sent += per_gather;
  EXPECT(b.host_all == expected);

  // Mixed: this rank's part on the device, the output on the host.
  std::fill(b.host_all.begin(), b.host_all.end(), T(0));
  comm.all_gather(std::span<const T>(b.mine.data(), b.mine.size()), counts, std::span<T>(b.host_all));
  sent += per_gather;
  EXPECT(b.host_all == expected);
  say(std::string("all_gather, counts 5, 4, 7, … (") + std::to_string(b.total) + " " + type_name<T>() +
      "; device, host and mixed spans): checked");
}

void check_broadcast(const fc::context<>& ctx, dist::nccl_communicator& comm, fc::array<std::byte>& d,
                     std::vector<std::byte>& h, std::uint64_t& sent) {
  const int root = comm.size() - 1;
  std::vector<std::byte> expected(d.size());
  for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<std::byte>((i * 31 + 7) & 0xff);
  const std::vector<std::byte> start = comm.rank() == root ? expected : std::vector<std::byte>(d.size());
  fc::copy_to_device(ctx, start.data(), d.data(), start.size());
  comm.broadcast(std::span<std::byte>(d.data(), d.size()), root);
  comm.synchronize();
  EXPECT(download(ctx, d) == expected);
  h = start;
  comm.broadcast(std::span<std::byte>(h), root);
  EXPECT(h == expected);
  if (comm.rank() == root) sent += 2 * d.size() * static_cast<std::uint64_t>(comm.size() - 1);
  say("broadcast of " + std::to_string(d.size()) + " bytes from the last rank (device and host spans): checked");
}

void check_refusals(dist::nccl_communicator& comm) {
  // Checked before any exchange, alike on every rank.
  bool refused = false;
  try {
    std::byte b{};
    comm.broadcast(std::span<std::byte>(&b, 1), comm.size());
  } catch (const fusemix::argument_error& e) {
    refused = std::strstr(e.what(), "fusemix::dist::nccl_communicator::broadcast") != nullptr;
  }
  EXPECT(refused);
  refused = false;
  try {
    std::vector<float> mine(2), all(2);
    std::vector<std::size_t> counts(static_cast<std::size_t>(comm.size()) + 1, 0);
    comm.all_gather(std::span<const float>(mine), std::span<const std::size_t>(counts), std::span<float>(all));
  } catch (const fusemix::shape_error& e) {
    refused = std::strstr(e.what(), "fusemix::dist::nccl_communicator::all_gather") != nullptr;
  }
  EXPECT(refused);
  say("a root outside the group and a count per rank missing: refused by name");
}

// Training --------------------------------------------------------------------------------------

using gpu = fc::backend<float>;
using gpu_adapter = fusemix::fusion_adapter<fusemix::dynamic_shape, gpu>;

struct run_result {
  std::vector<double> losses;   // per step
  std::vector<double> weights;  // both adapters, then the loss's scalars
};

// 20 steps of FuseMix on pairs with a learnable relation (the same on every rank), across the ranks
// of `comm` or (empty) in this process alone.
template <class Loss>
run_result train(const gpu& be, const gpu::matrix_type& zx, const gpu::matrix_type& zy, fusemix::mix_mode mode,
                 std::size_t micro, std::optional<dist::any_communicator> comm) {
  const fusemix::adapter_shape sx{.in_dim = static_cast<std::size_t>(zx.cols()), .out_dim = 6, .depth = 1};
  const fusemix::adapter_shape sy{.in_dim = static_cast<std::size_t>(zy.cols()), .out_dim = 6, .depth = 1};
  gpu_adapter hx(sx, {.dropout = 0.3, .seed = 1}, be), hy(sy, {.dropout = 0.3, .seed = 2}, be);
  const fusemix::train_options o{.epochs = 7, .batch = 32, .lr = 3e-3, .weight_decay = 0.1,
                                 .mixup = {.alpha = 1.0, .mode = mode}, .seed = 4, .max_steps = 20,
                                 .micro_batch = micro};
  fusemix::trainer tr(hx, hy, Loss(be), o, be);
  if (comm) tr.set_communicator(*comm);
  run_result r;
  while (tr.global_step() < 20)
    tr.train_epoch(zx, zy, [&](std::size_t, std::size_t, double loss, double) { r.losses.push_back(loss); });
  for (const gpu_adapter* h : {&hx, &hy}) {
    std::vector<float> v(h->parameters().size());
    h->copy_parameters_to(std::span<float>(v));
    r.weights.insert(r.weights.end(), v.begin(), v.end());
  }
  for (const float v : tr.loss().parameters()) r.weights.push_back(v);  // (host scalars)
  return r;
}

double norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

template <class Loss>
void check_training(const gpu& be, dist::nccl_communicator& comm, dist::mpi_communicator& world, const char* name) {
  // y = x·A + noise, from one seed on every rank.
  const std::size_t n = 96, dx = 12, dy = 8;
  std::mt19937_64 gen(81);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd x(n, dx), a(dx, dy), noise(n, dy);
  for (auto* m : {&x, &a, &noise})
    for (Eigen::Index i = 0; i < m->size(); ++i) m->data()[i] = normal(gen);
  const fusemix::matrix<float> hx = x.cast<float>(), hy = (x * a + 0.1 * noise).cast<float>();
  const gpu::matrix_type zx = be.upload(hx), zy = be.upload(hy);
  for (const auto mode : {fusemix::mix_mode::permutation, fusemix::mix_mode::halves})
    for (const std::size_t micro : {std::size_t{0}, std::size_t{5}}) {
      const std::string what = std::string(name) + " " + std::string(fusemix::to_string(mode)) + " micro " +
                               std::to_string(micro) + " on " + std::to_string(comm.size()) + " rank(s)";
      const run_result one = train<Loss>(be, zx, zy, mode, micro, std::nullopt);
      const run_result many = train<Loss>(be, zx, zy, mode, micro, dist::any_communicator(comm));
      EXPECT(one.losses.size() == 20 && many.losses.size() == 20);
      double worst_loss = 0;
      for (std::size_t s = 0; s < std::min(one.losses.size(), many.losses.size()); ++s)
        worst_loss = std::max(worst_loss, std::fabs(many.losses[s] - one.losses[s]) / std::fabs(one.losses[s]));
      std::vector<double> diff(one.weights.size());
      for (std::size_t i = 0; i < diff.size(); ++i) diff[i] = many.weights[i] - one.weights[i];
      const double rel = norm(diff) / norm(one.weights);
      EXPECT(worst_loss <= 1e-5);
      EXPECT(rel <= 1e-5);
      // The same bits on every rank (the ranks' weights gathered over MPI).
      const auto k = static_cast<std::size_t>(world.size());
      std::vector<std::size_t> counts(k, many.weights.size());
      std::vector<double> all(k * many.weights.size());
      world.all_gather(std::span<const double>(many.weights), std::span<const std::size_t>(counts), std::span<double>(all));
      bool same = true;
      for (std::size_t r = 1; r < k; ++r)
        same = same && std::memcmp(all.data(), all.data() + r * many.weights.size(), many.weights.size() * sizeof(double)) == 0;
      EXPECT(same);
      char line[256];
      std::snprintf(line, sizeof line, "trainer, %s: losses within %.2e, weights within %.2e relative of one process%s",
                    what.c_str(), worst_loss, rel, same ? ", the same bits on every rank" : "");
      say(line);
    }
}

}  // namespace

int main(int argc, char** argv) {
  dist::mpi_session mpi(&argc, &argv);
  try {
    dist::mpi_communicator world;
    my_rank = world.rank();

    // No device on some rank: every rank skips, before any CUDA or NCCL state is made.
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess) devices = 0;
    int fewest = 0;
    MPI_Allreduce(&devices, &fewest, 1, MPI_INT, MPI_MIN, world.native());
    if (fewest == 0) {
      say(std::string("no CUDA device: skipped (cudaGetDeviceCount: ") +
          (e == cudaSuccess ? "0 devices" : cudaGetErrorString(e)) + ")");
      return 77;
    }

    const int device = dist::nccl_communicator::select_device(world);
    EXPECT(device == dist::local_rank(world) % devices);
    const auto ctx = std::make_shared<fc::context<>>();  // its stream on the selected device
    dist::nccl_communicator comm(world, ctx->stream(), {.timeout_seconds = 120});
    EXPECT(comm.rank() == world.rank() && comm.size() == world.size() && comm.device() == device);
    say("nccl_communicator of " + std::to_string(comm.size()) + " rank(s), rank 0 on device " +
        std::to_string(comm.device()) + ": connected");
    dist::any_communicator erased(comm);  // what the trainer holds
    EXPECT(erased.size() == comm.size());

    buffers<float> bf(comm.size(), comm.rank());
    buffers<double> bd(comm.size(), comm.rank());
    fc::array<std::byte> bytes(4099);
    std::vector<std::byte> host_bytes;
    std::uint64_t sent = 0;
    std::uint64_t before = 0;
    for (int round = 0; round < 2; ++round) {
      if (round == 1) {
        say("second round: no allocation once warm");
        before = fc::allocations();
      }
      check_kernel(*ctx, bf);
      check_kernel(*ctx, bd);
      check_all_reduce(*ctx, comm, bf, sent);
      check_all_reduce(*ctx, comm, bd, sent);
      check_all_gather(*ctx, comm, bf, sent);
      check_all_gather(*ctx, comm, bd, sent);
      check_broadcast(*ctx, comm, bytes, host_bytes, sent);
      comm.barrier();
    }
    EXPECT(fc::allocations() == before);
    EXPECT(comm.bytes_sent() == sent);
    if (comm.size() > 1) EXPECT(comm.bytes_sent() > 0);
    EXPECT(erased.bytes_sent() == comm.bytes_sent());
    say("bytes_sent " + std::to_string(comm.bytes_sent()) + " as counted, " +
        std::to_string(comm.seconds_in_operations()) + " s in operations");
    check_refusals(comm);
    comm.barrier();
    const gpu be(ctx);  // the stream the communicator runs on
    check_training<fusemix::contrastive_loss<gpu>>(be, comm, world, "contrastive");
    check_training<fusemix::sigmoid_loss<gpu>>(be, comm, world, "sigmoid");
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "rank %d: unexpected exception: %s\n", my_rank, ex.what());
    return 1;
  }
  int all_failures = 0;
  MPI_Allreduce(&failures, &all_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (all_failures != 0) {
    if (my_rank == 0) std::fprintf(stderr, "%d check(s) failed\n", all_failures);
    return 1;
  }
  say("all NCCL checks passed");
  return 0;
}
