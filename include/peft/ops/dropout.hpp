// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_DROPOUT_HPP
#define PEFT_OPS_DROPOUT_HPP

/// @file dropout.hpp
/// Inverted dropout: kept entries are scaled by 1/(1-p) so evaluation needs no rescaling.

#include <string>

#include "../core/random.hpp"
#include "../core/threading.hpp"
#include "../core/types.hpp"
#include "../error.hpp"

namespace peft::ops {

/// Fills `mask` ([rows x cols]) with 0 or 1/(1-p). p must be in [0, 1).
///
/// With `gen.example_keys()` set (B keys), rows are taken as B equal example-major groups
/// (`[B*T]` hidden rows, `[B*H*T]` attention rows, `[B]` pooled rows) and each entry is a
/// counter-based draw from (one draw of `gen`, the example's key, the row within its group,
/// the column); the batch must then be padded to the same length wherever it is split.
/// @throws invalid_argument if keys are set and `rows` is not a multiple of their number
template <typename Scalar>
void make_dropout_mask(index rows, index cols, double p, rng& gen, matrix<Scalar>& mask) {
  PEFT_ASSERT(p >= 0.0 && p < 1.0);
  mask.resize(rows, cols);
  const Scalar keep = static_cast<Scalar>(1.0 / (1.0 - p));
  Scalar* m = mask.data();
  const auto& keys = gen.example_keys();
  if (keys.empty()) {
    for (index i = 0; i < mask.size(); ++i) m[i] = gen.uniform() < p ? Scalar(0) : keep;
    return;
  }
  const index B = static_cast<index>(keys.size());
  if (rows % B != 0)
    throw invalid_argument("make_dropout_mask: rows expected a multiple of the " + std::to_string(B) +
                           " example keys, got " + std::to_string(rows));
  const index per = rows / B;
  const std::uint64_t call = gen.engine()();
  parallel_rows(rows, cols, [&](index r0, index r1) {
    for (index r = r0; r < r1; ++r) {
      const std::uint64_t row_key =
          mix64(call ^ mix64(keys[static_cast<std::size_t>(r / per)] * 0xd1b54a32d192ed03ULL + std::uint64_t(r % per)));
      for (index c = 0; c < cols; ++c) {
        const double u = static_cast<double>(mix64(row_key + std::uint64_t(c) * 0x9e3779b97f4a7c15ULL) >> 11) * 0x1.0p-53;
        m[r * cols + c] = u < p ? Scalar(0) : keep;
      }
    }
  });
}

}  // namespace peft::ops

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_OPS_DROPOUT
#include "../detail/instances.hpp"

#endif  // PEFT_OPS_DROPOUT_HPP
