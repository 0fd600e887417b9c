// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the prompt-template mini-language and verbalizer specs, over the real
// bert-base-uncased vocabulary. The input is up to three parts separated by "\n---\n":
//
//   template spec      e.g. *cls**sent_0*_It_was*mask*.*sep+*
//   verbalizer spec    e.g. 0=terrible,1=great   (also tried as verbalizer JSON)
//   sentence           optional; used as sentence 0 in addition to fixed sentences
//
// An accepted template is applied with several max_length values; its encodings must fit,
// keep exactly one mask at mask_position and have one segment id per token.
#include <peft/text/prompt.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "fuzz_text_common.hpp"

namespace {

void check_encoding(const peft::prompt_encoding& e, const peft::wordpiece_tokenizer& tok, peft::index max_length) {
  peft_fuzz::check_ids(e.ids, tok.vocab_size(), max_length, "prompt_template::apply");
  peft_fuzz::check(e.segments.size() == e.ids.size(), "prompt_template::apply: segments and ids differ in length");
  peft_fuzz::check(e.mask_position >= 0 && e.mask_position < static_cast<peft::index>(e.ids.size()) &&
                       e.ids[static_cast<std::size_t>(e.mask_position)] == tok.mask_id(),
                   "prompt_template::apply: mask_position does not hold the mask token");
  peft_fuzz::check(e.truncated >= 0, "prompt_template::apply: negative truncation count");
}

}  // namespace

PEFT_FUZZ_TARGET(prompt) {
  const auto& tok = peft_fuzz::bert_tokenizer();
  const auto parts = peft_fuzz::split_parts(data, size, 3);
  peft_fuzz::expect_only_peft_errors([&] {
    const peft::prompt_template t{std::string(parts[0])};
    (void)t.parts();
    std::vector<std::string_view> sentences{"The movie was great fun.", "A second, Longer sentence here!"};
    if (parts.size() > 2) sentences.insert(sentences.begin(), parts[2]);
    for (const peft::index max_length : {peft::index(1), peft::index(8), peft::index(12), peft::index(64)}) {
      peft_fuzz::expect_only_peft_errors([&] { check_encoding(t.apply(tok, sentences, max_length), tok, max_length); });
      peft_fuzz::expect_only_peft_errors(
          [&] { check_encoding(t.apply(tok, sentences[0], sentences[1], max_length), tok, max_length); });
    }
  });
  if (parts.size() < 2) return;
  const std::vector<std::string> labels{"0", "1", "neg", "pos"};
  for (std::size_t n = 1; n <= labels.size(); ++n) {
    const std::vector<std::string> these(labels.begin(), labels.begin() + static_cast<std::ptrdiff_t>(n));
    peft_fuzz::expect_only_peft_errors([&] {
      const auto v = peft::verbalizer::parse(tok, parts[1], these);
      peft_fuzz::check(v.size() == static_cast<peft::index>(n), "verbalizer::parse: word count differs from labels");
      peft_fuzz::check_ids(v.ids(), tok.vocab_size(), static_cast<peft::index>(n), "verbalizer ids");
      const auto back = peft::verbalizer::from_json(tok, v.to_json());
      peft_fuzz::check(back.ids() == v.ids(), "verbalizer to_json/from_json round trip changed the ids");
    });
  }
  const auto j = peft_fuzz::parse_json_quietly(parts[1]);
  if (!j.is_discarded()) peft_fuzz::expect_only_peft_errors([&] { (void)peft::verbalizer::from_json(tok, j); });
}
