// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_ARCH_HPP
#define PEFT_MODEL_ARCH_HPP

/// @file arch.hpp
/// Architecture traits: the compile-time differences between encoder families. The encoder
/// template reads only these members, so a new family is a new traits struct.

namespace peft {

/// How positions enter the embeddings.
enum class position_kind {
  learned,            ///< a learned table indexed 0..T-1 (BERT)
  learned_pad_offset, ///< learned, indexed pad_id+1+rank among real tokens (RoBERTa)
  sinusoidal          ///< tensor2tensor timing signal, no table (USE-lite)
};

/// BERT: post-LayerNorm layers, GELU, learned positions, token types, embedding LayerNorm.
struct bert {
  static constexpr const char* name = "bert";
  static constexpr bool pre_norm = false;
  static constexpr position_kind positions = position_kind::learned;
};

/// RoBERTa: BERT's layer with padding-offset position ids.
struct roberta {
  static constexpr const char* name = "roberta";
  static constexpr bool pre_norm = false;
  static constexpr position_kind positions = position_kind::learned_pad_offset;
};

/// USE-lite (tensor2tensor encoder): pre-LayerNorm layers, ReLU, sinusoidal timing signal,
/// embeddings scaled by sqrt(width), a residual projection where the width changes.
struct use_lite {
  static constexpr const char* name = "use_lite";
  static constexpr bool pre_norm = true;
  static constexpr position_kind positions = position_kind::sinusoidal;
};

}  // namespace peft

#endif  // PEFT_MODEL_ARCH_HPP
