// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TRAIN_TRAINER_HPP
#define PEFT_TRAIN_TRAINER_HPP

/// @file trainer.hpp
/// Fine-tuning one task (a `task_model`, task/task_model.hpp): `fit` is the training loop: shuffled
/// batches per epoch, AdamW with a linear warm-up/decay schedule, global gradient-norm
/// clipping, periodic evaluation (the metrics of the task's kind, task/kinds.hpp: accuracy and
/// macro-F1 for classification) with optional early stopping that keeps the best parameters, a progress bar and a CSV training curve. Results are
/// deterministic for a given seed and thread count. Data parallelism (one batch split over the
/// ranks of a `collective`) and checkpoint/resume are options of the same loop.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../dist/collective.hpp"
#include "../core/batch.hpp"
#include "../model/encoder.hpp"
#include "../optim/adam.hpp"
#include "../optim/clip.hpp"
#include "../optim/schedule.hpp"
#include "../policies/policy_tensors.hpp"
#include "../task/kinds.hpp"
#include "../task/task_model.hpp"
#include "progress.hpp"
#include "train_state.hpp"

namespace peft {
namespace detail {

/// Data-parallel step: scales this rank's gradients by `share` (its part of the whole batch),
/// sums them and `loss * share` over the ranks with one `allreduce_sum` over one flat buffer
/// (`flat` is reused between steps) and writes the sums back. Returns the summed loss.
template <typename Scalar>
double allreduce_gradients(parameter_set<Scalar>& set, collective& comm, double share, double loss,
                           vector<Scalar>& flat) {
  flat.resize(set.size() + 1);
  const Scalar sh = static_cast<Scalar>(share);
  index off = 0;
  for (std::size_t k = 0; k < set.num_stores(); ++k) {
    auto& st = set.store(k);
    flat.segment(off, st.size()) = st.grads() * sh;
    off += st.size();
  }
  flat[off] = static_cast<Scalar>(loss * share);
  comm.allreduce_sum(flat.data(), static_cast<std::size_t>(flat.size()));
  off = 0;
  for (std::size_t k = 0; k < set.num_stores(); ++k) {
    auto& st = set.store(k);
    st.grads() = flat.segment(off, st.size());
    off += st.size();
  }
  return static_cast<double>(flat[off]);
}

/// Rows [r*n/N, (r+1)*n/N) of `rows` for rank r of N: an even split of a whole batch.
inline std::vector<std::size_t> rank_share(const std::vector<std::size_t>& rows, const collective* comm) {
  if (!comm || comm->size() == 1) return rows;
  const std::size_t n = rows.size(), N = static_cast<std::size_t>(comm->size()), r = static_cast<std::size_t>(comm->rank());
  return std::vector<std::size_t>(rows.begin() + static_cast<std::ptrdiff_t>(r * n / N),
                                  rows.begin() + static_cast<std::ptrdiff_t>((r + 1) * n / N));
}

/// A batch of `rows` (this rank's part of `all_rows`) for keyed dropout: padded to the length
/// of the whole batch, with `gen` keyed by `key_base + row`.
inline task_batch keyed_batch(const std::vector<encoded_example>& data, const std::vector<std::size_t>& all_rows,
                              const std::vector<std::size_t>& rows, std::int32_t pad_id, rng& gen,
                              std::uint64_t key_base = 0) {
  index T = 0;
  for (auto r : all_rows) T = std::max<index>(T, static_cast<index>(data.at(r).ids.size()));
  std::vector<std::uint64_t> keys;
  for (auto r : rows) keys.push_back(key_base + static_cast<std::uint64_t>(r));
  gen.set_example_keys(std::move(keys));
  return make_task_batch(data, rows, pad_id, T);
}

}  // namespace detail

/// SetFit's contrastive step (Tunstall et al., 2022, "Efficient Few-Shot Learning Without
/// Prompts"): before a head is trained, the policy is tuned so that sentences of one label have
/// embeddings of cosine 1 and sentences of two labels cosine 0. What `train_task` runs first
/// when `pairs_per_example` > 0 (task/run.hpp).
struct contrastive_options {
  /// Rounds of pairs (SetFit's `num_iterations`): each round gives every labelled example one
  /// partner of its own label and one of another. 0: no contrastive step.
  int pairs_per_example = 0;
  int epochs = 1;           ///< passes over the pairs
  index batch_size = 16;    ///< pairs per step (twice as many sentences)
  double lr = 0;            ///< the policy's rate in this step; 0: fit's lr
};

/// One contrastive pair: rows `a` and `b` of a labelled set and their target cosine.
struct sentence_pair {
  std::size_t a = 0, b = 0;
  float target = 0;
};

/// SetFit's pairs of a labelled set (its `sentence_pairs_generation`): @p rounds rounds, each
/// giving every example i a pair (i, j) with j of its label (another row when its label has
/// one), target 1, and a pair (i, k) with k of another label, target 0. Deterministic for a
/// seed.
/// @throws invalid_argument for an unlabelled row or fewer than two labels
inline std::vector<sentence_pair> make_contrastive_pairs(const std::vector<int>& labels, int rounds,
                                                         std::uint64_t seed) {
  std::vector<std::vector<std::size_t>> by_label;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0)
      throw invalid_argument("contrastive pairs: example " + std::to_string(i) + " has no label");
    if (static_cast<std::size_t>(labels[i]) >= by_label.size()) by_label.resize(static_cast<std::size_t>(labels[i]) + 1);
    by_label[static_cast<std::size_t>(labels[i])].push_back(i);
  }
  std::size_t present = 0;
  for (const auto& rows : by_label) present += !rows.empty();
  if (present < 2)
    throw invalid_argument("contrastive pairs: labels expected >= 2 distinct, got " + std::to_string(present));
  rng gen(seed);
  std::vector<sentence_pair> out;
  out.reserve(2 * labels.size() * static_cast<std::size_t>(std::max(0, rounds)));
  for (int r = 0; r < rounds; ++r)
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const auto& same = by_label[static_cast<std::size_t>(labels[i])];
      std::size_t j = same[gen.below(same.size())];
      if (same.size() > 1)
        while (j == i) j = same[gen.below(same.size())];
      out.push_back({i, j, 1.0f});
      std::size_t k = gen.below(labels.size());
      while (labels[k] == labels[i]) k = gen.below(labels.size());
      out.push_back({i, k, 0.0f});
    }
  return out;
}

/// Training-loop settings. Give `epochs` or `steps` (steps wins when both are set).
struct fit_options {
  int epochs = 10;
  long steps = 0;
  index batch_size = 8;
  double lr = 1e-3;
  double head_lr = 0.0;          ///< learning rate of the head (the last store); 0: same as lr
  double warmup_ratio = 0.0;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;    ///< <= 0 disables clipping
  long eval_every = 0;           ///< steps between evaluations (0: at the end only)
  int patience = 0;              ///< evaluations without improvement before stopping (0: never)
  std::uint64_t seed = 1;
  std::int32_t pad_id = 0;
  std::string csv_path;          ///< training curve, empty for none
  std::string label = "train";   ///< progress-bar label
  bool show_progress = true;
  std::FILE* progress_out = stdout;
  /// The task's kind, which gives the loss and the evaluation metrics (task/kinds.hpp); the
  /// default is single-label classification with cross-entropy.
  task_objective task;

  /// Data parallelism. With a communicator of N ranks, `batch_size` is each rank's share: a
  /// step takes the next N * batch_size rows of the (identically shuffled) order, rank r
  /// runs rows [r*b, (r+1)*b) of them, and one `allreduce_sum` over a flat buffer (every
  /// parameter gradient, then the loss) makes the mean gradient of the whole batch on every
  /// rank, so every rank takes the same optimizer step. Dropout is then keyed by example
  /// (`rng::set_example_keys`) and each rank pads to the whole batch's length, so N ranks give
  /// the parameters one process gets with batch N * b and a `single_process` communicator
  /// (to rounding: the sum over ranks adds in another order). Only rank 0 shows progress,
  /// writes `csv_path` and `state_path`. Null: one process, sequential dropout stream.
  collective* comm = nullptr;

  /// Checkpoint and resume. Every `save_every` steps (and after the last) the whole training
  /// state goes to `state_path`, atomically; with `resume` and an existing `state_path`, the
  /// run continues from it and ends with the parameters of a run never interrupted.
  std::string state_path;
  long save_every = 0;
  bool resume = false;
  /// Called after each optimizer step with the step count, before any state is saved.
  std::function<void(long)> on_step;

  /// LP-FT (Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features"): this many
  /// epochs train the head alone (the last store, at `head_lr`), the policy frozen, before
  /// `epochs` (or `steps`) train everything. With `epochs` = 0 and `steps` = 0 only the head
  /// trains: a linear probe. The probe writes no CSV row and takes no checkpoint; it cannot be
  /// combined with `comm` or `state_path`.
  int probe_epochs = 0;
  /// SetFit's contrastive step, run by train_task before this loop (see contrastive_options).
  /// Inside fit, `task.pairs` makes the loop train every store but the last (the head, which
  /// must then give the embedding) on these pairs of `train`, with `epochs`, `batch_size`
  /// (pairs), `lr` and the schedule of this struct.
  contrastive_options contrastive;
};

struct fit_result {
  long steps = 0;
  double seconds = 0;
  double examples_per_second = 0;
  double final_loss = 0;
  eval_result best;      ///< best evaluation seen (the final one without eval_every)
  long best_step = 0;
};

namespace detail {

/// What `fit_loop` needs of a model, behind two calls: the loop itself depends only on the
/// scalar type, so it is compiled once per scalar (see peft/detail/instances.hpp) instead of
/// once per encoder x policy x head.
template <typename Scalar>
struct fit_model_calls {
  /// Forward and backward of one batch with the task's loss; gradients accumulate. Returns the loss.
  std::function<double(const task_batch&, rng&)> forward_backward;
  /// The task's metrics on a labelled set, batched by the given size.
  std::function<eval_result(const std::vector<encoded_example>&, index)> evaluate;
  /// What the loss of rows `rows` of a set averages over: the rows, or (token classification)
  /// their labelled positions. Data-parallel ranks weigh their losses and gradients by their
  /// share of it, so N ranks take the step one process takes with the whole batch.
  std::function<double(const std::vector<encoded_example>&, const std::vector<std::size_t>&)> loss_units;
};

/// fit_loop's contrastive form (`o.task.pairs`): every store of `set` but the last, on SetFit's
/// pairs of `train`.
template <typename Scalar>
fit_result contrastive_loop(parameter_set<Scalar> set, const fit_model_calls<Scalar>& model,
                            const std::vector<encoded_example>& train, const fit_options& o);

/// The training loop of `fit` over the model's trainable parameters `set`.
template <typename Scalar>
fit_result fit_loop(parameter_set<Scalar> set, const fit_model_calls<Scalar>& model,
                    const std::vector<encoded_example>& train, const std::vector<encoded_example>& eval,
                    const fit_options& o);

}  // namespace detail

/// Trains `model` on `train` with the loss of `o.task`'s kind (cross-entropy for
/// classification); evaluates on `eval` (may be empty) with its metrics, keeping the best score.
/// See `fit_options` for data parallelism (`comm`) and checkpoint/resume (`state_path`).
/// @throws invalid_argument for an empty or unlabelled training set, a bad batch size, or a
///   state file written for other settings; io_error for an unreadable state file
template <typename Model>
fit_result fit(Model& model, const std::vector<encoded_example>& train, const std::vector<encoded_example>& eval,
               const fit_options& o) {
  using Scalar = typename Model::scalar_type;
  detail::fit_model_calls<Scalar> calls;
  calls.forward_backward = [&model, &o](const task_batch& tb, rng& gen) {
    return model.forward_backward(tb, mode::train, gen, [&tb, &o](const matrix<Scalar>& z, matrix<Scalar>& dz) {
      return task_loss(o.task, z, tb, dz);
    });
  };
  calls.evaluate = [&model, &o](const std::vector<encoded_example>& data, index batch_size) {
    return evaluate_task(model, o.task, data, batch_size, o.pad_id);
  };
  calls.loss_units = [&o](const std::vector<encoded_example>& data, const std::vector<std::size_t>& rows) {
    if (o.task.kind != task_kind::token_classification) return static_cast<double>(rows.size());
    double n = 0;
    for (auto r : rows)
      for (int l : data[r].token_labels) n += l != ignore_label;
    return n;
  };
  return detail::fit_loop(model.parameters(), calls, train, eval, o);
}

/// SetFit's contrastive step (Tunstall et al., 2022) on @p policy: `fit` with the pair loss
/// (`task_objective::pairs`) through an embedding head, the row `pooling` gives (an identity
/// output layer, no dropout, not trained), on the pairs of `train`'s labels that
/// `o.contrastive` describes (`pairs_per_example` rounds, `epochs`, `batch_size` pairs per step,
/// `lr`, or `o.lr` when 0). What train_task and LiST's teacher run before their head trains.
/// @throws invalid_argument for token pooling, no pairs asked for, or what fit rejects
template <typename Arch, typename Scalar, typename Policy>
fit_result fit_contrastive(const encoder<Arch, Scalar>& enc, Policy& policy, pool_kind pooling,
                           const std::vector<encoded_example>& train, const fit_options& o) {
  if (pooling == pool_kind::tokens)
    throw invalid_argument("fit_contrastive: contrastive pairs need a pooled embedding, not token pooling");
  classification_head<Scalar> embed(enc.hidden_size(), enc.hidden_size(), pooling, 0.0, 1);
  embed.parameters().value(0).setIdentity();
  task_model model(enc, policy, embed);
  fit_options c = o;
  c.task = {};
  c.task.pairs = true;
  c.epochs = o.contrastive.epochs;
  c.steps = 0;
  c.batch_size = o.contrastive.batch_size;
  c.lr = o.contrastive.lr > 0 ? o.contrastive.lr : o.lr;
  c.head_lr = 0;
  c.probe_epochs = 0;
  c.eval_every = 0;
  c.patience = 0;
  c.csv_path.clear();
  return fit(model, train, {}, c);
}

template <typename Scalar>
fit_result detail::fit_loop(parameter_set<Scalar> set, const fit_model_calls<Scalar>& model,
                            const std::vector<encoded_example>& train,
                            const std::vector<encoded_example>& eval, const fit_options& o) {
  if (train.empty()) throw invalid_argument("fit: training set is empty");
  if (o.batch_size < 1) throw invalid_argument("fit: batch size expected >= 1, got " + std::to_string(o.batch_size));
  for (std::size_t i = 0; i < train.size(); ++i)
    if (!train[i].labelled())
      throw invalid_argument("fit: training example " + std::to_string(i) + " has no label");
  if (o.task.pairs) return contrastive_loop(std::move(set), model, train, o);
  if (o.probe_epochs < 0) throw invalid_argument("fit: probe_epochs expected >= 0, got " + std::to_string(o.probe_epochs));
  if (o.probe_epochs > 0) {
    if (o.comm || !o.state_path.empty())
      throw invalid_argument("fit: probe_epochs (LP-FT) with data parallelism or a state file is not supported");
    parameter_set<Scalar> head;
    head.add(set.store(set.num_stores() - 1));
    fit_options po = o;
    po.probe_epochs = 0;
    po.epochs = o.probe_epochs;
    po.steps = 0;
    po.lr = o.head_lr > 0 ? o.head_lr : o.lr;
    po.head_lr = 0;
    po.csv_path.clear();
    po.label = o.label + " (probe)";
    const auto probe = fit_loop(std::move(head), model, train, eval, po);
    if (o.epochs <= 0 && o.steps <= 0) return probe;
    fit_options fo = o;
    fo.probe_epochs = 0;
    auto joint = fit_loop(std::move(set), model, train, eval, fo);
    joint.steps += probe.steps;
    joint.seconds += probe.seconds;
    return joint;
  }
  const int world = o.comm ? o.comm->size() : 1;
  const int rank = o.comm ? o.comm->rank() : 0;
  if (world < 1 || rank < 0 || rank >= world)
    throw invalid_argument("fit: communicator rank " + std::to_string(rank) + " of " + std::to_string(world));
  const std::size_t local_b = static_cast<std::size_t>(o.batch_size);
  const std::size_t global_b = local_b * static_cast<std::size_t>(world);
  const long per_epoch = static_cast<long>((train.size() + global_b - 1) / global_b);
  const long total = o.steps > 0 ? o.steps : per_epoch * std::max(1, o.epochs);
  if (set.size() == 0) throw invalid_argument("fit: the model has no trainable parameters");
  if (o.comm) {
    // Ranks that disagree on the data or the model would sum unrelated gradients (or hang in
    // an allreduce of another size): compare with rank 0 before the first step.
    std::uint64_t mine[5] = {train.size(), static_cast<std::uint64_t>(set.size()), global_b, o.seed,
                             static_cast<std::uint64_t>(total)};
    std::uint64_t lead_values[5];
    std::copy(mine, mine + 5, lead_values);
    o.comm->broadcast(lead_values, sizeof lead_values, 0);
    const char* names[5] = {"training examples", "trainable parameters", "global batch", "seed", "steps"};
    for (int k = 0; k < 5; ++k)
      if (mine[k] != lead_values[k])
        throw invalid_argument("fit: rank " + std::to_string(rank) + " of " + std::to_string(world) + ": " + names[k] +
                               " expected " + std::to_string(lead_values[k]) + " (rank 0), got " +
                               std::to_string(mine[k]));
  }
  adamw_hyper hyper;
  hyper.lr = o.lr;
  hyper.weight_decay = o.weight_decay;
  adamw<Scalar> opt(hyper);
  opt.init(set);
  if (o.head_lr > 0) opt.set_store_lr_scale(static_cast<index>(set.num_stores()) - 1, o.head_lr / o.lr);
  const auto schedule = lr_schedule::linear(o.lr, static_cast<std::int64_t>(o.warmup_ratio * double(total)), total);
  rng order_gen(o.seed), drop_gen(o.seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<std::string> columns = {"step", "epoch", "lr", "loss", "grad_norm"};
  for (const auto& name : metric_names(o.task.kind)) columns.push_back("eval_" + name);
  const bool lead = rank == 0;
  const bool show = o.show_progress && lead;

  fit_result res;
  vector<Scalar> best_params;
  int stale = 0;
  std::vector<std::size_t> order(train.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::size_t pos = order.size();  // the first batch shuffles
  long step = 0;
  double loss_value = 0;
  bool stop = false;
  csv_log log;

  const bool resuming = o.resume && !o.state_path.empty() && detail::file_exists(o.state_path);
  if (resuming) {
    const auto st = load_train_state<Scalar>(o.state_path);
    const auto mismatch = [&](const char* what, std::int64_t want, std::int64_t got) {
      if (want != got)
        throw invalid_argument("fit: resume from '" + o.state_path + "': " + what + " expected " +
                               std::to_string(want) + " (this run), found " + std::to_string(got) + " (saved)");
    };
    mismatch("seed", static_cast<std::int64_t>(o.seed), static_cast<std::int64_t>(st.seed));
    mismatch("total steps", total, st.total_steps);
    mismatch("global batch", static_cast<std::int64_t>(global_b), st.global_batch);
    mismatch("training examples", static_cast<std::int64_t>(train.size()), st.train_size);
    mismatch("parameters", set.size(), st.params.size());
    mismatch("order length", static_cast<std::int64_t>(order.size()), static_cast<std::int64_t>(st.order.size()));
    for (std::size_t i = 0; i < order.size(); ++i) {
      if (st.order[i] >= order.size())
        throw invalid_argument("fit: resume from '" + o.state_path + "': order entry out of range");
      order[i] = static_cast<std::size_t>(st.order[i]);
    }
    set.set_flat(st.params);
    opt.load_state(set, st.optimizer);
    set_rng_state(order_gen, st.order_rng);
    set_rng_state(drop_gen, st.dropout_rng);
    step = static_cast<long>(st.step);
    pos = static_cast<std::size_t>(std::min<std::int64_t>(st.position, static_cast<std::int64_t>(order.size())));
    loss_value = st.loss;
    stale = static_cast<int>(st.stale);
    res.best_step = static_cast<long>(st.best_step);
    res.best.score = st.best_accuracy;  // the state keeps the score in the accuracy slot
    if (o.task.kind == task_kind::classification) {
      res.best.accuracy = st.best_accuracy;
      res.best.macro_f1 = st.best_macro_f1;
    }
    res.best.examples = static_cast<index>(st.best_examples);
    best_params = st.best_params;
    if (o.patience > 0 && stale >= o.patience) stop = true;
    if (lead && !o.csv_path.empty()) log = csv_log(o.csv_path, columns, st.csv);
  } else if (lead && !o.csv_path.empty()) {
    log = csv_log(o.csv_path, columns);
  }

  const auto save_state = [&]() {
    train_state<Scalar> st;
    st.seed = o.seed;
    st.total_steps = total;
    st.global_batch = static_cast<std::int64_t>(global_b);
    st.train_size = static_cast<std::int64_t>(train.size());
    st.step = step;
    st.position = static_cast<std::int64_t>(pos);
    st.loss = loss_value;
    st.stale = stale;
    st.best_step = res.best_step;
    st.best_accuracy = res.best.score;  // accuracy for classification
    st.best_macro_f1 = res.best.macro_f1;
    st.best_examples = res.best.examples;
    st.order.assign(order.begin(), order.end());
    st.order_rng = rng_state(order_gen);
    st.dropout_rng = rng_state(drop_gen);
    st.params = set.get_flat();
    st.best_params = best_params;
    st.optimizer = opt.state();
    st.csv = log.text();
    save_train_state(o.state_path, st);
  };

  progress bar(o.label, total, o.progress_out, std::max<long>(1, total / 10));
  vector<Scalar> flat;  // gradients, then the loss: the one buffer reduced per step
  while (step < total && !stop) {
    if (pos >= order.size()) {
      for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[order_gen.below(i)]);
      pos = 0;
    }
    const std::size_t g0 = pos, g1 = std::min(order.size(), pos + global_b);
    pos = g1;
    const std::size_t l0 = std::min(g1, g0 + static_cast<std::size_t>(rank) * local_b);
    const std::size_t l1 = std::min(g1, l0 + local_b);
    const std::vector<std::size_t> rows(order.begin() + static_cast<std::ptrdiff_t>(l0),
                                        order.begin() + static_cast<std::ptrdiff_t>(l1));
    set.zero_grad();
    double local_loss = 0;
    if (!o.comm) {
      const auto tb = make_task_batch(train, rows, o.pad_id);
      local_loss = model.forward_backward(tb, drop_gen);
      loss_value = local_loss;
    } else {
      // Every rank takes one draw per step whatever its share, so the generators stay equal.
      rng step_gen(drop_gen.engine()());
      const std::vector<std::size_t> all(order.begin() + static_cast<std::ptrdiff_t>(g0),
                                         order.begin() + static_cast<std::ptrdiff_t>(g1));
      if (!rows.empty()) {
        const auto tb = detail::keyed_batch(train, all, rows, o.pad_id, step_gen);
        local_loss = model.forward_backward(tb, step_gen);
      }
      // Mean over the whole batch: each rank weighs its mean by its share of what the loss
      // averages over (the rows, or the labelled positions of token classification).
      const double mine = model.loss_units ? model.loss_units(train, rows) : double(rows.size());
      const double whole = model.loss_units ? model.loss_units(train, all) : double(all.size());
      loss_value = detail::allreduce_gradients(set, *o.comm, whole > 0 ? mine / whole : 0.0, local_loss, flat);
    }
    const double norm = o.max_grad_norm > 0 ? clip_grad_norm(set, o.max_grad_norm) : 0.0;
    const double lr = schedule.lr_at(step);
    opt.step(set, lr);
    ++step;
    if (show) bar.update(step, loss_value, static_cast<long>(g1 - g0));
    std::vector<std::string> eval_cells(columns.size() - 5);
    const bool do_eval = !eval.empty() && ((o.eval_every > 0 && step % o.eval_every == 0) || step == total);
    if (do_eval) {
      const auto r = model.evaluate(eval, std::max<index>(o.batch_size, 32));
      for (std::size_t k = 0; k < eval_cells.size() && k < r.metrics.size(); ++k)
        eval_cells[k] = std::to_string(r.metrics[k].second);
      if (res.best_step == 0 || r.score > res.best.score) {
        res.best = r;
        res.best_step = step;
        stale = 0;
        if (o.patience > 0) best_params = set.get_flat();
      } else if (o.patience > 0 && ++stale >= o.patience) {
        stop = true;
      }
    }
    std::vector<std::string> cells = {std::to_string(step), std::to_string(double(step) / double(per_epoch)),
                                      std::to_string(lr), std::to_string(loss_value), std::to_string(norm)};
    cells.insert(cells.end(), eval_cells.begin(), eval_cells.end());
    log.row(cells);
    if (o.on_step) o.on_step(step);
    if (lead && !o.state_path.empty() && ((o.save_every > 0 && step % o.save_every == 0) || step == total || stop))
      save_state();
  }
  if (show) bar.finish();
  if (o.patience > 0 && best_params.size() == set.size()) set.set_flat(best_params);
  res.steps = step;
  res.seconds = bar.seconds();
  res.examples_per_second = res.seconds > 0 ? double(bar.examples()) / res.seconds : 0.0;
  res.final_loss = loss_value;
  return res;
}

template <typename Scalar>
fit_result detail::contrastive_loop(parameter_set<Scalar> all, const fit_model_calls<Scalar>& model,
                                    const std::vector<encoded_example>& train, const fit_options& o) {
  if (o.comm || !o.state_path.empty())
    throw invalid_argument("fit: contrastive pairs with data parallelism or a state file are not supported");
  if (o.contrastive.pairs_per_example < 1)
    throw invalid_argument("fit: contrastive pairs_per_example expected >= 1, got " +
                           std::to_string(o.contrastive.pairs_per_example));
  parameter_set<Scalar> set;  // the head gives the embedding; it does not train here
  for (std::size_t k = 0; k + 1 < all.num_stores(); ++k) set.add(all.store(k));
  if (set.size() == 0)
    throw invalid_argument("fit: contrastive pairs train the policy, and this model has no policy parameters");
  std::vector<int> labels;
  for (const auto& e : train) labels.push_back(e.label);
  auto pairs = make_contrastive_pairs(labels, o.contrastive.pairs_per_example, o.seed);
  const std::size_t per = static_cast<std::size_t>(o.batch_size);
  const long per_epoch = static_cast<long>((pairs.size() + per - 1) / per);
  const long total = o.steps > 0 ? o.steps : per_epoch * std::max(1, o.epochs);
  adamw_hyper hyper;
  hyper.lr = o.lr;
  hyper.weight_decay = o.weight_decay;
  adamw<Scalar> opt(hyper);
  opt.init(set);
  const auto schedule = lr_schedule::linear(o.lr, static_cast<std::int64_t>(o.warmup_ratio * double(total)), total);
  rng order_gen(o.seed ^ 0x5851f42d4c957f2dULL), drop_gen(o.seed ^ 0x9e3779b97f4a7c15ULL);
  progress bar(o.label + " (pairs)", total, o.progress_out, std::max<long>(1, total / 10));
  fit_result res;
  std::size_t pos = pairs.size();
  double loss_value = 0;
  for (long step = 0; step < total; ++step) {
    if (pos >= pairs.size()) {
      for (std::size_t i = pairs.size(); i > 1; --i) std::swap(pairs[i - 1], pairs[order_gen.below(i)]);
      pos = 0;
    }
    const std::size_t end = std::min(pairs.size(), pos + per);
    std::vector<std::size_t> rows;
    std::vector<float> targets;
    for (std::size_t p = pos; p < end; ++p) rows.push_back(pairs[p].a);
    for (std::size_t p = pos; p < end; ++p) {
      rows.push_back(pairs[p].b);
      targets.push_back(pairs[p].target);
    }
    pos = end;
    auto tb = make_task_batch(train, rows, o.pad_id);
    tb.targets = std::move(targets);
    all.zero_grad();
    loss_value = model.forward_backward(tb, drop_gen);
    if (o.max_grad_norm > 0) clip_grad_norm(set, o.max_grad_norm);
    opt.step(set, schedule.lr_at(step));
    if (o.show_progress) bar.update(step + 1, loss_value, static_cast<long>(rows.size()));
    if (o.on_step) o.on_step(step + 1);
  }
  if (o.show_progress) bar.finish();
  all.zero_grad();
  res.steps = total;
  res.seconds = bar.seconds();
  res.examples_per_second = res.seconds > 0 ? double(bar.examples()) / res.seconds : 0.0;
  res.final_loss = loss_value;
  return res;
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_TRAIN_TRAINER
#include "../detail/instances.hpp"

#endif  // PEFT_TRAIN_TRAINER_HPP
