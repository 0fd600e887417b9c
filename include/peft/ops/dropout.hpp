// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_DROPOUT_HPP
#define PEFT_OPS_DROPOUT_HPP

/// @file dropout.hpp
/// Inverted dropout: kept entries are scaled by 1/(1-p) so evaluation needs no rescaling.

#include "../core/random.hpp"
#include "../core/types.hpp"

namespace peft::ops {

/// Fills `mask` ([rows x cols]) with 0 or 1/(1-p). p must be in [0, 1).
template <typename Scalar>
void make_dropout_mask(index rows, index cols, double p, rng& gen, matrix<Scalar>& mask) {
  PEFT_ASSERT(p >= 0.0 && p < 1.0);
  mask.resize(rows, cols);
  const Scalar keep = static_cast<Scalar>(1.0 / (1.0 - p));
  Scalar* m = mask.data();
  for (index i = 0; i < mask.size(); ++i) m[i] = gen.uniform() < p ? Scalar(0) : keep;
}

}  // namespace peft::ops

#endif  // PEFT_OPS_DROPOUT_HPP
