// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TRAIN_SELF_TRAINING_HPP
#define PEFT_TRAIN_SELF_TRAINING_HPP

/// @file self_training.hpp
/// LiST: lite self-training (Wang et al., arXiv 2110.06274; reference code microsoft/LiST,
/// `src/trainer.py`). A teacher and a student, each a policy plus a head, share one frozen
/// `const` encoder:
///
///  - phase 0: the first model is tuned on the few labelled examples (prompt head for masked-LM
///    encoders, classification head otherwise);
///  - each session: teacher <- frozen copy of the current model; student <- a freshly
///    initialised model (`re_init`, or a copy of the teacher when `re_init` is off); the
///    student trains `student_steps` steps on unlabelled batches against the teacher's soft
///    labels, `sum_i w_i KL(q_i || p_i)`; during the first `warmup_fraction` of those steps the
///    weights are uniform (knowledge-distillation warm-up), afterwards they come from meta
///    re-weighting (`meta_reweight`); then the student fine-tunes on the labelled data
///    (`finetune_epochs`) with the same optimizer and schedule, and becomes the next teacher.
///
/// Meta re-weighting (learning to re-weight, one look-ahead SGD step of size alpha on a labelled
/// batch, derivative taken at w = 0): `w_i = alpha max(0, <grad L_meta, grad l_i>) /
/// (alpha sum_j max(0, <grad L_meta, grad l_j>) + 1e-6)`, both gradients in eval mode over the
/// student's trainable parameters. The scores `<grad L_meta, grad l_i>` come from per-example
/// gradients or from a central-difference directional derivative of `l_i` along
/// `grad L_meta` (two eval forwards); both are tested against the finite-difference
/// derivative of the look-ahead loss.
///
/// One departure that changes no result: the teacher is frozen and runs in eval mode for a
/// whole session, so its soft labels for the unlabelled pool are computed once per session
/// instead of once per batch (the reference recomputes the same values on the fly).
///
/// Sharded over ranks (`list_options::comm`): the teacher's fit is data-parallel; the pool's
/// soft labels are computed in N slices and summed into every rank; each pseudo-label and
/// fine-tune batch is split evenly across the ranks, and meta re-weighting scores only this
/// rank's rows after rank 0 broadcasts grad L_meta, with one two-value allreduce for the
/// normaliser; one allreduce of the gradients ends every step. Batch sizes stay global, so N
/// ranks reproduce one process with a `single_process` communicator (to rounding).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../error.hpp"
#include "../optim/adam.hpp"
#include "../optim/clip.hpp"
#include "../optim/schedule.hpp"
#include "../ops/losses.hpp"
#include "progress.hpp"
#include "trainer.hpp"

namespace peft {

/// How `meta_reweight` gets `<grad L_meta, grad l_i>`.
enum class reweight_method {
  per_example,  ///< one eval forward/backward per unlabelled example, dotted with grad L_meta
  directional   ///< (l_i(theta + h u) - l_i(theta - h u)) / 2h * |grad L_meta|, u = grad L_meta / |.|
};

inline const char* to_string(reweight_method m) {
  return m == reweight_method::per_example ? "per-example" : "directional";
}
inline reweight_method parse_reweight_method(const std::string& s) {
  if (s == "per-example" || s == "per_example") return reweight_method::per_example;
  if (s == "directional") return reweight_method::directional;
  throw invalid_argument("reweight method expected 'per-example' or 'directional', got '" + s + "'");
}

/// Settings of the meta re-weighting step (reference: `src/trainer.py:meta()`).
struct meta_options {
  double alpha = 5e-6;  ///< look-ahead SGD step (`learning_rate`); matters only through `eps`
  double eps = 1e-6;    ///< normaliser's epsilon
  reweight_method method = reweight_method::directional;  // the faster; both are tested
  double step = 0;      ///< directional: h along the unit direction; 0: 1e-2 (float), 1e-5 (double)
};

/// Result of one re-weighting: `scores[i] = <grad L_meta, grad l_i>`, `weights` as above.
struct meta_weights {
  std::vector<double> scores;
  std::vector<double> weights;
  double meta_loss = 0;
  index kept = 0;  ///< examples with a positive weight
};

/// Soft labels `softmax(logits)` of `model` (eval mode) for every example of `data`, in order.
template <typename Model>
matrix<typename Model::scalar_type> predict_probabilities(const Model& model, const std::vector<encoded_example>& data,
                                                          index batch_size, std::int32_t pad_id) {
  using S = typename Model::scalar_type;
  std::vector<std::size_t> order(data.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return data[a].ids.size() < data[b].ids.size(); });
  matrix<S> out;
  for (std::size_t s = 0; s < order.size(); s += static_cast<std::size_t>(batch_size)) {
    const std::vector<std::size_t> rows(order.begin() + static_cast<std::ptrdiff_t>(s),
                                        order.begin() + static_cast<std::ptrdiff_t>(
                                                            std::min(order.size(), s + std::size_t(batch_size))));
    const matrix<S> p = softmax(model.predict(make_task_batch(data, rows, pad_id)));
    if (out.size() == 0) out.resize(static_cast<index>(data.size()), p.cols());
    for (std::size_t i = 0; i < rows.size(); ++i) out.row(static_cast<index>(rows[i])) = p.row(static_cast<index>(i));
  }
  return out;
}

/// Meta re-weighting of one unlabelled batch (LiST §1.4 of docs/METHODS.md).
///
/// With `comm`, `rows` and `q` are this rank's part of the batch: rank 0 computes grad L_meta
/// and broadcasts it, each rank scores its rows, and the normaliser and `kept` are summed over
/// the ranks, so every rank's weights are those of the whole batch.
///
/// @param model    the student (its parameter values are restored exactly on return)
/// @param pool     unlabelled examples; `rows` the batch; `q` the teacher's probabilities, one row per batch row
/// @param labelled labelled examples; `meta_rows` the look-ahead batch (hard gold labels)
/// @throws invalid_argument for empty batches, a `q` of the wrong shape or a meta example without a label
template <typename Model>
meta_weights meta_reweight(Model& model, const std::vector<encoded_example>& pool, const std::vector<std::size_t>& rows,
                           const matrix<typename Model::scalar_type>& q, const std::vector<encoded_example>& labelled,
                           const std::vector<std::size_t>& meta_rows, const meta_options& o, std::int32_t pad_id,
                           collective* comm = nullptr) {
  using S = typename Model::scalar_type;
  const char* where = "meta_reweight";
  if (rows.empty() || meta_rows.empty()) throw invalid_argument(std::string(where) + ": empty batch");
  if (q.rows() != static_cast<index>(rows.size()))
    throw invalid_argument(std::string(where) + ": teacher rows expected " + std::to_string(rows.size()) + ", got " +
                           std::to_string(q.rows()));
  for (auto r : meta_rows)
    if (labelled.at(r).label < 0)
      throw invalid_argument(std::string(where) + ": meta example " + std::to_string(r) + " has no label");
  if (!(o.alpha > 0) || !(o.eps >= 0)) throw invalid_argument(std::string(where) + ": alpha expected > 0 and eps >= 0");

  auto set = model.parameters();
  rng unused(0);  // eval mode: no dropout is drawn
  // grad L_meta at the current parameters, eval mode (the reference calls model.eval()).
  const task_batch mb = make_task_batch(labelled, meta_rows, pad_id);
  set.zero_grad();
  meta_weights res;
  vector<S> g;
  if (!comm || comm->rank() == 0) {
    res.meta_loss = model.forward_backward(mb, mode::eval, unused, [&](const matrix<S>& z, matrix<S>& dz) {
      return static_cast<double>(cross_entropy(z, mb.labels, dz));
    });
    g = set.get_flat_grad();
  } else {
    g.resize(set.size());
  }
  if (comm) {
    comm->broadcast(g.data(), static_cast<std::size_t>(g.size()) * sizeof(S), 0);
    comm->broadcast(&res.meta_loss, sizeof(double), 0);
  }
  const std::size_t n = rows.size();
  res.scores.assign(n, 0.0);

  if (o.method == reweight_method::per_example) {
    const vector<double> g_meta = g.template cast<double>();
    for (std::size_t i = 0; i < n; ++i) {
      const task_batch one = make_task_batch(pool, {rows[i]}, pad_id);
      const matrix<S> qi = q.row(static_cast<index>(i));
      const vector<S> one_weight = vector<S>::Ones(1);
      set.zero_grad();
      model.forward_backward(one, mode::eval, unused, [&](const matrix<S>& z, matrix<S>& dz) {
        return static_cast<double>(kl_div(z, qi, one_weight, dz));
      });
      res.scores[i] = g_meta.dot(set.get_flat_grad().template cast<double>());
    }
    set.zero_grad();
  } else {
    const double norm = static_cast<double>(g.template cast<double>().norm());
    if (norm > 0) {
      const double h = o.step > 0 ? o.step : (std::is_same_v<S, float> ? 1e-2 : 1e-5);
      const vector<S> theta = set.get_flat();
      const vector<S> dir = (g.template cast<double>() / norm).template cast<S>();
      const task_batch ub = make_task_batch(pool, rows, pad_id);
      auto losses_at = [&](double sign) {
        set.set_flat(theta + static_cast<S>(sign * h) * dir);
        return kl_div_per_example(model.predict(ub), q);
      };
      const vector<S> plus = losses_at(+1.0), minus = losses_at(-1.0);
      set.set_flat(theta);  // restores the exact values
      for (std::size_t i = 0; i < n; ++i) {
        const auto k = static_cast<index>(i);
        res.scores[i] = norm * (static_cast<double>(plus[k]) - static_cast<double>(minus[k])) / (2 * h);
      }
    }
    set.zero_grad();
  }
  // w~_i = max(0, -dL_meta/dw_i) = alpha max(0, score_i); w_i = w~_i / (sum_j w~_j + eps).
  double total = 0;
  res.weights.assign(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    res.weights[i] = o.alpha * std::max(0.0, res.scores[i]);
    total += res.weights[i];
  }
  if (comm) {
    double sums[2] = {total, 0.0};
    for (auto w : res.weights) sums[1] += w > 0;
    comm->allreduce_sum(sums, 2);
    total = sums[0];
    res.kept = static_cast<index>(sums[1]);
    for (auto& w : res.weights) w /= total + o.eps;
    return res;
  }
  for (auto& w : res.weights) {
    w /= total + o.eps;
    res.kept += w > 0;
  }
  return res;
}

/// LiST settings; the defaults are the reference's (`run.sh` + `src/run.py`, K = 30).
struct list_options {
  // phase 0: the first teacher
  int teacher_epochs = 50;      ///< `self_training_start_epoch`
  double teacher_lr = 5e-6;     ///< `learning_rate`
  double teacher_head_lr = 0;   ///< 0: teacher_lr (the reference's LM head shares it)
  /// peft's few-shot recipes for phase 0 (not in the reference; off by default): LP-FT's probe
  /// (`fit_options::probe_epochs`: the head alone first; with `teacher_epochs` = 0 only the
  /// head trains) and SetFit's contrastive pairs on the teacher's policy before its head
  /// (`fit_options::contrastive`; a classification head only).
  int teacher_probe_epochs = 0;
  contrastive_options teacher_pairs;
  // sessions
  int sessions = 6;             ///< `self_training_session`
  long student_steps = 1000;    ///< `update_teacher_steps`: pseudo-label steps per session
  double warmup_fraction = 0.6; ///< `meta_st_warmup`: share of those steps with uniform weights
  int finetune_epochs = 50;     ///< `finetune_teacher_epoch`
  double student_lr = 1e-4;     ///< `semi_learning_rate`
  double student_head_lr = 0;   ///< 0: student_lr
  double weight_decay = 0;      ///< `semi_weight_decay` (phase 0 too)
  double max_grad_norm = 1.0;   ///< HF default, every step
  index labelled_batch = 4;     ///< `per_device_train_batch_size`
  index unlabelled_batch = 16;  ///< `un_train_batch_size`
  index meta_batch = 4;         ///< `meta_train_batch_size`
  bool reweight = true;         ///< false: KD only (uniform weights in every pseudo-label step)
  bool re_init = true;          ///< false: the student starts from the teacher
  meta_options meta;
  std::uint64_t seed = 1;
  std::int32_t pad_id = 0;
  bool show_progress = true;
  std::FILE* progress_out = stdout;
  /// Shards the run over the ranks of `comm` (see the file comment); null: one process.
  /// `labelled_batch` and `unlabelled_batch` are global and must be multiples of the rank count.
  collective* comm = nullptr;

  void validate() const {
    auto bad = [](const std::string& what) { throw invalid_argument("list_options: " + what); };
    if (teacher_epochs < 0) bad("teacher_epochs expected >= 0, got " + std::to_string(teacher_epochs));
    if (teacher_probe_epochs < 0) bad("teacher_probe_epochs expected >= 0, got " + std::to_string(teacher_probe_epochs));
    if (sessions < 0) bad("sessions expected >= 0, got " + std::to_string(sessions));
    if (student_steps < 0) bad("student_steps expected >= 0, got " + std::to_string(student_steps));
    if (finetune_epochs < 0) bad("finetune_epochs expected >= 0, got " + std::to_string(finetune_epochs));
    if (!(warmup_fraction >= 0 && warmup_fraction <= 1))
      bad("warmup_fraction expected in [0, 1], got " + std::to_string(warmup_fraction));
    if (!(teacher_lr > 0) || !(student_lr > 0)) bad("learning rates expected > 0");
    if (teacher_head_lr < 0 || student_head_lr < 0) bad("head learning rates expected >= 0");
    if (labelled_batch < 1 || unlabelled_batch < 1 || meta_batch < 1) bad("batch sizes expected >= 1");
    if (comm && (labelled_batch % comm->size() != 0 || unlabelled_batch % comm->size() != 0))
      bad("labelled and unlabelled batch sizes expected multiples of the " + std::to_string(comm->size()) +
          " ranks, got " + std::to_string(labelled_batch) + " and " + std::to_string(unlabelled_batch));
  }
};

/// Phases reported to the progress display and to `on_step`.
enum class list_phase { teacher, warmup, reweighted, finetune };
inline const char* to_string(list_phase p) {
  switch (p) {
    case list_phase::teacher: return "teacher";
    case list_phase::warmup: return "warm-up";
    case list_phase::reweighted: return "re-weighted";
    case list_phase::finetune: return "fine-tune";
  }
  return "?";
}

/// One optimizer step of a session, as seen by `self_trainer::on_step`.
struct list_step {
  int session = 0;  ///< 1-based
  list_phase phase = list_phase::warmup;
  long step = 0;    ///< within the session, 1-based
  double loss = 0;
  double kept = 1;  ///< share of the batch's pseudo-labels with a positive weight
};

/// What one session did.
struct list_session_report {
  int session = 0;
  double pseudo_label_accuracy = -1;  ///< teacher argmax vs the pool's labels, -1 when unknown
  double mean_kept = 1;               ///< mean kept share over the re-weighted steps
  double mean_weight_sum = 1;         ///< mean sum of weights over the re-weighted steps
  double kept_accuracy = -1;          ///< weight-averaged pseudo-label accuracy of re-weighted steps
  double final_loss = 0;
  double seconds = 0;
  double eval_accuracy = -1;          ///< the session's student on the evaluation set, if given
};

struct list_result {
  double teacher_eval_accuracy = -1;  ///< phase-0 model on the evaluation set, if given
  std::vector<list_session_report> sessions;
  double seconds = 0;
};

/// LiST self-training of one task over a shared frozen encoder.
///
/// @tparam Policy any policy type (LiST adapters by default in peft-train); copyable
/// @tparam Head   `classification_head` or `prompt_head`
template <typename Arch, typename Scalar, typename Policy, typename Head>
class self_trainer {
public:
  using model_type = task_model<Arch, Scalar, Policy, Head>;
  using policy_factory = std::function<Policy(std::uint64_t seed)>;
  using head_factory = std::function<Head(std::uint64_t seed)>;

  /// @param enc the frozen encoder; held by reference (it must outlive the trainer), never copied
  self_trainer(const encoder<Arch, Scalar>& enc, policy_factory make_policy, head_factory make_head,
               list_options o);

  const list_options& options() const noexcept { return m_opt; }
  /// Replaces the settings (validated); takes effect at the next phase or session.
  void set_options(const list_options& o) {
    o.validate();
    m_opt = o;
  }
  /// The current model (the final student after `run`).
  model_type student() { return model_type(*m_enc, *m_policy, *m_head); }
  /// The frozen teacher of the current session; throws before the first session.
  model_type teacher() {
    if (!m_teacher_policy) throw invalid_argument("self_trainer::teacher: no session has started");
    return model_type(*m_enc, *m_teacher_policy, *m_teacher_head);
  }
  bool has_teacher() const noexcept { return m_teacher_policy.has_value(); }
  Policy& student_policy() noexcept { return *m_policy; }
  Head& student_head() noexcept { return *m_head; }

  /// Called after every student step (tests, custom logging).
  std::function<void(const list_step&)> on_step;

  /// Phase 0: tunes the current model on the labelled examples.
  fit_result train_teacher(const std::vector<encoded_example>& labelled);

  /// One session (`session` is 1-based): teacher <- current model, new student, pseudo-label
  /// steps, labelled fine-tuning. `eval` (may be empty) is only evaluated for the report.
  list_session_report run_session(int session, const std::vector<encoded_example>& labelled,
                                  const std::vector<encoded_example>& pool,
                                  const std::vector<encoded_example>& eval = {});

  /// Phase 0 and every session. `pool` must not contain `labelled`'s examples (the caller's
  /// split); `eval` (may be empty) is only evaluated for the reports.
  list_result run(const std::vector<encoded_example>& labelled, const std::vector<encoded_example>& pool,
                  const std::vector<encoded_example>& eval = {});

private:
  /// Endless shuffled batches over [0, n), reshuffled after each pass (a cycling data loader).
  class cycling_sampler {
  public:
    cycling_sampler(std::size_t n, std::size_t batch, std::uint64_t seed) : m_n(n), m_batch(batch), m_gen(seed) {}
    std::vector<std::size_t> next() {
      std::vector<std::size_t> out;
      while (out.size() < std::min(m_batch, m_n)) {
        if (m_pos >= m_order.size()) reshuffle();
        out.push_back(m_order[m_pos++]);
      }
      return out;
    }

  private:
    void reshuffle() {
      m_order.resize(m_n);
      for (std::size_t i = 0; i < m_n; ++i) m_order[i] = i;
      for (std::size_t i = m_n; i > 1; --i) std::swap(m_order[i - 1], m_order[m_gen.below(i)]);
      m_pos = 0;
    }
    std::size_t m_n, m_batch;
    rng m_gen;
    std::vector<std::size_t> m_order;
    std::size_t m_pos = 0;
  };

  bool lead() const noexcept { return !m_opt.comm || m_opt.comm->rank() == 0; }

  void check_labelled(const std::vector<encoded_example>& labelled) const {
    if (labelled.empty()) throw invalid_argument("self_trainer: the labelled set is empty");
    for (std::size_t i = 0; i < labelled.size(); ++i)
      if (labelled[i].label < 0)
        throw invalid_argument("self_trainer: labelled example " + std::to_string(i) + " has no label");
  }

  void finish_step(parameter_set<Scalar>& set, adamw<Scalar>& opt, const lr_schedule& schedule, long& step, double loss,
                   list_phase phase, int session, double kept, long examples, progress& bar) {
    if (m_opt.max_grad_norm > 0) clip_grad_norm(set, m_opt.max_grad_norm);
    opt.step(set, schedule.lr_at(step));
    ++step;
    if (m_opt.show_progress && lead()) {
      char k[32];
      std::snprintf(k, sizeof k, "%.0f%%", 100 * kept);
      bar.update(step, loss, examples, {{"phase", to_string(phase)}, {"kept", k}});
    }
    if (on_step) on_step({session, phase, step, loss, kept});
  }

  const encoder<Arch, Scalar>* m_enc;
  policy_factory m_make_policy;
  head_factory m_make_head;
  list_options m_opt;
  std::optional<Policy> m_policy, m_teacher_policy;
  std::optional<Head> m_head, m_teacher_head;
};

template <typename Arch, typename Scalar, typename Policy, typename Head>
self_trainer<Arch, Scalar, Policy, Head>::self_trainer(const encoder<Arch, Scalar>& enc,
                                                       policy_factory make_policy, head_factory make_head,
                                                       list_options o)
    : m_enc(&enc), m_make_policy(std::move(make_policy)), m_make_head(std::move(make_head)), m_opt(o) {
  m_opt.validate();
  if (!m_make_policy || !m_make_head)
    throw invalid_argument("self_trainer: policy and head factories are required");
  m_policy.emplace(m_make_policy(m_opt.seed));
  m_head.emplace(m_make_head(m_opt.seed));
}

template <typename Arch, typename Scalar, typename Policy, typename Head>
fit_result self_trainer<Arch, Scalar, Policy, Head>::train_teacher(
    const std::vector<encoded_example>& labelled) {
  check_labelled(labelled);
  fit_options f;
  f.epochs = std::max(1, m_opt.teacher_epochs);
  f.batch_size = m_opt.labelled_batch / (m_opt.comm ? m_opt.comm->size() : 1);
  f.comm = m_opt.comm;
  f.lr = m_opt.teacher_lr;
  f.head_lr = m_opt.teacher_head_lr;
  f.weight_decay = m_opt.weight_decay;
  f.max_grad_norm = m_opt.max_grad_norm;
  f.seed = m_opt.seed;
  f.pad_id = m_opt.pad_id;
  f.label = "LiST teacher";
  f.show_progress = m_opt.show_progress && lead();
  f.progress_out = m_opt.progress_out;
  f.probe_epochs = m_opt.teacher_probe_epochs;
  f.contrastive = m_opt.teacher_pairs;
  if (m_opt.teacher_pairs.pairs_per_example > 0) {
    if constexpr (std::is_same_v<Head, classification_head<Scalar>>) {
      fit_contrastive(*m_enc, *m_policy, m_head->pooling(), labelled, f);
    } else {
      throw invalid_argument("self_trainer: contrastive pairs for the teacher need a classification head");
    }
  }
  if (m_opt.teacher_epochs == 0 && m_opt.teacher_probe_epochs == 0) return {};
  f.epochs = m_opt.teacher_epochs;
  auto model = student();
  return fit(model, labelled, {}, f);
}

template <typename Arch, typename Scalar, typename Policy, typename Head>
list_session_report self_trainer<Arch, Scalar, Policy, Head>::run_session(
    int session, const std::vector<encoded_example>& labelled, const std::vector<encoded_example>& pool,
    const std::vector<encoded_example>& eval) {
  check_labelled(labelled);
  if (pool.empty()) throw invalid_argument("self_trainer: the unlabelled pool is empty");
  list_session_report rep;
  rep.session = session;
  // Teacher <- frozen copy of the current model; student <- fresh (re_init) or a copy.
  m_teacher_policy.emplace(*m_policy);
  m_teacher_head.emplace(*m_head);
  if (m_opt.re_init) {
    const std::uint64_t s = m_opt.seed + 1000003ULL * static_cast<std::uint64_t>(session);
    m_policy.emplace(m_make_policy(s));
    m_head.emplace(m_make_head(s));
  }
  auto teacher_model = teacher();
  collective* comm = m_opt.comm;
  matrix<Scalar> q_all;
  if (!comm) {
    q_all = predict_probabilities(teacher_model, pool, 64, m_opt.pad_id);
  } else {
    // Each rank labels a slice of the pool; the sum over ranks fills every row everywhere.
    std::vector<std::size_t> all(pool.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    const auto mine = detail::rank_share(all, comm);
    std::vector<encoded_example> slice;
    for (auto i : mine) slice.push_back(pool[i]);
    const index classes = teacher_model.head().num_classes();
    q_all = matrix<Scalar>::Zero(static_cast<index>(pool.size()), classes);
    if (!slice.empty()) {
      const matrix<Scalar> q_mine = predict_probabilities(teacher_model, slice, 64, m_opt.pad_id);
      for (std::size_t k = 0; k < mine.size(); ++k)
        q_all.row(static_cast<index>(mine[k])) = q_mine.row(static_cast<index>(k));
    }
    comm->allreduce_sum(q_all.data(), static_cast<std::size_t>(q_all.size()));
  }
  std::vector<int> pseudo(pool.size());
  {
    index right = 0, known = 0;
    for (std::size_t i = 0; i < pool.size(); ++i) {
      index c = 0;
      q_all.row(static_cast<index>(i)).maxCoeff(&c);
      pseudo[i] = static_cast<int>(c);
      if (pool[i].label >= 0) {
        ++known;
        right += c == pool[i].label;
      }
    }
    if (known > 0) rep.pseudo_label_accuracy = double(right) / double(known);
  }

  auto model = student();
  auto set = model.parameters();
  if (set.size() == 0) throw invalid_argument("self_trainer: the student has no trainable parameters");
  const std::size_t nl = labelled.size();
  const long ft_per_epoch =
      static_cast<long>((nl + std::size_t(m_opt.labelled_batch) - 1) / std::size_t(m_opt.labelled_batch));
  const long ft_steps = ft_per_epoch * m_opt.finetune_epochs;
  const long total = m_opt.student_steps + ft_steps;
  const long warm = static_cast<long>(std::llround(m_opt.warmup_fraction * double(m_opt.student_steps)));
  adamw_hyper hyper;
  hyper.lr = m_opt.student_lr;
  hyper.weight_decay = m_opt.weight_decay;
  adamw<Scalar> opt(hyper);
  opt.init(set);
  if (m_opt.student_head_lr > 0)
    opt.set_store_lr_scale(static_cast<index>(set.num_stores()) - 1,
                           m_opt.student_head_lr / m_opt.student_lr);
  const auto schedule = lr_schedule::linear(m_opt.student_lr, 0, std::max<long>(total, 1));
  const std::uint64_t base = m_opt.seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(session);
  cycling_sampler pool_rows(pool.size(), std::size_t(m_opt.unlabelled_batch), base ^ 0x1111);
  cycling_sampler meta_rows(nl, std::size_t(m_opt.meta_batch), base ^ 0x2222);
  rng drop_gen(base ^ 0x3333);
  progress bar("LiST session " + std::to_string(session) + "/" + std::to_string(m_opt.sessions), total,
               m_opt.progress_out, std::max<long>(1, total / 10));
  vector<Scalar> flat;  // the per-step gradient buffer of a sharded run

  double kept_sum = 0, wsum_sum = 0, kept_acc_num = 0, kept_acc_den = 0;
  long reweighted = 0;
  long step = 0;
  double loss = 0;
  for (long s = 0; s < m_opt.student_steps; ++s) {
    const auto batch_rows = pool_rows.next();
    const auto rows = detail::rank_share(batch_rows, comm);  // all of them without comm
    const index b = static_cast<index>(rows.size());
    const double b_all = double(batch_rows.size());
    matrix<Scalar> q(b, q_all.cols());
    for (index i = 0; i < b; ++i) q.row(i) = q_all.row(static_cast<index>(rows[static_cast<std::size_t>(i)]));
    vector<Scalar> w(b);
    list_phase phase = list_phase::warmup;
    double kept = 1;
    if (!m_opt.reweight || s < warm) {
      w.setConstant(static_cast<Scalar>(1.0 / (b_all + 1e-5)));  // confidence mask at threshold 0
    } else if (s == warm) {
      w.setConstant(static_cast<Scalar>(1.0 / b_all));  // the reference's `w = None`: a plain mean
    } else {
      phase = list_phase::reweighted;
      const auto mw =
          meta_reweight(model, pool, rows, q, labelled, meta_rows.next(), m_opt.meta, m_opt.pad_id, comm);
      double wsum = 0;
      for (index i = 0; i < b; ++i) {
        const double wi = mw.weights[static_cast<std::size_t>(i)];
        w[i] = static_cast<Scalar>(wi);
        wsum += wi;
        const auto& ex = pool[rows[static_cast<std::size_t>(i)]];
        if (ex.label >= 0) {
          kept_acc_den += wi;
          kept_acc_num += wi * (pseudo[rows[static_cast<std::size_t>(i)]] == ex.label ? 1.0 : 0.0);
        }
      }
      kept = double(mw.kept) / b_all;
      kept_sum += kept;
      wsum_sum += wsum;
      ++reweighted;
    }
    set.zero_grad();
    if (!comm) {
      const task_batch tb = make_task_batch(pool, rows, m_opt.pad_id);
      loss =
          model.forward_backward(tb, mode::train, drop_gen, [&](const matrix<Scalar>& z, matrix<Scalar>& dz) {
            return static_cast<double>(kl_div(z, q, w, dz));
          });
    } else {
      // The weighted KL is a sum over the batch: the ranks' sums add up to it.
      rng step_gen(drop_gen.engine()());
      const task_batch tb = detail::keyed_batch(pool, batch_rows, rows, m_opt.pad_id, step_gen);
      loss =
          model.forward_backward(tb, mode::train, step_gen, [&](const matrix<Scalar>& z, matrix<Scalar>& dz) {
            return static_cast<double>(kl_div(z, q, w, dz));
          });
      loss = detail::allreduce_gradients(set, *comm, 1.0, loss, flat);
    }
    finish_step(set, opt, schedule, step, loss, phase, session, kept, long(b_all), bar);
  }
  // Fine-tune phase: labelled data only, the same optimizer and schedule.
  rng order_gen(base ^ 0x4444);
  std::vector<std::size_t> order(nl);
  for (std::size_t i = 0; i < nl; ++i) order[i] = i;
  for (int e = 0; e < m_opt.finetune_epochs; ++e) {
    for (std::size_t i = nl; i > 1; --i) std::swap(order[i - 1], order[order_gen.below(i)]);
    for (std::size_t s = 0; s < nl; s += std::size_t(m_opt.labelled_batch)) {
      const std::vector<std::size_t> rows(
          order.begin() + static_cast<std::ptrdiff_t>(s),
          order.begin() + static_cast<std::ptrdiff_t>(std::min(nl, s + std::size_t(m_opt.labelled_batch))));
      set.zero_grad();
      if (!comm) {
        const task_batch tb = make_task_batch(labelled, rows, m_opt.pad_id);
        loss = model.forward_backward(tb, mode::train, drop_gen,
                                      [&](const matrix<Scalar>& z, matrix<Scalar>& dz) {
                                        return static_cast<double>(cross_entropy(z, tb.labels, dz));
                                      });
      } else {
        rng step_gen(drop_gen.engine()());
        const auto mine = detail::rank_share(rows, comm);
        double local = 0;
        if (!mine.empty()) {
          const task_batch tb =
              detail::keyed_batch(labelled, rows, mine, m_opt.pad_id, step_gen, std::uint64_t(1) << 62);
          local = model.forward_backward(tb, mode::train, step_gen,
                                         [&](const matrix<Scalar>& z, matrix<Scalar>& dz) {
                                           return static_cast<double>(cross_entropy(z, tb.labels, dz));
                                         });
        }
        loss =
            detail::allreduce_gradients(set, *comm, double(mine.size()) / double(rows.size()), local, flat);
      }
      finish_step(set, opt, schedule, step, loss, list_phase::finetune, session, 1.0, long(rows.size()), bar);
    }
  }
  if (comm) {  // the report's sums over this rank's rows, over all rows
    double sums[3] = {kept_acc_num, kept_acc_den, wsum_sum};
    comm->allreduce_sum(sums, 3);
    kept_acc_num = sums[0];
    kept_acc_den = sums[1];
    wsum_sum = sums[2];
  }
  if (m_opt.show_progress && lead()) bar.finish();
  rep.final_loss = loss;
  rep.seconds = bar.seconds();
  if (reweighted > 0) {
    rep.mean_kept = kept_sum / double(reweighted);
    rep.mean_weight_sum = wsum_sum / double(reweighted);
    if (kept_acc_den > 0) rep.kept_accuracy = kept_acc_num / kept_acc_den;
  }
  if (!eval.empty()) rep.eval_accuracy = evaluate(model, eval, 64, m_opt.pad_id).accuracy;
  return rep;
}

template <typename Arch, typename Scalar, typename Policy, typename Head>
list_result self_trainer<Arch, Scalar, Policy, Head>::run(const std::vector<encoded_example>& labelled,
                                                          const std::vector<encoded_example>& pool,
                                                          const std::vector<encoded_example>& eval) {
  list_result r;
  const auto t0 = std::chrono::steady_clock::now();
  train_teacher(labelled);
  if (!eval.empty()) r.teacher_eval_accuracy = evaluate(student(), eval, 64, m_opt.pad_id).accuracy;
  for (int s = 1; s <= m_opt.sessions; ++s) r.sessions.push_back(run_session(s, labelled, pool, eval));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_TRAIN_SELF_TRAINING
#include "../detail/instances.hpp"

#endif  // PEFT_TRAIN_SELF_TRAINING_HPP
