// SPDX-License-Identifier: Apache-2.0
/// @file
/// Central-difference gradient checking in double (mlpack's CheckGradient habit).
#pragma once

#include <cmath>
#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include <Eigen/Core>

#include <fusemix/core/random.hpp>

namespace fusemix::test {

using dmatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A matrix of standard-normal-ish values (sum of uniforms) from a fixed seed.
inline dmatrix random_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed, double scale = 1.0) {
  philox_engine rng(seed);
  dmatrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    double s = 0;
    for (int k = 0; k < 4; ++k) s += rng.uniform();
    m.data()[i] = scale * (s - 2.0) * std::sqrt(3.0);
  }
  return m;
}

/// Central differences of `loss` with respect to every element of `theta` (restored afterwards).
inline std::vector<double> numeric_gradient(std::span<double> theta, const std::function<double()>& loss,
                                            double h = 1e-6) {
  std::vector<double> g(theta.size());
  for (std::size_t i = 0; i < theta.size(); ++i) {
    const double saved = theta[i];
    theta[i] = saved + h;
    const double up = loss();
    theta[i] = saved - h;
    const double down = loss();
    theta[i] = saved;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

/// ‖g − ĝ‖ / ‖g + ĝ‖ (0 when both are zero).
inline double relative_error(std::span<const double> analytic, std::span<const double> numeric) {
  double diff = 0, sum = 0;
  for (std::size_t i = 0; i < analytic.size(); ++i) {
    diff += (analytic[i] - numeric[i]) * (analytic[i] - numeric[i]);
    sum += (analytic[i] + numeric[i]) * (analytic[i] + numeric[i]);
  }
  return sum == 0 ? 0 : std::sqrt(diff) / std::sqrt(sum);
}

/// Σ y ⊙ r: a scalar loss whose gradient with respect to y is r.
inline double weighted_sum(const dmatrix& y, const dmatrix& r) { return y.cwiseProduct(r).sum(); }

inline std::span<double> span_of(dmatrix& m) { return {m.data(), static_cast<std::size_t>(m.size())}; }
inline std::span<const double> span_of(const dmatrix& m) { return {m.data(), static_cast<std::size_t>(m.size())}; }

}  // namespace fusemix::test
