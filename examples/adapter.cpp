// SPDX-License-Identifier: Apache-2.0
// A compile-time-configured adapter embedding latents, with one gradient step by hand, and its
// weights written under PyTorch names. Built and run by ctest (label "example").
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <fusemix/fusemix.hpp>

// The shape is data: a structural class as the template argument.
inline constexpr fusemix::adapter_shape whisper_base{.in_dim = 512, .out_dim = 256, .depth = 2};
using audio_adapter = fusemix::fusion_adapter<whisper_base>;
static_assert(audio_adapter::parameter_count == whisper_base.parameter_count());

int main() {
  audio_adapter h({.dropout = 0.1, .seed = 42});
  using matrix = fusemix::io::matrix<float>;
  const matrix z = matrix::Random(8, 512);

  // Pull every embedding towards the all-ones direction with plain gradient descent on
  // loss = −Σ s·1, and check the loss goes down.
  auto loss = [&] { return -static_cast<double>(h.forward(z).sum()); };
  const double before = loss();
  for (int step = 0; step < 5; ++step) {
    h.set_training(true);
    h.forward(z);
    h.backward(-matrix::Ones(8, 256));
    h.set_training(false);
    auto p = h.parameters();
    auto g = h.gradients();
    for (std::size_t i = 0; i < p.size(); ++i) p[i] -= 1e-3f * g[i];
  }
  const double after = loss();
  std::printf("%zu parameters; loss %.4f -> %.4f\n", h.size(), before, after);

  fusemix::io::tensor_map t;
  fusemix::io::store_parameters(h, fusemix::io::x_prefix, t);
  const auto file = std::filesystem::temp_directory_path() / "fusemix_example_adapter.safetensors";
  fusemix::io::write_safetensors(file, t);
  std::printf("wrote %s with %zu tensors\n", file.c_str(), t.size());
  std::filesystem::remove(file);
  return after < before ? 0 : 1;
}
