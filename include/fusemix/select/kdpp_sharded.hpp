// SPDX-License-Identifier: Apache-2.0
/// @file
/// The greedy k-DPP across processes: each rank holds a shard of the items (its rows of the
/// latents and their c vectors), and every pick is agreed by all of them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include <fusemix/backend/cpu/kdpp.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/dist/communicator.hpp>
#include <fusemix/select/kdpp.hpp>

namespace fusemix {

namespace detail {

/// The `run_greedy_kdpp` engine of one rank's shard: the CPU engine over its rows, plus what a
/// pick needs from the rank that holds it (its latents, its coordinates, its residual), broadcast
/// by that rank. Item indices are global (shards in rank order). Each item goes through the same
/// operations as in one process's eager engine, so the picks and gains are the same bits.
template <Scalar T, class K>
class kdpp_sharded_engine {
 public:
  using accumulator = double;

  kdpp_sharded_engine(const latent_view<T>& shard, const K& kernel, std::size_t capacity, dist::any_communicator comm,
                      std::vector<std::size_t> firsts)
      : inner_(shard, kernel, capacity), shard_(shard), comm_(comm), firsts_(std::move(firsts)),
        zj_(shard.cols()), exchange_(2 * static_cast<std::size_t>(comm.size())) {}

  double init_diagonal() {
    const double mine = inner_.init_diagonal();
    exchange_.resize(static_cast<std::size_t>(comm_.size()));
    gather_one(mine);
    return *std::max_element(exchange_.begin(), exchange_.end());
  }

  /// The largest residual of any shard, the lowest global index among equal ones.
  [[nodiscard]] std::pair<std::size_t, double> argmax() {
    const auto [j, d2] = inner_.argmax();
    const double mine[2] = {d2, j == no_item ? -1.0 : static_cast<double>(firsts_[rank()] + j)};
    exchange_.resize(2 * static_cast<std::size_t>(comm_.size()));
    std::vector<std::size_t>& counts = counts_;
    counts.assign(static_cast<std::size_t>(comm_.size()), 2);
    comm_.all_gather(std::span<const double>(mine), std::span<const std::size_t>(counts), std::span<double>(exchange_));
    std::size_t best = no_item;
    double best_d2 = -std::numeric_limits<double>::infinity();
    for (std::size_t r = 0; r < counts.size(); ++r)  // rank order, strict: the lowest index wins ties
      if (exchange_[2 * r + 1] >= 0 && exchange_[2 * r] > best_d2)
        best_d2 = exchange_[2 * r], best = static_cast<std::size_t>(exchange_[2 * r + 1]);
    return {best, best_d2};
  }

  [[nodiscard]] double residual(std::size_t j) {
    double v = owns(j) ? inner_.residual(local(j)) : 0.0;
    comm_.broadcast(std::as_writable_bytes(std::span<double>(&v, 1)), owner(j));
    return v;
  }
  void coordinates(std::size_t j, std::size_t m, std::span<double> out) {
    if (owns(j)) inner_.coordinates(local(j), m, out);
    comm_.broadcast(std::as_writable_bytes(out.first(m)), owner(j));
  }
  void exclude(std::size_t j) {
    if (owns(j)) inner_.exclude(local(j));
  }
  void kernel_row(std::size_t j) {
    if (owns(j)) {
      const auto row = shard_.row(local(j));
      std::copy(row.begin(), row.end(), zj_.begin());
    }
    comm_.broadcast(std::as_writable_bytes(std::span<T>(zj_)), owner(j));
    // |z_j|² by the same code as the engine's own norms: the same bits as on the owner.
    const double sq = DotProductKernel<K> ? dot<double>(zj_.data(), zj_.data(), zj_.size()) : 0.0;
    inner_.kernel_row_of(std::span<const T>(zj_), sq, j);
  }
  void project(std::size_t j, std::size_t slot, double dj) {
    cj_.resize(slot);
    coordinates(j, slot, std::span<double>(cj_));
    inner_.project_of(std::span<const double>(cj_), slot, dj);
  }
  void rotate(std::span<const std::pair<double, double>> rot, std::size_t m) { inner_.rotate(rot, m); }

 private:
  kdpp_cpu_engine<T, K, double> inner_;
  latent_view<T> shard_;
  dist::any_communicator comm_;
  std::vector<std::size_t> firsts_;  // rank r's first item; firsts_[size] = all items
  std::vector<T> zj_;
  std::vector<double> cj_, exchange_;
  std::vector<std::size_t> counts_;

  [[nodiscard]] std::size_t rank() const noexcept { return static_cast<std::size_t>(comm_.rank()); }
  [[nodiscard]] int owner(std::size_t j) const noexcept {
    const auto it = std::upper_bound(firsts_.begin(), firsts_.end(), j);
    return static_cast<int>(it - firsts_.begin()) - 1;
  }
  [[nodiscard]] bool owns(std::size_t j) const noexcept { return j >= firsts_[rank()] && j < firsts_[rank() + 1]; }
  [[nodiscard]] std::size_t local(std::size_t j) const noexcept { return j - firsts_[rank()]; }
  void gather_one(double v) {
    counts_.assign(static_cast<std::size_t>(comm_.size()), 1);
    comm_.all_gather(std::span<const double>(&v, 1), std::span<const std::size_t>(counts_), std::span<double>(exchange_));
  }
};

}  // namespace detail

/// `greedy_kdpp` across the processes of `comm`: this rank holds the items `shard` (its rows of
/// the latents; the ranks' shards, in rank order, are the items 0 … N−1), and every rank returns
/// the same selection, in global indices. Per pick the ranks agree on the argmax (an all-gather
/// of one residual each) and the rank holding the pick broadcasts its latents and coordinates;
/// each rank then updates its own items. Each rank's memory is its shard's: its latents and
/// their c vectors, N/K·(D + k) values. The arithmetic per item is the one-process eager
/// selector's (`kdpp_evaluation::eager`), so the picks and gains are its bits, and those of the
/// default lazy selector wherever it gives eager's (docs/selection.md); `options.evaluation` is
/// not used. In one process (the default `comm`) it is the eager `greedy_kdpp`.
///
/// @tparam K a `DotProductKernel` (every built-in) or a pairwise `Kernel`; not a `RowKernel`
///           (its rows index the whole latents, which no rank holds).
/// @throws as `greedy_kdpp`, on every rank alike: the checks use the total item count, and a
///         non-finite latent is reported by its global row on every rank.
///
/// **Example**
///
///     // rank r of K reads rows [N·r/K, N·(r+1)/K) (fusemix::dist::rank_rows)
///     auto sel = fusemix::greedy_kdpp(my_rows, 1000, fusemix::polynomial_kernel{}, comm);
template <Scalar T, Kernel<T> K>
  requires(DotProductKernel<K> || !RowKernel<K, T>)
[[nodiscard]] selection greedy_kdpp(const latent_view<T>& shard, std::size_t k, const K& kernel,
                                    dist::any_communicator comm, const kdpp_options& options = {}) {
  constexpr std::string_view where = "fusemix::greedy_kdpp";
  const auto size = static_cast<std::size_t>(comm.size());
  // Every rank's row count and first non-finite value (global row, column; −1: none).
  std::vector<double> mine{static_cast<double>(shard.rows()), static_cast<double>(shard.cols()), -1.0, -1.0, 0.0};
  for (std::size_t i = 0; i < shard.rows() && mine[2] < 0; ++i) {
    const auto r = shard.row(i);
    for (std::size_t c = 0; c < r.size(); ++c)
      if (!std::isfinite(r[c])) {
        mine[2] = static_cast<double>(i), mine[3] = static_cast<double>(c), mine[4] = static_cast<double>(r[c]);
        break;
      }
  }
  std::vector<double> all(5 * size);
  const std::vector<std::size_t> counts(size, 5);
  comm.all_gather(std::span<const double>(mine), std::span<const std::size_t>(counts), std::span<double>(all));
  std::vector<std::size_t> firsts(size + 1, 0);
  for (std::size_t r = 0; r < size; ++r) {
    if (all[5 * r + 1] != static_cast<double>(shard.cols()) && all[5 * r] > 0 && shard.rows() > 0)
      throw_shape_error(where, concat("every rank's shard to have the same width (rank ", r, ")"), shard.cols(),
                        all[5 * r + 1]);
    firsts[r + 1] = firsts[r] + static_cast<std::size_t>(all[5 * r]);
  }
  detail::check_kdpp_arguments(where, firsts[size], shard.cols(), k, options);
  for (std::size_t r = 0; r < size; ++r)
    if (all[5 * r + 2] >= 0)
      throw_expected<numeric_error>(where, "latents must be finite", "finite values",
                                    concat(all[5 * r + 4], " at row ", firsts[r] + static_cast<std::size_t>(all[5 * r + 2]),
                                           ", column ", static_cast<std::size_t>(all[5 * r + 3])));
  const std::size_t capacity = options.window == 0 ? k - 1 : std::min(options.window, k) - 1;
  detail::kdpp_sharded_engine<T, K> engine(shard, kernel, capacity, comm, std::move(firsts));
  return detail::run_greedy_kdpp(engine, k, capacity, options);
}

}  // namespace fusemix
