// SPDX-License-Identifier: Apache-2.0
// The task layer (peft/task/task.hpp, peft/task/run.hpp; compiled once in peft::instances): a
// real model folder and its tokenizer, text encoded for a task, a task saved as one folder and
// read back (settings, labels, policy and head giving the same predictions), a bare adapter
// folder, the runtime's train / save / predict / serve round trip, and the errors a program shows.
#include <peft/task/run.hpp>
#include <peft/task/task.hpp>

#include <filesystem>
#include <fstream>

#include "test_common.hpp"

namespace fs = std::filesystem;
using namespace peft::task;

namespace {

/// Eight labelled sentences in the sentiment JSON the data readers take.
peft::dataset small_data() {
  peft::dataset d;
  const char* texts[] = {"great food and friendly staff", "terrible service, never again", "loved every minute",
                         "cold and bland", "the best pizza in town", "rude waiter and dirty tables",
                         "wonderful evening", "a waste of money"};
  for (int i = 0; i < 8; ++i) {
    peft::example e;
    e.text = texts[i];
    e.label = i % 2 ? "neg" : "pos";
    e.line = static_cast<std::size_t>(i + 1);
    d.push_back(e);
  }
  return d;
}

}  // namespace

TEST_CASE("a task saved as one folder reads back to the same settings, labels and predictions", "[task]") {
  const model_files m = load_model(peft_test::use_lite_dir());
  REQUIRE(m.model_type == "use_lite");
  REQUIRE(m.unigram != nullptr);
  const auto data = small_data();
  const auto labels = peft::label_map::from_dataset(data);
  task_settings s;
  s.method = "lora";
  s.model_type = m.model_type;
  s.pooling = "mean";
  s.max_length = 16;
  const auto rows = encode(m, s, data, labels, std::nullopt, true);
  REQUIRE(rows.size() == 8);
  for (const auto& r : rows) CHECK((r.ids.size() >= 2 && r.ids.size() <= 16));
  CHECK(rows[1].label == labels.id("neg"));

  // A fresh LoRA from the registry (options as in adapter_config.json), moved off its zero init.
  const auto shape = model_shape(m);
  auto policy = task_policy("lora", shape, 3, "", {{"r", 2}, {"lora_alpha", 4.0}});
  for (auto* st : policy.stores()) st->values().setConstant(0.01f);
  peft::encoder<peft::use_lite, float> enc(m.weights);
  peft::classification_head<float> head(enc.hidden_size(), 2, peft::pool_kind::mean, 0.0, 4);
  std::vector<std::size_t> all(rows.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  const auto tb = peft::make_task_batch(rows, all, m.pad_id);
  const auto before = peft::task_model(enc, policy, head).predict(tb);

  const std::string dir = peft_test::scratch_dir("task_layer") + "/sentiment";
  save_task(dir, s, labels, policy, peft::store_tensors(head.parameters()));
  CHECK(has_saved_task(dir));
  for (const char* f : {"task.json", "labels.json", "head.safetensors", "adapter_config.json",
                        "adapter_model.safetensors"})
    CHECK(fs::exists(fs::path(dir) / f));

  const saved_task t = read_saved_task(m, dir);
  CHECK(t.settings.to_json() == s.to_json());
  CHECK(t.labels == labels);
  CHECK(t.dir == dir);
  auto loaded = task_policy(t.settings.method, shape, 0, t.dir);
  REQUIRE(loaded.get_if<peft::lora<float>>() != nullptr);
  CHECK(loaded.get_if<peft::lora<float>>()->config().r == 2);
  peft::classification_head<float> head2(enc.hidden_size(), 2, peft::pool_kind::mean, 0.0, 99);
  load_head_file(t.head_path, head2);
  const auto after = peft::task_model(enc, loaded, head2).predict(tb);
  CHECK((before - after).cwiseAbs().maxCoeff() == 0.0f);

  // The adapter files alone, as other code hands them over: a bare folder plus head and labels.
  const std::string bare = peft_test::scratch_dir("task_layer_bare");
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"})
    fs::copy_file(fs::path(dir) / f, fs::path(bare) / f);
  CHECK(!has_saved_task(bare));
  const saved_task b = read_bare_task(m, bare, {t.head_path, "neg,pos", "mean", 16});
  CHECK(b.settings.method == "lora");
  CHECK(b.labels.label(0) == "neg");
  CHECK(b.dir == bare);
  // No labels, and USE-lite's folder has no config.json id2label to name the classes.
  CHECK_THROWS_WITH(read_bare_task(m, bare, {t.head_path, "", "mean", 0}), Catch::Contains("no labels were given"));
  // No head, and the folder saves no classifier (modules_to_save).
  CHECK_THROWS_WITH(read_bare_task(m, bare, {"", "neg,pos", "mean", 0}), Catch::Contains("saves no classifier"));
  CHECK_THROWS_WITH(read_bare_task(m, bare, {t.head_path, "neg,pos", "max", 0}), Catch::Contains("max"));

  // A second save replaces the first as one unit; a folder with other content is refused.
  s.max_length = 12;
  save_task(dir, s, labels, policy, peft::store_tensors(head.parameters()));
  CHECK(read_saved_task(m, dir).settings.max_length == 12);
  CHECK_THROWS_WITH(save_task(bare, s, labels, policy, peft::store_tensors(head.parameters())),
                    Catch::Contains("refusing to replace it"));
  CHECK(fs::exists(fs::path(bare) / "adapter_config.json"));
}

TEST_CASE("the task runtime trains, saves, predicts and serves a task chosen at run time", "[task][run]") {
  const model_files m = load_model(peft_test::use_lite_dir());
  const auto data = small_data();
  const auto labels = peft::label_map::from_dataset(data);
  task_settings s;
  s.method = "houlsby";
  s.model_type = m.model_type;
  s.pooling = "mean";
  s.max_length = 16;
  s.policy_options = {{"bottleneck_size", 4}};
  const auto rows = encode(m, s, data, labels, std::nullopt, true);

  peft::fit_options fit;
  fit.epochs = 3;
  fit.batch_size = 4;
  fit.lr = 1e-2;
  fit.head_lr = 3e-2;
  fit.seed = 5;
  run_result r = train_task(m, s, labels.size(), {}, rows, {}, rows, fit, 5);
  // Trainable: the Houlsby adapters (two per layer) and the head, counted from the shape.
  const auto shape = model_shape(m);
  const peft::index per_adapter = 2 * shape.hidden_size * 4 + 4 + shape.hidden_size;
  CHECK(r.trainable_params == 2 * shape.num_layers * per_adapter + shape.hidden_size * 2 + 2);
  CHECK(r.backbone_params == shape.backbone_parameters);
  REQUIRE(r.predictions.size() == rows.size());
  REQUIRE(r.probabilities.size() == rows.size());
  CHECK(r.dev_accuracy == -1.0);  // no dev set given
  // With a dev set (and no eval_every), fit scores it after the last step: on the same rows the
  // figure is the test accuracy, and the training itself is unchanged.
  const run_result with_dev = train_task(m, s, labels.size(), {}, rows, rows, rows, fit, 5);
  CHECK(with_dev.dev_accuracy == r.accuracy);
  CHECK(with_dev.dev_step == 6);  // 3 epochs of 2 batches
  CHECK(with_dev.predictions == r.predictions);
  REQUIRE(r.policy.get_if<peft::bottleneck_adapter<float>>() != nullptr);
  // Training moved every adapter store off its start (the fresh policy of the same seed).
  auto fresh = task_policy("houlsby", shape, 5, "", s.policy_options);
  const auto trained_stores = r.policy.stores();
  const auto fresh_stores = fresh.stores();
  REQUIRE(trained_stores.size() == fresh_stores.size());
  for (std::size_t i = 0; i < fresh_stores.size(); ++i)
    CHECK((trained_stores[i]->values() - fresh_stores[i]->values()).cwiseAbs().maxCoeff() > 0);

  const std::string dir = peft_test::scratch_dir("task_runtime") + "/sentiment";
  save_task(dir, s, labels, r);
  const saved_task t = read_saved_task(m, dir);
  CHECK(t.settings.method == "houlsby");
  // The saved task predicts what the trained one did, bitwise.
  const run_result p = predict_task(m, t.settings, t.labels.size(), {}, t.dir, t.head_path, rows);
  CHECK(p.predictions == r.predictions);
  CHECK(p.probabilities == r.probabilities);
  CHECK(p.accuracy == r.accuracy);

  // Served next to nothing else, the same task gives the same logits' argmax.
  const peft::encoder<peft::use_lite, float> enc(m.weights);
  peft::multi_task_server<peft::use_lite, float> server(enc, m.pad_id);
  add_saved_task(server, m, "sentiment", t);
  const auto logits = server.task_logits("sentiment", rows);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    Eigen::Index best = 0;
    logits.row(static_cast<Eigen::Index>(i)).maxCoeff(&best);
    CHECK(best == r.predictions[i]);
  }

  // A method the registry does not know, and label words on a model without a masked-LM head.
  task_settings bad = s;
  bad.method = "no-such-method";
  CHECK_THROWS_WITH(train_task(m, bad, 2, {}, rows, {}, rows, fit, 5), Catch::Contains("no-such-method"));
  CHECK_THROWS_WITH(train_task(m, s, 2, {5, 6}, rows, {}, rows, fit, 5),
                    Catch::Contains("masked-LM") && Catch::Contains("use_lite"));
}

TEST_CASE("the task layer's errors name what was expected and what was found", "[task][errors]") {
  CHECK_THROWS_WITH(load_model("/nonexistent/model"), Catch::Contains("does not exist"));
  const std::string empty = peft_test::scratch_dir("task_layer_empty");
  CHECK_THROWS_WITH(load_model(empty), Catch::Contains("neither config.json") && Catch::Contains("model.json"));
  const model_files m = load_model(peft_test::use_lite_dir());
  CHECK_THROWS_WITH(read_saved_task(m, empty), Catch::Contains("no task.json"));
  CHECK_THROWS_WITH(task_policy("mpmp", model_shape(m), 0, ""), Catch::Contains("method mpmp"));
  CHECK_THROWS_WITH(method_of_peft_type("ADALORA"), Catch::Contains("ADALORA") && Catch::Contains("LORA"));
  task_settings s;
  s.model_type = m.model_type;
  s.max_length = 4;
  s.prompt_tokens = 3;
  CHECK_THROWS_WITH(encode(m, s, small_data(), peft::label_map::from_dataset(small_data()), std::nullopt, true),
                    Catch::Contains("leaves no room"));
  // A task trained on another kind of model.
  const std::string dir = peft_test::scratch_dir("task_layer_other") + "/t";
  task_settings bert;
  bert.method = "head";
  bert.model_type = "bert";
  bert.pooling = "cls";
  save_task(dir, bert, peft::label_map({"a", "b"}), {}, {{"w", peft::tensor{{2}, {1.f, 2.f}}}});
  CHECK_THROWS_WITH(read_saved_task(m, dir), Catch::Contains("'bert' model"));
}

TEST_CASE("label options: a task's classes written as options, saved in task.json and encoded with their spans",
          "[task][choices]") {
  const peft::label_map labels({"pos", "neg"});
  CHECK(label_options(labels, "") == std::vector<std::string>{"pos", "neg"});
  CHECK(label_options(labels, "neg=bad") == std::vector<std::string>{"pos", "bad"});
  CHECK(label_options(labels, "neg=very bad,pos=good") == std::vector<std::string>{"good", "very bad"});
  CHECK_THROWS_WITH(label_options(labels, "neg"), Catch::Contains("LABEL=TEXT expected, got 'neg'"));
  CHECK_THROWS_WITH(label_options(labels, "neg="), Catch::Contains("LABEL=TEXT expected, got 'neg='"));
  CHECK_THROWS_WITH(label_options(labels, "meh=so-so"), Catch::Contains("label 'meh' expected one of pos, neg"));

  // task.json: written only when set, read back, refused for another kind or an empty list.
  task_settings s;
  s.method = "lora";
  s.model_type = "use_lite";
  s.pooling = "tokens";
  CHECK(!s.to_json().contains("choices"));
  s.choices = {"good", "bad"};
  const auto j = s.to_json();
  CHECK(task_settings::from_json(j).choices == s.choices);
  auto bad = j;
  bad["choices"] = nlohmann::json::array();
  CHECK_THROWS_WITH(task_settings::from_json(bad), Catch::Contains("field 'choices' expected a non-empty list"));
  bad = j;
  bad["kind"] = "regression";
  CHECK_THROWS_AS(task_settings::from_json(bad), peft::io_error);

  // Encoding on the real USE-lite tokenizer: the gold option's span is the answer, after the
  // placeholders; unlabelled rows keep their options and no answer.
  const model_files m = load_model(peft_test::use_lite_dir());
  s.max_length = 64;
  s.prompt_tokens = 2;
  auto data = small_data();
  data[1].label.reset();
  const auto map = peft::label_map::from_dataset(small_data());
  s.choices = label_options(map, "pos=good,neg=bad");
  const int pos = map.id("pos"), neg = map.id("neg");
  const auto rows = encode(m, s, data, map, std::nullopt, false);
  REQUIRE(rows.size() == data.size());
  const auto good = m.unigram->encode("good"), bad_ids = m.unigram->encode("bad");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& e = rows[i];
    REQUIRE(e.choices.size() == 2);
    const auto piece = [&](peft::index p) { return e.ids[static_cast<std::size_t>(p)]; };
    CHECK(piece(e.choices[static_cast<std::size_t>(pos)].first) == good.front());
    CHECK(piece(e.choices[static_cast<std::size_t>(neg)].first) == bad_ids.front());
    CHECK(e.ids[1] == s.placeholder_id);
    if (i == 1) {
      CHECK(e.label == -1);
      CHECK(e.start == -1);
    } else {
      CHECK(e.label == (i % 2 ? neg : pos));
      CHECK(std::make_pair(e.start, e.end) == e.choices[static_cast<std::size_t>(e.label)]);
    }
  }
  // One option per class, and no prompt template with options.
  s.choices = {"good"};
  CHECK_THROWS_WITH(encode(m, s, data, map, std::nullopt, false), Catch::Contains("one per class expected (2), got 1"));
}
