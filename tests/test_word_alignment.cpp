// SPDX-License-Identifier: Apache-2.0
// peft word alignment: words -> rows for token classification (WordPiece, byte-level BPE and the
// USE-lite unigram tokenizer), labels on first pieces, predictions back onto words; QA windows
// over a context longer than one window, their targets and max-context flags, and best_answer
// recovering the context's own bytes. All expectations are worked out by hand below.
#include "test_common.hpp"

#include <peft/text/bpe.hpp>
#include <peft/text/unigram.hpp>
#include <peft/text/label_options.hpp>
#include <peft/text/word_alignment.hpp>
#include <peft/text/wordpiece.hpp>

#include <cmath>
#include <limits>

namespace {

using ids_t = std::vector<std::int32_t>;
using ints = std::vector<int>;
using strings = std::vector<std::string>;
using bools = std::vector<bool>;
using Catch::Matchers::Contains;

/// [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4; "Johanson" -> johan ##son; "Zürich" -> zurich
/// (lower-cased, accent stripped).
peft::wordpiece_tokenizer ner_wordpiece() {
  return peft::wordpiece_tokenizer(
      {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "johan", "##son", "lives", "in", "zurich"});
}

/// For the QA tests: "Zürich" -> zu ##rich, "See." -> see .
peft::wordpiece_tokenizer qa_wordpiece() {
  return peft::wordpiece_tokenizer({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",  // 0-4
                                    "der", "muller", "wohnt", "seit", "1990",      // 5-9
                                    "in", "zu", "##rich", "am", "see",             // 10-14
                                    ".", "wo", "?"});                              // 15-17
}

/// Byte-level form of a plain-ASCII token: ' ' -> "Ġ".
std::string bl(const std::string& s) {
  std::string out;
  for (char c : s)
    peft::unicode::append_utf8(out, peft::bpe_tokenizer::char_of_byte(static_cast<std::uint8_t>(c)));
  return out;
}

/// Ids 0-255 the byte symbols (so 'a' is 97 and "Ġ" 32), then <s>=256 <pad>=257 </s>=258
/// <mask>=259, "Ġa"=260 "Ġab"=261 "cd"=262 "Ġe"=263 "ab"=264; RoBERTa's layout. There is no
/// ("Ġ", "c") merge, so " cd" is "Ġ" + "cd".
peft::bpe_tokenizer roberta_bpe() {
  strings vocab;
  for (int b = 0; b < 256; ++b) vocab.push_back(bl(std::string(1, static_cast<char>(b))));
  for (const char* t : {"<s>", "<pad>", "</s>", "<mask>"}) vocab.push_back(t);
  for (const auto& t : {bl(" a"), bl(" ab"), std::string("cd"), bl(" e"), std::string("ab")})
    vocab.push_back(t);
  peft::bpe_options o;
  o.cls_token = "<s>";
  o.sep_token = "</s>";
  o.pad_token = "<pad>";
  o.mask_token = "<mask>";
  o.post = peft::special_layout::roberta(256, 258);
  std::vector<peft::added_token> added = {{"<s>", 256}, {"<pad>", 257}, {"</s>", 258}, {"<mask>", 259, true}};
  return peft::bpe_tokenizer(vocab, {{bl(" "), "a"}, {bl(" a"), "b"}, {"c", "d"}, {bl(" "), "e"}, {"a", "b"}},
                             o, added);
}

/// test_unigram.cpp's vocabulary: ▁a=6 ▁ab=7 b=8 c=9 ▁=10 bc=11 ▁q=12 q=13.
peft::unigram_tokenizer tiny_unigram() {
  const std::string u = "\xE2\x96\x81";
  return peft::unigram_tokenizer({{"\xEF\xBF\xBD", 0},
                                  {"<s>", 0},
                                  {"</s>", 0},
                                  {"x1", 0},
                                  {"x2", 0},
                                  {"x3", 0},
                                  {u + "a", -1.0},
                                  {u + "ab", -2.5},
                                  {"b", -1.0},
                                  {"c", -1.0},
                                  {u, -3.0},
                                  {"bc", -1.5},
                                  {u + "q", 0.0},
                                  {"q", -5.0}});
}

// The QA example: 46 bytes, "Müller" and "Zürich" hold a two-byte "ü" each, so the answer
// "Zürich" starts at byte 31 (character 30). Context pieces (doc positions):
//   0 der | 1 muller | 2 wohnt | 3 seit | 4 1990 | 5 in | 6 zu 7 ##rich | 8 am | 9 see 10 .
const std::string qa_context = "Der M\xC3\xBCller wohnt seit 1990 in Z\xC3\xBCrich am See.";
const std::string zurich = "Z\xC3\xBCrich";

peft::qa_example qa_sample() {
  peft::qa_example ex;
  ex.id = "q1";
  ex.question = "Wo wohnt M\xC3\xBCller?";  // wo wohnt muller ? -> cut to 3 pieces
  ex.context = qa_context;
  ex.answers = {{zurich, 31}};
  return ex;
}

}  // namespace

TEST_CASE("word alignment: WordPiece words, labels and predictions", "[word_alignment]") {
  const auto tok = ner_wordpiece();
  const strings words = {"Johanson", "lives", "in", "Z\xC3\xBCrich"};
  const auto e = peft::encode_words(tok, words, 16);
  CHECK(e.ids == ids_t{2, 5, 6, 7, 8, 9, 3});  // [CLS] johan ##son lives in zurich [SEP]
  CHECK(e.word_of_token == ints{-1, 0, 0, 1, 2, 3, -1});
  CHECK(e.segments == ids_t(7, 0));
  CHECK(e.words_kept == 4);
  // Same ids as encoding the sentence as one text.
  CHECK(e.ids == tok.encode("Johanson lives in Z\xC3\xBCrich", 16));

  // B-PER=1, O=0, B-LOC=3: only first pieces carry labels.
  CHECK(peft::align_word_labels(e, {1, 0, 0, 3}) == ints{-100, 1, -100, 0, 0, 3, -100});
  CHECK(peft::align_word_labels(e, {5, 6, 7, 8}) == ints{-100, 5, -100, 6, 7, 8, -100});

  // Predictions back: each word's first piece (the ##son prediction 9 is not used).
  CHECK(peft::word_predictions(e, {7, 1, 9, 0, 0, 3, 7}, 4, -1) == ints{1, 0, 0, 3});
  // Padded rows are fine.
  CHECK(peft::word_predictions(e, {7, 2, 9, 4, 5, 6, 7, 7, 7}, 4, -1) == ints{2, 4, 5, 6});
}

TEST_CASE("word alignment: truncation keeps whole words", "[word_alignment]") {
  const auto tok = ner_wordpiece();
  const strings words = {"Johanson", "lives", "in", "Z\xC3\xBCrich"};
  // Room for 3 pieces: Johanson (2) + lives (1).
  auto e = peft::encode_words(tok, words, 5);
  CHECK(e.ids == ids_t{2, 5, 6, 7, 3});
  CHECK(e.word_of_token == ints{-1, 0, 0, 1, -1});
  CHECK(e.words_kept == 2);
  CHECK(peft::align_word_labels(e, {1, 0, 0, 3}) == ints{-100, 1, -100, 0, -100});
  CHECK(peft::word_predictions(e, {0, 1, 2, 0, 0}, 4, 42) == ints{1, 0, 42, 42});
  // Room for exactly the first word.
  e = peft::encode_words(tok, words, 4);
  CHECK(e.ids == ids_t{2, 5, 6, 3});
  CHECK(e.words_kept == 1);
  // "in Johanson" with room for 2 pieces: Johanson is not split, the row stays short.
  e = peft::encode_words(tok, {"in", "Johanson"}, 4);
  CHECK(e.ids == ids_t{2, 8, 3});
  CHECK(e.word_of_token == ints{-1, 0, -1});
  CHECK(e.words_kept == 1);
  CHECK(peft::word_predictions(e, {0, 5, 0}, 2, -7) == ints{5, -7});
  // No words: only the special tokens.
  e = peft::encode_words(tok, {}, 3);
  CHECK(e.ids == ids_t{2, 3});
  CHECK(e.words_kept == 0);
  CHECK(peft::word_predictions(e, {0, 0}, 0, 1).empty());
}

TEST_CASE("word alignment: byte-level BPE words get a leading space", "[word_alignment]") {
  const auto tok = roberta_bpe();
  // "ab" -> Ġab; "cd" -> Ġ + cd (no Ġc merge); "e" -> Ġe. The first word too has its space,
  // unlike encode("ab cd e"), which gives "ab" without one.
  const auto e = peft::encode_words(tok, {"ab", "cd", "e"}, 10);
  CHECK(e.ids == ids_t{256, 261, 32, 262, 263, 258});
  CHECK(e.word_of_token == ints{-1, 0, 1, 1, 2, -1});
  CHECK(e.segments == ids_t(6, 0));
  CHECK(e.ids == tok.encode(" ab cd e", 10));
  CHECK(tok.encode("ab cd e", 10)[1] == 264);
  // The word "cd" starts with the lone space piece: that piece carries the label.
  CHECK(peft::align_word_labels(e, {1, 2, 3}) == ints{-100, 1, 2, -100, 3, -100});
  CHECK(peft::word_predictions(e, {0, 4, 5, 6, 7, 0}, 3, -1) == ints{4, 5, 7});
  // A word already starting with a space keeps just that one.
  CHECK(peft::encode_words(tok, {" ab"}, 10).ids == ids_t{256, 261, 258});
  // Truncation: room for 3 pieces keeps "ab" and "cd", never half of "cd".
  CHECK(peft::encode_words(tok, {"ab", "cd", "e"}, 5).ids == ids_t{256, 261, 32, 262, 258});
  const auto cut = peft::encode_words(tok, {"ab", "cd", "e"}, 4);
  CHECK(cut.ids == ids_t{256, 261, 258});
  CHECK(cut.words_kept == 1);
}

TEST_CASE("word alignment: unigram words without special tokens", "[word_alignment]") {
  const auto tok = tiny_unigram();
  // Each word is encoded alone, so each starts with "▁": "ab" -> ▁a b, "a" -> ▁a, "bc" -> ▁ bc.
  const auto e = peft::encode_words(tok, {"ab", "a", "bc"}, 128);
  CHECK(e.ids == ids_t{6, 8, 6, 10, 11});
  CHECK(e.ids == tok.encode("ab a bc"));
  CHECK(e.word_of_token == ints{0, 0, 1, 2, 2});
  CHECK(e.segments == ids_t(5, 0));
  CHECK(e.words_kept == 3);
  CHECK(peft::align_word_labels(e, {4, 5, 6}) == ints{4, -100, 5, 6, -100});
  CHECK(peft::word_predictions(e, {1, 2, 3, 4, 5}, 3, 0) == ints{1, 3, 4});
  const auto cut = peft::encode_words(tok, {"ab", "a", "bc"}, 4);
  CHECK(cut.ids == ids_t{6, 8, 6});
  CHECK(cut.word_of_token == ints{0, 0, 1});
  CHECK(cut.words_kept == 2);
  CHECK(peft::word_predictions(cut, {1, 2, 3}, 3, 9) == ints{1, 3, 9});
}

TEST_CASE("word alignment: bad input", "[word_alignment]") {
  const auto wp = ner_wordpiece();
  // Johanson needs 2 pieces + 2 special tokens.
  CHECK_THROWS_MSG(
      peft::encode_words(wp, {"Johanson", "lives"}, 3), peft::invalid_argument,
      Contains("max_length expected >= 4") && Contains("'Johanson' (word 0)") && Contains("got 3"));
  CHECK_THROWS_MSG(peft::encode_words(wp, {}, 2), peft::invalid_argument,
                   Contains("max_length expected >= 3"));
  // An empty word, and one of control characters only (WordPiece drops them).
  CHECK_THROWS_MSG(peft::encode_words(wp, {"in", "lives", ""}, 16), peft::invalid_argument,
                   Contains("no pieces") && Contains("'' (word 2)"));
  CHECK_THROWS_MSG(peft::encode_words(wp, {"in", "\x01"}, 16), peft::invalid_argument,
                   Contains("no pieces") && Contains("(word 1)"));
  CHECK_THROWS_MSG(peft::encode_words(roberta_bpe(), {"ab", ""}, 16), peft::invalid_argument,
                   Contains("no pieces") && Contains("(word 1)"));
  const auto ug = tiny_unigram();
  CHECK_THROWS_MSG(peft::encode_words(ug, {"a", ""}, 16), peft::invalid_argument, Contains("(word 1)"));
  CHECK_THROWS_MSG(peft::encode_words(ug, {"ab"}, 1), peft::invalid_argument,
                   Contains("max_length expected >= 2") && Contains("'ab' (word 0)"));
  CHECK_THROWS_AS(peft::encode_words(wp, {"\xFF"}, 16), peft::invalid_argument);

  const auto e = peft::encode_words(wp, {"Johanson", "lives"}, 16);
  CHECK_THROWS_MSG(peft::align_word_labels(e, {1}), peft::invalid_argument,
                   Contains("word labels expected >= 2"));
  CHECK_THROWS_MSG(peft::word_predictions(e, {1, 2, 3}, 2, 0), peft::invalid_argument,
                   Contains("position predictions expected >= 5"));
  CHECK_THROWS_MSG(peft::word_predictions(e, {1, 2, 3, 4, 5}, 1, 0), peft::invalid_argument,
                   Contains("words expected >= 2"));
}

TEST_CASE("qa: split_context keeps byte spans", "[word_alignment][qa]") {
  const auto c = peft::split_context(
      "  Der\tM\xC3\xBCller \n wohnt\xE3\x80\x80"
      "1990 ");
  CHECK(c.words == strings{"Der", "M\xC3\xBCller", "wohnt", "1990"});  // U+3000 is white space
  using span = std::pair<std::size_t, std::size_t>;
  CHECK(c.spans == std::vector<span>{{2, 5}, {6, 13}, {16, 21}, {24, 28}});
  CHECK(peft::split_context(qa_context).spans[6] == span{31, 38});
  CHECK(peft::split_context(" \n").words.empty());
  CHECK_THROWS_AS(peft::split_context("a\xC3"), peft::invalid_argument);
}

TEST_CASE("qa: windows slide over a long context", "[word_alignment][qa]") {
  const auto tok = qa_wordpiece();
  // 3 question pieces + 3 special tokens + 5 context pieces; 11 context pieces, stride 3:
  // windows over doc pieces [0, 5), [3, 8), [6, 11).
  const auto w = peft::qa_windows(tok, {qa_sample()}, 11, 3, 3);
  REQUIRE(w.size() == 3);
  CHECK(w[0].ids == ids_t{2, 16, 7, 6, 3, 5, 6, 7, 8, 9, 3});
  CHECK(w[1].ids == ids_t{2, 16, 7, 6, 3, 8, 9, 10, 11, 12, 3});
  CHECK(w[2].ids == ids_t{2, 16, 7, 6, 3, 11, 12, 13, 14, 15, 3});
  for (const auto& x : w) {
    CHECK(x.example == 0);
    CHECK(x.context_begin == 5);
    CHECK(x.context_end == 10);
    CHECK(x.segments == ids_t{0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1});  // BERT: context and last [SEP] type 1
  }
  CHECK(w[0].word_of_token == ints{-1, -1, -1, -1, -1, 0, 1, 2, 3, 4, -1});
  CHECK(w[1].word_of_token == ints{-1, -1, -1, -1, -1, 3, 4, 5, 6, 6, -1});
  CHECK(w[2].word_of_token == ints{-1, -1, -1, -1, -1, 6, 6, 7, 8, 8, -1});
  // Answer "Zürich" = doc pieces 6-7: not in window 0; positions 8-9 in window 1, 5-6 in 2.
  CHECK((w[0].start == 0 && w[0].end == 0));
  CHECK((w[1].start == 8 && w[1].end == 9));
  CHECK((w[2].start == 5 && w[2].end == 6));
  // Max context, min(left, right) per piece: doc pieces 0-3 -> window 0 (piece 3: 1 vs 0),
  // 4-6 -> window 1 (piece 4: 0 vs 1; piece 6: 1 vs 0), 7-10 -> window 2.
  const bools f(5, false);
  auto flags = [&](bools ctx) {
    bools all = f;
    all.insert(all.end(), ctx.begin(), ctx.end());
    all.push_back(false);
    return all;
  };
  CHECK(w[0].max_context == flags({true, true, true, true, false}));
  CHECK(w[1].max_context == flags({false, true, true, true, false}));
  CHECK(w[2].max_context == flags({false, true, true, true, true}));

  // A stride as long as the window: no overlap; longer than it: still nothing skipped.
  for (peft::index stride : {5, 9}) {
    const auto v = peft::qa_windows(tok, {qa_sample()}, 11, stride, 3);
    REQUIRE(v.size() == 3);
    CHECK(v[1].word_of_token[5] == 5);                // doc piece 5
    CHECK(v[2].ids == ids_t{2, 16, 7, 6, 3, 15, 3});  // the last doc piece alone
    CHECK((v[1].start == 6 && v[1].end == 7));
    CHECK(v[2].max_context == bools{false, false, false, false, false, true, false});
  }
  // Everything fits: one window, the whole question (4 pieces) and context.
  const auto one = peft::qa_windows(tok, {qa_sample()}, 64, 3, 64);
  REQUIRE(one.size() == 1);
  CHECK(one[0].ids.size() == 4u + 11u + 3u);
  CHECK(one[0].context_begin == 6);
  CHECK((one[0].start == 12 && one[0].end == 13));
  bools one_flags(6, false);
  one_flags.resize(17, true);
  one_flags.push_back(false);
  CHECK(one[0].max_context == one_flags);
}

TEST_CASE("qa: several examples, unanswerable and empty contexts", "[word_alignment][qa]") {
  const auto tok = qa_wordpiece();
  peft::qa_example none = qa_sample();
  none.id = "q2";
  none.impossible = true;  // an answer is still listed (checked, never a target)
  peft::qa_example unlabelled = qa_sample();
  unlabelled.answers.clear();
  peft::qa_example empty = qa_sample();
  empty.context = "  ";
  empty.answers.clear();
  // The answer "Der Müller" spans two words: pieces 0-1; "ller" (inside a word) maps to all of
  // "Müller"; the first answer is the target, the others are only checked.
  peft::qa_example two = qa_sample();
  two.answers = {{"Der M\xC3\xBCller", 0}, {"ller", 7}};
  peft::qa_example inner = qa_sample();
  inner.answers = {{"ller w", 7}};
  const auto w = peft::qa_windows(tok, {qa_sample(), none, unlabelled, empty, two, inner}, 11, 3, 3);
  REQUIRE(w.size() == 3 + 3 + 3 + 1 + 3 + 3);
  for (std::size_t k = 0; k < w.size(); ++k)
    CHECK(w[k].example == std::vector<std::size_t>{0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4, 4, 4, 5, 5, 5}[k]);
  for (std::size_t k = 3; k < 10; ++k) CHECK((w[k].start == 0 && w[k].end == 0));
  CHECK(w[9].ids == ids_t{2, 16, 7, 6, 3, 3});  // empty context: one window with no context pieces
  CHECK(w[9].context_begin == w[9].context_end);
  CHECK((w[10].start == 5 && w[10].end == 6));  // Der Müller in window 0
  CHECK((w[11].start == 0 && w[11].end == 0));  // window 1 starts at doc piece 3
  CHECK((w[13].start == 6 && w[13].end == 7));  // "ller w" -> muller wohnt
}

TEST_CASE("qa: byte-level BPE pair layout", "[word_alignment][qa]") {
  const auto tok = roberta_bpe();
  peft::qa_example ex;
  ex.id = "r1";
  ex.question = "e";
  ex.context = "ab cd ab";
  ex.answers = {{"cd", 3}};
  // Context words: "ab" starts the text (no space: ab), " cd" (Ġ cd), " ab" (Ġab), the same
  // pieces as the whole context; the layout is <s> q </s></s> c </s>, all token type 0.
  const auto w = peft::qa_windows(tok, {ex}, 32, 8, 8);
  REQUIRE(w.size() == 1);
  CHECK(w[0].ids == ids_t{256, 'e', 258, 258, 264, 32, 262, 261, 258});
  CHECK(tok.piece_ids(ex.context) == ids_t{264, 32, 262, 261});
  CHECK(w[0].segments == ids_t(9, 0));
  CHECK(w[0].context_begin == 4);
  CHECK(w[0].context_end == 8);
  CHECK(w[0].word_of_token == ints{-1, -1, -1, -1, 0, 1, 1, 2, -1});
  CHECK((w[0].start == 5 && w[0].end == 6));
  // A context that starts with white space: its first word has the space before it.
  ex.context = " cd";
  ex.answers = {{"cd", 1}};
  const auto v = peft::qa_windows(tok, {ex}, 32, 8, 8);
  CHECK(v[0].ids == ids_t{256, 'e', 258, 258, 32, 262, 258});
  CHECK((v[0].start == 4 && v[0].end == 5));
  // 1 question piece + 4 special tokens + 2 context pieces, stride 1: doc pieces [0, 2), [1, 3),
  // [2, 4); the answer is the last word, Ġab.
  ex.context = "ab cd ab";
  ex.answers = {{"ab", 6}};
  const auto s = peft::qa_windows(tok, {ex}, 7, 1, 8);
  REQUIRE(s.size() == 3);  // doc [0,2) [1,3) [2,4)
  CHECK(s[2].ids == ids_t{256, 'e', 258, 258, 262, 261, 258});
  CHECK((s[2].start == 5 && s[2].end == 5));
  CHECK((s[1].start == 0 && s[1].end == 0));
}

TEST_CASE("qa: best_answer reads the context's bytes", "[word_alignment][qa]") {
  const auto tok = qa_wordpiece();
  const auto w = peft::qa_windows(tok, {qa_sample()}, 11, 3, 3);
  REQUIRE(w.size() == 3);
  const std::vector<const peft::qa_window*> ws = {&w[0], &w[1], &w[2]};
  using rows = std::vector<std::vector<double>>;
  rows start(3, std::vector<double>(11, -10.0)), end = start;
  // Window 1: zu (position 8) .. ##rich (9), score 12.
  start[1][8] = 6;
  end[1][9] = 6;
  // Window 2: the same span at 5..6 would score 40, but doc piece 6 has its max context in
  // window 1; ##rich alone (6..6) scores 10.
  start[2][5] = 20;
  end[2][6] = 20;
  // Window 0: logits outside the context (the question) are never picked, nor an end before
  // the start (8..6 would score 20).
  start[0][1] = 100;
  end[0][2] = 100;
  start[0][8] = 10;
  end[0][6] = 10;
  end[1][10] = 50;  // the last [SEP], after zu: not an end either
  auto a = peft::best_answer(qa_context, ws, start, end);
  CHECK(a.text == zurich);
  CHECK(a.score == 12.0);
  CHECK(a.window == 1);
  CHECK((a.start == 8 && a.end == 9));

  // max_answer_length 1: ##rich alone in window 2 (10) beats zu alone in window 1 (-4); its
  // text is still the whole word.
  a = peft::best_answer(qa_context, ws, start, end, 20, 1);
  CHECK(a.text == zurich);
  CHECK((a.window == 2 && a.start == 6 && a.end == 6));
  CHECK(a.score == 10.0);

  // A span over several words, from the first word's begin to the last word's end.
  start[1][5] = 30;  // seit (doc piece 3, max context in window 0, not 1) is skipped
  start[1][6] = 30;  // 1990
  end[1][9] = 31;    // ##rich
  a = peft::best_answer(qa_context, ws, start, end);
  CHECK(a.text == "1990 in " + zurich);
  CHECK(a.score == 61.0);
  CHECK((a.window == 1 && a.start == 6 && a.end == 9));
  // n_best 1: window 1's best start is position 5 (the first of the tie), which lacks max
  // context; window 0's best end comes before its best start; window 2's best start lacks max
  // context: no answer at all.
  a = peft::best_answer(qa_context, ws, start, end, 1);
  CHECK(a.text.empty());
  CHECK((std::isinf(a.score) && a.score < 0));

  // SQuAD 2.0: null score = min over windows of start[0] + end[0].
  rows s2(3, std::vector<double>(11, 0.0)), e2 = s2;
  s2[1][8] = 5;
  e2[1][9] = 5;  // best span: 10
  for (std::size_t k = 0; k < 3; ++k) s2[k][0] = e2[k][0] = 8.0;
  s2[1][0] = 7.0;  // null = 15, window 1's
  auto n = peft::best_answer(qa_context, ws, s2, e2, 20, 30, true);
  CHECK(n.text.empty());
  CHECK(n.score == 15.0);
  CHECK((n.window == 1 && n.start == 0 && n.end == 0));
  n = peft::best_answer(qa_context, ws, s2, e2, 20, 30, true, 5.0);  // 15 - 10 > 5 is false
  CHECK(n.text == zurich);
  n = peft::best_answer(qa_context, ws, s2, e2, 20, 30, true, 4.5);
  CHECK(n.text.empty());
  // Without allow_null the null logits do not matter.
  CHECK(peft::best_answer(qa_context, ws, s2, e2).text == zurich);
  // Padded logit rows are fine.
  for (auto* r : {&s2, &e2})
    for (auto& row : *r) row.resize(16, 0.0);
  CHECK(peft::best_answer(qa_context, ws, s2, e2).text == zurich);
}

TEST_CASE("qa: bad input", "[word_alignment][qa]") {
  const auto tok = qa_wordpiece();
  auto ex = qa_sample();
  ex.answers = {{zurich, 40}};  // [40, 47) passes the 46-byte end
  CHECK_THROWS_MSG(peft::qa_windows(tok, {qa_sample(), ex}, 11, 3, 3), peft::invalid_argument,
                   Contains("example 'q1'") && Contains("[40, 47)") && Contains("46 bytes"));
  ex.answers = {{zurich, 31}, {"x", 46}};
  CHECK_THROWS_MSG(peft::qa_windows(tok, {ex}, 11, 3, 3), peft::invalid_argument,
                   Contains("answer 1") && Contains("inside the context"));
  ex.answers = {{"", 3}};
  CHECK_THROWS_MSG(peft::qa_windows(tok, {ex}, 11, 3, 3), peft::invalid_argument, Contains("non-empty"));
  ex.answers = {{" ", 3}};
  CHECK_THROWS_MSG(peft::qa_windows(tok, {ex}, 11, 3, 3), peft::invalid_argument,
                   Contains("only white space"));
  // 3 question pieces + 3 special tokens + 1 context piece = 7.
  ex = qa_sample();
  ex.id = "long-q";
  CHECK_THROWS_MSG(peft::qa_windows(tok, {ex}, 6, 3, 3), peft::invalid_argument,
                   Contains("max_length expected >= 7") && Contains("example 'long-q'") && Contains("got 6"));
  CHECK(peft::qa_windows(tok, {ex}, 7, 3, 3).size() == 11);
  CHECK_THROWS_MSG(peft::qa_windows(tok, {ex}, 11, 0, 3), peft::invalid_argument,
                   Contains("doc_stride expected >= 1"));
  CHECK_THROWS_MSG(peft::qa_windows(tok, {ex}, 11, 3, 0), peft::invalid_argument,
                   Contains("max_query_length expected >= 1"));

  const auto w = peft::qa_windows(tok, {qa_sample(), qa_sample()}, 11, 3, 3);
  std::vector<std::vector<double>> l(2, std::vector<double>(11, 0.0));
  CHECK_THROWS_MSG(peft::best_answer(qa_context, {&w[0], &w[3]}, l, l), peft::invalid_argument,
                   Contains("example of window 1"));
  CHECK_THROWS_MSG(peft::best_answer(qa_context, {&w[0]}, l, l), peft::invalid_argument,
                   Contains("logit rows"));
  CHECK_THROWS_MSG(peft::best_answer(qa_context, {}, {}, {}), peft::invalid_argument,
                   Contains("at least one window"));
  std::vector<std::vector<double>> shorter(1, std::vector<double>(10, 0.0)),
      one_row(1, std::vector<double>(11, 0.0));
  CHECK_THROWS_MSG(peft::best_answer(qa_context, {&w[0]}, shorter, one_row), peft::invalid_argument,
                   Contains("logits of window 0"));
  CHECK_THROWS_MSG(peft::best_answer("Der", {&w[2]}, one_row, one_row), peft::invalid_argument,
                   Contains("context word index"));
  CHECK_THROWS_MSG(peft::best_answer(qa_context, {&w[0]}, one_row, one_row, 0), peft::invalid_argument,
                   Contains("n_best"));
  CHECK_THROWS_MSG(peft::best_answer(qa_context, {&w[0]}, one_row, one_row, 20, 0), peft::invalid_argument,
                   Contains("max_answer_length"));
}

// --- label options: classification written as reading comprehension (MPMP) -----------------

namespace {
/// [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 good=5 bad=6 food=7 was=8 very=9 ","=10
peft::wordpiece_tokenizer options_wordpiece() {
  return peft::wordpiece_tokenizer(
      {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "food", "was", "very", ","});
}
using spans_t = std::vector<std::pair<peft::index, peft::index>>;
}  // namespace

TEST_CASE("label options: WordPiece pair layout, text cut, options kept", "[word_alignment][options]") {
  const auto tok = options_wordpiece();
  // [CLS] food was bad [SEP] good , very bad [SEP]: the options are the second text (type 1).
  const auto e = peft::encode_with_options(tok, "Food was bad", nullptr, {"good", "very bad"}, 32);
  CHECK(e.ids == ids_t{2, 7, 8, 6, 3, 5, 10, 9, 6, 3});
  CHECK(e.segments == ids_t{0, 0, 0, 0, 0, 1, 1, 1, 1, 1});
  CHECK(e.spans == spans_t{{5, 5}, {7, 8}});
  // A text pair: the second text follows the first after [SEP], inside the first part.
  const std::string second = "was bad";
  const auto p = peft::encode_with_options(tok, "food", &second, {"good", "bad"}, 32);
  CHECK(p.ids == ids_t{2, 7, 3, 8, 6, 3, 5, 10, 6, 3});
  CHECK(p.spans == spans_t{{6, 6}, {8, 8}});
  // 3 special tokens + 4 option pieces leave 1 of 8 for the text: it is cut, the options are not.
  const auto cut = peft::encode_with_options(tok, "food was bad", nullptr, {"good", "very bad"}, 8);
  CHECK(cut.ids == ids_t{2, 7, 3, 5, 10, 9, 6, 3});
  CHECK(cut.spans == spans_t{{3, 3}, {5, 6}});
  CHECK_THROWS_WITH(peft::encode_with_options(tok, "food", nullptr, {"good", "very bad"}, 7),
                    Contains("max_length expected >= 8 (3 special tokens, 4 pieces of the 2 options, 1 of text), got 7"));
  CHECK_THROWS_WITH(peft::encode_with_options(tok, "food", nullptr, {"good", ""}, 32),
                    Contains("option 1 '' expected to yield pieces, got none"));
  CHECK_THROWS_WITH(peft::encode_with_options(tok, "   ", nullptr, {"good", "bad"}, 32),
                    Contains("text expected to yield pieces, got none"));
  CHECK_THROWS_WITH(peft::encode_with_options(tok, "food", nullptr, {}, 32), Contains("expected >= 1 option, got 0"));
}

TEST_CASE("label options: byte-level BPE writes each option after a space", "[word_alignment][options]") {
  const auto tok = roberta_bpe();
  // <s> cd </s></s> Ġab Ġ , Ġe </s>: " ab" -> Ġab, " ," -> Ġ + ",", " e" -> Ġe; all type 0.
  const auto e = peft::encode_with_options(tok, "cd", nullptr, {"ab", "e"}, 32);
  CHECK(e.ids == ids_t{256, 262, 258, 258, 261, 32, ',', 263, 258});
  CHECK(e.spans == spans_t{{4, 4}, {7, 7}});
  CHECK(e.segments == ids_t(9, 0));
}

TEST_CASE("label options: unigram rows have no special tokens", "[word_alignment][options]") {
  const auto tok = tiny_unigram();
  // "ab" -> ▁a b, then "a" -> ▁a, "," -> its own encoding, "bc" -> ▁ bc.
  const ids_t comma = tok.encode(",");
  const auto e = peft::encode_with_options(tok, "ab", nullptr, {"a", "bc"}, 128);
  ids_t want = {6, 8, 6};
  want.insert(want.end(), comma.begin(), comma.end());
  want.insert(want.end(), {10, 11});
  CHECK(e.ids == want);
  CHECK(e.segments.empty());
  const auto at = static_cast<peft::index>(3 + comma.size());
  CHECK(e.spans == spans_t{{2, 2}, {at, at + 1}});
  // Cut to fit: one text piece is kept.
  const auto cut = peft::encode_with_options(tok, "ab", nullptr, {"a", "bc"}, static_cast<peft::index>(want.size() - 1));
  CHECK(cut.ids.front() == 6);
  CHECK(cut.ids.size() == want.size() - 1);
  CHECK(cut.spans.front() == std::pair<peft::index, peft::index>{1, 1});
}
