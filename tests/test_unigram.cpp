// SPDX-License-Identifier: Apache-2.0
// peft::unigram_tokenizer: Viterbi logic on a tiny hand-written vocabulary, then exact parity
// with the USE-lite runtime tokenizer (@energetic-ai/embeddings 0.2.0) on the real vocab.json.
#include "test_common.hpp"

#include <peft/text/unigram.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>

namespace {

using ids_t = std::vector<std::int32_t>;

// Ids:            0         1       2        3     4     5     6       7        8    9    10       11    12
// 13 Pieces:         unknown   <s>     </s>     x1    x2    x3    ▁a      ▁ab      b    c    ▁        bc ▁q q
std::vector<peft::unigram_piece> tiny_pieces() {
  return {{"\xEF\xBF\xBD", 0},
          {"<s>", 0},
          {"</s>", 0},
          {"x1", 0},
          {"x2", 0},
          {"x3", 0},
          {"\xE2\x96\x81"
           "a",
           -1.0},
          {"\xE2\x96\x81"
           "ab",
           -2.5},
          {"b", -1.0},
          {"c", -1.0},
          {"\xE2\x96\x81", -3.0},
          {"bc", -1.5},
          {"\xE2\x96\x81"
           "q",
           0.0},
          {"q", -5.0}};
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}


std::string vocab_path() { return peft_test::use_lite_dir() + "/vocab.json"; }

}  // namespace

TEST_CASE("unigram: Viterbi on a tiny vocabulary", "[unigram]") {
  const peft::unigram_tokenizer tok(tiny_pieces());
  CHECK(tok.vocab_size() == 14);
  CHECK(tok.reserved() == 6);
  CHECK(tok.encode("").empty());
  // "▁ab": ▁a (-1) + b (-1) = -2 beats ▁ab (-2.5).
  CHECK(tok.encode("ab") == ids_t{6, 8});
  // "▁abc": ▁a + bc = -2.5 beats ▁a + b + c = -3.
  CHECK(tok.encode("abc") == ids_t{6, 11});
  // Unknown characters become id 0, and runs of them merge into one.
  CHECK(tok.encode("a#$%") == ids_t{6, 0});
  CHECK(tok.encode("a#b") == ids_t{6, 0, 8});
  // Spaces become ▁ (each one); NFKC folds full-width letters first.
  CHECK(tok.encode("a a") == ids_t{6, 6});
  CHECK(tok.encode("a  a") == ids_t{6, 10, 6});
  CHECK(tok.encode("\xEF\xBD\x81\xEF\xBD\x82") == ids_t{6, 8});  // "ａｂ"
  // Tabs are not spaces: an unknown piece.
  CHECK(tok.encode("a\ta") == ids_t{6, 0});
  // The runtime's "0 means unset" rule: ▁q scores exactly 0, so the worse ▁ + q replaces it.
  CHECK(tok.encode("q") == ids_t{10, 13});
  // Truncation keeps the first ids.
  CHECK(tok.encode("a a a a", 2) == ids_t{6, 6});
  CHECK_THROWS_AS(tok.encode("a", 0), peft::invalid_argument);
  CHECK(tok.piece(8).piece == "b");
  CHECK_THROWS_AS(tok.piece(14), peft::invalid_argument);
  CHECK_THROWS_AS(tok.piece(-1), peft::invalid_argument);
}

TEST_CASE("unigram: duplicates, reserved pieces and bad input", "[unigram]") {
  auto pieces = tiny_pieces();
  pieces.push_back({"b", -0.1});  // a later duplicate overrides the earlier "b"
  const peft::unigram_tokenizer tok(pieces);
  CHECK(tok.encode("ab") == ids_t{6, 14});
  // Reserved pieces are never matched, even if the text spells them.
  CHECK(tok.encode("<s>") == ids_t{10, 0});
  CHECK_THROWS_AS(peft::unigram_tokenizer(tiny_pieces(), 0), peft::invalid_argument);
  CHECK_THROWS_AS(peft::unigram_tokenizer(tiny_pieces(), 14), peft::invalid_argument);
  CHECK_THROWS_AS(peft::unigram_tokenizer({{"a", 0}, {"\xFF", -1}}, 1), peft::invalid_argument);
  const std::string bad = peft_test::message_of<peft::invalid_argument>([&] { tok.encode("ab\xE2\x96"); });
  CHECK(bad.find("unigram_tokenizer::encode") != std::string::npos);
  CHECK(bad.find("byte offset 2") != std::string::npos);
}

TEST_CASE("unigram: vocab.json files and their errors", "[unigram]") {
  const std::string dir = peft_test::scratch_dir("unigram_files");
  nlohmann::json j = nlohmann::json::array();
  for (const auto& p : tiny_pieces()) j.push_back({p.piece, p.score});
  j[12][1] = nullptr;  // a null score counts as 0, as in the runtime
  write_file(dir + "/vocab.json", j.dump());
  const auto tok = peft::unigram_tokenizer::from_vocab_json(dir + "/vocab.json");
  CHECK(tok.encode("abc q") == ids_t{6, 11, 12});
  CHECK(tok.encode("q") == ids_t{10, 13});

  CHECK_THROWS_AS(peft::unigram_tokenizer::from_vocab_json(dir + "/missing.json"), peft::io_error);
  write_file(dir + "/corrupt.json", j.dump().substr(0, 40));
  CHECK(peft_test::message_of<peft::io_error>([&] {
          peft::unigram_tokenizer::from_vocab_json(dir + "/corrupt.json");
        }).find("corrupt.json") != std::string::npos);
  auto k = j;
  k[7] = {"x", "not a number"};
  write_file(dir + "/entry.json", k.dump());
  CHECK(peft_test::message_of<peft::io_error>([&] {
          peft::unigram_tokenizer::from_vocab_json(dir + "/entry.json");
        }).find("entry 7") != std::string::npos);
  write_file(dir + "/object.json", "{\"a\": 1}");
  CHECK_THROWS_AS(peft::unigram_tokenizer::from_vocab_json(dir + "/object.json"), peft::io_error);
  write_file(dir + "/short.json", "[[\"a\", 0]]");
  CHECK_THROWS_AS(peft::unigram_tokenizer::from_vocab_json(dir + "/short.json"), peft::io_error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("unigram: the real USE-lite vocabulary", "[unigram][use_lite]") {
  if (!std::filesystem::exists(vocab_path())) {
    FAIL("USE-lite vocab.json missing (run scripts/fetch_assets)");
  }
  const auto tok = peft::unigram_tokenizer::from_vocab_json(vocab_path());
  CHECK(tok.vocab_size() == 8000);
  CHECK(tok.piece(9).piece == "\xE2\x96\x81the");
  CHECK(tok.encode("Hello world!") == ids_t{341, 4125, 311, 78});
  // ":30" scores +30 in vocab.json, so it wins wherever it fits.
  CHECK(tok.encode("10:30") == ids_t{320, 4177});

  // Throughput on a long input (no per-character allocation in the lattice).
  std::string text;
  for (int i = 0; i < 200; ++i) text += "The quick brown fox jumps over the lazy dog, naïve café 12:30! ";
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text, 1 << 30);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  INFO("unigram encode: " << text.size() << " bytes -> " << ids.size() << " ids in " << ms << " ms");
  CHECK(ids.size() > 128);
  CHECK(tok.encode(text).size() == 128);
  WARN("unigram encode throughput: " << text.size() << " bytes -> " << ids.size() << " ids in " << ms
                                     << " ms");
}

TEST_CASE("unigram: ids equal the USE-lite runtime tokenizer", "[unigram][reference]") {
  const std::string ref_path = peft_test::reference_dir() + "/tokenizers_ref.json";
  if (!std::filesystem::exists(ref_path) || !std::filesystem::exists(vocab_path())) {
    FAIL("reference_tokenizers output or USE-lite vocab.json missing");
  }
  const auto ref = nlohmann::json::parse(peft_test::read_text(ref_path));
  const auto tok = peft::unigram_tokenizer::from_vocab_json(vocab_path());
  std::size_t n = 0, long_inputs = 0;
  for (const auto& s : ref["unigram"]) {
    const std::string text = s["text"];
    const auto expected = s["ids"].get<ids_t>();
    INFO("text: " << text);
    CHECK(tok.encode(text, 1 << 30) == expected);
    // What the model sees: its ClipToMaxLength node keeps positions < 128.
    const ids_t clipped(
        expected.begin(),
        expected.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(expected.size(), 128)));
    CHECK(tok.encode(text) == clipped);
    if (expected.size() > 128) ++long_inputs;
    ++n;
  }
  CHECK(n >= 40);
  CHECK(long_inputs >= 1);
}
