// SPDX-License-Identifier: Apache-2.0
/// @file
/// Processes that train, select or evaluate together: the `Communicator` concept, its one-process
/// model (the default, no dependency), and `any_communicator`, the reference the trainer holds.
/// The Open MPI model is <fusemix/dist/mpi.hpp> (it needs <mpi.h>; CMake target `fusemix::mpi`).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

#include <fusemix/core/error.hpp>

namespace fusemix::dist {

/// A group of `size()` processes, this one `rank()` of them, that exchange host memory (and device
/// memory too where the model says so: `reaches_device_memory`).
///
/// Every operation is collective (every rank calls it, in the same order, with the same sizes)
/// and gives the same bits on every rank and in every run of the same group: `all_reduce_sum`
/// adds the ranks' values in rank order (rank 0's + rank 1's + …), never in arrival order, which
/// is what makes a data-parallel run resume bitwise. An operation that waits longer than the
/// model's timeout for another rank ends every process (`abort`) with one line naming the
/// operation, so a rank that dies or hangs never leaves the others waiting forever.
///
///   - `all_reduce_sum(v)`: every rank's `v` replaced by the sum over ranks;
///   - `all_gather(mine, counts, all)`: rank r's `mine` (`counts[r]` values) at offset
///     `counts[0] + … + counts[r−1]` of every rank's `all`;
///   - `broadcast(bytes, root)`: `root`'s bytes to every rank;
///   - `barrier()`; `abort(why)`: ends every rank, `why` on this one's stderr.
template <class C>
concept Communicator = requires(C& c, const C& cc, std::span<float> f, std::span<double> d, std::span<const float> cf,
                                std::span<const double> cd, std::span<const std::size_t> counts,
                                std::span<std::byte> bytes, std::string_view why) {
  { cc.rank() } -> std::convertible_to<int>;
  { cc.size() } -> std::convertible_to<int>;
  c.all_reduce_sum(f);
  c.all_reduce_sum(d);
  c.all_gather(cf, counts, f);
  c.all_gather(cd, counts, d);
  c.broadcast(bytes, 0);
  c.barrier();
  c.abort(why);
};

/// A `Communicator` that can start a sum and finish it later, so that a trainer sums the gradients
/// of the layers its backward has finished while the layers below still run (buckets, as
/// PyTorch's DistributedDataParallel does):
///
///   - `start_all_reduce_sum(v)`: collective, as `all_reduce_sum(v)`, but returns at once; `v`
///     holds the sum (the same bits as `all_reduce_sum` gives) after `finish()`, and must not
///     be read or written before;
///   - `progress()`: moves the started sums on without waiting (where data moves only while the
///     library is called, as with Open MPI's shared memory and TCP transports);
///   - `finish()`: waits for every started sum (under the model's timeout).
///
/// Sums complete in the order they were started, and any other operation finishes them first, so
/// the ranks' operations stay in one order. `any_communicator` offers the three for every model:
/// for one without them, `start_all_reduce_sum` is `all_reduce_sum` and the others do nothing.
template <class C>
concept OverlappingCommunicator =
    Communicator<C> && requires(C& c, std::span<float> f, std::span<double> d) {
      c.start_all_reduce_sum(f);
      c.start_all_reduce_sum(d);
      c.progress();
      c.finish();
    };

/// Whether communicator `C` exchanges spans in device memory as well as host memory (a model
/// says so with `static constexpr bool device_memory = true`, as the NCCL model does); the other
/// models exchange host memory only.
template <class C>
inline constexpr bool reaches_device_memory = [] {
  if constexpr (requires { C::device_memory; }) return static_cast<bool>(C::device_memory);
  else return false;
}();

/// Rows `[first, first + count)` of `n` that rank `rank` of `size` owns: contiguous, in rank
/// order, sizes differing by at most one (so K ranks cover exactly the rows of one process).
struct row_range {
  std::size_t first = 0, count = 0;
};
[[nodiscard]] constexpr row_range rank_rows(std::size_t n, int rank, int size) noexcept {
  const auto r = static_cast<std::size_t>(rank), k = static_cast<std::size_t>(size);
  const std::size_t first = n * r / k;
  return {first, n * (r + 1) / k - first};
}

/// The counts an `all_gather` takes when every rank r holds its `rank_rows(n, r, size)` rows of
/// `per_row` values each: `counts[r]` = those rows × `per_row` (resized to `size`; its capacity is
/// reused, so a warm step allocates nothing).
inline void rank_counts(std::size_t n, int size, std::size_t per_row, std::vector<std::size_t>& counts) {
  counts.resize(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) counts[static_cast<std::size_t>(r)] = rank_rows(n, r, size).count * per_row;
}

/// The group of one process: rank 0 of 1, every operation a copy or nothing.
class single_process {
 public:
  [[nodiscard]] int rank() const noexcept { return 0; }
  [[nodiscard]] int size() const noexcept { return 1; }
  template <class T>
  void all_reduce_sum(std::span<T>) noexcept {}
  template <class T>
  void all_gather(std::span<const T> mine, std::span<const std::size_t> counts, std::span<T> all) const {
    if (counts.size() != 1 || counts[0] != mine.size() || all.size() != mine.size())
      throw_expected<shape_error>("fusemix::dist::single_process::all_gather", "one count, equal to both sizes",
                                  concat(mine.size()), concat(counts.size(), " counts, output of ", all.size()));
    std::copy(mine.begin(), mine.end(), all.begin());
  }
  void broadcast(std::span<std::byte>, int) noexcept {}
  void barrier() noexcept {}
  /// Prints `why` and ends the process (exit status 1).
  [[noreturn]] void abort(std::string_view why) const {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(why.size()), why.data());
    std::exit(1);
  }
};

/// A reference to any `Communicator`, with its type erased: what the trainer and the selector
/// hold, so that they stay templates of their models and losses only. The referenced group must
/// outlive it. Default-constructed, it is the one-process group.
class any_communicator {
 public:
  any_communicator() noexcept = default;
  template <Communicator C>
    requires(!std::same_as<C, any_communicator>)
  any_communicator(C& c) noexcept : self_(&c), ops_(&ops_of<C>) {}  // NOLINT: a reference, implicit by design

  [[nodiscard]] int rank() const noexcept { return self_ == nullptr ? 0 : ops_->rank(self_); }
  [[nodiscard]] int size() const noexcept { return self_ == nullptr ? 1 : ops_->size(self_); }
  /// Whether more than one process takes part.
  [[nodiscard]] bool distributed() const noexcept { return size() > 1; }
  void all_reduce_sum(std::span<float> v) const {
    if (self_ != nullptr) ops_->reduce_f(self_, v);
  }
  void all_reduce_sum(std::span<double> v) const {
    if (self_ != nullptr) ops_->reduce_d(self_, v);
  }
  /// `OverlappingCommunicator`'s three where the group has them; for one without them the sum is
  /// made at once (`all_reduce_sum`) and `progress` and `finish` do nothing.
  void start_all_reduce_sum(std::span<float> v) const {
    if (self_ != nullptr) ops_->start_f(self_, v);
  }
  void start_all_reduce_sum(std::span<double> v) const {
    if (self_ != nullptr) ops_->start_d(self_, v);
  }
  void progress() const {
    if (self_ != nullptr) ops_->progress(self_);
  }
  void finish() const {
    if (self_ != nullptr) ops_->finish(self_);
  }
  void all_gather(std::span<const float> mine, std::span<const std::size_t> counts, std::span<float> all) const {
    if (self_ != nullptr) ops_->gather_f(self_, mine, counts, all);
    else single_process{}.all_gather(mine, counts, all);
  }
  void all_gather(std::span<const double> mine, std::span<const std::size_t> counts, std::span<double> all) const {
    if (self_ != nullptr) ops_->gather_d(self_, mine, counts, all);
    else single_process{}.all_gather(mine, counts, all);
  }
  void broadcast(std::span<std::byte> bytes, int root) const {
    if (self_ != nullptr) ops_->broadcast(self_, bytes, root);
  }
  void barrier() const {
    if (self_ != nullptr) ops_->barrier(self_);
  }
  [[noreturn]] void abort(std::string_view why) const {
    if (self_ != nullptr) ops_->abort(self_, why);
    single_process{}.abort(why);
  }
  /// What the group's `bytes_sent()` says where it counts (`mpi_communicator`), else 0.
  [[nodiscard]] std::uint64_t bytes_sent() const noexcept { return self_ == nullptr ? 0 : ops_->bytes_sent(self_); }
  /// Whether the group exchanges device memory too (`reaches_device_memory`): what a device
  /// backend needs to train across processes.
  [[nodiscard]] bool device_memory() const noexcept { return self_ != nullptr && ops_->device_memory; }
  /// What the group's `seconds_in_operations()` says where it counts, else 0.
  [[nodiscard]] double seconds_in_operations() const noexcept { return self_ == nullptr ? 0 : ops_->seconds(self_); }

 private:
  struct ops {
    int (*rank)(void*);
    int (*size)(void*);
    void (*reduce_f)(void*, std::span<float>);
    void (*reduce_d)(void*, std::span<double>);
    void (*start_f)(void*, std::span<float>);
    void (*start_d)(void*, std::span<double>);
    void (*progress)(void*);
    void (*finish)(void*);
    void (*gather_f)(void*, std::span<const float>, std::span<const std::size_t>, std::span<float>);
    void (*gather_d)(void*, std::span<const double>, std::span<const std::size_t>, std::span<double>);
    void (*broadcast)(void*, std::span<std::byte>, int);
    void (*barrier)(void*);
    void (*abort)(void*, std::string_view);
    std::uint64_t (*bytes_sent)(void*);
    double (*seconds)(void*);
    bool device_memory;
  };
  template <class C, class T>
  static void start_sum(C& c, std::span<T> v) {
    if constexpr (OverlappingCommunicator<C>) c.start_all_reduce_sum(v);
    else c.all_reduce_sum(v);
  }
  template <class C>
  static constexpr ops ops_of{
      [](void* c) { return static_cast<int>(static_cast<C*>(c)->rank()); },
      [](void* c) { return static_cast<int>(static_cast<C*>(c)->size()); },
      [](void* c, std::span<float> v) { static_cast<C*>(c)->all_reduce_sum(v); },
      [](void* c, std::span<double> v) { static_cast<C*>(c)->all_reduce_sum(v); },
      [](void* c, std::span<float> v) { start_sum(*static_cast<C*>(c), v); },
      [](void* c, std::span<double> v) { start_sum(*static_cast<C*>(c), v); },
      [](void* c) {
        if constexpr (OverlappingCommunicator<C>) static_cast<C*>(c)->progress();
      },
      [](void* c) {
        if constexpr (OverlappingCommunicator<C>) static_cast<C*>(c)->finish();
      },
      [](void* c, std::span<const float> m, std::span<const std::size_t> n, std::span<float> a) {
        static_cast<C*>(c)->all_gather(m, n, a);
      },
      [](void* c, std::span<const double> m, std::span<const std::size_t> n, std::span<double> a) {
        static_cast<C*>(c)->all_gather(m, n, a);
      },
      [](void* c, std::span<std::byte> b, int root) { static_cast<C*>(c)->broadcast(b, root); },
      [](void* c) { static_cast<C*>(c)->barrier(); },
      [](void* c, std::string_view why) { static_cast<C*>(c)->abort(why); },
      [](void* c) -> std::uint64_t {
        if constexpr (requires(const C& cc) { cc.bytes_sent(); }) return static_cast<C*>(c)->bytes_sent();
        else return 0;
      },
      [](void* c) -> double {
        if constexpr (requires(const C& cc) { cc.seconds_in_operations(); })
          return static_cast<C*>(c)->seconds_in_operations();
        else return 0;
      },
      reaches_device_memory<C>,
  };
  void* self_ = nullptr;
  const ops* ops_ = nullptr;
};

static_assert(Communicator<single_process>);
static_assert(OverlappingCommunicator<any_communicator>);

}  // namespace fusemix::dist

