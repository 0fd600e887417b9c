// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_TASK_MODEL_HPP
#define PEFT_TASK_TASK_MODEL_HPP

/// @file task_model.hpp
/// The model of one task: a frozen encoder, a policy (any PEFT method, an `any_policy`, or
/// `no_policy` for a head-only baseline) and a head (`classification_head` or `prompt_head`).
/// `task_model` runs forward/backward for a batch; `predict_classes` and `evaluate` run it in
/// evaluation mode over a data set. Training it is `fit` (train/trainer.hpp); serving it is
/// `multi_task_server` (serve/multi_task.hpp), which needs nothing of the training code.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/batch.hpp"
#include "../model/encoder.hpp"
#include "../ops/losses.hpp"
#include "../policies/policy_tensors.hpp"
#include "heads.hpp"

namespace peft {

struct qa_row;  // task/kinds.hpp: a reading-comprehension window and its question

/// One example after tokenization. Which label fields a labelled example carries depends on
/// its task's kind (data/task_data.hpp): `label` for classification, `targets` for regression
/// (the values) and multi-label classification (0/1 per label), `token_labels` for token
/// classification, `start`/`end` for reading comprehension (and `label`, `start`/`end` and
/// `choices` for a classification task cast as reading comprehension).
struct encoded_example {
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> segments;  ///< empty: all zero
  index mask_pos = -1;                 ///< position of [MASK] for prompt heads, else -1
  int label = -1;                      ///< class id, or -1 when unknown
  std::vector<float> targets{};        ///< regression values / multi-label 0-1 per label; empty: none
  std::vector<int> token_labels{};     ///< per position: tag id, or ignore_label (-100); empty: none
  std::vector<int> word_ids{};         ///< token classification: each position's word, -1 for special tokens
  index start = -1, end = -1;          ///< answer's first and last position; -1: none
  /// Reading comprehension: the window this row is and the question it belongs to (evaluation
  /// groups the windows of one question and reads its answer back from the context).
  std::shared_ptr<const qa_row> qa{};
  /// Classification cast as reading comprehension (text/label_options.hpp): each label
  /// option's first and last position; `label` picks the gold one, `start`/`end` hold its span.
  std::vector<std::pair<index, index>> choices{};

  /// Whether the example carries a label of any kind.
  bool labelled() const noexcept { return label >= 0 || !targets.empty() || !token_labels.empty() || start >= 0; }
};

/// A padded batch of encoded examples with their mask positions and labels (the fields of the
/// kinds the examples carry: `targets` [B x K] row-major, `token_labels` [B*T], padding
/// positions ignore_label, `starts`/`ends` [B]).
struct task_batch {
  batch input;
  std::vector<index> mask_pos;
  std::vector<int> labels;
  std::vector<float> targets{};
  std::vector<int> token_labels{};
  std::vector<index> starts{}, ends{};
};

/// `min_time` pads to at least that length (see `make_batch`).
inline task_batch make_task_batch(const std::vector<encoded_example>& data, const std::vector<std::size_t>& rows,
                                  std::int32_t pad_id, index min_time = 0) {
  std::vector<std::vector<std::int32_t>> ids, segs;
  bool with_segments = false;
  task_batch tb;
  for (auto r : rows) {
    const auto& e = data.at(r);
    ids.push_back(e.ids);
    segs.push_back(e.segments.empty() ? std::vector<std::int32_t>(e.ids.size(), 0) : e.segments);
    with_segments = with_segments || !e.segments.empty();
    tb.mask_pos.push_back(e.mask_pos);
    tb.labels.push_back(e.label);
    tb.targets.insert(tb.targets.end(), e.targets.begin(), e.targets.end());
    tb.starts.push_back(e.start);
    tb.ends.push_back(e.end);
  }
  tb.input = make_batch(ids, pad_id, with_segments ? &segs : nullptr, min_time);
  bool tokens = false;
  for (auto r : rows) tokens = tokens || !data[r].token_labels.empty();
  if (tokens) {  // padded to the batch's length with ignored positions
    const index T = tb.input.time();
    tb.token_labels.assign(static_cast<std::size_t>(static_cast<index>(rows.size()) * T), ignore_label);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& l = data[rows[i]].token_labels;
      std::copy(l.begin(), l.end(), tb.token_labels.begin() + static_cast<std::ptrdiff_t>(static_cast<index>(i) * T));
    }
  }
  return tb;
}

namespace detail {
template <typename P, typename = void>
struct has_virtual_tokens : std::false_type {};
template <typename P>
struct has_virtual_tokens<P, std::void_t<decltype(index(std::declval<const P&>().num_virtual_tokens()))>>
    : std::true_type {};
}  // namespace detail

/// @p tb with the @p n virtual tokens a prompt-tuning policy reads in front of every sequence
/// (batch.hpp's `with_virtual_tokens`; mask positions move with the text).
inline task_batch with_virtual_tokens(const task_batch& tb, index n) {
  task_batch out;
  out.input = with_virtual_tokens(tb.input, n);
  out.labels = tb.labels;
  out.targets = tb.targets;
  // Token labels and answer positions stay as they are: a head with token pooling drops the
  // virtual positions again (pooling.hpp), so its rows are the text's.
  out.token_labels = tb.token_labels;
  out.starts = tb.starts;
  out.ends = tb.ends;
  out.mask_pos = tb.mask_pos;
  for (auto& m : out.mask_pos)
    if (m >= 0) m += n;
  return out;
}

/// Calls @p f with @p tb as policy @p p reads it: with its virtual tokens in front when it has
/// `num_virtual_tokens()` (prompt tuning), else @p tb itself (no copy).
template <typename Policy, typename F>
decltype(auto) with_policy_input(const Policy& p, const task_batch& tb, F&& f) {
  if constexpr (detail::has_virtual_tokens<Policy>::value) {
    return f(with_virtual_tokens(tb, p.num_virtual_tokens()));
  } else {
    (void)p;
    return f(tb);
  }
}

/// Adds a policy's parameter stores (none for `no_policy`, several for `compose`) to `set`.
template <typename Scalar, typename Policy>
void add_policy_parameters(parameter_set<Scalar>& set, Policy& p) {
  if constexpr (detail::has_parameter_stores<Policy>::value) {
    for (auto* s : p.stores()) set.add(*s);
  } else if constexpr (detail::has_parameter_store<Policy>::value) {
    set.add(p.parameters());
  } else {
    (void)set;
    (void)p;
  }
}

template <typename Head>
inline constexpr bool is_prompt_head_v = std::is_same_v<Head, prompt_head<typename Head::scalar_type>>;

/// Encoder + policy + head of one task. `Policy` may be an `any_policy<Scalar>`
/// (methods.hpp): each pass then runs the held class's own task model.
template <typename Arch, typename Scalar, typename Policy, typename Head>
class task_model {
public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;

  task_model(const encoder<Arch, Scalar>& enc, Policy& policy, Head& head)
      : m_enc(&enc), m_policy(&policy), m_head(&head) {}

  const encoder<Arch, Scalar>& encoder_ref() const noexcept { return *m_enc; }
  Policy& policy() noexcept { return *m_policy; }
  Head& head() noexcept { return *m_head; }

  /// Every trainable store: the policy's, then the head's.
  parameter_set<Scalar> parameters();

  /// Class logits `[B x C]` in evaluation mode.
  mat predict(const task_batch& tb) const;

  /// One forward/backward pass: `loss(logits, d_logits)` returns the loss and fills its
  /// gradient; parameter gradients accumulate (zero them first).
  template <typename LossFn>
  double forward_backward(const task_batch& tb, mode m, rng& gen, LossFn&& loss, mat* logits_out = nullptr) {
    if constexpr (is_any_policy_v<Policy>) {
      // The held policy's own task model: the same code as for its class.
      return m_policy->visit([&](auto& p) {
        task_model<Arch, Scalar, std::decay_t<decltype(p)>, Head> concrete(*m_enc, p, *m_head);
        return concrete.forward_backward(tb, m, gen, std::forward<LossFn>(loss), logits_out);
      });
    } else {
      return with_policy_input(*m_policy, tb, [&](const task_batch& in) {
        return forward_backward_impl(in, m, gen, std::forward<LossFn>(loss), logits_out);
      });
    }
  }

private:
  template <typename LossFn>
  double forward_backward_impl(const task_batch& tb, mode m, rng& gen, LossFn&& loss, mat* logits_out) {
    encoder_tape<Scalar, Policy> tape;
    const index lowest = lowest_trainable_layer(*m_policy, m_enc->num_layers());
    tape.record_from = lowest;  // frozen layers below the policy keep no activations
    const mat h = m_enc->forward(tb.input, *m_policy, m, &tape, &gen);
    typename Head::cache_type cache;
    mat logits = head_forward(h, tb, m, &gen, &cache);
    mat d_logits;
    const double value = loss(logits, d_logits);
    mat dh;
    if constexpr (is_prompt_head_v<Head>) {
      dh = m_head->backward(m_enc->weights(), d_logits, tb.input, cache);
    } else {
      dh = m_head->backward(m_enc->weights(), d_logits, tb.input, cache, m_enc->hidden_size());
    }
    if (lowest < m_enc->num_layers() || has_on_encoder_output_v<Policy>)
      m_enc->backward(dh, *m_policy, tape);
    if (logits_out) *logits_out = std::move(logits);
    return value;
  }

  mat head_forward(const mat& h, const task_batch& tb, mode m, rng* gen, typename Head::cache_type* cache) const {
    if constexpr (is_prompt_head_v<Head>) {
      (void)m;
      (void)gen;
      return m_head->forward(m_enc->weights(), h, tb.input, tb.mask_pos, cache);
    } else {
      return m_head->forward(m_enc->weights(), h, tb.input, m, gen, cache);
    }
  }

  const encoder<Arch, Scalar>* m_enc;
  Policy* m_policy;
  Head* m_head;
};

template <typename Arch, typename Scalar, typename Policy, typename Head>
parameter_set<Scalar> task_model<Arch, Scalar, Policy, Head>::parameters() {
  parameter_set<Scalar> set;
  add_policy_parameters(set, *m_policy);
  set.add(m_head->parameters());
  return set;
}

template <typename Arch, typename Scalar, typename Policy, typename Head>
matrix<Scalar> task_model<Arch, Scalar, Policy, Head>::predict(const task_batch& tb) const {
  if constexpr (is_any_policy_v<Policy>) {
    return m_policy->visit([&](auto& p) {
      return task_model<Arch, Scalar, std::decay_t<decltype(p)>, Head>(*m_enc, p, *m_head).predict(tb);
    });
  } else {
    return with_policy_input(*m_policy, tb, [&](const task_batch& in) {
      const mat h = m_enc->forward(in.input, *m_policy);
      return head_forward(h, in, mode::eval, nullptr, nullptr);
    });
  }
}

/// Evaluation metrics on a labelled set. `score` is the one training keeps the best of (higher
/// is better): accuracy for classification, the first of `metrics` for every kind.
struct eval_result {
  double accuracy = 0;  ///< classification
  double macro_f1 = 0;  ///< classification
  index examples = 0;
  double score = 0;
  std::vector<std::pair<std::string, double>> metrics;  ///< every metric of the task's kind, by name
};

/// Predicted class of every example, in order, batched by `batch_size`.
template <typename Model>
std::vector<index> predict_classes(const Model& model, const std::vector<encoded_example>& data, index batch_size,
                                   std::int32_t pad_id, std::vector<std::vector<double>>* probabilities = nullptr) {
  std::vector<index> out;
  // Sort by length so batches carry little padding; write results back in order.
  std::vector<std::size_t> order(data.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return data[a].ids.size() < data[b].ids.size(); });
  out.assign(data.size(), 0);
  if (probabilities) probabilities->assign(data.size(), {});
  for (std::size_t s = 0; s < order.size(); s += static_cast<std::size_t>(batch_size)) {
    std::vector<std::size_t> rows(order.begin() + static_cast<std::ptrdiff_t>(s),
                                  order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), s + std::size_t(batch_size))));
    const auto logits = model.predict(make_task_batch(data, rows, pad_id));
    const auto pred = argmax_rows(logits);
    const auto p = softmax(logits);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      out[rows[i]] = pred[i];
      if (probabilities) {
        auto& row = (*probabilities)[rows[i]];
        for (index c = 0; c < p.cols(); ++c) row.push_back(static_cast<double>(p(static_cast<index>(i), c)));
      }
    }
  }
  return out;
}

/// The head's output for every example, in order, batched by `batch_size`: `[1 x C]` for a
/// pooled head, `[length x C]` (the example's own positions) for a head with token pooling.
template <typename Model>
std::vector<matrix<typename Model::scalar_type>> predict_outputs(const Model& model,
                                                                  const std::vector<encoded_example>& data,
                                                                  index batch_size, std::int32_t pad_id) {
  std::vector<matrix<typename Model::scalar_type>> out(data.size());
  std::vector<std::size_t> order(data.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return data[a].ids.size() < data[b].ids.size(); });
  for (std::size_t s = 0; s < order.size(); s += static_cast<std::size_t>(batch_size)) {
    std::vector<std::size_t> rows(order.begin() + static_cast<std::ptrdiff_t>(s),
                                  order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), s + std::size_t(batch_size))));
    const auto tb = make_task_batch(data, rows, pad_id);
    const auto z = model.predict(tb);
    const index B = static_cast<index>(rows.size());
    const bool per_token = z.rows() != B;  // with T = 1 both read the same row
    const index T = per_token ? z.rows() / B : 1;
    for (index i = 0; i < B; ++i) {
      const auto& e = data[rows[static_cast<std::size_t>(i)]];
      const index n = per_token ? static_cast<index>(e.ids.size()) : 1;
      out[rows[static_cast<std::size_t>(i)]] = z.middleRows(i * T, n);
    }
  }
  return out;
}

template <typename Model>
eval_result evaluate(const Model& model, const std::vector<encoded_example>& data, index batch_size,
                     std::int32_t pad_id) {
  const auto pred = predict_classes(model, data, batch_size, pad_id);
  std::vector<int> labels;
  for (const auto& e : data) labels.push_back(e.label);
  eval_result r;
  r.examples = static_cast<index>(data.size());
  r.accuracy = accuracy(pred, labels);
  r.macro_f1 = macro_f1(pred, labels);
  r.score = r.accuracy;
  r.metrics = {{"accuracy", r.accuracy}, {"macro_f1", r.macro_f1}};
  return r;
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_TASK_TASK_MODEL
#include "../detail/instances.hpp"

#endif  // PEFT_TASK_TASK_MODEL_HPP
