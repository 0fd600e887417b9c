// SPDX-License-Identifier: Apache-2.0
// Task kinds (task/kinds.hpp): each kind's loss through its head, a policy and the encoder
// against finite differences in double; per-token heads with and without a prompt's virtual
// tokens; each kind's metrics from the head's outputs; fit training each kind; and the errors
// of rows that do not carry their kind's labels. Classification cast as reading comprehension
// (label options, a span head: MPMP's form) is checked the same way.
#include <peft/methods.hpp>
#include <peft/policies/modular_prompt.hpp>
#include <peft/task/kinds.hpp>
#include <peft/task/prompt_placeholders.hpp>
#include <peft/train/trainer.hpp>

#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "gradcheck.hpp"
#include "small_model.hpp"
#include "test_common.hpp"

using peft_test::check_gradient;

namespace {

using peft::task_kind;

/// Three rows of the small vocabulary (ids < 30), of lengths 6, 3 and 5.
std::vector<peft::encoded_example> rows_of(task_kind kind) {
  std::vector<peft::encoded_example> rows(3);
  rows[0].ids = {2, 5, 7, 9, 11, 3};
  rows[1].ids = {2, 8, 3};
  rows[2].ids = {2, 13, 17, 19, 3};
  switch (kind) {
    case task_kind::classification:
      rows[0].label = 1, rows[1].label = 0, rows[2].label = 2;
      break;
    case task_kind::regression:
      rows[0].targets = {0.5f, -1.0f}, rows[1].targets = {1.5f, 0.25f}, rows[2].targets = {-0.3f, 0.75f};
      break;
    case task_kind::multi_label:
      rows[0].targets = {1, 0, 1}, rows[1].targets = {0, 0, 0}, rows[2].targets = {0, 1, 1};
      break;
    case task_kind::token_classification:
      rows[0].token_labels = {-100, 0, 2, -100, 1, -100};
      rows[1].token_labels = {-100, 1, -100};
      rows[2].token_labels = {-100, 2, 0, 1, -100};
      break;
    case task_kind::extractive_qa:
      rows[0].start = 1, rows[0].end = 3;
      rows[1].start = 0, rows[1].end = 0;
      rows[2].start = 2, rows[2].end = 2;
      break;
  }
  return rows;
}

/// Head width and pooling of each kind in these tests.
peft::index outputs_of(task_kind kind) {
  switch (kind) {
    case task_kind::classification: return 3;
    case task_kind::regression: return 2;
    case task_kind::multi_label: return 3;
    case task_kind::token_classification: return 3;
    case task_kind::extractive_qa: return 2;
  }
  return 0;
}
peft::pool_kind pooling_of(task_kind kind) {
  return kind == task_kind::token_classification || kind == task_kind::extractive_qa ? peft::pool_kind::tokens
                                                                                     : peft::pool_kind::cls;
}

const task_kind all_kinds[] = {task_kind::classification, task_kind::regression, task_kind::multi_label,
                               task_kind::token_classification, task_kind::extractive_qa};

}  // namespace

TEST_CASE("every kind's loss through its head, a policy and the encoder matches finite differences",
          "[kinds][grad]") {
  // LoRA changes the layers; prompt tuning puts virtual tokens in front, which a per-token
  // head must drop again (pooling.hpp's token_rows) so its rows are the text's.
  for (const char* method : {"lora", "prompt-tuning"}) {
    for (auto kind : all_kinds) {
      INFO(method << ", " << peft::task_kind_name(kind));
      peft_test::small_model<peft::bert> sm("bert");
      peft::method_options options = nlohmann::json::object();
      if (std::string(method) == "prompt-tuning") options["num_virtual_tokens"] = 2;
      auto policy = peft::make_policy<double>(method, sm.enc.shape(), 3, options);
      peft::classification_head<double> head(sm.enc.hidden_size(), outputs_of(kind), pooling_of(kind), 0.1, 4);
      peft::task_model model(sm.enc, policy, head);
      peft::task_objective o;
      o.kind = kind;
      const auto rows = rows_of(kind);
      const auto tb = peft::make_task_batch(rows, {0, 1, 2}, 0);
      auto set = model.parameters();
      auto loss_fn = [&](const peft::matrix<double>& z, peft::matrix<double>& dz) { return peft::task_loss(o, z, tb, dz); };
      auto loss = [&] {
        peft::rng gen(9);
        set.zero_grad();
        return model.forward_backward(tb, peft::mode::train, gen, loss_fn);
      };
      peft::vector<double> x = set.get_flat();
      set.zero_grad();
      peft::rng gen(9);
      peft::matrix<double> z;
      model.forward_backward(tb, peft::mode::train, gen, loss_fn, &z);
      const peft::vector<double> analytic = set.get_flat_grad();
      const auto rep = check_gradient(
          x.data(), x.size(), analytic.data(),
          [&] {
            set.set_flat(x);
            return loss();
          },
          1e-6, 300);
      set.set_flat(x);
      CHECK(rep.max_abs_err < 1e-7);
      CHECK(analytic.cwiseAbs().maxCoeff() > 1e-3);
      // The head's rows: one per example, or one per text position (the virtual tokens dropped).
      const bool per_token = pooling_of(kind) == peft::pool_kind::tokens;
      CHECK(z.rows() == (per_token ? 3 * 6 : 3));
      CHECK(z.cols() == outputs_of(kind));
    }
  }
}

TEST_CASE("SetFit's contrastive pair loss through an embedding head, a policy and the encoder matches finite "
          "differences", "[kinds][grad][contrastive]") {
  for (const char* method : {"lora", "houlsby"}) {
    INFO(method);
    peft_test::small_model<peft::bert> sm("bert");
    auto policy = peft::make_policy<double>(method, sm.enc.shape(), 3, nlohmann::json::object());
    // The embedding head of train_task's contrastive step: the pooled row itself.
    peft::classification_head<double> embed(sm.enc.hidden_size(), sm.enc.hidden_size(), peft::pool_kind::mean, 0.0, 4);
    embed.parameters().value(0).setIdentity();
    peft::task_model model(sm.enc, policy, embed);
    peft::task_objective o;
    o.pairs = true;
    auto rows = rows_of(task_kind::classification);
    rows.push_back(rows[0]);
    rows.back().ids = {2, 21, 23, 3};
    // Pairs (row 0, row 2) with target 1 and (row 1, row 3) with target 0.
    auto tb = peft::make_task_batch(rows, {0, 1, 2, 3}, 0);
    tb.targets = {1.0f, 0.0f};
    peft::parameter_set<double> set;
    peft::add_policy_parameters(set, policy);
    auto loss_fn = [&](const peft::matrix<double>& z, peft::matrix<double>& dz) { return peft::task_loss(o, z, tb, dz); };
    peft::vector<double> x = set.get_flat();
    set.zero_grad();
    peft::rng gen(9);
    model.forward_backward(tb, peft::mode::train, gen, loss_fn);
    const peft::vector<double> analytic = set.get_flat_grad();
    const auto rep = check_gradient(
        x.data(), x.size(), analytic.data(),
        [&] {
          set.set_flat(x);
          peft::rng g(9);
          return model.forward_backward(tb, peft::mode::train, g, loss_fn);
        },
        1e-6, 300);
    set.set_flat(x);
    CHECK(rep.max_abs_err < 1e-8);
    CHECK(analytic.cwiseAbs().maxCoeff() > 1e-4);
  }
}

TEST_CASE("a per-token head's outputs are each row's own positions, with or without virtual tokens",
          "[kinds][tokens]") {
  peft_test::small_model<peft::bert> sm("bert");
  peft::method_options options = nlohmann::json::object();
  options["num_virtual_tokens"] = 3;
  auto prompt = peft::make_policy<double>("prompt-tuning", sm.enc.shape(), 3, options);
  auto none = peft::make_policy<double>("lora", sm.enc.shape(), 3);
  peft::classification_head<double> head(sm.enc.hidden_size(), 4, peft::pool_kind::tokens, 0.1, 4);
  const auto rows = rows_of(task_kind::token_classification);
  for (auto* p : {&prompt, &none}) {
    peft::task_model model(sm.enc, *p, head);
    const auto out = peft::predict_outputs(model, rows, 2, 0);
    REQUIRE(out.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(out[i].rows() == static_cast<peft::index>(rows[i].ids.size()));
      CHECK(out[i].cols() == 4);
    }
    // Batching does not change a row's outputs (padding is masked out of attention).
    const auto alone = peft::predict_outputs(model, {rows[1]}, 1, 0);
    CHECK((alone[0] - out[1]).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("each kind's metrics from the head's outputs", "[kinds][metrics]") {
  using mat = peft::matrix<double>;
  auto row = [](std::initializer_list<double> v) {
    mat m(1, static_cast<peft::index>(v.size()));
    peft::index c = 0;
    for (double x : v) m(0, c++) = x;
    return m;
  };
  SECTION("regression: Pearson, Spearman and MSE against the targets") {
    peft::task_objective o;
    o.kind = task_kind::regression;
    std::vector<peft::encoded_example> rows(4);
    const double t[] = {1, 2, 3, 4};
    std::vector<mat> out;
    for (int i = 0; i < 4; ++i) {
      rows[static_cast<std::size_t>(i)].ids = {2, 3};
      rows[static_cast<std::size_t>(i)].targets = {static_cast<float>(t[i])};
      out.push_back(row({2 * t[i] + 1}));  // a perfect linear fit, off by 2t+1-t
    }
    const auto r = peft::score_outputs(o, rows, out);
    REQUIRE(r.metrics.size() == 3);
    CHECK(r.metrics[0].first == "pearson");
    CHECK(r.metrics[0].second == Approx(1.0));
    CHECK(r.metrics[1].second == Approx(1.0));
    CHECK(r.metrics[2].second == Approx((4.0 + 9.0 + 16.0 + 25.0) / 4.0));
    CHECK(r.score == r.metrics[0].second);
  }
  SECTION("multi-label: sigmoid of each output at the threshold") {
    peft::task_objective o;
    o.kind = task_kind::multi_label;
    std::vector<peft::encoded_example> rows(2);
    rows[0].ids = rows[1].ids = {2, 3};
    rows[0].targets = {1, 0};
    rows[1].targets = {1, 1};
    // probabilities 0.88/0.12 and 0.73/0.27: at 0.5 the second row misses its second label
    const std::vector<mat> out = {row({2, -2}), row({1, -1})};
    auto r = peft::score_outputs(o, rows, out);
    CHECK(r.metrics[0].first == "micro_f1");
    CHECK(r.metrics[0].second == Approx(2.0 * 2 / (2.0 * 2 + 0 + 1)));  // tp 2, fp 0, fn 1
    CHECK(r.metrics[2].second == Approx(0.5));                          // subset accuracy
    o.threshold = 0.2;                                                  // now every label of row 1
    r = peft::score_outputs(o, rows, out);
    CHECK(r.metrics[2].second == Approx(1.0));
  }
  SECTION("token classification: entities of the first pieces' tags") {
    peft::task_objective o;
    o.kind = task_kind::token_classification;
    o.labels = {"B-PER", "I-PER", "O"};
    peft::encoded_example e;
    e.ids = {2, 5, 6, 7, 8, 3};
    e.token_labels = {-100, 0, -100, 1, 2, -100};  // John(##son) Smith lives: B-PER I-PER O
    mat z = mat::Zero(6, 3);
    z(1, 0) = 5;  // B-PER
    z(2, 2) = 9;  // the second piece says O: ignored
    z(3, 2) = 5;  // O where I-PER was: the entity is cut short
    z(4, 2) = 5;
    auto r = peft::score_outputs(o, std::vector<peft::encoded_example>{e}, std::vector<mat>{z});
    CHECK(r.metrics[0].first == "f1");
    CHECK(r.metrics[0].second == Approx(0.0));                 // [John] is not [John Smith]
    CHECK(r.metrics[3].second == Approx(2.0 / 3.0));           // token accuracy
    z(3, 2) = 0;
    z(3, 1) = 5;  // I-PER: the whole entity
    r = peft::score_outputs(o, std::vector<peft::encoded_example>{e}, std::vector<mat>{z});
    CHECK(r.metrics[0].second == Approx(1.0));
  }
  SECTION("rows without their kind's labels are refused") {
    peft::task_objective o;
    o.kind = task_kind::regression;
    peft::encoded_example e;
    e.ids = {2, 3};
    CHECK_THROWS_WITH(peft::score_outputs(o, std::vector<peft::encoded_example>{e}, std::vector<mat>{row({1.0})}), Catch::Contains("row 0 has no label"));
  }
}

TEST_CASE("task_loss reads each kind's labels from the batch: values written out by hand", "[kinds][loss]") {
  // Independent of ops/losses.hpp's code: the definitions evaluated here, on a batch whose
  // rows have different lengths (so padding and the row layout matter).
  auto lse = [](const std::vector<double>& v) {
    double m = v[0], s = 0;
    for (double x : v) m = std::max(m, x);
    for (double x : v) s += std::exp(x - m);
    return m + std::log(s);
  };
  const auto tb_of = [](task_kind kind) {
    static std::vector<std::vector<peft::encoded_example>> keep;
    keep.push_back(rows_of(kind));
    return peft::make_task_batch(keep.back(), {0, 1, 2}, 0);
  };
  peft::task_objective o;
  peft::matrix<double> dz;
  SECTION("regression: mean squared error over rows and targets") {
    o.kind = task_kind::regression;
    peft::matrix<double> z(3, 2);
    z << 0.0, 1.0, 2.0, -1.0, 0.5, 0.5;
    const double t[3][2] = {{0.5, -1.0}, {1.5, 0.25}, {-0.3, 0.75}};
    double want = 0;
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 2; ++k) want += (z(i, k) - t[i][k]) * (z(i, k) - t[i][k]) / 6.0;
    CHECK(peft::task_loss(o, z, tb_of(o.kind), dz) == Approx(want).epsilon(1e-6));
  }
  SECTION("token classification: cross-entropy of the labelled positions only") {
    o.kind = task_kind::token_classification;
    peft::matrix<double> z(18, 3);
    for (peft::index r = 0; r < 18; ++r)
      for (peft::index c = 0; c < 3; ++c) z(r, c) = std::sin(double(3 * r + c));
    const std::vector<std::pair<int, int>> labelled = {{1, 0}, {2, 2}, {4, 1}, {7, 1}, {13, 2}, {14, 0}, {15, 1}};
    double want = 0;
    for (auto [row, label] : labelled) {
      const peft::index r = row;
      want += lse({z(r, 0), z(r, 1), z(r, 2)}) - z(r, label);
    }
    want /= double(labelled.size());
    CHECK(peft::task_loss(o, z, tb_of(o.kind), dz) == Approx(want).epsilon(1e-9));
  }
  SECTION("reading comprehension: start and end cross-entropy over each row's positions") {
    o.kind = task_kind::extractive_qa;
    peft::matrix<double> z(18, 2);
    for (peft::index r = 0; r < 18; ++r) z(r, 0) = std::cos(double(r)), z(r, 1) = std::sin(double(2 * r));
    const int starts[3] = {1, 0, 2}, ends[3] = {3, 0, 2};
    double want = 0;
    for (int b = 0; b < 3; ++b) {
      std::vector<double> s, e;
      for (int t = 0; t < 6; ++t) s.push_back(z(b * 6 + t, 0)), e.push_back(z(b * 6 + t, 1));
      want += (lse(s) - s[static_cast<std::size_t>(starts[b])] + lse(e) - e[static_cast<std::size_t>(ends[b])]) / 6.0;
    }
    CHECK(peft::task_loss(o, z, tb_of(o.kind), dz) == Approx(want).epsilon(1e-9));
  }
}

TEST_CASE("the kinds' losses refuse batches without their labels, naming the shapes", "[kinds][errors]") {
  peft::task_objective o;
  peft::matrix<double> z = peft::matrix<double>::Zero(3, 2), dz;
  auto rows = rows_of(task_kind::classification);
  const auto tb = peft::make_task_batch(rows, {0, 1, 2}, 0);
  o.kind = task_kind::regression;
  CHECK_THROWS_WITH(peft::task_loss(o, z, tb, dz), Catch::Contains("targets expected 3 x 2"));
  o.kind = task_kind::token_classification;
  CHECK_THROWS_WITH(peft::task_loss(o, z, tb, dz), Catch::Contains("a label per position expected (3), got 0"));
  o.kind = task_kind::extractive_qa;
  peft::matrix<double> z4 = peft::matrix<double>::Zero(4, 2);
  CHECK_THROWS_WITH(peft::task_loss(o, z4, tb, dz), Catch::Contains("multiple of the batch size 3"));
}

TEST_CASE("fit trains every kind with its loss and keeps the best score", "[kinds][fit]") {
  // The rows of each kind, repeated: a policy and head that learn them drive the loss down and
  // the score up (classification keeps its cross-entropy and accuracy).
  for (auto kind : all_kinds) {
    INFO(peft::task_kind_name(kind));
    peft_test::small_model<peft::bert, float> sm("bert");
    auto policy = peft::make_policy<float>("lora", sm.enc.shape(), 3);
    peft::classification_head<float> head(sm.enc.hidden_size(), outputs_of(kind), pooling_of(kind), 0.0, 4);
    peft::task_model model(sm.enc, policy, head);
    auto rows = rows_of(kind);
    if (kind == task_kind::token_classification) {
      for (auto& r : rows) r.word_ids.clear();
    }
    std::vector<peft::encoded_example> train;
    for (int k = 0; k < 4; ++k) train.insert(train.end(), rows.begin(), rows.end());
    peft::fit_options f;
    f.task.kind = kind;
    f.task.labels = {"B-X", "I-X", "O"};
    f.steps = 60;
    f.batch_size = 4;
    f.lr = 1e-2;
    f.head_lr = 5e-2;
    f.show_progress = false;
    peft::matrix<float> dz;
    double first = 0;
    {
      peft::rng gen(1);
      const auto tb = peft::make_task_batch(train, {0, 1, 2}, 0);
      first = model.forward_backward(tb, peft::mode::eval, gen, [&](const peft::matrix<float>& z, peft::matrix<float>& d) {
        return peft::task_loss(f.task, z, tb, d);
      });
    }
    // Reading comprehension evaluates whole questions (rows with their windows): the loss only here.
    const bool qa = kind == task_kind::extractive_qa;
    const auto res = peft::fit(model, train, qa ? std::vector<peft::encoded_example>{} : rows, f);
    CHECK(res.final_loss < 0.5 * first);
    if (qa) continue;
    CHECK(res.best.metrics.size() == peft::metric_names(kind).size());
    CHECK(res.best.score == res.best.metrics.front().second);
    if (kind == task_kind::regression) CHECK(res.best.score > 0.9);    // Pearson
    if (kind != task_kind::regression) CHECK(res.best.score > 0.66);   // accuracy / F1 on 3 rows
  }
}

// --- classification cast as reading comprehension ---------------------------------------------

namespace {
/// Rows [CLS] text [SEP] opt_0 , opt_1 , opt_2 [SEP] (option tokens 21, 22, 23; "," = 4),
/// labels 1, 0, 2, then 2 MPMP placeholders (ids 25, 26) after [CLS].
std::vector<peft::encoded_example> choice_rows() {
  std::vector<peft::encoded_example> rows(3);
  const std::vector<std::vector<std::int32_t>> text = {{5, 7, 9}, {8}, {13, 17}};
  const int labels[] = {1, 0, 2};
  for (std::size_t i = 0; i < 3; ++i) {
    auto& e = rows[i];
    e.ids = {2};
    e.ids.insert(e.ids.end(), text[i].begin(), text[i].end());
    e.ids.push_back(3);
    const auto at = static_cast<peft::index>(e.ids.size());
    e.ids.insert(e.ids.end(), {21, 4, 22, 4, 23, 3});
    e.choices = {{at, at}, {at + 2, at + 2}, {at + 4, at + 4}};
    e.label = labels[i];
    std::tie(e.start, e.end) = e.choices[static_cast<std::size_t>(e.label)];
    peft::insert_prompt_placeholders(e, 2, 25);
  }
  return rows;
}
}  // namespace

TEST_CASE("label options: placeholders shift the spans, the span loss matches finite differences through "
          "modular prompts, and the class is the best-scoring option",
          "[kinds][choices][grad]") {
  const auto rows = choice_rows();
  // [CLS] p p 5 7 9 [SEP] 21 , 22 , 23 [SEP]: the options moved by the 2 placeholders.
  CHECK(rows[0].ids == std::vector<std::int32_t>{2, 25, 26, 5, 7, 9, 3, 21, 4, 22, 4, 23, 3});
  CHECK(rows[0].choices == std::vector<std::pair<peft::index, peft::index>>{{7, 7}, {9, 9}, {11, 11}});
  CHECK((rows[0].start == 9 && rows[0].end == 9));

  peft_test::small_model<peft::bert> sm("bert");
  peft::modular_prompt_config c;
  c.num_modules = 2;
  c.num_prompt_tokens = 2;
  c.intrinsic_dim = 3;
  peft::modular_prompt<double> policy(sm.enc.shape(), c, 3);
  peft::rng g(5);
  for (auto* store : {&policy.prompt_parameters().values(), &policy.projection_parameters().values()})
    for (peft::index i = 0; i < store->size(); ++i) (*store)[i] = g.normal() * 0.5;
  peft::classification_head<double> head(sm.enc.hidden_size(), 2, peft::pool_kind::tokens, 0.1, 4);
  peft::task_model model(sm.enc, policy, head);
  peft::task_objective o;
  o.choices = true;
  const auto tb = peft::make_task_batch(rows, {0, 1, 2}, 0);
  auto set = model.parameters();
  auto loss_fn = [&](const peft::matrix<double>& z, peft::matrix<double>& dz) { return peft::task_loss(o, z, tb, dz); };
  set.zero_grad();
  peft::rng gen(9);
  peft::matrix<double> z;
  const double loss0 = model.forward_backward(tb, peft::mode::train, gen, loss_fn, &z);
  const peft::vector<double> analytic = set.get_flat_grad();
  peft::vector<double> x = set.get_flat();
  const auto rep = check_gradient(
      x.data(), x.size(), analytic.data(),
      [&] {
        set.set_flat(x);
        peft::rng r(9);
        set.zero_grad();
        return model.forward_backward(tb, peft::mode::train, r, loss_fn);
      },
      1e-6, 300);
  set.set_flat(x);
  CHECK(rep.max_abs_err < 1e-7);
  CHECK(analytic.cwiseAbs().maxCoeff() > 1e-3);

  // The loss is the span loss on the gold option: the same as reading comprehension's.
  peft::task_objective qa;
  qa.kind = task_kind::extractive_qa;
  peft::matrix<double> dz1, dz2;
  CHECK(peft::task_loss(o, z, tb, dz1) == peft::task_loss(qa, z, tb, dz2));
  CHECK(peft::task_loss(o, z, tb, dz1) == Approx(loss0).epsilon(1e-12));
  CHECK(dz1 == dz2);

  // Predictions: the option with the highest start + end logit, by hand. Options sit at
  // positions 7/9/11, 5/7/9 and 6/8/10 of the three rows (13, 11 and 12 positions).
  CHECK(rows[1].choices == std::vector<std::pair<peft::index, peft::index>>{{5, 5}, {7, 7}, {9, 9}});
  CHECK(rows[2].choices == std::vector<std::pair<peft::index, peft::index>>{{6, 6}, {8, 8}, {10, 10}});
  std::vector<peft::matrix<double>> out = {peft::matrix<double>::Zero(13, 2), peft::matrix<double>::Zero(11, 2),
                                           peft::matrix<double>::Zero(12, 2)};
  out[0](7, 0) = 2, out[0](7, 1) = -3;  // option 0: -1
  out[0](9, 0) = -1, out[0](9, 1) = 1;  // option 1: 0 (best)
  out[0](11, 0) = -1;                   // option 2: -1
  out[1](5, 0) = 1;                     // option 0: 1 (best)
  out[2](10, 1) = 4, out[2](8, 0) = 3;  // option 2: 4 beats option 1's 3
  CHECK(peft::choice_predictions(rows, out) == std::vector<peft::index>{1, 0, 2});
  const auto r = peft::score_outputs(o, rows, out);
  CHECK(r.accuracy == 1.0);
  CHECK(r.metrics.front().first == "accuracy");
  out[1](7, 1) = 5;  // row 1 now points at option 1, not its gold 0
  CHECK(peft::score_outputs(o, rows, out).accuracy == Approx(2.0 / 3));
  out[2] = peft::matrix<double>::Zero(10, 2);  // option 2's position is outside the output
  CHECK_THROWS_WITH(peft::choice_predictions(rows, out), Catch::Contains("row 2 option 2 spans positions 10..10"));
  auto bare = rows;
  bare[1].choices.clear();
  CHECK_THROWS_WITH(peft::choice_predictions(bare, out), Catch::Contains("row 1 has none"));
}
