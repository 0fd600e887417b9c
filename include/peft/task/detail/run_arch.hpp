// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_DETAIL_RUN_ARCH_HPP
#define PEFT_TASK_DETAIL_RUN_ARCH_HPP

/// @file run_arch.hpp
/// run.hpp's entry points for one architecture, as templates over it: what run_impl.hpp calls
/// once the architecture is known. A program that compiles them once (PEFT_TASK_SEPARATE)
/// instantiates each architecture in a file of its own with PEFT_TASK_RUN_INSTANCES, so the
/// three compile in parallel (src/instances/task_<arch>.cpp).

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../io/mpmp_library.hpp"
#include "../../model/encoder.hpp"
#include "../heads.hpp"
#include "../run.hpp"

namespace peft::task::detail {

/// Architectures whose checkpoints may carry a masked-LM head, so the prompt head applies
/// (BERT, RoBERTa; USE-lite has none).
template <typename Arch>
inline constexpr bool has_mlm_arch = !std::is_same_v<Arch, peft::use_lite>;

template <typename Model>
void fill_predictions(const Model& model, const std::vector<peft::encoded_example>& data, std::int32_t pad,
                      run_result& r) {
  r.predictions = peft::predict_classes(model, data, 64, pad, &r.probabilities);
  std::vector<int> labels;
  bool labelled = !data.empty();
  for (const auto& e : data) {
    labels.push_back(e.label);
    labelled = labelled && e.label >= 0;
  }
  if (labelled) {
    r.accuracy = peft::accuracy(r.predictions, labels);
    r.macro_f1 = peft::macro_f1(r.predictions, labels);
  }
}

/// Fills @p r with the predictions of @p model on @p data, and their metrics when every row is
/// labelled, as @p o's kind reads the head's output.
template <typename Model>
void fill_outputs(const Model& model, const std::vector<peft::encoded_example>& data, const peft::task_objective& o,
                  std::int32_t pad, run_result& r) {
  using peft::task_kind;
  bool labelled = !data.empty();
  for (const auto& e : data) labelled = labelled && e.labelled();
  if (o.kind == task_kind::classification && !o.choices) {
    fill_predictions(model, data, pad, r);
    if (labelled) r.metrics = {{"accuracy", r.accuracy}, {"macro_f1", r.macro_f1}};
    return;
  }
  const auto outs = peft::predict_outputs(model, data, 64, pad);
  if (labelled) r.metrics = peft::score_outputs(o, data, outs).metrics;
  if (o.choices) {  // the option each row's span head points at, and the options' softmax
    for (auto& p : peft::choice_scores(data, outs)) {
      r.predictions.push_back(static_cast<peft::index>(peft::detail::argmax_of(p.data(), static_cast<peft::index>(p.size()))));
      const double top = *std::max_element(p.begin(), p.end());
      double sum = 0;
      for (auto& v : p) sum += (v = std::exp(v - top));
      for (auto& v : p) v /= sum;
      r.probabilities.push_back(std::move(p));
    }
    if (labelled) {
      r.accuracy = r.metrics.at(0).second;
      r.macro_f1 = r.metrics.at(1).second;
    }
    return;
  }
  switch (o.kind) {
    case task_kind::classification: break;
    case task_kind::regression:
      for (const auto& z : outs) r.probabilities.push_back(peft::detail::row_of(z, 0));
      break;
    case task_kind::multi_label: r.probabilities = peft::label_probabilities(outs); break;
    case task_kind::token_classification:
      for (std::size_t i = 0; i < data.size(); ++i) {
        std::vector<std::string> tags;
        const auto& w = data[i].word_ids;
        for (std::size_t t = 0; t < w.size(); ++t) {
          if (w[t] < 0 || (t > 0 && w[t - 1] == w[t])) continue;  // a word's first piece only
          const auto row = peft::detail::row_of(outs[i], static_cast<peft::index>(t));
          tags.push_back(peft::detail::tag_name(o.labels, peft::detail::argmax_of(row.data(), static_cast<peft::index>(row.size()))));
        }
        r.word_tags.push_back(std::move(tags));
      }
      break;
    case task_kind::extractive_qa:
      for (const auto& p : peft::qa_predictions(o, data, outs)) {
        r.answers.push_back(p.answer.text);
        r.answer_ids.push_back(p.example->id);
      }
      break;
  }
}

/// A fresh prompt's "TEXT" or "SAMPLE_VOCAB" initialisation: rows of the model's word
/// embeddings (the init text tokenised with its special tokens, as Hugging Face PEFT does).
inline void init_prompt(const model_files& m, peft::prompt_tuning<float>& p, std::uint64_t seed) {
  std::vector<std::int32_t> text;
  if (p.config().prompt_tuning_init == "TEXT") {
    const auto& t = p.config().prompt_tuning_init_text;
    text = m.tokenizer ? m.tokenizer->encode(t, m.weights->config.max_sequence_length()) : m.unigram->encode(t);
  }
  const auto& E = m.weights->word_embeddings;
  const auto ids = p.init_ids(text, E.rows(), seed);
  if (ids.empty()) return;
  peft::matrix<float> rows(static_cast<peft::index>(ids.size()), E.cols());
  for (std::size_t i = 0; i < ids.size(); ++i) rows.row(static_cast<peft::index>(i)) = E.row(ids[i]);
  p.init_from_embeddings(rows);
}

/// Calls f(encoder, policy, head) for architecture Arch, the task's policy (an any_policy:
/// fresh for the method, or loaded from @p load_dir) and the task's kind of head.
template <typename Arch, typename F>
run_result dispatch(const model_files& m, const task_settings& s, peft::index classes,
                    const std::vector<std::int32_t>& label_words, std::uint64_t seed,
                    const std::string& load_dir, F&& f) {
  peft::encoder<Arch, float> enc(m.weights);
  auto policy = task_policy(s.method, enc.shape(), seed, load_dir, s.policy_options);
  if (auto* prompt = policy.template get_if<peft::prompt_tuning<float>>(); prompt && load_dir.empty())
    init_prompt(m, *prompt, seed);
  if constexpr (has_mlm_arch<Arch>) {
    if (!label_words.empty()) {
      peft::prompt_head<float> head(*m.weights, label_words);
      return f(enc, policy, head);
    }
  }
  if (!label_words.empty())
    throw peft::invalid_argument("prompt-based fine-tuning needs a BERT-family masked-LM checkpoint (got " +
                                 m.model_type + ")");
  // A classification task cast as reading comprehension reads its labels as options with a
  // span head: start and end logits at every position.
  const bool choices = !s.choices.empty();
  peft::classification_head<float> head(enc.hidden_size(), choices ? 2 : classes,
                                        choices ? peft::pool_kind::tokens : peft::parse_pool_kind(s.pooling), 0.1,
                                        seed);
  return f(enc, policy, head);
}

/// SetFit's contrastive step (fit_options::contrastive) on @p policy, before the task's head
/// trains on the embedding the head pools.
/// @throws peft::invalid_argument for a head that reads no pooled embedding (a prompt head,
///   token pooling, labels read as options) or a kind other than classification
template <typename Arch, typename Policy, typename Head>
void contrastive_step(const peft::encoder<Arch, float>& enc, Policy& policy, const Head& head,
                      const std::vector<peft::encoded_example>& train, const peft::fit_options& fit) {
  constexpr bool pooled = std::is_same_v<Head, peft::classification_head<float>>;
  if (!pooled || fit.task.kind != peft::task_kind::classification || fit.task.choices)
    throw peft::invalid_argument(
        "contrastive pairs need a single-label classification task with a head over a pooled embedding (not a "
        "prompt head, token pooling or labels read as options)");
  if constexpr (pooled) peft::fit_contrastive(enc, policy, head.pooling(), train, fit);
}

template <typename Arch>
run_result train_task_for(const model_files& m, const task_settings& s, peft::index classes,
                          const std::vector<std::int32_t>& label_words,
                          const std::vector<peft::encoded_example>& train,
                          const std::vector<peft::encoded_example>& dev,
                          const std::vector<peft::encoded_example>& test, const peft::fit_options& fit,
                          std::uint64_t seed) {
  return dispatch<Arch>(m, s, classes, label_words, seed, s.init_adapter, [&](const auto& enc, auto& policy, auto& head) {
    if (fit.contrastive.pairs_per_example > 0) contrastive_step(enc, policy, head, train, fit);
    peft::task_model model(enc, policy, head);
    const auto fr = peft::fit(model, train, dev, fit);
    run_result r;
    auto objective = fit.task;
    if (objective.kind == peft::task_kind::multi_label && !dev.empty()) {
      // The decision threshold is a hyper-parameter: chosen on the dev rows, never the test rows.
      std::vector<std::vector<int>> truth;
      for (const auto& e : dev) {
        std::vector<int> t;
        for (float v : e.targets) t.push_back(v >= 0.5f ? 1 : 0);
        truth.push_back(std::move(t));
      }
      objective.threshold =
          peft::best_threshold(peft::label_probabilities(peft::predict_outputs(model, dev, 64, m.pad_id)), truth);
    }
    r.threshold = objective.threshold;
    fill_outputs(model, test, objective, m.pad_id, r);
    r.trainable_params = model.parameters().size();
    r.backbone_params = enc.shape().backbone_parameters;
    r.train_seconds = fr.seconds;
    r.examples_per_second = fr.examples_per_second;
    if (!dev.empty()) {
      r.dev_accuracy = fr.best.score;
      r.dev_step = fr.best_step;
    }
    r.policy = policy;
    r.head = peft::store_tensors(head.parameters());
    return r;
  });
}

template <typename Arch>
run_result train_list_task_for(const model_files& m, const task_settings& s, peft::index classes,
                               const std::vector<std::int32_t>& label_words,
                               const std::vector<peft::encoded_example>& train,
                               const std::vector<peft::encoded_example>& pool,
                               const std::vector<peft::encoded_example>& test,
                               const peft::list_options& list) {
  using adapter = peft::bottleneck_adapter<float>;
  const peft::encoder<Arch, float> enc(m.weights);
  const auto shape = enc.shape();
  auto make_policy = [&](std::uint64_t seed) {
    return adapter(shape, peft::bottleneck_config::list(), seed);
  };
  auto run = [&](auto make_head) -> run_result {
    using Head = decltype(make_head(0));
    peft::self_trainer<Arch, float, adapter, Head> st(enc, make_policy, make_head, list);
    const auto lr = st.run(train, pool, test);
    auto model = st.student();
    run_result r;
    fill_predictions(model, test, m.pad_id, r);
    r.trainable_params = model.parameters().size();
    r.backbone_params = shape.backbone_parameters;
    r.train_seconds = lr.seconds;
    r.teacher_accuracy = lr.teacher_eval_accuracy;
    for (const auto& rep : lr.sessions) r.sessions.push_back(rep);
    r.policy = st.student_policy();
    r.head = peft::store_tensors(st.student_head().parameters());
    return r;
  };
  if constexpr (has_mlm_arch<Arch>) {
    if (!label_words.empty())
      return run([&](std::uint64_t) { return peft::prompt_head<float>(*m.weights, label_words); });
  }
  if (!label_words.empty())
    throw peft::invalid_argument("prompt-based fine-tuning needs a BERT-family masked-LM checkpoint (got " +
                                 m.model_type + ")");
  const auto pool_kind = peft::parse_pool_kind(s.pooling);
  return run([&, pool_kind](std::uint64_t seed) {
    return peft::classification_head<float>(enc.hidden_size(), classes, pool_kind, 0.1, seed);
  });
}

template <typename Arch>
run_result train_mpmp_task_for(const model_files& m, const task_settings& s, const peft::label_map& labels,
                               const std::vector<peft::encoded_example>& train,
                               const std::vector<peft::encoded_example>& dev,
                               const std::vector<peft::encoded_example>& test, const mpmp_settings& mp,
                               std::uint64_t seed) {
  const peft::encoder<Arch, float> enc(m.weights);
  const auto shape = enc.shape();
  const auto classes = static_cast<peft::index>(labels.size());
  const bool choices = !s.choices.empty();  // the labels as options for a span head
  peft::classification_head<float> head(enc.hidden_size(), choices ? 2 : classes,
                                        choices ? peft::pool_kind::tokens : peft::parse_pool_kind(s.pooling), 0.1,
                                        seed);
  const peft::task_objective objective = task_objective_of(s, labels);
  std::optional<peft::modular_prompt<float>> policy;
  run_result r;
  bool fresh_head = true;
  if (!mp.library.empty()) {
    const auto info = peft::read_mpmp_library_info(mp.library);
    if (info.span_head() != choices)
      throw peft::invalid_argument(
          choices ? "library '" + mp.library + "' has a head per task, but the task reads its labels as options for a "
                    "span head (a library from peft-mpmp-pretrain --head span)"
                  : "library '" + mp.library + "' has one span head: the task needs its labels written as options "
                    "(task_settings::choices)");
    policy.emplace(peft::load_mpmp_library_policy<float>(mp.library, shape));
    if (policy->config().num_prompt_tokens != s.prompt_tokens || info.placeholder_id != s.placeholder_id)
      throw peft::invalid_argument("train_mpmp_task: the data has " + std::to_string(s.prompt_tokens) +
                                   " placeholders from id " + std::to_string(s.placeholder_id) +
                                   ", the library expects " +
                                   std::to_string(policy->config().num_prompt_tokens) + " from id " +
                                   std::to_string(info.placeholder_id));
    std::string tasks;
    for (const auto& t : info.tasks) tasks += (tasks.empty() ? "" : ", ") + t.name;
    if (choices && !mp.library_head.empty())
      throw peft::invalid_argument("library '" + mp.library + "' has one span head for every task; a head per task (" +
                                   mp.library_head + ") is not there to pick");
    const peft::index t = choices ? -1
                          : mp.library_head.empty() ? info.head_for(labels.labels()) : info.find(mp.library_head);
    if (!mp.library_head.empty() && t < 0)
      throw peft::invalid_argument("library '" + mp.library + "' has no task '" + mp.library_head +
                                   "' (tasks: " + tasks + ")");
    if (t >= 0) {
      const auto& lt = info.tasks[static_cast<std::size_t>(t)];
      if (static_cast<peft::index>(lt.labels.size()) != classes || lt.pooling != s.pooling)
        throw peft::invalid_argument("library task '" + lt.name + "' has " +
                                     std::to_string(lt.labels.size()) + " labels and pooling " + lt.pooling +
                                     ", the task " + std::to_string(classes) + " labels and pooling " +
                                     s.pooling);
      peft::load_mpmp_library_head(mp.library, lt.name, head);
      fresh_head = false;
      r.mpmp_head = lt.name;
    }
    if (choices) {
      peft::load_mpmp_library_head(mp.library, peft::mpmp_span_head, head);
      fresh_head = false;
      r.mpmp_head = peft::mpmp_span_head;
    }
    policy->reset_router(1, seed);  // the reference's fresh router for the new task
  } else {
    policy.emplace(shape, mp.scratch, seed);
  }
  if (mp.blackbox) {
    if (fresh_head)
      throw peft::invalid_argument(
          "black-box tuning keeps the head frozen and needs a library head for these labels "
          "(give --mpmp-library with a task of the same labels, or --mpmp-head)");
    auto o = mp.bbt;
    o.seed = seed;
    o.pad_id = m.pad_id;
    o.objective = objective;
    const auto br = peft::mpmp_blackbox(enc, *policy, head, train, dev, o);
    peft::mpmp_stage_report a, b;
    a.name = "router (BO)";
    a.trainable_params = br.router_dimension;
    a.steps = br.router_evaluations;
    a.start_dev_accuracy = br.start_dev_accuracy;
    a.best_dev_accuracy = br.router_dev_accuracy;
    b.start_dev_accuracy = br.router_dev_accuracy;
    a.final_loss = br.router_loss;
    b.name = "z (CMA-ES)";
    b.trainable_params = br.prompt_dimension * policy->num_slots();
    b.steps = br.prompt_evaluations;
    b.best_dev_accuracy = br.dev_accuracy;
    b.final_loss = br.prompt_loss;
    r.mpmp_stages = {a, b};
    r.trainable_params = br.router_dimension + br.prompt_dimension * policy->num_slots();
    r.train_seconds = br.seconds;
  } else {
    auto o = mp.tune;
    o.seed = seed;
    o.pad_id = m.pad_id;
    o.objective = objective;
    if (fresh_head) {  // a fresh head learns in every stage, at a fresh head's rate
      o.router_stage_head = true;
      o.router_stage_head_lr = mp.fresh_head_lr;
      o.head_lr = mp.fresh_head_lr;
    }
    const auto tr = peft::mpmp_tune(enc, *policy, head, train, dev, o);
    r.mpmp_stages = tr.stages;
    r.trainable_params = tr.stages.empty() ? 0 : tr.stages.back().trainable_params;
    r.train_seconds = tr.seconds;
  }
  fill_outputs(peft::task_model(enc, *policy, head), test, objective, m.pad_id, r);
  r.backbone_params = shape.backbone_parameters;
  r.policy = std::move(*policy);
  r.head = peft::store_tensors(head.parameters());
  return r;
}

template <typename Arch>
run_result predict_task_for(const model_files& m, const task_settings& s, peft::index classes,
                            const std::vector<std::int32_t>& label_words, const std::string& policy_dir,
                            const std::string& head_path, const std::vector<peft::encoded_example>& data,
                            const peft::task_objective& objective) {
  return dispatch<Arch>(m, s, classes, label_words, 0, policy_dir,
                        [&](const auto& enc, auto& policy, auto& head) {
                          load_head_file(head_path, head);
                          run_result r;
                          r.threshold = objective.threshold;
                          fill_outputs(peft::task_model(enc, policy, head), data, objective, m.pad_id, r);
                          return r;
                        });
}

}  // namespace peft::task::detail

namespace peft::task {

template <typename Arch>
void add_saved_task(peft::multi_task_server<Arch, float>& server, const model_files& m,
                    const std::string& name, const saved_task& t) {
  const auto& s = t.settings;
  // The server answers one row per request from a pooled head: classification, regression and
  // multi-label tasks. Words and answer spans come from every position (peft-predict).
  if (!peft::is_sequence_kind(s.kind))
    throw peft::invalid_argument("task '" + name + "': the server answers classification, regression and "
                                 "multi-label tasks, not " + peft::task_kind_name(s.kind) + " (use peft-predict)");
  if (!s.choices.empty())
    throw peft::invalid_argument("task '" + name + "': the server answers from a pooled head; this task reads its "
                                 "labels as options with a span head (use peft-predict)");
  auto policy = task_policy(s.method, server.encoder_ref().shape(), 0, t.dir);
  if constexpr (detail::has_mlm_arch<Arch>) {
    if (t.verb) {
      peft::prompt_head<float> head(*m.weights, t.verb->ids());
      load_head_file(t.head_path, head);
      server.add_task(name, std::move(policy), std::move(head));
      return;
    }
  }
  if (t.verb)
    throw peft::invalid_argument("task '" + name +
                                 "': prompt-based fine-tuning needs a BERT-family masked-LM checkpoint");
  peft::classification_head<float> head(server.encoder_ref().hidden_size(), t.labels.size(),
                                        peft::parse_pool_kind(s.pooling), 0.1, 0);
  load_head_file(t.head_path, head);
  server.add_task(name, std::move(policy), std::move(head));
}

}  // namespace peft::task

/// Explicit instantiation (EXT empty) or declaration (EXT extern) of the task runtime for
/// architecture Arch, expanded at global scope.
#define PEFT_TASK_RUN_INSTANCES(EXT, Arch)                                                                 \
  namespace peft::task {                                                                                   \
  EXT template run_result detail::train_task_for<Arch>(const model_files&, const task_settings&,           \
                                                       peft::index, const std::vector<std::int32_t>&,      \
                                                       const std::vector<peft::encoded_example>&,          \
                                                       const std::vector<peft::encoded_example>&,          \
                                                       const std::vector<peft::encoded_example>&,          \
                                                       const peft::fit_options&, std::uint64_t);           \
  EXT template run_result detail::train_list_task_for<Arch>(const model_files&, const task_settings&,      \
                                                            peft::index, const std::vector<std::int32_t>&, \
                                                            const std::vector<peft::encoded_example>&,     \
                                                            const std::vector<peft::encoded_example>&,     \
                                                            const std::vector<peft::encoded_example>&,     \
                                                            const peft::list_options&);                    \
  EXT template run_result detail::train_mpmp_task_for<Arch>(const model_files&, const task_settings&,      \
                                                            const peft::label_map&,                        \
                                                            const std::vector<peft::encoded_example>&,     \
                                                            const std::vector<peft::encoded_example>&,     \
                                                            const std::vector<peft::encoded_example>&,     \
                                                            const mpmp_settings&, std::uint64_t);          \
  EXT template run_result detail::predict_task_for<Arch>(const model_files&, const task_settings&,         \
                                                         peft::index, const std::vector<std::int32_t>&,    \
                                                         const std::string&, const std::string&,           \
                                                         const std::vector<peft::encoded_example>&,        \
                                                         const peft::task_objective&);                     \
  EXT template void add_saved_task<Arch>(peft::multi_task_server<Arch, float>&, const model_files&,        \
                                         const std::string&, const saved_task&);                           \
  }

#endif  // PEFT_TASK_DETAIL_RUN_ARCH_HPP
