// SPDX-License-Identifier: Apache-2.0
// peft::wordpiece_tokenizer: logic on a tiny hand-written vocabulary, then exact parity with
// @huggingface/tokenizers@0.2.0 on bert-base-uncased (both vocab.txt and tokenizer.json forms).
#include "test_common.hpp"

#include <peft/text/wordpiece.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>

namespace {

using ids_t = std::vector<std::int32_t>;

std::vector<std::string> tiny_vocab() {
  return {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",                                // 0-4
          "hello", "world", "##s",   "un",    "##aff",  "##able", "!",   ",",    ".",  // 5-13
          "a",     "##b",   "中",    "文",    "cafe",   "the",    "dog", "##gy", "'",
          "σοφος", "σοφ",   "##ια"};  // 14-25
}

peft::wordpiece_tokenizer tiny(bool lowercase = true) {
  peft::wordpiece_options o;
  o.lowercase = lowercase;
  return peft::wordpiece_tokenizer(tiny_vocab(), o);
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}


bool have_reference() {
  const bool ok = std::filesystem::exists(peft_test::reference_dir() + "/tokenizers_ref.json");
  if (!ok) FAIL_CHECK("reference_tokenizers fixture output missing (node not found?): parity not checked");
  return ok;
}

ids_t to_ids(const nlohmann::json& j) { return j.get<ids_t>(); }

}  // namespace

TEST_CASE("wordpiece: basic tokenisation and greedy longest match", "[wordpiece]") {
  const auto tok = tiny();
  CHECK(tok.vocab_size() == 26);
  CHECK(tok.tokenize("Hello, world!") == std::vector<std::string>{"hello", ",", "world", "!"});
  CHECK(tok.tokenize("unaffable") == std::vector<std::string>{"un", "##aff", "##able"});
  CHECK(tok.tokenize("worlds") == std::vector<std::string>{"world", "##s"});
  CHECK(tok.tokenize("ab") == std::vector<std::string>{"a", "##b"});
  // A word with any unmatchable rest is one [UNK], not a partial match.
  CHECK(tok.tokenize("hellox world") == std::vector<std::string>{"[UNK]", "world"});
  // Accents are stripped when lower-casing; CJK ideographs become words of their own.
  CHECK(tok.tokenize("CAFÉ") == std::vector<std::string>{"cafe"});
  CHECK(tok.tokenize("中文a") == std::vector<std::string>{"中", "文", "a"});
  // Whitespace runs, tabs, newlines and control characters.
  CHECK(tok.tokenize("  hello\t\tworld\n\r\n") == std::vector<std::string>{"hello", "world"});
  CHECK(tok.tokenize(std::string("hel\x00lo", 6)) == std::vector<std::string>{"hello"});
  CHECK(tok.tokenize("hel\u200blo") == std::vector<std::string>{"hello"});  // U+200B is Cf
  CHECK(tok.tokenize("").empty());
  CHECK(tok.tokenize(" \t ").empty());
  // Greek final sigma survives lower-casing and accent stripping.
  CHECK(tok.tokenize("ΣΟΦΟΣ") == std::vector<std::string>{"σοφος"});
  CHECK(tok.tokenize("ΣΟΦΊΑ") == std::vector<std::string>{"σοφ", "##ια"});
  // Punctuation is split off, including apostrophes.
  CHECK(tok.tokenize("the dog's") == std::vector<std::string>{"the", "dog", "'", "[UNK]"});
  CHECK(tok.tokenize("doggy.") == std::vector<std::string>{"dog", "##gy", "."});
}

TEST_CASE("wordpiece: cased tokenizer and word length limit", "[wordpiece]") {
  const auto cased = tiny(false);
  CHECK(cased.tokenize("Hello hello") == std::vector<std::string>{"[UNK]", "hello"});
  CHECK(cased.tokenize("café") == std::vector<std::string>{"[UNK]"});  // no accent stripping when cased

  std::vector<std::string> v = tiny_vocab();
  v.push_back(std::string(5, 'x'));
  v.push_back("##" + std::string(1, 'x'));
  peft::wordpiece_options o;
  o.max_input_chars_per_word = 5;
  const peft::wordpiece_tokenizer tok(v, o);
  CHECK(tok.tokenize("xxxxx") == std::vector<std::string>{"xxxxx"});
  CHECK(tok.tokenize("xxxxxx") == std::vector<std::string>{"[UNK]"});  // 6 > 5 code points
  o.max_input_chars_per_word = 0;
  CHECK_THROWS_AS(peft::wordpiece_tokenizer(v, o), peft::invalid_argument);
}

TEST_CASE("wordpiece: encode adds [CLS] and [SEP] and truncates", "[wordpiece]") {
  const auto tok = tiny();
  CHECK(tok.cls_id() == 2);
  CHECK(tok.sep_id() == 3);
  CHECK(tok.pad_id() == 0);
  CHECK(tok.mask_id() == 4);
  CHECK(tok.unk_id() == 1);
  CHECK(tok.encode("hello world!", 512) == ids_t{2, 5, 6, 11, 3});
  CHECK(tok.encode("hello world!", 4) == ids_t{2, 5, 6, 3});
  CHECK(tok.encode("hello world!", 2) == ids_t{2, 3});
  CHECK(tok.encode("", 8) == ids_t{2, 3});
  CHECK_THROWS_AS(tok.encode("hello", 1), peft::invalid_argument);
  // Special tokens written in the text map to their ids; lower-case or spaced ones do not.
  CHECK(tok.encode("hello [MASK]!", 16) == ids_t{2, 5, 4, 11, 3});
  CHECK(tok.encode("hello[MASK]world", 16) == ids_t{2, 5, 4, 6, 3});
  CHECK(tok.tokenize("[mask]") == std::vector<std::string>{"[UNK]", "[UNK]", "[UNK]"});  // "[" "mask" "]"
}

TEST_CASE("wordpiece: pair encoding, segments and longest-first truncation", "[wordpiece]") {
  const auto tok = tiny();
  std::vector<std::int32_t> seg;
  CHECK(tok.encode_pair("hello world", "the dog", 64, &seg) == ids_t{2, 5, 6, 3, 19, 20, 3});
  CHECK(seg == ids_t{0, 0, 0, 0, 1, 1, 1});
  // 4 + 2 pieces in a budget of 9 - 3 = 6: nothing cut. Budget 5: the longer loses one.
  CHECK(tok.encode_pair("hello world hello world", "the dog", 9, &seg) == ids_t{2, 5, 6, 5, 6, 3, 19, 20, 3});
  CHECK(tok.encode_pair("hello world hello world", "the dog", 8, &seg) == ids_t{2, 5, 6, 5, 3, 19, 20, 3});
  CHECK(seg == ids_t{0, 0, 0, 0, 0, 1, 1, 1});
  // Budget 3 < 2 * shorter: both cut, the longer gets the odd piece.
  CHECK(tok.encode_pair("hello world hello world", "the dog", 6, &seg) == ids_t{2, 5, 6, 3, 19, 3});
  CHECK(tok.encode_pair("the dog", "hello world hello world", 6, &seg) == ids_t{2, 19, 3, 5, 6, 3});
  CHECK(seg == ids_t{0, 0, 0, 1, 1, 1});
  CHECK(tok.encode_pair("a", "b", 3, &seg) == ids_t{2, 3, 3});
  CHECK_THROWS_AS(tok.encode_pair("a", "b", 2), peft::invalid_argument);

  using P = std::pair<std::size_t, std::size_t>;
  CHECK(peft::wordpiece_tokenizer::longest_first(3, 4, 10) == P{3, 4});
  CHECK(peft::wordpiece_tokenizer::longest_first(3, 40, 10) == P{3, 7});
  CHECK(peft::wordpiece_tokenizer::longest_first(40, 3, 10) == P{7, 3});
  CHECK(peft::wordpiece_tokenizer::longest_first(20, 20, 11) == P{5, 6});
  CHECK(peft::wordpiece_tokenizer::longest_first(20, 30, 11) == P{5, 6});
  CHECK(peft::wordpiece_tokenizer::longest_first(30, 20, 11) == P{6, 5});
  CHECK(peft::wordpiece_tokenizer::longest_first(30, 20, 0) == P{0, 0});
}

TEST_CASE("wordpiece: vocabulary look-ups and bad input", "[wordpiece]") {
  const auto tok = tiny();
  CHECK(tok.token_to_id("##able") == 10);
  CHECK(tok.contains("hello"));
  CHECK_FALSE(tok.contains("zebra"));
  CHECK(tok.id_to_token(5) == "hello");
  CHECK_THROWS_AS(tok.id_to_token(26), peft::invalid_argument);
  CHECK_THROWS_AS(tok.id_to_token(-1), peft::invalid_argument);
  CHECK_THROWS_AS(tok.token_to_id("zebra"), peft::invalid_argument);
  const std::string bad = peft_test::message_of<peft::invalid_argument>([&] { tok.encode("ok \xC3\x28 bad", 8); });
  CHECK(bad.find("wordpiece_tokenizer::encode") != std::string::npos);
  CHECK(bad.find("byte offset 3") != std::string::npos);
  CHECK_THROWS_AS(tok.tokenize("\xED\xA0\x80"), peft::invalid_argument);  // encoded surrogate
  CHECK_THROWS_AS(tok.tokenize("\xC0\xAF"), peft::invalid_argument);      // overlong '/'

  CHECK_THROWS_AS(peft::wordpiece_tokenizer({}), peft::invalid_argument);
  auto v = tiny_vocab();
  v.push_back("hello");
  CHECK_THROWS_AS(peft::wordpiece_tokenizer(v), peft::invalid_argument);
  v = tiny_vocab();
  v.erase(v.begin() + 4);  // no [MASK]
  const std::string missing = peft_test::message_of<peft::invalid_argument>([&] { peft::wordpiece_tokenizer t(v); });
  CHECK(missing.find("[MASK]") != std::string::npos);
}

TEST_CASE("wordpiece: vocab.txt and tokenizer.json files, and their errors", "[wordpiece]") {
  const std::string dir = peft_test::scratch_dir("wordpiece_files");
  std::string text;
  for (const auto& t : tiny_vocab()) text += t + "\r\n";
  write_file(dir + "/vocab.txt", text);
  const auto tok = peft::wordpiece_tokenizer::from_vocab_txt(dir + "/vocab.txt");
  CHECK(tok.encode("Hello [MASK] world!", 32) == ids_t{2, 5, 4, 6, 11, 3});
  const auto cased = peft::wordpiece_tokenizer::from_vocab_txt(dir + "/vocab.txt", false);
  CHECK(cased.tokenize("Hello") == std::vector<std::string>{"[UNK]"});

  CHECK_THROWS_AS(peft::wordpiece_tokenizer::from_vocab_txt(dir + "/missing.txt"), peft::io_error);
  write_file(dir + "/empty.txt", "");
  CHECK_THROWS_AS(peft::wordpiece_tokenizer::from_vocab_txt(dir + "/empty.txt"), peft::io_error);
  write_file(dir + "/dup.txt", text + "world\n");
  const std::string dup =
      peft_test::message_of<peft::io_error>([&] { peft::wordpiece_tokenizer::from_vocab_txt(dir + "/dup.txt"); });
  CHECK(dup.find("dup.txt line 27") != std::string::npos);
  CHECK(dup.find("first at line 7") != std::string::npos);
  write_file(dir + "/blank.txt", "[PAD]\n\n[UNK]\n");
  CHECK(peft_test::message_of<peft::io_error>([&] {
          peft::wordpiece_tokenizer::from_vocab_txt(dir + "/blank.txt");
        }).find("line 2") != std::string::npos);
  write_file(dir + "/nomask.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n");
  CHECK(peft_test::message_of<peft::io_error>([&] {
          peft::wordpiece_tokenizer::from_vocab_txt(dir + "/nomask.txt");
        }).find("[MASK]") != std::string::npos);
  write_file(dir + "/badutf8.txt", "[PAD]\n[UNK]\n\xFF\xFE\n");
  CHECK(peft_test::message_of<peft::io_error>([&] {
          peft::wordpiece_tokenizer::from_vocab_txt(dir + "/badutf8.txt");
        }).find("line 3") != std::string::npos);

  // tokenizer.json
  nlohmann::json vocab = nlohmann::json::object();
  const auto v = tiny_vocab();
  for (std::size_t i = 0; i < v.size(); ++i) vocab[v[i]] = i;
  nlohmann::json j = {
      {"model",
       {{"type", "WordPiece"},
        {"unk_token", "[UNK]"},
        {"continuing_subword_prefix", "##"},
        {"max_input_chars_per_word", 100},
        {"vocab", vocab}}},
      {"normalizer",
       {{"type", "BertNormalizer"},
        {"clean_text", true},
        {"handle_chinese_chars", true},
        {"strip_accents", nullptr},
        {"lowercase", false}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"added_tokens", nlohmann::json::array({{{"id", 4}, {"content", "[MASK]"}, {"special", true}}})}};
  write_file(dir + "/tokenizer.json", j.dump());
  const auto tj = peft::wordpiece_tokenizer::from_tokenizer_json(dir + "/tokenizer.json");
  CHECK_FALSE(tj.options().lowercase);
  CHECK(tj.encode("hello [MASK] World", 16) == ids_t{2, 5, 4, 1, 3});
  CHECK(tj.mask_id() == 4);

  CHECK_THROWS_AS(peft::wordpiece_tokenizer::from_tokenizer_json(dir + "/missing.json"), peft::io_error);
  write_file(dir + "/corrupt.json", j.dump().substr(0, 200));
  const std::string corrupt = peft_test::message_of<peft::io_error>(
      [&] { peft::wordpiece_tokenizer::from_tokenizer_json(dir + "/corrupt.json"); });
  CHECK(corrupt.find("corrupt.json") != std::string::npos);
  auto k = j;
  k["model"]["type"] = "BPE";
  write_file(dir + "/bpe.json", k.dump());
  CHECK_THROWS_AS(peft::wordpiece_tokenizer::from_tokenizer_json(dir + "/bpe.json"), peft::io_error);
  k = j;
  k["model"]["vocab"]["zebra"] = 3;  // two tokens with id 3
  write_file(dir + "/dupid.json", k.dump());
  CHECK_THROWS_AS(peft::wordpiece_tokenizer::from_tokenizer_json(dir + "/dupid.json"), peft::io_error);
  k = j;
  k["model"]["vocab"].erase("[SEP]");
  write_file(dir + "/nosep.json", k.dump());
  CHECK_THROWS_AS(peft::wordpiece_tokenizer::from_tokenizer_json(dir + "/nosep.json"), peft::io_error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("wordpiece: ids equal tokenizers.js on bert-base-uncased", "[wordpiece][reference]") {
  if (!have_reference()) return;
  const std::string ref_dir = peft_test::reference_dir();
  const auto ref = nlohmann::json::parse(peft_test::read_text(ref_dir + "/tokenizers_ref.json"));
  const auto from_txt = peft::wordpiece_tokenizer::from_vocab_txt(ref_dir + "/tokenizers_bert_vocab.txt");
  const auto from_json =
      peft::wordpiece_tokenizer::from_tokenizer_json(ref_dir + "/tokenizers_bert_tokenizer.json");
  for (const auto* tok : {&from_txt, &from_json}) {
    REQUIRE(tok->vocab_size() == 30522);
    CHECK(tok->cls_id() == 101);
    CHECK(tok->sep_id() == 102);
    CHECK(tok->pad_id() == 0);
    CHECK(tok->mask_id() == 103);
    CHECK(tok->unk_id() == 100);
    std::size_t n = 0;
    for (const auto& s : ref["wordpiece"]) {
      const std::string text = s["text"];
      INFO("text: " << text);
      CHECK(tok->tokenize(text) == s["tokens"].get<std::vector<std::string>>());
      CHECK(tok->encode(text, 100000) == to_ids(s["ids"]));
      ++n;
    }
    CHECK(n >= 40);
    for (const auto& p : ref["wordpiece_pairs"]) {
      const std::string a = p["a"], b = p["b"];
      INFO("pair: " << a << " | " << b);
      std::vector<std::int32_t> seg;
      CHECK(tok->encode_pair(a, b, 100000, &seg) == to_ids(p["ids"]));
      CHECK(seg == to_ids(p["segments"]));
    }
    for (const auto& t : ref["truncation"]) {
      const std::string a = t["a"];
      const auto max_length = t["max_length"].get<peft::index>();
      INFO("truncation: max_length " << max_length << ", a: " << a);
      if (t["b"].is_null()) {
        const auto ids = tok->encode(a, max_length);
        CHECK(ids == to_ids(t["ids"]));
        CHECK(static_cast<peft::index>(ids.size()) <= max_length);
      } else {
        std::vector<std::int32_t> seg;
        const auto ids = tok->encode_pair(a, t["b"].get<std::string>(), max_length, &seg);
        CHECK(ids == to_ids(t["ids"]));
        CHECK(seg == to_ids(t["segments"]));
        CHECK(static_cast<peft::index>(ids.size()) <= max_length);
      }
    }
  }
}

TEST_CASE("wordpiece: a RobertaProcessing post-processor gives MPNet's layout", "[wordpiece]") {
  // MPNet ships a WordPiece vocabulary with RoBERTa's special tokens and pair layout.
  nlohmann::json vocab = nlohmann::json::object();
  const std::vector<std::string> tokens = {"<s>", "<pad>", "</s>", "<unk>", "hello", "world", "##s", "<mask>"};
  for (std::size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  const nlohmann::json j = {
      {"model", {{"type", "WordPiece"}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", "##"}, {"vocab", vocab}}},
      {"normalizer", {{"type", "BertNormalizer"}, {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor", {{"type", "RobertaProcessing"}, {"sep", {"</s>", 2}}, {"cls", {"<s>", 0}}}},
      {"padding", {{"pad_token", "<pad>"}}}};
  peft::wordpiece_options o;
  o.unk_token = "<unk>";
  o.pad_token = "<pad>";
  o.mask_token = "<mask>";
  o.cls_token = "<s>";
  o.sep_token = "</s>";
  const std::string dir = peft_test::scratch_dir("wordpiece_mpnet");
  write_file(dir + "/tokenizer.json", j.dump());
  const peft::wordpiece_tokenizer t(tokens, [&] {
    auto x = o;
    x.layout = peft::special_layout::roberta(0, 2);
    return x;
  }());
  ids_t seg;
  CHECK(t.encode("Hello worlds", 16) == ids_t{0, 4, 5, 6, 2});
  CHECK(t.encode_pair("hello", "world", 16, &seg) == ids_t{0, 4, 2, 2, 5, 2});
  CHECK(seg == ids_t(6, 0));
  CHECK_FALSE(t.uses_token_types());
  CHECK(t.decode(t.encode("Hello worlds", 16)) == "hello worlds");
  // The same from the tokenizer.json: the post-processor's layout, RoBERTa's names for the roles.
  const auto f = peft::wordpiece_tokenizer::from_tokenizer_json(dir + "/tokenizer.json");
  CHECK(f.encode_pair("hello", "world", 16, &seg) == ids_t{0, 4, 2, 2, 5, 2});
  CHECK(f.mask_id() == 7);
  CHECK(f.pad_id() == 1);
}
