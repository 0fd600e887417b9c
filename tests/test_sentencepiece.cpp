// SPDX-License-Identifier: Apache-2.0
// peft::sentencepiece_tokenizer (a Unigram tokenizer.json) against SentencePiece itself
// (Debian's python3-sentencepiece, on a model tests/reference/sentencepiece_ref.py trains from
// text) and @huggingface/tokenizers 0.2.0 on the same files, in XLM-R's layout and with
// SentencePiece's own ids.
#include "test_common.hpp"

#include <peft/text/hf_tokenizer.hpp>
#include <peft/text/sentencepiece.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace {

using ids_t = std::vector<std::int32_t>;
using Catch::Matchers::Contains;

const std::string& ref_dir() {
  static const std::string d = peft_test::reference_dir();
  return d;
}

bool have_reference() {
  const bool ok = std::filesystem::exists(ref_dir() + "/spm_ref.json");
  if (!ok) FAIL_CHECK("reference_sentencepiece output missing (python3-sentencepiece or node not found?)");
  return ok;
}

const nlohmann::json& reference() {
  static const nlohmann::json j = nlohmann::json::parse(peft_test::read_text(ref_dir() + "/spm_ref.json"));
  return j;
}

/// What Hugging Face's tokenizers give for a sentence, from the two references: SentencePiece's
/// ids, except where the file's pipeline itself differs from SentencePiece (a trailing space
/// kept as a final "▁", literal special tokens matched as added tokens), where tokenizers.js
/// runs the file's semantics. Where tokenizers.js differs only because it approximates the
/// character map by NFKC (U+200D), SentencePiece's real map is right.
ids_t expected(const nlohmann::json& s, const char* spm_key, const char* js_key) {
  const auto& why = s["js_difference"];
  if (why.is_array())
    for (const auto& w : why)
      if (w.get<std::string>().find("U+200D") == std::string::npos) return s[js_key].get<ids_t>();
  return s[spm_key].get<ids_t>();
}

}  // namespace

TEST_CASE("sentencepiece: SentencePiece's character map, piece by piece", "[sentencepiece][reference]") {
  if (!have_reference()) return;
  const auto tok_json = nlohmann::json::parse(peft_test::read_text(ref_dir() + "/spm_xlmr_tokenizer.json"));
  std::string blob;
  REQUIRE(peft::detail::base64_decode(tok_json["normalizer"]["normalizers"][0]["precompiled_charsmap"].get<std::string>(), blob));
  CHECK(blob.size() == reference()["spm"]["charsmap_bytes"].get<std::size_t>());
  const peft::precompiled_charsmap map(blob);
  const auto cases = nlohmann::json::parse(peft_test::read_text(ref_dir() + "/spm_charsmap_cases.json"))["cases"];
  REQUIRE(cases.size() > 40);
  for (const auto& c : cases) {
    INFO("case " << c["codepoints"].dump());
    CHECK(map.normalize(c["text"].get<std::string>()) == c["charsmap"].get<std::string>());
  }
  CHECK(map.normalize("\xEF\xBD\xB6\xEF\xBE\x9E") == "\xE3\x82\xAC");  // half-width ｶﾞ composes to ガ
  CHECK_THROWS_AS(peft::precompiled_charsmap(std::string("\x08\x00\x00\x00\x01", 5)), peft::invalid_argument);
}

TEST_CASE("sentencepiece: ids equal SentencePiece's and tokenizers.js's on a trained model", "[sentencepiece][reference]") {
  if (!have_reference()) return;
  const auto& ref = reference();
  const auto plain = peft::sentencepiece_tokenizer::from_tokenizer_json(ref_dir() + "/spm_plain_tokenizer.json");
  const auto xlmr = peft::sentencepiece_tokenizer::from_tokenizer_json(ref_dir() + "/spm_xlmr_tokenizer.json");
  CHECK(plain.vocab_size() == 2000);
  CHECK(plain.unk_id() == 0);
  CHECK(xlmr.vocab_size() == 2002);
  CHECK(xlmr.cls_id() == 0);
  CHECK(xlmr.pad_id() == 1);
  CHECK(xlmr.sep_id() == 2);
  CHECK(xlmr.unk_id() == 3);
  CHECK(xlmr.mask_id() == 2001);
  CHECK(xlmr.kind() == "sentencepiece");
  const auto& sentences = ref["sentences"];
  REQUIRE(sentences.size() >= 70);
  std::size_t with_unknown = 0, exact_spm = 0;
  for (const auto& s : sentences) {
    const std::string text = s["text"].get<std::string>();
    INFO("sentence " << nlohmann::json(text).dump());
    const ids_t ids = plain.piece_ids(text);
    CHECK(ids == expected(s, "spm_ids", "js_plain_ids"));
    CHECK(xlmr.encode(text, 1 << 20) == expected(s, "xlmr_ids", "js_xlmr_ids"));
    if (ids == s["spm_ids"].get<ids_t>()) ++exact_spm;
    const bool unknown = std::find(ids.begin(), ids.end(), plain.unk_id()) != ids.end();
    with_unknown += unknown ? 1 : 0;
    // Decoding gives SentencePiece's text back where the ids are SentencePiece's (its
    // unknown piece decodes to " ⁇ ", ours to the piece itself).
    if (!unknown && s["js_difference"].is_null()) CHECK(plain.decode(ids) == s["decoded"].get<std::string>());
  }
  CHECK(with_unknown > 0);  // characters the model never saw occur
  CHECK(exact_spm >= 65);
  for (const auto& p : ref["pairs"]) {
    INFO("pair " << p.dump().substr(0, 100));
    const auto want = p["js_agrees"].get<bool>() ? p["xlmr_pair_ids"].get<ids_t>() : p["js_xlmr_pair_ids"].get<ids_t>();
    ids_t seg;
    CHECK(xlmr.encode_pair(p["a"].get<std::string>(), p["b"].get<std::string>(), 1 << 20, &seg) == want);
    CHECK(seg == ids_t(seg.size(), 0));
  }
  // load_hf_tokenizer picks this class for a Unigram tokenizer.json.
  const std::string dir = peft_test::scratch_dir("spm_folder");
  std::filesystem::copy_file(ref_dir() + "/spm_xlmr_tokenizer.json", dir + "/tokenizer.json");
  const auto any = peft::load_hf_tokenizer(dir);
  CHECK(any->kind() == "sentencepiece");
  CHECK(any->encode("Hello world", 16) == xlmr.encode("Hello world", 16));
}

TEST_CASE("sentencepiece: normalisers, Metaspace and Viterbi on a hand-written vocabulary", "[sentencepiece]") {
  peft::sentencepiece_options o;
  o.unk_id = 0;
  const std::string M = "\xE2\x96\x81";  // ▁
  const std::vector<std::pair<std::string, double>> pieces = {
      {"<unk>", 0}, {M, -2}, {M + "ab", -1}, {"a", -3}, {"b", -3}, {"c", -3}, {"ab", -2.5}, {M + "a", -2}, {"bc", -1}};
  const peft::sentencepiece_tokenizer t(pieces, o);
  // "▁abc": ▁ab + c scores -4, ▁a + bc scores -3: the best path wins.
  CHECK(t.tokenize("abc") == std::vector<std::string>{M + "a", "bc"});
  // Unknown characters fuse into one unknown piece.
  CHECK(t.piece_ids("a\xC3\xA9\xC3\xA9") == ids_t{7, 0});
  // Words split before each "▁"; a run of spaces keeps its "▁"s.
  CHECK(t.tokenize("ab  ab") == std::vector<std::string>{M + "ab", M, M + "ab"});
  CHECK(t.decode(t.piece_ids("ab ab")) == "ab ab");
  // No unknown piece: an uncovered character is refused by name.
  peft::sentencepiece_options none;
  CHECK_THROWS_WITH(peft::sentencepiece_tokenizer(pieces, none).piece_ids("xyz"),
                    Contains("a vocabulary piece for \"x\" expected"));
  CHECK_THROWS_AS(t.piece_ids("bad \xff"), peft::invalid_argument);
  // tokenizer.json normalisers and refusals.
  const std::string dir = peft_test::scratch_dir("spm_json");
  nlohmann::json j = {{"model", {{"type", "Unigram"}, {"unk_id", 0}, {"vocab", nlohmann::json::array()}}},
                      {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", M}, {"add_prefix_space", true}}}};
  for (const auto& p : pieces) j["model"]["vocab"].push_back({p.first, p.second});
  auto load = [&](const nlohmann::json& x) {
    std::ofstream(dir + "/tokenizer.json") << x.dump();
    return peft::sentencepiece_tokenizer::from_tokenizer_json(dir + "/tokenizer.json");
  };
  auto with = [&](const nlohmann::json& normalizer) {
    auto x = j;
    x["normalizer"] = normalizer;
    return load(x);
  };
  CHECK(with({{"type", "Sequence"},
              {"normalizers",
               {{{"type", "Replace"}, {"pattern", {{"String", "``"}}}, {"content", "\""}},
                {{"type", "NFKD"}},
                {{"type", "StripAccents"}},
                {{"type", "Lowercase"}},
                {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}},
                {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}}}})
            .normalize("  ``Ab\xC3\xA9   C  ") == "\"abe c");
  auto refused = [&](const nlohmann::json& x, const std::string& what) {
    std::ofstream(dir + "/tokenizer.json") << x.dump();
    CHECK_THAT(peft_test::message_of<peft::io_error>(
                   [&] { peft::sentencepiece_tokenizer::from_tokenizer_json(dir + "/tokenizer.json"); }),
               Contains(what));
  };
  auto edit = [&](auto&& f) {
    auto x = j;
    f(x);
    return x;
  };
  refused(edit([](auto& x) { x["normalizer"] = {{"type", "BertNormalizer"}}; }), "normalizer.type");
  refused(edit([](auto& x) {
            x["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", "[a-z]+"}}}, {"content", ""}};
          }),
          "normalizer.pattern.Regex");
  refused(edit([](auto& x) { x["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "@@@"}}; }),
          "precompiled_charsmap");
  refused(edit([](auto& x) { x["model"]["byte_fallback"] = true; }), "model.byte_fallback");
  refused(edit([](auto& x) { x["pre_tokenizer"] = {{"type", "Whitespace"}}; }), "pre_tokenizer.type");
  refused(edit([](auto& x) { x["model"]["vocab"].push_back("bad"); }), "model.vocab[9]");
  refused(edit([](auto& x) { x["model"]["unk_id"] = 99; }), "unk_id expected < 9");
}

#ifndef PEFT_WITH_SENTENCEPIECE
// Without libsentencepiece the .model reader (test_sentencepiece_model) is not compiled, and
// load_hf_tokenizer says so, and how to build it, instead of "no tokenizer".
TEST_CASE("sentencepiece: a .model folder in a build without libsentencepiece is a clear io_error", "[sentencepiece]") {
  const std::string dir = peft_test::scratch_dir("spm_model_stub");
  std::ofstream(dir + "/sentencepiece.bpe.model") << "not read";
  CHECK_THROWS_MSG(peft::load_hf_tokenizer(dir), peft::io_error,
                   Contains("sentencepiece.bpe.model") && Contains("built without") &&
                       Contains("libsentencepiece-dev") && Contains("-DPEFT_SENTENCEPIECE=ON") &&
                       Contains("peft_sentencepiece_usage") && Contains("tokenizer.json"));
}
#endif
