// SPDX-License-Identifier: Apache-2.0
// Readers of the task kinds beyond single-label classification: regression and multi-label
// JSON lines, token classification (JSON lines and CoNLL columns) and reading comprehension
// (SQuAD JSON and Hugging Face JSON lines), on small hand-made files, good and malformed.
#include "test_common.hpp"

#include <peft/data/task_readers.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace {

/// Writes `bytes` to `dir/name` and returns the path.
std::string write(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  return path;
}

/// A malformed file and the pieces its error message must hold (besides the reader and path).
struct bad_case {
  const char* name;
  std::string content;
  std::vector<std::string> expect;
};

/// Writes every case as `dir/<name><ext>`, reads it with `read` and checks that the
/// peft::io_error message starts with "<where>: <path>" and holds every expected piece.
void check_bad(const std::string& dir, const char* ext, const char* where, const std::vector<bad_case>& cases,
               const std::function<void(const std::string&)>& read) {
  for (const auto& c : cases) {
    INFO(c.name);
    const auto p = write(dir, std::string(c.name) + ext, c.content);
    const std::string msg = peft_test::message_of<peft::io_error>([&] { read(p); });
    CHECK_THAT(msg, Catch::StartsWith(std::string(where) + ": " + p));
    for (const auto& e : c.expect) CHECK_THAT(msg, Catch::Contains(e));
  }
}

const std::string zurich = "The ETH Zürich was founded in 1855 in Zürich, Switzerland.";
const std::string tokyo =
    "東京は日本の首都です。Tokyo has been the capital of Japan \xF0\x9F\x97\xBE since 1868.";

/// A SQuAD file with one paragraph of `context` and the questions `qas` (JSON, comma-separated).
std::string squad1(const std::string& context, const std::string& qas) {
  return R"({"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": ")" + context +
         R"(", "qas": [)" + qas + "]}]}]}";
}

}  // namespace

TEST_CASE("task readers: regression JSON lines", "[data][task_readers]") {
  const std::string dir = peft_test::scratch_dir("task_regression");
  const auto d =
      peft::read_task_jsonl(write(dir, "stsb.jsonl",
                                  "{\"text\": \"A man is playing a guitar.\", \"text_b\": \"A man plays the "
                                  "guitar.\", \"label\": 4.8, "
                                  "\"idx\": 0}\n"
                                  "{\"text\": \"A woman slices onions.\", \"text_b\": \"\", \"label\": 1}\r\n"
                                  "\n"
                                  "{\"text\": \"Unscored pair\", \"text_b\": \"x\", \"label\": null}\n"
                                  "{\"text\": \"no label key\", \"guid\": \"g\"}"),
                            peft::task_kind::regression);
  REQUIRE(d.size() == 4);
  CHECK(d[0].text_b == std::optional<std::string>("A man plays the guitar."));
  CHECK(d[0].values == std::vector<double>{4.8});
  CHECK(!d[0].label);
  CHECK(!d[0].label_set);
  CHECK(d[1].values == std::vector<double>{1.0});
  CHECK(!d[1].text_b);
  CHECK(d[1].line == 2);
  CHECK(d[2].values.empty());
  CHECK(d[2].line == 4);
  CHECK(d[3].values.empty());
  CHECK(d[3].line == 5);

  // Several targets per row, as an array under "label" or "labels".
  const auto m = peft::read_task_jsonl(write(dir, "multi.jsonl",
                                             "{\"text\": \"x\", \"labels\": [0.5, -2]}\n"
                                             "{\"text\": \"y\", \"label\": [1, 2e3]}\n"
                                             "{\"text\": \"z\", \"labels\": null}\n"),
                                       peft::task_kind::regression);
  REQUIRE(m.size() == 3);
  CHECK(m[0].values == std::vector<double>{0.5, -2.0});
  CHECK(m[1].values == std::vector<double>{1.0, 2000.0});
  CHECK(m[2].values.empty());

  const std::vector<bad_case> cases = {
      {"count",
       "{\"text\": \"a\"}\n{\"text\": \"b\", \"label\": [1, 2]}\n{\"text\": \"c\", \"label\": null}\n"
       "{\"text\": \"d\", \"labels\": [1, 2, 3]}\n",
       {"line 4: targets expected 2 (as on line 2, the first labelled row), got 3"}},
      {"scalar_then_array",
       "{\"text\": \"a\", \"label\": 0.5}\n{\"text\": \"b\", \"labels\": [1, 2]}\n",
       {"line 2: targets expected 1 (as on line 1", "got 2"}},
      {"string",
       "{\"text\": \"a\", \"label\": \"3.5\"}\n",
       {"line 1: \"label\" expected a number, an array of numbers or null, got \"3.5\""}},
      {"bool", "{\"text\": \"a\", \"label\": true}\n", {"line 1: \"label\" expected a number", "got true"}},
      {"item",
       "{\"text\": \"a\", \"labels\": [1, \"3\"]}\n",
       {"line 1: \"labels\" item 2 expected a finite number, got \"3\""}},
      {"inf",
       "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 1e999}\n",
       {"line 2: valid JSON expected", "1e999"}},
      {"nan", "{\"text\": \"a\", \"label\": NaN}\n", {"line 1: valid JSON expected"}},
      {"empty",
       "{\"text\": \"a\", \"label\": []}\n",
       {"line 1: \"label\" expected at least one number, got []"}},
      {"both",
       "{\"text\": \"a\", \"label\": 1, \"labels\": [1]}\n",
       {"line 1: one of \"label\" and \"labels\" expected, got both"}},
      {"labels_scalar",
       "{\"text\": \"a\", \"labels\": 2.5}\n",
       {"line 1: \"labels\" expected an array of numbers or null, got 2.5"}},
      {"key", "{\"text\": \"a\", \"score\": 2.5}\n", {"line 1: keys \"text\"", "got \"score\""}},
      {"notext", "{\"label\": 2.5}\n", {"line 1: a \"text\" key expected, got none"}},
      {"emptytext", "{\"text\": \" \", \"label\": 2.5}\n", {"line 1: a non-empty \"text\" expected"}},
      {"array", "[1]\n", {"line 1: a JSON object expected, got [1]"}},
      {"utf8",
       "{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"caf\xE9\", \"label\": 1}\n",
       {"line 2: valid UTF-8 expected"}},
  };
  check_bad(dir, ".jsonl", "read_task_jsonl", cases,
            [](const std::string& p) { peft::read_task_jsonl(p, peft::task_kind::regression); });
}

TEST_CASE("task readers: multi-label JSON lines", "[data][task_readers]") {
  const std::string dir = peft_test::scratch_dir("task_multi_label");
  const auto d =
      peft::read_task_jsonl(write(dir, "news.jsonl",
                                  "{\"text\": \"Stocks fall as oil rises\", \"labels\": [\"business\", "
                                  "\"energy\"], \"id\": \"n1\"}\n"
                                  "{\"text\": \"Nothing relevant\", \"labels\": []}\n"
                                  "{\"text\": \"Unlabelled\", \"labels\": null}\n"
                                  "\n"
                                  "{\"text\": \"Old key\", \"text_b\": \"pair\", \"label\": [\"sports\"]}\n"
                                  "{\"text\": \"absent\"}\n"),
                            peft::task_kind::multi_label);
  REQUIRE(d.size() == 5);
  CHECK(d[0].label_set == std::optional<std::vector<std::string>>({"business", "energy"}));
  CHECK(!d[0].label);
  CHECK(d[0].values.empty());
  REQUIRE(d[1].label_set);  // labelled, with no labels
  CHECK(d[1].label_set->empty());
  CHECK(!d[2].label_set);
  CHECK(d[3].label_set == std::optional<std::vector<std::string>>({"sports"}));
  CHECK(d[3].text_b == std::optional<std::string>("pair"));
  CHECK(d[3].line == 5);
  CHECK(!d[4].label_set);

  const std::vector<bad_case> cases = {
      {"dup",
       "{\"text\": \"a\", \"labels\": [\"x\"]}\n{\"text\": \"b\", \"labels\": [\"x\", \"y\", \"x\"]}\n",
       {"line 2: \"labels\" expected distinct labels, got \"x\" twice"}},
      {"int",
       "{\"text\": \"a\", \"labels\": [\"x\", 3]}\n",
       {"line 1: \"labels\" item 2 expected a non-empty string (a label name), got 3"}},
      {"emptyname",
       "{\"text\": \"a\", \"labels\": [\"\"]}\n",
       {"line 1: \"labels\" item 1 expected a non-empty string"}},
      {"string",
       "{\"text\": \"a\", \"label\": \"sports\"}\n",
       {"line 1: \"label\" expected an array of label names or null, got \"sports\""}},
      {"both",
       "{\"text\": \"a\", \"labels\": [], \"label\": []}\n",
       {"line 1: one of \"label\" and \"labels\" expected, got both"}},
      {"key",
       "{\"text\": \"a\", \"tags\": [\"x\"]}\n",
       {"line 1: keys \"text\", \"text_b\", \"labels\"", "got \"tags\""}},
      {"json", "{\"text\": \"a\", \"labels\": [\"x\"}\n", {"line 1: valid JSON expected"}},
  };
  check_bad(dir, ".jsonl", "read_task_jsonl", cases,
            [](const std::string& p) { peft::read_task_jsonl(p, peft::task_kind::multi_label); });
}

TEST_CASE("task readers: classification rows and the kinds read_task_jsonl does not read",
          "[data][task_readers]") {
  const std::string dir = peft_test::scratch_dir("task_classification");
  const auto p = write(dir, "sst.jsonl",
                       "{\"text\": \"good film\", \"label\": \"pos\"}\n{\"text\": \"bad\", \"label\": 0}\n");
  const auto d = peft::read_task_jsonl(p, peft::task_kind::classification);
  REQUIRE(d.size() == 2);
  CHECK(d[0].label == std::optional<std::string>("pos"));
  CHECK(d[1].label == std::optional<std::string>("0"));
  CHECK(d[1].values.empty());
  CHECK(!d[1].label_set);
  // Errors are read_jsonl's own.
  CHECK_THAT(
      peft_test::message_of<peft::io_error>([&] {
        peft::read_task_jsonl(write(dir, "bad.jsonl", "{\"text\": \"x\", \"labels\": [\"a\"]}\n"),
                              peft::task_kind::classification);
      }),
      Catch::StartsWith("read_jsonl: ") && Catch::Contains("line 1") && Catch::Contains("got \"labels\""));
  for (auto kind : {peft::task_kind::token_classification, peft::task_kind::extractive_qa}) {
    CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::read_task_jsonl(p, kind); }),
               Catch::Contains("sequence-level kind") && Catch::Contains(peft::task_kind_name(kind)));
  }
  CHECK_THAT(peft_test::message_of<peft::io_error>(
                 [&] { peft::read_task_jsonl(dir + "/missing.jsonl", peft::task_kind::regression); }),
             Catch::Contains("missing.jsonl"));
}

TEST_CASE("task readers: token classification JSON lines", "[data][task_readers]") {
  const std::string dir = peft_test::scratch_dir("task_token_jsonl");
  const auto d = peft::read_token_jsonl(write(
      dir, "ner.jsonl",
      "{\"id\": \"0\", \"tokens\": [\"EU\", \"rejects\", \"German\", \"call\"], \"ner_tags\": [\"B-ORG\", "
      "\"O\", \"B-MISC\", \"O\"], \"pos_tags\": [22, 42, 16, 21]}\n"
      "{\"words\": [\"Peter\", \"Blackburn\"], \"tags\": [\"B-PER\", \"I-PER\"]}\r\n"
      "\n"
      "{\"tokens\": [\"Zürich\", \"und\", \"東京\"], \"tags\": null}\n"
      "{\"tokens\": [\"BRUSSELS\"]}"));
  REQUIRE(d.size() == 4);
  CHECK(d[0].words == std::vector<std::string>{"EU", "rejects", "German", "call"});
  CHECK(d[0].tags == std::vector<std::string>{"B-ORG", "O", "B-MISC", "O"});
  CHECK(d[0].line == 1);
  CHECK(d[1].words == std::vector<std::string>{"Peter", "Blackburn"});
  CHECK(d[1].tags == std::vector<std::string>{"B-PER", "I-PER"});
  CHECK(d[2].words == std::vector<std::string>{"Zürich", "und", "東京"});
  CHECK(d[2].tags.empty());
  CHECK(d[2].line == 4);
  CHECK(d[3].tags.empty());
  CHECK(d[3].line == 5);

  const std::vector<bad_case> cases = {
      {"count",
       "{\"tokens\": [\"a\"], \"tags\": [\"O\"]}\n{\"tokens\": [\"a\", \"b\", \"c\"], \"tags\": [\"O\", "
       "\"O\"]}\n",
       {"line 2: tags expected 3 (one per word), got 2"}},
      {"emptylist",
       "{\"tokens\": [], \"tags\": []}\n",
       {"line 1: \"tokens\" expected at least one word, got []"}},
      {"emptyword",
       "{\"tokens\": [\"a\", \"\"], \"tags\": [\"O\", \"O\"]}\n",
       {"line 1: \"tokens\" item 2 expected a non-empty word, got \"\""}},
      {"space",
       "{\"words\": [\"New York\"], \"tags\": [\"B-LOC\"]}\n",
       {"line 1: \"words\" item 1 expected a word without whitespace, got \"New York\""}},
      {"nbsp",
       "{\"words\": [\"New\xC2\xA0York\"], \"tags\": [\"B-LOC\"]}\n",
       {"line 1: \"words\" item 1 expected a word without whitespace"}},
      {"inttags",
       "{\"tokens\": [\"EU\", \"rejects\"], \"ner_tags\": [3, 0]}\n",
       {"line 1: \"ner_tags\" item 1 expected a tag name such as \"B-PER\", got the number 3",
        "tag names are needed"}},
      {"emptytag",
       "{\"tokens\": [\"EU\"], \"tags\": [\"\"]}\n",
       {"line 1: \"tags\" item 1 expected a non-empty tag name"}},
      {"tagstring",
       "{\"tokens\": [\"EU\"], \"tags\": \"B-ORG\"}\n",
       {"line 1: \"tags\" expected an array of tag names or null, got \"B-ORG\""}},
      {"wordint", "{\"tokens\": [\"EU\", 7]}\n", {"line 1: \"tokens\" item 2 expected a string, got 7"}},
      {"notokens", "{\"tags\": [\"O\"]}\n", {"line 1: a \"tokens\" key expected, got none"}},
      {"tokensnull", "{\"tokens\": null}\n", {"line 1: \"tokens\" expected an array of words, got null"}},
      {"both",
       "{\"tokens\": [\"a\"], \"words\": [\"a\"]}\n",
       {"line 1: one of \"tokens\" and \"words\" expected, got both"}},
      {"key", "{\"tokens\": [\"a\"], \"labels\": [\"O\"]}\n", {"line 1: keys \"tokens\"", "got \"labels\""}},
      {"json", "{\"tokens\": [\"a\"]\n", {"line 1: valid JSON expected"}},
      {"utf8", "{\"tokens\": [\"a\"]}\n\n{\"tokens\": [\"\xFF\"]}\n", {"line 3: valid UTF-8 expected"}},
  };
  check_bad(dir, ".jsonl", "read_token_jsonl", cases,
            [](const std::string& p) { peft::read_token_jsonl(p); });
}

TEST_CASE("task readers: CoNLL columns", "[data][task_readers]") {
  const std::string dir = peft_test::scratch_dir("task_conll");
  const auto d = peft::read_conll(write(dir, "eng.train",
                                        "-DOCSTART- -X- -X- O\n"  // 1
                                        "\n"                      // 2
                                        "EU NNP B-NP B-ORG\n"     // 3
                                        "rejects VBZ B-VP O\r\n"  // 4
                                        "German  JJ\tB-NP B-MISC\n"
                                        "call NN I-NP O\n"        // 6
                                        "\n"                      // 7
                                        "Peter\tB-PER\n"          // 8
                                        "Blackburn\tI-PER\n"      // 9
                                        "\n"                      // 10
                                        "  \t\n"                  // 11: blank too
                                        "-DOCSTART- -X- -X- O\n"  // 12
                                        "\n"                      // 13
                                        "Zürich\n"                // 14
                                        "東京"));                 // 15, no final newline
  REQUIRE(d.size() == 3);
  CHECK(d[0].words == std::vector<std::string>{"EU", "rejects", "German", "call"});
  CHECK(d[0].tags == std::vector<std::string>{"B-ORG", "O", "B-MISC", "O"});
  CHECK(d[0].line == 3);
  CHECK(d[1].words == std::vector<std::string>{"Peter", "Blackburn"});
  CHECK(d[1].tags == std::vector<std::string>{"B-PER", "I-PER"});
  CHECK(d[1].line == 8);
  CHECK(d[2].words == std::vector<std::string>{"Zürich", "東京"});
  CHECK(d[2].tags.empty());
  CHECK(d[2].line == 14);
  // A document break without a blank line before it still ends the sentence.
  const auto e = peft::read_conll(write(dir, "nobreak.conll", "a B-X\n-DOCSTART- O\nb O\n"));
  REQUIRE(e.size() == 2);
  CHECK(e[1].words == std::vector<std::string>{"b"});
  CHECK(e[1].line == 3);
  CHECK(peft::read_conll(write(dir, "empty.conll", "")).empty());

  const std::vector<bad_case> cases = {
      {"untagged_word",
       "EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn\n",
       {"line 5: a word and a tag expected (the sentence that starts on line 4 is tagged), got one column "
        "\"Blackburn\""}},
      {"tagged_word",
       "\nEU\nrejects O\n",
       {"line 3: one column (an untagged word) expected (the sentence that starts on line 2 is untagged), "
        "got 2 "
        "columns \"rejects O\""}},
      {"nbsp",
       "a O\nNew\xC2\xA0York B-LOC\n",
       {"line 2: a word without whitespace expected, got \"New\xC2\xA0York\""}},
      {"utf8", "a O\n\nb\xC3\x28 O\n", {"line 3: valid UTF-8 expected"}},
  };
  check_bad(dir, ".conll", "read_conll", cases, [](const std::string& p) { peft::read_conll(p); });
}

TEST_CASE("task readers: read_token_data picks the reader from the extension", "[data][task_readers]") {
  const std::string dir = peft_test::scratch_dir("task_token_data");
  CHECK(
      peft::read_token_data(write(dir, "a.JSONL", "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\", \"O\"]}\n"))
          .at(0)
          .words.size() == 2);
  for (const char* ext : {".conll", ".txt", ".iob", ".bio", ".tsv", ".BIO"}) {
    INFO(ext);
    const auto d = peft::read_token_data(write(dir, std::string("a") + ext, "a\tO\nb\tB-X\n"));
    REQUIRE(d.size() == 1);
    CHECK(d[0].tags == std::vector<std::string>{"O", "B-X"});
  }
  CHECK_THAT(
      peft_test::message_of<peft::invalid_argument>(
          [&] { peft::read_token_data(write(dir, "a.csv", "a,O\n")); }),
      Catch::Contains(".jsonl, .conll, .txt, .iob, .bio or .tsv expected") && Catch::Contains("\".csv\""));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::read_token_data(dir + "/noext"); }),
             Catch::Contains("(none)"));
}

TEST_CASE("task readers: SQuAD JSON, answer_start in characters", "[data][task_readers]") {
  const std::string dir = peft_test::scratch_dir("task_squad");
  // The emoji is written as a JSON surrogate pair: one character for SQuAD (and Python).
  const std::string file = R"json({"version": "v2.0", "data": [
 {"title": "ETH", "paragraphs": [
  {"context": "The ETH Zürich was founded in 1855 in Zürich, Switzerland.",
   "qas": [
    {"id": "q1", "question": "When was the ETH founded?", "is_impossible": false,
     "answers": [{"text": "1855", "answer_start": 30}, {"text": "1855", "answer_start": 30}]},
    {"id": "q2", "question": "In which country is Zürich?", "answers": [{"text": "Switzerland", "answer_start": 46}]},
    {"id": "q3", "question": "Who founded the ETH?", "answers": [], "is_impossible": true,
     "plausible_answers": [{"text": "Zürich", "answer_start": 8}]}]}]},
 {"title": "Tokyo", "paragraphs": [
  {"context": "東京は日本の首都です。Tokyo has been the capital of Japan \ud83d\uddfe since 1868.",
   "qas": [
    {"id": "q4", "question": "Since when?", "answers": [{"text": "1868", "answer_start": 55}]},
    {"id": "q5", "question": "Which city?", "answers": [{"text": "東京", "answer_start": 0}, {"text": "Tokyo", "answer_start": 11}]}]}]}]})json";
  const auto d = peft::read_squad_json(write(dir, "dev-v2.0.json", file));
  REQUIRE(d.size() == 5);
  CHECK(d[0].id == "q1");
  CHECK(d[0].question == "When was the ETH founded?");
  CHECK(d[0].context == zurich);
  CHECK(!d[0].impossible);
  REQUIRE(d[0].answers.size() == 2);
  CHECK(d[0].answers[0].text == "1855");
  CHECK(d[0].answers[0].start == 31);  // character 30: "ü" is two bytes
  CHECK(d[0].line == 1);
  REQUIRE(d[1].answers.size() == 1);
  CHECK(d[1].answers[0].start == 48);  // character 46, after two "ü"
  CHECK(d[2].impossible);
  CHECK(d[2].answers.empty());
  CHECK(d[2].line == 3);
  CHECK(d[3].context == tokyo);
  REQUIRE(d[3].answers.size() == 1);
  CHECK(d[3].answers[0].start == 80);  // character 55: 11 CJK characters of 3 bytes, the emoji of 4
  CHECK(d[3].line == 4);
  REQUIRE(d[4].answers.size() == 2);
  CHECK(d[4].answers[0].start == 0);
  CHECK(d[4].answers[1].start == 33);
  for (const auto& ex : d)
    for (const auto& a : ex.answers) CHECK(ex.context.substr(a.start, a.text.size()) == a.text);
  CHECK(peft::read_qa_data(write(dir, "DEV.JSON", file)).size() == 5);

  // A test file: no question has answers, so all are unlabelled.
  const auto t = peft::read_squad_json(write(
      dir, "test.json",
      squad1(zurich,
             R"({"id": "t1", "question": "When?"}, {"id": "t2", "question": "Where?", "answers": []})")));
  REQUIRE(t.size() == 2);
  CHECK(t[0].answers.empty());
  CHECK(!t[0].impossible);
  CHECK(t[1].line == 2);

  const std::string q1 =
      R"({"id": "q1", "question": "When?", "answers": [{"text": "1855", "answer_start": 30}]})";
  const std::vector<bad_case> cases = {
      // Byte offset 31 where SQuAD counts characters.
      {"bytes",
       squad1(
           zurich,
           q1 + R"(, {"id": "q2", "question": "When?", "answers": [{"text": "1855", "answer_start": 31}]})"),
       {"question 2 (id \"q2\"): answer 1: answer \"1855\" expected at character 31 (byte 32) of the "
        "context, "
        "found \"855 \""}},
      {"cjk",
       squad1(tokyo,
              R"({"id": "k", "question": "Since?", "answers": [{"text": "1868", "answer_start": 80}]})"),
       {"question 1 (id \"k\"): answer 1: answer_start expected at most 60 (the context's length in "
        "characters), "
        "got 80"}},
      {"negative",
       squad1(zurich,
              R"({"id": "q1", "question": "When?", "answers": [{"text": "1855", "answer_start": -1}]})"),
       {"question 1 (id \"q1\"): answer 1: answer_start expected a non-negative integer, got -1"}},
      {"startstring",
       squad1(zurich,
              R"({"id": "q1", "question": "When?", "answers": [{"text": "1855", "answer_start": "30"}]})"),
       {"answer_start expected a non-negative integer, got \"30\""}},
      {"emptytext",
       squad1(zurich, R"({"id": "q1", "question": "When?", "answers": [{"text": "", "answer_start": 0}]})"),
       {"question 1 (id \"q1\"): answer 1: answer text expected a non-empty string, got \"\""}},
      {"impossible",
       squad1(
           zurich,
           R"({"id": "q1", "question": "When?", "is_impossible": true, "answers": [{"text": "1855", "answer_start": 30}]})"),
       {"question 1 (id \"q1\"): no answers expected for an unanswerable question", "got 1"}},
      {"impossible_type",
       squad1(zurich, R"({"id": "q1", "question": "When?", "is_impossible": "yes", "answers": []})"),
       {"question 1 (id \"q1\"): \"is_impossible\" expected true, false or null, got \"yes\""}},
      {"missing_answers",
       squad1(zurich, q1 + R"(, {"id": "q2", "question": "Where?", "answers": []})"),
       {"question 2 (id \"q2\"): answers expected (the file is labelled: question 1", "got none"}},
      {"missing_after_impossible",
       squad1(
           zurich,
           R"({"id": "a", "question": "Who?", "is_impossible": true, "answers": []}, {"id": "b", "question": "When?"})"),
       {"question 2 (id \"b\"): answers expected"}},
      {"answers_object",
       squad1(zurich, R"({"id": "q1", "question": "When?", "answers": {"text": ["1855"]}})"),
       {"question 1 (id \"q1\"): \"answers\" expected an array"}},
      {"dup",
       squad1(zurich, q1 + ", " + q1),
       {"question 2 (id \"q1\"): a unique id expected, got the id of question 1"}},
      {"noid",
       squad1(zurich, R"({"question": "When?", "answers": []})"),
       {"question 1: \"id\" expected a non-empty string or an integer, got null"}},
      {"emptyquestion",
       squad1(zurich, R"({"id": "q1", "question": "  ", "answers": []})"),
       {"question 1 (id \"q1\"): a non-empty \"question\" expected"}},
      {"emptycontext", squad1("", q1), {"data[0].paragraphs[0]: a non-empty \"context\" expected"}},
      {"noqas",
       R"({"data": [{"paragraphs": [{"context": "c"}, {"context": "c", "qas": 3}]}]})",
       {"data[0].paragraphs[0]: a \"qas\" array expected, got null"}},
      {"noparagraphs",
       R"({"data": [{"paragraphs": []}, {"title": "x"}]})",
       {"data[1]: a \"paragraphs\" array expected, got null"}},
      {"nodata", R"({"version": "1.1"})", {"a top-level object with a \"data\" array expected"}},
      {"json", "{\"data\": [\n{\"paragraphs\": ]}", {"valid JSON expected"}},
      {"utf8",
       "{\"data\": [\n{\"paragraphs\": []},\n{\"title\": \"\xC3\"}]}",
       {"line 3: valid UTF-8 expected"}},
  };
  check_bad(dir, ".json", "read_squad_json", cases, [](const std::string& p) { peft::read_squad_json(p); });
}

TEST_CASE("task readers: QA JSON lines in the Hugging Face layout", "[data][task_readers]") {
  const std::string dir = peft_test::scratch_dir("task_qa_jsonl");
  const std::string z = "\"context\": \"" + zurich + "\"";
  const std::string k = "\"context\": \"" + tokyo + "\"";  // the emoji as raw UTF-8 this time
  const auto d = peft::read_qa_jsonl(
      write(dir, "squad.jsonl",
            "{\"id\": \"a1\", \"title\": \"ETH\", \"question\": \"When was the ETH founded?\", " + z +
                ", \"answers\": {\"text\": [\"1855\"], \"answer_start\": [30]}}\n"
                "{\"id\": \"a2\", \"question\": \"Since when?\", " +
                k +
                ", \"answers\": {\"text\": [\"1868\", \"Tokyo\"], \"answer_start\": [55, 11]}}\r\n"
                "\n"
                "{\"id\": \"a3\", \"question\": \"Who?\", " +
                z +
                ", \"answers\": {\"text\": [], \"answer_start\": []}}\n"
                "{\"id\": \"a4\", \"question\": \"Who?\", " +
                z +
                "}\n"
                "{\"id\": 17, \"question\": \"Who?\", " +
                z + ", \"answers\": null}"));
  REQUIRE(d.size() == 5);
  CHECK(d[0].id == "a1");
  CHECK(d[0].context == zurich);
  REQUIRE(d[0].answers.size() == 1);
  CHECK(d[0].answers[0].start == 31);
  CHECK(!d[0].impossible);
  CHECK(d[1].context == tokyo);
  REQUIRE(d[1].answers.size() == 2);
  CHECK(d[1].answers[0].start == 80);
  CHECK(d[1].answers[1].start == 33);
  CHECK(d[1].line == 2);
  CHECK(d[2].impossible);
  CHECK(d[2].answers.empty());
  CHECK(d[2].line == 4);
  CHECK(!d[3].impossible);
  CHECK(d[3].answers.empty());
  CHECK(d[4].id == "17");
  CHECK(d[4].line == 6);
  CHECK(
      peft::read_qa_data(write(dir, "x.jsonl", "{\"id\": \"a\", \"question\": \"q\", " + z + "}\n")).size() ==
      1);
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::read_qa_data(dir + "/x.csv"); }),
             Catch::Contains(".json (SQuAD) or .jsonl expected") && Catch::Contains("\".csv\""));

  const std::string ok = "{\"id\": \"a1\", \"question\": \"When?\", " + z + "}\n";
  const std::vector<bad_case> cases = {
      {"lengths",
       ok + "{\"id\": \"a2\", \"question\": \"When?\", " + z +
           ", \"answers\": {\"text\": [\"1855\", \"1855\"], \"answer_start\": [30]}}\n",
       {"line 2 (id \"a2\"): \"answers\" \"text\" and \"answer_start\" expected of equal length, got 2 and "
        "1"}},
      {"bytes",
       "{\"id\": \"a1\", \"question\": \"Since?\", " + k +
           ", \"answers\": {\"text\": [\"Tokyo\"], \"answer_start\": [33]}}\n",
       {"line 1 (id \"a1\"): answer 1: answer \"Tokyo\" expected at character 33 (byte 55) of the context, "
        "found "
        "\"ital \""}},
      {"start_float",
       "{\"id\": \"a1\", \"question\": \"When?\", " + z +
           ", \"answers\": {\"text\": [\"1855\"], \"answer_start\": [30.0]}}\n",
       {"line 1 (id \"a1\"): answer 1: answer_start expected a non-negative integer, got 30.0"}},
      {"squad_style",
       "{\"id\": \"a1\", \"question\": \"When?\", " + z +
           ", \"answers\": [{\"text\": \"1855\", \"answer_start\": 30}]}\n",
       {"line 1 (id \"a1\"): \"answers\" expected an object"}},
      {"answers_key",
       "{\"id\": \"a1\", \"question\": \"When?\", " + z +
           ", \"answers\": {\"text\": [], \"answer_start\": [], \"answer_end\": []}}\n",
       {"\"answers\" keys \"text\" and \"answer_start\" expected, got \"answer_end\""}},
      {"texts_missing",
       "{\"id\": \"a1\", \"question\": \"When?\", " + z + ", \"answers\": {\"answer_start\": []}}\n",
       {"\"answers\".\"text\" expected an array, got null"}},
      {"key",
       ok + "{\"id\": \"a2\", \"question\": \"When?\", " + z + ", \"answer\": null}\n",
       {"line 2: keys \"id\", \"question\", \"context\", \"answers\" (and \"title\") expected, got "
        "\"answer\""}},
      {"noid", "{\"question\": \"When?\", " + z + "}\n", {"line 1: an \"id\" key expected, got none"}},
      {"emptyid",
       "{\"id\": \"\", \"question\": \"When?\", " + z + "}\n",
       {"line 1: \"id\" expected a non-empty string or an integer, got \"\""}},
      {"dup", ok + "\n" + ok, {"line 3 (id \"a1\"): a unique id expected, got the id of line 1"}},
      {"nocontext",
       "{\"id\": \"a1\", \"question\": \"When?\"}\n",
       {"line 1 (id \"a1\"): \"context\" expected a string, got null"}},
      {"noquestion",
       "{\"id\": \"a1\", \"question\": \"\", " + z + "}\n",
       {"line 1 (id \"a1\"): a non-empty \"question\" expected"}},
      {"json", ok + "{\"id\": \"a2\",\n", {"line 2: valid JSON expected"}},
      {"utf8", ok + ok.substr(0, 20) + "\xE6\x9D" + "\n", {"line 2: valid UTF-8 expected"}},
  };
  check_bad(dir, ".jsonl", "read_qa_jsonl", cases, [](const std::string& p) { peft::read_qa_jsonl(p); });
}
