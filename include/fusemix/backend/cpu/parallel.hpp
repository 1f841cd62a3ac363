// SPDX-License-Identifier: Apache-2.0
/// @file
/// How the CPU backend's row and elementwise passes share out their work among the threads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

#include <Eigen/Core>
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fusemix::cpu {

/// Elements of work under which a pass stays on the calling thread: opening a parallel region
/// costs microseconds, about what a core needs for this many elements of a simple pass.
inline constexpr Eigen::Index min_parallel_work = Eigen::Index{1} << 15;

/// Calls `piece(i)` for every `i` in `[0, pieces)`, on the OpenMP threads (`set_threads`) when the
/// work (`pieces · cost_per_piece` elements) pays for them and no parallel region is active, each
/// thread taking a contiguous run of pieces; otherwise in order on this thread.
///
/// The pieces are fixed by the data (a row, a run of 64 columns, a chunk of a vector), never by
/// the thread count, and each is computed the same way whoever runs it: every pass built on this
/// gives the same bits at every thread count. A reduction over pieces writes one partial per piece
/// and sums them in piece order afterwards, or walks the rows of its own columns in order.
/// `piece` must not throw.
template <class F>
void for_each_piece(Eigen::Index pieces, [[maybe_unused]] Eigen::Index cost_per_piece, F&& piece) {
#if defined(_OPENMP)
  const Eigen::Index work = pieces * std::max<Eigen::Index>(cost_per_piece, 1);
  if (work >= 2 * min_parallel_work && pieces > 1 && !omp_in_parallel()) {
    const auto threads = static_cast<int>(
        std::min<Eigen::Index>({omp_get_max_threads(), work / min_parallel_work, pieces}));
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
      {
        const Eigen::Index t = omp_get_thread_num(), n = omp_get_num_threads();
        const Eigen::Index end = pieces * (t + 1) / n;
        for (Eigen::Index i = pieces * t / n; i < end; ++i) piece(i);
      }
      return;
    }
  }
#endif
  for (Eigen::Index i = 0; i < pieces; ++i) piece(i);
}

/// Columns per piece of a pass that walks column runs down the rows (a column sum): a multiple of
/// every SIMD width, so a run's vector lanes fall where a whole row's would.
inline constexpr Eigen::Index column_run = 64;

/// `f(row)` for every row of a `rows × cols` pass (see `for_each_piece`).
template <class F>
void for_each_row(Eigen::Index rows, Eigen::Index cols, F&& f) {
  for_each_piece(rows, cols, std::forward<F>(f));
}

/// `f(first, count)` for every run of `column_run` columns of a `rows × cols` pass (the last run
/// may be shorter); each run walks all the rows (see `for_each_piece`).
template <class F>
void for_each_column_run(Eigen::Index rows, Eigen::Index cols, F&& f) {
  const Eigen::Index runs = (cols + column_run - 1) / column_run;
  for_each_piece(runs, rows * column_run, [&](Eigen::Index r) {
    const Eigen::Index first = r * column_run;
    f(first, std::min(column_run, cols - first));
  });
}

/// Elements per piece of a pass over a flat vector: its chunks start at multiples of this.
inline constexpr Eigen::Index vector_chunk = 4096;

/// `f(first, count)` for every chunk of `vector_chunk` elements of an `n`-vector (the last may be
/// shorter; see `for_each_piece`).
template <class F>
void for_each_chunk(Eigen::Index n, F&& f) {
  const Eigen::Index chunks = (n + vector_chunk - 1) / vector_chunk;
  for_each_piece(chunks, vector_chunk, [&](Eigen::Index c) {
    const Eigen::Index first = c * vector_chunk;
    f(first, std::min(vector_chunk, n - first));
  });
}

/// Runs `f(part)` over the pieces of a pass shaped like `a` (a dense Eigen expression): each
/// row of a matrix, each chunk of a vector. `part(m)` is that piece of any operand `m` of `a`'s
/// shape, so `f = [&](auto part) { part(y) = part(x); }` copies `x` into `y`.
template <class A, class F>
void for_each_part(const A& a, F&& f) {
  if constexpr (A::IsVectorAtCompileTime)
    for_each_chunk(a.size(), [&](Eigen::Index first, Eigen::Index count) {
      f([first, count](auto&& m) { return m.segment(first, count); });
    });
  else
    for_each_row(a.rows(), a.cols(), [&](Eigen::Index i) { f([i](auto&& m) { return m.row(i); }); });
}

/// One double per row of a reduction, written by the rows' pieces and then summed in row order.
class row_partials {
 public:
  /// Makes room for `n` rows (allocating only when `n` changes).
  void resize(Eigen::Index n) {
    if (v_.size() != n) v_.resize(n);
  }
  [[nodiscard]] double& operator[](Eigen::Index i) noexcept { return v_[i]; }
  /// `Σ_i v_i`, from row 0 up.
  [[nodiscard]] double sum_in_order() const noexcept {
    double s = 0;
    for (Eigen::Index i = 0; i < v_.size(); ++i) s += v_[i];
    return s;
  }

 private:
  Eigen::Matrix<double, Eigen::Dynamic, 1> v_;
};

}  // namespace fusemix::cpu
