// SPDX-License-Identifier: Apache-2.0
/// @file
/// What the subcommands share in reading their inputs (checked latents and widths) and in
/// checking where they write.
/// (Model files are read by <fusemix/io/model.hpp>.)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <initializer_list>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fusemix/fusemix.hpp>

namespace fusemix_cli {

/// Refuses NaN and Inf in the latents `what` names (an option and its file, say): they would pass
/// through an adapter or a kernel into garbage without an error.
/// @throws fusemix::numeric_error naming `what`, the value, its row and column.
/// `first_row`: where `z`'s rows begin in the whole (rows are named as in the whole).
inline void require_finite(std::string_view where, std::string_view what, const fusemix::latent_view<float>& z,
                           std::size_t first_row = 0) {
  fusemix::detail::require_finite(where, fusemix::concat(what, ": latents must be finite"), z, first_row);
}

/// The files of a latent option's value: one `.npy` file, or a comma-separated list of shards
/// (concatenated by rows: `--x a.npy,b.npy,c.npy`).
/// @throws fusemix::argument_error naming `flag` for an empty name in the list.
inline std::vector<std::filesystem::path> latent_files(std::string_view where, std::string_view flag,
                                                       const std::string& value) {
  std::vector<std::filesystem::path> files;
  for (std::size_t first = 0;;) {
    const std::size_t comma = value.find(',', first);
    const std::string name = value.substr(first, comma == std::string::npos ? std::string::npos : comma - first);
    if (name.empty())
      fusemix::throw_expected<fusemix::argument_error>(where, fusemix::concat(flag, ": empty file name in the list"),
                                                       "file names separated by single commas", fusemix::concat("'", value, "'"));
    files.emplace_back(name);
    if (comma == std::string::npos) return files;
    first = comma + 1;
  }
}

/// Reads the latents of option `flag` (an N x D `.npy` file, or shards as `latent_files` splits
/// them) for the subcommand `where` into memory, refusing NaN and Inf (`require_finite`).
/// @throws fusemix::io_error naming the file; fusemix::numeric_error naming the option, row and column.
inline fusemix::io::matrix<float> read_latents(std::string_view where, std::string_view flag, const std::string& value) {
  std::vector<std::filesystem::path> files = latent_files(where, flag, value);
  // One file goes through read_npy, which also reads pipes; shards are mapped and gathered.
  auto z = files.size() == 1 ? fusemix::io::read_npy<float>(files.front()) : fusemix::io::read_npy_shards<float>(std::move(files));
  require_finite(where, fusemix::concat(flag, " ", value), z);
  return z;
}

/// The latents of a latent option read a block of rows at a time, so that no more than a block
/// of them is in memory: shards or one file memory-mapped (`io::mapped_latents`), except one file
/// that cannot be mapped (a pipe), which is read whole.
class latent_blocks {
 public:
  /// @throws fusemix::io_error naming the file; fusemix::argument_error for a malformed list.
  latent_blocks(std::string_view where, std::string_view flag, const std::string& value)
      : where_(where), what_(fusemix::concat(flag, " ", value)) {
    std::vector<std::filesystem::path> files = latent_files(where, flag, value);
    if (files.size() == 1 && !std::filesystem::is_regular_file(files.front()))
      whole_ = fusemix::io::read_npy<float>(files.front());
    else
      mapped_.emplace(std::move(files));
  }
  [[nodiscard]] std::size_t rows() const { return mapped_ ? mapped_->rows() : static_cast<std::size_t>(whole_.rows()); }
  [[nodiscard]] std::size_t cols() const { return mapped_ ? mapped_->cols() : static_cast<std::size_t>(whole_.cols()); }
  /// `f(block, first_row)` for each block of at most `block_rows` rows, in order, each checked
  /// finite first (`numeric_error` naming the option, the row in the whole and the column).
  template <class F>
  void for_each(std::size_t block_rows, F&& f) const {
    fusemix::io::matrix<float> block;
    for (std::size_t first = 0, n = this->rows(); first < n; first += block_rows) {
      read(first, std::min(block_rows, n - first), block);
      f(std::as_const(block), first);
    }
  }
  /// Rows `first … first + count − 1` into `block`, checked finite (as `for_each`).
  void read(std::size_t first, std::size_t count, fusemix::io::matrix<float>& block) const {
    if (mapped_) {
      rows_.resize(count);
      std::iota(rows_.begin(), rows_.end(), first);
      block.resize(static_cast<Eigen::Index>(count), static_cast<Eigen::Index>(cols()));
      mapped_->gather(std::span<const std::size_t>(rows_), std::span<float>(block.data(), static_cast<std::size_t>(block.size())));
    } else {
      block = whole_.middleRows(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(count));
    }
    require_finite(where_, what_, block, first);
  }

 private:
  std::string where_, what_;
  std::optional<fusemix::io::mapped_latents> mapped_;
  fusemix::io::matrix<float> whole_;
  mutable std::vector<std::size_t> rows_;  // the indices of a block, reused
};

/// Rows per block when embedding for `fusemix embed` and `fusemix eval`: the activations of this
/// many rows are what an adapter holds (4,096 × 6,144 floats, 100 MB, in the widest block of the
/// paper's image adapter).
inline constexpr std::size_t embed_block_rows = 4096;

/// Checks that the latents of option `flag` (file `path`) are as wide as the adapter `prefix` of
/// `model` takes. @throws fusemix::shape_error naming both files.
inline void require_width(std::string_view where, std::string_view flag, const std::string& path, Eigen::Index cols,
                          std::string_view prefix, std::size_t in_dim, const std::string& model) {
  if (static_cast<std::size_t>(cols) != in_dim)
    fusemix::throw_shape_error(
        where, fusemix::concat(flag, " ", path, ": latent width must equal the in_dim of ", prefix, " in ", model),
        in_dim, cols);
}

/// Checks the files a subcommand will write, before its work: no file named twice, none a
/// directory, each creatable (a temporary is made beside it, then removed), and the temporaries
/// of an earlier run killed while writing it removed. The files are then
/// written one after another at the end, each atomically, so a run refused here or by any later
/// check of its input writes nothing. `outputs`: (flag, path) pairs; an empty path is an output
/// not asked for.
/// @throws fusemix::argument_error for a file named twice or a directory; fusemix::io_error naming
///         the file where none can be created.
inline void check_outputs(std::string_view where,
                          std::initializer_list<std::pair<std::string_view, std::filesystem::path>> outputs) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string_view, fs::path>> seen;
  for (const auto& [flag, path] : outputs) {
    if (path.empty()) continue;
    std::error_code ec;
    fs::path same = fs::weakly_canonical(path, ec);
    if (ec) same = fs::absolute(path).lexically_normal();
    for (const auto& [other, p] : seen)
      if (p == same)
        throw fusemix::argument_error(fusemix::concat(where, ": ", other, " and ", flag, " name the same file (",
                                                      path.string(), "); each output needs its own"));
    seen.emplace_back(flag, same);
    if (fs::is_directory(path, ec))
      fusemix::throw_expected<fusemix::argument_error>(where, fusemix::concat(flag, " is an output file"),
                                                       "a file name", fusemix::concat("the directory ", path.string()));
    // (A run of this command killed while writing left its temporaries; they go first.)
    static_cast<void>(fusemix::io::remove_stale_temporaries(path));
    const fusemix::io::atomic_file probe(where, path);  // never committed: its temporary goes with it
  }
}

}  // namespace fusemix_cli
