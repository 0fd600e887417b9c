// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_KINDS_HPP
#define PEFT_TASK_KINDS_HPP

/// @file kinds.hpp
/// What a task's kind (data/task_data.hpp) makes of the head's output: the loss `fit` trains
/// with, and the metrics evaluation reports. Every kind runs the same `classification_head`:
/// pooled for the sequence-level kinds (C classes, K regression targets, L labels), per
/// position (`pool_kind::tokens`) for token classification (C tags) and reading comprehension
/// (2 outputs: an answer's start and end logits), so every policy, `fit`, data-parallel
/// training and checkpoint/resume serve every kind unchanged.
///
/// | kind | head output | loss | metrics (the first is `score`) |
/// |---|---|---|---|
/// | classification | [B x C] | cross-entropy | accuracy, macro_f1 |
/// | regression | [B x K] | mean squared error | pearson, spearman, mse (mean over targets) |
/// | multi_label | [B x L] | sigmoid + binary cross-entropy | micro_f1, macro_f1, subset_accuracy at `threshold` |
/// | token_classification | [B*T x C] | cross-entropy on each word's first piece | entity f1, precision, recall (seqeval), token_accuracy |
/// | extractive_qa | [B*T x 2] | (start CE + end CE) / 2 | f1, exact_match (SQuAD script), best span across windows |
///
/// A classification task can also be cast as reading comprehension (`task_objective::choices`,
/// MPMP's unification; text/label_options.hpp): the rows carry the label names as options, the
/// head is a span head ([B*T x 2], span loss), and a row's class is the option whose span
/// scores highest, start logit at its first piece + end logit at its last. The metrics stay
/// the classification ones.

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../data/task_data.hpp"
#include "../error.hpp"
#include "../ops/losses.hpp"
#include "../text/word_alignment.hpp"
#include "metrics.hpp"
#include "task_model.hpp"

namespace peft {

/// A reading-comprehension row: one window of a question's context, and the question.
struct qa_row {
  qa_window window;
  std::shared_ptr<const qa_example> example;
};

/// What training and evaluation need of a task beyond its rows.
struct task_objective {
  task_kind kind = task_kind::classification;
  std::vector<std::string> labels;  ///< token classification: the tag names, by id (entity F1 reads them)
  double threshold = 0.5;           ///< multi-label: a label is predicted when its probability reaches it
  index n_best = 20;                ///< reading comprehension: start/end candidates per window
  index max_answer_length = 30;     ///< reading comprehension: longest answer, in pieces
  bool allow_null = false;          ///< reading comprehension: unanswerable questions (SQuAD 2.0)
  /// Classification cast as reading comprehension: a span head picks one of each row's label
  /// options (`encoded_example::choices`).
  bool choices = false;
  /// Contrastive pairs (SetFit's first step, `fit_options::contrastive`): a batch's first half
  /// and second half are the two sentences of each pair, `task_batch::targets` each pair's
  /// target cosine, and the loss `cosine_pair_loss` on the head's outputs (the embeddings).
  bool pairs = false;
};

/// The metric names of @p kind, `score` first (fit's CSV columns, peft-train's report).
inline std::vector<std::string> metric_names(task_kind kind) {
  switch (kind) {
    case task_kind::classification: return {"accuracy", "macro_f1"};
    case task_kind::regression: return {"pearson", "spearman", "mse"};
    case task_kind::multi_label: return {"micro_f1", "macro_f1", "subset_accuracy"};
    case task_kind::token_classification: return {"f1", "precision", "recall", "token_accuracy"};
    case task_kind::extractive_qa: return {"f1", "exact_match"};
  }
  return {};
}

/// The loss of @p o's kind on the head's output @p z for batch @p tb; fills `dz`.
/// @throws peft::invalid_argument when the batch lacks its kind's labels or their shapes differ
template <typename Scalar>
double task_loss(const task_objective& o, const matrix<Scalar>& z, const task_batch& tb, matrix<Scalar>& dz) {
  const index B = tb.input.size();
  if (o.pairs) return static_cast<double>(cosine_pair_loss(z, tb.targets, dz));
  // A classification task cast as reading comprehension trains its span head on the gold option.
  const task_kind kind = o.choices ? task_kind::extractive_qa : o.kind;
  switch (kind) {
    case task_kind::classification: return static_cast<double>(cross_entropy(z, tb.labels, dz));
    case task_kind::regression:
    case task_kind::multi_label: {
      const char* where = o.kind == task_kind::regression ? "regression loss" : "multi-label loss";
      if (static_cast<index>(tb.targets.size()) != z.size())
        throw invalid_argument(std::string(where) + ": targets expected " + std::to_string(z.rows()) + " x " +
                               std::to_string(z.cols()) + " (a row per example, one per output), got " +
                               std::to_string(tb.targets.size()) + " values");
      matrix<Scalar> t(z.rows(), z.cols());
      for (index i = 0; i < t.rows(); ++i)
        for (index k = 0; k < t.cols(); ++k)
          t(i, k) = static_cast<Scalar>(tb.targets[static_cast<std::size_t>(i * t.cols() + k)]);
      return static_cast<double>(o.kind == task_kind::regression ? mse_loss(z, t, dz) : bce_with_logits(z, t, dz));
    }
    case task_kind::token_classification:
      if (static_cast<index>(tb.token_labels.size()) != z.rows())
        throw invalid_argument("token classification loss: a label per position expected (" +
                               std::to_string(z.rows()) + "), got " + std::to_string(tb.token_labels.size()));
      return static_cast<double>(token_cross_entropy(z, tb.token_labels, dz));
    case task_kind::extractive_qa:
      if (B < 1 || z.rows() % B != 0)
        throw invalid_argument("span loss: rows expected a multiple of the batch size " + std::to_string(B) +
                               ", got " + std::to_string(z.rows()));
      return static_cast<double>(span_cross_entropy(z, z.rows() / B, tb.starts, tb.ends, dz));
  }
  return 0;
}

namespace detail {
inline std::size_t argmax_of(const double* p, index n) {
  std::size_t best = 0;
  for (index c = 1; c < n; ++c)
    if (p[c] > p[best]) best = static_cast<std::size_t>(c);
  return best;
}
template <typename Scalar>
std::vector<double> row_of(const matrix<Scalar>& m, index r) {
  std::vector<double> out(static_cast<std::size_t>(m.cols()));
  for (index c = 0; c < m.cols(); ++c) out[static_cast<std::size_t>(c)] = static_cast<double>(m(r, c));
  return out;
}
inline std::string tag_name(const std::vector<std::string>& labels, std::size_t id) {
  if (id >= labels.size())
    throw invalid_argument("token classification: tag id " + std::to_string(id) + " has no name (" +
                           std::to_string(labels.size()) + " tags known)");
  return labels[id];
}
}  // namespace detail

/// Token classification: the gold and predicted tags of every labelled position (a word's
/// first piece) of every row, as Hugging Face's token-classification recipe compares them.
template <typename Scalar>
std::pair<std::vector<std::vector<std::string>>, std::vector<std::vector<std::string>>> token_tags(
    const task_objective& o, const std::vector<encoded_example>& data, const std::vector<matrix<Scalar>>& out) {
  std::vector<std::vector<std::string>> gold, pred;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const auto& e = data[i];
    std::vector<std::string> g, p;
    for (std::size_t t = 0; t < e.token_labels.size(); ++t) {
      if (e.token_labels[t] == ignore_label) continue;
      const auto row = detail::row_of(out[i], static_cast<index>(t));
      g.push_back(detail::tag_name(o.labels, static_cast<std::size_t>(e.token_labels[t])));
      p.push_back(detail::tag_name(o.labels, detail::argmax_of(row.data(), static_cast<index>(row.size()))));
    }
    gold.push_back(std::move(g));
    pred.push_back(std::move(p));
  }
  return {gold, pred};
}

/// Classification cast as reading comprehension: each row's option scores, start logit at the
/// option's first position + end logit at its last. The reference multiplies the two logits
/// (`Deep/model.py`), which ranks two negative logits above two positive ones; the sum is the
/// log of the product of the unnormalised start and end probabilities, the score span
/// extraction ranks answers by.
/// @throws peft::invalid_argument for a row without options or an option outside its output
template <typename Scalar>
std::vector<std::vector<double>> choice_scores(const std::vector<encoded_example>& data,
                                               const std::vector<matrix<Scalar>>& out) {
  std::vector<std::vector<double>> scores;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const auto& c = data[i].choices;
    if (c.empty()) throw invalid_argument("label options: row " + std::to_string(i) + " has none");
    std::vector<double> row;
    for (std::size_t k = 0; k < c.size(); ++k) {
      const auto [first, last] = c[k];
      if (first < 0 || last < first || last >= out[i].rows() || out[i].cols() != 2)
        throw invalid_argument("label options: row " + std::to_string(i) + " option " + std::to_string(k) +
                               " spans positions " + std::to_string(first) + ".." + std::to_string(last) +
                               ", expected inside the span head's " + std::to_string(out[i].rows()) + " x 2 output");
      row.push_back(static_cast<double>(out[i](first, 0)) + static_cast<double>(out[i](last, 1)));
    }
    scores.push_back(std::move(row));
  }
  return scores;
}

/// Each row's class: the option with the highest score (choice_scores; the first on a tie).
template <typename Scalar>
std::vector<index> choice_predictions(const std::vector<encoded_example>& data, const std::vector<matrix<Scalar>>& out) {
  std::vector<index> pred;
  for (const auto& row : choice_scores(data, out))
    pred.push_back(static_cast<index>(detail::argmax_of(row.data(), static_cast<index>(row.size()))));
  return pred;
}

/// One answered question of a reading-comprehension set.
struct qa_prediction {
  std::shared_ptr<const qa_example> example;
  qa_answer_span answer;
};

/// Reading comprehension: each question's best answer over its windows (rows with the same
/// `qa->example`, in order of their first row).
template <typename Scalar>
std::vector<qa_prediction> qa_predictions(const task_objective& o, const std::vector<encoded_example>& data,
                                          const std::vector<matrix<Scalar>>& out) {
  std::vector<qa_prediction> res;
  std::map<const qa_example*, std::vector<std::size_t>> rows_of;
  std::vector<const qa_example*> order;
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (!data[i].qa) throw invalid_argument("reading comprehension: row " + std::to_string(i) + " has no window");
    const auto* q = data[i].qa->example.get();
    if (!rows_of.count(q)) order.push_back(q);
    rows_of[q].push_back(i);
  }
  for (const auto* q : order) {
    std::vector<const qa_window*> windows;
    std::vector<std::vector<double>> starts, ends;
    for (auto i : rows_of[q]) {
      windows.push_back(&data[i].qa->window);
      const auto& z = out[i];
      std::vector<double> s(static_cast<std::size_t>(z.rows())), e(static_cast<std::size_t>(z.rows()));
      for (index t = 0; t < z.rows(); ++t) {
        s[static_cast<std::size_t>(t)] = static_cast<double>(z(t, 0));
        e[static_cast<std::size_t>(t)] = static_cast<double>(z(t, 1));
      }
      starts.push_back(std::move(s));
      ends.push_back(std::move(e));
    }
    qa_prediction p;
    p.example = data[rows_of[q].front()].qa->example;
    p.answer = best_answer(q->context, windows, starts, ends, o.n_best, o.max_answer_length, o.allow_null);
    res.push_back(std::move(p));
  }
  return res;
}

/// Multi-label: the sigmoid of each output, per row.
template <typename Scalar>
std::vector<std::vector<double>> label_probabilities(const std::vector<matrix<Scalar>>& out) {
  std::vector<std::vector<double>> p;
  for (const auto& z : out) {
    auto row = detail::row_of(z, 0);
    for (auto& v : row) v = 1.0 / (1.0 + std::exp(-v));
    p.push_back(std::move(row));
  }
  return p;
}

/// The metrics of @p o's kind for the head's outputs @p out (predict_outputs) on the labelled
/// rows @p data.
/// @throws peft::invalid_argument for rows without their kind's labels
template <typename Scalar>
eval_result score_outputs(const task_objective& o, const std::vector<encoded_example>& data,
                          const std::vector<matrix<Scalar>>& out) {
  if (out.size() != data.size())
    throw invalid_argument("score_outputs: an output per row expected (" + std::to_string(data.size()) + "), got " +
                           std::to_string(out.size()));
  eval_result r;
  r.examples = static_cast<index>(data.size());
  if (data.empty()) return r;
  for (std::size_t i = 0; i < data.size(); ++i)
    if (!data[i].labelled())
      throw invalid_argument(std::string("evaluation (") + task_kind_name(o.kind) + "): row " + std::to_string(i) +
                             " has no label");
  switch (o.kind) {
    case task_kind::classification: {
      std::vector<index> pred;
      std::vector<int> labels;
      if (o.choices) pred = choice_predictions(data, out);
      for (std::size_t i = 0; i < data.size(); ++i) {
        if (!o.choices) {
          const auto row = detail::row_of(out[i], 0);
          pred.push_back(static_cast<index>(detail::argmax_of(row.data(), static_cast<index>(row.size()))));
        }
        labels.push_back(data[i].label);
      }
      r.accuracy = accuracy(pred, labels);
      r.macro_f1 = macro_f1(pred, labels);
      r.metrics = {{"accuracy", r.accuracy}, {"macro_f1", r.macro_f1}};
      break;
    }
    case task_kind::regression: {
      const std::size_t K = data[0].targets.size();
      double pe = 0, sp = 0, mse = 0;
      for (std::size_t k = 0; k < K; ++k) {
        std::vector<double> x, y;
        for (std::size_t i = 0; i < data.size(); ++i) {
          if (data[i].targets.size() != K || static_cast<std::size_t>(out[i].cols()) != K)
            throw invalid_argument("regression: " + std::to_string(K) + " targets expected in row " +
                                   std::to_string(i) + ", got " + std::to_string(data[i].targets.size()));
          x.push_back(static_cast<double>(out[i](0, static_cast<index>(k))));
          y.push_back(static_cast<double>(data[i].targets[k]));
          mse += (x.back() - y.back()) * (x.back() - y.back());
        }
        pe += pearson(x, y);
        sp += spearman(x, y);
      }
      r.metrics = {{"pearson", pe / double(K)},
                   {"spearman", sp / double(K)},
                   {"mse", mse / double(K * data.size())}};
      break;
    }
    case task_kind::multi_label: {
      std::vector<std::vector<int>> truth;
      for (const auto& e : data) {
        std::vector<int> t;
        for (float v : e.targets) t.push_back(v >= 0.5f ? 1 : 0);
        truth.push_back(std::move(t));
      }
      const auto s = multi_label_score(label_probabilities(out), truth, o.threshold);
      r.metrics = {{"micro_f1", s.micro_f1}, {"macro_f1", s.macro_f1}, {"subset_accuracy", s.subset_accuracy}};
      break;
    }
    case task_kind::token_classification: {
      const auto [gold, pred] = token_tags(o, data, out);
      const auto s = entity_f1(gold, pred);
      std::size_t right = 0, all = 0;
      for (std::size_t i = 0; i < gold.size(); ++i)
        for (std::size_t t = 0; t < gold[i].size(); ++t) {
          right += gold[i][t] == pred[i][t];
          ++all;
        }
      r.metrics = {{"f1", s.f1},
                   {"precision", s.precision},
                   {"recall", s.recall},
                   {"token_accuracy", all ? double(right) / double(all) : 0.0}};
      break;
    }
    case task_kind::extractive_qa: {
      const auto preds = qa_predictions(o, data, out);
      std::vector<std::string> answers;
      std::vector<std::vector<std::string>> gold;
      for (const auto& p : preds) {
        answers.push_back(p.answer.text);
        std::vector<std::string> g;
        for (const auto& a : p.example->answers) g.push_back(a.text);
        gold.push_back(std::move(g));
      }
      const auto s = squad_evaluate(answers, gold);
      r.examples = static_cast<index>(preds.size());
      r.metrics = {{"f1", s.f1}, {"exact_match", s.exact_match}};
      break;
    }
  }
  r.score = r.metrics.front().second;
  return r;
}

/// The metrics of @p o's kind for @p model on the labelled rows @p data, batched by
/// @p batch_size (what `fit` evaluates with).
template <typename Model>
eval_result evaluate_task(const Model& model, const task_objective& o, const std::vector<encoded_example>& data,
                          index batch_size, std::int32_t pad_id) {
  if (o.kind == task_kind::classification && !o.choices) return evaluate(model, data, batch_size, pad_id);
  return score_outputs(o, data, predict_outputs(model, data, batch_size, pad_id));
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_TASK_KINDS
#include "../detail/instances.hpp"

#endif  // PEFT_TASK_KINDS_HPP
