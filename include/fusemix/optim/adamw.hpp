// SPDX-License-Identifier: Apache-2.0
/// @file
/// AdamW with PyTorch's semantics over flat parameter ranges in host memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <fusemix/backend/common/adamw.hpp>
#include <fusemix/core/concepts.hpp>
#include <fusemix/core/error.hpp>

namespace fusemix {

/// AdamW hyper-parameters (PyTorch's defaults but for the decay, which FuseMix sets per task).
struct adamw_options {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.1;  ///< applied to the decayed ranges only (Linear weights)
};

namespace detail {
/// The update of a range as a plain loop over `detail::adamw_update` (the CPU backend's
/// optimiser runs the same formula over Eigen arrays, vectorised).
struct scalar_adamw_update {
  template <class T>
  static void apply(T* p, const T* g, T* m, T* v, std::size_t n, bool decay, const adamw_constants<T>& c) noexcept {
    for (std::size_t i = 0; i < n; ++i) adamw_update(p[i], m[i], v[i], g[i], c, decay);
  }
};
}  // namespace detail

/// AdamW over ranges of flat buffers in host memory, as `torch.optim.AdamW` (decoupled decay
/// `p ← p − lr·wd·p`, then the bias-corrected Adam step, with PyTorch's order of operations).
///
/// Ranges are registered once; their first and second moments live in two flat buffers of the
/// optimiser, in registration order (what a checkpoint saves). A backend's own optimiser comes
/// from `Backend::make_optimizer`; this one also serves the losses' few host scalars.
///
/// @tparam Update how a range is updated: `apply(p, g, m, v, n, decay, constants)`.
///
/// **Example**
///
///     fusemix::adamw<float> opt({.weight_decay = 0.1});
///     opt.add_model(h_x);                      // decay on Linear weights, none elsewhere
///     opt.add(&temperature, &dtemperature, 1, false);
///     opt.step(1e-3);                          // after each backward
template <Scalar T, class Update = detail::scalar_adamw_update>
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
    for (const auto& e : model.named_parameters()) add(p.data() + e.offset, g.data() + e.offset, e.size, e.decay);
  }

  /// One update of every registered range with learning rate `lr`.
  void step(double lr) {
    ++t_;
    const auto c = detail::adamw_constants<T>::of(o_.beta1, o_.beta2, o_.eps, o_.weight_decay, lr, t_);
    for (const range& r : ranges_) Update::apply(r.p, r.g, m_.data() + r.offset, v_.data() + r.offset, r.n, r.decay, c);
  }

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
      throw_shape_error("fusemix::adamw::moments", "one value per registered parameter", m_.size(),
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

}  // namespace fusemix
