// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TRAIN_MPMP_HPP
#define PEFT_TRAIN_MPMP_HPP

/// @file mpmp.hpp
/// MPMP / MP² training (Sun et al., arXiv 2210.07565; reference code Hzfinfdu/MPMP, `Deep/`):
/// multi-task pre-training of a library of modular prompts, two-stage downstream tuning, and
/// gradient-free (black-box) tuning, over one frozen `const` encoder and a `modular_prompt`.
///
///  - `mpmp_pretrain` (`Deep/run.py`, `trainer.py:MutitaskTrainer`): one shared set of modules
///    z and projections A, one router row and one head per upstream task. Each step draws one
///    task uniformly at random and one batch of that task (32 by default), in train mode
///    (relaxed-Bernoulli routing, dropout). AdamW, router lr 5e-4, prompt (z, A) lr 1e-4, no
///    schedule, no clipping. The dev sets are evaluated every `eval_every` steps and the
///    parameters with the best mean dev accuracy are kept.
///  - `mpmp_tune` (`Deep/downstream_run.py`, `trainer.py:DownstreamTrainer`): a fresh router
///    (the caller resets it), then explicit phases instead of the reference's step-LR trick:
///    stage 1 trains the router logits alone (lr 3e-3), stage 2 freezes the router and tunes
///    the prompts (materialised, `z A`, as the reference) and the head (lr 2e-5). Full batch,
///    eval mode (deterministic sigmoid routing, no dropout), dev accuracy every 25 epochs,
///    best parameters kept per stage.
///  - `mpmp_blackbox` (`Deep/deepbbt.py`): stage 1 Bayesian optimisation of all router logits
///    in [-5, 5] (20 random points, then GP-UCB with kappa 2; 100 evaluations); stage 2 one
///    CMA-ES per layer over that layer's intrinsic vector z (population 20, sigma0 0.5 for the
///    first layer and 0.1 for the others, bounds [-5, 5]), round-robin over the layers, each
///    candidate tiled over all M modules of its layer, starting from the router-weighted mix
///    of the pre-trained vectors; the layer keeps its best point after each generation. The
///    objective is the training-set loss in one eval forward; the dev set is evaluated every
///    `eval_every` calls and the best-by-dev parameters are kept.
///
/// Heads. The reference casts every task as reading comprehension (MRC) with one span head
/// shared by all tasks: the label names are written after the text as options and the head
/// points at one (text/label_options.hpp). Here that is one choice of two:
///  - one shared span head: `heads` holds one head with 2 outputs over the positions
///    (`pool_kind::tokens`), and every task's `objective.choices` is set. A downstream task
///    with labels no upstream task had starts from this head: its labels are new options.
///  - one classification head per task (`heads` holds one per task): a downstream task starts
///    from the head of an upstream task with the same labels when there is one
///    (`mpmp_library_info::head_for`), else from a fresh head.
/// Every loop takes the task's objective (task/kinds.hpp) for its loss and its dev score.
/// Departures from the reference (also in the README): the per-task heads above; the prompt
/// placeholders follow the first token (`[CLS]` for BERT, the first piece for USE-lite, which
/// has no `[CLS]`); an option's score is the sum of its start and end logits, not their
/// product (kinds.hpp, `choice_predictions`).
///
/// The library on disk (policy + heads + task labels) is `io/mpmp_library.hpp`.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../error.hpp"
#include "../optim/adam.hpp"
#include "../optim/bayes_opt.hpp"
#include "../optim/cmaes.hpp"
#include "../policies/modular_prompt.hpp"
#include "../ops/losses.hpp"
#include "../task/kinds.hpp"
#include "../task/prompt_placeholders.hpp"
#include "progress.hpp"
#include "trainer.hpp"

namespace peft {

// --- multi-task pre-training ------------------------------------------------------------------

/// One upstream task: labelled training data and (optionally empty) dev data, both already
/// holding the prompt placeholders, and the task's objective: classification, or
/// classification cast as reading comprehension (`objective.choices`: the rows carry their
/// label options, and the head is the shared span head).
struct mpmp_task_data {
  std::string name;
  std::vector<encoded_example> train;
  std::vector<encoded_example> dev;
  task_objective objective{};
};

/// Settings of `mpmp_pretrain` (defaults: the reference's, except the step count).
struct mpmp_pretrain_options {
  long steps = 2000;          ///< optimizer steps (the reference runs 1e6)
  index batch_size = 32;      ///< examples per step, all from one task
  double router_lr = 5e-4;    ///< AdamW lr of the router logits
  double prompt_lr = 1e-4;    ///< AdamW lr of z and A
  double head_lr = 1e-3;      ///< AdamW lr of each task's head (fresh heads; the reference's is pre-trained)
  double weight_decay = 0.0;
  long eval_every = 0;        ///< steps between dev evaluations (0: once, at the end)
  std::uint64_t seed = 1;     ///< task draws, batch order, dropout and router noise
  std::int32_t pad_id = 0;
  bool show_progress = true;
  std::FILE* progress_out = stderr;

  /// @throws peft::invalid_argument naming the first bad field
  void validate() const {
    const char* where = "mpmp_pretrain_options";
    if (steps < 1) throw invalid_argument(detail::expected_got(where, "steps", ">= 1", steps));
    if (batch_size < 1) throw invalid_argument(detail::expected_got(where, "batch_size", ">= 1", batch_size));
    for (auto [name, v] : {std::pair{"router_lr", router_lr}, {"prompt_lr", prompt_lr}, {"head_lr", head_lr}})
      if (!(v > 0) || !std::isfinite(v)) throw invalid_argument(std::string(where) + ": " + name + " expected > 0, got " + std::to_string(v));
    if (!(weight_decay >= 0)) throw invalid_argument(std::string(where) + ": weight_decay expected >= 0");
    if (eval_every < 0) throw invalid_argument(detail::expected_got(where, "eval_every", ">= 0", eval_every));
  }
};

/// What `mpmp_pretrain` did.
struct mpmp_pretrain_result {
  long steps = 0;
  double seconds = 0;
  std::vector<long> task_steps;        ///< steps drawn per task
  std::vector<double> dev_accuracy;    ///< per task, at the kept evaluation (-1 without dev data)
  double mean_dev_accuracy = -1;       ///< mean over tasks with dev data, at the kept evaluation
  long best_step = 0;                  ///< step of the kept evaluation
  double final_loss = 0;               ///< mean training loss of the last 50 steps
};

namespace detail {

/// The dev score of @p model: accuracy, of the head's classes or of the label options.
template <typename Model>
double mpmp_eval(const Model& model, const task_objective& o, const std::vector<encoded_example>& data, std::int32_t pad) {
  return evaluate_task(model, o, data, 64, pad).score;
}

inline void check_labelled(const std::vector<encoded_example>& data, const std::string& where, const std::string& what) {
  for (std::size_t i = 0; i < data.size(); ++i)
    if (data[i].label < 0) throw invalid_argument(where + ": " + what + " example " + std::to_string(i) + " has no label");
}

/// Labels inside the head's classes, or (label options) inside the row's options with a span
/// head and the gold option's span as the answer.
inline void check_label_range(const std::vector<encoded_example>& data, const task_objective& o, index outputs,
                              const std::string& where, const std::string& what) {
  if (o.kind != task_kind::classification)
    throw invalid_argument(where + ": MPMP tasks are classification (optionally cast as reading comprehension), got " +
                           task_kind_name(o.kind));
  if (o.choices && outputs != 2)
    throw invalid_argument(where + ": label options need a span head (2 outputs), got one with " +
                           std::to_string(outputs));
  for (std::size_t i = 0; i < data.size(); ++i) {
    const auto& e = data[i];
    const index classes = o.choices ? static_cast<index>(e.choices.size()) : outputs;
    if (e.label >= classes)
      throw invalid_argument(where + ": " + what + " example " + std::to_string(i) + " label " +
                             std::to_string(e.label) + " expected < " +
                             (o.choices ? "its " + std::to_string(classes) + " label options"
                                        : "the head's " + std::to_string(classes) + " classes"));
    if (o.choices && (e.start < 0 || e.end < e.start))
      throw invalid_argument(where + ": " + what + " example " + std::to_string(i) +
                             " expected the span of its gold option, got none");
  }
}

template <typename Scalar>
void check_policy_matches(const modular_prompt<Scalar>& p, std::size_t tasks, std::size_t heads, const std::string& where) {
  if (heads != tasks && heads != 1)
    throw invalid_argument(where + ": expected one head per task (" + std::to_string(tasks) +
                           ") or one shared span head, got " + std::to_string(heads));
  if (p.num_tasks() != static_cast<index>(tasks))
    throw invalid_argument(where + ": policy router has " + std::to_string(p.num_tasks()) + " task rows, expected " +
                           std::to_string(tasks) + " (one per upstream task)");
}

}  // namespace detail

/// Multi-task pre-training of @p policy (router rows, z, A) and the heads: one per task, or
/// one span head shared by every task (@p heads of size 1, every task's `objective.choices`
/// set; with one task the objective says which). The policy's trainable parts are set to
/// `all()`; it is left holding the parameters with the best mean dev accuracy (the last ones
/// when no task has dev data).
/// @throws peft::invalid_argument for mismatched tasks/heads/router rows, an empty or unlabelled
///   task, a label outside its head's classes (or its options), or a shared head without label
///   options; peft::numeric_error for a non-finite loss
template <typename Arch, typename Scalar, typename Head>
mpmp_pretrain_result mpmp_pretrain(const encoder<Arch, Scalar>& enc, modular_prompt<Scalar>& policy,
                                   std::vector<Head>& heads, const std::vector<mpmp_task_data>& tasks,
                                   const mpmp_pretrain_options& o) {
  const std::string where = "mpmp_pretrain";
  o.validate();
  if (tasks.empty()) throw invalid_argument(where + ": expected >= 1 upstream task, got 0");
  detail::check_policy_matches(policy, tasks.size(), heads.size(), where);
  const bool shared = heads.size() == 1 && tasks.size() > 1;
  auto head_of = [&](std::size_t t) -> Head& { return heads[heads.size() == 1 ? 0 : t]; };
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    const std::string name = "task '" + tasks[t].name + "'";
    if (tasks[t].train.empty()) throw invalid_argument(where + ": " + name + " has no training examples");
    if (shared && !tasks[t].objective.choices)
      throw invalid_argument(where + ": one head shared by every task is a span head over label options, but " + name +
                             " has no label options (objective.choices)");
    detail::check_labelled(tasks[t].train, where, name + " training");
    detail::check_labelled(tasks[t].dev, where, name + " dev");
    detail::check_label_range(tasks[t].train, tasks[t].objective, head_of(t).num_classes(), where, name + " training");
    detail::check_label_range(tasks[t].dev, tasks[t].objective, head_of(t).num_classes(), where, name + " dev");
  }
  policy.set_trainable(modular_prompt_parts::all());

  // One AdamW over the policy (router at its own rate) and one per head: a head whose task is
  // not drawn gets no update, as a PyTorch parameter without a gradient.
  parameter_set<Scalar> pset;
  add_policy_parameters(pset, policy);
  adamw_hyper hp;
  hp.lr = o.prompt_lr;
  hp.weight_decay = o.weight_decay;
  adamw<Scalar> popt(hp);
  popt.init(pset);
  popt.set_store_lr_scale(0, o.router_lr / o.prompt_lr);  // store 0 is the router
  std::vector<parameter_set<Scalar>> hsets(heads.size());
  std::vector<adamw<Scalar>> hopts;
  adamw_hyper hh = hp;
  hh.lr = o.head_lr;
  for (std::size_t t = 0; t < heads.size(); ++t) {
    hsets[t].add(heads[t].parameters());
    hopts.emplace_back(hh);
    hopts.back().init(hsets[t]);
  }

  rng task_gen(o.seed), order_gen(o.seed ^ 0x51ed270b27a1e3c5ULL), drop_gen(o.seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<std::vector<std::size_t>> order(tasks.size());
  std::vector<std::size_t> cursor(tasks.size(), 0);
  auto shuffle = [&](std::size_t t) {
    auto& ord = order[t];
    if (ord.empty())
      for (std::size_t i = 0; i < tasks[t].train.size(); ++i) ord.push_back(i);
    for (std::size_t i = ord.size(); i > 1; --i) std::swap(ord[i - 1], ord[order_gen.below(i)]);
    cursor[t] = 0;
  };
  for (std::size_t t = 0; t < tasks.size(); ++t) shuffle(t);

  bool any_dev = false;
  for (const auto& t : tasks) any_dev = any_dev || !t.dev.empty();
  mpmp_pretrain_result res;
  res.task_steps.assign(tasks.size(), 0);
  res.dev_accuracy.assign(tasks.size(), -1.0);
  vector<Scalar> best_policy;
  std::vector<vector<Scalar>> best_heads;
  auto evaluate_all = [&](long step) {
    std::vector<double> acc(tasks.size(), -1.0);
    double sum = 0;
    int n = 0;
    const index keep = policy.task();
    for (std::size_t t = 0; t < tasks.size(); ++t) {
      if (tasks[t].dev.empty()) continue;
      policy.set_task(static_cast<index>(t));
      acc[t] = detail::mpmp_eval(task_model(enc, policy, head_of(t)), tasks[t].objective, tasks[t].dev, o.pad_id);
      sum += acc[t];
      ++n;
    }
    policy.set_task(keep);
    const double mean = n ? sum / n : -1.0;
    if (res.best_step == 0 || mean > res.mean_dev_accuracy) {
      res.mean_dev_accuracy = mean;
      res.dev_accuracy = acc;
      res.best_step = step;
      best_policy = pset.get_flat();
      best_heads.clear();
      for (auto& hs : hsets) best_heads.push_back(hs.get_flat());
    }
  };

  progress bar("mpmp pre-train", o.steps, o.progress_out, std::max<long>(1, o.steps / 20));
  std::vector<double> recent;
  for (long step = 1; step <= o.steps; ++step) {
    const auto t = static_cast<std::size_t>(task_gen.below(tasks.size()));
    const auto& data = tasks[t].train;
    std::vector<std::size_t> rows;
    while (rows.size() < static_cast<std::size_t>(o.batch_size)) {
      if (cursor[t] >= order[t].size()) shuffle(t);
      rows.push_back(order[t][cursor[t]++]);
      if (rows.size() >= data.size()) break;  // a task smaller than a batch: one pass
    }
    const auto tb = make_task_batch(data, rows, o.pad_id);
    policy.set_task(static_cast<index>(t));
    const std::size_t h = heads.size() == 1 ? 0 : t;
    pset.zero_grad();
    hsets[h].zero_grad();
    task_model model(enc, policy, heads[h]);
    const double loss = model.forward_backward(tb, mode::train, drop_gen, [&](const matrix<Scalar>& z, matrix<Scalar>& dz) {
      return task_loss(tasks[t].objective, z, tb, dz);
    });
    popt.step(pset);
    hopts[h].step(hsets[h]);
    ++res.task_steps[t];
    recent.push_back(loss);
    if (recent.size() > 50) recent.erase(recent.begin());
    if (o.show_progress) bar.update(step, loss, static_cast<long>(rows.size()), {{"task", tasks[t].name}});
    if (any_dev && ((o.eval_every > 0 && step % o.eval_every == 0) || step == o.steps)) evaluate_all(step);
  }
  if (o.show_progress) bar.finish();
  if (best_policy.size() == pset.size() && best_heads.size() == hsets.size()) {
    pset.set_flat(best_policy);
    for (std::size_t t = 0; t < hsets.size(); ++t) hsets[t].set_flat(best_heads[t]);
  }
  policy.zero_grad();
  for (auto& hs : hsets) hs.zero_grad();
  res.steps = o.steps;
  res.seconds = bar.seconds();
  double s = 0;
  for (double v : recent) s += v;
  res.final_loss = recent.empty() ? 0.0 : s / double(recent.size());
  return res;
}

// --- two-stage downstream tuning --------------------------------------------------------------

/// Which downstream stages `mpmp_tune` runs.
enum class mpmp_stage {
  router,   ///< stage 1 only: the router logits (M per slot), head and prompts frozen
  prompts,  ///< stage 2 only: the prompts and the head, router frozen at its current value
  both      ///< stage 1, then stage 2 from stage 1's best (the reference's schedule)
};
inline const char* to_string(mpmp_stage s) noexcept {
  switch (s) {
    case mpmp_stage::router: return "router";
    case mpmp_stage::prompts: return "prompts";
    case mpmp_stage::both: return "both";
  }
  return "?";
}
/// @throws peft::invalid_argument for anything but router, prompts, both
inline mpmp_stage parse_mpmp_stage(const std::string& s) {
  if (s == "router") return mpmp_stage::router;
  if (s == "prompts") return mpmp_stage::prompts;
  if (s == "both") return mpmp_stage::both;
  throw invalid_argument("parse_mpmp_stage: expected router, prompts or both, got '" + s + "'");
}

/// Settings of `mpmp_tune` (defaults: the reference's `Deep/downstream_run.py`).
struct mpmp_tune_options {
  mpmp_stage stage = mpmp_stage::both;
  int router_epochs = 500;       ///< stage 1 epochs
  int prompt_epochs = 500;       ///< stage 2 epochs
  double router_lr = 3e-3;       ///< stage 1 AdamW lr (router logits)
  double prompt_lr = 2e-5;       ///< stage 2 AdamW lr (prompts)
  double head_lr = 0;            ///< stage 2 lr of the head; 0: prompt_lr (the reference's one optimizer)
  bool router_stage_head = false;  ///< also train the head in stage 1 (for a fresh head: no upstream match)
  double router_stage_head_lr = 1e-2;
  bool materialize = true;       ///< stage 2 tunes `z A` directly (the reference); false: z (A frozen)
  index batch_size = 0;          ///< 0: the whole training set per step (the reference)
  int eval_every = 25;           ///< epochs between dev evaluations
  bool train_mode = false;       ///< false: eval mode throughout (the reference: no dropout, sigmoid routing)
  /// The loss and the dev score: classification, or (`choices`) a span head over the rows'
  /// label options.
  task_objective objective{};
  std::uint64_t seed = 1;
  std::int32_t pad_id = 0;
  bool show_progress = true;
  std::FILE* progress_out = stderr;

  /// @throws peft::invalid_argument naming the first bad field
  void validate() const {
    const char* where = "mpmp_tune_options";
    if (router_epochs < 0 || prompt_epochs < 0) throw invalid_argument(std::string(where) + ": epochs expected >= 0");
    for (auto [name, v] : {std::pair{"router_lr", router_lr}, {"prompt_lr", prompt_lr}, {"router_stage_head_lr", router_stage_head_lr}})
      if (!(v > 0) || !std::isfinite(v)) throw invalid_argument(std::string(where) + ": " + name + " expected > 0, got " + std::to_string(v));
    if (!(head_lr >= 0)) throw invalid_argument(std::string(where) + ": head_lr expected >= 0");
    if (batch_size < 0) throw invalid_argument(detail::expected_got(where, "batch_size", ">= 0", batch_size));
    if (eval_every < 1) throw invalid_argument(detail::expected_got(where, "eval_every", ">= 1", eval_every));
  }
};

/// One stage of `mpmp_tune`.
struct mpmp_stage_report {
  std::string name;               ///< "router" or "prompts"
  index trainable_params = 0;     ///< parameters the optimizer saw
  int epochs = 0;
  long steps = 0;
  double start_dev_accuracy = 0;  ///< before the stage
  double best_dev_accuracy = 0;   ///< kept
  int best_epoch = 0;
  double final_loss = 0;
  double seconds = 0;
};

struct mpmp_tune_result {
  std::vector<mpmp_stage_report> stages;
  double dev_accuracy = 0;  ///< of the kept parameters
  double seconds = 0;
};

namespace detail {

/// Trains the parameters in @p set for @p epochs over @p train, keeping the best-by-dev
/// values of @p set (dev empty: the training accuracy decides).
template <typename Model, typename Scalar>
mpmp_stage_report mpmp_run_stage(Model& model, parameter_set<Scalar>& set, adamw<Scalar>& opt, const std::string& name,
                                 int epochs, const std::vector<encoded_example>& train,
                                 const std::vector<encoded_example>& dev, const mpmp_tune_options& o, rng& order_gen,
                                 rng& drop_gen) {
  mpmp_stage_report rep;
  rep.name = name;
  rep.trainable_params = set.size();
  rep.epochs = epochs;
  const auto& judge = dev.empty() ? train : dev;
  const auto t0 = std::chrono::steady_clock::now();
  rep.start_dev_accuracy = rep.best_dev_accuracy = mpmp_eval(model, o.objective, judge, o.pad_id);
  vector<Scalar> best = set.get_flat();
  const std::size_t bs = o.batch_size > 0 ? static_cast<std::size_t>(o.batch_size) : train.size();
  std::vector<std::size_t> order(train.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const long per_epoch = static_cast<long>((train.size() + bs - 1) / bs);
  progress bar("mpmp " + name, per_epoch * epochs, o.progress_out, std::max<long>(1, per_epoch * epochs / 10));
  const mode m = o.train_mode ? mode::train : mode::eval;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    if (bs < train.size())
      for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[order_gen.below(i)]);
    for (std::size_t s = 0; s < order.size(); s += bs) {
      std::vector<std::size_t> rows(order.begin() + static_cast<std::ptrdiff_t>(s),
                                    order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), s + bs)));
      const auto tb = make_task_batch(train, rows, o.pad_id);
      set.zero_grad();
      rep.final_loss = model.forward_backward(tb, m, drop_gen, [&](const matrix<Scalar>& z, matrix<Scalar>& dz) {
        return task_loss(o.objective, z, tb, dz);
      });
      opt.step(set);
      ++rep.steps;
      if (o.show_progress) bar.update(rep.steps, rep.final_loss, static_cast<long>(rows.size()));
    }
    if (epoch % o.eval_every == 0 || epoch == epochs) {
      const double acc = mpmp_eval(model, o.objective, judge, o.pad_id);
      if (acc > rep.best_dev_accuracy) {
        rep.best_dev_accuracy = acc;
        rep.best_epoch = epoch;
        best = set.get_flat();
      }
    }
  }
  if (o.show_progress) bar.finish();
  set.set_flat(best);
  set.zero_grad();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace detail

/// Two-stage downstream tuning of @p policy (task 0 of its router; call `reset_router()`
/// first for the reference's fresh router) and @p head on one task. Stage 1 exposes only the
/// router logits (plus the head when `router_stage_head`), stage 2 only the prompts and the
/// head; the encoder is never written. Keeps the best-by-dev parameters of each stage; the
/// policy is materialised by stage 2 when `materialize` is set. The policy's trainable parts
/// are left at those of the last stage.
/// @throws peft::invalid_argument for empty or unlabelled data or a bad option
template <typename Arch, typename Scalar, typename Head>
mpmp_tune_result mpmp_tune(const encoder<Arch, Scalar>& enc, modular_prompt<Scalar>& policy, Head& head,
                           const std::vector<encoded_example>& train, const std::vector<encoded_example>& dev,
                           const mpmp_tune_options& o) {
  const std::string where = "mpmp_tune";
  o.validate();
  if (train.empty()) throw invalid_argument(where + ": training set is empty");
  detail::check_labelled(train, where, "training");
  detail::check_labelled(dev, where, "dev");
  detail::check_label_range(train, o.objective, head.num_classes(), where, "training");
  detail::check_label_range(dev, o.objective, head.num_classes(), where, "dev");
  const auto t0 = std::chrono::steady_clock::now();
  rng order_gen(o.seed), drop_gen(o.seed ^ 0x9e3779b97f4a7c15ULL);
  mpmp_tune_result res;
  task_model model(enc, policy, head);
  if (o.stage != mpmp_stage::prompts) {
    policy.set_trainable(modular_prompt_parts::router_only());
    parameter_set<Scalar> set;
    add_policy_parameters(set, policy);
    if (o.router_stage_head) set.add(head.parameters());
    adamw_hyper hp;
    hp.lr = o.router_lr;
    hp.weight_decay = 0;
    adamw<Scalar> opt(hp);
    opt.init(set);
    if (o.router_stage_head) opt.set_store_lr_scale(1, o.router_stage_head_lr / o.router_lr);
    res.stages.push_back(detail::mpmp_run_stage(model, set, opt, "router", o.router_epochs, train, dev, o, order_gen, drop_gen));
  }
  if (o.stage != mpmp_stage::router) {
    if (o.materialize) policy.materialize();
    policy.set_trainable(modular_prompt_parts::prompts_only());
    parameter_set<Scalar> set;
    add_policy_parameters(set, policy);
    set.add(head.parameters());
    adamw_hyper hp;
    hp.lr = o.prompt_lr;
    hp.weight_decay = 0;
    adamw<Scalar> opt(hp);
    opt.init(set);
    if (o.head_lr > 0) opt.set_store_lr_scale(static_cast<index>(set.num_stores()) - 1, o.head_lr / o.prompt_lr);
    res.stages.push_back(detail::mpmp_run_stage(model, set, opt, "prompts", o.prompt_epochs, train, dev, o, order_gen, drop_gen));
  }
  policy.zero_grad();
  head.parameters().zero_grad();  // the backward fills the head's gradients in every stage
  res.dev_accuracy = res.stages.empty() ? 0.0 : res.stages.back().best_dev_accuracy;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

// --- black-box tuning -------------------------------------------------------------------------

/// Settings of `mpmp_blackbox` (defaults: the reference's `Deep/deepbbt.py`).
struct mpmp_blackbox_options {
  index router_budget = 100;       ///< BO evaluations (stage 1), including the random ones
  index router_init_points = 20;   ///< of which uniformly random
  double router_bound = 5.0;       ///< box [-b, b] of each router logit
  double kappa = 2.0;              ///< UCB exploration weight
  index prompt_budget = 3000;      ///< CMA-ES evaluations over all layers (stage 2)
  index population_size = 20;      ///< CMA-ES lambda
  double sigma_first = 0.5;        ///< sigma0 of the first slot's CMA-ES
  double sigma_rest = 0.1;         ///< sigma0 of the others
  double z_bound = 5.0;            ///< box [-b, b] of each intrinsic coordinate (0: unbounded)
  index eval_every = 100;          ///< objective calls between dev evaluations
  task_objective objective{};      ///< the loss and the dev score (see mpmp_tune_options)
  std::uint64_t seed = 1;
  std::int32_t pad_id = 0;
  bool show_progress = true;
  std::FILE* progress_out = stderr;

  /// @throws peft::invalid_argument naming the first bad field
  void validate() const {
    const char* where = "mpmp_blackbox_options";
    if (router_budget < 0) throw invalid_argument(detail::expected_got(where, "router_budget", ">= 0", router_budget));
    if (router_budget > 0 && (router_init_points < 1 || router_init_points > router_budget))
      throw invalid_argument(detail::expected_got(where, "router_init_points", "in [1, router_budget]", router_init_points));
    if (prompt_budget < 0) throw invalid_argument(detail::expected_got(where, "prompt_budget", ">= 0", prompt_budget));
    if (population_size < 2) throw invalid_argument(detail::expected_got(where, "population_size", ">= 2", population_size));
    if (!(router_bound > 0)) throw invalid_argument(std::string(where) + ": router_bound expected > 0");
    if (!(z_bound >= 0)) throw invalid_argument(std::string(where) + ": z_bound expected >= 0");
    if (!(sigma_first > 0) || !(sigma_rest > 0)) throw invalid_argument(std::string(where) + ": sigmas expected > 0");
    if (eval_every < 1) throw invalid_argument(detail::expected_got(where, "eval_every", ">= 1", eval_every));
  }
};

struct mpmp_blackbox_result {
  index router_evaluations = 0;
  index prompt_evaluations = 0;
  index router_dimension = 0;      ///< BO variables (router logits)
  index prompt_dimension = 0;      ///< CMA-ES variables per slot (d)
  double router_loss = 0;          ///< best training loss after stage 1
  double router_dev_accuracy = 0;  ///< dev accuracy of the best BO router (0 without dev data)
  double prompt_loss = 0;          ///< best training loss after stage 2
  double start_dev_accuracy = 0;
  double dev_accuracy = 0;         ///< of the kept parameters
  index best_evaluation = 0;       ///< objective call at which they were seen
  double seconds = 0;
};

/// Black-box tuning of @p policy (task 0's router row and z; needs z and A, i.e. not
/// materialised) with the head and A frozen: forward passes only. Leaves the policy holding
/// the best-by-dev router and z seen (the training loss decides when @p dev is empty).
/// @throws peft::invalid_argument for a materialised policy, empty or unlabelled data, or a bad option
template <typename Arch, typename Scalar, typename Head>
mpmp_blackbox_result mpmp_blackbox(const encoder<Arch, Scalar>& enc, modular_prompt<Scalar>& policy, Head& head,
                                   const std::vector<encoded_example>& train, const std::vector<encoded_example>& dev,
                                   const mpmp_blackbox_options& o) {
  const std::string where = "mpmp_blackbox";
  o.validate();
  if (policy.materialized())
    throw invalid_argument(where + ": the policy is materialised; black-box tuning searches z and needs z and A");
  if (train.empty()) throw invalid_argument(where + ": training set is empty");
  detail::check_labelled(train, where, "training");
  detail::check_labelled(dev, where, "dev");
  detail::check_label_range(train, o.objective, head.num_classes(), where, "training");
  detail::check_label_range(dev, o.objective, head.num_classes(), where, "dev");
  const auto t0 = std::chrono::steady_clock::now();
  task_model model(enc, policy, head);
  const index S = policy.num_slots(), M = policy.config().num_modules, d = policy.config().intrinsic_dim;
  const index task = policy.task();
  std::vector<std::size_t> all(train.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  const auto tb = make_task_batch(train, all, o.pad_id);
  auto train_loss = [&]() {
    const matrix<Scalar> z = model.predict(tb);
    matrix<Scalar> dz;
    return task_loss(o.objective, z, tb, dz);
  };
  auto& R = policy.router_parameters();
  auto& Z = policy.prompt_parameters();
  auto set_router = [&](const vector<double>& x) { R.value(0).row(task) = x.transpose().template cast<Scalar>(); };

  mpmp_blackbox_result res;
  res.router_dimension = S * M;
  res.prompt_dimension = d;
  index calls = 0;
  double best_dev = -1, best_loss = std::numeric_limits<double>::infinity();
  vector<Scalar> best_router = R.values(), best_z = Z.values();
  auto judge = [&]() {
    return dev.empty() ? -train_loss() : detail::mpmp_eval(model, o.objective, dev, o.pad_id);
  };
  res.start_dev_accuracy = dev.empty() ? 0.0 : judge();
  best_dev = dev.empty() ? -train_loss() : res.start_dev_accuracy;
  // Called after each objective evaluation with the policy holding the evaluated point.
  auto after_call = [&](double loss) {
    ++calls;
    if (loss < best_loss) best_loss = loss;
    if (calls % o.eval_every == 0) {
      const double j = judge();
      if (j > best_dev) {
        best_dev = j;
        best_router = R.values();
        best_z = Z.values();
        res.best_evaluation = calls;
      }
    }
  };
  const index total = o.router_budget + o.prompt_budget;
  progress bar("mpmp black-box", total, o.progress_out, std::max<index>(1, total / 20));

  // Stage 1: Bayesian optimisation of the router logits.
  if (o.router_budget > 0) {
    bayes_opt_options bo_opt;
    bo_opt.init_points = o.router_init_points;
    bo_opt.n_iter = o.router_budget - o.router_init_points;
    bo_opt.kappa = o.kappa;
    bo_opt.seed = o.seed;
    const vector<double> lo = vector<double>::Constant(S * M, -o.router_bound);
    const vector<double> hi = vector<double>::Constant(S * M, o.router_bound);
    bayes_opt bo(lo, hi, bo_opt);
    for (index i = 0; i < o.router_budget; ++i) {
      const auto x = bo.suggest();
      set_router(x);
      const double f = train_loss();
      bo.observe(x, f);
      after_call(f);
      if (o.show_progress) bar.update(calls, f, static_cast<long>(train.size()), {{"stage", "router (BO)"}});
    }
    set_router(bo.best_x());
    res.router_loss = bo.best_f();
    // The best BO router competes for the kept parameters too.
    const double jr = judge();
    res.router_dev_accuracy = dev.empty() ? 0.0 : jr;
    if (jr > best_dev) {
      best_dev = jr;
      best_router = R.values();
      best_z = Z.values();
      res.best_evaluation = calls;
    }
    res.router_evaluations = bo.size();
  }

  // Stage 2: one CMA-ES per slot over z, round-robin, starting from the routed mix.
  if (o.prompt_budget > 0) {
    std::vector<cmaes> es;
    for (index s = 0; s < S; ++s) {
      cmaes_options co;
      co.population_size = o.population_size;
      if (o.z_bound > 0) {
        co.lower = vector<double>::Constant(d, -o.z_bound);
        co.upper = vector<double>::Constant(d, o.z_bound);
      }
      vector<double> x0 = policy.mixed_intrinsic(s).transpose().template cast<double>();
      if (o.z_bound > 0) x0 = x0.cwiseMax(-o.z_bound).cwiseMin(o.z_bound);
      es.emplace_back(x0, s == 0 ? o.sigma_first : o.sigma_rest, co);
      policy.set_intrinsic(s, x0.template cast<Scalar>());
    }
    const index rounds = o.prompt_budget / (o.population_size * S);
    double loss = std::numeric_limits<double>::infinity();
    for (index r = 0; r < rounds; ++r) {
      for (index s = 0; s < S; ++s) {
        const auto cands = es[static_cast<std::size_t>(s)].ask();
        std::vector<double> f;
        for (const auto& x : cands) {
          policy.set_intrinsic(s, x.template cast<Scalar>());
          f.push_back(train_loss());
          after_call(f.back());
          ++res.prompt_evaluations;
          if (o.show_progress) bar.update(calls, f.back(), static_cast<long>(train.size()), {{"stage", "z (CMA-ES)"}, {"layer", std::to_string(s)}});
        }
        es[static_cast<std::size_t>(s)].tell(cands, f);
        policy.set_intrinsic(s, es[static_cast<std::size_t>(s)].best_x().template cast<Scalar>());
        loss = std::min(loss, es[static_cast<std::size_t>(s)].best_f());
      }
    }
    res.prompt_loss = loss;
  }
  if (o.show_progress) bar.finish();
  // The final point competes too.
  const double j = judge();
  if (j > best_dev) {
    best_dev = j;
    best_router = R.values();
    best_z = Z.values();
    res.best_evaluation = calls;
  }
  R.values() = best_router;
  Z.values() = best_z;
  policy.zero_grad();
  res.dev_accuracy = dev.empty() ? 0.0 : best_dev;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_TRAIN_MPMP
#include "../detail/instances.hpp"

#endif  // PEFT_TRAIN_MPMP_HPP
