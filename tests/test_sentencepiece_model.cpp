// SPDX-License-Identifier: Apache-2.0
// peft::sentencepiece_model_tokenizer: SentencePiece .model folders read through
// libsentencepiece, in XLM-R's and ALBERT's layouts, against the ids of transformers' slow
// tokenizers as tests/reference/sentencepiece_ref.py writes them out (on models it trains with
// Debian's python3-sentencepiece), and against peft's own tokenizer.json reader on the same model.
// Built only when libsentencepiece is installed (tests/CMakeLists.txt).
#include "test_common.hpp"

#include <peft/text/hf_tokenizer.hpp>
#include <peft/text/sentencepiece.hpp>
#include <peft/text/sentencepiece_model.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace {

using ids_t = std::vector<std::int32_t>;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

const std::string& ref_dir() {
  static const std::string d = peft_test::reference_dir();
  return d;
}

bool have_reference() {
  const bool ok = fs::exists(ref_dir() + "/spm_model_ref.json");
  if (!ok) FAIL_CHECK("reference_sentencepiece output missing (python3-sentencepiece or node not found?)");
  return ok;
}

const nlohmann::json& reference() {
  static const nlohmann::json j =
      nlohmann::json::parse(peft_test::read_text(ref_dir() + "/spm_model_ref.json"));
  return j;
}

/// A model folder in a scratch dir: @p model copied to @p model_name, and the JSON files given.
std::string make_folder(const std::string& name, const std::string& model, const std::string& model_name,
                        const nlohmann::json& tokenizer_config = nullptr,
                        const nlohmann::json& config = nullptr) {
  const std::string dir = peft_test::scratch_dir("spm_model_" + name);
  fs::copy_file(ref_dir() + "/" + model, dir + "/" + model_name);
  if (!tokenizer_config.is_null()) std::ofstream(dir + "/tokenizer_config.json") << tokenizer_config.dump();
  if (!config.is_null()) std::ofstream(dir + "/config.json") << config.dump();
  return dir;
}

/// Every sentence and pair of one layout's reference through @p t.
void check_against(const peft::tokenizer& t, const nlohmann::json& ref, const char* ids_key = "ids") {
  const ids_t roles = {t.cls_id(), t.sep_id(), t.pad_id(), t.mask_id(), t.unk_id()};
  CHECK(roles == ids_t{ref["cls"].get<std::int32_t>(), ref["sep"].get<std::int32_t>(),
                       ref["pad"].get<std::int32_t>(), ref["mask"].get<std::int32_t>(),
                       ref["unk"].get<std::int32_t>()});
  CHECK(t.vocab_size() == ref["vocab_size"].get<peft::index>());
  REQUIRE(ref["sentences"].size() >= 80);
  std::size_t with_unknown = 0;
  for (const auto& s : ref["sentences"]) {
    const std::string text = s["text"].get<std::string>();
    INFO("sentence " << nlohmann::json(text).dump());
    const ids_t want = s[ids_key].get<ids_t>();
    const ids_t ids = t.piece_ids(text);
    CHECK(ids == want);
    ids_t framed = want;
    framed.insert(framed.begin(), t.cls_id());
    framed.push_back(t.sep_id());
    CHECK(t.encode(text, 1 << 20) == framed);
    with_unknown += std::count(ids.begin(), ids.end(), t.unk_id()) > 0 ? 1 : 0;
    if (std::string(ids_key) != "ids") continue;  // decoded texts are of the default options
    CHECK(t.decode(ids) == s["decoded"].get<std::string>());
    CHECK(t.decode(framed, false) == s["decoded_special"].get<std::string>());
    // The round trip: where no character is unknown, decoding gives SentencePiece's own
    // decoding of its encoding (the reference checks that this holds).
    if (!s["has_unknown"].get<bool>() && text.find_first_of("<[") == std::string::npos)
      CHECK(t.decode(ids) == s["spm_roundtrip"].get<std::string>());
    // tokenize() gives the vocabulary tokens of the ids.
    const auto tokens = t.tokenize(text);
    REQUIRE(tokens.size() == ids.size());
    for (std::size_t k = 0; k < tokens.size(); ++k) CHECK(t.token_to_id(tokens[k]) == ids[k]);
  }
  CHECK(with_unknown > 0);                    // characters the models never saw occur
  if (std::string(ids_key) != "ids") return;  // the pairs are of the default options
  REQUIRE(ref["pairs"].size() >= 8);
  for (const auto& p : ref["pairs"]) {
    INFO("pair " << p.dump().substr(0, 100));
    ids_t types;
    CHECK(t.encode_pair(p["a"].get<std::string>(), p["b"].get<std::string>(), 1 << 20, &types) ==
          p["ids"].get<ids_t>());
    CHECK(types == p["types"].get<ids_t>());
  }
}

}  // namespace

TEST_CASE("sentencepiece_model: XLM-R's ids, as transformers' XLMRobertaTokenizer gives them",
          "[sentencepiece_model][reference]") {
  if (!have_reference()) return;
  const auto& ref = reference()["xlmr"];
  const auto t = peft::load_hf_tokenizer(make_folder("xlmr", "spm_unigram.model", "sentencepiece.bpe.model",
                                                     {{"tokenizer_class", "XLMRobertaTokenizer"}}));
  CHECK(t->kind() == "sentencepiece_model");
  CHECK(t->mask_token() == "<mask>");
  CHECK(t->token_to_id("<mask>") == 2001);
  CHECK(t->id_to_token(2001) == "<mask>");
  CHECK(t->id_to_token(3) == "<unk>");
  CHECK_FALSE(t->uses_token_types());
  check_against(*t, ref);
  // The same model through peft's own reader of its tokenizer.json export: equal ids wherever
  // that file's pipeline does not itself differ from SentencePiece (spm_ref.json says where).
  const auto json =
      peft::sentencepiece_tokenizer::from_tokenizer_json(ref_dir() + "/spm_xlmr_tokenizer.json");
  const auto spm_ref = nlohmann::json::parse(peft_test::read_text(ref_dir() + "/spm_ref.json"));
  std::size_t compared = 0;
  for (const auto& s : spm_ref["sentences"]) {
    if (!s["js_difference"].is_null()) continue;
    const std::string text = s["text"].get<std::string>();
    INFO("sentence " << nlohmann::json(text).dump());
    CHECK(t->encode(text, 1 << 20) == json.encode(text, 1 << 20));
    CHECK(t->encode(text, 1 << 20) == s["xlmr_ids"].get<ids_t>());
    ++compared;
  }
  CHECK(compared >= 65);
}

TEST_CASE(
    "sentencepiece_model: ALBERT's ids, preprocessing and digit-comma rule, as AlbertTokenizer gives them",
    "[sentencepiece_model][reference]") {
  if (!have_reference()) return;
  const auto& ref = reference()["albert"];
  // Only config.json: do_lower_case takes ALBERT's default, true.
  const auto t = peft::load_hf_tokenizer(
      make_folder("albert", "spm_albert.model", "spiece.model", nullptr, {{"model_type", "albert"}}));
  CHECK(t->kind() == "sentencepiece_model");
  CHECK(t->mask_token() == "[MASK]");
  CHECK(t->token_to_id("[MASK]") == 4);
  CHECK(t->uses_token_types());
  check_against(*t, ref);
  std::size_t digit_comma = 0;
  for (const auto& s : ref["sentences"]) digit_comma += s["digit_comma"].get<bool>() ? 1 : 0;
  CHECK(digit_comma >= 3);  // sentences on which the rule changed the pieces
  // do_lower_case false, from tokenizer_config.json.
  const auto cased = peft::load_hf_tokenizer(
      make_folder("albert_cased", "spm_albert.model", "spiece.model",
                  {{"tokenizer_class", "AlbertTokenizer"}, {"do_lower_case", false}}));
  check_against(*cased, ref, "ids_cased");
  // The preprocessing by itself: Python's whitespace (U+001C included), `` and '', accents.
  CHECK(peft::albert_preprocess("  A\xC2\xA0 B\x1C ``x'' \xC3\x89t\xC3\xA9 \xEF\xAC\x81  ", {}) ==
        "a b \"x\" ete fi");
  CHECK(peft::albert_preprocess("\xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3", {}) ==
        "\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82");  // final sigma
  CHECK(peft::albert_preprocess("  A  \xC3\x89 ", {false, true, false}) == "  A  \xC3\x89 ");
}

TEST_CASE("sentencepiece_model: truncation, role ids, copies and the interface's errors",
          "[sentencepiece_model][reference]") {
  if (!have_reference()) return;
  const auto xlmr = peft::sentencepiece_model_tokenizer::from_folder(
      make_folder("iface_x", "spm_unigram.model", "sentencepiece.bpe.model"));
  const auto albert = peft::sentencepiece_model_tokenizer::from_folder(
      make_folder("iface_a", "spm_albert.model", "spiece.model"));
  CHECK(xlmr.model_layout() == peft::spm_layout::xlm_roberta);  // from the file name
  CHECK(albert.model_layout() == peft::spm_layout::albert);
  CHECK(albert.albert_options().do_lower_case);
  const std::string a = "The quick brown fox jumps over the lazy dog, while 12 puppies watched.";
  const std::string b = "Short one.";
  for (const peft::tokenizer* t :
       {static_cast<const peft::tokenizer*>(&xlmr), static_cast<const peft::tokenizer*>(&albert)}) {
    INFO("layout " << (t == &xlmr ? "xlmr" : "albert"));
    const ids_t ia = t->piece_ids(a), ib = t->piece_ids(b);
    REQUIRE(ia.size() > 12);
    // Single: the text's first ids, never the special tokens, are kept.
    const ids_t cut = t->encode(a, 8);
    CHECK(cut == ids_t{t->cls_id(), ia[0], ia[1], ia[2], ia[3], ia[4], ia[5], t->sep_id()});
    CHECK(t->encode(a, 2) == ids_t{t->cls_id(), t->sep_id()});
    CHECK_THROWS_MSG(t->encode(a, 1), peft::invalid_argument, Contains("max_length"));
    // Pair: longest first.
    const std::size_t specials = t == &xlmr ? 4 : 3;
    for (std::size_t budget : {std::size_t(4), std::size_t(9), std::size_t(14), std::size_t(40)}) {
      const auto [na, nb] = peft::tokenizer::longest_first(ia.size(), ib.size(), budget);
      const ids_t got = t->encode_pair(a, b, static_cast<peft::index>(budget + specials));
      CHECK(got.size() == na + nb + specials);
      CHECK(ids_t(got.begin() + 1, got.begin() + 1 + static_cast<std::ptrdiff_t>(na)) ==
            ids_t(ia.begin(), ia.begin() + static_cast<std::ptrdiff_t>(na)));
      CHECK(ids_t(got.end() - 1 - static_cast<std::ptrdiff_t>(nb), got.end() - 1) ==
            ids_t(ib.begin(), ib.begin() + static_cast<std::ptrdiff_t>(nb)));
    }
    CHECK_THROWS_MSG(t->encode_pair(a, b, static_cast<peft::index>(specials) - 1), peft::invalid_argument,
                     Contains("max_length"));
    // The interface's errors.
    CHECK_THROWS_MSG(t->piece_ids("bad \xFF byte"), peft::invalid_argument, Contains("UTF-8"));
    CHECK_THROWS_MSG(t->decode({0, static_cast<std::int32_t>(t->vocab_size())}), peft::invalid_argument,
                     Contains("id"));
    CHECK_THROWS_MSG(t->id_to_token(-1), peft::invalid_argument, Contains("id"));
    CHECK_THROWS_MSG(t->token_to_id("no such piece"), peft::invalid_argument, Contains("no such piece"));
    CHECK_FALSE(t->contains("no such piece"));
    CHECK(t->contains(t->mask_token()));
    CHECK(t->piece_ids("").empty());
    CHECK(t->encode("", 8) == ids_t{t->cls_id(), t->sep_id()});
  }
  // Copies are independent objects: a copy outlives the original.
  auto original = std::make_unique<peft::sentencepiece_model_tokenizer>(albert);
  const peft::sentencepiece_model_tokenizer copy = *original;
  const ids_t before = original->piece_ids(a);
  original.reset();
  CHECK(copy.piece_ids(a) == before);
}

TEST_CASE(
    "sentencepiece_model: the layout comes from tokenizer_config.json, then config.json, then the file name",
    "[sentencepiece_model][reference]") {
  if (!have_reference()) return;
  using peft::spm_layout;
  auto layout = [](const std::string& dir) {
    return peft::sentencepiece_model_tokenizer::from_folder(dir).model_layout();
  };
  // tokenizer_class wins over model_type and the file name.
  CHECK(layout(make_folder("class", "spm_albert.model", "sentencepiece.bpe.model",
                           {{"tokenizer_class", "AlbertTokenizerFast"}}, {{"model_type", "xlm-roberta"}})) ==
        spm_layout::albert);
  CHECK(layout(make_folder("type", "spm_unigram.model", "spiece.model", {{"do_lower_case", true}},
                           {{"model_type", "xlm-roberta"}})) == spm_layout::xlm_roberta);
  CHECK(layout(make_folder("name", "spm_albert.model", "spiece.model")) == spm_layout::albert);
  // A tokenizer.json comes first; the .model next to it is not read.
  const std::string both = make_folder("both", "spm_albert.model", "spiece.model");
  fs::copy_file(ref_dir() + "/spm_xlmr_tokenizer.json", both + "/tokenizer.json");
  CHECK(peft::load_hf_tokenizer(both)->kind() == "sentencepiece");
  // Another layout is refused, naming the file, the field and what it holds.
  auto refused = [](const std::string& dir, const std::vector<std::string>& parts) {
    const std::string msg = peft_test::message_of<peft::io_error>([&] { peft::load_hf_tokenizer(dir); });
    for (const auto& p : parts) CHECK_THAT(msg, Contains(p));
  };
  refused(make_folder("t5", "spm_unigram.model", "spiece.model", {{"tokenizer_class", "T5Tokenizer"}}),
          {"tokenizer_config.json", "tokenizer_class expected", "\"T5Tokenizer\""});
  refused(make_folder("camembert", "spm_unigram.model", "sentencepiece.bpe.model", nullptr,
                      {{"model_type", "camembert"}}),
          {"config.json", "model_type expected", "\"camembert\""});
  refused(make_folder("lower", "spm_albert.model", "spiece.model", {{"do_lower_case", "yes"}}),
          {"do_lower_case expected a boolean", "\"yes\""});
  const std::string bad_json = make_folder("bad_json", "spm_albert.model", "spiece.model");
  std::ofstream(bad_json + "/tokenizer_config.json") << "{\"tokenizer_class\": ";
  refused(bad_json, {"tokenizer_config.json", "valid JSON expected"});
  // A model without the layout's pieces.
  refused(
      make_folder("x_on_albert", "spm_albert.model", "sentencepiece.bpe.model"),
      {"sentencepiece.bpe.model", "pieces <unk> <s> </s> at ids 0, 1, 2", "\"<pad>\" \"<unk>\" \"[CLS]\""});
  refused(make_folder("a_on_xlmr", "spm_unigram.model", "spiece.model"),
          {"spiece.model", "ALBERT's piece \"[CLS]\" expected"});
}

TEST_CASE("sentencepiece_model: truncated, empty, foreign and missing .model files are peft::io_errors",
          "[sentencepiece_model][reference]") {
  if (!have_reference()) return;
  const std::string blob = peft_test::read_text(ref_dir() + "/spm_unigram.model");
  REQUIRE(blob.size() > 1000);
  auto folder_with = [](const std::string& name, const std::string& bytes) {
    const std::string dir = peft_test::scratch_dir("spm_model_bad_" + name);
    std::ofstream(dir + "/sentencepiece.bpe.model", std::ios::binary) << bytes;
    return dir;
  };
  auto refused = [](const std::string& dir, const std::string& what) {
    const std::string msg = peft_test::message_of<peft::io_error>([&] { peft::load_hf_tokenizer(dir); });
    CHECK_THAT(msg, Contains("a SentencePiece model expected in") &&
                        Contains(dir + "/sentencepiece.bpe.model") && Contains(what));
  };
  refused(folder_with("truncated", blob.substr(0, blob.size() / 2)),
          "no ModelProto (truncated or another format)");
  refused(folder_with("text", "{\"not\": \"a model\"}\n"), "no ModelProto");
  refused(folder_with("empty", ""), "unk is not defined");  // sentencepiece's own message
  // The constructor on a path that does not exist: sentencepiece's message names it.
  const std::string missing = peft_test::scratch_dir("spm_model_missing") + "/spiece.model";
  CHECK_THROWS_MSG(peft::sentencepiece_model_tokenizer(missing, peft::spm_layout::albert), peft::io_error,
                   Contains(missing) && Contains("No such file"));
  CHECK_THROWS_MSG(peft::sentencepiece_model_tokenizer::from_folder(peft_test::scratch_dir("spm_model_none")),
                   peft::io_error, Contains("sentencepiece.bpe.model or spiece.model expected, got neither"));
  CHECK_THROWS_MSG(peft::load_hf_tokenizer(peft_test::scratch_dir("spm_model_nothing")), peft::io_error,
                   Contains("spiece.model"));
}
