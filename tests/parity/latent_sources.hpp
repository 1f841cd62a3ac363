// SPDX-License-Identifier: Apache-2.0
// Training on the CUDA backend from latents in files, three ways, against the same values
// uploaded as matrices: memory-mapped float16 shards (gathered on the host; on a GPU through the
// page-locked staging buffers), and `cuda::resident_latents` in float16 and, from a float32 file
// of the same values, in float32, whole and as a subset of rows. Every way must give the same
// bits. Run by test_cuda_host.cpp and test_gpu.cu.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/backend/cuda/resident.hpp>

#include "parity.hpp"

namespace fusemix::test::parity {

namespace sources_detail {

/// Random binary16 bit patterns of normal numbers (magnitudes 2^-5 .. 2^4), row-major.
inline std::vector<std::uint16_t> random_halves(std::size_t n, std::uint64_t seed) {
  philox_engine rng(seed);
  std::vector<std::uint16_t> h(n);
  for (auto& v : h)
    v = static_cast<std::uint16_t>((rng.below(2) << 15) | ((10 + rng.below(9)) << 10) | rng.below(1024));
  return h;
}

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// `h` as a `<f2` file and, with the same values, a `<f4` file.
inline void write_pair(const std::filesystem::path& f2, const std::filesystem::path& f4,
                       const std::vector<std::uint16_t>& h, std::size_t rows, std::size_t cols) {
  std::string a = detail::npy_header_bytes("<f2", {rows, cols}), b = detail::npy_header_bytes("<f4", {rows, cols});
  for (const std::uint16_t v : h) {
    unsigned char x[4];
    detail::store_le(x, v);
    a.append(reinterpret_cast<const char*>(x), 2);
    detail::store_le(x, std::bit_cast<std::uint32_t>(detail::half_to_float(v)));
    b.append(reinterpret_cast<const char*>(x), 4);
  }
  write_file(f2, a);
  write_file(f4, b);
}

}  // namespace sources_detail

template <class S>
void latent_sources(report& r) {
  using B = cuda::backend<float, S>;
  using adapter = fusion_adapter<dynamic_shape, B>;
  namespace fs = std::filesystem;
  const std::size_t n = 150, dx = 36, dy = 20, batch = 40;
  const fs::path dir = fs::temp_directory_path() / concat("fusemix_parity_sources_", ::getpid());
  fs::create_directories(dir);
  try {
    const auto hx = sources_detail::random_halves(n * dx, 21), hy = sources_detail::random_halves(n * dy, 22);
    sources_detail::write_pair(dir / "x2.npy", dir / "x4.npy", hx, n, dx);
    sources_detail::write_pair(dir / "y2.npy", dir / "y4.npy", hy, n, dy);
    const io::mapped_latents mx2(dir / "x2.npy"), my2(dir / "y2.npy"), mx4(dir / "x4.npy"), my4(dir / "y4.npy");
    const B be;
    const auto ctx = be.shared_context();

    const adapter_shape sx{.in_dim = dx, .out_dim = 16, .depth = 2, .expansion = 2};
    const adapter_shape sy{.in_dim = dy, .out_dim = 16, .depth = 1, .expansion = 2};
    for (const std::size_t micro : {std::size_t{0}, std::size_t{13}}) {
      train_options o{.epochs = 2, .batch = batch, .lr = 1e-3, .weight_decay = 0.1, .seed = 5};
      o.mixup.mode = mix_mode::halves;
      o.micro_batch = micro;
      const std::string tag = concat(micro == 0 ? "" : ", micro-batch 13");
      // Two epochs from `zx`, `zy`; the weights of both sides, and what the warm epoch allocated.
      auto train = [&](const auto& zx, const auto& zy, std::uint64_t& warm) {
        adapter ax(sx, {.dropout = 0.4, .seed = 1}, be), ay(sy, {.dropout = 0.4, .seed = 2}, be);
        trainer t(ax, ay, o, be);
        t.train_epoch(zx, zy);
        const std::uint64_t before = cuda::allocations();
        t.train_epoch(zx, zy);
        warm = cuda::allocations() - before;
        std::vector<float> w(ax.parameters().size() + ay.parameters().size());
        ax.copy_parameters_to(std::span<float>(w.data(), ax.parameters().size()));
        ay.copy_parameters_to(std::span<float>(w.data() + ax.parameters().size(), ay.parameters().size()));
        return w;
      };
      std::uint64_t warm = 0;
      const auto ux = be.upload(io::to_matrix<float>(mx2)), uy = be.upload(io::to_matrix<float>(my2));
      const auto want = train(ux, uy, warm);
      r.expect(train(mx2, my2, warm) == want, "float16 files, mapped: the bits of the uploaded values" + tag, __LINE__);
      r.expect(warm == 0, concat("float16 files, mapped: the warm epoch allocates nothing (", warm, ")", tag), __LINE__);
      const cuda::resident_latents<S> rx2(ctx, mx2), ry2(ctx, my2), rx4(ctx, mx4), ry4(ctx, my4);
      r.expect(train(rx2, ry2, warm) == want, "resident float16: the bits of the uploaded values" + tag, __LINE__);
      r.expect(warm == 0, concat("resident float16: the warm epoch allocates nothing (", warm, ")", tag), __LINE__);
      r.expect(train(rx4, ry4, warm) == want, "resident float32: the bits of the uploaded values" + tag, __LINE__);
      // A subset of rows made resident is the subset of the mapped rows.
      const row_split split = split_rows(n, 30, 7);
      const cuda::resident_latents<S> sx2(ctx, mx2, split.train), sy2(ctx, my2, split.train);
      const row_subset<io::mapped_latents> tx(mx2, split.train), ty(my2, split.train);
      r.expect(train(sx2, sy2, warm) == train(tx, ty, warm), "resident subset: the bits of the mapped subset" + tag,
               __LINE__);
    }
    const cuda::resident_latents<S> rx2(ctx, mx2);
    r.expect(rx2.bytes() == n * dx * 2 && cuda::resident_latents<S>::bytes_for(mx2, n) == n * dx * 2,
             "resident float16: two bytes a value", __LINE__);
    std::vector<float> row(dx), want(dx);
    const std::size_t pick[] = {n - 1};
    rx2.gather(std::span<const std::size_t>(pick), std::span<float>(row));
    mx2.gather(std::span<const std::size_t>(pick), std::span<float>(want));
    r.expect(row == want, "resident float16: a row read back to the host", __LINE__);
    std::string m;
    try {
      const std::size_t bad[] = {n};
      rx2.gather(std::span<const std::size_t>(bad), std::span<float>(row));
    } catch (const shape_error& e) {
      m = e.what();
    }
    r.expect(m.find("resident_latents") != std::string::npos && m.find("out of range") != std::string::npos,
             "resident: a row out of range is a shape_error naming the function: " + m, __LINE__);
  } catch (const std::exception& e) {
    r.expect(false, std::string("latent sources: ") + e.what(), __LINE__);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace fusemix::test::parity
