// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DATA_TASK_READERS_HPP
#define PEFT_DATA_TASK_READERS_HPP

/// @file task_readers.hpp
/// Readers for the task kinds beyond single-label classification (task_data.hpp).
///
/// | kind | reader | rows |
/// |---|---|---|
/// | regression, multi-label (`.jsonl`) | read_task_jsonl() | `{"text", "text_b"?, "label" / "labels"}` per
/// line | | token classification (`.jsonl`) | read_token_jsonl() | `{"tokens": [...], "tags": [...]}` per
/// line | | token classification (CoNLL) | read_conll() | one word per line, tag in the last column | |
/// extractive QA (SQuAD `.json`) | read_squad_json() | SQuAD v1.1 / v2.0 files | | extractive QA (`.jsonl`) |
/// read_qa_jsonl() | Hugging Face `datasets` rows |
///
/// They keep the rules of readers.hpp: the whole file is checked up front and bad input throws
/// `peft::io_error` naming the file, the line (for SQuAD files the question's number and id),
/// what was expected and what was found. Invalid UTF-8 is refused, a byte-order mark ignored,
/// blank lines skipped, and every JSON text goes through parse_json_limited().
///
/// SQuAD counts `answer_start` in characters (Unicode code points, as Python indexes a
/// `str`); the readers convert it to the byte offset into the UTF-8 context that `qa_answer`
/// holds, and check that the context holds the answer's text there.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/limits.hpp"
#include "../error.hpp"
#include "dataset.hpp"
#include "readers.hpp"
#include "task_data.hpp"

namespace peft {
namespace detail {

/// The code point starting at byte @p i of valid UTF-8 @p s; moves @p i past it.
inline char32_t task_next_cp(std::string_view s, std::size_t& i) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 1;
  char32_t cp = b0;
  if (b0 >= 0xF0) {
    len = 4, cp = b0 & 0x07u;
  } else if (b0 >= 0xE0) {
    len = 3, cp = b0 & 0x0Fu;
  } else if (b0 >= 0xC0) {
    len = 2, cp = b0 & 0x1Fu;
  }
  for (std::size_t k = 1; k < len && i + k < s.size(); ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3Fu);
  i += len;
  return cp;
}

/// Byte offset of code point number @p cp (0-based) of valid UTF-8 @p s; `s.size()` when @p cp
/// is the code-point count, `npos` when it is larger.
inline std::size_t task_cp_to_byte(std::string_view s, std::size_t cp) noexcept {
  std::size_t i = 0;
  for (std::size_t k = 0; k < cp; ++k) {
    if (i >= s.size()) return std::string_view::npos;
    task_next_cp(s, i);
  }
  return i;
}

/// Number of code points of valid UTF-8 @p s.
inline std::size_t task_cp_count(std::string_view s) noexcept {
  std::size_t i = 0, n = 0;
  while (i < s.size()) task_next_cp(s, i), ++n;
  return n;
}

/// The Unicode White_Space property (as unicode::is_whitespace; repeated here so that data/
/// does not pull in the Unicode tables).
inline bool task_is_white_space(char32_t c) noexcept {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/// True if valid UTF-8 @p s holds a White_Space character (a word that does would not stay
/// one word once the text is re-split).
inline bool task_has_white_space(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size())
    if (task_is_white_space(task_next_cp(s, i))) return true;
  return false;
}

/// Calls f(object, at, line) for every non-blank line of the JSON-lines file @p path, after the
/// checks read_jsonl() makes (valid UTF-8, valid JSON within the limits, an object). `at` is
/// the "<where>: <path> line <n>: " prefix for messages.
template <typename F>
void task_jsonl_objects(const std::string& path, const char* where, F&& f) {
  const std::string content = data_read(path, where);
  data_for_each_line(content, [&](std::string_view line, std::size_t number) {
    if (data_is_blank(line)) return;
    data_check_utf8(line, where, path, "line", number);
    const std::string at = data_at(where, path, "line", number);
    nlohmann::json j;
    try {
      j = parse_json_limited(line, at.substr(0, at.size() - 2));  // `at` ends in ": "
    } catch (const nlohmann::json::exception& e) {
      throw io_error(at + "valid JSON expected, got " + e.what());
    }
    if (!j.is_object()) throw io_error(at + "a JSON object expected, got " + data_brief(j));
    f(j, at, number);
  });
}

/// A string value that must be present and not blank.
inline std::string task_text(const nlohmann::json& v, const std::string& at, const char* key) {
  if (!v.is_string()) throw io_error(at + "\"" + key + "\" expected a string, got " + data_brief(v));
  const std::string& s = v.get_ref<const std::string&>();
  if (data_is_blank(s)) throw io_error(at + "a non-empty \"" + key + "\" expected, got " + data_brief(v));
  return s;
}

/// Regression targets under @p key: a finite number (when @p scalar_ok) or a non-empty array
/// of them; null gives no targets (an unlabelled row).
inline std::vector<double> task_targets(const nlohmann::json& v, const std::string& at, const char* key,
                                        bool scalar_ok) {
  auto number = [&](const nlohmann::json& x, const std::string& what) {
    if (!x.is_number()) throw io_error(at + what + " expected a finite number, got " + data_brief(x));
    const double d = x.get<double>();
    // nlohmann's parser already refuses NaN, Infinity and overflowing literals; kept so that a
    // non-finite target can never reach a loss.
    if (!std::isfinite(d)) throw io_error(at + what + " expected a finite number, got " + data_brief(x));
    return d;
  };
  if (v.is_null()) return {};
  if (scalar_ok && v.is_number()) return {number(v, std::string("\"") + key + "\"")};
  if (!v.is_array()) {
    throw io_error(at + "\"" + key + "\" expected " + (scalar_ok ? "a number, " : "") +
                   "an array of numbers or null, got " + data_brief(v));
  }
  if (v.empty()) throw io_error(at + "\"" + key + "\" expected at least one number, got []");
  std::vector<double> out;
  out.reserve(v.size());
  for (std::size_t k = 0; k < v.size(); ++k)
    out.push_back(number(v[k], "\"" + std::string(key) + "\" item " + std::to_string(k + 1)));
  return out;
}

/// Multi-label label names under @p key: an array of distinct non-empty strings (possibly
/// empty); null gives nullopt (an unlabelled row).
inline std::optional<std::vector<std::string>> task_label_set(const nlohmann::json& v, const std::string& at,
                                                              const char* key) {
  if (v.is_null()) return std::nullopt;
  if (!v.is_array())
    throw io_error(at + "\"" + key + "\" expected an array of label names or null, got " + data_brief(v));
  std::vector<std::string> out;
  out.reserve(v.size());
  for (std::size_t k = 0; k < v.size(); ++k) {
    const auto& x = v[k];
    if (!x.is_string() || x.get_ref<const std::string&>().empty()) {
      throw io_error(at + "\"" + key + "\" item " + std::to_string(k + 1) +
                     " expected a non-empty string (a label name), got " + data_brief(x));
    }
    const std::string& s = x.get_ref<const std::string&>();
    if (std::find(out.begin(), out.end(), s) != out.end())
      throw io_error(at + "\"" + key + "\" expected distinct labels, got " + data_brief(x) + " twice");
    out.push_back(s);
  }
  return out;
}

/// "<where>: <path> <unit> <n> (id <id>): " prefix for messages about one question.
inline std::string task_qa_at(const char* where, const std::string& path, const char* unit, std::size_t n,
                              const nlohmann::json& id) {
  std::string at = data_at(where, path, unit, n);
  at.insert(at.size() - 2, " (id " + data_brief(id) + ")");
  return at;
}

/// A question id: a non-empty string, or an integer (kept in decimal).
inline std::string task_qa_id(const nlohmann::json& v, const std::string& at) {
  if (v.is_string() && !v.get_ref<const std::string&>().empty()) return v.get<std::string>();
  if (v.is_number_integer())
    return v.is_number_unsigned() ? std::to_string(v.get<std::uint64_t>())
                                  : std::to_string(v.get<std::int64_t>());
  throw io_error(at + "\"id\" expected a non-empty string or an integer, got " + data_brief(v));
}

/// One answer: @p text_v must be a non-empty string and @p start_v a character (code point)
/// offset into @p context where the context holds that text. Returns the byte offset form.
inline qa_answer task_qa_answer(const std::string& context, const nlohmann::json& text_v,
                                const nlohmann::json& start_v, const std::string& at) {
  if (!text_v.is_string() || text_v.get_ref<const std::string&>().empty())
    throw io_error(at + "answer text expected a non-empty string, got " + data_brief(text_v));
  std::size_t chars = 0;
  if (!json_to_integer(start_v, chars))
    throw io_error(at + "answer_start expected a non-negative integer, got " + data_brief(start_v));
  qa_answer a;
  a.text = text_v.get<std::string>();
  const std::size_t byte = task_cp_to_byte(context, chars);
  if (byte == std::string::npos) {
    throw io_error(at + "answer_start expected at most " + std::to_string(task_cp_count(context)) +
                   " (the context's length in characters), got " + std::to_string(chars));
  }
  if (context.compare(byte, a.text.size(), a.text) != 0) {
    // Show as many characters of the context as the answer has.
    const std::size_t end = task_cp_to_byte(std::string_view(context).substr(byte), task_cp_count(a.text));
    const std::string found = context.substr(byte, end);
    throw io_error(at + "answer " + data_brief(a.text) + " expected at character " + std::to_string(chars) +
                   " (byte " + std::to_string(byte) + ") of the context, found " + data_brief(found));
  }
  a.start = byte;
  return a;
}

/// Refuses a second use of a question id (answers and predictions are matched by id).
inline void task_qa_unique(std::unordered_map<std::string, std::size_t>& seen, const std::string& id,
                           std::size_t n, const char* unit, const std::string& at) {
  const auto [it, fresh] = seen.emplace(id, n);
  if (!fresh)
    throw io_error(at + "a unique id expected, got the id of " + unit + " " + std::to_string(it->second));
}

}  // namespace detail

/// Reads the JSON-lines rows of a sequence-level task kind.
///
/// - classification: exactly read_jsonl().
/// - regression: `{"text", "text_b"?, "label": number | [numbers]}`; the array form may also be
///   under `"labels"`. The targets go to `example::values`; null or absent means unlabelled.
///   Every labelled row must have as many targets as the first labelled row.
/// - multi_label: `{"text", "text_b"?, "labels": [names]}` (or `"label"` holding an array);
///   the names go to `example::label_set`. `[]` is a labelled row with no labels; null or
///   absent means unlabelled.
///
/// `"text"` and `"text_b"` follow read_jsonl(); `"id"`, `"idx"` and `"guid"` are ignored and any
/// other key is an error, so a misspelt key is not silently read as unlabelled data.
/// @throws peft::invalid_argument if @p kind is not a sequence-level kind
/// @throws peft::io_error naming the file and line: as read_jsonl(), and for both `"label"` and
///         `"labels"` in one row, a non-number, non-finite or missing target, a target count
///         that differs from the first labelled row's, a non-string, empty or repeated label name
inline dataset read_task_jsonl(const std::string& path, task_kind kind) {
  static const char* where = "read_task_jsonl";
  if (kind == task_kind::classification) return read_jsonl(path);
  if (!is_sequence_kind(kind)) {
    throw invalid_argument(
        std::string(where) +
        ": a sequence-level kind (classification, regression, multi_label) expected, got " +
        task_kind_name(kind) + " (read_token_data and read_qa_data read the other kinds)");
  }
  const bool regression = kind == task_kind::regression;
  dataset out;
  std::size_t first_count = 0, first_line = 0;  // targets of the first labelled regression row
  detail::task_jsonl_objects(
      path, where, [&](const nlohmann::json& j, const std::string& at, std::size_t number) {
        example ex;
        ex.line = number;
        bool has_text = false;
        const char* label_key = nullptr;
        for (auto it = j.begin(); it != j.end(); ++it) {
          const std::string& key = it.key();
          const auto& v = it.value();
          if (detail::data_text_key(ex, key, v, at, has_text)) {
            continue;
          } else if (key == "label" || key == "labels") {
            if (label_key) throw io_error(at + "one of \"label\" and \"labels\" expected, got both");
            label_key = key == "label" ? "label" : "labels";
            if (regression) {
              ex.values = detail::task_targets(v, at, label_key, key == "label");
            } else {
              ex.label_set = detail::task_label_set(v, at, label_key);
            }
          } else if (key != "id" && key != "idx" && key != "guid") {
            throw io_error(at + "keys \"text\", \"text_b\", \"" + (regression ? "label" : "labels") +
                           "\" (and \"id\", \"idx\", \"guid\") expected, got \"" + key + "\"");
          }
        }
        if (!has_text) throw io_error(at + "a \"text\" key expected, got none");
        if (detail::data_is_blank(ex.text))
          throw io_error(at + "a non-empty \"text\" expected, got \"" + ex.text + "\"");
        if (!ex.values.empty()) {
          if (first_line == 0) {
            first_count = ex.values.size(), first_line = number;
          } else if (ex.values.size() != first_count) {
            throw io_error(at + "targets expected " + std::to_string(first_count) + " (as on line " +
                           std::to_string(first_line) + ", the first labelled row), got " +
                           std::to_string(ex.values.size()));
          }
        }
        out.push_back(std::move(ex));
      });
  return out;
}

/// Reads token-classification sentences from JSON lines: `{"tokens": [words], "tags": [tags]}`
/// per line (`"words"` is accepted for `"tokens"`, `"ner_tags"` for `"tags"`). Tags absent or
/// null make an unlabelled sentence. Tags must be names ("B-PER"): integer tag ids, as in the
/// Hugging Face conll2003 export, are refused because the names they stand for are not in the
/// file. `"id"`, `"idx"`, `"guid"`, `"pos_tags"` and `"chunk_tags"` are ignored; any other key
/// is an error. `token_example::line` is the line.
/// @throws peft::io_error naming the file and line on unreadable files, invalid UTF-8, bad JSON,
///         a missing or empty word list, an empty word or one holding whitespace, a tag that is
///         not a non-empty string without whitespace, a tag count that differs from the word
///         count, or an unknown key.
inline std::vector<token_example> read_token_jsonl(const std::string& path) {
  static const char* where = "read_token_jsonl";
  std::vector<token_example> out;
  detail::task_jsonl_objects(
      path, where, [&](const nlohmann::json& j, const std::string& at, std::size_t number) {
        const nlohmann::json* words = nullptr;
        const nlohmann::json* tags = nullptr;
        std::string words_key, tags_key;
        for (auto it = j.begin(); it != j.end(); ++it) {
          const std::string& key = it.key();
          if (key == "tokens" || key == "words") {
            if (words) throw io_error(at + "one of \"tokens\" and \"words\" expected, got both");
            words = &it.value(), words_key = key;
          } else if (key == "tags" || key == "ner_tags") {
            if (tags) throw io_error(at + "one of \"tags\" and \"ner_tags\" expected, got both");
            tags = &it.value(), tags_key = key;
          } else if (key != "id" && key != "idx" && key != "guid" && key != "pos_tags" &&
                     key != "chunk_tags") {
            throw io_error(
                at +
                "keys \"tokens\" (or \"words\"), \"tags\" (or \"ner_tags\") and \"id\" expected, got \"" +
                key + "\"");
          }
        }
        if (!words) throw io_error(at + "a \"tokens\" key expected, got none");
        if (!words->is_array())
          throw io_error(at + "\"" + words_key + "\" expected an array of words, got " +
                         detail::data_brief(*words));
        if (words->empty()) throw io_error(at + "\"" + words_key + "\" expected at least one word, got []");
        token_example ex;
        ex.line = number;
        ex.words.reserve(words->size());
        for (std::size_t k = 0; k < words->size(); ++k) {
          const auto& w = (*words)[k];
          const std::string item = "\"" + words_key + "\" item " + std::to_string(k + 1);
          if (!w.is_string()) throw io_error(at + item + " expected a string, got " + detail::data_brief(w));
          const std::string& s = w.get_ref<const std::string&>();
          if (s.empty()) throw io_error(at + item + " expected a non-empty word, got \"\"");
          if (detail::task_has_white_space(s))
            throw io_error(at + item + " expected a word without whitespace, got " + detail::data_brief(w));
          ex.words.push_back(s);
        }
        if (tags && !tags->is_null()) {
          if (!tags->is_array())
            throw io_error(at + "\"" + tags_key + "\" expected an array of tag names or null, got " +
                           detail::data_brief(*tags));
          ex.tags.reserve(tags->size());
          for (std::size_t k = 0; k < tags->size(); ++k) {
            const auto& t = (*tags)[k];
            const std::string item = "\"" + tags_key + "\" item " + std::to_string(k + 1);
            if (t.is_number())
              throw io_error(at + item + " expected a tag name such as \"B-PER\", got the number " +
                             detail::data_brief(t) +
                             " (tag names are needed: replace integer tag ids by the names they stand for)");
            if (!t.is_string() || t.get_ref<const std::string&>().empty())
              throw io_error(at + item + " expected a non-empty tag name, got " + detail::data_brief(t));
            if (detail::task_has_white_space(t.get_ref<const std::string&>()))
              throw io_error(at + item + " expected a tag without whitespace, got " + detail::data_brief(t));
            ex.tags.push_back(t.get<std::string>());
          }
          if (ex.tags.size() != ex.words.size()) {
            throw io_error(at + "tags expected " + std::to_string(ex.words.size()) + " (one per word), got " +
                           std::to_string(ex.tags.size()));
          }
        }
        out.push_back(std::move(ex));
      });
  return out;
}

/// Reads token-classification sentences in CoNLL column format: one word per line, columns
/// separated by spaces or tabs, the word in the first column and its tag in the last (so the
/// four-column CoNLL-2003 files and two-column BIO files both read). A line with one column
/// is an untagged word; one sentence may not mix tagged and untagged words. Blank lines end
/// sentences; `-DOCSTART-` lines (document breaks) end a sentence too and are skipped.
/// `token_example::line` is the line of the sentence's first word.
/// @throws peft::io_error naming the file and line on unreadable files, invalid UTF-8, a word
///         holding non-ASCII whitespace (such as U+00A0), or a sentence mixing tagged and
///         untagged words.
inline std::vector<token_example> read_conll(const std::string& path) {
  static const char* where = "read_conll";
  const std::string content = detail::data_read(path, where);
  std::vector<token_example> out;
  token_example cur;
  bool tagged = false;
  auto flush = [&] {
    if (!cur.words.empty()) out.push_back(std::move(cur));
    cur = token_example{};
  };
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
  detail::data_for_each_line(content, [&](std::string_view line, std::size_t number) {
    detail::data_check_utf8(line, where, path, "line", number);
    std::vector<std::string_view> cols;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && space(line[i])) ++i;
      const std::size_t b = i;
      while (i < line.size() && !space(line[i])) ++i;
      if (i > b) cols.push_back(line.substr(b, i - b));
    }
    if (cols.empty() || cols[0] == "-DOCSTART-") {
      flush();
      return;
    }
    const std::string at = detail::data_at(where, path, "line", number);
    if (detail::task_has_white_space(cols[0]))
      throw io_error(at + "a word without whitespace expected, got \"" + std::string(cols[0]) + "\"");
    const bool has_tag = cols.size() > 1;
    if (cur.words.empty()) {
      cur.line = number;
      tagged = has_tag;
    } else if (has_tag != tagged) {
      throw io_error(at + (tagged
                               ? "a word and a tag expected (the sentence that starts on line " +
                                     std::to_string(cur.line) + " is tagged), got one column \"" +
                                     std::string(cols[0]) + "\""
                               : "one column (an untagged word) expected (the sentence that starts on line " +
                                     std::to_string(cur.line) + " is untagged), got " +
                                     std::to_string(cols.size()) + " columns \"" + std::string(line) + "\""));
    }
    cur.words.emplace_back(cols[0]);
    if (has_tag) {
      if (detail::task_has_white_space(cols.back()))
        throw io_error(at + "a tag without whitespace expected, got \"" + std::string(cols.back()) + "\"");
      cur.tags.emplace_back(cols.back());
    }
  });
  flush();
  return out;
}

/// Reads token-classification data with the reader its extension names (case-insensitive):
/// `.jsonl` read_token_jsonl(); `.conll`, `.txt`, `.iob`, `.bio`, `.tsv` read_conll().
/// @throws peft::invalid_argument for any other extension; peft::io_error from the readers.
inline std::vector<token_example> read_token_data(const std::string& path) {
  const std::string ext = detail::data_extension(path);
  if (ext == "jsonl") return read_token_jsonl(path);
  if (ext == "conll" || ext == "txt" || ext == "iob" || ext == "bio" || ext == "tsv") return read_conll(path);
  throw invalid_argument(
      "read_token_data: a file extension .jsonl, .conll, .txt, .iob, .bio or .tsv expected, got \"" +
      (ext.empty() ? std::string("(none)") : "." + ext) + "\" in " + path);
}

/// Reads a SQuAD v1.1 or v2.0 file: `{"data": [{"title"?, "paragraphs": [{"context", "qas":
/// [{"id", "question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}`.
/// `answer_start` (in characters) becomes a byte offset, checked against the answer's text.
/// A question with `"is_impossible": true` is unanswerable and must have no answers. A question
/// with no answers is unlabelled only when no question of the file has answers (a test file);
/// otherwise it is an error. Ids must be unique. Keys the format does not use
/// (`"plausible_answers"`, `"version"`, `"title"`, ...) are ignored. `qa_example::line` is the
/// question's 1-based number in file order.
/// @throws peft::io_error naming the file and the place (`data[i].paragraphs[j]`, or the
///         question's number and id) on unreadable files, invalid UTF-8, bad JSON, a wrong
///         layout, an empty context or question, a bad answer_start, an answer whose text the
///         context does not hold at answer_start, a missing answer in a labelled file, answers
///         to an unanswerable question, or a repeated id.
inline std::vector<qa_example> read_squad_json(const std::string& path) {
  static const char* where = "read_squad_json";
  const nlohmann::json j = detail::data_parse_json_file(path, where);
  const std::string file = std::string(where) + ": " + path;
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array())
    throw io_error(file + ": a top-level object with a \"data\" array expected, got " +
                   detail::data_brief(j));
  std::vector<qa_example> out;
  std::unordered_map<std::string, std::size_t> seen;
  std::size_t first_labelled = 0;  // number of the first question with answers or is_impossible
  const nlohmann::json none;
  auto get = [&](const nlohmann::json& o, const char* key) -> const nlohmann::json& {
    return o.contains(key) ? o[key] : none;
  };
  const auto& data = j["data"];
  for (std::size_t di = 0; di < data.size(); ++di) {
    const std::string at_d = file + " data[" + std::to_string(di) + "]: ";
    const auto& article = data[di];
    if (!article.is_object()) throw io_error(at_d + "an object expected, got " + detail::data_brief(article));
    const auto& paragraphs = get(article, "paragraphs");
    if (!paragraphs.is_array())
      throw io_error(at_d + "a \"paragraphs\" array expected, got " + detail::data_brief(paragraphs));
    for (std::size_t pi = 0; pi < paragraphs.size(); ++pi) {
      const std::string at_p =
          file + " data[" + std::to_string(di) + "].paragraphs[" + std::to_string(pi) + "]: ";
      const auto& para = paragraphs[pi];
      if (!para.is_object()) throw io_error(at_p + "an object expected, got " + detail::data_brief(para));
      const std::string context = detail::task_text(get(para, "context"), at_p, "context");
      const auto& qas = get(para, "qas");
      if (!qas.is_array()) throw io_error(at_p + "a \"qas\" array expected, got " + detail::data_brief(qas));
      for (const auto& qa : qas) {
        const std::size_t number = out.size() + 1;
        std::string at = detail::data_at(where, path, "question", number);
        if (!qa.is_object()) throw io_error(at + "an object expected, got " + detail::data_brief(qa));
        qa_example ex;
        ex.line = number;
        ex.id = detail::task_qa_id(get(qa, "id"), at);
        at = detail::task_qa_at(where, path, "question", number, get(qa, "id"));
        detail::task_qa_unique(seen, ex.id, number, "question", at);
        ex.question = detail::task_text(get(qa, "question"), at, "question");
        ex.context = context;
        const auto& imp = get(qa, "is_impossible");
        if (!imp.is_null() && !imp.is_boolean())
          throw io_error(at + "\"is_impossible\" expected true, false or null, got " +
                         detail::data_brief(imp));
        ex.impossible = imp.is_boolean() && imp.get<bool>();
        const auto& answers = get(qa, "answers");
        if (!answers.is_null() && !answers.is_array())
          throw io_error(at + "\"answers\" expected an array, got " + detail::data_brief(answers));
        if (ex.impossible && !answers.empty()) {
          throw io_error(at +
                         "no answers expected for an unanswerable question (\"is_impossible\": true), got " +
                         std::to_string(answers.size()));
        }
        for (std::size_t k = 0; answers.is_array() && k < answers.size(); ++k) {
          const auto& a = answers[k];
          const std::string at_a = at + "answer " + std::to_string(k + 1) + ": ";
          if (!a.is_object()) throw io_error(at_a + "an object expected, got " + detail::data_brief(a));
          ex.answers.push_back(
              detail::task_qa_answer(ex.context, get(a, "text"), get(a, "answer_start"), at_a));
        }
        if (first_labelled == 0 && (ex.impossible || !ex.answers.empty())) first_labelled = number;
        out.push_back(std::move(ex));
      }
    }
  }
  if (first_labelled != 0) {
    for (const auto& ex : out) {
      if (ex.impossible || !ex.answers.empty()) continue;
      throw io_error(
          detail::task_qa_at(where, path, "question", ex.line, nlohmann::json(ex.id)) +
          "answers expected (the file is labelled: question " + std::to_string(first_labelled) +
          " has answers or is_impossible), got none; mark an unanswerable question \"is_impossible\": true");
    }
  }
  return out;
}

/// Reads reading-comprehension questions from JSON lines in the Hugging Face `datasets` layout:
/// `{"id", "title"?, "question", "context", "answers": {"text": [...], "answer_start": [...]}}`.
/// `answer_start` counts characters as in SQuAD and becomes a byte offset, checked against the
/// text. Absent or null answers make an unlabelled row; empty lists an unanswerable question
/// (`impossible`). Ids must be unique; any key not named here is an error.
/// `qa_example::line` is the line.
/// @throws peft::io_error naming the file and line (and the id once read) on unreadable files,
///         invalid UTF-8, bad JSON, an unknown key, a missing id, an empty question or context,
///         text and answer_start lists of different lengths, a bad answer_start, an answer the
///         context does not hold at answer_start, or a repeated id.
inline std::vector<qa_example> read_qa_jsonl(const std::string& path) {
  static const char* where = "read_qa_jsonl";
  std::vector<qa_example> out;
  std::unordered_map<std::string, std::size_t> seen;
  detail::task_jsonl_objects(
      path, where, [&](const nlohmann::json& j, const std::string& at_line, std::size_t number) {
        for (auto it = j.begin(); it != j.end(); ++it) {
          const std::string& key = it.key();
          if (key != "id" && key != "title" && key != "question" && key != "context" && key != "answers") {
            throw io_error(
                at_line +
                "keys \"id\", \"question\", \"context\", \"answers\" (and \"title\") expected, got \"" + key +
                "\"");
          }
        }
        if (!j.contains("id")) throw io_error(at_line + "an \"id\" key expected, got none");
        qa_example ex;
        ex.line = number;
        ex.id = detail::task_qa_id(j["id"], at_line);
        const std::string at = detail::task_qa_at(where, path, "line", number, j["id"]);
        detail::task_qa_unique(seen, ex.id, number, "line", at);
        const nlohmann::json none;
        ex.question = detail::task_text(j.contains("question") ? j["question"] : none, at, "question");
        ex.context = detail::task_text(j.contains("context") ? j["context"] : none, at, "context");
        if (j.contains("answers") && !j["answers"].is_null()) {
          const auto& a = j["answers"];
          if (!a.is_object())
            throw io_error(
                at +
                "\"answers\" expected an object {\"text\": [...], \"answer_start\": [...]} or null, got " +
                detail::data_brief(a));
          for (auto it = a.begin(); it != a.end(); ++it) {
            if (it.key() != "text" && it.key() != "answer_start")
              throw io_error(at + "\"answers\" keys \"text\" and \"answer_start\" expected, got \"" +
                             it.key() + "\"");
          }
          const auto& texts = a.contains("text") ? a["text"] : none;
          const auto& starts = a.contains("answer_start") ? a["answer_start"] : none;
          if (!texts.is_array())
            throw io_error(at + "\"answers\".\"text\" expected an array, got " + detail::data_brief(texts));
          if (!starts.is_array())
            throw io_error(at + "\"answers\".\"answer_start\" expected an array, got " +
                           detail::data_brief(starts));
          if (texts.size() != starts.size()) {
            throw io_error(at + "\"answers\" \"text\" and \"answer_start\" expected of equal length, got " +
                           std::to_string(texts.size()) + " and " + std::to_string(starts.size()));
          }
          for (std::size_t k = 0; k < texts.size(); ++k) {
            ex.answers.push_back(detail::task_qa_answer(ex.context, texts[k], starts[k],
                                                        at + "answer " + std::to_string(k + 1) + ": "));
          }
          ex.impossible = ex.answers.empty();
        }
        out.push_back(std::move(ex));
      });
  return out;
}

/// Reads reading-comprehension data with the reader its extension names (case-insensitive):
/// `.json` read_squad_json(), `.jsonl` read_qa_jsonl().
/// @throws peft::invalid_argument for any other extension; peft::io_error from the readers.
inline std::vector<qa_example> read_qa_data(const std::string& path) {
  const std::string ext = detail::data_extension(path);
  if (ext == "json") return read_squad_json(path);
  if (ext == "jsonl") return read_qa_jsonl(path);
  throw invalid_argument("read_qa_data: a file extension .json (SQuAD) or .jsonl expected, got \"" +
                         (ext.empty() ? std::string("(none)") : "." + ext) + "\" in " + path);
}

}  // namespace peft

#endif  // PEFT_DATA_TASK_READERS_HPP
