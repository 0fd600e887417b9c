// SPDX-License-Identifier: Apache-2.0
// Data readers (real npm fixtures and hand-made malformed files), label maps, few-shot splits
// and length-bucketed batching.
#include "test_common.hpp"

#include <peft/data/data.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

namespace {

std::string sentiment_path(const std::string& name) {
  return peft_test::assets_dir() + "/sentiment/test/fixtures/" + name + ".json";
}
std::string chatbot_path() {
  return peft_test::assets_dir() +
         "/wink-naive-bayes-text-classifier/chatbot-example/chatbot-training-data.json";
}

/// Writes `bytes` to `dir/name` and returns the path.
std::string write(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir + "/" + name;
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  return path;
}


std::set<std::size_t> as_set(const std::vector<std::size_t>& v) { return {v.begin(), v.end()}; }

bool disjoint(const std::vector<std::size_t>& a, const std::vector<std::size_t>& b) {
  const auto sa = as_set(a);
  return std::none_of(b.begin(), b.end(), [&](std::size_t i) { return sa.count(i) != 0; });
}

}  // namespace

TEST_CASE("data: the npm sentiment fixtures", "[data][readers]") {
  for (const char* name : {"imdb", "yelp", "amazon"}) {
    INFO(name);
    const auto data = peft::read_sentiment_json(sentiment_path(name));
    REQUIRE(data.size() == 1000);  // 1001 entries, the empty last one dropped
    const auto counts = peft::label_counts(data);
    CHECK(counts.size() == 2);
    CHECK(counts.at("0") == 500);
    CHECK(counts.at("1") == 500);
    CHECK(std::none_of(data.begin(), data.end(), [](const peft::example& e) {
      return e.text.empty() || e.text.back() == ' ' || e.text_b.has_value();
    }));
    CHECK(data.front().line == 1);
    CHECK(data.back().line == 1000);
    // read_dataset recognises the format from the top-level array.
    const auto again = peft::read_dataset(sentiment_path(name));
    REQUIRE(again.size() == data.size());
    CHECK(again[17].text == data[17].text);
  }
  const auto imdb = peft::read_sentiment_json(sentiment_path("imdb"));
  CHECK(imdb[0].text ==
        "A very, very, very slow-moving, aimless movie about a distressed, drifting young man.");
  CHECK(imdb[0].label == std::optional<std::string>("0"));
}

TEST_CASE("data: the wink chatbot corpus and its train/test flag", "[data][readers]") {
  const auto all = peft::read_chatbot_json(chatbot_path());
  const auto train = peft::read_chatbot_json(chatbot_path(), peft::chatbot_split::train);
  const auto test = peft::read_chatbot_json(chatbot_path(), peft::chatbot_split::test);
  CHECK(all.size() == 206);
  CHECK(train.size() == 100);
  CHECK(test.size() == 106);
  CHECK(peft::label_counts(train) ==
        std::map<std::string, std::size_t>{{"DepartureTime", 43}, {"FindConnection", 57}});
  CHECK(peft::label_counts(test) ==
        std::map<std::string, std::size_t>{{"DepartureTime", 35}, {"FindConnection", 71}});
  CHECK(all[0].text == "i want to go marienplatz");
  CHECK(all[0].label == std::optional<std::string>("FindConnection"));
  CHECK(all[0].line == 1);
  CHECK(test[0].line == 1);
  // The splits partition the corpus.
  std::set<std::size_t> lines;
  for (const auto& e : train) lines.insert(e.line);
  for (const auto& e : test) CHECK(lines.insert(e.line).second);
  CHECK(lines.size() == 206);
  CHECK(peft::read_dataset(chatbot_path()).size() == 206);
}

TEST_CASE("data: JSON lines", "[data][readers]") {
  const std::string dir = peft_test::scratch_dir("data_jsonl");
  const auto path = write(dir, "ok.jsonl",
                          "{\"text\": \"good film\", \"label\": \"pos\"}\n"
                          "{\"text\": \"bad film\", \"label\": 0, \"id\": 7}\r\n"
                          "\n"
                          "{\"text\": \"a\", \"text_b\": \"b\", \"label\": null}\n"
                          "{\"text\": \"c\", \"text_b\": \"\", \"label\": -3}");  // no final newline
  const auto d = peft::read_jsonl(path);
  REQUIRE(d.size() == 4);
  CHECK(d[0].text == "good film");
  CHECK(d[0].label == std::optional<std::string>("pos"));
  CHECK(d[1].label == std::optional<std::string>("0"));
  CHECK(d[1].line == 2);
  CHECK(d[2].line == 4);
  CHECK(d[2].text_b == std::optional<std::string>("b"));
  CHECK(!d[2].label);
  CHECK(!d[3].text_b);
  CHECK(d[3].label == std::optional<std::string>("-3"));
  CHECK(d[3].line == 5);
  CHECK(peft::read_dataset(write(dir, "UPPER.JSONL", "{\"text\": \"x\"}\n")).size() == 1);

  struct bad_case {
    const char* name;
    std::string content;
    std::string expect;
  };
  const std::vector<bad_case> cases = {
      {"json", "{\"text\": \"x\", \"label\": 1}\n{\"text\": \"y\" \"label\": 1}\n",
       "line 2: valid JSON expected"},
      {"array", "[\"x\"]\n", "line 1: a JSON object expected"},
      {"notext", "{\"text\": \"x\"}\n\n{\"label\": 1}\n", "line 3: a \"text\" key expected"},
      {"emptytext", "{\"text\": \"   \", \"label\": 1}\n", "line 1: a non-empty \"text\" expected"},
      {"textnum", "{\"text\": 5}\n", "\"text\" expected a string, got 5"},
      {"labelbool", "{\"text\": \"x\", \"label\": true}\n",
       "\"label\" expected a string, an integer or null, got true"},
      {"labelfloat", "{\"text\": \"x\", \"label\": 1.5}\n", "got 1.5"},
      {"labelempty", "{\"text\": \"x\", \"label\": \"\"}\n", "\"label\" expected a non-empty string"},
      {"class", "{\"text\": \"x\", \"class\": 1}\n", "got \"class\""},
      {"textb", "{\"text\": \"x\", \"text_b\": [1]}\n", "\"text_b\" expected a string or null"},
      {"utf8", "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": \"caf\xE9\"}\n",
       "line 3: valid UTF-8 expected"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto p = write(dir, std::string(c.name) + ".jsonl", c.content);
    const std::string msg = peft_test::message_of<peft::io_error>([&] { peft::read_jsonl(p); });
    CHECK_THAT(msg, Catch::StartsWith("read_jsonl: " + p) && Catch::Contains(c.expect));
  }
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_jsonl(dir + "/missing.jsonl"); }), Catch::Contains("missing.jsonl"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("data: TSV with a header", "[data][readers]") {
  const std::string dir = peft_test::scratch_dir("data_tsv");
  const auto d = peft::read_tsv(write(dir, "sst.tsv",
                                      "sentence\tlabel\r\n"
                                      "a gripping film\t1\r\n"
                                      "\r\n"
                                      "a \"quoted\" dull film\t0\r\n"
                                      "no label here\t\r\n"));
  REQUIRE(d.size() == 3);
  CHECK(d[0].text == "a gripping film");
  CHECK(d[0].label == std::optional<std::string>("1"));
  CHECK(d[0].line == 2);
  CHECK(d[1].text == "a \"quoted\" dull film");  // TSV has no quoting
  CHECK(d[1].line == 4);
  CHECK(!d[2].label);
  const auto pair = peft::read_dataset(write(dir, "rte.tsv",
                                             "index\tsentence1\tsentence2\tlabel\n"
                                             "0\tA man sleeps.\tA man is awake.\tnot_entailment\n"
                                             "1\tIt rains.\t\tentailment\n"));
  REQUIRE(pair.size() == 2);
  CHECK(pair[0].text == "A man sleeps.");
  CHECK(pair[0].text_b == std::optional<std::string>("A man is awake."));
  CHECK(pair[0].label == std::optional<std::string>("not_entailment"));
  CHECK(!pair[1].text_b);

  struct bad_case {
    const char* name;
    std::string content;
    std::string expect;
  };
  const std::vector<bad_case> cases = {
      {"count", "text\tlabel\nfine\t1\nextra\t1\tfield\n",
       "line 3: fields expected 2 (as in the header), got 3"},
      {"short", "text\tlabel\n\nfine\t1\nonly text\n", "line 4: fields expected 2 (as in the header), got 1"},
      {"header", "review\tlabel\nfine\t1\n",
       "line 1: a header with a text column (text, sentence or sentence1) expected, got \"review\", "
       "\"label\""},
      {"twotext", "text\tsentence\tlabel\na\tb\t1\n",
       "one text column expected in the header, got \"text\" and \"sentence\""},
      {"emptytext", "text\tlabel\n\t1\n", "line 2: a non-empty text expected"},
      {"utf8", "text\tlabel\nok\t1\nbad \xC3\x28\t1\n", "line 3: valid UTF-8 expected"},
      {"empty", "", "a header row expected, got an empty file"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto p = write(dir, std::string(c.name) + ".tsv", c.content);
    CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_tsv(p); }),
               Catch::StartsWith("read_tsv: " + p) && Catch::Contains(c.expect));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("data: CSV with RFC 4180 quoting", "[data][readers]") {
  const std::string dir = peft_test::scratch_dir("data_csv");
  for (const char* eol : {"\n", "\r\n"}) {
    const std::string e = eol;
    const auto d = peft::read_csv(write(dir, "ok.csv",
                                        "label,text" + e +                           // line 1
                                            "1,\"Hello, world\"" + e +               // 2
                                            "0,\"He said \"\"hi\"\"\"" + e +         // 3
                                            "1,\"line one" + e + "line two\"" + e +  // 4-5
                                            e +                                      // 6 (blank)
                                            "0,plain text" + e +                     // 7
                                            ",\"\"\"quoted\"\" start\""));           // 8, no final line end
    REQUIRE(d.size() == 5);
    CHECK(d[0].text == "Hello, world");
    CHECK(d[0].line == 2);
    CHECK(d[1].text == "He said \"hi\"");
    CHECK(d[2].text == "line one" + e + "line two");
    CHECK(d[2].line == 4);
    CHECK(d[3].text == "plain text");
    CHECK(d[3].line == 7);
    CHECK(d[4].text == "\"quoted\" start");
    CHECK(!d[4].label);
    CHECK(d[4].line == 8);
  }
  const auto pair = peft::read_dataset(write(dir, "pair.csv", "text,text_b,label\n\"a, b\",c,yes\nd,,no\n"));
  REQUIRE(pair.size() == 2);
  CHECK(pair[0].text_b == std::optional<std::string>("c"));
  CHECK(!pair[1].text_b);

  struct bad_case {
    const char* name;
    std::string content;
    std::string expect;
  };
  const std::vector<bad_case> cases = {
      {"unterminated", "text,label\nfine,1\n\"never closed,1\nmore,0\n", "line 3: a closing quote expected"},
      {"after", "text,label\n\"abc\"def,1\n",
       "line 2: a comma or a line end expected after a closing quote, got 'd'"},
      {"inner", "text,label\nab\"c,1\n", "line 2: no quote inside an unquoted field expected"},
      {"count", "text,label\n\"multi\nline\",1\nx,1,2\n",
       "line 4: fields expected 2 (as in the header), got 3"},
      {"header", "label,review\n1,x\n", "a header with a text column"},
      {"emptytext", "label,text\n1,\"\"\n", "line 2: a non-empty text expected"},
      {"utf8", "text,label\n\"ok\",1\n\"bad \xED\xA0\x80 surrogate\",1\n", "line 3: valid UTF-8 expected"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto p = write(dir, std::string(c.name) + ".csv", c.content);
    CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_csv(p); }),
               Catch::StartsWith("read_csv: " + p) && Catch::Contains(c.expect));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("data: read_dataset dispatch and JSON shape errors", "[data][readers]") {
  const std::string dir = peft_test::scratch_dir("data_dispatch");
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::read_dataset(write(dir, "a.txt", "x")); }),
             Catch::Contains(".jsonl, .tsv, .csv or .json") && Catch::Contains("\".txt\""));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::read_dataset(dir + "/noext"); }),
             Catch::Contains("(none)"));
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_dataset(write(dir, "obj.json", "{\"rows\": []}")); }),
             Catch::Contains("a JSON array of {text, class} or an object with \"sentences\""));
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_dataset(write(dir, "broken.json", "[{\"text\": \"x\", ")); }),
             Catch::Contains("valid JSON expected"));
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] {
               peft::read_sentiment_json(write(dir, "s.json", "[{\"text\": \"ok\", \"class\": 1}, 7]"));
             }),
             Catch::Contains("entry 2: an object expected, got 7"));
  CHECK_THAT(
      peft_test::message_of<peft::io_error>([&] { peft::read_sentiment_json(write(dir, "s2.json", "[{\"text\": \"\", \"class\": 1}]")); }),
      Catch::Contains("entry 1: a non-empty \"text\" expected"));
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] {
               peft::read_chatbot_json(
                   write(dir, "c.json", "{\"sentences\": [{\"text\": \"hi\", \"intent\": \"x\"}]}"));
             }),
             Catch::Contains("entry 1: \"training\" expected true or false, got none"));
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::read_dataset(dir + "/missing.csv"); }), Catch::Contains("missing.csv"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("label_map: sorted, stable ids saved as JSON", "[data][labels]") {
  const auto imdb = peft::read_sentiment_json(sentiment_path("imdb"));
  const auto m = peft::label_map::from_dataset(imdb);
  CHECK(m.labels() == std::vector<std::string>{"0", "1"});
  // The order depends on the set of labels only, not on the row order.
  auto reversed = imdb;
  std::reverse(reversed.begin(), reversed.end());
  CHECK(peft::label_map::from_dataset(reversed) == m);
  CHECK(peft::label_map::from_labels({"10", "2", "-1", "0", "2"}).labels() ==
        std::vector<std::string>{"-1", "0", "2", "10"});
  CHECK(peft::label_map::from_labels({"b", "a", "10", "2"}).labels() ==
        std::vector<std::string>{"10", "2", "a", "b"});
  const auto chat = peft::label_map::from_dataset(peft::read_chatbot_json(chatbot_path()));
  CHECK(chat.labels() == std::vector<std::string>{"DepartureTime", "FindConnection"});
  // Given orders are kept.
  const peft::label_map given({"positive", "negative"});
  CHECK(given.id("negative") == 1);
  CHECK(given.label(0) == "positive");
  const auto ids = m.encode(imdb);
  CHECK(std::count(ids.begin(), ids.end(), 1) == 500);

  // Unknown labels at predict time.
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { m.id("2"); }),
             Catch::Contains("a known label (one of \"0\", \"1\") expected, got \"2\""));
  peft::dataset test = {{"fine", std::nullopt, std::string("1"), 3},
                        {"odd", std::nullopt, std::string("neutral"), 7}};
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { m.encode(test, "test.jsonl"); }),
             Catch::Contains("test.jsonl line 7") && Catch::Contains("got \"neutral\""));
  test[1].label.reset();
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { m.encode(test); }),
             Catch::Contains("example 1: a label expected, got an unlabelled example"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { m.label(2); }), Catch::Contains("id in [0, size)"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] {
               peft::label_map({"a", "b", "a"});
             }),
             Catch::Contains("\"a\" twice"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::label_map(std::vector<std::string>{}); }),
             Catch::Contains("at least 1"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] {
               peft::label_map::from_dataset(peft::dataset{{"x", {}, {}, 1}});
             }),
             Catch::Contains("none labelled"));

  // JSON and file round trips.
  CHECK(m.to_json().dump() == "{\"labels\":[\"0\",\"1\"]}");
  CHECK(peft::label_map::from_json(given.to_json()) == given);
  const std::string dir = peft_test::scratch_dir("data_labels");
  given.save(dir + "/labels.json");
  CHECK(peft::label_map::load(dir + "/labels.json") == given);
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] {
               peft::label_map::from_json({{"labels", {"a", 1}}});
             }),
             Catch::Contains("labels[1] expected a string, got 1"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::label_map::from_json(nlohmann::json::array()); }),
             Catch::Contains("\"labels\" array"));
  write(dir, "bad.json", "{\"labels\": [\"a\", \"a\"]}");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::label_map::load(dir + "/bad.json"); }),
             Catch::Contains(dir + "/bad.json") && Catch::Contains("twice"));
  write(dir, "notjson.json", "labels: a");
  CHECK_THAT(peft_test::message_of<peft::io_error>([&] { peft::label_map::load(dir + "/notjson.json"); }),
             Catch::Contains("valid JSON expected"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("few-shot: K per class, K in total, pool and test split", "[data][few_shot]") {
  const auto imdb = peft::read_sentiment_json(sentiment_path("imdb"));
  peft::few_shot_options opt;
  opt.shots = 16;
  opt.seed = 1;
  const auto s1 = peft::sample_few_shot(imdb, opt);
  REQUIRE(s1.labeled.size() == 32);
  CHECK(peft::label_counts(peft::subset(imdb, s1.labeled)) ==
        std::map<std::string, std::size_t>{{"0", 16}, {"1", 16}});
  CHECK(s1.unlabeled.size() == 968);
  CHECK(s1.test.empty());
  CHECK(disjoint(s1.labeled, s1.unlabeled));
  CHECK(std::is_sorted(s1.labeled.begin(), s1.labeled.end()));
  CHECK(as_set(s1.labeled).size() == 32);
  // Deterministic for a seed; another seed gives another sample.
  const auto again = peft::sample_few_shot(imdb, opt);
  CHECK(again.labeled == s1.labeled);
  CHECK(again.unlabeled == s1.unlabeled);
  opt.seed = 2;
  const auto s2 = peft::sample_few_shot(imdb, opt);
  CHECK(s2.labeled != s1.labeled);

  // LiST: K in total, any class mix; a fixed test split shared by every seed; a capped pool.
  opt.mode = peft::shots_mode::total;
  opt.shots = 30;
  opt.test_size = 200;
  opt.test_seed = 1234;
  opt.pool_size = 300;
  std::vector<std::size_t> first_test;
  std::set<std::vector<std::size_t>> samples;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    opt.seed = seed;
    const auto s = peft::sample_few_shot(imdb, opt);
    CHECK(s.labeled.size() == 30);
    CHECK(s.test.size() == 200);
    CHECK(s.unlabeled.size() == 300);
    CHECK(disjoint(s.labeled, s.unlabeled));
    CHECK(disjoint(s.labeled, s.test));
    CHECK(disjoint(s.unlabeled, s.test));
    if (seed == 1) first_test = s.test;
    CHECK(s.test == first_test);
    samples.insert(s.labeled);
    const auto c = peft::label_counts(peft::subset(imdb, s.test));
    CHECK(c.at("0") + c.at("1") == 200);
  }
  CHECK(samples.size() == 5);
  // Without a pool cap the three parts cover every row.
  opt.pool_size.reset();
  const auto full = peft::sample_few_shot(imdb, opt);
  CHECK(full.labeled.size() + full.unlabeled.size() + full.test.size() == imdb.size());

  // Unlabelled rows can only go to the pool.
  peft::dataset mixed = peft::subset(imdb, {0, 1, 2, 500, 501, 502});
  mixed.push_back({"unlabelled one", std::nullopt, std::nullopt, 7});
  peft::few_shot_options small;
  small.shots = 2;
  const auto sm = peft::sample_few_shot(mixed, small);
  CHECK(sm.labeled.size() == 4);
  CHECK(std::count(sm.unlabeled.begin(), sm.unlabeled.end(), 6) == 1);
  CHECK(peft::unlabeled_subset(mixed, sm.unlabeled).size() == 3);
  CHECK(!peft::unlabeled_subset(mixed, sm.unlabeled)[0].label);

  // Chatbot intents: K per class from the training part only.
  const auto train = peft::read_chatbot_json(chatbot_path(), peft::chatbot_split::train);
  small.shots = 8;
  const auto cs = peft::sample_few_shot(train, small);
  CHECK(peft::label_counts(peft::subset(train, cs.labeled)) ==
        std::map<std::string, std::size_t>{{"DepartureTime", 8}, {"FindConnection", 8}});

  // Not enough data.
  small.shots = 44;
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::sample_few_shot(train, small); }),
             Catch::Contains("class \"DepartureTime\"") && Catch::Contains("at least 44, got 43"));
  small.shots = 0;
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::sample_few_shot(train, small); }),
             Catch::Contains("shots"));
  small.shots = 10;
  small.test_size = 101;
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::sample_few_shot(train, small); }),
             Catch::Contains("test_size expected at most the 100 labelled examples, got 101"));
  small.test_size = 95;
  small.mode = peft::shots_mode::total;
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::sample_few_shot(train, small); }),
             Catch::Contains("at least 10, got 5"));
  CHECK_THAT(peft_test::message_of<peft::invalid_argument>([&] { peft::subset(train, {100}); }),
             Catch::Contains("got 100"));
}

TEST_CASE("batching: sequential and length-bucketed batches", "[data][batching]") {
  const auto seq = peft::sequential_batches(10, 4);
  REQUIRE(seq.size() == 3);
  CHECK(seq[0] == std::vector<std::size_t>{0, 1, 2, 3});
  CHECK(seq[2] == std::vector<std::size_t>{8, 9});
  CHECK(peft::sequential_batches(0, 4).empty());
  CHECK_THROWS_AS(peft::sequential_batches(3, 0), peft::invalid_argument);

  // Word counts of the real IMDb sentences stand in for token lengths.
  const auto imdb = peft::read_sentiment_json(sentiment_path("imdb"));
  std::vector<std::size_t> lengths;
  for (const auto& e : imdb)
    lengths.push_back(static_cast<std::size_t>(std::count(e.text.begin(), e.text.end(), ' ') + 1));
  const peft::length_batch_sampler bucketed(lengths, 16, 7);
  const peft::length_batch_sampler random(lengths, 16, 7, 1);
  CHECK(bucketed.num_batches() == 63);
  auto padding = [&](const std::vector<std::vector<std::size_t>>& batches) {
    std::size_t waste = 0;
    for (const auto& b : batches) {
      std::size_t longest = 0;
      for (std::size_t i : b) longest = std::max(longest, lengths[i]);
      for (std::size_t i : b) waste += longest - lengths[i];
    }
    return waste;
  };
  std::size_t waste_bucketed = 0, waste_random = 0;
  for (std::uint64_t e = 0; e < 3; ++e) {
    const auto batches = bucketed.epoch(e);
    CHECK(batches.size() == 63);
    std::vector<std::size_t> seen;
    for (const auto& b : batches) {
      CHECK(!b.empty());
      CHECK(b.size() <= 16);
      seen.insert(seen.end(), b.begin(), b.end());
    }
    std::sort(seen.begin(), seen.end());
    std::vector<std::size_t> all(1000);
    std::iota(all.begin(), all.end(), std::size_t{0});
    CHECK(seen == all);                   // every example exactly once per epoch
    CHECK(bucketed.epoch(e) == batches);  // deterministic
    waste_bucketed += padding(batches);
    waste_random += padding(random.epoch(e));
  }
  CHECK(bucketed.epoch(0) != bucketed.epoch(1));
  CHECK(peft::length_batch_sampler(lengths, 16, 8).epoch(0) != bucketed.epoch(0));
  INFO("padding tokens over 3 epochs: bucketed " << waste_bucketed << ", random " << waste_random);
  CHECK(waste_bucketed * 4 < waste_random);

  const peft::length_batch_sampler drop(std::vector<std::size_t>(10, 3), 4, 1, 50, true);
  CHECK(drop.num_batches() == 2);
  const auto d = drop.epoch(0);
  CHECK(d.size() == 2);
  CHECK(d[0].size() + d[1].size() == 8);
  CHECK_THROWS_AS(peft::length_batch_sampler({}, 4, 1), peft::invalid_argument);
  CHECK_THROWS_AS(peft::length_batch_sampler({1, 2}, 0, 1), peft::invalid_argument);
  CHECK_THROWS_AS(peft::length_batch_sampler({1, 2}, 2, 1, 0), peft::invalid_argument);
}
