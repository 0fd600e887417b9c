// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DATA_TASK_DATA_HPP
#define PEFT_DATA_TASK_DATA_HPP

/// @file task_data.hpp
/// The kinds of task peft trains, and the rows of the kinds that are not one text with one
/// label. Sequence-level kinds (classification, regression, multi-label) keep `example`
/// (dataset.hpp), whose `values` and `label_set` carry a regression target and a label set;
/// token classification has `token_example` (words and one tag per word), extractive reading
/// comprehension `qa_example` (question, context and the answers' character spans).

#include <cstddef>
#include <string>
#include <vector>

#include "../error.hpp"

namespace peft {

/// What a task predicts, which fixes its head, loss, metrics and data format.
enum class task_kind {
  classification,        ///< one label of C per text (pair); softmax + cross-entropy; accuracy, macro-F1
  regression,            ///< one or more real targets per text; MSE; Pearson and Spearman
  multi_label,           ///< a set of labels per text; sigmoid + binary cross-entropy; micro/macro F1
  token_classification,  ///< one tag per word (BIO); cross-entropy on each word's first piece; entity F1
  extractive_qa,         ///< an answer span of the context; start/end cross-entropy; exact match, token F1
};

inline const char* task_kind_name(task_kind k) noexcept {
  switch (k) {
    case task_kind::classification: return "classification";
    case task_kind::regression: return "regression";
    case task_kind::multi_label: return "multi_label";
    case task_kind::token_classification: return "token_classification";
    case task_kind::extractive_qa: return "extractive_qa";
  }
  return "classification";
}

/// The kind named @p s (task_kind_name's spelling; "multi-label", "token", "ner" and "qa" too).
/// @throws peft::invalid_argument naming the known kinds
inline task_kind parse_task_kind(const std::string& s) {
  if (s == "classification") return task_kind::classification;
  if (s == "regression") return task_kind::regression;
  if (s == "multi_label" || s == "multi-label") return task_kind::multi_label;
  if (s == "token_classification" || s == "token-classification" || s == "token" || s == "ner")
    return task_kind::token_classification;
  if (s == "extractive_qa" || s == "extractive-qa" || s == "qa") return task_kind::extractive_qa;
  throw invalid_argument("task kind: one of classification, regression, multi_label, token_classification, "
                         "extractive_qa expected, got '" + s + "'");
}

/// True for the kinds whose rows are `example`s (one text or a pair per row).
inline bool is_sequence_kind(task_kind k) noexcept {
  return k == task_kind::classification || k == task_kind::regression || k == task_kind::multi_label;
}

/// One sentence of a token-classification file: its words and, when labelled, one tag per word.
struct token_example {
  std::vector<std::string> words;
  std::vector<std::string> tags;  ///< empty: unlabelled
  std::size_t line = 0;           ///< 1-based line the sentence starts on
};

/// One answer of a reading-comprehension question: its text and where it starts in the context
/// (a byte offset into the UTF-8 context; SQuAD's files count characters, the readers convert).
struct qa_answer {
  std::string text;
  std::size_t start = 0;
};

/// One question about one context.
struct qa_example {
  std::string id;
  std::string question;
  std::string context;
  std::vector<qa_answer> answers;  ///< empty: unlabelled, or unanswerable when `impossible`
  bool impossible = false;         ///< SQuAD 2.0's is_impossible
  std::size_t line = 0;            ///< 1-based: the JSONL line, or the question's number in a SQuAD file
};

}  // namespace peft

#endif  // PEFT_DATA_TASK_DATA_HPP
