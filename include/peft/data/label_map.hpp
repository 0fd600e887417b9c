// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DATA_LABEL_MAP_HPP
#define PEFT_DATA_LABEL_MAP_HPP

/// @file label_map.hpp
/// Label strings <-> class ids, in an order that depends only on the set of labels, so the same
/// training data gives the same ids on every run and machine, whatever the row order or the
/// few-shot sample. The order is **sorted**: numerically when every label is a decimal integer
/// ("2" < "10"), otherwise byte-wise (UTF-8 code-point order). A label map built by hand keeps
/// the order it is given. It is saved as JSON, `{"labels": ["negative", "positive"]}`, so that a
/// task checkpoint carries the ids its head was trained with.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/types.hpp"
#include "../core/limits.hpp"
#include "../error.hpp"
#include "../core/file_util.hpp"
#include "dataset.hpp"

namespace peft {

namespace detail {
/// Whether `s` is a decimal integer: an optional '-' then one or more digits.
inline bool label_is_integer(std::string_view s) noexcept {
  if (!s.empty() && s[0] == '-') s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}
/// Numeric order of two decimal integer strings of any length.
inline bool label_integer_less(std::string_view a, std::string_view b) noexcept {
  const bool na = a[0] == '-', nb = b[0] == '-';
  if (na != nb) return na;
  auto magnitude_less = [](std::string_view x, std::string_view y) {
    while (x.size() > 1 && x[0] == '0') x.remove_prefix(1);
    while (y.size() > 1 && y[0] == '0') y.remove_prefix(1);
    return x.size() != y.size() ? x.size() < y.size() : x < y;
  };
  if (na) return magnitude_less(b.substr(1), a.substr(1));
  return magnitude_less(a, b);
}
}  // namespace detail

/// Bidirectional map between label strings and ids 0..size()-1.
class label_map {
public:
  /// An empty map (size 0); useful only as a placeholder before assignment.
  label_map() = default;

  /// Labels in the given order: `labels[i]` gets id `i`.
  /// @throws peft::invalid_argument if `labels` is empty or holds an empty or repeated label.
  explicit label_map(std::vector<std::string> labels) : m_labels(std::move(labels)) {
    build("label_map::label_map");
  }

  /// The distinct `labels` in the canonical sorted order (see the file comment).
  /// @throws peft::invalid_argument if there is no label or an empty one.
  static label_map from_labels(std::vector<std::string> labels) {
    sort_labels(labels);
    labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
    label_map m;
    m.m_labels = std::move(labels);
    m.build("label_map::from_labels");
    return m;
  }

  /// The distinct labels of the labelled examples of `data`, sorted canonically. Unlabelled
  /// examples are ignored.
  /// @throws peft::invalid_argument if no example has a label.
  static label_map from_dataset(const dataset& data) {
    std::vector<std::string> labels;
    for (const auto& ex : data) {
      if (ex.label) labels.push_back(*ex.label);
    }
    if (labels.empty()) {
      throw invalid_argument("label_map::from_dataset: at least one labelled example expected, got " +
                             std::to_string(data.size()) + " examples and none labelled");
    }
    return from_labels(std::move(labels));
  }

  /// Sorts label strings in the canonical order: numeric if all are decimal integers,
  /// otherwise byte-wise.
  static void sort_labels(std::vector<std::string>& labels) {
    const bool numeric = std::all_of(labels.begin(), labels.end(),
                                     [](const std::string& s) { return detail::label_is_integer(s); });
    if (numeric) {
      std::sort(labels.begin(), labels.end(),
                [](const std::string& a, const std::string& b) { return detail::label_integer_less(a, b); });
    } else {
      std::sort(labels.begin(), labels.end());
    }
  }

  /// Number of labels.
  index size() const noexcept { return static_cast<index>(m_labels.size()); }
  bool empty() const noexcept { return m_labels.empty(); }
  /// Labels in id order.
  const std::vector<std::string>& labels() const noexcept { return m_labels; }

  /// Id of `label`, or nothing if it is unknown.
  std::optional<std::int32_t> find(std::string_view label) const {
    auto it = m_ids.find(std::string(label));
    if (it == m_ids.end()) return std::nullopt;
    return it->second;
  }
  bool contains(std::string_view label) const { return find(label).has_value(); }

  /// Id of `label`.
  /// @throws peft::invalid_argument naming the label and the known ones if it is unknown.
  std::int32_t id(std::string_view label) const {
    if (auto k = find(label)) return *k;
    throw invalid_argument("label_map::id: a known label (one of " + known() + ") expected, got \"" +
                           std::string(label) + "\"");
  }

  /// Label string of `id`.
  /// @throws peft::invalid_argument if `id` is outside [0, size()).
  const std::string& label(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= m_labels.size()) {
      throw invalid_argument(detail::expected_got("label_map::label", "id in [0, size)",
                                                  "[0, " + std::to_string(m_labels.size()) + ")", id));
    }
    return m_labels[static_cast<std::size_t>(id)];
  }

  /// Ids of the labels of all examples of `data`, in order.
  /// @param source file name used in error messages (optional).
  /// @throws peft::invalid_argument naming the source line if an example is unlabelled or has a
  ///         label this map does not know (for instance a test file with a class that was not
  ///         in the training data).
  std::vector<std::int32_t> encode(const dataset& data, const std::string& source = "") const {
    std::vector<std::int32_t> ids;
    ids.reserve(data.size());
    for (std::size_t i = 0; i < data.size(); ++i) {
      const auto& ex = data[i];
      const std::string at = "label_map::encode: " +
                             (source.empty() ? std::string("example ") + std::to_string(i)
                                             : source + " line " + std::to_string(ex.line)) +
                             ": ";
      if (!ex.label) throw invalid_argument(at + "a label expected, got an unlabelled example");
      auto k = find(*ex.label);
      if (!k)
        throw invalid_argument(at + "a known label (one of " + known() + ") expected, got \"" + *ex.label +
                               "\"");
      ids.push_back(*k);
    }
    return ids;
  }

  /// `{"labels": [...]}` in id order.
  nlohmann::json to_json() const { return nlohmann::json{{"labels", m_labels}}; }

  /// Inverse of to_json(); ids follow the stored order.
  /// @throws peft::invalid_argument if `j` is not an object with a non-empty array of distinct,
  ///         non-empty strings under `"labels"`.
  static label_map from_json(const nlohmann::json& j) {
    static const char* where = "label_map::from_json";
    if (!j.is_object() || !j.contains("labels") || !j["labels"].is_array()) {
      throw invalid_argument(std::string(where) + ": an object with a \"labels\" array expected, got " +
                             brief(j));
    }
    std::vector<std::string> labels;
    for (const auto& v : j["labels"]) {
      if (!v.is_string()) {
        throw invalid_argument(std::string(where) + ": labels[" + std::to_string(labels.size()) +
                               "] expected a string, got " + brief(v));
      }
      labels.push_back(v.get<std::string>());
    }
    label_map m;
    m.m_labels = std::move(labels);
    m.build(where);
    return m;
  }

  /// Writes to_json() to `path` (atomically: a temporary file renamed over `path`).
  /// @throws peft::io_error if the file cannot be written.
  void save(const std::string& path) const {
    if (m_labels.empty())
      throw invalid_argument("label_map::save: a non-empty label map expected, got 0 labels");
    atomic_file_writer out(path);
    out.write(to_json().dump(2) + "\n");
    out.commit();
  }

  /// Reads a file written by save().
  /// @throws peft::io_error naming the file if it cannot be read, is not JSON, or is not a
  ///         valid label map.
  static label_map load(const std::string& path) {
    static const char* where = "label_map::load";
    const std::string text = detail::read_file(path, where);
    nlohmann::json j;
    try {
      j = detail::parse_json_limited(text, std::string(where) + ": " + path);
    } catch (const nlohmann::json::exception& e) {
      throw io_error(std::string(where) + ": valid JSON expected in " + path + ", got " + e.what());
    }
    try {
      return from_json(j);
    } catch (const invalid_argument& e) {
      throw io_error(std::string(where) + ": " + path + ": " + e.what());
    }
  }

  friend bool operator==(const label_map& a, const label_map& b) { return a.m_labels == b.m_labels; }
  friend bool operator!=(const label_map& a, const label_map& b) { return !(a == b); }

private:
  static std::string brief(const nlohmann::json& v) {
    std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return s.size() > 60 ? s.substr(0, 57) + "..." : s;
  }

  /// Up to 10 labels, quoted, for error messages.
  std::string known() const {
    std::string s;
    for (std::size_t i = 0; i < m_labels.size() && i < 10; ++i) s += (i ? ", \"" : "\"") + m_labels[i] + "\"";
    if (m_labels.size() > 10) s += ", ... (" + std::to_string(m_labels.size()) + " labels)";
    return s;
  }

  void build(const char* where) {
    if (m_labels.empty()) throw invalid_argument(std::string(where) + ": labels expected at least 1, got 0");
    if (m_labels.size() > static_cast<std::size_t>(INT32_MAX))
      throw invalid_argument(std::string(where) + ": too many labels: " + std::to_string(m_labels.size()));
    m_ids.clear();
    for (std::size_t i = 0; i < m_labels.size(); ++i) {
      if (m_labels[i].empty())
        throw invalid_argument(std::string(where) + ": label " + std::to_string(i) +
                               " expected non-empty, got \"\"");
      if (!m_ids.emplace(m_labels[i], static_cast<std::int32_t>(i)).second) {
        throw invalid_argument(std::string(where) + ": distinct labels expected, got \"" + m_labels[i] +
                               "\" twice");
      }
    }
  }

  std::vector<std::string> m_labels;
  std::unordered_map<std::string, std::int32_t> m_ids;
};

}  // namespace peft

#endif  // PEFT_DATA_LABEL_MAP_HPP
