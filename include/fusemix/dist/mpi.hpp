// SPDX-License-Identifier: Apache-2.0
/// @file
/// The Open MPI model of `Communicator` (host memory). Needs <mpi.h>: link `fusemix::mpi`
/// (CMake option `FUSEMIX_MPI`), which brings Debian's `libopenmpi-dev`.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <variant>
#include <vector>

#include <fusemix/core/error.hpp>
#include <fusemix/dist/communicator.hpp>

namespace fusemix::dist {

/// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun` with PMIx):
/// what a program checks before it initialises MPI, so that it also runs alone without one.
[[nodiscard]] inline bool launched_by_mpi() noexcept {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

/// MPI for the lifetime of the object: initialises it (one thread calls MPI, `MPI_THREAD_FUNNELED`)
/// unless it already is, and finalises it at the end if it initialised it.
class mpi_session {
 public:
  mpi_session(int* argc, char*** argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized == 0) {
      int provided = 0;
      MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
      owns_ = true;
    }
  }
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;
  ~mpi_session() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && finalized == 0) MPI_Finalize();
  }

 private:
  bool owns_ = false;
};

/// Settings of an `mpi_communicator`.
struct mpi_options {
  /// How long an operation waits for the other ranks before it ends every process: long enough
  /// for the slowest rank's step (and a first step that reads its files), short enough that a
  /// dead or stopped rank is noticed.
  double timeout_seconds = 600;
};

/// The ranks of an MPI communicator (`MPI_COMM_WORLD` by default), exchanging host memory with
/// non-blocking collectives that are waited for with a deadline (`mpi_options::timeout_seconds`;
/// past it, `abort`). Sums are reduced in rank order (a reduce-scatter by `MPI_Ialltoallv`, each
/// rank adding its share of the values rank 0 first, then an `MPI_Iallgatherv`), so every rank
/// and every run of the same group gets the same bits, whatever MPI's own reduction order.
/// Call it from one thread.
///
/// **Example**
///
///     fusemix::dist::mpi_session mpi(&argc, &argv);
///     fusemix::dist::mpi_communicator comm;          // MPI_COMM_WORLD
///     trainer.set_communicator(comm);                // data-parallel from the next step
class mpi_communicator {
 public:
  explicit mpi_communicator(MPI_Comm comm = MPI_COMM_WORLD, mpi_options o = {}) : comm_(comm), o_(o) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    counts_.resize(static_cast<std::size_t>(size_));
    displs_.resize(static_cast<std::size_t>(size_));
    recv_counts_.resize(static_cast<std::size_t>(size_));
    recv_displs_.resize(static_cast<std::size_t>(size_));
  }

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  [[nodiscard]] const mpi_options& options() const noexcept { return o_; }
  /// The MPI communicator itself: what a model built over this one (the NCCL model) bootstraps
  /// on, splits by node and aborts.
  [[nodiscard]] MPI_Comm native() const noexcept { return comm_; }
  /// The bytes this rank has handed to MPI for the other ranks so far: each value it sends counted
  /// once per rank that receives it (the volume the operations must deliver, whatever MPI's
  /// algorithm moves on the wire). What the distributed cost model is checked against.
  [[nodiscard]] std::uint64_t bytes_sent() const noexcept { return bytes_sent_; }
  /// Wall seconds this rank has spent inside the operations so far: moving data and waiting for
  /// the other ranks (the part of a step that does not shrink with more ranks).
  [[nodiscard]] double seconds_in_operations() const noexcept { return seconds_; }

  /// Every rank's `v` becomes the sum over ranks, added in rank order.
  template <class T>
    requires std::is_same_v<T, float> || std::is_same_v<T, double>
  void all_reduce_sum(std::span<T> v) {
    start_all_reduce_sum(v);
    finish();
  }

  /// Starts the sum of `v` over ranks (`OverlappingCommunicator`): `v` holds it, in rank order,
  /// after `finish()`. The sums started are made one after the other in the order started, each
  /// moved on by `progress()`, so a trainer's backward overlaps them with the layers it still runs.
  template <class T>
    requires std::is_same_v<T, float> || std::is_same_v<T, double>
  void start_all_reduce_sum(std::span<T> v) {
    if (size_ == 1 || v.empty()) return;
    sums_.push_back(pending_sum{v});
    progress();
  }

  /// Moves the started sums on as far as they go without waiting.
  void progress() { advance(false); }

  /// Waits for every started sum (under the timeout; past it, ends every rank).
  void finish() { advance(true); }

  /// Rank r's `mine` (`counts[r]` values) at its offset in every rank's `all`.
  /// @throws shape_error unless there is a count per rank, this rank's equals `mine.size()` and
  ///         they add up to `all.size()` (checked on every rank before any exchange).
  template <class T>
    requires std::is_same_v<T, float> || std::is_same_v<T, double>
  void all_gather(std::span<const T> mine, std::span<const std::size_t> counts, std::span<T> all) {
    constexpr const char* where = "fusemix::dist::mpi_communicator::all_gather";
    finish();  // (the started sums use counts_ and displs_ too)
    if (counts.size() != static_cast<std::size_t>(size_))
      throw_shape_error(where, "one count per rank", size_, counts.size());
    if (counts[static_cast<std::size_t>(rank_)] != mine.size())
      throw_shape_error(where, "this rank's count to equal its values", counts[static_cast<std::size_t>(rank_)],
                        mine.size());
    std::size_t total = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
      if (counts[r] > INT_MAX || total > INT_MAX) throw_shape_error(where, "counts and offsets below 2^31", INT_MAX, counts[r]);
      counts_[r] = static_cast<int>(counts[r]), displs_[r] = static_cast<int>(total);
      total += counts[r];
    }
    if (total != all.size()) throw_shape_error(where, "the counts to add up to the output's size", all.size(), total);
    MPI_Request req = MPI_REQUEST_NULL;
    MPI_Iallgatherv(mine.data(), static_cast<int>(mine.size()), type<T>(), all.data(), counts_.data(), displs_.data(),
                    type<T>(), comm_, &req);
    bytes_sent_ += mine.size() * sizeof(T) * static_cast<std::uint64_t>(size_ - 1);
    wait(req, "all_gather");
  }

  /// `root`'s `bytes` to every rank.
  void broadcast(std::span<std::byte> bytes, int root) {
    finish();
    constexpr std::size_t piece = std::size_t{1} << 30;
    for (std::size_t at = 0; at < bytes.size(); at += piece) {
      MPI_Request req = MPI_REQUEST_NULL;
      MPI_Ibcast(bytes.data() + at, static_cast<int>(std::min(piece, bytes.size() - at)), MPI_BYTE, root, comm_, &req);
      if (rank_ == root) bytes_sent_ += std::min(piece, bytes.size() - at) * static_cast<std::uint64_t>(size_ - 1);
      wait(req, "broadcast");
    }
  }

  void barrier() {
    finish();
    MPI_Request req = MPI_REQUEST_NULL;
    MPI_Ibarrier(comm_, &req);
    wait(req, "barrier");
  }

  /// Prints `why` (one line, with this rank) and ends every rank of the job.
  [[noreturn]] void abort(std::string_view why) {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(why.size()), why.data());
    std::fflush(stderr);
    MPI_Abort(comm_, 1);
    std::exit(1);
  }

 private:
  MPI_Comm comm_;
  mpi_options o_;
  int rank_ = 0, size_ = 1;
  std::vector<int> counts_, displs_, recv_counts_, recv_displs_;
  std::vector<std::byte> scratch_;
  std::uint64_t bytes_sent_ = 0;
  double seconds_ = 0;

  template <class T>
  static MPI_Datatype type() noexcept {
    if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
    else return MPI_DOUBLE;
  }

  // Waits for `req`, answering MPI's progress, until the deadline; past it, ends every rank.
  void wait(MPI_Request& req, const char* op) {
    const auto start = std::chrono::steady_clock::now();
    const auto limit = std::chrono::duration<double>(o_.timeout_seconds);
    for (unsigned spins = 0;; ++spins) {
      int done = 0;
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (done != 0) {
        seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return;
      }
      if (std::chrono::steady_clock::now() - start > limit)
        abort(concat("fusemix::dist::mpi_communicator::", op, ": rank ", rank_, " of ", size_, " waited ",
                     o_.timeout_seconds, " s for the other ranks (one has died or hangs); ending every rank"));
      // MPI moves a large message only while it is being tested (Open MPI has no progress thread):
      // test without pause for the first second, giving the core away between tests (ranks may
      // share cores); past that, the others are slow, not busy: test every millisecond.
      if (spins > 1000) {
        if (std::chrono::steady_clock::now() - start < std::chrono::seconds(1))
          std::this_thread::yield();
        else
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }

  // A started sum, made a piece at a time (counts must fit MPI's int), each piece in two phases:
  // a reduce-scatter by `MPI_Ialltoallv` (rank r receives every rank's values of its share, rank
  // 0's first, and adds them in that order), then an `MPI_Iallgatherv` of every rank's sums. Only
  // the front sum has an operation in flight, so every rank starts the same operations in the same
  // order, whenever its `progress` calls find them done.
  struct pending_sum {
    std::variant<std::span<float>, std::span<double>> values;
    std::size_t at = 0;  // the piece in flight starts here
    int phase = 0;       // 0: nothing started, 1: the reduce-scatter in flight, 2: the gather
  };
  static constexpr std::size_t piece_values = std::size_t{1} << 28;
  std::vector<pending_sum> sums_;  // sums_[front_] is in flight; cleared (capacity kept) when all are done
  std::size_t front_ = 0;
  MPI_Request sum_req_ = MPI_REQUEST_NULL;

  void advance(bool block) {
    while (front_ < sums_.size()) {
      pending_sum& p = sums_[front_];
      const bool piece_done = std::visit(
          [&](auto v) { return advance(p, v.subspan(p.at, std::min(piece_values, v.size() - p.at)), block); }, p.values);
      if (!piece_done) return;
      p.at += piece_values;
      if (p.at >= std::visit([](auto v) { return v.size(); }, p.values)) ++front_;
    }
    sums_.clear();
    front_ = 0;
  }

  // Moves the piece `v` of sum `p` on; whether it is done (without `block`, it may not be yet).
  template <class T>
  bool advance(pending_sum& p, std::span<T> v, bool block) {
    const std::size_t n = v.size(), k = static_cast<std::size_t>(size_);
    const row_range mine = rank_rows(n, rank_, size_);
    T* parts = reinterpret_cast<T*>(scratch_.data());
    if (p.phase == 0) {
      for (std::size_t r = 0; r < k; ++r) {
        const row_range theirs = rank_rows(n, static_cast<int>(r), size_);
        counts_[r] = static_cast<int>(theirs.count), displs_[r] = static_cast<int>(theirs.first);
        recv_counts_[r] = static_cast<int>(mine.count), recv_displs_[r] = static_cast<int>(r * mine.count);
      }
      scratch_.resize(k * mine.count * sizeof(T));
      parts = reinterpret_cast<T*>(scratch_.data());
      MPI_Ialltoallv(v.data(), counts_.data(), displs_.data(), type<T>(), parts, recv_counts_.data(),
                     recv_displs_.data(), type<T>(), comm_, &sum_req_);
      bytes_sent_ += (n - mine.count) * sizeof(T);  // every other rank's share of this rank's values
      p.phase = 1;
    }
    if (!done(sum_req_, block)) return false;
    if (p.phase == 1) {
      for (std::size_t i = 0; i < mine.count; ++i) {
        T s = parts[i];
        for (std::size_t r = 1; r < k; ++r) s += parts[r * mine.count + i];
        v[mine.first + i] = s;
      }
      // Then every rank's sums to every rank (counts_ and displs_ still hold each rank's share).
      MPI_Iallgatherv(MPI_IN_PLACE, 0, type<T>(), v.data(), counts_.data(), displs_.data(), type<T>(), comm_, &sum_req_);
      bytes_sent_ += mine.count * sizeof(T) * (k - 1);  // its sums to every other rank
      p.phase = 2;
      if (!done(sum_req_, block)) return false;
    }
    p.phase = 0;
    return true;
  }

  // Whether `req` is done: waited for (under the deadline) with `block`, else tested once.
  bool done(MPI_Request& req, bool block) {
    if (block) {
      wait(req, "all_reduce_sum");
      return true;
    }
    const auto start = std::chrono::steady_clock::now();
    int flag = 0;
    MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return flag != 0;
  }
};

static_assert(OverlappingCommunicator<mpi_communicator>);

}  // namespace fusemix::dist
