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

/// Reads the latents of option `flag` (an N x D `.npy` file) for the subcommand `where`, refusing
/// NaN and Inf: they would pass through an adapter or a kernel into garbage without an error.
/// @throws fusemix::io_error from `read_npy`; fusemix::numeric_error naming the file, row and column.
inline fusemix::io::matrix<float> read_latents(std::string_view where, std::string_view flag, const std::string& path) {
  auto z = fusemix::io::read_npy<float>(path);
  if (!z.allFinite())
    for (Eigen::Index i = 0; i < z.rows(); ++i)
      for (Eigen::Index j = 0; j < z.cols(); ++j)
        if (!std::isfinite(z(i, j)))
          fusemix::throw_expected<fusemix::numeric_error>(
              where, fusemix::concat(flag, " ", path, ": latents must be finite"), "finite values",
              fusemix::concat(z(i, j), " at row ", i, ", column ", j));
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
