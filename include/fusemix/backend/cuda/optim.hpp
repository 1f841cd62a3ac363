// SPDX-License-Identifier: Apache-2.0
/// @file
/// The CUDA backend's optimiser: AdamW over backend memory, one fused pass per model.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include <fusemix/backend/common/adamw.hpp>
#include <fusemix/backend/cuda/context.hpp>
#include <fusemix/backend/cuda/kernels/adamw.hpp>
#include <fusemix/backend/cuda/kernels/elementwise.hpp>
#include <fusemix/backend/cuda/memory.hpp>
#include <fusemix/backend/cuda/system.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>
#include <fusemix/optim/adamw.hpp>

namespace fusemix::cuda {

/// AdamW as `fusemix::adamw` (PyTorch's order of operations, `fusemix::detail::adamw_update`),
/// on the memory of system `S`: a model is one segment (its whole flat buffer, with a
/// per-element decay flag), updated by one fused pass.
///
/// The moments' host form (`moment_count`, `get_moments`, `set_moments`) is the CPU optimiser's:
/// registered ranges in order, without the buffers' alignment padding, so checkpoints are the same.
///
/// **Example**
///
///     auto opt = be.make_optimizer({.weight_decay = 0.1});   // a cuda::adamw<float>
///     opt.add_model(hx);
///     opt.step(1e-3);
template <Scalar T, System S = device_system>
class adamw {
 public:
  static_assert(detail::available<S>);

  explicit adamw(adamw_options o = {}, std::shared_ptr<context<S>> c = context<S>::shared())
      : o_(o), ctx_(std::move(c)) {}

  /// Registers `n` parameters at `p` (backend memory) with gradients at `g`.
  void add(T* p, const T* g, std::size_t n, bool decay) { add_segment(p, g, n, {}, decay, {{0, n}}); }
  /// Registers a whole model (its flat buffer), decaying exactly its ranges marked `decay`.
  template <class Model>
  void add_model(Model& model);

  /// One update of every registered parameter with learning rate `lr` (queued).
  void step(double lr) {
    const auto prof = ctx_->profile("adamw");
    ++t_;
    const auto c = ::fusemix::detail::adamw_constants<T>::of(o_.beta1, o_.beta2, o_.eps, o_.weight_decay, lr, t_);
    for (segment& s : segments_)
      for_n(*ctx_, s.n,
            detail::adamw_elements<T>{s.p, s.g, s.m.data(), s.v.data(), s.mask.empty() ? nullptr : s.mask.data(),
                                      s.decay, c});
  }

  [[nodiscard]] std::uint64_t steps() const noexcept { return t_; }
  void set_steps(std::uint64_t t) noexcept { t_ = t; }
  [[nodiscard]] const adamw_options& options() const noexcept { return o_; }
  /// The number of registered parameters (the length of each moment's host form).
  [[nodiscard]] std::size_t moment_count() const noexcept { return count_; }
  /// Copies both moments to the host, registered ranges in order.
  /// @throws shape_error unless both spans hold `moment_count()` values.
  void get_moments(std::span<T> m, std::span<T> v) const;
  /// Sets both moments from their host form (the padding between ranges keeps its zeros).
  /// @throws shape_error unless both spans hold `moment_count()` values.
  void set_moments(std::span<const T> m, std::span<const T> v);

 private:
  struct segment {
    T* p;
    const T* g;
    std::size_t n;
    array<T, S> m, v;
    array<std::uint8_t, S> mask;
    bool decay;
    std::vector<std::pair<std::size_t, std::size_t>> used;  // (offset, size) of the registered ranges
  };
  void add_segment(T* p, const T* g, std::size_t n, const std::vector<std::uint8_t>& mask, bool decay,
                   std::vector<std::pair<std::size_t, std::size_t>> used);
  void check_moments(std::size_t m, std::size_t v) const {
    if (m != count_ || v != count_)
      throw_shape_error("fusemix::cuda::adamw::moments", "one value per registered parameter", count_,
                        m != count_ ? m : v);
  }

  adamw_options o_;
  std::shared_ptr<context<S>> ctx_;
  std::vector<segment> segments_;
  std::size_t count_ = 0;
  std::uint64_t t_ = 0;
};

/// The optimiser group of `cuda::backend` (`OptimizerFactory`), which is `Derived`.
template <Scalar T, System S, class Derived>
class optimizer_ops {
 public:
  /// The AdamW of this backend (a fused pass over each model's flat buffer), on its context.
  [[nodiscard]] adamw<T, S> make_optimizer(const adamw_options& o) const {
    return adamw<T, S>(o, self().shared_context());
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

// ------------------------------------------------------------------------------------------------
// Definitions
// ------------------------------------------------------------------------------------------------

template <Scalar T, System S>
template <class Model>
void adamw<T, S>::add_model(Model& model) {
  auto p = model.parameters();
  auto g = model.gradients();
  std::vector<std::uint8_t> mask(p.size(), 0);
  std::vector<std::pair<std::size_t, std::size_t>> used;
  for (const auto& e : model.named_parameters()) {
    std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(e.offset), e.size, std::uint8_t(e.decay ? 1 : 0));
    used.emplace_back(e.offset, e.size);
  }
  add_segment(p.data(), g.data(), p.size(), mask, false, std::move(used));
}

template <Scalar T, System S>
void adamw<T, S>::get_moments(std::span<T> m, std::span<T> v) const {
  check_moments(m.size(), v.size());
  std::size_t at = 0;
  for (const segment& s : segments_)
    for (const auto& [off, len] : s.used) {
      copy_to_host(*ctx_, s.m.data() + off, m.data() + at, len);
      copy_to_host(*ctx_, s.v.data() + off, v.data() + at, len);
      at += len;
    }
}

template <Scalar T, System S>
void adamw<T, S>::set_moments(std::span<const T> m, std::span<const T> v) {
  check_moments(m.size(), v.size());
  std::size_t at = 0;
  for (segment& s : segments_)
    for (const auto& [off, len] : s.used) {
      copy_to_device(*ctx_, m.data() + at, s.m.data() + off, len);
      copy_to_device(*ctx_, v.data() + at, s.v.data() + off, len);
      at += len;
    }
}

template <Scalar T, System S>
void adamw<T, S>::add_segment(T* p, const T* g, std::size_t n, const std::vector<std::uint8_t>& mask, bool decay,
                              std::vector<std::pair<std::size_t, std::size_t>> used) {
  segment s{p, g, n, array<T, S>(n), array<T, S>(n), array<std::uint8_t, S>(mask.size()), decay, std::move(used)};
  for_n(*ctx_, n, detail::fill_elements<T>{s.m.data(), T(0)});
  for_n(*ctx_, n, detail::fill_elements<T>{s.v.data(), T(0)});
  copy_to_device(*ctx_, mask.data(), s.mask.data(), mask.size());
  for (const auto& u : s.used) count_ += u.second;
  segments_.push_back(std::move(s));
}

}  // namespace fusemix::cuda
