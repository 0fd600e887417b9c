// SPDX-License-Identifier: Apache-2.0
// Fuzz target: GPT-2's real byte-level BPE on fuzzed text. The input is the first text,
// optionally followed by "\n---\n" and a second text for encode_pair. Invalid UTF-8 must be
// rejected with a peft::error; valid text must encode within max_length and decode back to
// itself exactly, added tokens (<|endoftext|>) kept (byte-level BPE loses nothing).
#include <peft/text/bpe.hpp>

#include "fuzz_common.hpp"
#include "fuzz_text_common.hpp"

PEFT_FUZZ_TARGET(bpe_text) {
  const auto& tok = peft_fuzz::gpt2_tokenizer();
  const auto parts = peft_fuzz::split_parts(data, size, 2);
  const std::string_view b = parts.size() > 1 ? parts[1] : peft_fuzz::sample_text_b;
  peft_fuzz::expect_only_peft_errors([&] { peft_fuzz::exercise_tokenizer(tok, parts[0], b); });
  peft_fuzz::expect_only_peft_errors([&] {
    const auto ids = tok.piece_ids(parts[0]);
    peft_fuzz::check(tok.decode(ids, false) == parts[0], "bpe: decode(piece_ids(text)) differs from the text");
  });
}
