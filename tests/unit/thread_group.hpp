// SPDX-License-Identifier: Apache-2.0
/// @file
/// K ranks as K threads of one process: a `dist::Communicator` for unit tests of code sharded
/// over processes, without MPI. Sums are in rank order, as every model's.
#pragma once

#include <algorithm>
#include <barrier>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include <fusemix/dist/communicator.hpp>

namespace fusemix::test {

class thread_group {
 public:
  explicit thread_group(int size) : size_(size), sync_(size), posted_(static_cast<std::size_t>(size)) {}

  /// One thread's view of the group.
  class rank_view {
   public:
    rank_view(thread_group& g, int rank) noexcept : g_(&g), rank_(rank) {}
    [[nodiscard]] int rank() const noexcept { return rank_; }
    [[nodiscard]] int size() const noexcept { return g_->size_; }
    template <class T>
    void all_reduce_sum(std::span<T> v) {
      g_->post(rank_, v.data());
      std::vector<T> sum(v.size(), T(0));
      for (int r = 0; r < size(); ++r) {
        const T* theirs = static_cast<const T*>(g_->posted_[static_cast<std::size_t>(r)]);
        for (std::size_t i = 0; i < v.size(); ++i) sum[i] += theirs[i];
      }
      g_->sync_.arrive_and_wait();  // every rank has read every v
      std::copy(sum.begin(), sum.end(), v.begin());
    }
    template <class T>
    void all_gather(std::span<const T> mine, std::span<const std::size_t> counts, std::span<T> all) {
      g_->post(rank_, mine.data());
      std::size_t at = 0;
      for (int r = 0; r < size(); ++r) {
        const T* theirs = static_cast<const T*>(g_->posted_[static_cast<std::size_t>(r)]);
        std::copy(theirs, theirs + counts[static_cast<std::size_t>(r)], all.begin() + static_cast<std::ptrdiff_t>(at));
        at += counts[static_cast<std::size_t>(r)];
      }
      g_->sync_.arrive_and_wait();
    }
    void broadcast(std::span<std::byte> bytes, int root) {
      g_->post(rank_, bytes.data());
      if (rank_ != root) {
        const auto* theirs = static_cast<const std::byte*>(g_->posted_[static_cast<std::size_t>(root)]);
        std::copy(theirs, theirs + bytes.size(), bytes.begin());
      }
      g_->sync_.arrive_and_wait();
    }
    void barrier() { g_->sync_.arrive_and_wait(); }
    [[noreturn]] void abort(std::string_view why) const {
      std::fprintf(stderr, "%.*s\n", static_cast<int>(why.size()), why.data());
      std::abort();
    }

   private:
    thread_group* g_;
    int rank_;
  };

  /// `f(comm)` on `size` threads, `comm` each one's `rank_view`. An exception on a thread would
  /// leave the others waiting, so it ends the test program, naming itself.
  template <class F>
  void run(F f) {
    std::vector<std::thread> threads;
    for (int r = 0; r < size_; ++r)
      threads.emplace_back([this, r, &f] {
        rank_view comm(*this, r);
        try {
          f(comm);
        } catch (const std::exception& e) {
          comm.abort(e.what());
        }
      });
    for (auto& t : threads) t.join();
  }

 private:
  int size_;
  std::barrier<> sync_;
  std::vector<const void*> posted_;
  // Publishes this rank's buffer and waits until every rank has published its own.
  void post(int rank, const void* p) {
    posted_[static_cast<std::size_t>(rank)] = p;
    sync_.arrive_and_wait();
  }
};

}  // namespace fusemix::test
