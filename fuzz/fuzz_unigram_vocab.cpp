// SPDX-License-Identifier: Apache-2.0
// Fuzz target: unigram_tokenizer::from_vocab_json on vocab.json bytes (USE-lite format:
// an array of [piece, score]), then encode of fixed text with the tokenizer it built.
#include <peft/text/unigram.hpp>

#include <string>

#include "fuzz_common.hpp"
#include "fuzz_text_common.hpp"

PEFT_FUZZ_TARGET(unigram_vocab) {
  const std::string path = peft_fuzz::write_scratch("vocab.json", data, size);
  for (const peft::index reserved : {peft::index(6), peft::index(1)}) {
    peft_fuzz::expect_only_peft_errors([&] {
      const auto tok = peft::unigram_tokenizer::from_vocab_json(path, reserved);
      for (const peft::index max_length : {peft::index(1), peft::index(4), peft::index(128)})
        peft_fuzz::check_ids(tok.encode(peft_fuzz::sample_text, max_length), tok.vocab_size(), max_length,
                             "unigram encode");
      (void)tok.encode("");
      (void)tok.piece(0);
    });
  }
}
