// SPDX-License-Identifier: Apache-2.0
/// @file
/// AdamW with PyTorch's semantics and parameter groups, and the warmup-then-cosine schedule.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <span>
#include <vector>

#include <Eigen/Core>

#include <fusemix/concepts.hpp>
#include <fusemix/error.hpp>
#include <fusemix/layers.hpp>

namespace fusemix {

/// AdamW hyper-parameters (PyTorch's defaults but for the decay, which FuseMix sets per task).
struct adamw_options {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.1;  ///< applied to the decayed ranges only (Linear weights)
};

/// AdamW over ranges of flat parameter buffers, as `torch.optim.AdamW` (decoupled decay
/// `p ← p − lr·wd·p`, then the bias-corrected Adam step, with PyTorch's order of operations).
///
/// Ranges are registered once; their first and second moments live in two flat buffers of the
/// optimiser, in registration order (what a checkpoint saves).
///
/// **Example**
///
///     fusemix::adamw<float> opt({.weight_decay = 0.1});
///     opt.add_model(h_x);                      // decay on Linear weights, none elsewhere
///     opt.add(&temperature, &dtemperature, 1, false);
///     opt.step(1e-3);                          // after each backward
template <Scalar T>
class adamw {
 public:
  explicit adamw(adamw_options o = {}) : o_(o) {}

  /// Registers `n` parameters at `p` with gradients at `g`; `decay` chooses the group.
  void add(T* p, const T* g, std::size_t n, bool decay) {
    ranges_.push_back({p, g, n, decay, m_.size()});
    m_.resize(m_.size() + n, T(0));
    v_.resize(v_.size() + n, T(0));
  }
  /// Registers every parameter of a model (anything with `parameters()`, `gradients()` and
  /// `named_parameters()`), decaying exactly those marked `decay` (Linear weight matrices).
  template <class Model>
  void add_model(Model& model) {
    auto p = model.parameters();
    auto g = model.gradients();
    for (const parameter_info& e : model.named_parameters()) add(p.data() + e.offset, g.data() + e.offset, e.size, e.decay);
  }

  /// One update of every registered range with learning rate `lr`.
  void step(double lr);

  [[nodiscard]] std::uint64_t steps() const noexcept { return t_; }
  void set_steps(std::uint64_t t) noexcept { t_ = t; }
  /// First and second moments of every range, in registration order (for checkpoints).
  [[nodiscard]] std::span<T> first_moments() noexcept { return m_; }
  [[nodiscard]] std::span<const T> first_moments() const noexcept { return m_; }
  [[nodiscard]] std::span<T> second_moments() noexcept { return v_; }
  [[nodiscard]] std::span<const T> second_moments() const noexcept { return v_; }
  [[nodiscard]] const adamw_options& options() const noexcept { return o_; }
  /// The number of registered parameters; each moment's host form has this length (the form
  /// every backend's optimiser reads and writes, so checkpoints do not depend on the backend).
  [[nodiscard]] std::size_t moment_count() const noexcept { return m_.size(); }
  /// Copies both moments, registered ranges in order.
  void get_moments(std::span<T> m, std::span<T> v) const {
    check_moments(m.size(), v.size());
    std::copy(m_.begin(), m_.end(), m.begin());
    std::copy(v_.begin(), v_.end(), v.begin());
  }
  /// Sets both moments from their host form.
  void set_moments(std::span<const T> m, std::span<const T> v) {
    check_moments(m.size(), v.size());
    std::copy(m.begin(), m.end(), m_.begin());
    std::copy(v.begin(), v.end(), v_.begin());
  }

 private:
  void check_moments(std::size_t m, std::size_t v) const {
    if (m != m_.size() || v != m_.size())
      detail::throw_shape_error("fusemix::adamw::moments", "one value per registered parameter", m_.size(),
                                m != m_.size() ? m : v);
  }
  struct range {
    T* p;
    const T* g;
    std::size_t n;
    bool decay;
    std::size_t offset;
  };
  adamw_options o_;
  std::vector<range> ranges_;
  std::vector<T> m_, v_;
  std::uint64_t t_ = 0;
};

/// The AdamW of backend `be`: `be.make_optimizer(o)` where the backend has one (the CUDA
/// backend's updates its device memory), else `fusemix::adamw` on host memory.
template <class B>
[[nodiscard]] auto make_optimizer(const B& be, const adamw_options& o) {
  if constexpr (requires { be.make_optimizer(o); })
    return be.make_optimizer(o);
  else
    return adamw<typename B::scalar_type>(o);
}

/// The FuseMix learning rate: linear warmup from `min_lr` to `lr` over the first epoch (per
/// step), then per-epoch cosine decay `(lr − min_lr)·½(1 + cos(π·e/E)) + min_lr` (the authors'
/// code), which reaches ~`min_lr` at the last epoch.
struct lr_schedule {
  double lr = 1e-3;
  double min_lr = 1e-6;
  std::size_t epochs = 1;
  bool warmup = true;

  /// The rate for step `step` (0-based) of epoch `epoch` (0-based) with `steps` steps per epoch.
  [[nodiscard]] double at(std::size_t epoch, std::size_t step, std::size_t steps) const noexcept {
    if (warmup && epoch == 0 && steps > 1)
      return min_lr + (lr - min_lr) * static_cast<double>(step) / static_cast<double>(steps - 1);
    const double e = static_cast<double>(epoch) / static_cast<double>(epochs);
    return (lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * e)) + min_lr;
  }
};

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

template <Scalar T>
void adamw<T>::step(double lr) {
  ++t_;
  const double bc1 = 1 - std::pow(o_.beta1, static_cast<double>(t_));
  const double bc2 = 1 - std::pow(o_.beta2, static_cast<double>(t_));
  const T step_size = static_cast<T>(lr / bc1), bc2_sqrt = static_cast<T>(std::sqrt(bc2));
  const T b1 = static_cast<T>(o_.beta1), b2 = static_cast<T>(o_.beta2), eps = static_cast<T>(o_.eps);
  const T one_minus_b1 = static_cast<T>(1 - o_.beta1), one_minus_b2 = static_cast<T>(1 - o_.beta2);
  const T decay = static_cast<T>(1 - lr * o_.weight_decay);
  // One pass per chunk of a range, as Eigen array expressions (vectorised whatever the -O level);
  // each chunk is small enough to stay in L1 across the three statements.
  using array = Eigen::Array<T, Eigen::Dynamic, 1>;
  constexpr std::size_t chunk = 1024;
  for (const range& r : ranges_) {
    for (std::size_t at = 0; at < r.n; at += chunk) {
      const auto len = static_cast<Eigen::Index>(std::min(chunk, r.n - at));
      Eigen::Map<array> p(r.p + at, len), m(m_.data() + r.offset + at, len), v(v_.data() + r.offset + at, len);
      const Eigen::Map<const array> g(r.g + at, len);
      m = m * b1 + g * one_minus_b1;
      v = v * b2 + g * g * one_minus_b2;
      if (r.decay)
        p = p * decay - step_size * m / (v.sqrt() / bc2_sqrt + eps);
      else
        p -= step_size * m / (v.sqrt() / bc2_sqrt + eps);
    }
  }
}

}  // namespace fusemix
