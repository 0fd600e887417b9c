// SPDX-License-Identifier: Apache-2.0
// Prompt templates (LM-BFF / LiST mini-language) and verbalizers on the bert-base-uncased
// vocabulary written by the reference_tokenizers fixture.
#include "test_common.hpp"

#include <peft/text/bpe.hpp>
#include <peft/text/prompt.hpp>
#include <peft/text/wordpiece.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using ids_t = std::vector<std::int32_t>;

const std::string& vocab_path() {
  static const std::string p = peft_test::reference_dir() + "/tokenizers_bert_vocab.txt";
  return p;
}

bool have_vocab() {
  const bool ok = std::filesystem::exists(vocab_path());
  if (!ok)
    FAIL_CHECK("reference_tokenizers fixture output missing (node not found?): bert-vocab prompt tests not run");
  return ok;
}

const peft::wordpiece_tokenizer& bert() {
  static const peft::wordpiece_tokenizer tok = peft::wordpiece_tokenizer::from_vocab_txt(vocab_path());
  return tok;
}

/// Id of `token` found by reading vocab.txt directly (id = line number - 1), independent of the
/// tokenizer class.
std::int32_t vocab_id(const std::string& token) {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> v;
    std::istringstream in(peft_test::read_text(vocab_path()));
    std::string line;
    while (std::getline(in, line)) v.push_back(line);
    return v;
  }();
  const auto it = std::find(lines.begin(), lines.end(), token);
  if (it == lines.end()) FAIL("token not in vocab: " << token);
  return static_cast<std::int32_t>(it - lines.begin());
}

ids_t vocab_ids(const std::vector<std::string>& tokens) {
  ids_t out;
  for (const auto& t : tokens) out.push_back(vocab_id(t));
  return out;
}


/// A small cased vocabulary, for the lower-casing modifier.
peft::wordpiece_tokenizer cased() {
  peft::wordpiece_options opt;
  opt.lowercase = false;
  return peft::wordpiece_tokenizer({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Great", "great", "Movie",
                                    "movie", "\xC3\x89lan", "\xC3\xA9lan", "!", "it", "was", "."},
                                   opt);
}

}  // namespace

TEST_CASE("prompt: parsing the LM-BFF / LiST templates", "[prompt]") {
  using kind = peft::prompt_part::kind;
  const peft::prompt_template sst2(peft::templates::it_was);
  REQUIRE(sst2.parts().size() == 6);
  CHECK(sst2.parts()[0].type == kind::cls);
  CHECK(sst2.parts()[1].type == kind::sentence);
  CHECK(sst2.parts()[2].type == kind::literal);
  CHECK(sst2.parts()[2].text == " It was");
  CHECK(sst2.parts()[3].type == kind::mask);
  CHECK(sst2.parts()[4].text == ".");
  CHECK(sst2.parts()[5].type == kind::sep_plus);
  CHECK(sst2.num_sentences() == 1);
  CHECK(sst2.num_segment_increments() == 1);

  const peft::prompt_template nli(peft::templates::nli);
  CHECK(nli.num_sentences() == 2);
  const auto& p = nli.parts();
  REQUIRE(p.size() == 7);
  CHECK((p[1].type == kind::sentence && p[1].drop_last && !p[1].lower_first && !p[1].leading_space &&
         p[1].sentence == 0));
  CHECK((p[5].type == kind::sentence && p[5].leading_space && p[5].lower_first && !p[5].drop_last &&
         p[5].sentence == 1));
  CHECK(p[5].source == "*+sentl_1*");
  for (const char* t : {peft::templates::this_is, peft::templates::paraphrase, peft::templates::question}) {
    CHECK_NOTHROW(peft::prompt_template(t));
  }
  CHECK_NOTHROW(peft::prompt_template("*cls**+sentl-_0**mask**sep*"));
}

TEST_CASE("prompt: bad templates name the offending part", "[prompt]") {
  auto msg = [](const std::string& t) { return peft_test::message_of<peft::invalid_argument>([&] { peft::prompt_template x(t); }); };
  CHECK_THAT(msg(""), Catch::Contains("empty"));
  CHECK_THAT(msg("*cls**sent_0*_It_was*mask"),
             Catch::Contains("closing '*'") && Catch::Contains("offset 20"));
  CHECK_THAT(msg("*cls**sentence_0**mask*"),
             Catch::Contains("\"*sentence_0*\"") && Catch::Contains("offset 5"));
  CHECK_THAT(msg("*cls**sent_x**mask*"), Catch::Contains("\"*sent_x*\""));
  CHECK_THAT(msg("*cls**sent_0**mask**label_0*"),
             Catch::Contains("\"*label_0*\"") && Catch::Contains("demonstrations"));
  CHECK_THAT(msg("*cls**sentu_0**mask*"),
             Catch::Contains("\"*sentu_0*\"") && Catch::Contains("upper-casing"));
  CHECK_THAT(msg("*cls***sent_0**mask*"), Catch::Contains("\"**\""));
  CHECK_THAT(msg("*cls**sent_0*_It_was.*sep+*"), Catch::Contains("one *mask* expected, got 0"));
  CHECK_THAT(msg("*cls**sent_0**mask**mask*"), Catch::Contains("one *mask* expected, got 2"));
  CHECK_THAT(msg("*cls*_It_was*mask*"), Catch::Contains("*sent_0*"));
}

TEST_CASE("prompt: SST-2 template ids equal ids built by hand from vocab.txt", "[prompt][reference]") {
  if (!have_vocab()) return;
  const auto& tok = bert();
  const peft::prompt_template t(peft::templates::it_was);
  const auto enc = t.apply(tok, "A very slow-moving movie.", 128);
  const ids_t expected = vocab_ids(
      {"[CLS]", "a", "very", "slow", "-", "moving", "movie", ".", "it", "was", "[MASK]", ".", "[SEP]"});
  CHECK(enc.ids == expected);
  // Well-known bert-base-uncased ids, as a second, independent check.
  CHECK(enc.ids.front() == 101);
  CHECK(enc.ids.back() == 102);
  CHECK(enc.ids[10] == 103);
  CHECK(enc.ids[8] == 2009);   // it
  CHECK(enc.ids[9] == 2001);   // was
  CHECK(enc.ids[11] == 1012);  // .
  CHECK(enc.mask_position == 10);
  CHECK(enc.segments == ids_t(13, 0));
  CHECK(enc.truncated == 0);
  // The same ids as tokenizing the filled-in text in one go.
  CHECK(enc.ids == tok.encode("A very slow-moving movie. It was [MASK].", 128));
}

TEST_CASE("prompt: sentence modifiers, pairs and segments", "[prompt][reference]") {
  if (!have_vocab()) return;
  const auto& tok = bert();
  // *sent-_0* drops the final '.', *+sentl_1* is the second sentence (uncased: no visible change).
  const peft::prompt_template nli(peft::templates::nli);
  const auto enc = nli.apply(tok, "A very slow movie.", "Very bad", 128);
  CHECK(enc.ids ==
        vocab_ids({"[CLS]", "a", "very", "slow", "movie", "?", "[MASK]", ",", "very", "bad", "[SEP]"}));
  CHECK(enc.mask_position == 6);
  CHECK(enc.segments == ids_t(11, 0));
  // *sep+* raises the segment id of the parts after it.
  const peft::prompt_template two("*cls**sent_0**sep+**mask**sent_1**sep+*");
  const auto e2 = two.apply(tok, "good", "bad", 128);
  CHECK(e2.ids == vocab_ids({"[CLS]", "good", "[SEP]", "[MASK]", "bad", "[SEP]"}));
  CHECK(e2.segments == ids_t{0, 0, 0, 1, 1, 1});
  CHECK(e2.mask_position == 3);
  // *sep* does not.
  const auto e3 = peft::prompt_template("*cls**sent_0**sep**mask**sep*").apply(tok, "good", 128);
  CHECK(e3.segments == ids_t(5, 0));
  // Literal text is tokenized as written ('_' = space).
  const auto e4 = peft::prompt_template("*cls**sent_0*_This_is*mask*.*sep+*").apply(tok, "Great movie!", 128);
  CHECK(e4.ids == vocab_ids({"[CLS]", "great", "movie", "!", "this", "is", "[MASK]", ".", "[SEP]"}));
}

TEST_CASE("prompt: lower-casing and dropping characters work on code points", "[prompt]") {
  const auto tok = cased();
  const auto id = [&](const char* s) { return tok.token_to_id(s); };
  const peft::prompt_template plain("*cls**sent_0**mask**sep+*");
  const peft::prompt_template lower("*cls**sentl_0**mask**sep+*");
  const peft::prompt_template lower_drop("*cls**+sentl-_0**mask**sep+*");
  CHECK(plain.apply(tok, "Great Movie", 16).ids == ids_t{2, id("Great"), id("Movie"), 4, 3});
  CHECK(lower.apply(tok, "Great Movie", 16).ids == ids_t{2, id("great"), id("Movie"), 4, 3});
  CHECK(lower_drop.apply(tok, "Great Movie!", 16).ids == ids_t{2, id("great"), id("Movie"), 4, 3});
  // Non-ASCII first letter: É -> é (two bytes each); '-' removes the whole last code point.
  CHECK(lower.apply(tok, "\xC3\x89lan", 16).ids == ids_t{2, id("\xC3\xA9lan"), 4, 3});
  CHECK(lower_drop.apply(tok, "\xC3\x89lan\xC3\xA9", 16).ids == ids_t{2, id("\xC3\xA9lan"), 4, 3});
}

TEST_CASE("prompt: truncation cuts sentences, never the template, so the mask stays", "[prompt][reference]") {
  if (!have_vocab()) return;
  const auto& tok = bert();
  const peft::prompt_template t(peft::templates::it_was);
  std::string longtext;
  for (int i = 0; i < 100; ++i) longtext += "very ";
  longtext += "good movie.";  // 103 word pieces
  const auto enc = t.apply(tok, longtext, 32);
  REQUIRE(enc.ids.size() == 32);
  CHECK(enc.truncated == 103 + 6 - 32);
  CHECK(enc.mask_position == 29);
  CHECK(enc.ids[static_cast<std::size_t>(enc.mask_position)] == tok.mask_id());
  const ids_t tail = vocab_ids({"it", "was", "[MASK]", ".", "[SEP]"});
  CHECK(ids_t(enc.ids.end() - 5, enc.ids.end()) == tail);
  CHECK(enc.ids.front() == tok.cls_id());
  CHECK(std::count(enc.ids.begin(), enc.ids.end(), vocab_id("very")) == 26);  // the sentence's head is kept
  CHECK(enc.segments.size() == 32);

  // Exactly the template's size: the sentence disappears, the template stays whole.
  const auto bare = t.apply(tok, longtext, 6);
  CHECK(bare.ids == vocab_ids({"[CLS]", "it", "was", "[MASK]", ".", "[SEP]"}));
  CHECK(bare.mask_position == 3);
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { t.apply(tok, longtext, 5); }),
             Catch::Contains("template tokens expected at most max_length = 5, got 6"));

  // Two sentences: the longer one is cut first; equal lengths end up within one token.
  const peft::prompt_template nli(peft::templates::nli);  // 5 template tokens: [CLS] ? [MASK] , [SEP]
  std::string a40, b10, b40;
  for (int i = 0; i < 40; ++i) a40 += "good ";
  for (int i = 0; i < 10; ++i) b10 += "bad ";
  for (int i = 0; i < 40; ++i) b40 += "bad ";
  const auto p1 = nli.apply(tok, a40 + "x", b10, 30);  // sent-_0 drops the "x"
  REQUIRE(p1.ids.size() == 30);
  CHECK(std::count(p1.ids.begin(), p1.ids.end(), vocab_id("good")) == 15);
  CHECK(std::count(p1.ids.begin(), p1.ids.end(), vocab_id("bad")) == 10);
  CHECK(p1.mask_position == 1 + 15 + 1);
  const auto p2 = nli.apply(tok, a40 + "x", b40, 30);
  CHECK(std::count(p2.ids.begin(), p2.ids.end(), vocab_id("good")) == 12);
  CHECK(std::count(p2.ids.begin(), p2.ids.end(), vocab_id("bad")) == 13);
  CHECK(p2.mask_position == 14);
  CHECK(p2.ids.back() == tok.sep_id());
  CHECK(p2.truncated == 80 + 5 - 30);
}

TEST_CASE("prompt: bad examples are rejected", "[prompt][reference]") {
  if (!have_vocab()) return;
  const auto& tok = bert();
  const peft::prompt_template nli(peft::templates::nli);
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { nli.apply(tok, "only one", 128); }),
             Catch::Contains("sentences expected 2") && Catch::Contains("got 1"));
  const peft::prompt_template t(peft::templates::it_was);
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { t.apply(tok, "It was [MASK] anyway", 128); }), Catch::Contains("mask token"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { t.apply(tok, "bad \xFF byte", 128); }), Catch::Contains("UTF-8"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { t.apply(tok, "fine", 0); }), Catch::Contains("max_length"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::prompt_template("*cls**sent_0*[MASK]*mask**sep+*").apply(tok, "x", 128); }),
             Catch::Contains("second one"));
}

TEST_CASE("verbalizer: single-token label words in label-id order", "[prompt][reference]") {
  if (!have_vocab()) return;
  const auto& tok = bert();
  const peft::verbalizer v(tok, {"terrible", "great"});
  CHECK(v.size() == 2);
  CHECK(v.ids() == vocab_ids({"terrible", "great"}));
  CHECK(v.ids() == ids_t{6659, 2307});
  // Parsing the --verbalizer option orders by the label map, whatever the order written.
  const std::vector<std::string> labels{"0", "1"};
  CHECK(peft::verbalizer::parse(tok, "1=great,0=terrible", labels).ids() == v.ids());
  CHECK(peft::verbalizer::parse(tok, " 0 = terrible , 1 = great ", labels).ids() == v.ids());
  // The uncased vocabulary lower-cases label words, as LM-BFF's "Yes"/"No"/"Maybe" need.
  const auto nli = peft::verbalizer::parse(tok, "contradiction=No,entailment=Yes,neutral=Maybe",
                                           {"contradiction", "entailment", "neutral"});
  CHECK(nli.ids() == vocab_ids({"no", "yes", "maybe"}));
  CHECK(nli.words() == std::vector<std::string>{"No", "Yes", "Maybe"});
  // Checkpoint round trip; another vocabulary's ids are refused.
  const auto j = v.to_json();
  CHECK(peft::verbalizer::from_json(tok, j).ids() == v.ids());
  auto wrong = j;
  wrong["ids"] = ids_t{1, 2};
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::verbalizer::from_json(tok, wrong); }),
             Catch::Contains("different vocabulary"));
}

TEST_CASE("verbalizer: multi-token and bad label words are rejected", "[prompt][reference]") {
  if (!have_vocab()) return;
  const auto& tok = bert();
  const auto pieces = tok.tokenize("unwatchable");
  REQUIRE(pieces.size() > 1);
  std::string listed;
  for (const auto& p : pieces) listed += (listed.empty() ? "\"" : ", \"") + p + "\"";
  const std::string msg = peft_test::message_of<peft::invalid_argument>([&] { peft::verbalizer(tok, {"terrible", "unwatchable"}); });
  CHECK_THAT(msg, Catch::Contains("label word 1 \"unwatchable\"") &&
                      Catch::Contains("single vocabulary token") && Catch::Contains("[" + listed + "]"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] {
               peft::verbalizer(tok, {"very good", "great"});
             }),
             Catch::Contains("\"very good\"") && Catch::Contains("2 word pieces"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] {
               peft::verbalizer(tok, {"great", "Great"});
             }),
             Catch::Contains("distinct label words"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] {
               peft::verbalizer(tok, {"[MASK]", "great"});
             }),
             Catch::Contains("ordinary vocabulary token"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::verbalizer(tok, {"", "great"}); }), Catch::Contains("0 word pieces"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::verbalizer(tok, std::vector<std::string>{}); }),
             Catch::Contains("at least 1"));
  const std::vector<std::string> labels{"0", "1"};
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::verbalizer::parse(tok, "0=terrible", labels); }),
             Catch::Contains("none for \"1\""));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::verbalizer::parse(tok, "0=terrible,2=great", labels); }),
             Catch::Contains("got \"2\""));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::verbalizer::parse(tok, "0=terrible,0=bad,1=great", labels); }),
             Catch::Contains("label \"0\" twice"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::verbalizer::parse(tok, "0:terrible,1=great", labels); }),
             Catch::Contains("\"label=word\""));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::verbalizer::parse(tok, "0=terrible,1=unwatchable", labels); }),
             Catch::Contains("unwatchable"));
}

namespace {

const std::string& roberta_json() {
  static const std::string p = peft_test::reference_dir() + "/bpe_roberta_tokenizer.json";
  return p;
}

/// GPT-2's vocabulary in RoBERTa's layout (reference_tokenizers_bpe), or null without node.
const peft::bpe_tokenizer* roberta() {
  if (!std::filesystem::exists(roberta_json())) {
    FAIL_CHECK("reference_tokenizers_bpe fixture output missing (node not found?): RoBERTa prompt tests not run");
    return nullptr;
  }
  static const peft::bpe_tokenizer tok = peft::bpe_tokenizer::from_tokenizer_json(roberta_json());
  return &tok;
}

/// Id of `token` read from the tokenizer.json vocabulary directly, independent of the class.
std::int32_t bpe_id(const std::string& token) {
  static const nlohmann::json vocab = nlohmann::json::parse(peft_test::read_text(roberta_json()))["model"]["vocab"];
  if (!vocab.contains(token)) FAIL("token not in the BPE vocabulary: " << token);
  return vocab[token].get<std::int32_t>();
}

}  // namespace

TEST_CASE("prompt: RoBERTa's byte-level BPE keeps the template's spaces, one token type", "[prompt][reference]") {
  const auto* tok = roberta();
  if (!tok) return;
  const std::string G = "\xC4\xA0";  // "Ġ", the byte-level space
  // LM-BFF's SST-2 template: "<s> A fun movie ĠIt Ġwas <mask> . </s>".
  const peft::prompt_template sst2(peft::templates::it_was);
  const auto e = sst2.apply(*tok, "A fun movie", 64);
  CHECK(e.ids == ids_t{bpe_id("<s>"), bpe_id("A"), bpe_id(G + "fun"), bpe_id(G + "movie"), bpe_id(G + "It"),
                       bpe_id(G + "was"), bpe_id("<mask>"), bpe_id("."), bpe_id("</s>")});
  CHECK(e.mask_position == 6);
  CHECK(e.segments == ids_t(9, 0));
  // The NLI template: "*+sentl_1*" lower-cases and adds the space; *sep+* raises no segment.
  const peft::prompt_template nli(peft::templates::nli);
  const auto p = nli.apply(*tok, "It rains.", "Roads are wet", 64);
  CHECK(p.ids == ids_t{bpe_id("<s>"), bpe_id("It"), bpe_id(G + "rains"), bpe_id("?"), bpe_id("<mask>"),
                       bpe_id(","), bpe_id(G + "roads"), bpe_id(G + "are"), bpe_id(G + "wet"), bpe_id("</s>")});
  CHECK(p.segments == ids_t(p.ids.size(), 0));
  // Label words take LM-BFF's leading space: "great" is "Ġgreat", one token.
  const auto v = peft::verbalizer::parse(*tok, "neg=terrible,pos=great", {"neg", "pos"});
  CHECK(v.ids() == ids_t{bpe_id(G + "terrible"), bpe_id(G + "great")});
  // A word of two byte-level pieces is refused with its pieces.
  CHECK_THROWS_WITH(peft::verbalizer(*tok, {"great", "unaffable"}),
                    Catch::Matchers::Contains("expected to be a single vocabulary token"));
  // A text holding the mask token is refused: the template supplies the only mask.
  CHECK_THROWS_WITH(sst2.apply(*tok, "a <mask> here", 64), Catch::Matchers::Contains("without the mask token \"<mask>\""));
}

TEST_CASE("prompt: a tokenizer without a mask token is refused by name", "[prompt][reference]") {
  const std::string dir = peft_test::reference_dir();
  if (!std::filesystem::exists(dir + "/bpe_gpt2_vocab.json")) {
    FAIL_CHECK("reference_tokenizers_bpe fixture output missing (node not found?)");
    return;
  }
  const auto gpt2 = peft::bpe_tokenizer::from_vocab_merges(dir + "/bpe_gpt2_vocab.json", dir + "/bpe_gpt2_merges.txt");
  const peft::prompt_template sst2(peft::templates::it_was);
  CHECK_THROWS_WITH(sst2.apply(gpt2, "A fun movie", 64), Catch::Matchers::Contains("needs a mask token, got a bpe tokenizer"));
}
