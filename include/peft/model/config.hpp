// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_MODEL_CONFIG_HPP
#define PEFT_MODEL_CONFIG_HPP

/// @file config.hpp
/// Hyper-parameters of a frozen encoder, as read from `config.json` (BERT/RoBERTa) or
/// derived from a TF.js graph model (USE-lite).

#include <string>

#include "../core/types.hpp"

namespace peft {

/// Hugging Face `hidden_act` string to peft's enum; throws on anything else.
inline activation parse_activation(const std::string& s) {
  if (s == "gelu" || s == "gelu_python") return activation::gelu_erf;
  if (s == "gelu_new" || s == "gelu_pytorch_tanh" || s == "gelu_fast") return activation::gelu_tanh;
  if (s == "relu") return activation::relu;
  throw invalid_argument("parse_activation: hidden_act expected one of gelu, gelu_new, relu, got '" + s +
                         "'");
}

/// The encoder architecture (arch.hpp) of a Hugging Face `model_type`: "roberta" for the
/// families with RoBERTa's padding-offset positions (roberta, xlm-roberta, mpnet), "bert" for
/// the other BERT-family encoders (bert, distilbert, electra, albert), "use_lite" for USE-lite;
/// "" when peft does not know the type.
inline std::string arch_of_model_type(const std::string& model_type) {
  if (model_type == "roberta" || model_type == "xlm-roberta" || model_type == "mpnet") return "roberta";
  if (model_type == "bert" || model_type == "distilbert" || model_type == "electra" || model_type == "albert")
    return "bert";
  if (model_type == "use_lite") return "use_lite";
  return "";
}

struct encoder_config {
  /// "bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert", "mpnet" or "use_lite"
  std::string model_type = "bert";
  index vocab_size = 0;
  index hidden_size = 0;        ///< width of the residual stream after the first layer
  index embedding_size = 0;     ///< width of the embedding table (== hidden_size for BERT)
  index num_layers = 0;
  index num_heads = 0;
  index intermediate_size = 0;  ///< FFN inner width
  index max_positions = 0;      ///< rows of the position table (BERT) or the longest input (USE-lite)
  index type_vocab_size = 0;    ///< 0 when the model has no segment embeddings
  index pad_token_id = 0;
  double layer_norm_eps = 1e-12;
  double hidden_dropout = 0.1;
  double attention_dropout = 0.1;
  activation hidden_act = activation::gelu_erf;
  /// ALBERT: the number of distinct layers (layer groups) the layers share; 0 or
  /// num_layers when every layer has its own weights.
  index layer_groups = 0;
  /// MPNet's relative position buckets (0: no relative attention bias) and the distance
  /// beyond which buckets stop growing.
  index relative_attention_buckets = 0;
  index relative_attention_max_distance = 128;

  /// The masked-LM head's activation: GELU for the RoBERTa-style heads (RoBERTa, XLM-R,
  /// MPNet), the layers' activation for the others (BERT, DistilBERT, ALBERT).
  activation mlm_activation() const noexcept {
    return arch_of_model_type(model_type) == "roberta" ? activation::gelu_erf : hidden_act;
  }

  /// Whether the attention sub-layer's output goes through the hidden dropout before its
  /// residual sum: every family but DistilBERT, whose TransformerBlock adds out_lin's output
  /// to its input undropped (its FFN output is dropped as the others').
  bool attention_output_dropout() const noexcept { return model_type != "distilbert"; }

  /// Longest sequence the encoder accepts (RoBERTa loses pad_token_id + 1 positions).
  index max_sequence_length() const noexcept {
    return arch_of_model_type(model_type) == "roberta" ? max_positions - pad_token_id - 1 : max_positions;
  }
};

}  // namespace peft

#endif  // PEFT_MODEL_CONFIG_HPP
