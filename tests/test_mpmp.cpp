// SPDX-License-Identifier: Apache-2.0
// MPMP training (train/mpmp.hpp) and the prompt library (io/mpmp_library.hpp) on a small random
// BERT encoder with synthetic marker tasks:
//  - prompt placeholders: insertion after the first token, segments, mask position, errors;
//  - multi-task pre-training: learns both upstream tasks (2 and 3 classes), draws tasks
//    uniformly, never writes the encoder, is deterministic per seed and keeps the best-by-dev
//    parameters (the same as a run stopped at the kept step);
//  - two-stage tuning: what each stage exposes, moves and leaves bitwise alone, the hand-over
//    between the stages, and router-only tuning from a pre-trained library lowering the loss;
//  - black-box tuning: forward passes only, evaluation budgets, best-by-dev, lower training
//    loss, determinism;
//  - the library folder: bitwise round trip, head_for, replacement, failed saves that leave the
//    previous library intact, malformed library.json;
//  - bad options and data, each with a message naming the problem.
// Gradients of the policy itself are checked in test_modular_prompt.cpp.
#include <peft/core/numerics.hpp>
#include <peft/io/mpmp_library.hpp>
#include <peft/model/encoder.hpp>
#include <peft/train/mpmp.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "small_model.hpp"
#include "test_common.hpp"

using idx = peft::index;
using peft::modular_prompt;
using peft_test::small_config;
namespace fs = std::filesystem;

namespace {

using examples = std::vector<peft::encoded_example>;
template <typename Scalar>
using enc_t = peft::encoder<peft::bert, Scalar>;
template <typename Scalar>
using head_t = peft::classification_head<Scalar>;

constexpr idx n_prompt = 2;            // prompt tokens
constexpr std::int32_t ph_first = 20;  // placeholder ids 20, 21 (vocab 30)
constexpr idx n_modules = 3;

/// A synthetic task: the class is which marker token the text holds (once at a random
/// position, and at each other position with probability 0.3); the other tokens are filler.
/// Text of 3..6 tokens between [CLS] = 2 and [SEP] = 3, then the placeholders after [CLS].
examples marker_task(std::size_t count, const std::vector<std::int32_t>& markers,
                     const std::vector<std::int32_t>& filler, std::uint64_t seed) {
  peft::rng g(seed);
  examples out;
  for (std::size_t i = 0; i < count; ++i) {
    peft::encoded_example e;
    e.label = static_cast<int>(i % markers.size());
    const std::size_t len = 3 + g.below(4);
    const std::size_t at = g.below(len);
    e.ids.push_back(2);
    for (std::size_t t = 0; t < len; ++t)
      e.ids.push_back(t == at || g.uniform() < 0.3 ? markers[static_cast<std::size_t>(e.label)]
                                                   : filler[g.below(filler.size())]);
    e.ids.push_back(3);
    out.push_back(std::move(e));
  }
  return peft::with_prompt_placeholders(std::move(out), n_prompt, ph_first);
}

const std::vector<std::int32_t> filler_ab = {14, 15, 16, 17, 18, 19, 24, 25, 26, 27, 28, 29};
const std::vector<std::int32_t> filler_c = {8, 10, 12, 14, 16, 18, 24, 26, 28};

/// Upstream task A (token 5 vs 7, labels "no"/"yes") and B (tokens 9/11/13, 3 classes).
std::vector<peft::mpmp_task_data> upstream_tasks() {
  std::vector<peft::mpmp_task_data> t(2);
  t[0] = {"a", marker_task(64, {5, 7}, filler_ab, 1), marker_task(40, {5, 7}, filler_ab, 2)};
  t[1] = {"b", marker_task(96, {9, 11, 13}, filler_ab, 3), marker_task(60, {9, 11, 13}, filler_ab, 4)};
  return t;
}
/// Downstream task C: as A (same labels), with other filler tokens.
examples task_c_train() { return marker_task(32, {5, 7}, filler_c, 11); }
examples task_c_dev() { return marker_task(32, {5, 7}, filler_c, 12); }

peft::modular_prompt_config small_mp(idx tasks) {
  peft::modular_prompt_config c;
  c.num_modules = n_modules;
  c.num_prompt_tokens = n_prompt;
  c.intrinsic_dim = 4;
  c.num_tasks = tasks;
  return c;
}

/// O(1) z and A (so that the prompts matter), and routers that give task 0 module 0 and task
/// 1 the other modules of every layer (so that the pre-trained modules specialise).
template <typename Scalar>
void specialise_policy(modular_prompt<Scalar>& p, std::uint64_t seed) {
  peft::rng g(seed);
  auto fill = [&](peft::vector<Scalar>& v, double scale) {
    for (idx i = 0; i < v.size(); ++i) v[i] = static_cast<Scalar>(g.normal() * scale);
  };
  fill(p.prompt_parameters().values(), 1.0);
  fill(p.projection_parameters().values(), 0.5);
  auto R = p.router_parameters().value(0);
  for (idx t = 0; t < R.rows(); ++t)
    for (idx c = 0; c < R.cols(); ++c)
      R(t, c) = static_cast<Scalar>(((c % n_modules == 0) == (t % 2 == 0)) ? 3 : -3);
}

template <typename Scalar>
std::vector<head_t<Scalar>> upstream_heads() {
  return {head_t<Scalar>(16, 2, peft::pool_kind::mean, 0.1, 5),
          head_t<Scalar>(16, 3, peft::pool_kind::mean, 0.1, 6)};
}

peft::mpmp_pretrain_options pretrain_options(std::uint64_t seed = 1) {
  peft::mpmp_pretrain_options o;
  o.steps = 300;
  o.batch_size = 16;
  o.router_lr = 5e-2;
  o.prompt_lr = 1e-2;
  o.head_lr = 3e-2;
  o.eval_every = 50;
  o.seed = seed;
  o.show_progress = false;
  return o;
}

template <typename Scalar, typename Policy>
double accuracy_of(const enc_t<Scalar>& enc, Policy& p, head_t<Scalar>& h, const examples& d) {
  peft::task_model m(enc, p, h);
  return peft::evaluate(m, d, 64, 0).accuracy;
}

/// Full-batch evaluation-mode cross-entropy.
template <typename Scalar>
double loss_of(const enc_t<Scalar>& enc, modular_prompt<Scalar>& p, head_t<Scalar>& h, const examples& d) {
  peft::task_model m(enc, p, h);
  std::vector<std::size_t> rows(d.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  const auto tb = peft::make_task_batch(d, rows, 0);
  peft::matrix<Scalar> dz;
  return static_cast<double>(peft::cross_entropy(m.predict(tb), tb.labels, dz));
}

/// Per-task accuracy on the dev (or training) sets, each task with its own router row and
/// head, and their mean: the way mpmp_pretrain scores an evaluation.
template <typename Scalar>
double mean_accuracy(const enc_t<Scalar>& enc, modular_prompt<Scalar>& p, std::vector<head_t<Scalar>>& heads,
                     const std::vector<peft::mpmp_task_data>& tasks, bool dev,
                     std::vector<double>* per_task = nullptr) {
  const idx keep = p.task();
  double sum = 0;
  int n = 0;
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    p.set_task(static_cast<idx>(t));
    const double a = accuracy_of(enc, p, heads[t], dev ? tasks[t].dev : tasks[t].train);
    if (per_task) per_task->push_back(a);
    sum += a;
    ++n;
  }
  p.set_task(keep);
  return sum / n;
}

/// Every value of the three stores.
template <typename Scalar>
peft::vector<Scalar> all_values(const modular_prompt<Scalar>& p) {
  const auto& r = p.router_parameters().values();
  const auto& z = p.prompt_parameters().values();
  const auto& a = p.projection_parameters().values();
  peft::vector<Scalar> v(r.size() + z.size() + a.size());
  v << r, z, a;
  return v;
}

/// Bitwise equality that is false (not an Eigen assertion) for different sizes.
template <typename Scalar>
bool same_values(const peft::vector<Scalar>& a, const peft::vector<Scalar>& b) {
  return a.size() == b.size() && a == b;
}

/// A pre-trained library (shared by the tuning tests; built once): @p heads a head per task,
/// or one span head over the tasks' label options.
struct library {
  std::shared_ptr<peft::encoder_weights<double>> weights;
  enc_t<double> enc;
  modular_prompt<double> policy;
  std::vector<head_t<double>> heads;
  std::vector<peft::mpmp_task_data> tasks;
  peft::mpmp_pretrain_result result;

  library(std::vector<head_t<double>> h, std::vector<peft::mpmp_task_data> t)
      : weights(peft::random_encoder_weights<double>(small_config("bert", 0.1), 5)),
        enc(weights),
        policy(enc.shape(), small_mp(2), 1),
        heads(std::move(h)),
        tasks(std::move(t)) {
    specialise_policy(policy, 7);
    result = peft::mpmp_pretrain(enc, policy, heads, tasks, pretrain_options());
  }
};
const library& pretrained_library() {
  static const library lib(upstream_heads<double>(), upstream_tasks());
  return lib;
}

/// Names of the entries of @p dir's parent that start with @p dir's name followed by @p infix.
std::vector<std::string> leftovers(const std::string& dir, const std::string& infix) {
  std::vector<std::string> out;
  const fs::path p(dir);
  const std::string prefix = p.filename().string() + infix;
  for (const auto& e : fs::directory_iterator(p.parent_path()))
    if (e.path().filename().string().compare(0, prefix.size(), prefix) == 0) out.push_back(e.path().string());
  return out;
}

}  // namespace

// --- 1. placeholders ---------------------------------------------------------------------------

TEST_CASE("prompt placeholders follow the first token and shift the mask position", "[mpmp][placeholders]") {
  peft::encoded_example e;
  e.ids = {2, 5, 6, 3};
  e.segments = {1, 1, 0, 0};  // the first token's segment (1) is the one copied
  e.mask_pos = 2;
  e.label = 1;
  peft::insert_prompt_placeholders(e, 3, 20);
  CHECK(e.ids == std::vector<std::int32_t>{2, 20, 21, 22, 5, 6, 3});
  CHECK(e.segments == std::vector<std::int32_t>{1, 1, 1, 1, 1, 0, 0});
  CHECK(e.mask_pos == 5);
  CHECK(e.label == 1);

  // Default ids 1000.., no segments, no mask; a mask on the first token stays there.
  peft::encoded_example f;
  f.ids = {7};
  peft::insert_prompt_placeholders(f, 2);
  CHECK(peft::mpmp_placeholder_id == 1000);
  CHECK(f.ids == std::vector<std::int32_t>{7, 1000, 1001});
  CHECK(f.segments.empty());
  CHECK(f.mask_pos == -1);
  peft::encoded_example g;
  g.ids = {2, 4, 3};
  g.mask_pos = 0;
  peft::insert_prompt_placeholders(g, 1, 20);
  CHECK(g.mask_pos == 0);
  CHECK(g.ids == std::vector<std::int32_t>{2, 20, 4, 3});

  // with_prompt_placeholders works on a copy and treats every example.
  const examples data = {e, f};
  const auto out = peft::with_prompt_placeholders(data, 2, 25);
  REQUIRE(out.size() == 2);
  CHECK(data[0].ids.size() == 7);  // the input is untouched
  CHECK(out[0].ids == std::vector<std::int32_t>{2, 25, 26, 20, 21, 22, 5, 6, 3});
  CHECK(out[0].segments.size() == 9);
  CHECK(out[0].mask_pos == 7);
  CHECK(out[1].ids == std::vector<std::int32_t>{7, 25, 26, 1000, 1001});
  CHECK(out[1].mask_pos == -1);

  // Errors, leaving the example as it was.
  peft::encoded_example h = g;
  CHECK_THROWS_AS(peft::insert_prompt_placeholders(h, 0), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::insert_prompt_placeholders(h, 0),
                    Catch::Contains("insert_prompt_placeholders: prompt tokens expected >= 1, got 0"));
  CHECK_THROWS_WITH(peft::insert_prompt_placeholders(h, -2), Catch::Contains("got -2"));
  CHECK(h.ids == g.ids);
  peft::encoded_example empty;
  CHECK_THROWS_AS(peft::insert_prompt_placeholders(empty, 2), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::insert_prompt_placeholders(empty, 2),
                    Catch::Contains("example expected >= 1 token, got 0"));
  CHECK_THROWS_WITH(peft::with_prompt_placeholders({f, empty}, 2), Catch::Contains("expected >= 1 token"));
}

// --- 2. multi-task pre-training ----------------------------------------------------------------

TEST_CASE(
    "multi-task pre-training learns both tasks, draws them uniformly and keeps the best-by-dev "
    "parameters without touching the encoder",
    "[mpmp][pretrain]") {
  auto weights = peft::random_encoder_weights<double>(small_config("bert", 0.1), 5);
  const peft::encoder_weights<double> before = *weights;  // a deep copy to compare against
  const enc_t<double> enc(weights);
  const auto tasks = upstream_tasks();
  modular_prompt<double> init(enc.shape(), small_mp(2), 1);
  specialise_policy(init, 7);
  const auto init_heads = upstream_heads<double>();

  auto p0 = init;
  auto h0 = init_heads;
  const double start_dev = mean_accuracy(enc, p0, h0, tasks, true);
  const double start_train = mean_accuracy(enc, p0, h0, tasks, false);

  auto run = [&](const peft::mpmp_pretrain_options& o, modular_prompt<double>& p,
                 std::vector<head_t<double>>& h) {
    p = init;
    h = init_heads;
    return peft::mpmp_pretrain(enc, p, h, tasks, o);
  };
  const auto o = pretrain_options(1);
  modular_prompt<double> p = init;
  std::vector<head_t<double>> h;
  const auto r = run(o, p, h);

  // Learning: chance is 1/2 and 1/3 (mean 0.42).
  std::vector<double> dev_acc;
  const double dev = mean_accuracy(enc, p, h, tasks, true, &dev_acc);
  const double train = mean_accuracy(enc, p, h, tasks, false);
  INFO("mean dev accuracy " << start_dev << " -> " << r.mean_dev_accuracy << " (a " << r.dev_accuracy[0]
                            << ", b " << r.dev_accuracy[1] << ", kept step " << r.best_step << "); train "
                            << start_train << " -> " << train << "; final loss " << r.final_loss);
  CHECK(r.mean_dev_accuracy > 0.8);
  CHECK(r.mean_dev_accuracy > start_dev + 0.2);
  CHECK(train > 0.8);
  CHECK(train > start_train + 0.2);
  for (double a : r.dev_accuracy) CHECK(a > 0.7);
  CHECK(std::isfinite(r.final_loss));
  CHECK(r.final_loss < 0.8);

  // The kept parameters are the ones scored: a fresh evaluation gives the same numbers.
  CHECK(dev == r.mean_dev_accuracy);
  CHECK(dev_acc == r.dev_accuracy);
  CHECK(r.best_step % o.eval_every == 0);
  CHECK(r.best_step >= o.eval_every);
  CHECK(r.best_step <= o.steps);
  CHECK(p.trainable().router);
  CHECK(p.trainable().prompts);
  CHECK(p.trainable().projection);
  CHECK(p.router_parameters().grads().cwiseAbs().maxCoeff() == 0.0);
  for (const auto& hd : h) CHECK(hd.parameters().grads().cwiseAbs().maxCoeff() == 0.0);

  // Task draws: one per step, both tasks about equally often.
  REQUIRE(r.task_steps.size() == 2);
  CHECK(r.steps == o.steps);
  CHECK(r.task_steps[0] + r.task_steps[1] == o.steps);
  for (long s : r.task_steps) {
    CHECK(double(s) >= 0.35 * double(o.steps));
    CHECK(double(s) <= 0.65 * double(o.steps));
  }

  // The frozen encoder is never written.
  CHECK(peft_test::same_weights(before, enc.weights()));

  // Same seed: bitwise the same run; another seed: another run.
  modular_prompt<double> p2 = init;
  std::vector<head_t<double>> h2;
  const auto r2 = run(o, p2, h2);
  CHECK(same_values(all_values(p2), all_values(p)));
  for (std::size_t t = 0; t < h.size(); ++t)
    CHECK(same_values(h2[t].parameters().values(), h[t].parameters().values()));
  CHECK(r2.task_steps == r.task_steps);
  CHECK(r2.dev_accuracy == r.dev_accuracy);
  CHECK(r2.best_step == r.best_step);
  CHECK(r2.final_loss == r.final_loss);
  modular_prompt<double> p3 = init;
  std::vector<head_t<double>> h3;
  const auto r3 = run(pretrain_options(2), p3, h3);
  CHECK(!same_values(all_values(p3), all_values(p)));
  CHECK(!same_values(h3[0].parameters().values(), h[0].parameters().values()));
  CHECK(r3.final_loss != r.final_loss);
}

TEST_CASE("pre-training keeps the parameters of its best dev evaluation, not the last ones",
          "[mpmp][pretrain]") {
  // Evaluating after every step makes the last step unlikely to be the best one; the kept
  // parameters must then be bitwise those of a run stopped at the kept step (the random
  // streams do not depend on the evaluations).
  const enc_t<double> enc(peft::random_encoder_weights<double>(small_config("bert", 0.1), 5));
  const auto tasks = upstream_tasks();
  modular_prompt<double> init(enc.shape(), small_mp(2), 1);
  specialise_policy(init, 7);
  auto o = pretrain_options(3);
  o.steps = 120;
  o.eval_every = 1;
  auto p = init;
  auto h = upstream_heads<double>();
  const auto r = peft::mpmp_pretrain(enc, p, h, tasks, o);
  INFO("kept step " << r.best_step << " of " << o.steps << ", mean dev accuracy " << r.mean_dev_accuracy);
  REQUIRE(r.best_step < o.steps);

  auto o_short = o;
  o_short.steps = r.best_step;
  o_short.eval_every = 0;  // once, at the end
  auto q = init;
  auto hq = upstream_heads<double>();
  const auto rq = peft::mpmp_pretrain(enc, q, hq, tasks, o_short);
  CHECK(rq.best_step == r.best_step);
  CHECK(rq.mean_dev_accuracy == r.mean_dev_accuracy);
  CHECK(same_values(all_values(q), all_values(p)));
  for (std::size_t t = 0; t < h.size(); ++t)
    CHECK(same_values(hq[t].parameters().values(), h[t].parameters().values()));
  // And the last parameters score no better (else they would have been kept).
  auto o_full = o;
  o_full.eval_every = 0;
  auto last = init;
  auto hl = upstream_heads<double>();
  const auto rl = peft::mpmp_pretrain(enc, last, hl, tasks, o_full);
  CHECK(rl.best_step == o.steps);
  CHECK(!same_values(all_values(last), all_values(p)));
  CHECK(rl.mean_dev_accuracy <= r.mean_dev_accuracy);
}

// --- 3. two-stage tuning -----------------------------------------------------------------------

TEST_CASE("mpmp_tune router stage: S*M logits move, z, A, head and encoder do not", "[mpmp][tune]") {
  const auto& lib = pretrained_library();
  const peft::encoder_weights<double> before = *lib.weights;
  REQUIRE(lib.result.mean_dev_accuracy > 0.8);
  auto p = lib.policy;
  p.reset_router(1, 9);
  auto head = lib.heads[0];  // task C has task A's labels
  const auto train = task_c_train(), dev = task_c_dev();
  const peft::vector<double> r0 = p.router_parameters().values(), z0 = p.prompt_parameters().values(),
                             a0 = p.projection_parameters().values(), w0 = head.parameters().values();
  const double loss0 = loss_of(lib.enc, p, head, train);
  const double acc0 = accuracy_of(lib.enc, p, head, dev);

  peft::mpmp_tune_options o;
  o.stage = peft::mpmp_stage::router;
  o.router_epochs = 60;
  o.router_lr = 0.1;
  o.eval_every = 5;
  o.show_progress = false;
  const auto res = peft::mpmp_tune(lib.enc, p, head, train, dev, o);
  REQUIRE(res.stages.size() == 1);
  const auto& st = res.stages[0];
  const idx S = p.num_slots();
  INFO("router stage: dev accuracy " << st.start_dev_accuracy << " -> " << st.best_dev_accuracy << " (epoch "
                                     << st.best_epoch << "), training loss " << loss0 << " -> last step "
                                     << st.final_loss << ", kept " << loss_of(lib.enc, p, head, train));
  CHECK(st.name == "router");
  CHECK(st.trainable_params == S * n_modules);
  CHECK(st.epochs == 60);
  CHECK(st.steps == 60);  // full batch
  CHECK(st.start_dev_accuracy == acc0);
  CHECK(res.dev_accuracy == st.best_dev_accuracy);
  // The router moved (to a better dev accuracy); nothing else did.
  CHECK(st.best_dev_accuracy > st.start_dev_accuracy);
  CHECK(st.best_epoch > 0);
  CHECK((p.router_parameters().values() - r0).cwiseAbs().maxCoeff() > 1e-2);
  CHECK(same_values(p.prompt_parameters().values(), z0));
  CHECK(same_values(p.projection_parameters().values(), a0));
  CHECK(same_values(head.parameters().values(), w0));
  // The frozen head's backward fills its gradients; mpmp_tune leaves none behind.
  CHECK(head.parameters().grads().cwiseAbs().maxCoeff() == 0.0);
  CHECK_FALSE(p.materialized());
  CHECK(p.trainable().router);
  CHECK_FALSE(p.trainable().prompts);
  CHECK(peft_test::same_weights(before, lib.enc.weights()));
  // Router-only tuning from the library lowers the training loss (the last step's and the
  // kept parameters'), and the kept parameters score as reported.
  CHECK(st.final_loss < 0.8 * loss0);
  CHECK(loss_of(lib.enc, p, head, train) < loss0);
  CHECK(accuracy_of(lib.enc, p, head, dev) == st.best_dev_accuracy);
}

TEST_CASE("mpmp_tune prompts stage: materialised prompts and head move, the router does not",
          "[mpmp][tune]") {
  const auto& lib = pretrained_library();
  const peft::encoder_weights<double> before = *lib.weights;
  const auto train = task_c_train(), dev = task_c_dev();
  const idx S = lib.policy.num_slots();
  const idx H = lib.enc.hidden_size();

  SECTION("materialised (the reference)") {
    auto p = lib.policy;
    p.reset_router(1, 9);
    auto head = lib.heads[0];
    const peft::vector<double> r0 = p.router_parameters().values(), w0 = head.parameters().values();
    std::vector<peft::matrix<double>> start;
    for (idx s = 0; s < S; ++s) start.push_back(p.module_prompts(s));
    peft::mpmp_tune_options o;
    o.stage = peft::mpmp_stage::prompts;
    o.prompt_epochs = 40;
    o.prompt_lr = 2e-2;
    o.eval_every = 2;
    o.show_progress = false;
    const auto res = peft::mpmp_tune(lib.enc, p, head, train, dev, o);
    REQUIRE(res.stages.size() == 1);
    const auto& st = res.stages[0];
    INFO("prompts stage: dev accuracy " << st.start_dev_accuracy << " -> " << st.best_dev_accuracy
                                        << " (epoch " << st.best_epoch << ")");
    CHECK(st.name == "prompts");
    CHECK(st.trainable_params == S * n_modules * n_prompt * H + head.num_parameters());
    CHECK(p.materialized());
    CHECK(p.projection_parameters().size() == 0);
    CHECK_FALSE(p.trainable().router);
    CHECK(p.trainable().prompts);
    CHECK(same_values(p.router_parameters().values(), r0));
    CHECK(p.router_parameters().grads().cwiseAbs().maxCoeff() == 0.0);
    CHECK(st.best_dev_accuracy > st.start_dev_accuracy);
    double moved = 0;
    for (idx s = 0; s < S; ++s)
      moved = std::max(moved, (p.module_prompts(s) - start[std::size_t(s)]).cwiseAbs().maxCoeff());
    CHECK(moved > 1e-3);
    CHECK((head.parameters().values() - w0).cwiseAbs().maxCoeff() > 1e-3);
    CHECK(accuracy_of(lib.enc, p, head, dev) == st.best_dev_accuracy);
    CHECK(peft_test::same_weights(before, lib.enc.weights()));
  }
  SECTION("not materialised: z and the head move, A and the router do not") {
    auto p = lib.policy;
    p.reset_router(1, 9);
    auto head = lib.heads[0];
    const peft::vector<double> r0 = p.router_parameters().values(), z0 = p.prompt_parameters().values(),
                               a0 = p.projection_parameters().values();
    peft::mpmp_tune_options o;
    o.stage = peft::mpmp_stage::prompts;
    o.materialize = false;
    o.prompt_epochs = 40;
    o.prompt_lr = 2e-2;
    o.eval_every = 2;
    o.show_progress = false;
    const auto res = peft::mpmp_tune(lib.enc, p, head, train, dev, o);
    REQUIRE(res.stages.size() == 1);
    CHECK(res.stages[0].trainable_params == S * n_modules * 4 + head.num_parameters());
    CHECK(res.stages[0].best_dev_accuracy > res.stages[0].start_dev_accuracy);
    REQUIRE_FALSE(p.materialized());
    CHECK(same_values(p.router_parameters().values(), r0));
    CHECK(same_values(p.projection_parameters().values(), a0));
    CHECK((p.prompt_parameters().values() - z0).cwiseAbs().maxCoeff() > 1e-3);
  }
}

TEST_CASE("mpmp_tune both stages: stage 2 starts from stage 1's kept parameters", "[mpmp][tune]") {
  const auto& lib = pretrained_library();
  auto p = lib.policy;
  p.reset_router(1, 9);
  auto head = lib.heads[0];
  const auto train = task_c_train(), dev = task_c_dev();
  peft::mpmp_tune_options o;
  o.stage = peft::mpmp_stage::both;
  o.router_epochs = 20;
  o.prompt_epochs = 20;
  o.router_lr = 0.1;
  o.prompt_lr = 2e-2;
  o.eval_every = 4;
  o.show_progress = false;
  const auto res = peft::mpmp_tune(lib.enc, p, head, train, dev, o);
  REQUIRE(res.stages.size() == 2);
  INFO("router stage " << res.stages[0].start_dev_accuracy << " -> " << res.stages[0].best_dev_accuracy
                       << "; prompts stage " << res.stages[1].start_dev_accuracy << " -> "
                       << res.stages[1].best_dev_accuracy);
  CHECK(res.stages[0].name == "router");
  CHECK(res.stages[1].name == "prompts");
  CHECK(res.stages[0].trainable_params == p.num_slots() * n_modules);
  CHECK(res.stages[1].start_dev_accuracy == res.stages[0].best_dev_accuracy);
  CHECK(res.stages[1].best_dev_accuracy >= res.stages[0].best_dev_accuracy);
  CHECK(res.dev_accuracy == res.stages[1].best_dev_accuracy);
  CHECK(p.materialized());
  CHECK(accuracy_of(lib.enc, p, head, dev) == res.dev_accuracy);
  CHECK(res.seconds >= res.stages[0].seconds + res.stages[1].seconds);

  // The same with a fresh head trained in stage 1 (no upstream task with these labels).
  auto q = lib.policy;
  q.reset_router(1, 9);
  head_t<double> fresh(16, 2, peft::pool_kind::mean, 0.1, 77);
  o.router_stage_head = true;
  o.router_stage_head_lr = 5e-2;
  const auto rf = peft::mpmp_tune(lib.enc, q, fresh, train, dev, o);
  REQUIRE(rf.stages.size() == 2);
  CHECK(rf.stages[0].trainable_params == q.num_slots() * n_modules + fresh.num_parameters());
  CHECK(rf.stages[0].best_dev_accuracy > rf.stages[0].start_dev_accuracy);
}

// --- 4. black-box tuning -----------------------------------------------------------------------

TEST_CASE("mpmp_blackbox uses forward passes only, spends its budgets and keeps the best",
          "[mpmp][blackbox]") {
  const auto& lib = pretrained_library();
  const peft::encoder_weights<double> before = *lib.weights;
  const auto train = task_c_train(), dev = task_c_dev();
  peft::mpmp_blackbox_options o;
  o.router_budget = 30;
  o.router_init_points = 10;
  o.prompt_budget = 205;  // 10 generations of 10 candidates for each of the 2 layers; 5 unused
  o.population_size = 10;
  o.eval_every = 10;
  o.show_progress = false;
  const idx S = lib.policy.num_slots();

  auto p = lib.policy;
  p.reset_router(1, 9);
  auto head = lib.heads[0];
  const peft::vector<double> a0 = p.projection_parameters().values(), w0 = head.parameters().values();
  const double acc0 = accuracy_of(lib.enc, p, head, dev);
  const auto res = peft::mpmp_blackbox(lib.enc, p, head, train, dev, o);
  INFO("dev accuracy " << res.start_dev_accuracy << " -> " << res.dev_accuracy << " (call "
                       << res.best_evaluation << "); router loss " << res.router_loss << ", prompt loss "
                       << res.prompt_loss);
  CHECK(res.router_evaluations == o.router_budget);
  CHECK(res.prompt_evaluations == (o.prompt_budget / (o.population_size * S)) * o.population_size * S);
  CHECK(res.prompt_evaluations == 200);
  CHECK(res.router_dimension == S * n_modules);
  CHECK(res.prompt_dimension == 4);
  CHECK(res.dev_accuracy >= res.start_dev_accuracy);
  CHECK(res.start_dev_accuracy == acc0);
  CHECK(accuracy_of(lib.enc, p, head, dev) == res.dev_accuracy);
  CHECK(res.best_evaluation <= res.router_evaluations + res.prompt_evaluations);
  CHECK(std::isfinite(res.router_loss));
  CHECK(res.prompt_loss <= res.router_loss);
  CHECK(res.router_dev_accuracy > 0.5);  // the best BO router still solves the task
  CHECK(res.router_dev_accuracy <= 1.0);
  // Forward passes only: nothing but the router and z changed, no gradient anywhere.
  CHECK(same_values(p.projection_parameters().values(), a0));
  CHECK(same_values(head.parameters().values(), w0));
  CHECK(head.parameters().grads().cwiseAbs().maxCoeff() == 0.0);
  CHECK(p.router_parameters().grads().cwiseAbs().maxCoeff() == 0.0);
  CHECK(p.prompt_parameters().grads().cwiseAbs().maxCoeff() == 0.0);
  CHECK(p.projection_parameters().grads().cwiseAbs().maxCoeff() == 0.0);
  CHECK(peft_test::same_weights(before, lib.enc.weights()));
  CHECK_FALSE(p.materialized());
}

TEST_CASE("mpmp_blackbox lowers the training loss and is deterministic for a seed", "[mpmp][blackbox]") {
  const auto& lib = pretrained_library();
  const auto train = task_c_train();
  const examples no_dev;  // the training loss decides what is kept
  peft::mpmp_blackbox_options o;
  o.router_budget = 20;
  o.router_init_points = 8;
  o.prompt_budget = 160;
  o.population_size = 8;
  o.eval_every = 8;
  o.show_progress = false;
  auto start = lib.policy;
  start.reset_router(1, 9);
  auto head = lib.heads[0];
  const double loss0 = loss_of(lib.enc, start, head, train);

  auto p = start;
  const auto res = peft::mpmp_blackbox(lib.enc, p, head, train, no_dev, o);
  const double loss1 = loss_of(lib.enc, p, head, train);
  INFO("training loss " << loss0 << " -> " << loss1 << " (router stage " << res.router_loss
                        << ", prompt stage " << res.prompt_loss << ")");
  CHECK(loss1 < 0.9 * loss0);
  CHECK(res.router_loss < loss0);
  CHECK(res.prompt_loss < res.router_loss);
  CHECK(res.dev_accuracy == 0.0);  // no dev set
  CHECK(res.router_dev_accuracy == 0.0);
  CHECK(!same_values(all_values(p), all_values(start)));

  auto q = start;
  const auto rq = peft::mpmp_blackbox(lib.enc, q, head, train, no_dev, o);
  CHECK(same_values(all_values(q), all_values(p)));
  CHECK(rq.router_loss == res.router_loss);
  CHECK(rq.prompt_loss == res.prompt_loss);
  CHECK(rq.best_evaluation == res.best_evaluation);
  auto o2 = o;
  o2.seed = 2;
  auto r = start;
  peft::mpmp_blackbox(lib.enc, r, head, train, no_dev, o2);
  CHECK(!same_values(all_values(r), all_values(p)));

  // Black-box tuning searches z: a materialised policy is refused, untouched.
  auto m = start;
  m.materialize();
  const peft::vector<double> mv = all_values(m);
  CHECK_THROWS_AS(peft::mpmp_blackbox(lib.enc, m, head, train, no_dev, o), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::mpmp_blackbox(lib.enc, m, head, train, no_dev, o),
                    Catch::Contains("mpmp_blackbox: the policy is materialised"));
  CHECK(same_values(all_values(m), mv));
}

// --- 5. the library folder ---------------------------------------------------------------------

TEST_CASE("a prompt library round-trips bitwise and is replaced only by a complete save", "[mpmp][library]") {
  const enc_t<float> enc(peft::random_encoder_weights<float>(small_config("bert", 0.1), 5));
  const auto shape = enc.shape();
  modular_prompt<float> p(shape, small_mp(2), 3);
  specialise_policy(p, 4);
  p.set_task(1);
  auto heads = upstream_heads<float>();
  peft::rng g(8);
  for (auto& h : heads)
    for (idx i = 0; i < h.num_parameters(); ++i) h.parameters().values()[i] = static_cast<float>(g.normal());
  peft::mpmp_library_info info;
  info.tasks = {{"a", {"no", "yes"}, peft::to_string(peft::pool_kind::mean)},
                {"b", {"x", "y", "z"}, peft::to_string(peft::pool_kind::mean)}};
  info.placeholder_id = ph_first;
  info.extra = {{"steps", 300}, {"note", "test"}};
  const std::string root = peft_test::scratch_dir("mpmp_library");
  const std::string dir = root + "/lib";

  peft::save_mpmp_library(dir, p, heads, info);
  {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
    CHECK(files == std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors",
                                            "heads.safetensors", "library.json"});
    CHECK(leftovers(dir, ".tmp.").empty());
    CHECK(leftovers(dir, ".old.").empty());
  }
  const auto back = peft::read_mpmp_library_info(dir);
  REQUIRE(back.tasks.size() == 2);
  CHECK(back.tasks[0].name == "a");
  CHECK(back.tasks[1].labels == std::vector<std::string>{"x", "y", "z"});
  CHECK(back.tasks[1].pooling == "mean");
  CHECK(back.placeholder_id == ph_first);
  CHECK(back.extra == info.extra);
  CHECK(back.head_for({"no", "yes"}) == 0);
  CHECK(back.head_for({"x", "y", "z"}) == 1);
  CHECK(back.head_for({"yes", "no"}) == -1);  // order matters
  CHECK(back.head_for({"no"}) == -1);
  CHECK(back.find("b") == 1);
  CHECK(back.find("c") == -1);

  auto q = peft::load_mpmp_library_policy<float>(dir, shape);
  CHECK(q.num_tasks() == 2);
  CHECK(q.task() == 1);
  CHECK(same_values(all_values(q), all_values(p)));
  for (std::size_t t = 0; t < heads.size(); ++t) {
    head_t<float> h(16, heads[t].num_classes(), peft::pool_kind::mean, 0.1, 99);
    peft::load_mpmp_library_head(dir, back.tasks[t].name, h);
    CHECK(same_values(h.parameters().values(), heads[t].parameters().values()));
  }
  // Missing or mismatched heads.
  head_t<float> h2(16, 2, peft::pool_kind::mean, 0.1, 1);
  CHECK_THROWS_AS(peft::load_mpmp_library_head(dir, "c", h2), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::load_mpmp_library_head(dir, "c", h2), Catch::Contains("has no head for task 'c'"));
  CHECK_THROWS_AS(peft::load_mpmp_library_head(dir, "b", h2), peft::error);      // 3 classes into 2
  CHECK_THROWS_AS(peft::load_mpmp_library_head(root, "a", h2), peft::io_error);  // no heads file

  // Saving again replaces the library.
  auto p2 = p;
  p2.reset_router(3, 5);
  auto heads2 = heads;
  heads2.push_back(head_t<float>(16, 2, peft::pool_kind::cls, 0.1, 4));
  auto info2 = info;
  info2.tasks.push_back({"c", {"neg", "pos"}, peft::to_string(peft::pool_kind::cls)});
  peft::save_mpmp_library(dir, p2, heads2, info2);
  CHECK(peft::read_mpmp_library_info(dir).tasks.size() == 3);
  CHECK(same_values(all_values(peft::load_mpmp_library_policy<float>(dir, shape)), all_values(p2)));
  CHECK(leftovers(dir, ".tmp.").empty());
  CHECK(leftovers(dir, ".old.").empty());
  peft::save_mpmp_library(dir, p, heads, info);  // back to the first

  // Failed saves leave it as it was.
  auto check_intact = [&] {
    const auto i = peft::read_mpmp_library_info(dir);
    CHECK(i.tasks.size() == 2);
    CHECK(same_values(all_values(peft::load_mpmp_library_policy<float>(dir, shape)), all_values(p)));
    head_t<float> h(16, 3, peft::pool_kind::mean, 0.1, 99);
    peft::load_mpmp_library_head(dir, "b", h);
    CHECK(same_values(h.parameters().values(), heads[1].parameters().values()));
    CHECK(leftovers(dir, ".tmp.").empty());
    CHECK(leftovers(dir, ".old.").empty());
  };
  auto bad = p;
  bad.prompt_parameters().values()[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(peft::save_mpmp_library(dir, bad, heads, info), peft::numeric_error);
  check_intact();
  CHECK_THROWS_AS(peft::save_mpmp_library(dir, p, heads2, info), peft::invalid_argument);
  CHECK_THROWS_WITH(
      peft::save_mpmp_library(dir, p, heads2, info),
      Catch::Contains(
          "expected one head and one router row per task (2 tasks), got 3 heads and 2 router rows"));
  check_intact();
  CHECK_THROWS_AS(peft::save_mpmp_library(dir, p2, heads, info), peft::invalid_argument);
  CHECK_THROWS_WITH(peft::save_mpmp_library(dir, p2, heads, info),
                    Catch::Contains("got 2 heads and 3 router rows"));
  auto info_bad = info;
  info_bad.tasks[1].labels.pop_back();
  CHECK_THROWS_WITH(peft::save_mpmp_library(dir, p, heads, info_bad),
                    Catch::Contains("task 'b' has 2 labels but its head 3 classes"));
  info_bad = info;
  info_bad.tasks[0].name = "a/b";
  CHECK_THROWS_WITH(peft::save_mpmp_library(dir, p, heads, info_bad), Catch::Contains("without '/'"));
  check_intact();

  // Malformed library.json.
  const std::string json_path = dir + "/library.json";
  const std::string good = peft_test::read_text(json_path);
  auto rewrite = [&](const nlohmann::json& j) { std::ofstream(json_path, std::ios::trunc) << j.dump(); };
  auto expect_io = [&](const std::string& text) {
    CHECK_THROWS_AS(peft::read_mpmp_library_info(dir), peft::io_error);
    CHECK_THROWS_WITH(peft::read_mpmp_library_info(dir), Catch::Contains(text));
  };
  nlohmann::json j = nlohmann::json::parse(good);
  j["format"] = "peft-adapter";
  rewrite(j);
  expect_io("field 'format' expected \"peft-mpmp-library\", got \"peft-adapter\"");
  j = nlohmann::json::parse(good);
  j.erase("placeholder_id");
  rewrite(j);
  expect_io("placeholder_id");
  j = nlohmann::json::parse(good);
  j["tasks"][1].erase("labels");
  rewrite(j);
  expect_io("labels");
  j = nlohmann::json::parse(good);
  j["tasks"] = nlohmann::json::array();
  rewrite(j);
  expect_io("field 'tasks' expected >= 1 task, got 0");
  std::ofstream(json_path, std::ios::trunc) << "{ not json";
  expect_io("not valid JSON");
  fs::remove(json_path);
  CHECK_THROWS_AS(peft::read_mpmp_library_info(dir), peft::io_error);
  fs::remove_all(root);
}

// --- 6. bad input ------------------------------------------------------------------------------

TEST_CASE("MPMP options validate every field with a message naming it", "[mpmp][errors]") {
  auto expect = [](auto&& fn, const std::string& text) {
    CHECK_THROWS_AS(fn(), peft::invalid_argument);
    CHECK_THROWS_WITH(fn(), Catch::Contains(text));
  };
  {
    auto edit = [&](auto change, const std::string& text) {
      peft::mpmp_pretrain_options o;
      change(o);
      expect([&] { o.validate(); }, text);
    };
    CHECK_NOTHROW(peft::mpmp_pretrain_options{}.validate());
    edit([](auto& o) { o.steps = 0; }, "mpmp_pretrain_options: steps expected >= 1, got 0");
    edit([](auto& o) { o.batch_size = 0; }, "batch_size expected >= 1, got 0");
    edit([](auto& o) { o.router_lr = -1e-3; }, "router_lr expected > 0");
    edit([](auto& o) { o.prompt_lr = 0; }, "prompt_lr expected > 0");
    edit([](auto& o) { o.head_lr = std::nan(""); }, "head_lr expected > 0");
    edit([](auto& o) { o.weight_decay = -1; }, "weight_decay expected >= 0");
    edit([](auto& o) { o.eval_every = -1; }, "eval_every expected >= 0, got -1");
  }
  {
    auto edit = [&](auto change, const std::string& text) {
      peft::mpmp_tune_options o;
      change(o);
      expect([&] { o.validate(); }, text);
    };
    CHECK_NOTHROW(peft::mpmp_tune_options{}.validate());
    edit([](auto& o) { o.router_epochs = -1; }, "mpmp_tune_options: epochs expected >= 0");
    edit([](auto& o) { o.router_lr = -0.1; }, "router_lr expected > 0");
    edit([](auto& o) { o.prompt_lr = std::numeric_limits<double>::infinity(); }, "prompt_lr expected > 0");
    edit([](auto& o) { o.head_lr = -1; }, "head_lr expected >= 0");
    edit([](auto& o) { o.batch_size = -1; }, "batch_size expected >= 0, got -1");
    edit([](auto& o) { o.eval_every = 0; }, "eval_every expected >= 1, got 0");
  }
  {
    auto edit = [&](auto change, const std::string& text) {
      peft::mpmp_blackbox_options o;
      change(o);
      expect([&] { o.validate(); }, text);
    };
    CHECK_NOTHROW(peft::mpmp_blackbox_options{}.validate());
    edit([](auto& o) { o.router_budget = -1; }, "mpmp_blackbox_options: router_budget expected >= 0, got -1");
    edit([](auto& o) { o.router_init_points = 101; },
         "router_init_points expected in [1, router_budget], got 101");
    edit([](auto& o) { o.router_init_points = 0; },
         "router_init_points expected in [1, router_budget], got 0");
    edit([](auto& o) { o.prompt_budget = -5; }, "prompt_budget expected >= 0, got -5");
    edit([](auto& o) { o.population_size = 1; }, "population_size expected >= 2, got 1");
    edit([](auto& o) { o.router_bound = 0; }, "router_bound expected > 0");
    edit([](auto& o) { o.z_bound = -1; }, "z_bound expected >= 0");
    edit([](auto& o) { o.sigma_rest = 0; }, "sigmas expected > 0");
    edit([](auto& o) { o.eval_every = 0; }, "eval_every expected >= 1, got 0");
    peft::mpmp_blackbox_options o;
    o.router_budget = 0;
    o.router_init_points = 0;  // no BO stage: the init points do not matter
    CHECK_NOTHROW(o.validate());
  }
  CHECK(peft::parse_mpmp_stage("both") == peft::mpmp_stage::both);
  for (auto s : {peft::mpmp_stage::router, peft::mpmp_stage::prompts, peft::mpmp_stage::both})
    CHECK(peft::parse_mpmp_stage(peft::to_string(s)) == s);
  expect([] { peft::parse_mpmp_stage("all"); }, "expected router, prompts or both, got 'all'");
}

TEST_CASE("MPMP training rejects mismatched and bad data with a message naming the problem",
          "[mpmp][errors]") {
  const enc_t<double> enc(peft::random_encoder_weights<double>(small_config("bert", 0.1), 5));
  modular_prompt<double> p(enc.shape(), small_mp(2), 1);
  const peft::vector<double> v0 = all_values(p);
  auto heads = upstream_heads<double>();
  const auto tasks = upstream_tasks();
  auto o = pretrain_options();
  o.steps = 2;
  auto expect = [](auto&& fn, const std::string& text) {
    CHECK_THROWS_AS(fn(), peft::invalid_argument);
    CHECK_THROWS_WITH(fn(), Catch::Contains(text));
  };
  // The returned call owns its tasks and options (they may be temporaries here).
  auto pretrain = [&enc](modular_prompt<double>& pol, std::vector<head_t<double>>& hs,
                         std::vector<peft::mpmp_task_data> ts, peft::mpmp_pretrain_options opt) {
    return [&enc, &pol, &hs, ts, opt] { peft::mpmp_pretrain(enc, pol, hs, ts, opt); };
  };

  // Options are validated by the trainers too.
  auto o0 = o;
  o0.steps = 0;
  expect(pretrain(p, heads, tasks, o0), "steps expected >= 1, got 0");
  // Tasks, heads and router rows must agree.
  expect(pretrain(p, heads, {}, o), "mpmp_pretrain: expected >= 1 upstream task, got 0");
  std::vector<head_t<double>> one_head = {heads[0]};
  expect(pretrain(p, one_head, tasks, o),
         "one head shared by every task is a span head over label options, but task 'a' has no label options");
  std::vector<head_t<double>> three_heads = {heads[0], heads[1], heads[0]};
  expect(pretrain(p, three_heads, tasks, o), "expected one head per task (2) or one shared span head, got 3");
  modular_prompt<double> p3(enc.shape(), small_mp(3), 1);
  expect(pretrain(p3, heads, tasks, o), "policy router has 3 task rows, expected 2");
  // Data: empty, unlabelled, labels beyond the head.
  auto ts = tasks;
  ts[1].train.clear();
  expect(pretrain(p, heads, ts, o), "task 'b' has no training examples");
  ts = tasks;
  ts[0].train[5].label = -1;
  expect(pretrain(p, heads, ts, o), "task 'a' training example 5 has no label");
  ts = tasks;
  ts[1].dev[2].label = -1;
  expect(pretrain(p, heads, ts, o), "task 'b' dev example 2 has no label");
  ts = tasks;
  ts[0].train[1].label = 2;
  expect(pretrain(p, heads, ts, o), "task 'a' training example 1 label 2 expected < the head's 2 classes");
  ts = tasks;
  ts[1].dev[0].label = 3;
  expect(pretrain(p, heads, ts, o), "task 'b' dev example 0 label 3 expected < the head's 3 classes");
  // Nothing was touched by the refused calls.
  CHECK(same_values(all_values(p), v0));

  // Tuning: empty or unlabelled data.
  auto head = heads[0];
  p.reset_router(1, 0);
  peft::mpmp_tune_options to;
  to.show_progress = false;
  to.router_epochs = to.prompt_epochs = 1;
  const auto train = task_c_train();
  expect([&] { peft::mpmp_tune(enc, p, head, {}, train, to); }, "mpmp_tune: training set is empty");
  auto unl = train;
  unl[3].label = -1;
  expect([&] { peft::mpmp_tune(enc, p, head, unl, train, to); },
         "mpmp_tune: training example 3 has no label");
  expect([&] { peft::mpmp_tune(enc, p, head, train, unl, to); }, "mpmp_tune: dev example 3 has no label");
  auto to0 = to;
  to0.eval_every = 0;
  expect([&] { peft::mpmp_tune(enc, p, head, train, train, to0); }, "eval_every expected >= 1, got 0");
  peft::mpmp_blackbox_options bo;
  bo.show_progress = false;
  expect([&] { peft::mpmp_blackbox(enc, p, head, {}, train, bo); }, "mpmp_blackbox: training set is empty");
  expect([&] { peft::mpmp_blackbox(enc, p, head, unl, train, bo); },
         "mpmp_blackbox: training example 3 has no label");
  expect([&] { peft::mpmp_blackbox(enc, p, head, train, unl, bo); },
         "mpmp_blackbox: dev example 3 has no label");
  // A training or dev label beyond the head's classes is refused up front, before the policy
  // changes (not materialised, no BO router set), as mpmp_pretrain does.
  auto big = train;
  big[4].label = 2;
  for (auto stage : {peft::mpmp_stage::router, peft::mpmp_stage::prompts}) {
    auto tb = to;
    tb.stage = stage;
    auto pp = p;
    CHECK_THROWS_AS(peft::mpmp_tune(enc, pp, head, big, train, tb), peft::invalid_argument);
    CHECK_THROWS_WITH(peft::mpmp_tune(enc, pp, head, big, train, tb), Catch::Contains("label"));
    CHECK(!pp.materialized());
    CHECK(same_values(all_values(pp), all_values(p)));
  }
  {
    auto pp = p;
    CHECK_THROWS_AS(peft::mpmp_blackbox(enc, pp, head, big, train, bo), peft::invalid_argument);
    CHECK_THROWS_WITH(peft::mpmp_blackbox(enc, pp, head, big, train, bo), Catch::Contains("label"));
    CHECK(same_values(all_values(pp), all_values(p)));
  }
  auto refuses_dev_label = [&](auto&& call) {
    try {
      call();
    } catch (const peft::invalid_argument&) {
      return true;
    }
    return false;
  };
  auto tb = to;
  tb.stage = peft::mpmp_stage::router;
  auto pp = p;
  CHECK(refuses_dev_label([&] { peft::mpmp_tune(enc, pp, head, train, big, tb); }));
  auto bb = bo;
  bb.router_budget = 2;
  bb.router_init_points = 2;
  bb.prompt_budget = 0;
  CHECK(refuses_dev_label([&] { peft::mpmp_blackbox(enc, pp, head, train, big, bb); }));
  auto bo1 = bo;
  bo1.population_size = 1;
  expect([&] { peft::mpmp_blackbox(enc, p, head, train, train, bo1); },
         "population_size expected >= 2, got 1");
}

// --- 7. one span head over label options (the reference's reading-comprehension form) ---------

namespace {

constexpr std::int32_t option_sep = 4;

/// marker_task's rows written as reading comprehension: [CLS] placeholders text [SEP], then
/// the option tokens @p options (one per class, @p option_sep between two) and [SEP]; the
/// answer is the gold option's position.
examples marker_choices(std::size_t count, const std::vector<std::int32_t>& markers,
                        const std::vector<std::int32_t>& filler, const std::vector<std::int32_t>& options,
                        std::uint64_t seed) {
  examples rows = marker_task(count, markers, filler, seed);
  for (auto& e : rows) {
    for (std::size_t k = 0; k < options.size(); ++k) {
      if (k > 0) e.ids.push_back(option_sep);
      const auto at = static_cast<idx>(e.ids.size());
      e.ids.push_back(options[k]);
      e.choices.emplace_back(at, at);
    }
    e.ids.push_back(3);
    std::tie(e.start, e.end) = e.choices[static_cast<std::size_t>(e.label)];
  }
  return rows;
}

/// Upstream tasks A and B as reading comprehension: options 22/23 and 1/6/22.
std::vector<peft::mpmp_task_data> upstream_choice_tasks() {
  std::vector<peft::mpmp_task_data> t(2);
  t[0] = {"a", marker_choices(64, {5, 7}, filler_ab, {22, 23}, 1), marker_choices(40, {5, 7}, filler_ab, {22, 23}, 2)};
  t[1] = {"b", marker_choices(96, {9, 11, 13}, filler_ab, {1, 6, 22}, 3),
          marker_choices(60, {9, 11, 13}, filler_ab, {1, 6, 22}, 4)};
  for (auto& task : t) task.objective.choices = true;
  return t;
}

peft::task_objective choices_objective() {
  peft::task_objective o;
  o.choices = true;
  return o;
}

/// A library with one span head (built once).
const library& pretrained_span_library() {
  static const library lib({head_t<double>(16, 2, peft::pool_kind::tokens, 0.1, 5)}, upstream_choice_tasks());
  return lib;
}

/// The share of the start distribution (softmax over a row's positions) that falls on its
/// options' first positions, averaged over @p rows: 1 for a head that always points at an
/// option, about options / positions for one that does not know where they are.
double option_mass(const enc_t<double>& enc, modular_prompt<double>& p, const head_t<double>& h, const examples& rows) {
  const auto out = peft::predict_outputs(peft::task_model(enc, p, h), rows, 64, 0);
  double sum = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& z = out[i];
    const double top = z.col(0).maxCoeff();
    double all = 0, on = 0;
    for (idx t = 0; t < z.rows(); ++t) all += std::exp(z(t, 0) - top);
    for (const auto& [first, last] : rows[i].choices) on += std::exp(z(first, 0) - top);
    sum += on / all;
  }
  return sum / double(rows.size());
}

/// Full-batch evaluation-mode span loss over the gold options.
double span_loss(const enc_t<double>& enc, modular_prompt<double>& p, const head_t<double>& h, const examples& rows) {
  std::vector<std::size_t> all(rows.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  const auto tb = peft::make_task_batch(rows, all, 0);
  peft::matrix<double> dz;
  return peft::task_loss(choices_objective(), peft::task_model(enc, p, h).predict(tb), tb, dz);
}

}  // namespace

// On this 2-layer random encoder (hidden 16) a span head learns where the options are, but
// hardly which one the marker calls for: what tells them apart has to reach the option's
// position through frozen random attention. So these tests check what the shared head
// carries to a new task (pointing at options, whatever their tokens) and the mechanics;
// whether the options are told apart on real text is example_peft_mpmp's and the README's
// MPMP table's question (the real USE-lite encoder).
TEST_CASE("one span head shared by every task is trained by each task and learns to point at options",
          "[mpmp][span]") {
  const auto& lib = pretrained_span_library();
  const auto& r = lib.result;
  auto p = lib.policy;
  const head_t<double> fresh(16, 2, peft::pool_kind::tokens, 0.1, 5);  // the head before pre-training
  for (std::size_t t = 0; t < 2; ++t) {
    p.set_task(static_cast<idx>(t));
    const auto& dev = lib.tasks[t].dev;
    const double before = option_mass(lib.enc, p, fresh, dev), after = option_mass(lib.enc, p, lib.heads[0], dev);
    INFO("task " << t << ": start mass on the options " << before << " -> " << after << ", span loss "
                 << span_loss(lib.enc, p, fresh, dev) << " -> " << span_loss(lib.enc, p, lib.heads[0], dev));
    CHECK(before < 0.3);
    CHECK(after > 0.7);
    CHECK(span_loss(lib.enc, p, lib.heads[0], dev) < span_loss(lib.enc, p, fresh, dev) - 0.5);
    // The kept parameters are the ones scored, the options read by the one head.
    const double a = peft::evaluate_task(peft::task_model(lib.enc, p, lib.heads[0]), choices_objective(), dev, 64, 0).score;
    CHECK(a == r.dev_accuracy[t]);
  }
  CHECK(r.task_steps[0] + r.task_steps[1] == pretrain_options().steps);
  CHECK(r.task_steps[0] > 0);
  CHECK(r.task_steps[1] > 0);
}

TEST_CASE("a target whose labels no upstream task has starts from the library's span head", "[mpmp][span]") {
  const auto& lib = pretrained_span_library();
  // Task D: the markers of A, other filler, and option tokens 27/29 that no upstream task has.
  const auto train = marker_choices(32, {5, 7}, filler_c, {27, 29}, 11);
  const auto dev = marker_choices(32, {5, 7}, filler_c, {27, 29}, 12);
  auto p = lib.policy;
  p.reset_router(1, 3);
  // Before any tuning the library's head already puts more of its start distribution on the
  // new options than a fresh head (measured: 0.32 against 0.17); it learnt the upstream option
  // tokens more than where options sit, so it carries over only part of what it knows here.
  const head_t<double> fresh(16, 2, peft::pool_kind::tokens, 0.1, 8);
  const double lib_mass = option_mass(lib.enc, p, lib.heads[0], dev), fresh_mass = option_mass(lib.enc, p, fresh, dev);
  INFO("start mass on the unseen options: library head " << lib_mass << ", fresh head " << fresh_mass);
  CHECK(lib_mass > 1.5 * fresh_mass);

  auto head = lib.heads[0];
  peft::mpmp_tune_options o;
  o.router_epochs = 10;
  o.prompt_epochs = 20;
  o.router_lr = 5e-2;
  o.prompt_lr = 1e-2;
  o.eval_every = 5;
  o.objective = choices_objective();
  o.show_progress = false;
  const auto r = peft::mpmp_tune(lib.enc, p, head, train, dev, o);
  REQUIRE(r.stages.size() == 2);
  CHECK(r.stages[1].start_dev_accuracy == r.stages[0].best_dev_accuracy);
  CHECK(r.dev_accuracy == peft::evaluate_task(peft::task_model(lib.enc, p, head), o.objective, dev, 64, 0).score);
  CHECK(r.stages[0].trainable_params == 2 * n_modules);
  // Black-box tuning reads the options the same way (forward passes only, the head frozen).
  auto q = lib.policy;
  q.reset_router(1, 3);
  auto frozen = lib.heads[0];
  peft::mpmp_blackbox_options b;
  b.router_budget = 10;
  b.router_init_points = 5;
  b.prompt_budget = 2 * 2 * 5;
  b.population_size = 5;
  b.eval_every = 5;
  b.objective = choices_objective();
  b.show_progress = false;
  const auto br = peft::mpmp_blackbox(lib.enc, q, frozen, train, dev, b);
  CHECK(br.router_evaluations == 10);
  CHECK(br.prompt_loss <= br.router_loss);
  CHECK(same_values(frozen.parameters().values(), lib.heads[0].parameters().values()));

  // Errors: label options with a head that is not a span head, a label beyond a row's
  // options, a row without the gold option's span, and a kind MPMP does not train.
  auto expect = [](auto&& fn, const std::string& text) {
    CHECK_THROWS_AS(fn(), peft::invalid_argument);
    CHECK_THROWS_WITH(fn(), Catch::Contains(text));
  };
  head_t<double> wide(16, 3, peft::pool_kind::tokens, 0.1, 1);
  expect([&] { peft::mpmp_tune(lib.enc, p, wide, train, dev, o); },
         "label options need a span head (2 outputs), got one with 3");
  auto bad = train;
  bad[2].label = 2;
  expect([&] { peft::mpmp_tune(lib.enc, p, head, bad, dev, o); },
         "training example 2 label 2 expected < its 2 label options");
  bad = train;
  bad[1].start = -1;
  expect([&] { peft::mpmp_blackbox(lib.enc, q, frozen, bad, dev, b); },
         "training example 1 expected the span of its gold option, got none");
  auto reg = o;
  reg.objective.kind = peft::task_kind::regression;
  expect([&] { peft::mpmp_tune(lib.enc, p, head, train, dev, reg); }, "MPMP tasks are classification");
  auto mixed = upstream_choice_tasks();
  mixed[1].objective.choices = false;
  auto mp = lib.policy;
  auto hs = lib.heads;
  auto po = pretrain_options();
  po.steps = 2;
  expect([&] { peft::mpmp_pretrain(lib.enc, mp, hs, mixed, po); },
         "one head shared by every task is a span head over label options, but task 'b' has no label options");
}

TEST_CASE("a library with one span head round-trips, with each task's options", "[mpmp][span][library]") {
  const enc_t<float> enc(peft::random_encoder_weights<float>(small_config("bert", 0.1), 5));
  modular_prompt<float> p(enc.shape(), small_mp(2), 3);
  std::vector<head_t<float>> heads = {head_t<float>(16, 2, peft::pool_kind::tokens, 0.1, 2)};
  peft::rng g(8);
  for (idx i = 0; i < heads[0].num_parameters(); ++i) heads[0].parameters().values()[i] = static_cast<float>(g.normal());
  peft::mpmp_library_info info;
  info.head = peft::mpmp_span_head;
  info.tasks = {{"a", {"0", "1"}, "tokens", {"negative", "positive"}}, {"b", {"x", "y", "z"}, "tokens", {"ex", "why", "zed"}}};
  const std::string root = peft_test::scratch_dir("mpmp_span_library");
  const std::string dir = root + "/lib";
  peft::save_mpmp_library(dir, p, heads, info);
  const auto back = peft::read_mpmp_library_info(dir);
  CHECK(back.span_head());
  CHECK(back.tasks[0].options == std::vector<std::string>{"negative", "positive"});
  CHECK(back.tasks[1].options == std::vector<std::string>{"ex", "why", "zed"});
  head_t<float> h(16, 2, peft::pool_kind::tokens, 0.1, 99);
  peft::load_mpmp_library_head(dir, peft::mpmp_span_head, h);
  CHECK(same_values(h.parameters().values(), heads[0].parameters().values()));
  // A head-per-task library (and one written before the field existed) reads as "task".
  const std::string json_path = dir + "/library.json";
  const std::string good = peft_test::read_text(json_path);
  nlohmann::json j = nlohmann::json::parse(good);
  j.erase("head");
  for (auto& t : j["tasks"]) t.erase("options");
  std::ofstream(json_path, std::ios::trunc) << j.dump();
  CHECK(!peft::read_mpmp_library_info(dir).span_head());
  // Malformed: an unknown head form, options that do not match the labels.
  j = nlohmann::json::parse(good);
  j["head"] = "mrc";
  std::ofstream(json_path, std::ios::trunc) << j.dump();
  CHECK_THROWS_WITH(peft::read_mpmp_library_info(dir), Catch::Contains("field 'head' expected \"task\" or \"span\", got \"mrc\""));
  j = nlohmann::json::parse(good);
  j["tasks"][1]["options"] = {"ex"};
  std::ofstream(json_path, std::ios::trunc) << j.dump();
  CHECK_THROWS_WITH(peft::read_mpmp_library_info(dir),
                    Catch::Contains("task 'b' field 'options' expected one per label (3), got 1"));
  std::ofstream(json_path, std::ios::trunc) << good;
  // Saves that do not fit the form are refused and leave the library as it was.
  auto two = heads;
  two.push_back(heads[0]);
  CHECK_THROWS_WITH(peft::save_mpmp_library(dir, p, two, info),
                    Catch::Contains("expected one shared span head and one router row per task (2 tasks), got 2 heads"));
  auto info_bad = info;
  info_bad.tasks[0].options.pop_back();
  CHECK_THROWS_WITH(peft::save_mpmp_library(dir, p, heads, info_bad),
                    Catch::Contains("task 'a' expected an option per label (2), got 1"));
  std::vector<head_t<float>> wide = {head_t<float>(16, 3, peft::pool_kind::tokens, 0.1, 2)};
  CHECK_THROWS_WITH(peft::save_mpmp_library(dir, p, wide, info),
                    Catch::Contains("the span head expected 2 outputs (start, end), got 3"));
  CHECK(peft_test::read_text(json_path) == good);
  fs::remove_all(root);
}
