// SPDX-License-Identifier: Apache-2.0
// Fuzz target: wordpiece_tokenizer::from_vocab_txt on vocab.txt bytes (cased and uncased),
// then encode / encode_pair / tokenize of fixed text with the tokenizer it built.
#include <peft/text/wordpiece.hpp>

#include <string>

#include "fuzz_common.hpp"
#include "fuzz_text_common.hpp"

PEFT_FUZZ_TARGET(wordpiece_vocab) {
  const std::string path = peft_fuzz::write_scratch("vocab.txt", data, size);
  for (const bool lowercase : {true, false}) {
    peft_fuzz::expect_only_peft_errors([&] {
      const auto tok = peft::wordpiece_tokenizer::from_vocab_txt(path, lowercase);
      peft_fuzz::exercise_tokenizer(tok, peft_fuzz::sample_text, peft_fuzz::sample_text_b, true);
    });
  }
}
