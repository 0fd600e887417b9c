// SPDX-License-Identifier: Apache-2.0
// multi_task_server: a mixed-task batch gives every row the logits of its task run alone,
// tasks of different methods share one const encoder, and bad requests are rejected.
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/lora.hpp>
#include <peft/policies/prefix_tuning.hpp>
#include <peft/serve/multi_task.hpp>
#include <peft/train/trainer.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "small_model.hpp"

namespace {

template <typename Scalar>
struct serve_tol;
template <>
struct serve_tol<float> {
  static constexpr double same_rows = 1e-5;  // the same row set: the same arithmetic
  static constexpr double one_row = 1e-4;    // a row alone: other padding
};
template <>
struct serve_tol<double> {
  static constexpr double same_rows = 1e-12;
  static constexpr double one_row = 1e-10;
};

/// Every parameter of `store` drawn from N(0, scale): no zero-initialised path (LoRA's B,
/// the adapters' up-projections) hides a policy's effect.
template <typename Store>
void fill_random(Store& store, double scale, std::uint64_t seed) {
  peft::rng g(seed);
  auto& v = store.values();
  using S = typename std::decay_t<decltype(v)>::Scalar;
  for (peft::index i = 0; i < v.size(); ++i) v[i] = static_cast<S>(g.normal() * scale);
}

peft::encoded_example row(std::vector<std::int32_t> ids, peft::index mask_pos = -1) {
  peft::encoded_example e;
  e.ids = std::move(ids);
  e.mask_pos = mask_pos;
  return e;
}

/// Rows of lengths 3..8 over the 30-token vocabulary, [CLS]=2 ... [SEP]=3, with a [MASK]
/// (id 4) at position 1 for the prompt head.
std::vector<peft::encoded_example> rows_for(std::uint64_t seed, std::size_t n) {
  peft::rng g(seed);
  std::vector<peft::encoded_example> out;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t len = 3 + static_cast<std::size_t>(g.below(6));
    std::vector<std::int32_t> ids = {2, 4};
    while (ids.size() + 1 < len) ids.push_back(static_cast<std::int32_t>(5 + g.below(25)));
    ids.push_back(3);
    out.push_back(row(ids, 1));
  }
  return out;
}

template <typename Scalar>
double max_diff(const std::vector<Scalar>& a, const peft::matrix<Scalar>& b, peft::index r) {
  REQUIRE(static_cast<peft::index>(a.size()) == b.cols());
  double d = 0;
  for (peft::index c = 0; c < b.cols(); ++c)
    d = std::max(
        d, std::abs(static_cast<double>(a[static_cast<std::size_t>(c)]) - static_cast<double>(b(r, c))));
  return d;
}

}  // namespace

TEMPLATE_TEST_CASE("multi_task_server: mixed-task batch equals each task run alone", "[serve]", float,
                   double) {
  using S = TestType;
  using Arch = peft::bert;
  const peft::encoder<Arch, S> enc(peft::random_encoder_weights<S>(peft_test::small_config("bert", 0.1), 5));
  const auto shape = enc.shape();
  const auto W0 = enc.weights();  // a copy, to check the backbone is untouched

  // Four tasks, four methods, three class counts and two head kinds; the originals stay
  // here as the "alone" reference, the server gets copies.
  peft::bottleneck_adapter<S> houlsby(shape, peft::bottleneck_config::houlsby(), 11);
  peft::lora<S> lora(shape, peft::lora_config{}, 12);
  peft::prefix_tuning_config pc;
  pc.num_virtual_tokens = 3;
  pc.encoder_hidden_size = 8;
  peft::prefix_tuning<S> prefix(shape, pc, 13);
  fill_random(houlsby.parameters(), 0.3, 21);
  fill_random(lora.parameters(), 0.3, 22);
  fill_random(prefix.parameters(), 0.3, 23);
  peft::classification_head<S> h_houlsby(enc.hidden_size(), 3, peft::pool_kind::cls, 0.1, 31);
  peft::classification_head<S> h_lora(enc.hidden_size(), 2, peft::pool_kind::mean, 0.1, 32);
  peft::classification_head<S> h_prefix(enc.hidden_size(), 4, peft::pool_kind::cls, 0.1, 33);
  peft::no_policy<S> none;
  peft::prompt_head<S> h_prompt(enc.weights(), {7, 9, 11});
  fill_random(h_houlsby.parameters(), 0.5, 41);
  fill_random(h_lora.parameters(), 0.5, 42);
  fill_random(h_prefix.parameters(), 0.5, 43);

  peft::multi_task_server<Arch, S> server(enc, 0);
  server.add_task("sentiment", houlsby, h_houlsby);
  server.add_task("topic", lora, h_lora);
  server.add_task("intent", prefix, h_prefix);
  server.add_task("prompt", none, h_prompt);
  REQUIRE(server.num_tasks() == 4);
  CHECK(server.num_classes("intent") == 4);
  CHECK(server.num_parameters("topic") == lora.num_parameters() + h_lora.num_parameters());
  CHECK(server.backbone_bytes() == enc.weights().bytes());
  CHECK(server.task_bytes() ==
        sizeof(S) * static_cast<std::size_t>(houlsby.num_parameters() + lora.num_parameters() +
                                             prefix.num_parameters() + h_houlsby.num_parameters() +
                                             h_lora.num_parameters() + h_prefix.num_parameters() +
                                             h_prompt.num_parameters()));

  // 14 requests, tasks interleaved, lengths 3..8.
  const std::vector<std::string> order = {"sentiment", "topic",     "intent", "sentiment", "prompt",
                                          "topic",     "intent",    "intent", "sentiment", "prompt",
                                          "topic",     "sentiment", "intent", "topic"};
  const auto examples = rows_for(77, order.size());
  std::vector<peft::serve_request> reqs;
  for (std::size_t i = 0; i < order.size(); ++i) reqs.push_back({order[i], examples[i]});
  const auto out = server.predict(reqs);
  REQUIRE(out.size() == reqs.size());

  // Reference: each task alone (task_model::predict, the trainer's path) on its rows, in order.
  auto check_task = [&](const std::string& name, auto& policy, auto& head) {
    std::vector<std::size_t> picks;
    for (std::size_t i = 0; i < order.size(); ++i)
      if (order[i] == name) picks.push_back(i);
    REQUIRE(picks.size() >= 2);
    peft::task_model model(enc, policy, head);
    const auto alone = model.predict(peft::make_task_batch(examples, picks, 0));
    const auto labels = peft::argmax_rows(alone);
    double worst = 0, worst_one = 0, spread = 0;
    for (std::size_t r = 0; r < picks.size(); ++r) {
      const auto& p = out[picks[r]];
      worst = std::max(worst, max_diff(p.logits, alone, static_cast<peft::index>(r)));
      CHECK(p.label == labels[r]);
      double sum = 0;
      for (double q : p.probabilities) sum += q;
      CHECK(std::abs(sum - 1.0) < 1e-6);
      // The row on its own (no padding at all): the same up to summation order.
      const auto single = model.predict(peft::make_task_batch(examples, {picks[r]}, 0));
      worst_one = std::max(worst_one, max_diff(p.logits, single, 0));
      spread = std::max(spread,
                        std::abs(static_cast<double>(alone(static_cast<peft::index>(r), 0) - alone(0, 0))));
    }
    INFO(name << ": max |mixed - alone| " << worst << ", max |mixed - single row| " << worst_one);
    CHECK(worst <= serve_tol<S>::same_rows);
    CHECK(worst_one <= serve_tol<S>::one_row);
    CHECK(spread > 1e-3);  // the rows differ, so the check is not vacuous
  };
  check_task("sentiment", houlsby, h_houlsby);
  check_task("topic", lora, h_lora);
  check_task("intent", prefix, h_prefix);
  check_task("prompt", none, h_prompt);

  // The policies matter: the same rows through the plain encoder and the sentiment head differ.
  {
    peft::no_policy<S> plain;
    peft::task_model model(enc, plain, h_houlsby);
    const auto base = model.predict(peft::make_task_batch(examples, {0}, 0));
    CHECK(max_diff(out[0].logits, base, 0) > 1e-3);
  }
  // The server reads the backbone only.
  CHECK(peft_test::same_weights(W0, enc.weights()));

  // task_logits is the task alone on the given rows.
  const auto direct = server.task_logits("topic", {examples[1], examples[5]});
  CHECK(max_diff(out[5].logits, direct, 1) <= serve_tol<S>::same_rows);
}

TEST_CASE("multi_task_server: a batch of one task and single rows", "[serve]") {
  using Arch = peft::use_lite;
  const peft::encoder<Arch, float> enc(
      peft::random_encoder_weights<float>(peft_test::small_config("use_lite", 0.1), 8));
  peft::lora<float> lora(enc.shape(), peft::lora_config{}, 3);
  fill_random(lora.parameters(), 0.3, 4);
  peft::classification_head<float> head(enc.hidden_size(), 2, peft::pool_kind::mean, 0.1, 5);
  peft::multi_task_server<Arch, float> server(enc);
  server.add_task("only", lora, head);
  const auto ex = rows_for(9, 5);
  std::vector<peft::serve_request> reqs;
  for (const auto& e : ex) reqs.push_back({"only", e});
  const auto all = server.predict(reqs);
  for (std::size_t i = 0; i < ex.size(); ++i) {
    const auto one = server.predict({reqs[i]});
    REQUIRE(one.size() == 1);
    CHECK(one[0].label == all[i].label);
    for (std::size_t c = 0; c < 2; ++c) CHECK(std::abs(one[0].logits[c] - all[i].logits[c]) < 1e-4);
  }
}

TEST_CASE("multi_task_server: bad requests and names throw", "[serve][errors]") {
  using Arch = peft::bert;
  const peft::encoder<Arch, float> enc(
      peft::random_encoder_weights<float>(peft_test::small_config("bert", 0.1), 5));
  peft::multi_task_server<Arch, float> server(enc);
  peft::classification_head<float> head(enc.hidden_size(), 2, peft::pool_kind::cls, 0.1, 1);
  const auto ex = rows_for(3, 2);

  // No tasks yet: any name is unknown.
  CHECK_THROWS_AS(server.predict({{"a", ex[0]}}), peft::invalid_argument);
  server.add_task("a", peft::lora<float>(enc.shape(), peft::lora_config{}, 1), head);
  server.add_task("b", peft::no_policy<float>{}, head);

  CHECK_THROWS_WITH(server.add_task("a", peft::no_policy<float>{}, head),
                    Catch::Contains("unique") && Catch::Contains("'a'"));
  CHECK_THROWS_WITH(server.add_task("", peft::no_policy<float>{}, head), Catch::Contains("non-empty"));
  CHECK_THROWS_WITH(server.predict({}), Catch::Contains("non-empty"));
  CHECK_THROWS_WITH(server.predict({{"a", ex[0]}, {"zzz", ex[1]}}),
                    Catch::Contains("request 1") && Catch::Contains("'zzz'") && Catch::Contains("a, b"));
  CHECK_THROWS_AS(server.num_classes("zzz"), peft::invalid_argument);
  CHECK_THROWS_AS(server.task_logits("a", {}), peft::invalid_argument);
  // A malformed example is the encoder's error, not a crash.
  CHECK_THROWS_AS(server.predict({{"a", row({})}}), peft::invalid_argument);
  CHECK_THROWS_AS(server.predict({{"b", row({2, 999, 3})}}), peft::invalid_argument);

  // Removing a task makes its name unknown and frees it for reuse.
  server.remove_task("b");
  CHECK_FALSE(server.has_task("b"));
  CHECK_THROWS_AS(server.predict({{"b", ex[0]}}), peft::invalid_argument);
  CHECK_THROWS_AS(server.remove_task("b"), peft::invalid_argument);
  server.add_task("b", peft::no_policy<float>{}, head);
  CHECK(server.task_names() == std::vector<std::string>{"a", "b"});
}
