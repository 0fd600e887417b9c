// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPTIM_CLIP_HPP
#define PEFT_OPTIM_CLIP_HPP

/// @file clip.hpp
/// Global gradient-norm clipping over a `parameter_set`, as `torch.nn.utils.clip_grad_norm_`
/// (the Hugging Face Trainer clips at `max_grad_norm = 1.0` before every step).

#include <cmath>
#include <string>

#include "../core/parameter.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "optimizer.hpp"

namespace peft {

/// Total L2 norm of every gradient in the set (accumulated in double). NaN/Inf propagate.
template <typename Scalar>
double grad_norm(const parameter_set<Scalar>& set) {
  double sq = 0;
  for (std::size_t s = 0; s < set.num_stores(); ++s) {
    const auto& g = set.store(s).grads();
    for (index i = 0; i < g.size(); ++i) {
      const double v = static_cast<double>(g[i]);
      sq += v * v;
    }
  }
  return std::sqrt(sq);
}

/// Scales every gradient by `max_norm / (norm + 1e-6)` when that factor is below 1, where
/// `norm` is the total L2 norm over the set; returns `norm` (before clipping).
/// @throws invalid_argument unless max_norm is finite and > 0
/// @throws numeric_error if the norm is NaN or infinite, naming the first non-finite gradient
///         entry; the gradients (and parameters) are left untouched
template <typename Scalar>
double clip_grad_norm(parameter_set<Scalar>& set, double max_norm) {
  if (!std::isfinite(max_norm) || max_norm <= 0)
    throw invalid_argument("clip_grad_norm: max_norm expected finite and > 0, got " +
                           std::to_string(max_norm));
  const double norm = grad_norm(set);
  if (!std::isfinite(norm)) {
    std::string bad = detail::first_non_finite_grad(set);
    if (bad.empty()) bad = "no single entry (the sum of squares overflowed)";
    throw numeric_error("clip_grad_norm: gradient norm expected finite, got " + std::to_string(norm) + " (" +
                        bad + ")");
  }
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (std::size_t s = 0; s < set.num_stores(); ++s) set.store(s).grads() *= static_cast<Scalar>(coef);
  return norm;
}

}  // namespace peft

#endif  // PEFT_OPTIM_CLIP_HPP
