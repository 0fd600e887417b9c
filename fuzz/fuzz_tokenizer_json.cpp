// SPDX-License-Identifier: Apache-2.0
// Fuzz target: load_hf_tokenizer on a folder holding the fuzzed bytes as tokenizer.json (a
// WordPiece or byte-level BPE file, chosen by its model.type), then encode / encode_pair /
// tokenize / decode of fixed text with the tokenizer it built.
#include <peft/text/hf_tokenizer.hpp>

#include <filesystem>
#include <string>

#include "fuzz_common.hpp"
#include "fuzz_text_common.hpp"

PEFT_FUZZ_TARGET(tokenizer_json) {
  const std::string path = peft_fuzz::write_scratch("tokenizer.json", data, size);
  peft_fuzz::expect_only_peft_errors([&] {
    const auto tok = peft::load_hf_tokenizer(std::filesystem::path(path).parent_path().string());
    peft_fuzz::exercise_tokenizer(*tok, peft_fuzz::sample_text, peft_fuzz::sample_text_b);
  });
}
