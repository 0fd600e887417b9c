// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_ENCODER_SHAPE_HPP
#define PEFT_CORE_ENCODER_SHAPE_HPP

/// @file encoder_shape.hpp
/// The sizes a policy needs to build its parameters for an encoder, without depending on
/// the model layer: `encoder<...>::shape()` returns one.

#include <string>
#include <utility>
#include <vector>

#include "types.hpp"

namespace peft {

struct encoder_shape {
  std::string model_type;               ///< "bert", "roberta", "use_lite"
  index num_layers = 0;
  index num_heads = 0;
  index embedding_size = 0;             ///< width of the embedding output (layer 0's input)
  /// Width of the word embeddings and the embedding LayerNorm: embedding_size, except where
  /// a projection follows them (ELECTRA, ALBERT); 0 means embedding_size.
  index word_embedding_size = 0;
  index hidden_size = 0;                ///< width of the encoder output
  index intermediate_size = 0;          ///< FFN inner width
  std::vector<index> input_width;       ///< per layer: width of the layer input
  std::vector<index> attention_width;   ///< per layer: width of Q/K/V
  std::vector<index> output_width;      ///< per layer: width of the sub-layer outputs
  index backbone_parameters = 0;        ///< scalar parameters of the frozen encoder
  /// Stored layers when layers share their weights (ALBERT's layer groups); 0: every layer
  /// is stored.
  index layer_groups = 0;
  /// Where the LayerNorms sit: before each sub-layer (pre-norm, USE-lite) or after each
  /// sub-layer's residual sum (post-norm, the BERT family).
  bool pre_norm = false;
  bool embedding_norm = true;           ///< the embeddings end in a LayerNorm

  /// The stored layer that layer @p l runs: itself, or its ALBERT layer group (transformers'
  /// `int(l / (num_hidden_layers / num_hidden_groups))`).
  index stored_layer(index l) const noexcept {
    return layer_groups > 0 && layer_groups != num_layers ? l * layer_groups / num_layers : l;
  }

  /// Width of the word embeddings (see word_embedding_size).
  index word_width() const noexcept { return word_embedding_size > 0 ? word_embedding_size : embedding_size; }

  /// [out x in] shape of a frozen linear of layer l.
  std::pair<index, index> linear_shape(index l, int which) const {
    const auto L = static_cast<std::size_t>(l);
    switch (which) {
      case 0: case 1: case 2: return {attention_width[L], input_width[L]};  // query, key, value
      case 3: return {output_width[L], attention_width[L]};                 // attn_out
      case 4: return {intermediate_size, output_width[L]};                  // ffn_in
      default: return {output_width[L], intermediate_size};                 // ffn_out
    }
  }
};

}  // namespace peft

#endif  // PEFT_CORE_ENCODER_SHAPE_HPP
