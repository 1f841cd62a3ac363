// SPDX-License-Identifier: Apache-2.0
/// @file
/// Greedy MAP selection of a diverse subset under a k-DPP, without ever forming the N×N kernel matrix.
///
/// The algorithm is Chen, Zhang and Zhou's incremental Cholesky greedy (NeurIPS 2018): every item i
/// keeps a vector c_i (its coordinates in the Cholesky basis of the picks so far) and a residual
/// d_i² = L_ii − |c_i|². Each step picks the largest d_i², evaluates only that item's kernel row and
/// updates every residual. Memory is O(N·(D + k)): the latents, the c vectors and a few vectors of N.
///
/// **Precision.** What is *stored* per item is kept in the latents' type `T`: the c vectors
/// (N × k values, the bulk of the memory). Everything that is *accumulated* is `double`: the dot
/// products of latents and of c vectors, the kernel values, the residuals d_i², the new coordinate
/// e_i before it is stored, and the gains. docs/selection.md shows what this buys against an all-float
/// run, measured against an all-double one.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <ostream>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fusemix/core/concepts.hpp>
#include <fusemix/core/config.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/select/kernels.hpp>

namespace fusemix {

// ---------------------------------------------------------------------------------------------
// Options and result
// ---------------------------------------------------------------------------------------------

/// Why a greedy selection stopped.
enum class stop_reason {
  k_reached,       ///< `k` items were picked.
  rank_exhausted,  ///< the best residual fell to the threshold: the kernel's rank ran out first.
};

/// `"k_reached"` or `"rank_exhausted"`.
[[nodiscard]] constexpr std::string_view to_string(stop_reason r) noexcept {
  return r == stop_reason::k_reached ? "k_reached" : "rank_exhausted";
}
/// Writes `to_string(r)`.
inline std::ostream& operator<<(std::ostream& os, stop_reason r) { return os << to_string(r); }

/// How the CPU selector keeps the residuals current (`kdpp_options::evaluation`).
enum class kdpp_evaluation {
  /// Update an item only when its last residual could still win (the default).
  lazy,
  /// Update every item at every pick (Chen et al.'s loop as written; the CUDA selector's way).
  eager,
};

/// Options of `greedy_kdpp` (the subset size `k` is an argument, not an option).
struct kdpp_options {
  /// Stop when the largest residual d² is at most `relative_threshold · max_i L_ii`.
  ///
  /// Why relative, and why 1e-4: residuals are differences L_ii − |c_i|², so their rounding error
  /// scales with the size of the diagonal, not with 1. Once the kernel's rank is used up, the true
  /// residuals are 0 and the computed ones are rounding noise; with float latents and float c
  /// vectors that noise is ~1e-7 of max L_ii (measured 2e-8..2e-7; 1e-6 if the sums were float
  /// too), so an absolute 1e-10 never fires and keeps picking noise. 1e-4 sits above the float
  /// noise floor with margin, and is still far below the residuals of genuinely new directions
  /// (a pick whose residual is 1e-4 of a fresh item's adds less than log(1e-4) ≈ −9.2 to log det;
  /// it is nearly a copy of what is already picked). In double the noise is ~1e-15, so a
  /// smaller value (e.g. 1e-10) is safe there if near-duplicates should still count.
  double relative_threshold = 1e-4;
  /// Only the last `window` picks must be diverse (Chen et al. §4): each pick maximises its
  /// residual against the previous `window − 1` picks. 0 (the default) means all picks, the
  /// plain k-DPP; a window of `k` or more is the same as 0.
  std::size_t window = 0;
  /// How the CPU selector updates the residuals. Both apply the same operations in the same order:
  /// the same picks, and the same gains bit for bit where the compiler contracts multiply-adds
  /// into FMAs alike in both loops (always with -ffp-contract=off; GCC's gnu++ default may fuse
  /// one loop's and not the other's and move a gain by an ulp).
  ///
  /// A residual only shrinks as picks are added, so an item's last computed residual bounds its
  /// current one from above. `lazy` keeps the items in a heap by that bound and brings an item up
  /// to date (every pick it missed, in the order eager would have applied them) only when its
  /// bound could still win (Minoux's accelerated greedy). The arithmetic per item is eager's; what
  /// changes is that an item's latents and c vector are read once per catch-up instead of once
  /// per pick, so the selector runs from cache instead of streaming N·(D + k) values per pick.
  /// With the built-in kernels the catch-ups run on OpenMP threads (`cpu::set_threads`; by default
  /// `OMP_NUM_THREADS` or all cores); the results do not depend on the count.
  /// A window (residuals can grow again when a pick leaves it) and a `RowKernel` that is not a
  /// `DotProductKernel` (its rows are what the user made fast) always run eager.
  kdpp_evaluation evaluation = kdpp_evaluation::lazy;
};

/// The result of a greedy selection.
struct selection {
  /// Item indices, in the order they were picked (at most `k`, all distinct).
  std::vector<std::size_t> picks;
  /// `gains[t]` = log d², the residual of `picks[t]` when it was picked (non-increasing
  /// without a window). Without a window, `gains[t] = log det(L_{S_t+1}) − log det(L_{S_t})`.
  std::vector<double> gains;
  /// Why the selection stopped.
  stop_reason stop = stop_reason::k_reached;

  /// The sum of the gains: log det(L_S) of the picks when no window was used. With a window it
  /// is only the sum of windowed gains; use `subset_log_det` for log det(L_S).
  [[nodiscard]] double log_det() const noexcept { return std::accumulate(gains.begin(), gains.end(), 0.0); }
};

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Greedy MAP selection of `k` of `n` items under a k-DPP
/// (incremental Cholesky: O(nk) kernel calls, O(nk^2) flops, O(n(D + k)) memory; L is never formed).
///
/// Each step picks the item with the largest residual d_i² (the largest gain in log det); among
/// equal residuals the lowest index wins, so the result is deterministic and duplicates of an
/// item tie exactly (the diagonal and the rows come from the same kernel code).
///
/// @tparam K a `Kernel`. A `DotProductKernel` (all built-ins) fills a row with one GEMV and an
///           elementwise map; a `RowKernel` is evaluated a row at a time; any other kernel is
///           called n times per row.
/// @param z the latents, one item per row.
/// @param k how many items to pick.
/// @param kernel the similarity; must be positive semi-definite and symmetric.
/// @param options stopping threshold and sliding window.
/// @returns the picks in selection order, their gains, and why it stopped (fewer than `k`
///          picks when the kernel's rank runs out).
/// @throws shape_error if `z` has no rows or no columns, if `k == 0` or if `k > z.rows()`.
/// @throws numeric_error if `z` holds NaN or Inf, if the kernel's diagonal has a negative or NaN
///         entry, or if the kernel returns a non-finite value (for a pair the selector evaluates:
///         the lazy evaluation never computes the values it does not need).
/// @throws argument_error if `options.relative_threshold` is negative or not finite.
///
/// **Example**
///
///     auto sel = fusemix::greedy_kdpp(z, 1000, fusemix::polynomial_kernel{.offset = 1, .degree = 2});
template <Scalar T, Kernel<T> K>
[[nodiscard]] selection greedy_kdpp(const latent_view<T>& z, std::size_t k, const K& kernel,
                                    const kdpp_options& options = {});

/// `greedy_kdpp` on any row-major matrix with `data()`, `rows()` and `cols()` (e.g. Eigen's).
/// (A `latent_view` argument takes the overload above: it is the more specialised.)
template <class M, class K>
  requires requires(const M& m) { latent_view(m); } &&
           Kernel<K, typename decltype(latent_view(std::declval<const M&>()))::value_type>
[[nodiscard]] selection greedy_kdpp(const M& z, std::size_t k, const K& kernel,
                                    const kdpp_options& options = {}) {
  return greedy_kdpp(latent_view(z), k, kernel, options);
}

/// `greedy_kdpp` on a kernel matrix the user already has (its rows are the items).
///
/// **Example**
///
///     auto sel = fusemix::greedy_kdpp(fusemix::precomputed_kernel<double>(l), 10);
template <Scalar T>
[[nodiscard]] selection greedy_kdpp(const precomputed_kernel<T>& l, std::size_t k,
                                    const kdpp_options& options = {}) {
  return greedy_kdpp(l.matrix(), k, l, options);
}

/// log det(L_S) of the items `picks`, from scratch (a |S|×|S| Cholesky in double). Use it to
/// score any subset, e.g. the `uniform_subset` baseline or a windowed selection.
///
/// @returns log det(L_S); −∞ if L_S is singular (not positive definite); 0 for no picks.
/// @throws shape_error if a pick is out of range.
///
/// **Example**
///
///     double ld = fusemix::subset_log_det(z, fusemix::uniform_subset(n, 100, 7), fusemix::polynomial_kernel{});
template <Scalar T, Kernel<T> K>
[[nodiscard]] double subset_log_det(const latent_view<T>& z, std::span<const std::size_t> picks,
                                    const K& kernel);

/// `k` distinct items of `n`, uniformly at random: the baseline of the diversity study.
///
/// The result depends only on `(n, k, seed)`, on every platform: the draws come from
/// `philox_engine(seed)` and its exact bounded `below`, not from `<random>` distributions.
/// @returns the indices in draw order.
/// @throws shape_error if `k == 0` or `k > n`.
///
/// **Example**
///
///     auto baseline = fusemix::uniform_subset(z.rows(), sel.picks.size(), 42);
[[nodiscard]] inline std::vector<std::size_t> uniform_subset(std::size_t n, std::size_t k, std::uint64_t seed);

}  // namespace fusemix

// The definitions (mlpack-style: the declarations above are the interface).
#include <fusemix/select/kdpp_impl.hpp>
