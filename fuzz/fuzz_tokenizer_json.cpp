// SPDX-License-Identifier: Apache-2.0
// Fuzz target: wordpiece_tokenizer::from_tokenizer_json on tokenizer.json bytes, then
// encode / encode_pair / tokenize of fixed text with the tokenizer it built.
#include <peft/text/wordpiece.hpp>

#include <string>

#include "fuzz_common.hpp"
#include "fuzz_text_common.hpp"

PEFT_FUZZ_TARGET(tokenizer_json) {
  const std::string path = peft_fuzz::write_scratch("tokenizer.json", data, size);
  peft_fuzz::expect_only_peft_errors([&] {
    const auto tok = peft::wordpiece_tokenizer::from_tokenizer_json(path);
    peft_fuzz::exercise_wordpiece(tok, peft_fuzz::sample_text, peft_fuzz::sample_text_b);
  });
}
