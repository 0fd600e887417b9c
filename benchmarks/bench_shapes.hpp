// SPDX-License-Identifier: Apache-2.0
// The encoder shapes the C++ benchmarks time (bench_peft, bench_dist).
#ifndef PEFT_BENCHMARKS_BENCH_SHAPES_HPP
#define PEFT_BENCHMARKS_BENCH_SHAPES_HPP

#include <string>

#include <peft/peft.hpp>

namespace bench {

/// BERT-base (12 x 768, FFN 3072) or MiniLM (6 x 384, FFN 1536) shape, BERT vocabulary.
inline peft::encoder_config shape_of(const std::string& name) {
  peft::encoder_config c;
  c.model_type = "bert";
  c.vocab_size = 30522;
  c.max_positions = 512;
  c.type_vocab_size = 2;
  c.num_heads = 12;
  c.hidden_dropout = 0.1;
  c.attention_dropout = 0.1;
  c.hidden_act = peft::activation::gelu_erf;
  const bool base = name == "bert-base";
  c.hidden_size = base ? 768 : 384;
  c.embedding_size = c.hidden_size;
  c.num_layers = base ? 12 : 6;
  c.intermediate_size = base ? 3072 : 1536;
  return c;
}

}  // namespace bench

#endif  // PEFT_BENCHMARKS_BENCH_SHAPES_HPP
