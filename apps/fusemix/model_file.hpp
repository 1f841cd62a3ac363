// SPDX-License-Identifier: Apache-2.0
/// @file
/// What the subcommands share in reading their inputs: checked latents and widths.
/// (Model files are read by <fusemix/io/model.hpp>.)
#pragma once

#include <cmath>
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <fusemix/fusemix.hpp>

namespace fusemix_cli {

/// Refuses NaN and Inf in the latents `what` names (an option and its file, say): they would pass
/// through an adapter or a kernel into garbage without an error.
/// @throws fusemix::numeric_error naming `what`, the value, its row and column.
inline void require_finite(std::string_view where, std::string_view what, const fusemix::latent_view<float>& z) {
  for (std::size_t i = 0; i < z.rows(); ++i) {
    const auto row = z.row(i);
    for (std::size_t j = 0; j < row.size(); ++j)
      if (!std::isfinite(row[j]))
        fusemix::throw_expected<fusemix::numeric_error>(where, fusemix::concat(what, ": latents must be finite"),
                                                        "finite values", fusemix::concat(row[j], " at row ", i, ", column ", j));
  }
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

/// Checks that the latents of option `flag` (file `path`) are as wide as the adapter `prefix` of
/// `model` takes. @throws fusemix::shape_error naming both files.
inline void require_width(std::string_view where, std::string_view flag, const std::string& path, Eigen::Index cols,
                          std::string_view prefix, std::size_t in_dim, const std::string& model) {
  if (static_cast<std::size_t>(cols) != in_dim)
    fusemix::throw_shape_error(
        where, fusemix::concat(flag, " ", path, ": latent width must equal the in_dim of ", prefix, " in ", model),
        in_dim, cols);
}

}  // namespace fusemix_cli
