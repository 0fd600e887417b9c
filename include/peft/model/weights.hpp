// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_WEIGHTS_HPP
#define PEFT_MODEL_WEIGHTS_HPP

/// @file weights.hpp
/// The frozen parameters of an encoder. One `encoder_weights` object is loaded once and
/// shared, as `std::shared_ptr<const encoder_weights<Scalar>>`, by every task that uses it.
/// Fields an architecture does not have stay empty (size 0).

#include <memory>
#include <utility>
#include <vector>

#include "../core/bf16.hpp"
#include "../core/types.hpp"
#include "config.hpp"

namespace peft {

/// `y = x W^T + b`, with `W` stored `[out x in]` as Hugging Face stores it. `W` is held in
/// `weight`, or, in a backbone converted by `to_bf16` (layer linears only), in `weight_bf16`
/// with `weight` left empty.
template <typename Scalar>
struct linear_weights {
  matrix<Scalar> weight;    ///< [out x in]
  vector<Scalar> bias;      ///< [out]; may be empty for a bias-free projection
  bf16_matrix weight_bf16;  ///< [out x in] when the weight is stored in bf16 (then `weight` is empty)

  bool is_bf16() const noexcept { return !weight_bf16.empty(); }
  index in_features() const noexcept { return is_bf16() ? weight_bf16.cols() : weight.cols(); }
  index out_features() const noexcept { return is_bf16() ? weight_bf16.rows() : weight.rows(); }
  bool empty() const noexcept { return weight.size() == 0 && weight_bf16.empty(); }
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
  /// ELECTRA's `embeddings_project`, ALBERT's `embedding_hidden_mapping_in`: embedding_size ->
  /// hidden_size after the embedding LayerNorm and dropout; empty when the widths agree.
  linear_weights<Scalar> embedding_projection;
  /// MPNet: `[buckets x heads]`, a bias per relative-position bucket added to every layer's
  /// attention scores; empty for the other families.
  matrix<Scalar> relative_attention_bias;

  /// The distinct layers: `config.num_layers` of them, or fewer when layers share weights
  /// (ALBERT's layer groups: layer l runs `layers[l * layers.size() / num_layers]`).
  std::vector<layer_weights<Scalar>> layers;

  /// The weights layer @p l runs (see `layers`).
  const layer_weights<Scalar>& layer(index l) const noexcept {
    const auto n = static_cast<index>(layers.size());
    return layers[static_cast<std::size_t>(n == config.num_layers ? l : l * n / config.num_layers)];
  }
  /// Gives every layer its own copy of its weights (for a merge that changes one layer).
  void unshare_layers() {
    if (static_cast<index>(layers.size()) == config.num_layers) return;
    std::vector<layer_weights<Scalar>> own;
    own.reserve(static_cast<std::size_t>(config.num_layers));
    for (index l = 0; l < config.num_layers; ++l) own.push_back(layer(l));
    layers = std::move(own);
  }
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
    auto lin = [](const linear_weights<Scalar>& l) { return l.weight.size() + l.weight_bf16.size() + l.bias.size(); };
    auto ln = [](const layer_norm_weights<Scalar>& l) { return l.gamma.size() + l.beta.size(); };
    n += ln(embedding_norm) + ln(final_norm) + lin(embedding_projection) + relative_attention_bias.size();
    for (const auto& L : layers)
      n += lin(L.query) + lin(L.key) + lin(L.value) + lin(L.attn_out) + lin(L.ffn_in) + lin(L.ffn_out) +
           ln(L.attn_norm) + ln(L.ffn_norm) + lin(L.residual_proj);
    n += lin(pooler) + lin(mlm_transform) + ln(mlm_norm) + mlm_bias.size() + lin(sentence_dense);
    return n;
  }

  /// Bytes held by the parameters (bf16 weights count 2 bytes a value).
  std::size_t bytes() const noexcept {
    index half = 0;  // values stored in bf16
    for (const auto& L : layers)
      for (const auto* l : {&L.query, &L.key, &L.value, &L.attn_out, &L.ffn_in, &L.ffn_out, &L.residual_proj})
        half += l->weight_bf16.size();
    return std::size_t(num_parameters() - half) * sizeof(Scalar) + std::size_t(half) * sizeof(bf16_bits);
  }

  /// Whether the layer linears are stored in bf16 (see `to_bf16`).
  bool is_bf16() const noexcept { return !layers.empty() && layers.front().query.is_bf16(); }
};

template <typename Scalar>
using shared_weights = std::shared_ptr<const encoder_weights<Scalar>>;

/// A copy of @p w whose layer linears (Q, K, V, attention output, both FFN matrices and a
/// residual projection) are rounded to bf16 and stored at half the memory; embeddings,
/// norms, biases and the checkpoint's heads stay in float. The encoder multiplies such
/// weights in bf16 with float accumulation (oneDNN with PEFT_DNNL); policies, heads and
/// optimizer state stay in float. A policy that rewrites a frozen weight (mask-tuning,
/// full fine-tuning) or a LoRA merge needs float weights and refuses a bf16 backbone.
/// @throws invalid_argument when @p w is already bf16
inline std::shared_ptr<const encoder_weights<float>> to_bf16(const encoder_weights<float>& w) {
  if (w.is_bf16()) throw invalid_argument("to_bf16: the weights are already bf16");
  auto out = std::make_shared<encoder_weights<float>>();
  out->config = w.config;
  out->word_embeddings = w.word_embeddings;
  out->position_embeddings = w.position_embeddings;
  out->token_type_embeddings = w.token_type_embeddings;
  out->embedding_norm = w.embedding_norm;
  out->embedding_projection = w.embedding_projection;
  out->relative_attention_bias = w.relative_attention_bias;
  out->final_norm = w.final_norm;
  out->pooler = w.pooler;
  out->mlm_transform = w.mlm_transform;
  out->mlm_norm = w.mlm_norm;
  out->mlm_bias = w.mlm_bias;
  out->sentence_dense = w.sentence_dense;
  out->layers.reserve(w.layers.size());
  for (const auto& L : w.layers) {
    layer_weights<float> N;
    N.attn_norm = L.attn_norm;
    N.ffn_norm = L.ffn_norm;
    const std::pair<linear_weights<float>*, const linear_weights<float>*> pairs[] = {
        {&N.query, &L.query},   {&N.key, &L.key},       {&N.value, &L.value},
        {&N.attn_out, &L.attn_out}, {&N.ffn_in, &L.ffn_in}, {&N.ffn_out, &L.ffn_out},
        {&N.residual_proj, &L.residual_proj}};
    for (const auto& [to, from] : pairs) {
      to->bias = from->bias;
      if (!from->empty()) to->weight_bf16 = bf16_matrix(from->weight);
    }
    out->layers.push_back(std::move(N));
  }
  return out;
}

/// `to_bf16` of shared weights.
inline std::shared_ptr<const encoder_weights<float>> to_bf16(const shared_weights<float>& w) {
  if (!w) throw invalid_argument("to_bf16: weights expected non-null, got null");
  return to_bf16(*w);
}

}  // namespace peft

#endif  // PEFT_MODEL_WEIGHTS_HPP
