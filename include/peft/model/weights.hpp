// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_WEIGHTS_HPP
#define PEFT_MODEL_WEIGHTS_HPP

/// @file weights.hpp
/// The frozen parameters of an encoder. One `encoder_weights` object is loaded once and
/// shared, as `std::shared_ptr<const encoder_weights<Scalar>>`, by every task that uses it.
/// Fields an architecture does not have stay empty (size 0).

#include <memory>
#include <vector>

#include "../core/types.hpp"
#include "config.hpp"

namespace peft {

/// `y = x W^T + b`, with `W` stored `[out x in]` as Hugging Face stores it.
template <typename Scalar>
struct linear_weights {
  matrix<Scalar> weight;  ///< [out x in]
  vector<Scalar> bias;    ///< [out]; may be empty for a bias-free projection

  index in_features() const noexcept { return weight.cols(); }
  index out_features() const noexcept { return weight.rows(); }
  bool empty() const noexcept { return weight.size() == 0; }
};

template <typename Scalar>
struct layer_norm_weights {
  vector<Scalar> gamma;
  vector<Scalar> beta;
  bool empty() const noexcept { return gamma.size() == 0; }
};

/// One Transformer layer. Widths may change inside a layer (USE-lite layer 0 reads 256 and
/// writes 512): Q/K/V are `[d_att x d_in]`, the attention output is `[d_out x d_att]`, and
/// `residual_proj` (`[d_out x d_in]`) carries the residual across the width change.
template <typename Scalar>
struct layer_weights {
  linear_weights<Scalar> query, key, value, attn_out;
  linear_weights<Scalar> ffn_in, ffn_out;
  /// Post-LN (BERT): applied to `a + x`. Pre-LN (USE-lite): applied to the sub-layer's input.
  layer_norm_weights<Scalar> attn_norm, ffn_norm;
  linear_weights<Scalar> residual_proj;  ///< empty unless d_in != d_out

  index input_width() const noexcept { return query.in_features(); }
  index attention_width() const noexcept { return query.out_features(); }
  index output_width() const noexcept { return attn_out.out_features(); }
};

template <typename Scalar>
struct encoder_weights {
  encoder_config config;

  matrix<Scalar> word_embeddings;        ///< [vocab x embedding_size]
  matrix<Scalar> position_embeddings;    ///< [max_positions x embedding_size]; empty for sinusoidal
  matrix<Scalar> token_type_embeddings;  ///< [type_vocab x embedding_size]; may be empty
  layer_norm_weights<Scalar> embedding_norm;  ///< BERT/RoBERTa only

  std::vector<layer_weights<Scalar>> layers;
  layer_norm_weights<Scalar> final_norm;  ///< pre-LN architectures that end with a norm

  // Heads that ship with the checkpoint (all frozen; a task copies what it trains).
  linear_weights<Scalar> pooler;          ///< BERT pooler: tanh(W h_cls + b)
  linear_weights<Scalar> mlm_transform;   ///< masked-LM head dense (H -> H), then GELU
  layer_norm_weights<Scalar> mlm_norm;    ///< masked-LM head LayerNorm
  vector<Scalar> mlm_bias;                ///< [vocab]; decoder weight is tied to word_embeddings
  linear_weights<Scalar> sentence_dense;  ///< USE-lite: tanh dense after mean pooling

  bool has_mlm_head() const noexcept { return !mlm_transform.empty(); }
  bool has_pooler() const noexcept { return !pooler.empty(); }

  /// Number of scalar parameters, counting the tied decoder once.
  index num_parameters() const noexcept {
    index n = word_embeddings.size() + position_embeddings.size() + token_type_embeddings.size();
    auto lin = [](const linear_weights<Scalar>& l) { return l.weight.size() + l.bias.size(); };
    auto ln = [](const layer_norm_weights<Scalar>& l) { return l.gamma.size() + l.beta.size(); };
    n += ln(embedding_norm) + ln(final_norm);
    for (const auto& L : layers)
      n += lin(L.query) + lin(L.key) + lin(L.value) + lin(L.attn_out) + lin(L.ffn_in) + lin(L.ffn_out) +
           ln(L.attn_norm) + ln(L.ffn_norm) + lin(L.residual_proj);
    n += lin(pooler) + lin(mlm_transform) + ln(mlm_norm) + mlm_bias.size() + lin(sentence_dense);
    return n;
  }
};

template <typename Scalar>
using shared_weights = std::shared_ptr<const encoder_weights<Scalar>>;

}  // namespace peft

#endif  // PEFT_MODEL_WEIGHTS_HPP
