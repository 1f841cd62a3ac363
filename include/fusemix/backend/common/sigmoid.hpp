// SPDX-License-Identifier: Apache-2.0
/// @file
/// The per-logit terms of the pairwise sigmoid loss (SigLIP), one definition for every backend.
#pragma once

#include <fusemix/backend/common/math.hpp>
#include <fusemix/core/config.hpp>

namespace fusemix::detail {

/// `−log σ(u) = log(1 + e^(−u))`, without overflow for large |u| (`-F.logsigmoid(u)`).
template <class T>
FUSEMIX_HOST_DEVICE inline T neg_log_sigmoid(T u) noexcept {
  const T m = u < T(0) ? -u : T(0);
  return m + log1p(exp(-(u < T(0) ? -u : u)));
}

/// `σ(u) = 1 / (1 + e^(−u))`, evaluated on the side where the exponential cannot overflow.
template <class T>
FUSEMIX_HOST_DEVICE inline T sigmoid(T u) noexcept {
  if (u >= T(0)) return T(1) / (T(1) + exp(-u));
  const T e = exp(u);
  return e / (T(1) + e);
}

/// Logit (i, j) of a pairwise sigmoid loss over n pairs: its loss term
/// `−log σ(z·l)` (z = 1 on the diagonal, −1 elsewhere) and the gradient of the mean-over-rows
/// loss `(1/n)·Σ_ij` with respect to the logit, `−z·σ(−z·l)/n`.
template <class T>
FUSEMIX_HOST_DEVICE inline T sigmoid_pair_term(T l, bool positive) noexcept {
  return neg_log_sigmoid(positive ? l : -l);
}
template <class T>
FUSEMIX_HOST_DEVICE inline T sigmoid_pair_gradient(T l, bool positive, T inv_n) noexcept {
  return positive ? -sigmoid(-l) * inv_n : sigmoid(l) * inv_n;
}

}  // namespace fusemix::detail
