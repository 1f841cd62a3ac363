// SPDX-License-Identifier: Apache-2.0
/// @file
/// The NCCL model of `Communicator`: one GPU per rank, the values in device memory, bootstrapped
/// over the Open MPI model. Needs nvcc (it holds the kernel that adds the ranks' values), <nccl.h>
/// and <mpi.h>: link `fusemix::nccl` (CMake option `FUSEMIX_NCCL`), which brings `fusemix::cuda`,
/// `fusemix::mpi` and libnccl.
///
/// It has been compiled, never run on a GPU (docs/distributed.md, "The NCCL model").
#ifndef __CUDACC__
#  error "<fusemix/dist/nccl.hpp> needs nvcc (it holds a CUDA kernel): compile the file as CUDA and link fusemix::nccl"
#endif
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include <fusemix/backend/cuda/error.cuh>
#include <fusemix/backend/cuda/memory.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/dist/communicator.hpp>
#include <fusemix/dist/mpi.hpp>

namespace fusemix::dist {

/// The error category of `ncclResult_t` codes: name "nccl", messages from `ncclGetErrorString`.
/// A refused NCCL call is a `std::system_error` in it, as a failed CUDA call is one in "cuda".
[[nodiscard]] inline const std::error_category& nccl_category() noexcept {
  struct category final : std::error_category {
    const char* name() const noexcept override { return "nccl"; }
    std::string message(int c) const override { return ::ncclGetErrorString(static_cast<ncclResult_t>(c)); }
  };
  static const category instance;
  return instance;
}

/// Settings of an `nccl_communicator`.
struct nccl_options {
  /// How long a wait for the other ranks lasts before it ends every process, as
  /// `mpi_options::timeout_seconds`: long enough for the slowest rank's step, short enough that a
  /// dead or stopped rank is noticed.
  double timeout_seconds = 600;
};

namespace detail {

/// A process's place among the processes of a group that share its node.
struct node_place {
  int rank = 0, size = 1;
};

/// This process's place among the ranks of `comm` on its node (`MPI_COMM_TYPE_SHARED`).
/// Collective over `comm`.
[[nodiscard]] inline node_place place_on_node(MPI_Comm comm) {
  int world_rank = 0;
  MPI_Comm_rank(comm, &world_rank);
  MPI_Comm local = MPI_COMM_NULL;
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &local);
  node_place p;
  MPI_Comm_rank(local, &p.rank);
  MPI_Comm_size(local, &p.size);
  MPI_Comm_free(&local);
  return p;
}

/// `out[i] = parts[i] + parts[count + i] + … + parts[(ranks − 1)·count + i]`, added in that
/// order (rank 0's value first), whatever the launch: the sum every rank computes alike.
template <class T>
__global__ void add_in_rank_order(const T* __restrict__ parts, std::size_t count, int ranks, T* __restrict__ out) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    T s = parts[i];
    for (int r = 1; r < ranks; ++r) s += parts[static_cast<std::size_t>(r) * count + i];
    out[i] = s;
  }
}

/// Queues `add_in_rank_order` on `stream` (nothing when `count` is 0).
/// @throws std::system_error (category "cuda") if the launch fails.
template <class T>
void launch_add_in_rank_order(const T* parts, std::size_t count, int ranks, T* out, cudaStream_t stream) {
  if (count == 0) return;
  constexpr unsigned threads = 256;
  const std::size_t blocks = std::min<std::size_t>((count + threads - 1) / threads, 4096);
  add_in_rank_order<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(parts, count, ranks, out);
  FUSEMIX_CUDA_CHECK_LAUNCH();
}

/// Makes `device` current for a scope and restores the previous one after it.
class device_scope {
 public:
  explicit device_scope(int device) {
    FUSEMIX_CUDA_CHECK(::cudaGetDevice(&previous_));
    if (previous_ != device) FUSEMIX_CUDA_CHECK(::cudaSetDevice(device));
    device_ = device;
  }
  device_scope(const device_scope&) = delete;
  device_scope& operator=(const device_scope&) = delete;
  ~device_scope() {
    if (previous_ != device_) static_cast<void>(::cudaSetDevice(previous_));
  }

 private:
  int previous_ = 0, device_ = 0;
};

}  // namespace detail

/// The rank of this process among the processes of `mpi` on its node: what picks its GPU.
/// Collective: every rank of `mpi` calls it.
[[nodiscard]] inline int local_rank(const mpi_communicator& mpi) { return detail::place_on_node(mpi.native()).rank; }

/// The ranks of an MPI group, one GPU each, exchanging device memory with NCCL on one CUDA stream:
/// the CUDA backend's (`fusemix::cuda::context<>::stream()`), so an exchange is ordered with the
/// backend's work and never waits for the host. Sums are reduced in rank order as in
/// `mpi_communicator` (each rank receives every rank's copy of its share, by grouped
/// `ncclSend`/`ncclRecv`, and a kernel adds them rank 0 first; then every rank's sums to every
/// rank), never by `ncclAllReduce`, whose order depends on the topology: every rank and every run
/// of the same group gets the same bits. Call it from one thread.
///
/// **Device and stream.** Each rank uses device `local rank % device count` (`select_device`). The
/// stream passed in must belong to that device: call `select_device` before anything creates CUDA
/// state (the backend's context, `context<>::shared()`, an `array`), then create the context, then
/// the communicator on the context's stream. The constructor selects the same device again, and
/// refuses a stream of another device where the CUDA runtime can tell (12.8 and later).
///
/// **Device and host spans.** Spans in this rank's device memory (or managed memory) are
/// exchanged in place and the operation is only queued: it returns before the exchange is done,
/// like a kernel launch, and the result is there for the work queued on the stream after it. Spans
/// in host memory (a loss, a stop flag, the loss's few parameters) are copied to device scratch,
/// exchanged there, and copied back: such an operation waits for its result before it returns.
/// Each span is told apart by `cudaPointerGetAttributes`.
///
/// **Deadline.** Every wait (for NCCL to take an operation, for the stream in a host-span
/// operation, `barrier` and `synchronize`) polls the stream and NCCL's asynchronous error state,
/// with `nccl_options::timeout_seconds`: past it, or on an NCCL failure, `abort` ends every rank
/// with one line naming the operation. An operation on device spans is only checked at the next
/// wait, so a program that exchanges only device memory calls `synchronize` (or `barrier`) once a
/// step for the deadline to hold; the backend's own `context::synchronize` waits without it.
///
/// Scratch memory (device and page-locked host) grows to the largest request and is kept, so a
/// step allocates nothing once warm. A refused NCCL or CUDA call throws `std::system_error`
/// (category "nccl" or "cuda") naming the operation; wrong sizes throw `shape_error`.
///
/// **Example**
///
///     fusemix::dist::mpi_session mpi(&argc, &argv);
///     fusemix::dist::mpi_communicator world;
///     fusemix::dist::nccl_communicator::select_device(world);   // before any CUDA state
///     auto ctx = std::make_shared<fusemix::cuda::context<>>();  // its stream on that device
///     fusemix::dist::nccl_communicator comm(world, ctx->stream());
///     comm.all_reduce_sum(std::span<float>(gradients.data(), gradients.size()));  // queued
///     comm.synchronize();                                       // the deadline holds here
class nccl_communicator {
 public:
  /// Spans in device memory are exchanged in place (`reaches_device_memory`).
  static constexpr bool device_memory = true;

  /// Makes this rank's GPU (its rank on the node modulo the node's device count) the current
  /// device and returns its index. Collective over `mpi`; call it before creating any CUDA state.
  /// @throws device_error if no CUDA device can be used.
  static int select_device(const mpi_communicator& mpi) { return device_for(detail::place_on_node(mpi.native())); }

  /// Joins the NCCL group of `mpi`'s ranks, on this rank's device (`select_device`), queuing its
  /// work on `stream`. Collective over `mpi`: rank 0 makes the group's id and broadcasts it over
  /// MPI; every rank then waits (with the deadline) for NCCL to connect the group. `mpi` must
  /// outlive the communicator (`abort` ends the job through it).
  /// @throws device_error if no CUDA device can be used; argument_error if `stream` belongs to
  ///         another device; std::system_error if NCCL or CUDA refuses a call.
  nccl_communicator(mpi_communicator& mpi, cudaStream_t stream, nccl_options o = {})
      : mpi_(&mpi), stream_(stream), o_(o), rank_(mpi.rank()), size_(mpi.size()) {
    constexpr const char* op = "nccl_communicator";
    const detail::node_place node = detail::place_on_node(mpi.native());
    device_ = device_for(node);
#if CUDART_VERSION >= 12080
    int stream_device = -1;
    FUSEMIX_CUDA_CHECK(::cudaStreamGetDevice(stream_, &stream_device));
    if (stream_device != device_)
      throw_expected<argument_error>(
          where(op), "a stream on this rank's device (create the CUDA context after select_device)",
          concat("device ", device_), concat("a stream on device ", stream_device));
#endif
    offsets_.resize(static_cast<std::size_t>(size_));
    ncclUniqueId id{};
    if (rank_ == 0) check(::ncclGetUniqueId(&id), op, "ncclGetUniqueId");
    mpi.broadcast(std::as_writable_bytes(std::span(id.internal)), 0);
    // Non-blocking: the connection is waited for here, with the deadline, not inside NCCL.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = ::ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      if (comm_ != nullptr) static_cast<void>(::ncclCommAbort(comm_));
      comm_ = nullptr;
      check(r, op, "ncclCommInitRankConfig");
    }
    int devices = 0;
    static_cast<void>(::cudaGetDeviceCount(&devices));
    settle(op, node.size > devices ? concat(" [", node.size, " ranks on this node, ", devices,
                                            " CUDA devices: NCCL needs a GPU per rank]")
                                   : std::string());
    try {
      flag_ = reinterpret_cast<float*>(scratch(flag_buffer_, sizeof(float), op));
      FUSEMIX_CUDA_CHECK(::cudaMemsetAsync(flag_, 0, sizeof(float), stream_));
    } catch (...) {  // the destructor does not run when a constructor throws
      static_cast<void>(::ncclCommAbort(comm_));
      comm_ = nullptr;
      release(flag_buffer_);
      throw;
    }
  }

  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;

  /// Leaves the group: waits (with the deadline) for NCCL to finish the operations queued, then
  /// frees the communicator; after an NCCL failure or past the deadline it aborts it instead
  /// (one line on stderr), without ending the other ranks.
  ~nccl_communicator() {
    int previous = -1;
    static_cast<void>(::cudaGetDevice(&previous));
    static_cast<void>(::cudaSetDevice(device_));
    if (comm_ != nullptr) {
      ncclResult_t s = state();
      if (s == ncclSuccess) {
        s = ::ncclCommFinalize(comm_);
        const auto start = std::chrono::steady_clock::now();
        for (unsigned spins = 0; s == ncclInProgress || s == ncclSuccess; ++spins) {
          s = state();
          if (s != ncclInProgress) break;
          if (past_deadline(start)) {
            std::fprintf(stderr,
                         "fusemix::dist::nccl_communicator::~nccl_communicator: rank %d of %d waited %g s for the "
                         "queued operations to finish; aborting the NCCL communicator\n",
                         rank_, size_, o_.timeout_seconds);
            break;
          }
          pause(spins, start);
        }
      }
      if (s == ncclSuccess) static_cast<void>(::ncclCommDestroy(comm_));
      else static_cast<void>(::ncclCommAbort(comm_));
      comm_ = nullptr;
    }
    for (buffer* b : {&parts_buffer_, &staging_device_, &staging_host_, &flag_buffer_}) release(*b);
    if (previous >= 0) static_cast<void>(::cudaSetDevice(previous));
  }

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  /// The CUDA device this rank uses.
  [[nodiscard]] int device() const noexcept { return device_; }
  /// The stream every operation is queued on.
  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }
  [[nodiscard]] const nccl_options& options() const noexcept { return o_; }
  /// The NCCL communicator itself.
  [[nodiscard]] ncclComm_t native() const noexcept { return comm_; }
  /// The bytes this rank has handed to NCCL for the other ranks so far, each value counted once
  /// per rank that receives it, as `mpi_communicator::bytes_sent` counts them.
  [[nodiscard]] std::uint64_t bytes_sent() const noexcept { return bytes_sent_; }
  /// Wall seconds this rank's host has spent waiting inside the operations so far (for NCCL to
  /// take them, for the stream where an operation waits). The device-side time of queued
  /// exchanges is not in it: that is the stream's.
  [[nodiscard]] double seconds_in_operations() const noexcept { return seconds_; }

  /// Every rank's `v` becomes the sum over ranks, added in rank order.
  template <class T>
    requires std::is_same_v<T, float> || std::is_same_v<T, double>
  void all_reduce_sum(std::span<T> v) {
    constexpr const char* op = "all_reduce_sum";
    if (v.empty()) return;
    const detail::device_scope on(device_);
    if (!on_host(v.data(), op)) {
      reduce_on_device(v.data(), v.size(), op);
      return;
    }
    const std::size_t bytes = v.size_bytes();
    const staged s = staging(bytes, op);
    std::memcpy(s.host, v.data(), bytes);
    copy(s.device, s.host, bytes, cudaMemcpyHostToDevice);
    reduce_on_device(reinterpret_cast<T*>(s.device), v.size(), op);
    copy(s.host, s.device, bytes, cudaMemcpyDeviceToHost);
    wait(op);
    std::memcpy(v.data(), s.host, bytes);
  }

  /// Rank r's `mine` (`counts[r]` values) at its offset in every rank's `all`.
  /// @throws shape_error unless there is a count per rank, this rank's equals `mine.size()` and
  ///         they add up to `all.size()` (checked on every rank before any exchange).
  template <class T>
    requires std::is_same_v<T, float> || std::is_same_v<T, double>
  void all_gather(std::span<const T> mine, std::span<const std::size_t> counts, std::span<T> all) {
    constexpr const char* op = "all_gather";
    const auto me = static_cast<std::size_t>(rank_);
    if (counts.size() != static_cast<std::size_t>(size_))
      throw_shape_error(where(op), "one count per rank", size_, counts.size());
    if (counts[me] != mine.size())
      throw_shape_error(where(op), "this rank's count to equal its values", counts[me], mine.size());
    std::size_t total = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
      offsets_[r] = total;
      total += counts[r];
    }
    if (total != all.size()) throw_shape_error(where(op), "the counts to add up to the output's size", all.size(), total);
    if (all.empty()) return;
    const detail::device_scope on(device_);
    const bool host_mine = !mine.empty() && on_host(mine.data(), op);
    const bool host_all = on_host(all.data(), op);
    const T* from = mine.data();
    T* to = all.data();
    staged s{};
    // Staged as [all | mine] (either part only where it is host memory), `mine` aligned.
    const std::size_t all_bytes = all.size_bytes(), mine_at = host_all ? (all_bytes + 255) / 256 * 256 : 0;
    if (host_mine || host_all) s = staging(mine_at + (host_mine ? mine.size_bytes() : 0), op);
    if (host_all) to = reinterpret_cast<T*>(s.device);
    if (host_mine) {
      std::memcpy(s.host + mine_at, mine.data(), mine.size_bytes());
      copy(s.device + mine_at, s.host + mine_at, mine.size_bytes(), cudaMemcpyHostToDevice);
      from = reinterpret_cast<const T*>(s.device + mine_at);
    }
    gather_on_device(from, counts, to, op);
    if (host_all) copy(s.host, s.device, all_bytes, cudaMemcpyDeviceToHost);
    if (host_mine || host_all) wait(op);
    if (host_all) std::memcpy(all.data(), s.host, all_bytes);
  }

  /// `root`'s `bytes` to every rank.
  /// @throws argument_error unless `root` is a rank of the group.
  void broadcast(std::span<std::byte> bytes, int root) {
    constexpr const char* op = "broadcast";
    if (root < 0 || root >= size_)
      throw_expected<argument_error>(where(op), "the root must be a rank of the group", concat("0 to ", size_ - 1), root);
    if (bytes.empty()) return;
    const detail::device_scope on(device_);
    const bool host = on_host(bytes.data(), op);
    std::byte* d = bytes.data();
    staged s{};
    if (host) {
      s = staging(bytes.size(), op);
      d = s.device;
      if (rank_ == root) {
        std::memcpy(s.host, bytes.data(), bytes.size());
        copy(s.device, s.host, bytes.size(), cudaMemcpyHostToDevice);
      }
    }
    call(::ncclBroadcast(d, d, bytes.size(), ncclUint8, root, comm_, stream_), op, "ncclBroadcast");
    if (rank_ == root) bytes_sent_ += bytes.size() * static_cast<std::uint64_t>(size_ - 1);
    if (!host) return;
    if (rank_ != root) copy(s.host, s.device, bytes.size(), cudaMemcpyDeviceToHost);
    wait(op);
    if (rank_ != root) std::memcpy(bytes.data(), s.host, bytes.size());
  }

  /// Returns once every rank has reached the barrier and this rank's queued work (exchanges and
  /// the backend's kernels on the stream) is done: a one-value exchange, waited for.
  void barrier() {
    constexpr const char* op = "barrier";
    const detail::device_scope on(device_);
    call(::ncclAllReduce(flag_, flag_, 1, ncclFloat32, ncclSum, comm_, stream_), op, "ncclAllReduce");
    wait(op);
  }

  /// Waits, with the deadline, for everything queued on the stream so far: where a program that
  /// exchanges device memory lets the deadline and NCCL's failures catch up with it.
  void synchronize() {
    const detail::device_scope on(device_);
    wait("synchronize");
  }

  /// Prints `why` (one line) and ends every rank of the job: the NCCL communicator is aborted
  /// (its kernels stop), then the MPI job.
  [[noreturn]] void abort(std::string_view why) {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(why.size()), why.data());
    std::fflush(stderr);
    if (comm_ != nullptr) static_cast<void>(::ncclCommAbort(comm_));
    comm_ = nullptr;
    MPI_Abort(mpi_->native(), 1);
    std::exit(1);
  }

 private:
  struct buffer {
    std::byte* data = nullptr;
    std::size_t size = 0;
    bool host = false;  // page-locked host memory, else device memory
  };
  struct staged {
    std::byte* device = nullptr;  // device scratch
    std::byte* host = nullptr;    // page-locked host scratch of the same size
  };

  mpi_communicator* mpi_;
  cudaStream_t stream_;
  nccl_options o_;
  int rank_ = 0, size_ = 1, device_ = 0;
  ncclComm_t comm_ = nullptr;
  buffer parts_buffer_, staging_device_, staging_host_{nullptr, 0, true}, flag_buffer_;
  float* flag_ = nullptr;
  std::vector<std::size_t> offsets_;
  std::uint64_t bytes_sent_ = 0;
  double seconds_ = 0;

  static std::string where(const char* op) { return concat("fusemix::dist::nccl_communicator::", op); }

  template <class T>
  static constexpr ncclDataType_t type() noexcept {
    if constexpr (std::is_same_v<T, float>) return ncclFloat32;
    else return ncclFloat64;
  }

  static int device_for(const detail::node_place& node) {
    int n = 0;
    const cudaError_t e = ::cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
      static_cast<void>(::cudaGetLastError());
      throw device_error(concat("fusemix::dist::nccl_communicator::select_device: no usable CUDA device (cudaGetDeviceCount: ",
                                e == cudaSuccess ? "0 devices" : ::cudaGetErrorString(e), ")"));
    }
    const int device = node.rank % n;
    FUSEMIX_CUDA_CHECK(::cudaSetDevice(device));
    return device;
  }

  // Throws the NCCL failure of `call` in operation `op`.
  static void check(ncclResult_t r, const char* op, const char* call) {
    if (r != ncclSuccess) throw std::system_error(static_cast<int>(r), nccl_category(), concat(where(op), ": ", call));
  }

  // An NCCL call outside a group: refused, it throws; taken, it is settled.
  void call(ncclResult_t r, const char* op, const char* what) {
    if (r == ncclInProgress) return settle(op);
    check(r, op, what);
  }

  // Runs `enqueue(note)` between ncclGroupStart and ncclGroupEnd (`note(result, call)` records the
  // first refusal: a group must be ended whatever happens in it), settles, then throws the refusal.
  template <class F>
  void group(const char* op, F&& enqueue) {
    check(::ncclGroupStart(), op, "ncclGroupStart");
    ncclResult_t first = ncclSuccess;
    const char* refused = nullptr;
    enqueue([&](ncclResult_t r, const char* what) {
      if (r != ncclSuccess && first == ncclSuccess) first = r, refused = what;
    });
    const ncclResult_t end = ::ncclGroupEnd();
    if (end == ncclInProgress) settle(op);
    if (first != ncclSuccess) check(first, op, refused);
    if (end != ncclInProgress) check(end, op, "ncclGroupEnd");
  }

  [[nodiscard]] bool past_deadline(std::chrono::steady_clock::time_point start) const {
    return std::chrono::steady_clock::now() - start > std::chrono::duration<double>(o_.timeout_seconds);
  }

  // Between polls: give the core away for the first second (ranks may share cores), then poll
  // every millisecond (the others are slow, not busy).
  static void pause(unsigned spins, std::chrono::steady_clock::time_point start) {
    if (spins < 64 || std::chrono::steady_clock::now() - start < std::chrono::seconds(1))
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  [[noreturn]] void timed_out(const char* op) {
    abort(concat(where(op), ": rank ", rank_, " of ", size_, " waited ", o_.timeout_seconds,
                 " s for the other ranks (one has died or hangs); ending every rank"));
  }

  [[noreturn]] void failed(const char* op, ncclResult_t s, std::string_view hint = {}) {
    const char* last = comm_ != nullptr ? ::ncclGetLastError(comm_) : nullptr;
    std::string detail = last != nullptr && *last != '\0' ? concat(": ", last) : std::string();
    std::replace(detail.begin(), detail.end(), '\n', ' ');  // one line
    abort(concat(where(op), ": rank ", rank_, " of ", size_, ": NCCL failed (", ::ncclGetErrorString(s), detail, ")",
                 hint, "; ending every rank"));
  }

  // NCCL's state: ncclSuccess, ncclInProgress or the failure.
  [[nodiscard]] ncclResult_t state() const {
    ncclResult_t s = ncclSuccess;
    const ncclResult_t q = ::ncclCommGetAsyncError(comm_, &s);
    return q != ncclSuccess ? q : s;
  }

  // Waits for NCCL to take what was just called (a non-blocking communicator's ncclInProgress);
  // nothing else may touch the communicator or the stream before. Past the deadline, or on a
  // failure, ends every rank.
  void settle(const char* op, std::string_view hint = {}) {
    const auto start = std::chrono::steady_clock::now();
    for (unsigned spins = 0;; ++spins) {
      const ncclResult_t s = state();
      if (s == ncclSuccess) break;
      if (s != ncclInProgress) failed(op, s, hint);
      if (past_deadline(start)) timed_out(op);
      pause(spins, start);
    }
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  // Waits for the stream (every exchange and kernel queued on it), watching NCCL's state. Past
  // the deadline, or on an NCCL failure, ends every rank.
  void wait(const char* op) {
    const auto start = std::chrono::steady_clock::now();
    for (unsigned spins = 0;; ++spins) {
      const cudaError_t e = ::cudaStreamQuery(stream_);
      if (e != cudaSuccess && e != cudaErrorNotReady) cuda::detail::check(e, where(op).append(": cudaStreamQuery").c_str());
      // A not-ready stream may be left as the runtime's last error; it is not one.
      if (e == cudaErrorNotReady) static_cast<void>(::cudaGetLastError());
      if (const ncclResult_t s = state(); s != ncclSuccess && s != ncclInProgress) failed(op, s);
      if (e == cudaSuccess) break;
      if (past_deadline(start)) timed_out(op);
      pause(spins, start);
    }
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  // Whether `p` is host memory (to be staged); device memory must be this rank's device's.
  [[nodiscard]] bool on_host(const void* p, const char* op) const {
    cudaPointerAttributes a{};
    const cudaError_t e = ::cudaPointerGetAttributes(&a, p);
    if (e == cudaErrorInvalidValue) {  // before CUDA 11: memory the runtime does not know
      static_cast<void>(::cudaGetLastError());
      return true;
    }
    cuda::detail::check(e, where(op).append(": cudaPointerGetAttributes").c_str());
    if (a.type == cudaMemoryTypeUnregistered || a.type == cudaMemoryTypeHost) return true;
    if (a.type == cudaMemoryTypeDevice && a.device != device_)
      throw_expected<argument_error>(where(op), "device memory of this rank's device", concat("device ", device_),
                                     concat("memory of device ", a.device));
    return false;
  }

  void copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) const {
    if (bytes != 0 && dst != src) FUSEMIX_CUDA_CHECK(::cudaMemcpyAsync(dst, src, bytes, kind, stream_));
  }

  // Frees `b` (ignoring errors: a destructor's or a failed constructor's path).
  static void release(buffer& b) noexcept {
    if (b.data != nullptr) static_cast<void>(b.host ? ::cudaFreeHost(b.data) : ::cudaFree(b.data));
    b.data = nullptr, b.size = 0;
  }

  // Scratch of at least `bytes` in `b`'s memory, grown by half again; queued work may still use
  // the old area, so it is waited for (with the deadline) before the area is freed.
  std::byte* scratch(buffer& b, std::size_t bytes, const char* op) {
    if (b.size >= bytes) return b.data;
    const std::size_t grown = std::max(bytes, b.size + b.size / 2);
    if (b.data != nullptr) {
      wait(op);
      FUSEMIX_CUDA_CHECK(b.host ? ::cudaFreeHost(b.data) : ::cudaFree(b.data));
      b.data = nullptr, b.size = 0;
    }
    void* p = nullptr;
    FUSEMIX_CUDA_CHECK(b.host ? ::cudaHostAlloc(&p, grown, cudaHostAllocDefault) : ::cudaMalloc(&p, grown));
    cuda::detail::allocation_counter().fetch_add(1, std::memory_order_relaxed);
    b.data = static_cast<std::byte*>(p), b.size = grown;
    return b.data;
  }

  // Device and page-locked host scratch of `bytes` each, for a host-span operation. Every such
  // operation waits before it returns, so neither is in use when the next one starts.
  staged staging(std::size_t bytes, const char* op) {
    return {scratch(staging_device_, bytes, op), scratch(staging_host_, bytes, op)};
  }

  // The rank-order sum of `v` (n values of this rank's device) over the group, queued.
  template <class T>
  void reduce_on_device(T* v, std::size_t n, const char* op) {
    const auto k = static_cast<std::size_t>(size_);
    const row_range mine = rank_rows(n, rank_, size_);
    T* parts = reinterpret_cast<T*>(scratch(parts_buffer_, std::max<std::size_t>(k * mine.count, 1) * sizeof(T), op));
    // parts[r·m, (r+1)·m) is rank r's copy of this rank's share (m values): its own first, then
    // every other rank's, each rank sending the others their shares.
    copy(parts + static_cast<std::size_t>(rank_) * mine.count, v + mine.first, mine.count * sizeof(T),
         cudaMemcpyDeviceToDevice);
    group(op, [&](auto note) {
      for (int r = 0; r < size_; ++r) {
        if (r == rank_) continue;
        const row_range theirs = rank_rows(n, r, size_);
        if (theirs.count != 0)
          note(::ncclSend(v + theirs.first, theirs.count, type<T>(), r, comm_, stream_), "ncclSend");
        if (mine.count != 0)
          note(::ncclRecv(parts + static_cast<std::size_t>(r) * mine.count, mine.count, type<T>(), r, comm_, stream_),
               "ncclRecv");
      }
    });
    bytes_sent_ += (n - mine.count) * sizeof(T);  // every other rank's share of this rank's values
    detail::launch_add_in_rank_order(parts, mine.count, size_, v + mine.first, stream_);
    // Then every rank's sums to every rank.
    group(op, [&](auto note) {
      for (int r = 0; r < size_; ++r) {
        if (r == rank_) continue;
        const row_range theirs = rank_rows(n, r, size_);
        if (mine.count != 0) note(::ncclSend(v + mine.first, mine.count, type<T>(), r, comm_, stream_), "ncclSend");
        if (theirs.count != 0)
          note(::ncclRecv(v + theirs.first, theirs.count, type<T>(), r, comm_, stream_), "ncclRecv");
      }
    });
    bytes_sent_ += mine.count * sizeof(T) * (k - 1);  // its sums to every other rank
  }

  // Rank r's part (`counts[r]` values from `from` on rank r) at offsets_[r] of `to`, queued.
  template <class T>
  void gather_on_device(const T* from, std::span<const std::size_t> counts, T* to, const char* op) {
    const auto me = static_cast<std::size_t>(rank_);
    copy(to + offsets_[me], from, counts[me] * sizeof(T), cudaMemcpyDeviceToDevice);
    group(op, [&](auto note) {
      for (int r = 0; r < size_; ++r) {
        if (r == rank_) continue;
        const auto ur = static_cast<std::size_t>(r);
        if (counts[me] != 0) note(::ncclSend(from, counts[me], type<T>(), r, comm_, stream_), "ncclSend");
        if (counts[ur] != 0) note(::ncclRecv(to + offsets_[ur], counts[ur], type<T>(), r, comm_, stream_), "ncclRecv");
      }
    });
    bytes_sent_ += counts[me] * sizeof(T) * static_cast<std::uint64_t>(size_ - 1);
  }
};

static_assert(Communicator<nccl_communicator>);

}  // namespace fusemix::dist
