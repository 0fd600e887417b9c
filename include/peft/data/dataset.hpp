// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DATA_DATASET_HPP
#define PEFT_DATA_DATASET_HPP

/// @file dataset.hpp
/// In-memory text classification data: one `example` per row (a text, an optional second text
/// for pair tasks, an optional label string, and where the row came from), and `dataset`, a
/// plain vector of them. Readers are in readers.hpp, label ids in label_map.hpp, few-shot
/// splits in few_shot.hpp.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../error.hpp"

namespace peft {

/// One row of a data file.
struct example {
  std::string text;                   ///< first (or only) text
  std::optional<std::string> text_b;  ///< second text of a pair task; unset if absent or empty
  std::optional<std::string> label;   ///< label string; unset for unlabelled rows
  /// 1-based position in the source: the line for JSONL, TSV and CSV (the line a CSV record
  /// starts on), the entry number for the JSON-array formats (sentiment, chatbot).
  std::size_t line = 0;
  // After `line`, with initialisers, so {text, text_b, label, line} still initialises a
  // classification row (and -Wmissing-field-initializers stays quiet).
  /// Regression (task_data.hpp): the row's real targets; empty for unlabelled rows.
  std::vector<double> values{};
  /// Multi-label classification: the row's label names (possibly none) when it is labelled.
  std::optional<std::vector<std::string>> label_set{};
};

/// A data set: examples in file order.
using dataset = std::vector<example>;

/// Copies the examples at `indices` (in that order) into a new dataset.
/// @throws peft::invalid_argument if an index is out of range.
inline dataset subset(const dataset& data, const std::vector<std::size_t>& indices) {
  dataset out;
  out.reserve(indices.size());
  for (std::size_t k = 0; k < indices.size(); ++k) {
    if (indices[k] >= data.size()) {
      throw invalid_argument("subset: index " + std::to_string(k) + " expected in [0, " +
                             std::to_string(data.size()) + "), got " + std::to_string(indices[k]));
    }
    out.push_back(data[indices[k]]);
  }
  return out;
}

/// Number of examples per label string (unlabelled rows are not counted), in label order.
inline std::map<std::string, std::size_t> label_counts(const dataset& data) {
  std::map<std::string, std::size_t> counts;
  for (const auto& ex : data) {
    if (ex.label) ++counts[*ex.label];
  }
  return counts;
}

/// Number of examples that carry a label.
inline std::size_t num_labelled(const dataset& data) noexcept {
  std::size_t n = 0;
  for (const auto& ex : data) n += ex.label ? 1 : 0;
  return n;
}

}  // namespace peft

#endif  // PEFT_DATA_DATASET_HPP
