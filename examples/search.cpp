// SPDX-License-Identifier: Apache-2.0
// From a trained model file and latents to the top 5: load both adapters in one call (their
// shapes read from the file), embed a gallery of captions and a few image queries, and search.
// Built and run by ctest (label "example"); with arguments it runs on your own files:
//
//     example_search MODEL.safetensors IMAGE_LATENTS.npy CAPTION_LATENTS.npy
//
// Without them it makes a small model file first (a freshly initialised pair of adapters), so
// the example runs anywhere; the results then mean nothing, the calls are the same.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include <fusemix/fusemix.hpp>

namespace fs = std::filesystem;
using matrix = fusemix::matrix<float>;

// A stand-in for `fusemix train`'s output and for two encoders' latents.
void make_inputs(const fs::path& dir) {
  fusemix::fusion_adapter<> hx({.in_dim = 48, .out_dim = 16, .depth = 2}, {.seed = 1});
  fusemix::fusion_adapter<> hy({.in_dim = 32, .out_dim = 16, .depth = 2}, {.seed = 2});
  fusemix::io::tensor_map t;
  fusemix::io::store_parameters(hx, fusemix::io::x_prefix, t);
  fusemix::io::store_parameters(hy, fusemix::io::y_prefix, t);
  fusemix::io::write_safetensors(dir / "adapters.safetensors", t);
  fusemix::io::write_npy(dir / "images.npy", matrix(matrix::Random(4, 48)));
  fusemix::io::write_npy(dir / "captions.npy", matrix(matrix::Random(200, 32)));
}

int main(int argc, char** argv) {
  try {
    fs::path model, images, captions;
    if (argc == 4) {
      model = argv[1], images = argv[2], captions = argv[3];
    } else {
      const fs::path dir = fs::temp_directory_path() / "fusemix_example_search";
      fs::create_directories(dir);
      make_inputs(dir);
      model = dir / "adapters.safetensors", images = dir / "images.npy", captions = dir / "captions.npy";
    }
    // Both adapters, in evaluation mode, shapes from the file.
    auto m = fusemix::io::load_model(model);
    if (!m.x || !m.y) throw fusemix::io_error("this example needs a model with both adapters");
    // `embed` returns a matrix of its own; `forward` reuses the adapter's buffer (training loops).
    const matrix queries = m.x->embed(fusemix::io::read_npy<float>(images));
    const matrix gallery = m.y->embed(fusemix::io::read_npy<float>(captions));
    const auto best = fusemix::top_k<float>(queries, gallery, 5);
    for (Eigen::Index q = 0; q < best.indices.rows(); ++q) {
      std::printf("image %ld:", static_cast<long>(q));
      for (Eigen::Index j = 0; j < best.indices.cols(); ++j)
        std::printf("  %ld (%.3f)", static_cast<long>(best.indices(q, j)), best.scores(q, j));
      std::printf("\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
