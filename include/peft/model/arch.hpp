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
  static constexpr double embedding_scale = 1.0;
};

/// RoBERTa: BERT's layer with padding-offset position ids.
struct roberta {
  static constexpr const char* name = "roberta";
  static constexpr bool pre_norm = false;
  static constexpr position_kind positions = position_kind::learned_pad_offset;
  static constexpr double embedding_scale = 1.0;
};

/// USE-lite (tensor2tensor-style encoder): pre-LayerNorm layers, ReLU, sinusoidal timing
/// signal, a residual projection where the width changes, no final LayerNorm.
/// The pretrained graph adds the looked-up embedding twice (once inside AddTimingSignal's
/// gather/scatter, once in Layer_0/add), so the layer input is `2 E[id] + signal`; see
/// docs/use_lite.md step 4.
struct use_lite {
  static constexpr const char* name = "use_lite";
  static constexpr bool pre_norm = true;
  static constexpr position_kind positions = position_kind::sinusoidal;
  static constexpr double embedding_scale = 2.0;
};

}  // namespace peft

#endif  // PEFT_MODEL_ARCH_HPP
