// SPDX-License-Identifier: Apache-2.0
/// @file
/// Latents kept in the backend's memory in the precision of their files: float16 shards take
/// half the room of float32, and a step gathers and converts its rows where they lie.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/rows.hpp>
#include <fusemix/backend/cuda/memory.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/io/mapped_latents.hpp>

namespace fusemix::cuda {

/// Rows of latents resident in the memory of system `S` (the GPU's, on `device_system`) as the
/// files store them: 2, 4 or 8 bytes a value, little-endian. A `LatentSource` whose
/// `gather_to` writes converted rows straight into backend memory, which the trainer prefers:
/// a step then moves only its row indices to the device, and the values are those a
/// `mapped_latents::gather` of the same files gives (float16 → float is exact), so training
/// from a resident copy gives the bits of training from the files.
///
/// The copy is filled once, a block of rows at a time through the context's staging buffers
/// (the files are read in place; the host holds one block). It needs `bytes_for(z, rows)` of
/// backend memory: 5,000,000 × (1,536 + 1,024) float16 values are 25.6 GB.
///
/// **Example**
///
///     fusemix::io::mapped_latents fx({"x_000.npy", "x_001.npy"}), fy({"y_000.npy", "y_001.npy"});
///     fusemix::cuda::backend<float> be;
///     const fusemix::cuda::resident_latents rx(be.shared_context(), fx), ry(be.shared_context(), fy);
///     trainer.train_epoch(rx, ry);  // each step gathers its rows on the GPU
template <System S = device_system>
class resident_latents {
 public:
  /// Copies the rows `rows` of `z` (all of them when `rows` is empty), in that order.
  /// @throws shape_error if a row is out of range; io_error if a shard changed on disk;
  ///         std::bad_alloc or std::system_error if backend memory runs out.
  resident_latents(std::shared_ptr<context<S>> ctx, const io::mapped_latents& z, std::span<const std::size_t> rows = {})
      : ctx_(std::move(ctx)), rows_(rows.empty() ? z.rows() : rows.size()), cols_(z.cols()), itemsize_(z.itemsize()),
        data_(rows_ * cols_ * itemsize_) {
    const std::size_t row_bytes = cols_ * itemsize_;
    // Blocks of about 64 MiB: large copies, and a small share of the host's memory.
    const std::size_t block = std::max<std::size_t>(1, (std::size_t{64} << 20) / row_bytes);
    std::vector<std::size_t> wanted;
    for (std::size_t first = 0; first < rows_; first += block) {
      const std::size_t n = std::min(block, rows_ - first);
      wanted.resize(n);
      if (rows.empty())
        std::iota(wanted.begin(), wanted.end(), first);
      else
        std::copy_n(rows.begin() + static_cast<std::ptrdiff_t>(first), n, wanted.begin());
      const std::span<std::byte> stage = ctx_->staging(n * row_bytes);
      z.gather_bytes(std::span<const std::size_t>(wanted), stage);
      ctx_->upload_staged(data_.data() + first * row_bytes, n * row_bytes);
    }
    ctx_->synchronize();
  }

  /// Bytes of backend memory that `rows` rows of `z` take when resident.
  [[nodiscard]] static std::uint64_t bytes_for(const io::mapped_latents& z, std::size_t rows) noexcept {
    return std::uint64_t{rows} * z.cols() * z.itemsize();
  }

  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
  /// Bytes per stored value: 2, 4 or 8.
  [[nodiscard]] std::size_t itemsize() const noexcept { return itemsize_; }
  /// Bytes of backend memory held.
  [[nodiscard]] std::uint64_t bytes() const noexcept { return data_.size(); }

  /// Writes row `rows[i]`, converted to `T`, to `out[i * cols() ...]` in backend memory (queued
  /// on the context's stream).
  /// @throws shape_error if a row is out of range.
  template <Scalar T>
  void gather_to(std::span<const std::size_t> rows, T* out) const {
    for (const std::size_t r : rows)
      if (r >= rows_)
        throw_expected<shape_error>("fusemix::cuda::resident_latents::gather_to", "row index out of range",
                                    concat("< ", rows_), r);
    if (rows.empty()) return;
    const std::size_t* d_rows = ctx_->indices(context<S>::index_rows, rows);
    for_rows(*ctx_, rows.size(),
             detail::gather_stored_rows<T>{reinterpret_cast<const unsigned char*>(data_.data()), d_rows, cols_,
                                           itemsize_, out});
  }

  /// Writes row `rows[i]`, converted to `T`, to the host's `out[i * cols() ...]` (what
  /// `LatentSource` asks for: a whole scan, e.g. `trainer::validate`, downloads the values).
  /// @throws shape_error if `out` does not hold `rows.size() * cols()` values or a row is out of range.
  template <Scalar T>
  void gather(std::span<const std::size_t> rows, std::span<T> out) const {
    if (out.size() != rows.size() * cols_)
      throw_expected<shape_error>("fusemix::cuda::resident_latents::gather",
                                  "the output must hold rows.size() * cols() values", rows.size() * cols_, out.size());
    if (rows.empty()) return;
    T* dev = ctx_->template scratch<T>(context<S>::operand_a, out.size());
    gather_to(rows, dev);
    copy_to_host(*ctx_, dev, out.data(), out.size());
  }

 private:
  std::shared_ptr<context<S>> ctx_;
  std::size_t rows_, cols_, itemsize_;
  array<std::byte, S> data_;
};

static_assert(LatentSource<resident_latents<host_system>, float>);

}  // namespace fusemix::cuda
