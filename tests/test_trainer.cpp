// SPDX-License-Identifier: Apache-2.0
// The training loop on the real USE-lite encoder and real sentiment sentences: a head and a
// LiST-style adapter learn clearly above chance; the same seed gives the same result; SetFit's
// contrastive pairs and LP-FT's probe train what they should.
#include <nlohmann/json.hpp>
#include <peft/core/memory.hpp>
#include <peft/core/file_util.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/text/unigram.hpp>
#include <peft/train/trainer.hpp>

#include "test_common.hpp"

namespace {
struct data_split {
  std::vector<peft::encoded_example> train, test;
};

/// 16 labelled yelp sentences per class for training, 200 others for testing.
data_split yelp_split(const peft::unigram_tokenizer& tok) {
  const auto j = nlohmann::json::parse(
      peft::detail::read_file(peft_test::assets_dir() + "/sentiment/test/fixtures/yelp.json", "test"));
  std::vector<peft::encoded_example> all;
  for (const auto& e : j) {
    if (e["class"].is_null()) continue;
    peft::encoded_example x;
    x.ids = tok.encode(e["text"].get<std::string>(), 128);
    x.label = e["class"].get<int>();
    if (!x.ids.empty()) all.push_back(std::move(x));
  }
  peft::rng gen(11);
  for (std::size_t i = all.size(); i > 1; --i) std::swap(all[i - 1], all[gen.below(i)]);
  data_split s;
  int count[2] = {0, 0};
  for (auto& x : all) {
    if (count[x.label] < 16) {
      ++count[x.label];
      s.train.push_back(x);
    } else if (s.test.size() < 200) {
      s.test.push_back(x);
    }
  }
  return s;
}

struct fixture {
  peft::encoder<peft::use_lite, float> enc{peft::load_use_lite<float>(peft_test::use_lite_dir())};
  peft::unigram_tokenizer tok = peft::unigram_tokenizer::from_vocab_json(peft_test::use_lite_dir() + "/vocab.json");
  data_split data = yelp_split(tok);
};
fixture& shared() {
  static fixture f;
  return f;
}

peft::fit_options quiet(int epochs, double lr) {
  peft::fit_options o;
  o.epochs = epochs;
  o.lr = lr;
  o.batch_size = 8;
  o.show_progress = false;
  o.seed = 3;
  return o;
}
}  // namespace

TEST_CASE("a classification head on the frozen USE-lite encoder learns sentiment", "[trainer][real]") {
  auto& f = shared();
  peft::no_policy<float> none;
  peft::classification_head<float> head(512, 2, peft::pool_kind::sentence, 0.1, 1);
  peft::task_model model(f.enc, none, head);
  const auto before = peft::evaluate(model, f.data.test, 32, 0);
  const auto r = peft::fit(model, f.data.train, f.data.test, quiet(30, 5e-2));
  INFO("accuracy before " << before.accuracy << " after " << r.best.accuracy);
  CHECK(r.best.accuracy > 0.65);
  CHECK(r.steps == 30 * 4);
  CHECK(r.best.macro_f1 > 0.6);
}

TEST_CASE("training is deterministic for a seed", "[trainer][real]") {
  auto& f = shared();
  auto run = [&] {
    peft::no_policy<float> none;
    peft::classification_head<float> head(512, 2, peft::pool_kind::sentence, 0.1, 1);
    peft::task_model model(f.enc, none, head);
    peft::fit(model, f.data.train, {}, quiet(3, 1e-2));
    return peft::vector<float>(head.parameters().values());
  };
  const auto a = run(), b = run();
  CHECK(a == b);
}

TEST_CASE("the allocator settings change no training result and a top-layer tape gives full-tape gradients", "[trainer][real]") {
  auto& f = shared();
  // Adapters on the top layer only: the trainer's tape keeps nothing of layer 0.
  auto top_adapter = [&] {
    auto cfg = peft::bottleneck_config::houlsby(16);
    cfg.layers = {1};
    return peft::bottleneck_adapter<float>(f.enc.shape(), cfg, 5);
  };
  auto run = [&] {
    auto adapter = top_adapter();
    peft::classification_head<float> head(512, 2, peft::pool_kind::sentence, 0.1, 1);
    peft::task_model model(f.enc, adapter, head);
    peft::fit(model, f.data.train, {}, quiet(2, 1e-2));
    return peft::vector<float>(adapter.parameters().values());
  };
  const auto before = run();
  // Under ASan the sanitizer's malloc refuses the settings; the call must say so.
  CHECK(peft::keep_freed_memory() == peft::allocator_settings_supported);
  const auto after = run();
  CHECK(before == after);
  // The same step through a full tape gives the same gradients as the trainer's.
  auto adapter = top_adapter();
  peft::classification_head<float> head(512, 2, peft::pool_kind::sentence, 0.0, 1);
  peft::task_model model(f.enc, adapter, head);
  std::vector<std::size_t> rows = {0, 1, 2, 3};
  const auto tb = peft::make_task_batch(f.data.train, rows, 0);
  auto set = model.parameters();
  set.zero_grad();
  peft::rng g1(4);
  model.forward_backward(tb, peft::mode::train, g1, [&](const peft::matrix<float>& z, peft::matrix<float>& dz) {
    return static_cast<double>(peft::cross_entropy(z, tb.labels, dz));
  });
  const peft::vector<float> trainer_grad = adapter.parameters().grads();
  CHECK(trainer_grad.cwiseAbs().maxCoeff() > 0);
  adapter.parameters().zero_grad();
  peft::encoder_tape<float, peft::bottleneck_adapter<float>> tape;  // record_from 0: every layer kept
  peft::rng g2(4);
  const auto h = f.enc.forward(tb.input, adapter, peft::mode::train, &tape, &g2);
  typename peft::classification_head<float>::cache_type cache;
  const auto z = head.forward(f.enc.weights(), h, tb.input, peft::mode::train, &g2, &cache);
  peft::matrix<float> dz;
  peft::cross_entropy(z, tb.labels, dz);
  const auto dh = head.backward(f.enc.weights(), dz, tb.input, cache, f.enc.hidden_size());
  adapter.parameters().zero_grad();
  f.enc.backward(dh, adapter, tape);
  CHECK(tape.layers[0].x.size() > 0);
  CHECK(peft::vector<float>(adapter.parameters().grads()) == trainer_grad);
}

TEST_CASE("fit rejects bad input", "[trainer]") {
  auto& f = shared();
  peft::no_policy<float> none;
  peft::classification_head<float> head(512, 2, peft::pool_kind::sentence, 0.1, 1);
  peft::task_model model(f.enc, none, head);
  CHECK_THROWS_WITH(peft::fit(model, {}, {}, quiet(1, 1e-2)), Catch::Contains("training set is empty"));
  auto bad = f.data.train;
  bad[0].label = -1;
  CHECK_THROWS_WITH(peft::fit(model, bad, {}, quiet(1, 1e-2)), Catch::Contains("has no label"));
  bad[0].label = 5;
  CHECK_THROWS_AS(peft::fit(model, bad, {}, quiet(1, 1e-2)), peft::invalid_argument);
}

namespace {
/// Mean cosine of the sentence embeddings of same-label pairs minus that of two-label pairs
/// over @p data: how far an embedding separates the classes.
template <typename Policy>
double cosine_margin(const peft::encoder<peft::use_lite, float>& enc, const Policy& policy,
                     const std::vector<peft::encoded_example>& data) {
  std::vector<std::size_t> rows(data.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  const auto tb = peft::make_task_batch(data, rows, 0);
  peft::matrix<float> e = peft::use_sentence_embedding(enc.weights(), enc.forward(tb.input, policy), tb.input);
  e.rowwise().normalize();
  const peft::matrix<float> c = e * e.transpose();
  double same = 0, other = 0;
  long ns = 0, no = 0;
  for (std::size_t i = 0; i < data.size(); ++i)
    for (std::size_t j = i + 1; j < data.size(); ++j) {
      const double v = c(peft::index(i), peft::index(j));
      if (data[i].label == data[j].label) {
        same += v;
        ++ns;
      } else {
        other += v;
        ++no;
      }
    }
  return same / double(ns) - other / double(no);
}
}  // namespace

TEST_CASE("contrastive pairs: SetFit's pairs of a labelled set", "[trainer][contrastive]") {
  const std::vector<int> labels = {0, 1, 0, 2, 1, 0, 2};
  const auto pairs = peft::make_contrastive_pairs(labels, 3, 9);
  REQUIRE(pairs.size() == 2 * 3 * labels.size());
  std::vector<int> positives(labels.size()), negatives(labels.size());
  for (const auto& p : pairs) {
    REQUIRE(p.a < labels.size());
    REQUIRE(p.b < labels.size());
    CHECK(p.a != p.b);  // every label has two rows or more: never a row with itself
    CHECK((labels[p.a] == labels[p.b]) == (p.target == 1.0f));
    CHECK((p.target == 1.0f || p.target == 0.0f));
    ++(p.target == 1.0f ? positives : negatives)[p.a];
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    CHECK(positives[i] == 3);
    CHECK(negatives[i] == 3);
  }
  const auto again = peft::make_contrastive_pairs(labels, 3, 9);
  const auto other = peft::make_contrastive_pairs(labels, 3, 10);
  bool same = true, differs = false;
  for (std::size_t k = 0; k < pairs.size(); ++k) {
    same = same && pairs[k].b == again[k].b;
    differs = differs || pairs[k].b != other[k].b;
  }
  CHECK(same);
  CHECK(differs);
  // A label with one row pairs it with itself (the only partner of its label).
  const auto lone = peft::make_contrastive_pairs({0, 1, 1}, 1, 2);
  CHECK(lone[0].a == 0);
  CHECK(lone[0].b == 0);
  CHECK_THROWS_WITH(peft::make_contrastive_pairs({1, 1, 1}, 1, 2), Catch::Contains("labels expected >= 2 distinct, got 1"));
  CHECK_THROWS_WITH(peft::make_contrastive_pairs({0, -1}, 1, 2), Catch::Contains("example 1 has no label"));
}

TEST_CASE("contrastive pairs pull one label's training embeddings together on USE-lite; only the policy trains",
          "[trainer][real][contrastive]") {
  auto& f = shared();
  peft::bottleneck_adapter<float> adapter(f.enc.shape(), peft::bottleneck_config::houlsby(16), 5);
  const auto policy_before = peft::vector<float>(adapter.parameters().values());
  const double train_before = cosine_margin(f.enc, adapter, f.data.train);
  const double test_before = cosine_margin(f.enc, adapter, f.data.test);
  // fit's pair mode through an identity head: its output is the sentence embedding itself.
  peft::classification_head<float> embed(512, 512, peft::pool_kind::sentence, 0.0, 1);
  embed.parameters().value(0).setIdentity();
  const auto head_before = peft::vector<float>(embed.parameters().values());
  peft::task_model model(f.enc, adapter, embed);
  auto o = quiet(1, 1e-2);
  o.task.pairs = true;
  o.batch_size = 16;
  o.contrastive.pairs_per_example = 10;
  const auto r = peft::fit(model, f.data.train, {}, o);
  CHECK(r.steps == 2 * 10 * 32 / 16);
  const double train_after = cosine_margin(f.enc, adapter, f.data.train);
  const double test_after = cosine_margin(f.enc, adapter, f.data.test);
  INFO("cosine margin, train " << train_before << " -> " << train_after << ", test " << test_before << " -> "
                               << test_after);
  CHECK(train_after > train_before + 0.2);
  // On held-out sentences the margin barely moves (0.035 -> 0.034 at this seed): with 32
  // sentences and two frozen layers the adapters fit the pairs they see. Nothing is asserted
  // about it here; the README's SetFit rows measure what the pairs are worth for accuracy.
  CHECK(peft::vector<float>(embed.parameters().values()) == head_before);
  CHECK(peft::vector<float>(adapter.parameters().values()) != policy_before);
  CHECK(embed.parameters().grads().isZero(0));  // no stale gradient left behind

  // fit_contrastive builds that head itself, from a fit_options of the task's own training.
  peft::bottleneck_adapter<float> again(f.enc.shape(), peft::bottleneck_config::houlsby(16), 5);
  auto task_fit = quiet(20, 1e-3);
  task_fit.contrastive = {10, 1, 16, 1e-2};
  const auto rc = peft::fit_contrastive(f.enc, again, peft::pool_kind::sentence, f.data.train, task_fit);
  CHECK(rc.steps == r.steps);
  CHECK(peft::vector<float>(again.parameters().values()) == peft::vector<float>(adapter.parameters().values()));
  CHECK_THROWS_WITH(peft::fit_contrastive(f.enc, again, peft::pool_kind::tokens, f.data.train, task_fit),
                    Catch::Contains("not token pooling"));

  peft::no_policy<float> none;
  peft::task_model bare(f.enc, none, embed);
  CHECK_THROWS_WITH(peft::fit(bare, f.data.train, {}, o), Catch::Contains("no policy parameters"));
  o.contrastive.pairs_per_example = 0;
  CHECK_THROWS_WITH(peft::fit(model, f.data.train, {}, o), Catch::Contains("pairs_per_example expected >= 1"));
}

TEST_CASE("LP-FT: the probe trains the head alone, then both train", "[trainer][real]") {
  auto& f = shared();
  auto cfg = peft::bottleneck_config::houlsby(16);
  peft::bottleneck_adapter<float> adapter(f.enc.shape(), cfg, 5);
  const auto start = peft::vector<float>(adapter.parameters().values());
  peft::classification_head<float> head(512, 2, peft::pool_kind::sentence, 0.1, 1);
  peft::task_model model(f.enc, adapter, head);
  auto o = quiet(0, 1e-3);
  o.head_lr = 3e-2;
  o.probe_epochs = 10;
  // A probe alone (epochs 0): the head learns, the adapter is where it started.
  const auto probe = peft::fit(model, f.data.train, f.data.test, o);
  CHECK(probe.steps == 10 * 4);
  CHECK(peft::vector<float>(adapter.parameters().values()) == start);
  INFO("probe accuracy " << probe.best.accuracy);
  CHECK(probe.best.accuracy > 0.65);
  // The same probe from the same start, then both: the joint epochs move the adapter too.
  peft::bottleneck_adapter<float> adapter2(f.enc.shape(), cfg, 5);
  peft::classification_head<float> head2(512, 2, peft::pool_kind::sentence, 0.1, 1);
  peft::task_model model2(f.enc, adapter2, head2);
  o.epochs = 2;
  std::vector<long> steps;
  o.on_step = [&](long s) { steps.push_back(s); };
  const auto both = peft::fit(model2, f.data.train, f.data.test, o);
  CHECK(both.steps == 10 * 4 + 2 * 4);
  CHECK(steps.size() == std::size_t(both.steps));
  CHECK(peft::vector<float>(adapter2.parameters().values()) != start);
  o.epochs = 0;
  o.on_step = nullptr;
  o.state_path = "unused.state";
  CHECK_THROWS_WITH(peft::fit(model, f.data.train, {}, o), Catch::Contains("probe_epochs (LP-FT)"));
}
