// SPDX-License-Identifier: Apache-2.0
/// @file
/// The parameter-free layers: GELU (`nn.GELU()`) and inverted dropout (`nn.Dropout`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include <fusemix/backend/common/dropout.hpp>
#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/error.hpp>

namespace fusemix {

/// GELU, exact form `x·Φ(x)` (`nn.GELU()`). No parameters.
template <Backend B = default_backend>
class gelu {
 public:
  using matrix_type = typename B::matrix_type;
  explicit gelu(B be = {}) : be_(std::move(be)) {}
  void forward(const matrix_type& x, matrix_type& y) const {
    be_.resize(y, be_.rows(x), be_.cols(x));
    be_.gelu_forward(x, y);
  }
  void backward(const matrix_type& x, const matrix_type& dy, matrix_type& dx) const {
    be_.resize(dx, be_.rows(x), be_.cols(x));
    be_.gelu_backward(dy, x, dx);
  }

 private:
  B be_;
};

/// Inverted dropout (`nn.Dropout(p)`): in training, each element is zeroed with probability `p`
/// and the rest scaled by 1/(1−p); in evaluation it is the identity. The mask is a pure function
/// of `(seed, draw, element)`, so backward regenerates it rather than storing it.
template <Backend B = default_backend>
class dropout {
 public:
  using matrix_type = typename B::matrix_type;

  /// @throws argument_error unless 0 ≤ p ≤ 1.
  explicit dropout(double p, std::uint64_t seed = 0, B be = {}) : be_(std::move(be)), p_(p), seed_(seed) {
    if (!(p >= 0.0 && p <= 1.0))
      throw_expected<argument_error>("fusemix::dropout", "probability out of range", "0 <= p <= 1", p);
  }
  /// Applies the mask of draw number `draw` (training), or copies `x` (`training == false`).
  void forward(const matrix_type& x, matrix_type& y, bool training, std::uint64_t draw) {
    be_.resize(y, be_.rows(x), be_.cols(x));
    last_ = key(training, draw);
    be_.dropout_forward(x, last_, y);
  }
  /// Gradient of the last forward.
  void backward(const matrix_type& dy, matrix_type& dx) const {
    be_.resize(dx, be_.rows(dy), be_.cols(dy));
    be_.dropout_backward(dy, last_, dx);
  }
  [[nodiscard]] dropout_key key(bool training, std::uint64_t draw) const noexcept {
    return {seed_, draw, training ? p_ : 0.0};
  }
  [[nodiscard]] double p() const noexcept { return p_; }
  [[nodiscard]] std::uint64_t seed() const noexcept { return seed_; }
  void set_seed(std::uint64_t seed) noexcept { seed_ = seed; }

 private:
  B be_;
  double p_;
  std::uint64_t seed_;
  dropout_key last_{};
};

}  // namespace fusemix
