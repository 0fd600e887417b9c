// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_FUZZ_FUZZ_MODELS_HPP
#define PEFT_FUZZ_FUZZ_MODELS_HPP

/// @file fuzz_models.hpp
/// Small, valid files the fuzz targets pair with the fuzzed one: a tiny BERT checkpoint folder
/// (config.json + model.safetensors, written once per process by peft's own writer) for the
/// hf_config and hf_encoder targets, and the encoder shape the adapter targets load into.

#include <peft/core/encoder_shape.hpp>
#include <peft/io/hf_checkpoint.hpp>
#include <peft/model/random_weights.hpp>

#include <filesystem>
#include <string>

#include "fuzz_common.hpp"

namespace peft_fuzz {

/// A 2-layer BERT with hidden size 4 and 8 tokens: the smallest shape that still has two
/// heads, two layers and segment embeddings, so its checkpoint stays about 2 KB.
inline peft::encoder_config tiny_bert_config() {
  peft::encoder_config c;
  c.model_type = "bert";
  c.vocab_size = 8;
  c.hidden_size = 4;
  c.embedding_size = 4;
  c.num_layers = 2;
  c.num_heads = 2;
  c.intermediate_size = 6;
  c.max_positions = 6;
  c.type_vocab_size = 2;
  c.pad_token_id = 0;
  return c;
}

/// Folder holding the tiny BERT checkpoint (written on first use).
inline const std::string& tiny_checkpoint_dir() {
  static const std::string dir = [] {
    const auto p = scratch::dir() / "tiny_bert_reference";
    std::error_code ec;
    std::filesystem::create_directories(p, ec);
    peft::save_hf_encoder(p.string(), *peft::random_encoder_weights<float>(tiny_bert_config(), 7));
    return p.string();
  }();
  return dir;
}

/// Shape of a 2-layer, hidden-16 BERT with 2 heads and FFN width 24 (the tests' small model),
/// for loading adapters; what `encoder<bert, float>::shape()` returns for it.
inline const peft::encoder_shape& small_shape() {
  static const peft::encoder_shape shape = [] {
    peft::encoder_shape s;
    s.model_type = "bert";
    s.num_layers = 2;
    s.num_heads = 2;
    s.embedding_size = s.hidden_size = 16;
    s.intermediate_size = 24;
    s.input_width = s.attention_width = s.output_width = {16, 16};
    // Embeddings (30 tokens, 16 positions, 2 segments, LayerNorm) and two layers.
    const peft::index H = 16, I = 24, layer = 4 * (H * H + H) + 2 * H + (I * H + I) + (H * I + H) + 2 * H;
    s.backbone_parameters = (30 + 16 + 2) * H + 2 * H + 2 * layer;
    return s;
  }();
  return shape;
}

}  // namespace peft_fuzz

#endif  // PEFT_FUZZ_FUZZ_MODELS_HPP
