// SPDX-License-Identifier: Apache-2.0
// Fuzz target: load_hf_encoder on a fuzzed model.safetensors next to a fixed, valid tiny
// config.json (2 layers, hidden 4, vocab 8): key prefixes, layer numbers, head completeness,
// shapes, dtypes, non-finite values and the tied-decoder check.
#include <peft/io/hf_checkpoint.hpp>

#include <filesystem>
#include <string>

#include "fuzz_common.hpp"
#include "fuzz_models.hpp"

PEFT_FUZZ_TARGET(hf_encoder) {
  namespace fs = std::filesystem;
  static const fs::path dir = [] {
    const fs::path d = peft_fuzz::fresh_scratch_dir("hf_encoder");
    fs::copy_file(fs::path(peft_fuzz::tiny_checkpoint_dir()) / "config.json", d / "config.json");
    return d;
  }();
  peft_fuzz::write_bytes(dir / "model.safetensors", data, size);
  const peft::encoder_config c = peft_fuzz::tiny_bert_config();
  peft_fuzz::expect_only_peft_errors([&] {
    const auto w = peft::load_hf_encoder<float>(dir.string());
    peft_fuzz::check(w->word_embeddings.rows() == c.vocab_size && w->word_embeddings.cols() == c.hidden_size,
                     "load_hf_encoder: word embeddings do not have the configured shape");
    peft_fuzz::check(static_cast<peft::index>(w->layers.size()) == c.num_layers,
                     "load_hf_encoder: layer count differs from the config");
    for (const auto& L : w->layers)
      peft_fuzz::check(L.query.weight.rows() == c.hidden_size && L.ffn_in.weight.rows() == c.intermediate_size,
                       "load_hf_encoder: a layer does not have the configured shape");
  });
  peft_fuzz::expect_only_peft_errors([&] { (void)peft::load_hf_encoder<double>(dir.string()); });
}
