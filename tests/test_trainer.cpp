// SPDX-License-Identifier: Apache-2.0
// The training loop on the real USE-lite encoder and real sentiment sentences: a head and a
// LiST-style adapter learn clearly above chance; the same seed gives the same result.
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
