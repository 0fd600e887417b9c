// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the real USE-lite unigram tokenizer on fuzzed text, with the model's length
// (128) and short limits. Invalid UTF-8 must be rejected with a peft::error.
#include <peft/text/unigram.hpp>

#include "fuzz_common.hpp"
#include "fuzz_text_common.hpp"

PEFT_FUZZ_TARGET(unigram_text) {
  const auto& tok = peft_fuzz::use_lite_tokenizer();
  const auto text = peft_fuzz::as_text(data, size);
  peft_fuzz::expect_only_peft_errors([&] {
    for (const peft::index max_length : {peft::index(128), peft::index(1), peft::index(3), peft::index(1) << 20})
      peft_fuzz::check_ids(tok.encode(text, max_length), tok.vocab_size(), max_length, "unigram encode");
  });
}
