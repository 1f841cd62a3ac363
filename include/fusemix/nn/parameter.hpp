// SPDX-License-Identifier: Apache-2.0
/// @file
/// Named parameter tensors in one flat buffer per model, as PyTorch names and shapes them.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <fusemix/core/config.hpp>

namespace fusemix {

/// One named parameter tensor inside a model's flat parameter buffer.
struct parameter_info {
  std::string name;                ///< PyTorch name relative to the module, e.g. "0.fn.0.weight"
  std::vector<std::size_t> shape;  ///< PyTorch shape: {out, in} for weights, {n} for vectors
  std::size_t offset = 0;          ///< first element in the flat buffer
  std::size_t size = 0;            ///< element count
  bool decay = false;              ///< whether AdamW applies weight decay (Linear weights only)
};

/// Hands out consecutive ranges of one flat parameter buffer while a model is built.
///
/// All parameters of a model live in one buffer (and their gradients in a second of the same
/// layout), so an optimizer updates them in one pass and a checkpoint is one copy. Each tensor
/// starts at a multiple of `tensor_alignment` elements (64 bytes for float), so with an aligned
/// buffer every tensor is aligned; the gaps are padding, never read as parameters.
class parameter_layout {
 public:
  static constexpr std::size_t tensor_alignment = 16;

  /// Reserves a tensor and returns its offset.
  std::size_t add(std::string name, std::vector<std::size_t> shape, bool decay) {
    std::size_t n = 1;
    for (std::size_t s : shape) n *= s;
    const std::size_t offset = (size_ + tensor_alignment - 1) / tensor_alignment * tensor_alignment;
    entries_.push_back({std::move(name), std::move(shape), offset, n, decay});
    size_ = offset + n;
    count_ += n;
    return offset;
  }
  [[nodiscard]] const std::vector<parameter_info>& entries() const noexcept { return entries_; }
  /// Buffer length in elements (parameters and padding).
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// Parameter count (what PyTorch's `sum(p.numel())` gives).
  [[nodiscard]] std::size_t parameter_count() const noexcept { return count_; }

 private:
  std::vector<parameter_info> entries_;
  std::size_t size_ = 0, count_ = 0;
};

/// A flat buffer of parameters or gradients, aligned to `buffer_alignment`.
template <class T>
using parameter_buffer = std::vector<T, detail::aligned_allocator<T>>;

}  // namespace fusemix
