// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the real bert-base-uncased WordPiece tokenizer on fuzzed text. The input is
// the first text, optionally followed by "\n---\n" and a second text for encode_pair (without
// one, the fixed sample sentence is the second text). Invalid UTF-8 must be rejected with a
// peft::error; everything else must encode within max_length, framed by [CLS] / [SEP].
#include <peft/text/wordpiece.hpp>

#include "fuzz_common.hpp"
#include "fuzz_text_common.hpp"

PEFT_FUZZ_TARGET(wordpiece_text) {
  const auto& tok = peft_fuzz::bert_tokenizer();
  const auto parts = peft_fuzz::split_parts(data, size, 2);
  const std::string_view b = parts.size() > 1 ? parts[1] : peft_fuzz::sample_text_b;
  peft_fuzz::expect_only_peft_errors([&] { peft_fuzz::exercise_tokenizer(tok, parts[0], b, true); });
  peft_fuzz::expect_only_peft_errors([&] { peft_fuzz::exercise_tokenizer(tok, b, parts[0], true); });
}
