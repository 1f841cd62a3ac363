// SPDX-License-Identifier: Apache-2.0
/// @file
/// What the subcommands share in reading their inputs: checked latents and widths.
/// (Model files are read by <fusemix/io/model.hpp>.)
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>

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

/// Reads the latents of option `flag` (an N x D `.npy` file) for the subcommand `where`, refusing
/// NaN and Inf (`require_finite`).
/// @throws fusemix::io_error from `read_npy`; fusemix::numeric_error naming the file, row and column.
inline fusemix::io::matrix<float> read_latents(std::string_view where, std::string_view flag, const std::string& path) {
  auto z = fusemix::io::read_npy<float>(path);
  require_finite(where, fusemix::concat(flag, " ", path), z);
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
