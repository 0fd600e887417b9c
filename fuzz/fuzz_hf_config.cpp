// SPDX-License-Identifier: Apache-2.0
// Fuzz target: read_hf_config on config.json bytes, then load_hf_encoder with that config
// next to a valid tiny model.safetensors (so configs that match it load completely, and
// configs that declare another shape are checked against real tensors).
#include <peft/io/hf_checkpoint.hpp>

#include <filesystem>
#include <string>

#include "fuzz_common.hpp"
#include "fuzz_models.hpp"

PEFT_FUZZ_TARGET(hf_config) {
  namespace fs = std::filesystem;
  static const fs::path dir = [] {
    const fs::path d = peft_fuzz::fresh_scratch_dir("hf_config");
    fs::copy_file(fs::path(peft_fuzz::tiny_checkpoint_dir()) / "model.safetensors", d / "model.safetensors");
    return d;
  }();
  const std::string config = (dir / "config.json").string();
  peft_fuzz::write_bytes(config, data, size);
  peft_fuzz::expect_only_peft_errors([&] {
    const peft::encoder_config c = peft::read_hf_config(config);
    peft_fuzz::check(c.vocab_size >= 1 && c.hidden_size >= 1 && c.num_layers >= 1 && c.num_heads >= 1 &&
                         c.intermediate_size >= 1 && c.max_positions >= 1,
                     "read_hf_config accepted a non-positive size");
    peft_fuzz::check(c.hidden_size % c.num_heads == 0, "read_hf_config accepted hidden_size % num_heads != 0");
    peft_fuzz::check(c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size, "read_hf_config accepted a bad pad_token_id");
    const auto w = peft::load_hf_encoder<float>(dir.string());
    peft_fuzz::check(w->word_embeddings.rows() == c.vocab_size && w->word_embeddings.cols() == c.hidden_size,
                     "load_hf_encoder: word embeddings do not have the configured shape");
    peft_fuzz::check(static_cast<peft::index>(w->layers.size()) == c.num_layers,
                     "load_hf_encoder: layer count differs from the config");
  });
}
