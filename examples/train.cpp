// SPDX-License-Identifier: Apache-2.0
// Training FuseMix inside another program: two adapters, the trainer, retrieval on held-out
// pairs, and weights written under PyTorch names. Built and run by ctest (label "example").
//
// Real programs read their cached latents with fusemix::io::read_npy<float>("image.npy"); this
// example makes paired toy latents so that it runs anywhere.
#include <cstdio>
#include <filesystem>

#include <fusemix/fusemix.hpp>

int main() {
  using matrix = fusemix::matrix<float>;
  // Toy pairs: "text" latents are a fixed linear map of "image" latents plus noise.
  fusemix::philox_engine rng(1);
  auto normal = [&](Eigen::Index r, Eigen::Index c) {
    matrix m(r, c);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(fusemix::sample_normal(rng));
    return m;
  };
  const matrix image = normal(1200, 64), map = normal(64, 48);
  const matrix text = image * map + 4.0f * normal(1200, 48);
  const matrix image_train = image.topRows(1000), text_train = text.topRows(1000);
  const matrix image_test = image.bottomRows(200), text_test = text.bottomRows(200);

  // Depth and widths at run time; fusion_adapter<fusemix::adapter_shape{...}> fixes them at compile time.
  fusemix::fusion_adapter<> h_image({.in_dim = 64, .out_dim = 32, .depth = 2}, {.dropout = 0.3, .seed = 1});
  fusemix::fusion_adapter<> h_text({.in_dim = 48, .out_dim = 32, .depth = 2}, {.dropout = 0.3, .seed = 2});
  fusemix::trainer trainer(h_image, h_text,
                           {.epochs = 15, .batch = 100, .lr = 2e-3, .weight_decay = 0.1,
                            .mixup = {.alpha = 1.0, .mode = fusemix::mix_mode::permutation}, .seed = 3});

  auto test_recall = [&] {
    h_image.set_training(false), h_text.set_training(false);
    const matrix si = h_image.forward(image_test), st = h_text.forward(text_test);
    return fusemix::evaluate_retrieval<float>(si, st);
  };
  const auto before = test_recall();
  while (trainer.epoch() < trainer.options().epochs) {
    const auto r = trainer.train_epoch(image_train, text_train);
    if (r.epoch % 5 == 4) std::printf("epoch %zu: loss %.3f, temperature %.4f\n", r.epoch + 1, r.loss, trainer.temperature());
  }
  const auto after = test_recall();
  std::printf("test R@1 image->text: %.1f%% -> %.1f%% (chance 0.5%%)\n", before.image_to_text.r1, after.image_to_text.r1);

  const auto file = std::filesystem::temp_directory_path() / "fusemix_example_train.safetensors";
  trainer.save_weights(file);  // vis_proj.*, text_proj.*, temp: loads into the authors' PyTorch modules
  std::printf("wrote %s\n", file.c_str());
  std::filesystem::remove(file);
  return after.image_to_text.r1 > before.image_to_text.r1 + 10 ? 0 : 1;
}
