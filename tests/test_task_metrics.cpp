// SPDX-License-Identifier: Apache-2.0
// Task metrics: hand-worked values of each metric, the reference values of
// tests/reference/task_metrics_ref.py (scipy.stats, an independent numpy / Python restatement
// of scikit-learn's multi-label F1, seqeval's entity rules and the SQuAD v2.0 script), and bad input.
#include <peft/task/metrics.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "test_common.hpp"

namespace {

using Catch::Contains;
using strings = std::vector<std::string>;
using peft::entity;

constexpr double ref_rel = 1e-12;

bool have_reference() {
  const bool ok = std::filesystem::exists(peft_test::reference_dir() + "/task_metrics.json");
  if (!ok)
    FAIL_CHECK(
        "reference_task_metrics fixture output missing (no /usr/bin/python3 with numpy and scipy?): "
        "reference values not checked");
  return ok;
}

nlohmann::json reference(const char* key) {
  return nlohmann::json::parse(peft_test::read_text(peft_test::reference_dir() + "/task_metrics.json"))
      .at(key);
}

std::string show(const std::vector<entity>& es) {
  std::string s;
  for (const auto& e : es)
    s += "(" + e.type + " " + std::to_string(e.begin) + " " + std::to_string(e.end) + ")";
  return s;
}

/// Entities from the reference's [type, begin, end] triples.
std::vector<entity> entities_from_json(const nlohmann::json& j) {
  std::vector<entity> out;
  for (const auto& e : j)
    out.push_back(entity{e.at(0).get<std::string>(), e.at(1).get<std::size_t>(), e.at(2).get<std::size_t>()});
  return out;
}

const double not_a_number = std::numeric_limits<double>::quiet_NaN();

}  // namespace

// ---------------------------------------------------------------------------------------------
// Regression

TEST_CASE("pearson: hand-worked values", "[task_metrics][regression]") {
  CHECK(peft::pearson({1, 2, 3, 4}, {2, 4, 6, 8}) == Approx(1.0));
  CHECK(peft::pearson({1, 2, 3, 4}, {8, 6, 4, 2}) == Approx(-1.0));
  // dx = (-1, 0, 1), dy = (-1, 1, 0): r = 1 / sqrt(2 * 2)
  CHECK(peft::pearson({1, 2, 3}, {1, 3, 2}) == Approx(0.5));
  CHECK(peft::pearson({3, -1}, {0.25, 7}) == -1.0);  // two points: exactly +-1
  CHECK(peft::pearson({1, 2, 3, 4, 5}, {1, 8, 27, 64, 125}) < 0.99);
}

TEST_CASE("pearson and spearman: a constant side gives 0, not NaN", "[task_metrics][regression]") {
  CHECK(peft::pearson({0.1, 0.1, 0.1}, {1, 2, 3}) == 0.0);
  CHECK(peft::pearson({1, 2, 3}, {0.7, 0.7, 0.7}) == 0.0);
  CHECK(peft::spearman({5, 5, 5, 5}, {1, 2, 3, 4}) == 0.0);
  CHECK(peft::spearman({1, 2}, {3, 3}) == 0.0);
}

TEST_CASE("spearman: ranks with ties get the mean rank", "[task_metrics][regression]") {
  // ranks of x: 1, 2.5, 2.5, 4; of y: 1, 2, 3, 4. dx = (-1.5, 0, 0, 1.5), dy = (-1.5, -.5, .5, 1.5):
  // r = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
  CHECK(peft::spearman({1, 2, 2, 3}, {1, 2, 3, 4}) == Approx(std::sqrt(0.9)).epsilon(1e-15));
  // Order, not values: a monotone map changes nothing.
  CHECK(peft::spearman({1, 2, 3, 4, 5}, {1, 8, 27, 64, 125}) == Approx(1.0).epsilon(1e-15));
  CHECK(peft::spearman({10, 2, 2, 2, -1}, {0.5, 0.1, 0.1, 0.1, -3}) == Approx(1.0).epsilon(1e-15));
  // Ties on both sides: x ranks 1.5 1.5 3 4, y ranks 1 2.5 2.5 4, so dx = (-1, -1, .5, 1.5) and
  // dy = (-1.5, 0, 0, 1.5): sxy = 1.5 + 2.25 = 3.75, sxx = syy = 4.5.
  CHECK(peft::spearman({0, 0, 1, 2}, {0, 1, 1, 5}) == Approx(3.75 / 4.5).epsilon(1e-15));
}

TEST_CASE("pearson and spearman: bad input throws", "[task_metrics][regression][errors]") {
  CHECK_THROWS_MSG(peft::pearson({1, 2, 3}, {1, 2}), peft::invalid_argument,
                   Contains("pearson: size of y (size of x) expected 3, got 2"));
  CHECK_THROWS_MSG(peft::spearman({1}, {1}), peft::invalid_argument,
                   Contains("spearman: number of values expected at least 2, got 1"));
  CHECK_THROWS_MSG(peft::pearson({}, {}), peft::invalid_argument,
                   Contains("number of values expected at least 2, got 0"));
  CHECK_THROWS_MSG(peft::pearson({1, not_a_number, 3}, {1, 2, 3}), peft::numeric_error,
                   Contains("pearson: x[1] expected finite, got NaN"));
  CHECK_THROWS_MSG(peft::spearman({1, 2, 3}, {1, 2, -std::numeric_limits<double>::infinity()}),
                   peft::numeric_error, Contains("spearman: y[2] expected finite, got -Inf"));
}

// ---------------------------------------------------------------------------------------------
// Multi-label

TEST_CASE("multi_label_score: hand-worked counts", "[task_metrics][multi_label]") {
  // At 0.5 (a probability equal to the threshold is a positive) the predictions are
  // {1,0}, {1,1}, {0,1}. Label 0: tp 1, fp 1, fn 1 -> F1 1/2. Label 1: tp 2 -> F1 1.
  // Pooled: tp 3, fp 1, fn 1 -> F1 6/8, precision 3/4, recall 3/4. Only row 0 is exact.
  const std::vector<std::vector<double>> probs = {{0.9, 0.2}, {0.6, 0.7}, {0.4, 0.5}};
  const std::vector<std::vector<int>> truth = {{1, 0}, {0, 1}, {1, 1}};
  const auto s = peft::multi_label_score(probs, truth, 0.5);
  CHECK(s.micro_f1 == 0.75);
  CHECK(s.macro_f1 == 0.75);
  CHECK(s.micro_precision == 0.75);
  CHECK(s.micro_recall == 0.75);
  CHECK(s.subset_accuracy == Approx(1.0 / 3.0).epsilon(1e-15));

  SECTION("a label never true and never predicted counts F1 = 0 in the macro mean") {
    const auto s3 = peft::multi_label_score({{0.9, 0.2, 0.1}, {0.6, 0.7, 0.2}, {0.4, 0.5, 0.0}},
                                            {{1, 0, 0}, {0, 1, 0}, {1, 1, 0}}, 0.5);
    CHECK(s3.micro_f1 == 0.75);
    CHECK(s3.macro_f1 == Approx(0.5).epsilon(1e-15));  // (1/2 + 1 + 0) / 3
    CHECK(s3.subset_accuracy == Approx(1.0 / 3.0).epsilon(1e-15));
  }
  SECTION("nothing predicted: precision and F1 are 0, not NaN") {
    const auto s0 = peft::multi_label_score(probs, truth, 0.95);
    CHECK(s0.micro_precision == 0.0);
    CHECK(s0.micro_recall == 0.0);
    CHECK(s0.micro_f1 == 0.0);
    CHECK(s0.macro_f1 == 0.0);
    CHECK(s0.subset_accuracy == 0.0);
  }
  SECTION("nothing true and nothing predicted: all 0 except subset accuracy") {
    const auto e = peft::multi_label_score({{0.1, 0.2}, {0.3, 0.0}}, {{0, 0}, {0, 0}}, 0.5);
    CHECK(e.micro_f1 == 0.0);
    CHECK(e.macro_f1 == 0.0);
    CHECK(e.subset_accuracy == 1.0);
  }
}

TEST_CASE("best_threshold: maximises micro F1, ties go to the threshold closest to 0.5",
          "[task_metrics][multi_label]") {
  SECTION("a separable set: every threshold is perfect, 0.5 is kept") {
    CHECK(peft::best_threshold({{0.99, 0.01}, {0.01, 0.99}}, {{1, 0}, {0, 1}}) == 0.5);
  }
  SECTION("a clear maximum") {
    // Only 0.05 <= t <= 0.15 takes both positives and leaves the negative out.
    CHECK(peft::best_threshold({{0.2}, {0.16}, {0.15}}, {{0}, {1}, {1}}) == 0.15);
  }
  // One label. C (0.6, true) is always found from t <= 0.6; A (0.52, false) is taken at 0.5;
  // B (0.47, true) and D (0.46, false) at 0.45 and below.
  // F1: t in 0.55-0.60 -> 2/3; 0.5 -> 1/2; t <= 0.45 -> 4/6 = 2/3.
  SECTION("equally close above and below 0.5: the lower") {
    CHECK(peft::best_threshold({{0.6}, {0.52}, {0.47}, {0.46}}, {{1}, {0}, {1}, {0}}) == 0.45);
  }
  SECTION("the closest to 0.5 among the best") {
    // E (0.455, false) makes t <= 0.45 worse (4/7), so 0.55 is the closest of the best.
    CHECK(peft::best_threshold({{0.6}, {0.52}, {0.47}, {0.46}, {0.455}}, {{1}, {0}, {1}, {0}, {0}}) == 0.55);
  }
  SECTION("the thresholds are the doubles k / 20") {
    CHECK(peft::best_threshold({{0.2}, {0.16}, {0.15}}, {{0}, {1}, {1}}) == 3 / 20.0);
  }
}

TEST_CASE("multi_label_score and best_threshold: bad input throws", "[task_metrics][multi_label][errors]") {
  const std::vector<std::vector<double>> p = {{0.1, 0.9}, {0.4, 0.6}};
  const std::vector<std::vector<int>> t = {{0, 1}, {1, 0}};
  CHECK_THROWS_MSG(peft::multi_label_score({}, {}, 0.5), peft::invalid_argument,
                   Contains("multi_label_score: number of examples expected at least 1, got 0"));
  CHECK_THROWS_MSG(peft::multi_label_score({{}, {}}, {{}, {}}, 0.5), peft::invalid_argument,
                   Contains("number of labels expected at least 1, got 0"));
  CHECK_THROWS_MSG(peft::multi_label_score(p, {{0, 1}}, 0.5), peft::invalid_argument,
                   Contains("number of truth rows (probability rows) expected 2, got 1"));
  CHECK_THROWS_MSG(peft::best_threshold({{0.1, 0.9}, {0.4}}, t), peft::invalid_argument,
                   Contains("best_threshold: example 1: number of probabilities expected 2, got 1"));
  CHECK_THROWS_MSG(peft::multi_label_score(p, {{0, 1}, {1, 0, 1}}, 0.5), peft::invalid_argument,
                   Contains("example 1: number of truth values expected 2, got 3"));
  CHECK_THROWS_MSG(peft::multi_label_score(p, {{0, 2}, {1, 0}}, 0.5), peft::invalid_argument,
                   Contains("example 0, label 1: truth expected 0 or 1, got 2"));
  CHECK_THROWS_MSG(peft::multi_label_score({{0.1, 1.5}, {0.4, 0.6}}, t, 0.5), peft::invalid_argument,
                   Contains("example 0, label 1: probability expected in [0, 1], got 1.5"));
  CHECK_THROWS_MSG(peft::best_threshold({{0.1, 0.9}, {not_a_number, 0.6}}, t), peft::numeric_error,
                   Contains("example 1, label 0: probability expected finite, got NaN"));
  CHECK_THROWS_MSG(peft::multi_label_score(p, t, not_a_number), peft::numeric_error, Contains("threshold"));
}

// ---------------------------------------------------------------------------------------------
// Token classification

TEST_CASE("entities_of: seqeval's chunking rules", "[task_metrics][entities]") {
  using E = std::vector<entity>;
  const auto check = [](const strings& tags, const E& expected) {
    const auto got = peft::entities_of(tags);
    INFO("got " << show(got) << ", expected " << show(expected));
    CHECK(got == expected);
  };
  SECTION("IOB2, with an entity at the end of the sentence") {
    check({"B-PER", "I-PER", "O", "B-LOC"}, E{{"PER", 0, 2}, {"LOC", 3, 4}});
    check({"O", "B-ORG", "I-ORG"}, E{{"ORG", 1, 3}});
  }
  SECTION("an I- after O opens an entity (IOB1)") {
    check({"O", "I-PER", "I-PER", "O"}, E{{"PER", 1, 3}});
    check({"I-PER", "I-PER", "B-PER", "I-PER"}, E{{"PER", 0, 2}, {"PER", 2, 4}});
  }
  SECTION("a change of type closes one entity and opens another") {
    check({"B-PER", "I-LOC", "I-LOC"}, E{{"PER", 0, 1}, {"LOC", 1, 3}});
    check({"I-PER", "I-LOC"}, E{{"PER", 0, 1}, {"LOC", 1, 2}});
  }
  SECTION("B after B, IOBES and IOE") {
    check({"B-PER", "B-PER"}, E{{"PER", 0, 1}, {"PER", 1, 2}});
    check({"S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"}, E{{"PER", 0, 1}, {"LOC", 1, 4}, {"LOC", 4, 5}});
    check({"I-LOC", "E-LOC", "I-LOC", "E-LOC"}, E{{"LOC", 0, 2}, {"LOC", 2, 4}});
    check({"E-LOC", "E-LOC"}, E{{"LOC", 0, 1}, {"LOC", 1, 2}});
  }
  SECTION("types: after the first '-', '_' when there is none") {
    check({"B", "I", "O", "S", "B-"}, E{{"_", 0, 2}, {"_", 3, 4}, {"_", 4, 5}});
    check({"B-MISC-X", "I-MISC-X"}, E{{"MISC-X", 0, 2}});
  }
  SECTION("no entities") {
    check({}, E{});
    check({"O", "O"}, E{});
  }
}

TEST_CASE("entities_of: malformed tags throw", "[task_metrics][entities][errors]") {
  CHECK_THROWS_MSG(peft::entities_of({"O", "X-PER"}), peft::invalid_argument,
                   Contains("entities_of: word 1: tag expected O, B, I, E, S") && Contains("got \"X-PER\""));
  CHECK_THROWS_MSG(peft::entities_of({"PER"}), peft::invalid_argument, Contains("got \"PER\""));
  CHECK_THROWS_MSG(peft::entities_of({""}), peft::invalid_argument, Contains("got \"\""));
  CHECK_THROWS_MSG(peft::entities_of({"b-per"}), peft::invalid_argument, Contains("got \"b-per\""));
  CHECK_THROWS_MSG(peft::entities_of({"O-PER"}), peft::invalid_argument, Contains("got \"O-PER\""));
}

TEST_CASE("entity_f1: micro over sentences, per type", "[task_metrics][entities]") {
  SECTION("seqeval's documented example") {
    const std::vector<strings> truth = {{"O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"},
                                        {"B-PER", "I-PER", "O"}};
    const std::vector<strings> pred = {{"O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"},
                                       {"B-PER", "I-PER", "O"}};
    const auto s = peft::entity_f1(truth, pred);
    CHECK(s.precision == 0.5);
    CHECK(s.recall == 0.5);
    CHECK(s.f1 == 0.5);
    CHECK(s.true_entities == 2);
    CHECK(s.predicted_entities == 2);
    CHECK(s.correct == 1);
    REQUIRE(s.per_type.size() == 2);
    CHECK(s.per_type.at("MISC") == std::array<double, 3>{0, 0, 0});
    CHECK(s.per_type.at("PER") == std::array<double, 3>{1, 1, 1});
  }
  SECTION("same span in another sentence is not a match; a type only predicted is listed") {
    const std::vector<strings> truth = {{"B-PER", "O"}, {"O", "O"}, {"S-LOC"}};
    const std::vector<strings> pred = {{"O", "O"}, {"B-PER", "B-ORG"}, {"S-LOC"}};
    const auto s = peft::entity_f1(truth, pred);
    CHECK(s.true_entities == 2);
    CHECK(s.predicted_entities == 3);
    CHECK(s.correct == 1);
    CHECK(s.precision == Approx(1.0 / 3.0).epsilon(1e-15));
    CHECK(s.recall == 0.5);
    CHECK(s.f1 == Approx(0.4).epsilon(1e-15));  // 2 (1/3)(1/2) / (5/6)
    REQUIRE(s.per_type.size() == 3);
    CHECK(s.per_type.at("ORG") == std::array<double, 3>{0, 0, 0});
    CHECK(s.per_type.at("PER") == std::array<double, 3>{0, 0, 0});
    CHECK(s.per_type.at("LOC") == std::array<double, 3>{1, 1, 1});
  }
  SECTION("a type error and a boundary error are both misses") {
    const auto s = peft::entity_f1({{"B-PER", "I-PER", "O", "B-LOC"}}, {{"B-ORG", "I-ORG", "O", "B-LOC"}});
    CHECK(s.correct == 1);
    const auto b = peft::entity_f1({{"B-PER", "I-PER", "O"}}, {{"B-PER", "I-PER", "I-PER"}});
    CHECK(b.correct == 0);
    CHECK(b.f1 == 0.0);
  }
  SECTION("no entities anywhere: 0, not NaN") {
    const auto s = peft::entity_f1({{"O"}, {}}, {{"O"}, {}});
    CHECK(s.f1 == 0.0);
    CHECK(s.per_type.empty());
  }
}

TEST_CASE("entity_f1: bad input throws", "[task_metrics][entities][errors]") {
  CHECK_THROWS_MSG(peft::entity_f1({}, {}), peft::invalid_argument,
                   Contains("entity_f1: number of sentences expected at least 1, got 0"));
  CHECK_THROWS_MSG(peft::entity_f1({{"O"}, {"O"}}, {{"O"}}), peft::invalid_argument,
                   Contains("number of predicted sentences (true sentences) expected 2, got 1"));
  CHECK_THROWS_MSG(peft::entity_f1({{"O"}, {"O", "B-PER"}}, {{"O"}, {"O"}}), peft::invalid_argument,
                   Contains("entity_f1: sentence 1: number of predicted tags expected 2, got 1"));
  CHECK_THROWS_MSG(peft::entity_f1({{"O"}, {"O", "B-PER"}}, {{"O"}, {"O", "PER"}}), peft::invalid_argument,
                   Contains("entity_f1: sentence 1, word 1: tag expected") && Contains("got \"PER\""));
}

// ---------------------------------------------------------------------------------------------
// Extractive QA

TEST_CASE("squad_normalize: case, punctuation, articles, white space", "[task_metrics][squad]") {
  CHECK(peft::squad_normalize("The  Eiffel\tTower!") == "eiffel tower");
  CHECK(peft::squad_normalize("An apple, a day.") == "apple day");
  CHECK(peft::squad_normalize("the-cat") == "thecat");  // punctuation goes before articles
  CHECK(peft::squad_normalize("Theatre and THE anatomy") == "theatre and anatomy");
  CHECK(peft::squad_normalize("U.S. Army's") == "us armys");
  CHECK(peft::squad_normalize("(a) (b)") == "b");
  CHECK(peft::squad_normalize("an_a") == "ana");  // '_' is punctuation
  CHECK(peft::squad_normalize("  \n ") == "");
  CHECK(peft::squad_normalize("") == "");
  CHECK(peft::squad_normalize("x\xc2\xa0the\xe3\x80\x80y") == "x y");  // U+00A0, U+3000 are white space
  CHECK(peft::squad_normalize("caf\xc3\xa9 the caf\xc3\xa9s") == "caf\xc3\xa9 caf\xc3\xa9s");
  CHECK(peft::squad_normalize("a\xc3\xa9 the") == "a\xc3\xa9");  // "aé" is one word, not an article
}

TEST_CASE("squad_exact and squad_f1: hand-worked values", "[task_metrics][squad]") {
  CHECK(peft::squad_exact("The Eiffel Tower", "eiffel tower.") == 1.0);
  CHECK(peft::squad_exact("Eiffel Tower", "Eiffel") == 0.0);
  CHECK(peft::squad_exact("a", "the") == 1.0);  // both normalize to ""
  // pred {cat, sat}, gold {cat, sat, down}: precision 1, recall 2/3 -> F1 0.8
  CHECK(peft::squad_f1("the cat sat", "a cat sat down") == Approx(0.8).epsilon(1e-15));
  // Bags: "paris" is shared once. precision 1/2, recall 1 -> 2/3
  CHECK(peft::squad_f1("Paris Paris", "paris") == Approx(2.0 / 3.0).epsilon(1e-15));
  CHECK(peft::squad_f1("york new", "New York") == 1.0);
  CHECK(peft::squad_f1("dog", "cat") == 0.0);
  // v2.0: an empty side scores 1 only against an empty side.
  CHECK(peft::squad_f1("", "") == 1.0);
  CHECK(peft::squad_f1("the", "...") == 1.0);
  CHECK(peft::squad_f1("cat", "") == 0.0);
  CHECK(peft::squad_f1("", "cat") == 0.0);
}

TEST_CASE("squad_evaluate: best gold answer per question, unanswerable against \"\", percent",
          "[task_metrics][squad]") {
  // q0: F1 2/3, EM 0. q1: no gold answer, empty prediction: 1, 1. q2: "dog" matches: 1, 1.
  // q3: its only gold answer normalizes to "", so it is unanswerable; "cat" scores 0, 0.
  // q4: the empty gold answer is ignored, so the empty prediction misses "dog": 0, 0.
  const auto s =
      peft::squad_evaluate({"Eiffel", "", "the dog", "cat", ""},
                           {{"The Eiffel Tower", "Paris"}, {}, {"a cat", "dog"}, {"the"}, {"", "dog"}});
  CHECK(s.questions == 5);
  CHECK(s.exact_match == Approx(100.0 * 2 / 5).epsilon(1e-15));
  CHECK(s.f1 == Approx(100.0 * (2.0 / 3.0 + 2) / 5).epsilon(1e-15));
}

TEST_CASE("squad_evaluate: bad input throws", "[task_metrics][squad][errors]") {
  CHECK_THROWS_MSG(peft::squad_evaluate({}, {}), peft::invalid_argument,
                   Contains("squad_evaluate: number of questions expected at least 1, got 0"));
  CHECK_THROWS_MSG(peft::squad_evaluate({"a", "b"}, {{"a"}}), peft::invalid_argument,
                   Contains("squad_evaluate: number of gold answer lists (predictions) expected 2, got 1"));
}

// ---------------------------------------------------------------------------------------------
// Reference values

TEST_CASE("task metrics: equal the reference values of task_metrics_ref.py", "[task_metrics][reference]") {
  if (!have_reference()) return;
  SECTION("pearson and spearman against scipy.stats") {
    const auto cases = reference("regression");
    REQUIRE(cases.size() >= 5);
    for (std::size_t c = 0; c < cases.size(); ++c) {
      INFO("regression case " << c);
      const auto x = cases[c].at("x").get<std::vector<double>>();
      const auto y = cases[c].at("y").get<std::vector<double>>();
      CHECK(peft::pearson(x, y) == Approx(cases[c].at("pearson").get<double>()).epsilon(ref_rel));
      CHECK(peft::spearman(x, y) == Approx(cases[c].at("spearman").get<double>()).epsilon(ref_rel));
    }
  }
  SECTION("multi_label_score and best_threshold") {
    const auto cases = reference("multi_label");
    REQUIRE(cases.size() >= 5);
    std::size_t ties = 0;
    for (std::size_t c = 0; c < cases.size(); ++c) {
      INFO("multi-label case " << c);
      const auto probs = cases[c].at("probs").get<std::vector<std::vector<double>>>();
      const auto truth = cases[c].at("truth").get<std::vector<std::vector<int>>>();
      for (const auto& e : cases[c].at("scores")) {
        const double t = e.at("threshold").get<double>();
        INFO("threshold " << t);
        const auto s = peft::multi_label_score(probs, truth, t);
        CHECK(s.micro_f1 == Approx(e.at("micro_f1").get<double>()).epsilon(ref_rel));
        CHECK(s.macro_f1 == Approx(e.at("macro_f1").get<double>()).epsilon(ref_rel));
        CHECK(s.micro_precision == Approx(e.at("micro_precision").get<double>()).epsilon(ref_rel));
        CHECK(s.micro_recall == Approx(e.at("micro_recall").get<double>()).epsilon(ref_rel));
        CHECK(s.subset_accuracy == Approx(e.at("subset_accuracy").get<double>()).epsilon(ref_rel));
      }
      CHECK(peft::best_threshold(probs, truth) == cases[c].at("best_threshold").get<double>());
      if (cases[c].at("best_ties").get<int>() > 1) ++ties;
    }
    CHECK(ties > 0);  // the tie rule is exercised
  }
  SECTION("entities_of and entity_f1") {
    const auto ref = reference("entities");
    const auto truth = ref.at("truth").get<std::vector<strings>>();
    const auto pred = ref.at("predicted").get<std::vector<strings>>();
    REQUIRE(truth.size() >= 50);
    for (std::size_t s = 0; s < truth.size(); ++s) {
      INFO("sentence " << s);
      const auto te = entities_from_json(ref.at("truth_entities").at(s));
      const auto pe = entities_from_json(ref.at("predicted_entities").at(s));
      CHECK(show(peft::entities_of(truth[s])) == show(te));
      CHECK(show(peft::entities_of(pred[s])) == show(pe));
    }
    const auto sc = peft::entity_f1(truth, pred);
    CHECK(sc.precision == Approx(ref.at("precision").get<double>()).epsilon(ref_rel));
    CHECK(sc.recall == Approx(ref.at("recall").get<double>()).epsilon(ref_rel));
    CHECK(sc.f1 == Approx(ref.at("f1").get<double>()).epsilon(ref_rel));
    CHECK(sc.true_entities == ref.at("true_entities").get<std::size_t>());
    CHECK(sc.predicted_entities == ref.at("predicted_entities_count").get<std::size_t>());
    CHECK(sc.correct == ref.at("correct").get<std::size_t>());
    const auto per_type = ref.at("per_type");
    CHECK(sc.per_type.size() == per_type.size());
    for (const auto& [type, prf] : per_type.items()) {
      INFO("type " << type);
      REQUIRE(sc.per_type.count(type) == 1);
      for (std::size_t k = 0; k < 3; ++k)
        CHECK(sc.per_type.at(type)[k] == Approx(prf.at(k).get<double>()).epsilon(ref_rel));
    }
  }
  SECTION("squad_normalize, squad_exact, squad_f1 and squad_evaluate") {
    const auto ref = reference("squad");
    const auto text = ref.at("strings").get<strings>();
    const auto normalized = ref.at("normalized").get<strings>();
    REQUIRE(text.size() == normalized.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
      INFO("string " << i << ": \"" << text[i] << "\"");
      CHECK(peft::squad_normalize(text[i]) == normalized[i]);
    }
    for (const auto& p : ref.at("pairs")) {
      const auto i = p.at(0).get<std::size_t>(), j = p.at(1).get<std::size_t>();
      INFO("prediction \"" << text.at(i) << "\", gold \"" << text.at(j) << "\"");
      CHECK(peft::squad_exact(text[i], text[j]) == p.at(2).get<double>());
      CHECK(peft::squad_f1(text[i], text[j]) == Approx(p.at(3).get<double>()).epsilon(ref_rel));
    }
    const auto s = peft::squad_evaluate(ref.at("predictions").get<strings>(),
                                        ref.at("gold_answers").get<std::vector<strings>>());
    CHECK(s.questions == ref.at("predictions").size());
    CHECK(s.exact_match == Approx(ref.at("exact_match").get<double>()).epsilon(ref_rel));
    CHECK(s.f1 == Approx(ref.at("f1").get<double>()).epsilon(ref_rel));
  }
}
