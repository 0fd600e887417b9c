// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_METRICS_HPP
#define PEFT_TASK_METRICS_HPP

/// @file metrics.hpp
/// Evaluation metrics of the task kinds beyond single-label classification, each counting as
/// the tool a published score is usually computed with, so numbers are comparable:
///
/// - regression: `pearson`, `spearman` (`scipy.stats.pearsonr` / `spearmanr`);
/// - multi-label classification: `multi_label_score`, `best_threshold` (scikit-learn's
///   micro / macro F1 with `zero_division=0`, subset accuracy);
/// - token classification: `entities_of`, `entity_f1` (seqeval's default, non-strict mode);
/// - extractive reading comprehension: `squad_normalize`, `squad_exact`, `squad_f1`,
///   `squad_evaluate` (the official SQuAD v2.0 evaluation script).
///
/// Bad input (size mismatches, no items, malformed tags, probabilities outside [0, 1]) throws
/// `peft::invalid_argument`; NaN or infinite numbers throw `peft::numeric_error`.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../error.hpp"

namespace peft {

/// A labelled span of one sentence: words [begin, end) carry entity type `type`.
struct entity {
  std::string type;
  std::size_t begin = 0, end = 0;
};

inline bool operator==(const entity& a, const entity& b) {
  return a.type == b.type && a.begin == b.begin && a.end == b.end;
}
inline bool operator!=(const entity& a, const entity& b) { return !(a == b); }

namespace detail::task_metrics {

inline void check_finite(const char* where, const char* what, const std::vector<double>& v) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw numeric_error(std::string(where) + ": " + what + "[" + std::to_string(i) +
                          "] expected finite, got " +
                          (std::isnan(v[i]) ? "NaN" : (v[i] > 0 ? "+Inf" : "-Inf")));
}

inline void check_pair(const char* where, const std::vector<double>& x, const std::vector<double>& y) {
  if (y.size() != x.size())
    throw invalid_argument(expected_got(where, "size of y (size of x)", x.size(), y.size()));
  if (x.size() < 2) throw invalid_argument(expected_got(where, "number of values", "at least 2", x.size()));
  check_finite(where, "x", x);
  check_finite(where, "y", y);
}

/// Pearson's r of checked inputs; 0 when a side is constant (every value equal to the first).
inline double pearson_unchecked(const std::vector<double>& x, const std::vector<double>& y) {
  const std::size_t n = x.size();
  const auto constant = [](const std::vector<double>& v) {
    return std::all_of(v.begin(), v.end(), [&](double a) { return a == v[0]; });
  };
  if (constant(x) || constant(y)) return 0.0;
  // Two points lie on a line: r is the product of the signs of the steps (exact, as scipy).
  if (n == 2) return (x[1] > x[0] ? 1.0 : -1.0) * (y[1] > y[0] ? 1.0 : -1.0);
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < n; ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= static_cast<double>(n);
  my /= static_cast<double>(n);
  double sxx = 0, syy = 0, sxy = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double dx = x[i] - mx, dy = y[i] - my;
    sxx += dx * dx;
    syy += dy * dy;
    sxy += dx * dy;
  }
  const double r = sxy / (std::sqrt(sxx) * std::sqrt(syy));
  return std::clamp(r, -1.0, 1.0);
}

/// 1-based ranks; a group of equal values gets the mean of the ranks it spans.
inline std::vector<double> average_ranks(const std::vector<double>& v) {
  std::vector<std::size_t> order(v.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> rank(v.size());
  for (std::size_t lo = 0; lo < order.size();) {
    std::size_t hi = lo + 1;
    while (hi < order.size() && v[order[hi]] == v[order[lo]]) ++hi;
    const double mean_rank = static_cast<double>(lo + 1 + hi) / 2.0;  // mean of lo+1 .. hi
    for (std::size_t k = lo; k < hi; ++k) rank[order[k]] = mean_rank;
    lo = hi;
  }
  return rank;
}

/// Micro F1 from counts, 2 tp / (2 tp + fp + fn), 0 when there is nothing to count. One
/// rounding, so equal ratios give equal doubles (best_threshold compares them exactly).
inline double f1_of_counts(std::size_t tp, std::size_t fp, std::size_t fn) {
  const std::size_t den = 2 * tp + fp + fn;
  return den == 0 ? 0.0 : static_cast<double>(2 * tp) / static_cast<double>(den);
}

inline double ratio_or_zero(std::size_t num, std::size_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

/// Checks the shapes and values of a multi-label batch; returns the number of labels.
inline std::size_t check_multi_label(const char* where, const std::vector<std::vector<double>>& probs,
                                     const std::vector<std::vector<int>>& truth) {
  if (probs.empty()) throw invalid_argument(expected_got(where, "number of examples", "at least 1", 0));
  if (truth.size() != probs.size())
    throw invalid_argument(
        expected_got(where, "number of truth rows (probability rows)", probs.size(), truth.size()));
  const std::size_t labels = probs[0].size();
  if (labels == 0) throw invalid_argument(expected_got(where, "number of labels", "at least 1", 0));
  for (std::size_t i = 0; i < probs.size(); ++i) {
    const std::string row = "example " + std::to_string(i);
    if (probs[i].size() != labels)
      throw invalid_argument(
          expected_got(where, (row + ": number of probabilities").c_str(), labels, probs[i].size()));
    if (truth[i].size() != labels)
      throw invalid_argument(
          expected_got(where, (row + ": number of truth values").c_str(), labels, truth[i].size()));
    for (std::size_t k = 0; k < labels; ++k) {
      const double p = probs[i][k];
      const std::string at = row + ", label " + std::to_string(k);
      if (std::isnan(p))
        throw numeric_error(std::string(where) + ": " + at + ": probability expected finite, got NaN");
      if (!(p >= 0.0 && p <= 1.0))
        throw invalid_argument(std::string(where) + ": " + at + ": probability expected in [0, 1], got " +
                               std::to_string(p));
      if (truth[i][k] != 0 && truth[i][k] != 1)
        throw invalid_argument(expected_got(where, (at + ": truth").c_str(), "0 or 1", truth[i][k]));
    }
  }
  return labels;
}

/// Per-label counts at one threshold.
struct label_counts {
  std::vector<std::size_t> tp, fp, fn;
  std::size_t exact_rows = 0;
};

inline label_counts count_labels(const std::vector<std::vector<double>>& probs,
                                 const std::vector<std::vector<int>>& truth, std::size_t labels,
                                 double threshold) {
  label_counts c;
  c.tp.assign(labels, 0);
  c.fp.assign(labels, 0);
  c.fn.assign(labels, 0);
  for (std::size_t i = 0; i < probs.size(); ++i) {
    bool exact = true;
    for (std::size_t k = 0; k < labels; ++k) {
      const bool predicted = probs[i][k] >= threshold, actual = truth[i][k] == 1;
      if (predicted && actual) ++c.tp[k];
      if (predicted && !actual) ++c.fp[k];
      if (!predicted && actual) ++c.fn[k];
      exact = exact && predicted == actual;
    }
    if (exact) ++c.exact_rows;
  }
  return c;
}

/// Splits a tag into seqeval's (prefix letter, type): "B-PER" -> ('B', "PER"), "O" -> ('O', "_");
/// the type is everything after the first '-', "_" when that is empty. Throws for tags seqeval
/// flags as not being entity tags.
inline std::pair<char, std::string> split_tag(const char* where, const std::string& tag,
                                              const std::string& sentence, std::size_t word) {
  const bool bare = tag.size() == 1 && std::string("OBIES").find(tag[0]) != std::string::npos;
  const bool prefixed =
      tag.size() >= 2 && tag[1] == '-' && std::string("BIES").find(tag[0]) != std::string::npos;
  if (!bare && !prefixed)
    throw invalid_argument(std::string(where) + ": " + sentence + "word " + std::to_string(word) +
                           ": tag expected O, B, I, E, S or one of them followed by '-' " +
                           "and a type, got \"" + tag + "\"");
  std::string type = prefixed ? tag.substr(2) : std::string();
  if (type.empty()) type = "_";
  return {tag[0], type};
}

/// seqeval's chunking over one sentence; `sentence` ("" or "sentence 3, ") names it in errors.
inline std::vector<entity> chunks(const char* where, const std::vector<std::string>& tags,
                                  const std::string& sentence) {
  std::vector<entity> out;
  char prev_tag = 'O';
  std::string prev_type;  // seqeval starts from an empty type, not "_"
  std::size_t begin = 0;
  for (std::size_t i = 0; i <= tags.size(); ++i) {
    // A virtual "O" after the last word closes an entity that runs to the end.
    const auto [tag, type] =
        i < tags.size() ? split_tag(where, tags[i], sentence, i) : std::pair<char, std::string>{'O', "_"};
    const bool type_changed = prev_type != type;
    // A chunk ends before this word after an E or S, when a B/I run meets B, S or O, or
    // when the type changes after a non-O word.
    const bool ends = prev_tag == 'E' || prev_tag == 'S' ||
                      ((prev_tag == 'B' || prev_tag == 'I') && (tag == 'B' || tag == 'S' || tag == 'O')) ||
                      (prev_tag != 'O' && type_changed);
    // A chunk starts at B or S, at I or E that follows O, E or S (so an I after O opens an
    // entity), and at any non-O word whose type differs from the previous word's.
    const bool starts =
        tag == 'B' || tag == 'S' ||
        ((tag == 'I' || tag == 'E') && (prev_tag == 'O' || prev_tag == 'E' || prev_tag == 'S')) ||
        (tag != 'O' && type_changed);
    if (ends) out.push_back(entity{prev_type, begin, i});
    if (starts) begin = i;
    prev_tag = tag;
    prev_type = type;
  }
  return out;
}

/// Whether Python's str.isspace() holds for the (UTF-8) character at s[i]; its length in bytes, or 0.
inline std::size_t space_length(const std::string& s, std::size_t i) {
  const auto b = [&](std::size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  const unsigned c = b(0);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  if (c == 0xc2 && (b(1) == 0x85 || b(1) == 0xa0)) return 2;  // U+0085, U+00A0
  if (c == 0xe1 && b(1) == 0x9a && b(2) == 0x80) return 3;    // U+1680
  if (c == 0xe2 && b(1) == 0x80 &&
      ((b(2) >= 0x80 && b(2) <= 0x8a) || b(2) == 0xa8 || b(2) == 0xa9 || b(2) == 0xaf))
    return 3;                                               // U+2000-200A, U+2028, U+2029, U+202F
  if (c == 0xe2 && b(1) == 0x81 && b(2) == 0x9f) return 3;  // U+205F
  if (c == 0xe3 && b(1) == 0x80 && b(2) == 0x80) return 3;  // U+3000
  return 0;
}

inline bool is_ascii_punctuation(unsigned char c) {
  return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) ||
         (c >= 0x7b && c <= 0x7e);
}

/// A regex word character (\w) as far as bytes tell: ASCII letters, digits, '_', and every
/// non-ASCII byte that is not part of a white-space character (treated as a letter).
inline bool is_word_byte(unsigned char c) {
  return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// The tokens of the SQuAD-normalized text, in order.
inline std::vector<std::string> squad_tokens(const std::string& s) {
  std::string t;  // lower case, without punctuation
  t.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_ascii_punctuation(c)) continue;
    t.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : ch);
  }
  std::vector<std::string> tokens;
  std::string current;
  const auto flush = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
  };
  for (std::size_t i = 0; i < t.size();) {
    if (const std::size_t sp = space_length(t, i)) {
      flush();
      i += sp;
      continue;
    }
    if (!is_word_byte(static_cast<unsigned char>(t[i]))) {
      current.push_back(t[i++]);
      continue;
    }
    // A maximal run of word characters: dropped (it becomes a space) when it is an article.
    std::size_t j = i;
    while (j < t.size() && space_length(t, j) == 0 && is_word_byte(static_cast<unsigned char>(t[j]))) ++j;
    const std::string word = t.substr(i, j - i);
    if (word == "a" || word == "an" || word == "the")
      flush();
    else
      current += word;
    i = j;
  }
  flush();
  return tokens;
}

}  // namespace detail::task_metrics

// ---------------------------------------------------------------------------------------------
// Regression

/// Pearson's correlation coefficient of @p x and @p y, as `scipy.stats.pearsonr(x, y)[0]`.
/// Where scipy returns NaN because a side is constant (every value equal), this returns 0:
/// a constant prediction explains nothing, and a NaN would poison averages and model selection.
/// @throws peft::invalid_argument when the sizes differ or there are fewer than 2 values.
/// @throws peft::numeric_error when a value is NaN or infinite.
inline double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  detail::task_metrics::check_pair("pearson", x, y);
  return detail::task_metrics::pearson_unchecked(x, y);
}

/// Spearman's rank correlation, as `scipy.stats.spearmanr(x, y)[0]`: Pearson's r of the ranks,
/// tied values sharing the mean of the ranks they span. 0 when a side is constant (see pearson).
/// @throws peft::invalid_argument when the sizes differ or there are fewer than 2 values.
/// @throws peft::numeric_error when a value is NaN or infinite.
inline double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  detail::task_metrics::check_pair("spearman", x, y);
  return detail::task_metrics::pearson_unchecked(detail::task_metrics::average_ranks(x),
                                                 detail::task_metrics::average_ranks(y));
}

// ---------------------------------------------------------------------------------------------
// Multi-label classification

/// Scores of a multi-label prediction. F1, precision and recall are in [0, 1]; a ratio whose
/// denominator is 0 counts 0 (scikit-learn's `zero_division=0`).
struct multi_label_scores {
  double micro_f1 = 0;         ///< F1 of the true/false positive counts pooled over all labels
  double macro_f1 = 0;         ///< mean over labels of each label's F1
  double micro_precision = 0;  ///< pooled tp / (tp + fp)
  double micro_recall = 0;     ///< pooled tp / (tp + fn)
  double subset_accuracy = 0;  ///< share of examples whose whole label set is right
};

/// Scores the labels predicted as `probs[i][k] >= threshold` against `truth[i][k]` (0 or 1),
/// as scikit-learn's `f1_score(average="micro" | "macro", zero_division=0)`,
/// `precision_score`, `recall_score` and `accuracy_score` on indicator matrices. In the macro
/// mean a label with no true and no predicted positives counts F1 = 0 (as `zero_division=0`;
/// it is not left out), so labels absent from a small evaluation set lower macro F1.
/// @param probs  `[examples][labels]` probabilities in [0, 1]
/// @param truth  `[examples][labels]`, each 0 or 1
/// @throws peft::invalid_argument on no examples or labels, ragged or mismatched rows, a
///         probability outside [0, 1] or a truth value other than 0 and 1.
/// @throws peft::numeric_error when a probability is NaN.
inline multi_label_scores multi_label_score(const std::vector<std::vector<double>>& probs,
                                            const std::vector<std::vector<int>>& truth, double threshold) {
  namespace tm = detail::task_metrics;
  const std::size_t labels = tm::check_multi_label("multi_label_score", probs, truth);
  if (std::isnan(threshold)) throw numeric_error("multi_label_score: threshold expected finite, got NaN");
  const tm::label_counts c = tm::count_labels(probs, truth, labels, threshold);
  std::size_t tp = 0, fp = 0, fn = 0;
  double macro = 0;
  for (std::size_t k = 0; k < labels; ++k) {
    tp += c.tp[k];
    fp += c.fp[k];
    fn += c.fn[k];
    macro += tm::f1_of_counts(c.tp[k], c.fp[k], c.fn[k]);
  }
  multi_label_scores s;
  s.micro_f1 = tm::f1_of_counts(tp, fp, fn);
  s.macro_f1 = macro / static_cast<double>(labels);
  s.micro_precision = tm::ratio_or_zero(tp, tp + fp);
  s.micro_recall = tm::ratio_or_zero(tp, tp + fn);
  s.subset_accuracy = tm::ratio_or_zero(c.exact_rows, probs.size());
  return s;
}

/// The decision threshold in {0.05, 0.10, ..., 0.95} (the doubles k / 20.0, k = 1..19) that
/// maximises micro F1 of `multi_label_score`. Among thresholds with equal micro F1 it picks the
/// one closest to 0.5, and of two equally close the lower, so a flat F1 curve keeps the
/// neutral 0.5. Tune it on validation data, not on the data it is reported on.
/// @throws as multi_label_score.
inline double best_threshold(const std::vector<std::vector<double>>& probs,
                             const std::vector<std::vector<int>>& truth) {
  namespace tm = detail::task_metrics;
  const std::size_t labels = tm::check_multi_label("best_threshold", probs, truth);
  // Visit 0.50, 0.45, 0.55, 0.40, 0.60, ...: a later threshold wins only when strictly better.
  const int order[] = {10, 9, 11, 8, 12, 7, 13, 6, 14, 5, 15, 4, 16, 3, 17, 2, 18, 1, 19};
  double best = 0.5, best_f1 = -1;
  for (const int k : order) {
    const double t = k / 20.0;
    const tm::label_counts c = tm::count_labels(probs, truth, labels, t);
    std::size_t tp = 0, fp = 0, fn = 0;
    for (std::size_t j = 0; j < labels; ++j) {
      tp += c.tp[j];
      fp += c.fp[j];
      fn += c.fn[j];
    }
    const double f1 = tm::f1_of_counts(tp, fp, fn);
    if (f1 > best_f1) {
      best_f1 = f1;
      best = t;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Token classification

/// The entities of one tagged sentence, counted as seqeval's `get_entities` (default,
/// non-strict mode), which reads IOB2, IOB1, IOE1/2 and IOBES alike. A tag is `O`, or a
/// prefix `B`, `I`, `E` or `S` optionally followed by `-` and a type (`B-PER`; `B` alone has
/// type "_"). Lenient rules as seqeval's: an `I-`/`E-` after `O`, `E-` or `S-` opens a new
/// entity, and a change of type always closes one entity and opens another (`B-PER I-LOC` is
/// two entities).
/// @throws peft::invalid_argument on a tag of another form (seqeval only warns, then reads its
///         first letter as the prefix, which miscounts).
inline std::vector<entity> entities_of(const std::vector<std::string>& tags) {
  return detail::task_metrics::chunks("entities_of", tags, "");
}

/// Entity-level scores (seqeval's `precision_score`, `recall_score`, `f1_score` and the
/// per-type rows of `classification_report`): an entity counts as correct when a predicted one
/// has the same sentence, type, begin and end.
struct entity_scores {
  double precision = 0, recall = 0, f1 = 0;  ///< micro over all entities; 0 on a 0 denominator
  std::size_t true_entities = 0, predicted_entities = 0, correct = 0;
  /// {precision, recall, f1} of each type found in the truth or the prediction, 0 on a 0
  /// denominator (a type only predicted scores 0, 0, 0).
  std::map<std::string, std::array<double, 3>> per_type;
};

/// Scores predicted tags against true tags, sentence by sentence, counting entities as
/// `entities_of` and pooling them over all sentences (micro average).
/// @throws peft::invalid_argument when there are no sentences, the sentence counts differ, a
///         sentence has a different number of tags on the two sides (naming the sentence), or a
///         tag is malformed (see entities_of).
inline entity_scores entity_f1(const std::vector<std::vector<std::string>>& truth,
                               const std::vector<std::vector<std::string>>& predicted) {
  namespace tm = detail::task_metrics;
  const char* where = "entity_f1";
  if (truth.empty())
    throw invalid_argument(detail::expected_got(where, "number of sentences", "at least 1", 0));
  if (predicted.size() != truth.size())
    throw invalid_argument(detail::expected_got(where, "number of predicted sentences (true sentences)",
                                                truth.size(), predicted.size()));
  struct counts {
    std::size_t true_n = 0, pred_n = 0, correct = 0;
  };
  std::map<std::string, counts> by_type;
  counts all;
  for (std::size_t s = 0; s < truth.size(); ++s) {
    if (predicted[s].size() != truth[s].size())
      throw invalid_argument(detail::expected_got(
          where, ("sentence " + std::to_string(s) + ": number of predicted tags").c_str(), truth[s].size(),
          predicted[s].size()));
    const std::string name = "sentence " + std::to_string(s) + ", ";
    const auto t = tm::chunks(where, truth[s], name);
    const auto p = tm::chunks(where, predicted[s], name);
    for (const auto& e : t) ++by_type[e.type].true_n;
    for (const auto& e : p) ++by_type[e.type].pred_n;
    // Both lists are in order of their end position, which is unique within a list.
    for (std::size_t i = 0, j = 0; i < t.size() && j < p.size();) {
      if (t[i].end < p[j].end) {
        ++i;
      } else if (p[j].end < t[i].end) {
        ++j;
      } else {
        if (t[i] == p[j]) ++by_type[t[i].type].correct;
        ++i;
        ++j;
      }
    }
    all.true_n += t.size();
    all.pred_n += p.size();
  }
  const auto prf = [](const counts& c) {
    const double p = tm::ratio_or_zero(c.correct, c.pred_n), r = tm::ratio_or_zero(c.correct, c.true_n);
    return std::array<double, 3>{p, r, p + r > 0 ? 2 * p * r / (p + r) : 0.0};
  };
  entity_scores out;
  for (const auto& [type, c] : by_type) {
    all.correct += c.correct;
    out.per_type[type] = prf(c);
  }
  const auto micro = prf(all);
  out.precision = micro[0];
  out.recall = micro[1];
  out.f1 = micro[2];
  out.true_entities = all.true_n;
  out.predicted_entities = all.pred_n;
  out.correct = all.correct;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Extractive question answering

/// SQuAD's answer normalization (`normalize_answer` of the official v1.1 and v2.0 scripts):
/// lower case, drop ASCII punctuation (Python's `string.punctuation`), replace the whole words
/// "a", "an" and "the" by a space, and join the white-space separated words with one space.
/// Works on UTF-8 bytes: only ASCII letters are lower-cased, and non-ASCII characters other
/// than white space count as letters when finding whole words (Python also lower-cases other
/// scripts and treats non-ASCII punctuation such as "—" as a word boundary).
inline std::string squad_normalize(const std::string& s) {
  std::string out;
  for (const auto& t : detail::task_metrics::squad_tokens(s)) {
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

/// 1 when @p prediction and @p gold are equal after squad_normalize, else 0.
inline double squad_exact(const std::string& prediction, const std::string& gold) {
  return detail::task_metrics::squad_tokens(prediction) == detail::task_metrics::squad_tokens(gold) ? 1.0
                                                                                                    : 0.0;
}

/// Token F1 of the SQuAD v2.0 script: the normalized words of both sides as bags, precision =
/// shared / predicted words, recall = shared / gold words. When either side has no words it is
/// 1 if both have none, else 0 (v2.0's rule for unanswerable questions; v1.1 scored 0).
inline double squad_f1(const std::string& prediction, const std::string& gold) {
  auto p = detail::task_metrics::squad_tokens(prediction);
  auto g = detail::task_metrics::squad_tokens(gold);
  if (p.empty() || g.empty()) return p.empty() && g.empty() ? 1.0 : 0.0;
  std::sort(p.begin(), p.end());
  std::sort(g.begin(), g.end());
  std::size_t shared = 0;
  for (std::size_t i = 0, j = 0; i < p.size() && j < g.size();) {
    if (p[i] < g[j]) {
      ++i;
    } else if (g[j] < p[i]) {
      ++j;
    } else {
      ++shared;
      ++i;
      ++j;
    }
  }
  if (shared == 0) return 0.0;
  const double precision = static_cast<double>(shared) / static_cast<double>(p.size());
  const double recall = static_cast<double>(shared) / static_cast<double>(g.size());
  return 2 * precision * recall / (precision + recall);
}

/// Corpus scores of extractive QA.
struct squad_scores {
  double exact_match = 0, f1 = 0;  ///< in percent, 0-100, as the official script prints them
  std::size_t questions = 0;
};

/// Scores one predicted answer per question against that question's gold answers, as the
/// official SQuAD v2.0 script: each question takes the best squad_exact and squad_f1 over its
/// gold answers, ignoring gold answers that normalize to nothing; a question left with no gold
/// answer is unanswerable and is scored against "" (so only an empty prediction gets credit).
/// Means over questions, in percent.
/// @throws peft::invalid_argument when there are no questions or the two sizes differ.
inline squad_scores squad_evaluate(const std::vector<std::string>& predictions,
                                   const std::vector<std::vector<std::string>>& gold_answers) {
  if (predictions.empty())
    throw invalid_argument(detail::expected_got("squad_evaluate", "number of questions", "at least 1", 0));
  if (gold_answers.size() != predictions.size())
    throw invalid_argument(detail::expected_got("squad_evaluate", "number of gold answer lists (predictions)",
                                                predictions.size(), gold_answers.size()));
  double exact_sum = 0, f1_sum = 0;
  for (std::size_t q = 0; q < predictions.size(); ++q) {
    double exact = 0, f1 = 0;
    bool answerable = false;
    for (const auto& g : gold_answers[q]) {
      if (detail::task_metrics::squad_tokens(g).empty()) continue;
      answerable = true;
      exact = std::max(exact, squad_exact(predictions[q], g));
      f1 = std::max(f1, squad_f1(predictions[q], g));
    }
    if (!answerable) {
      exact = squad_exact(predictions[q], "");
      f1 = squad_f1(predictions[q], "");
    }
    exact_sum += exact;
    f1_sum += f1;
  }
  squad_scores s;
  s.questions = predictions.size();
  s.exact_match = 100.0 * exact_sum / static_cast<double>(s.questions);
  s.f1 = 100.0 * f1_sum / static_cast<double>(s.questions);
  return s;
}

}  // namespace peft

#endif  // PEFT_TASK_METRICS_HPP
