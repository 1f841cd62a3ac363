// SPDX-License-Identifier: Apache-2.0
/// @file
/// Validation from the training data: a seeded hold-out of pairs, and a latent source that reads
/// only some rows of another, so training on the rest needs no copy of the data.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/core/random.hpp>

namespace fusemix {

/// The rows of a data set split into training and validation, each in increasing order.
struct row_split {
  std::vector<std::size_t> train, validation;
};

/// Holds out `count` of `rows` rows for validation, chosen uniformly at random by `seed` (a stream
/// of its own: the shuffles and mixing draws of a run with the same seed are not reused). The same
/// arguments give the same split on every machine.
/// @throws argument_error unless 0 < count < rows.
///
/// **Example**
///
///     const auto split = fusemix::split_rows(x.rows(), x.rows() / 10, seed);
///     fusemix::row_subset train_x(fusemix::latent_view<float>(x), split.train);
[[nodiscard]] inline row_split split_rows(std::size_t rows, std::size_t count, std::uint64_t seed) {
  if (count == 0 || count >= rows)
    throw_expected<argument_error>("fusemix::split_rows", concat("the held-out rows must leave training rows (of ", rows, ")"),
                                   concat("between 1 and ", rows == 0 ? 0 : rows - 1), count);
  // Stream 2^41: disjoint from the epochs' shuffles (streams 0, 1, ...) and the mixing draws
  // (2^40 + step).
  philox_engine rng(seed, std::uint64_t{1} << 41);
  std::vector<std::size_t> order(rows);
  std::iota(order.begin(), order.end(), std::size_t{0});
  for (std::size_t i = 0; i < count; ++i) std::swap(order[i], order[i + rng.below(rows - i)]);  // partial Fisher-Yates
  row_split s;
  s.validation.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count));
  s.train.assign(order.begin() + static_cast<std::ptrdiff_t>(count), order.end());
  std::sort(s.validation.begin(), s.validation.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

/// The rows `rows` of the source `S`, as a latent source of their own (row i of the subset is row
/// `rows[i]` of `source`): what the trainer reads when pairs are held out for validation. Holds a
/// reference to `source` and a copy of the indices; gathering allocates nothing.
template <class S>
class row_subset {
 public:
  row_subset(const S& source, std::vector<std::size_t> rows) : source_(&source), rows_(std::move(rows)) {
    for (const std::size_t r : rows_)
      if (r >= source.rows())
        throw_expected<shape_error>("fusemix::row_subset", "a row index past the source's rows",
                                    concat("< ", source.rows()), r);
  }

  [[nodiscard]] std::size_t rows() const noexcept { return rows_.size(); }
  [[nodiscard]] std::size_t cols() const noexcept { return source_->cols(); }
  [[nodiscard]] std::span<const std::size_t> indices() const noexcept { return rows_; }

  /// Row `rows[i]` of the subset to `out[i * cols() ...]`, through the source's `gather`.
  template <class T>
  void gather(std::span<const std::size_t> rows, std::span<T> out) const {
    const std::size_t d = cols();
    for_each_chunk(rows, [&](std::span<const std::size_t> mapped, std::size_t first) {
      source_->gather(mapped, out.subspan(first * d, mapped.size() * d));
    });
  }

  /// Passes the hint on to the source (where it has `prefetch`).
  void prefetch(std::span<const std::size_t> rows) const
    requires requires(const S& s, std::span<const std::size_t> r) { s.prefetch(r); }
  {
    for_each_chunk(rows, [&](std::span<const std::size_t> mapped, std::size_t) { source_->prefetch(mapped); });
  }

 private:
  // The source's indices of `rows`, a fixed-size chunk at a time (no allocation per batch).
  template <class F>
  void for_each_chunk(std::span<const std::size_t> rows, const F& f) const {
    constexpr std::size_t chunk = 512;
    std::array<std::size_t, chunk> mapped;
    for (std::size_t first = 0; first < rows.size(); first += chunk) {
      const std::size_t n = std::min(chunk, rows.size() - first);
      for (std::size_t i = 0; i < n; ++i) mapped[i] = rows_[rows[first + i]];
      f(std::span<const std::size_t>(mapped.data(), n), first);
    }
  }

  const S* source_;
  std::vector<std::size_t> rows_;
};

static_assert(LatentSource<row_subset<latent_view<float>>, float>);

}  // namespace fusemix
