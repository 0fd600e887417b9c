// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_BATCH_HPP
#define PEFT_CORE_BATCH_HPP

/// @file batch.hpp
/// A padded batch of token-id sequences: ids, segment ids and a 0/1 attention mask, all
/// `[batch x time]`. Sequences are padded on the right to the longest one.

#include <cstdint>
#include <vector>

#include "types.hpp"

namespace peft {

/// The id of a virtual token: a position whose input embedding a policy supplies (prompt
/// tuning's soft prompt). The encoder accepts it only with a policy that has the
/// `on_input_embeddings` hook (policy_traits.hpp).
inline constexpr std::int32_t virtual_token_id = -1;

struct batch {
  id_matrix ids;       ///< [B x T] token ids; padding positions hold the pad id
  id_matrix segments;  ///< [B x T] segment (token type) ids, or empty for all-zero
  id_matrix mask;      ///< [B x T] 1 for a real token, 0 for padding

  index size() const noexcept { return ids.rows(); }
  index time() const noexcept { return ids.cols(); }
  index rows() const noexcept { return ids.size(); }  ///< B*T, rows of hidden states
  /// Number of real tokens of sequence b.
  index length(index b) const { return mask.row(b).count(); }
};

/// Pads `seqs` on the right with `pad_id` into one batch. `segments`, when given, must have
/// the same lengths as `seqs`.
///
/// `min_time` pads to at least that length (data-parallel ranks pad their parts of a batch
/// to the length of the whole batch, so that keyed dropout masks line up).
inline batch make_batch(const std::vector<std::vector<std::int32_t>>& seqs, std::int32_t pad_id,
                        const std::vector<std::vector<std::int32_t>>* segments = nullptr, index min_time = 0) {
  if (seqs.empty()) throw invalid_argument("make_batch: sequences expected at least 1, got 0");
  if (segments && segments->size() != seqs.size())
    throw invalid_argument(detail::expected_got("make_batch", "segment sequences", seqs.size(), segments->size()));
  index T = min_time;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].empty())
      throw invalid_argument("make_batch: sequence " + std::to_string(i) + " is empty (length expected >= 1)");
    if (segments && (*segments)[i].size() != seqs[i].size())
      throw invalid_argument(detail::expected_got("make_batch", ("segment length of sequence " + std::to_string(i)).c_str(),
                                                  seqs[i].size(), (*segments)[i].size()));
    T = std::max<index>(T, static_cast<index>(seqs[i].size()));
  }
  const index B = static_cast<index>(seqs.size());
  batch b;
  b.ids = id_matrix::Constant(B, T, pad_id);
  b.mask = id_matrix::Zero(B, T);
  if (segments) b.segments = id_matrix::Zero(B, T);
  for (index i = 0; i < B; ++i) {
    const auto& s = seqs[static_cast<std::size_t>(i)];
    for (index t = 0; t < static_cast<index>(s.size()); ++t) {
      b.ids(i, t) = s[static_cast<std::size_t>(t)];
      b.mask(i, t) = 1;
      if (segments) b.segments(i, t) = (*segments)[static_cast<std::size_t>(i)][static_cast<std::size_t>(t)];
    }
  }
  return b;
}

/// A copy of @p b with @p n virtual tokens (`virtual_token_id`, mask 1, segment 0) in front of
/// every sequence: the input a prompt-tuning policy expects. (task_model and the multi-task
/// server do this themselves for a policy with `num_virtual_tokens()`.)
inline batch with_virtual_tokens(const batch& b, index n) {
  if (n < 0) throw invalid_argument(detail::expected_got("with_virtual_tokens", "virtual tokens", ">= 0", n));
  const index B = b.size(), T = b.time();
  batch out;
  out.ids.resize(B, T + n);
  out.mask.resize(B, T + n);
  out.ids.leftCols(n).setConstant(virtual_token_id);
  out.mask.leftCols(n).setOnes();
  out.ids.rightCols(T) = b.ids;
  out.mask.rightCols(T) = b.mask;
  if (b.segments.size() != 0) {
    out.segments = id_matrix::Zero(B, T + n);
    out.segments.rightCols(T) = b.segments;
  }
  return out;
}

}  // namespace peft

#endif  // PEFT_CORE_BATCH_HPP
