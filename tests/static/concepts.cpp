// SPDX-License-Identifier: Apache-2.0
// Compile-time tests: what must satisfy the concepts, what must not, and what the shapes compute.
// A failure here is a build failure, so these checks run in every build of the tests.
#include <fusemix/fusemix.hpp>

#include <span>
#include <string>

namespace fm = fusemix;

// Scalars: floating point only.
static_assert(fm::Scalar<float> && fm::Scalar<double>);
static_assert(!fm::Scalar<int> && !fm::Scalar<std::string>);

// The CPU backend is a Backend for both precisions, group by group; a type without the
// primitives is not.
static_assert(fm::Backend<fm::cpu::backend<float>>);
static_assert(fm::Backend<fm::cpu::backend<double>>);
struct no_gemm {
  using scalar_type = float;
  using matrix_type = fm::cpu::backend<float>::matrix_type;
  using vector_type = fm::cpu::backend<float>::vector_type;
  std::size_t rows(const matrix_type&) const;
  std::size_t cols(const matrix_type&) const;
  void resize(matrix_type&, std::size_t, std::size_t);
};
static_assert(!fm::Backend<no_gemm>);
struct int_backend : no_gemm {
  using scalar_type = int;
  void gemm(int, const matrix_type&, bool, const matrix_type&, bool, int, matrix_type&);
};
static_assert(!fm::Backend<int_backend>);

// A backend missing one group fails exactly that group's concept (static/fails/ shows the
// compiler naming it).
template <class... Groups>
struct composed : Groups... {};
using F = float;
using no_dense = composed<fm::cpu::storage<F>, fm::cpu::row_ops<F>, fm::cpu::layer_norm_ops<F>, fm::cpu::activation_ops<F>,
                          fm::cpu::loss_ops<F>, fm::cpu::optimizer_ops<F>, fm::cpu::kdpp_ops<F>,
                          fm::cpu::search_ops<F>>;
using no_layer_norm = composed<fm::cpu::storage<F>, fm::cpu::dense_ops<F>, fm::cpu::row_ops<F>, fm::cpu::activation_ops<F>,
                               fm::cpu::loss_ops<F>, fm::cpu::optimizer_ops<F>, fm::cpu::kdpp_ops<F>,
                          fm::cpu::search_ops<F>>;
using no_loss = composed<fm::cpu::storage<F>, fm::cpu::dense_ops<F>, fm::cpu::row_ops<F>, fm::cpu::layer_norm_ops<F>,
                         fm::cpu::activation_ops<F>, fm::cpu::optimizer_ops<F>, fm::cpu::kdpp_ops<F>,
                          fm::cpu::search_ops<F>>;
using no_kdpp = composed<fm::cpu::storage<F>, fm::cpu::dense_ops<F>, fm::cpu::row_ops<F>, fm::cpu::layer_norm_ops<F>,
                         fm::cpu::activation_ops<F>, fm::cpu::loss_ops<F>, fm::cpu::optimizer_ops<F>,
                         fm::cpu::search_ops<F>>;
using no_search = composed<fm::cpu::storage<F>, fm::cpu::dense_ops<F>, fm::cpu::row_ops<F>, fm::cpu::layer_norm_ops<F>,
                           fm::cpu::activation_ops<F>, fm::cpu::loss_ops<F>, fm::cpu::optimizer_ops<F>,
                           fm::cpu::kdpp_ops<F>>;
using all_groups = composed<fm::cpu::storage<F>, fm::cpu::dense_ops<F>, fm::cpu::row_ops<F>, fm::cpu::layer_norm_ops<F>,
                            fm::cpu::activation_ops<F>, fm::cpu::loss_ops<F>, fm::cpu::optimizer_ops<F>,
                            fm::cpu::kdpp_ops<F>, fm::cpu::search_ops<F>>;
static_assert(!fm::DenseAlgebra<no_dense> && fm::LayerNormOps<no_dense> && !fm::Backend<no_dense>);
static_assert(!fm::LayerNormOps<no_layer_norm> && fm::DenseAlgebra<no_layer_norm> && fm::ActivationOps<no_layer_norm> &&
              !fm::Backend<no_layer_norm>);
static_assert(!fm::LossPrimitives<no_loss> && fm::RowOps<no_loss> && !fm::Backend<no_loss>);
static_assert(!fm::KdppEngineFactory<no_kdpp> && fm::OptimizerFactory<no_kdpp> && !fm::Backend<no_kdpp>);
static_assert(!fm::SearchOps<no_search> && fm::KdppEngineFactory<no_search> && !fm::Backend<no_search>);
static_assert(fm::Backend<all_groups>);  // so each case above lacks only its one group

// Adapters and losses are policies with concepts of their own.
static_assert(fm::Adapter<fm::fusion_adapter<>> && fm::Adapter<fm::image_adapter>);
static_assert(fm::Adapter<fm::identity_adapter<>> && fm::Adapter<fm::fusion_adapter<fm::dynamic_shape, fm::cpu::backend<double>>>);
static_assert(!fm::Adapter<fm::linear<>>);  // a layer, not a model of one side
static_assert(fm::Loss<fm::contrastive_loss<>> && fm::Loss<fm::sigmoid_loss<>> && fm::Loss<fm::sigmoid_loss<fm::cpu::backend<double>>>);
static_assert(!fm::Loss<fm::fusion_adapter<>>);
static_assert(fm::KdppEngine<fm::detail::kdpp_cpu_engine<float, fm::cosine_kernel>>);

// Kernels: a symmetric function of two spans returning something convertible to double.
struct dot_kernel {
  double operator()(std::span<const float> a, std::span<const float> b) const;
};
struct not_a_kernel {
  double operator()(int, int) const;
};
static_assert(fm::Kernel<dot_kernel, float>);
static_assert(!fm::Kernel<not_a_kernel, float>);
static_assert(!fm::RowKernel<dot_kernel, float>);  // no row(): evaluated pairwise
struct row_dot_kernel : dot_kernel {
  void row(const fm::latent_view<float>&, std::size_t, std::span<float>) const;
};
static_assert(fm::RowKernel<row_dot_kernel, float>);

// Compile-time shapes give compile-time parameter counts equal to PyTorch's numel sums.
static_assert(fm::dinov2_vitg14.is_static() && !fm::dynamic_shape.is_static());
static_assert(fm::image_adapter::parameter_count == 76'330'496);
static_assert(fm::adapter_shape{.in_dim = 1024, .out_dim = 512, .depth = 2}.parameter_count() ==
              2 * (2 * 1024 + 2 * 4 * 1024 * 1024 + 4 * 1024 + 1024) + 2 * 1024 + 512 * 1024 + 512);
static_assert(fm::fusion_adapter<fm::adapter_shape{.in_dim = fm::dynamic}>::parameter_count == fm::dynamic);

// A fully static adapter is default-constructible; a dynamic one needs its shape.
static_assert(std::is_constructible_v<fm::image_adapter>);
static_assert(!std::is_default_constructible_v<fm::fusion_adapter<>>);

// latent_view deduces its element type and refuses column-major storage at compile time.
static_assert(std::is_same_v<decltype(fm::latent_view(std::declval<const fm::io::matrix<float>&>())),
                             fm::latent_view<float>>);

// A precomputed kernel keeps a view of L: it binds to a named matrix, never to a temporary.
static_assert(std::is_constructible_v<fm::precomputed_kernel<double>, const fm::matrix<double>&>);
static_assert(!std::is_constructible_v<fm::precomputed_kernel<double>, fm::matrix<double>&&>);

// Philox is constexpr: the known-answer vectors of Salmon et al.'s Random123 (kat_vectors).
static_assert(fm::philox4x32({0, 0, 0, 0}, {0, 0}) ==
              std::array<std::uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
static_assert(fm::philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
              std::array<std::uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
static_assert(fm::philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
              std::array<std::uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
