// SPDX-License-Identifier: Apache-2.0
/// @file
/// The identity adapter: the side of a pair that is not trained.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include <fusemix/backend/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/nn/concepts.hpp>
#include <fusemix/nn/parameter.hpp>

namespace fusemix {

/// The adapter of a side that is not trained (audio→image aligns Whisper latents *into* CLIP's
/// text space): forward and backward are the identity, and it has no parameters.
template <Backend B = default_backend>
class identity_adapter {
 public:
  using backend_type = B;
  using scalar_type = typename B::scalar_type;
  using matrix_type = typename B::matrix_type;

  explicit identity_adapter(std::size_t dim, B be = {}) : be_(std::move(be)), dim_(dim) {}
  /// @throws shape_error if `x` does not have `dim` columns.
  const matrix_type& forward(const matrix_type& x) {
    if (be_.cols(x) != dim_)
      throw_shape_error("fusemix::identity_adapter::forward", "input columns must equal dim", dim_, be_.cols(x));
    be_.resize(out_, be_.rows(x), dim_);
    be_.copy(x, out_);
    return out_;
  }
  /// `forward` (no dropout: the slice's place in its batch does not matter).
  const matrix_type& forward_slice(const matrix_type& x, std::uint64_t, std::size_t) { return forward(x); }
  /// `dy` (no parameters: `accumulate` changes nothing).
  const matrix_type& backward(const matrix_type& dy, bool /*accumulate*/ = false) {
    be_.resize(dx_, be_.rows(dy), be_.cols(dy));
    be_.copy(dy, dx_);
    return dx_;
  }
  void set_training(bool) noexcept {}
  /// No random draws: nothing for a checkpoint to keep.
  static constexpr bool has_random_state = false;
  [[nodiscard]] std::uint64_t dropout_seed() const noexcept { return 0; }
  [[nodiscard]] std::uint64_t dropout_draws() const noexcept { return 0; }
  void set_dropout_seed(std::uint64_t) noexcept {}
  void set_dropout_draws(std::uint64_t) noexcept {}
  [[nodiscard]] const B& backend() const noexcept { return be_; }
  [[nodiscard]] std::size_t in_dim() const noexcept { return dim_; }
  [[nodiscard]] std::size_t out_dim() const noexcept { return dim_; }
  [[nodiscard]] std::size_t size() const noexcept { return 0; }
  [[nodiscard]] std::span<scalar_type> parameters() const noexcept { return {}; }
  [[nodiscard]] std::span<scalar_type> gradients() const noexcept { return {}; }
  void copy_parameters_to(std::span<scalar_type>) const noexcept {}
  void copy_parameters_from(std::span<const scalar_type>) noexcept {}
  [[nodiscard]] const std::vector<parameter_info>& named_parameters() const noexcept { return none_; }

 private:
  B be_;
  std::size_t dim_;
  matrix_type out_, dx_;
  std::vector<parameter_info> none_;
};


}  // namespace fusemix
