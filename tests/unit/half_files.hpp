// SPDX-License-Identifier: Apache-2.0
/// @file
/// float16 `.npy` files for the tests of the readers and of training from files: random binary16
/// values, written as `<f2`, and the floats they stand for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Core>

#include <fusemix/detail/file.hpp>
#include <fusemix/io/npy.hpp>

#include "temp_files.hpp"

namespace fusemix::test {

/// Random binary16 bit patterns of normal numbers (any sign, magnitudes 2^-5 .. 2^6), row-major.
inline std::vector<std::uint16_t> random_halves(std::size_t rows, std::size_t cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint16_t> h(rows * cols);
  for (auto& v : h)
    v = static_cast<std::uint16_t>(((rng() & 1u) << 15) | ((10u + rng() % 11u) << 10) | (rng() & 0x3ffu));
  return h;
}

/// Writes the binary16 values `h` (rows x cols, row-major) as a `<f2` `.npy` file.
inline void write_f2(const std::filesystem::path& p, const std::vector<std::uint16_t>& h, std::size_t rows,
                     std::size_t cols) {
  std::string bytes = detail::npy_header_bytes("<f2", {rows, cols});
  for (const std::uint16_t v : h) {
    unsigned char b[2];
    detail::store_le(b, v);
    bytes.append(reinterpret_cast<const char*>(b), 2);
  }
  write_bytes(p, bytes);
}

/// The float values of the binary16 values `h` (rows x cols).
inline io::matrix<float> halves_to_floats(const std::vector<std::uint16_t>& h, std::size_t rows, std::size_t cols) {
  io::matrix<float> m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (std::size_t i = 0; i < h.size(); ++i) m.data()[i] = detail::half_to_float(h[i]);
  return m;
}

}  // namespace fusemix::test
