// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_HF_NAMES_HPP
#define PEFT_CORE_HF_NAMES_HPP

/// @file hf_names.hpp
/// Where each family keeps an encoder layer's modules in a Hugging Face model: one table,
/// read by the checkpoint loader (tensor keys) and by the policies and adapter formats
/// (module paths such as `distilbert.transformer.layer.3.attention.q_lin`), so that the two
/// cannot drift apart.

#include <string>

#include "types.hpp"

namespace peft::detail {

/// The module names of one encoder layer of a family, below the model prefix.
struct hf_layer_names {
  const char* stem;    ///< before the layer number ("encoder.layer."; ALBERT: the group number)
  const char* suffix;  ///< after it ("."; ALBERT: ".albert_layers.0.")
  const char *q, *k, *v, *o, *ln1, *ffn_in, *ffn_out, *ln2;
};

/// The layer names of @p model_type; the BERT names for bert, roberta, xlm-roberta, electra
/// and use_lite (which has no Hugging Face port and borrows BERT's).
inline hf_layer_names hf_layer_names_of(const std::string& model_type) {
  if (model_type == "distilbert")
    return {"transformer.layer.", ".",          "attention.q_lin", "attention.k_lin", "attention.v_lin",
            "attention.out_lin", "sa_layer_norm", "ffn.lin1",       "ffn.lin2",        "output_layer_norm"};
  if (model_type == "albert")
    return {"encoder.albert_layer_groups.", ".albert_layers.0.", "attention.query", "attention.key",
            "attention.value", "attention.dense", "attention.LayerNorm", "ffn", "ffn_output",
            "full_layer_layer_norm"};
  if (model_type == "mpnet")
    return {"encoder.layer.", ".", "attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
            "attention.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"};
  return {"encoder.layer.", ".", "attention.self.query", "attention.self.key", "attention.self.value",
          "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense", "output.dense",
          "output.LayerNorm"};
}

/// The prefix of the encoder's modules in a …ForMaskedLM or …ForSequenceClassification model
/// of @p model_type ("bert.", "distilbert.", ...; XLM-R's classes keep RoBERTa's "roberta.").
inline std::string hf_model_prefix(const std::string& model_type) {
  return model_type == "xlm-roberta" ? std::string("roberta.") : model_type + ".";
}

/// The path of stored layer @p stored (ALBERT: a layer group) below the model prefix, with a
/// trailing dot: "encoder.layer.3.", "encoder.albert_layer_groups.0.albert_layers.0.".
inline std::string hf_layer_path(const hf_layer_names& n, index stored) {
  return std::string(n.stem) + std::to_string(stored) + n.suffix;
}

}  // namespace peft::detail

#endif  // PEFT_CORE_HF_NAMES_HPP
