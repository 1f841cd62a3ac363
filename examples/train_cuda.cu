// SPDX-License-Identifier: Apache-2.0
// The training example on the CUDA backend: the same trainer and adapters, instantiated with
// fusemix::cuda::backend<float, S>; the pairs are uploaded once and stay in the backend's memory.
//
// Built twice: by nvcc (example_train_cuda: S = cuda::device_system on a GPU, exits 77 = skipped
// without one) and, through train_cuda_host.cpp, by the C++ compiler (example_train_cuda_host:
// S = cuda::host_system, the same code on the host, so it runs everywhere).
#include <cstdio>
#include <filesystem>
#include <span>

#include <fusemix/backend/cuda/backend.hpp>
#include <fusemix/fusemix.hpp>

#if defined(__CUDACC__)
#include <fusemix/backend/cuda/device.cuh>
#endif

template <class S>
int train_example() {
  using B = fusemix::cuda::backend<float, S>;
  using matrix = fusemix::matrix<float>;  // host matrices: data in, embeddings out
  fusemix::philox_engine rng(1);
  auto normal = [&](Eigen::Index r, Eigen::Index c) {
    matrix m(r, c);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(fusemix::sample_normal(rng));
    return m;
  };
  const matrix image = normal(1200, 64), map = normal(64, 48);
  const matrix text = image * map + 4.0f * normal(1200, 48);

  B be;  // the process-wide context: stream and cuBLAS handle on a GPU
  be.ctx().set_precision(fusemix::cuda::gemm_precision::fp32);  // or tf32, bf16 (tensor cores)
  const typename B::matrix_type image_train = be.upload(matrix(image.topRows(1000)));
  const typename B::matrix_type text_train = be.upload(matrix(text.topRows(1000)));
  const typename B::matrix_type image_test = be.upload(matrix(image.bottomRows(200)));
  const typename B::matrix_type text_test = be.upload(matrix(text.bottomRows(200)));

  fusemix::fusion_adapter<fusemix::dynamic_shape, B> h_image({.in_dim = 64, .out_dim = 32, .depth = 2},
                                                             {.dropout = 0.3, .seed = 1}, be);
  fusemix::fusion_adapter<fusemix::dynamic_shape, B> h_text({.in_dim = 48, .out_dim = 32, .depth = 2},
                                                            {.dropout = 0.3, .seed = 2}, be);
  fusemix::trainer trainer(h_image, h_text,
                           {.epochs = 15, .batch = 100, .lr = 2e-3, .weight_decay = 0.1,
                            .mixup = {.alpha = 1.0, .mode = fusemix::mix_mode::permutation}, .seed = 3},
                           be);

  // Embeddings are computed on the device and scored on the host.
  auto embed = [&](auto& h, const typename B::matrix_type& z) {
    h.set_training(false);
    const auto& out = h.forward(z);
    matrix m(static_cast<Eigen::Index>(out.rows()), static_cast<Eigen::Index>(out.cols()));
    be.download(out.data(), std::span<float>(m.data(), static_cast<std::size_t>(m.size())));
    return m;
  };
  auto test_recall = [&] {
    return fusemix::evaluate_retrieval<float>(embed(h_image, image_test), embed(h_text, text_test));
  };
  const auto before = test_recall();
  while (trainer.epoch() < trainer.options().epochs) {
    const auto r = trainer.train_epoch(image_train, text_train);
    if (r.epoch % 5 == 4) std::printf("epoch %zu: loss %.3f, temperature %.4f\n", r.epoch + 1, r.loss, trainer.temperature());
  }
  const auto after = test_recall();
  std::printf("test R@1 image->text: %.1f%% -> %.1f%% (chance 0.5%%)\n", before.image_to_text.r1, after.image_to_text.r1);

  const auto file = std::filesystem::temp_directory_path() / "fusemix_example_train_cuda.safetensors";
  trainer.save_weights(file);  // the same file a CPU run writes: the weights are copied to the host
  std::printf("wrote %s\n", file.c_str());
  std::filesystem::remove(file);
  return after.image_to_text.r1 > before.image_to_text.r1 + 10 ? 0 : 1;
}

int main() {
#if defined(__CUDACC__)
  if (fusemix::cuda::device_count() == 0) {
    std::puts("no CUDA device: skipped");
    return 77;
  }
  return train_example<fusemix::cuda::device_system>();
#else
  return train_example<fusemix::cuda::host_system>();
#endif
}
