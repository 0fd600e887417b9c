// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DATA_READERS_HPP
#define PEFT_DATA_READERS_HPP

/// @file readers.hpp
/// Readers that turn data files into a `peft::dataset`.
///
/// | format | reader | rows |
/// |---|---|---|
/// | JSON lines (`.jsonl`) | read_jsonl() | `{"text": ..., "text_b": ..., "label": ...}` per line |
/// | TSV (`.tsv`) | read_tsv() | header row, tab-separated, no quoting (GLUE style) |
/// | CSV (`.csv`) | read_csv() | header row, RFC 4180 (quoted fields, `""`, newlines in quotes) |
/// | npm `sentiment` fixtures (`.json`) | read_sentiment_json() | `[{"text": ..., "class": 0}, ...]` |
/// | npm `wink` chatbot corpus (`.json`) | read_chatbot_json() | `{"sentences": [{"text", "intent",
/// "training"}]}` |
///
/// read_dataset() picks the reader from the extension (and, for `.json`, from the top-level
/// shape). All readers check the whole file up front: invalid UTF-8, bad JSON, a wrong number
/// of fields, a missing or empty text, an unterminated quote or a label of the wrong type throw
/// `peft::io_error` naming the file and the line (or entry) at fault. Blank lines are skipped.
/// A UTF-8 byte-order mark at the start of a file is ignored.
///
/// Header columns of TSV and CSV files (exact, lower-case names): `text`, `sentence` or
/// `sentence1` for the text; `text_b` or `sentence2` for the second text; `label`. Other columns
/// (indices, ids) are ignored. An empty label field means "unlabelled"; an empty second text
/// means "no second text".

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/limits.hpp"
#include "../error.hpp"
#include "../core/file_util.hpp"
#include "dataset.hpp"

namespace peft {

/// Which part of the chatbot corpus read_chatbot_json() keeps (its per-sentence `training` flag).
enum class chatbot_split { all, train, test };

namespace detail {

/// Byte offset of the first invalid UTF-8 sequence in `s` (strict: no overlong forms,
/// surrogates or code points above U+10FFFF), or `npos` if `s` is valid.
inline std::size_t data_utf8_error(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned b0 = p[i];
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0, min = 0;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const unsigned b = p[i + k];
      if ((b & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

/// "<where>: <path> line <n>: " prefix of reader error messages.
inline std::string data_at(const char* where, const std::string& path, const char* unit, std::size_t n) {
  return std::string(where) + ": " + path + " " + unit + " " + std::to_string(n) + ": ";
}

/// Reads a whole file and drops a leading UTF-8 byte-order mark.
inline std::string data_read(const std::string& path, const char* where) {
  std::string bytes = detail::read_file(path, where);
  if (bytes.size() >= 3 && bytes.compare(0, 3, "\xEF\xBB\xBF") == 0) bytes.erase(0, 3);
  return bytes;
}

/// Throws if `s` (line or field `line` of `path`) is not valid UTF-8.
inline void data_check_utf8(std::string_view s, const char* where, const std::string& path, const char* unit,
                            std::size_t line) {
  const std::size_t bad = data_utf8_error(s);
  if (bad != std::string_view::npos) {
    throw io_error(data_at(where, path, unit, line) +
                   "valid UTF-8 expected, got an invalid byte sequence at byte " + std::to_string(bad));
  }
}

inline bool data_is_blank(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

inline std::string data_trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; };
  std::size_t a = 0, b = s.size();
  while (a < b && ws(s[a])) ++a;
  while (b > a && ws(s[b - 1])) --b;
  return std::string(s.substr(a, b - a));
}

/// Short rendering of a JSON value for error messages.
inline std::string data_brief(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

/// Label from a JSON value: a non-empty string, an integer (written in decimal), or null/absent.
inline std::optional<std::string> data_json_label(const nlohmann::json& v, const std::string& prefix,
                                                  const char* key) {
  if (v.is_null()) return std::nullopt;
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.empty())
      throw io_error(prefix + "\"" + key + "\" expected a non-empty string or an integer, got \"\"");
    return s;
  }
  if (v.is_number_integer()) {
    return v.is_number_unsigned() ? std::to_string(v.get<std::uint64_t>())
                                  : std::to_string(v.get<std::int64_t>());
  }
  throw io_error(prefix + "\"" + key + "\" expected a string, an integer or null, got " + data_brief(v));
}

/// Reads a JSONL row's `"text"` (a string) or `"text_b"` (a string, or null / "" for none)
/// into @p ex, setting @p has_text for the first; false for any other key.
inline bool data_text_key(example& ex, const std::string& key, const nlohmann::json& v, const std::string& at,
                          bool& has_text) {
  if (key == "text") {
    if (!v.is_string()) throw io_error(at + "\"text\" expected a string, got " + data_brief(v));
    ex.text = v.get<std::string>();
    has_text = true;
    return true;
  }
  if (key != "text_b") return false;
  if (v.is_null()) return true;
  if (!v.is_string()) throw io_error(at + "\"text_b\" expected a string or null, got " + data_brief(v));
  if (!v.get_ref<const std::string&>().empty()) ex.text_b = v.get<std::string>();
  return true;
}

/// Lower-case extension of @p path without the dot ("" if none): what picks a reader.
inline std::string data_extension(const std::string& path) {
  const std::size_t dot = path.find_last_of('.');
  const std::size_t slash = path.find_last_of('/');
  std::string ext;
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) ext = path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; });
  return ext;
}

/// Column roles of a TSV/CSV header.
struct data_columns {
  std::size_t count = 0;
  std::ptrdiff_t text = -1, text_b = -1, label = -1;
};

inline data_columns data_header(const std::vector<std::string>& names, const char* where,
                                const std::string& path, std::size_t line) {
  data_columns cols;
  cols.count = names.size();
  const std::string at = data_at(where, path, "line", line);
  auto assign = [&](std::ptrdiff_t& slot, std::size_t k, const char* role) {
    if (slot >= 0) {
      throw io_error(at + "one " + role + " column expected in the header, got \"" +
                     names[static_cast<std::size_t>(slot)] + "\" and \"" + names[k] + "\"");
    }
    slot = static_cast<std::ptrdiff_t>(k);
  };
  for (std::size_t k = 0; k < names.size(); ++k) {
    const std::string name = data_trim(names[k]);
    if (name == "text" || name == "sentence" || name == "sentence1") {
      assign(cols.text, k, "text");
    } else if (name == "text_b" || name == "sentence2") {
      assign(cols.text_b, k, "second-text");
    } else if (name == "label") {
      assign(cols.label, k, "label");
    }
  }
  if (cols.text < 0) {
    std::string got;
    for (const auto& n : names) got += (got.empty() ? "\"" : ", \"") + n + "\"";
    throw io_error(at + "a header with a text column (text, sentence or sentence1) expected, got " +
                   (got.empty() ? std::string("an empty header") : got));
  }
  return cols;
}

inline example data_row(std::vector<std::string>& fields, const data_columns& cols, const char* where,
                        const std::string& path, std::size_t line) {
  const std::string at = data_at(where, path, "line", line);
  if (fields.size() != cols.count) {
    throw io_error(at + "fields expected " + std::to_string(cols.count) + " (as in the header), got " +
                   std::to_string(fields.size()));
  }
  example ex;
  ex.line = line;
  ex.text = std::move(fields[static_cast<std::size_t>(cols.text)]);
  if (data_is_blank(ex.text)) throw io_error(at + "a non-empty text expected, got an empty field");
  if (cols.text_b >= 0 && !fields[static_cast<std::size_t>(cols.text_b)].empty())
    ex.text_b = std::move(fields[static_cast<std::size_t>(cols.text_b)]);
  if (cols.label >= 0) {
    std::string label = data_trim(fields[static_cast<std::size_t>(cols.label)]);
    if (!label.empty()) ex.label = std::move(label);
  }
  return ex;
}

/// Calls f(line_text, line_number) for every line (without its `\n` or trailing `\r`).
template <typename F>
void data_for_each_line(std::string_view content, F&& f) {
  std::size_t pos = 0, line = 0;
  while (pos < content.size()) {
    std::size_t end = content.find('\n', pos);
    if (end == std::string_view::npos) end = content.size();
    std::string_view s = content.substr(pos, end - pos);
    if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
    f(s, ++line);
    pos = end + 1;
  }
}

inline dataset data_sentiment_from_json(const nlohmann::json& j, const char* where, const std::string& path) {
  if (!j.is_array())
    throw io_error(std::string(where) + ": " + path + ": a top-level array expected, got " + data_brief(j));
  dataset out;
  std::size_t entry = 0;
  for (const auto& item : j) {
    ++entry;
    const std::string at = data_at(where, path, "entry", entry);
    if (!item.is_object()) throw io_error(at + "an object expected, got " + data_brief(item));
    const nlohmann::json none;
    const auto& text = item.contains("text") ? item["text"] : none;
    const auto& cls = item.contains("class") ? item["class"] : none;
    // The fixtures end with {"text": "", "class": null}: skip such empty placeholders.
    if ((text.is_null() || (text.is_string() && data_is_blank(text.get_ref<const std::string&>()))) &&
        cls.is_null())
      continue;
    if (!text.is_string()) throw io_error(at + "\"text\" expected a string, got " + data_brief(text));
    example ex;
    ex.text = data_trim(text.get_ref<const std::string&>());
    if (ex.text.empty()) throw io_error(at + "a non-empty \"text\" expected, got \"\"");
    ex.label = data_json_label(cls, at, "class");
    ex.line = entry;
    out.push_back(std::move(ex));
  }
  return out;
}

inline dataset data_chatbot_from_json(const nlohmann::json& j, chatbot_split split, const char* where,
                                      const std::string& path) {
  if (!j.is_object() || !j.contains("sentences") || !j["sentences"].is_array()) {
    throw io_error(std::string(where) + ": " + path +
                   ": a top-level object with a \"sentences\" array expected, got " + data_brief(j));
  }
  dataset out;
  std::size_t entry = 0;
  for (const auto& item : j["sentences"]) {
    ++entry;
    const std::string at = data_at(where, path, "entry", entry);
    if (!item.is_object()) throw io_error(at + "an object expected, got " + data_brief(item));
    if (!item.contains("text") || !item["text"].is_string())
      throw io_error(at + "\"text\" expected a string, got " +
                     (item.contains("text") ? data_brief(item["text"]) : "none"));
    if (!item.contains("intent") || !item["intent"].is_string() ||
        item["intent"].get_ref<const std::string&>().empty())
      throw io_error(at + "\"intent\" expected a non-empty string, got " +
                     (item.contains("intent") ? data_brief(item["intent"]) : "none"));
    if (!item.contains("training") || !item["training"].is_boolean())
      throw io_error(at + "\"training\" expected true or false, got " +
                     (item.contains("training") ? data_brief(item["training"]) : "none"));
    const bool training = item["training"].get<bool>();
    if ((split == chatbot_split::train && !training) || (split == chatbot_split::test && training)) continue;
    example ex;
    ex.text = data_trim(item["text"].get_ref<const std::string&>());
    if (ex.text.empty()) throw io_error(at + "a non-empty \"text\" expected, got \"\"");
    ex.label = item["intent"].get<std::string>();
    ex.line = entry;
    out.push_back(std::move(ex));
  }
  return out;
}

inline nlohmann::json data_parse_json_file(const std::string& path, const char* where) {
  const std::string content = data_read(path, where);
  const std::size_t bad = data_utf8_error(content);
  if (bad != std::string::npos) {
    const auto line = 1 + static_cast<std::size_t>(std::count(
                              content.begin(), content.begin() + static_cast<std::ptrdiff_t>(bad), '\n'));
    throw io_error(data_at(where, path, "line", line) +
                   "valid UTF-8 expected, got an invalid byte sequence at byte " + std::to_string(bad) +
                   " of the file");
  }
  try {
    return detail::parse_json_limited(content, std::string(where) + ": " + path);
  } catch (const nlohmann::json::exception& e) {
    throw io_error(std::string(where) + ": " + path + ": valid JSON expected, got " + e.what());
  }
}

}  // namespace detail

/// Reads a JSON-lines file: one object per non-blank line with a string `"text"` (required,
/// non-empty), a string `"text_b"` (optional; null or "" mean none) and a `"label"` that is a
/// non-empty string or an integer (written in decimal), or null/absent for unlabelled rows.
/// The keys `"id"`, `"idx"` and `"guid"` are allowed and ignored; any other key is an error
/// (so a misspelt `"lable"` or a `"class"` field is not silently read as unlabelled data).
/// @throws peft::io_error naming the file and line on unreadable files, invalid UTF-8, bad JSON,
///         a non-object line, a missing or empty text, an unknown key or a wrongly typed value.
inline dataset read_jsonl(const std::string& path) {
  static const char* where = "read_jsonl";
  const std::string content = detail::data_read(path, where);
  dataset out;
  detail::data_for_each_line(content, [&](std::string_view line, std::size_t number) {
    if (detail::data_is_blank(line)) return;
    detail::data_check_utf8(line, where, path, "line", number);
    const std::string at = detail::data_at(where, path, "line", number);
    nlohmann::json j;
    try {
      j = detail::parse_json_limited(line, at.substr(0, at.size() - 2));  // `at` ends in ": "
    } catch (const nlohmann::json::exception& e) {
      throw io_error(at + "valid JSON expected, got " + e.what());
    }
    if (!j.is_object()) throw io_error(at + "a JSON object expected, got " + detail::data_brief(j));
    example ex;
    ex.line = number;
    bool has_text = false;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& key = it.key();
      const auto& v = it.value();
      if (detail::data_text_key(ex, key, v, at, has_text)) {
        continue;
      } else if (key == "label") {
        ex.label = detail::data_json_label(v, at, "label");
      } else if (key != "id" && key != "idx" && key != "guid") {
        throw io_error(
            at + "keys \"text\", \"text_b\", \"label\" (and \"id\", \"idx\", \"guid\") expected, got \"" +
            key + "\"");
      }
    }
    if (!has_text) throw io_error(at + "a \"text\" key expected, got none");
    if (detail::data_is_blank(ex.text))
      throw io_error(at + "a non-empty \"text\" expected, got \"" + ex.text + "\"");
    out.push_back(std::move(ex));
  });
  return out;
}

/// Reads a tab-separated file with a header row (see the file comment for column names).
/// Fields are split at every tab; there is no quoting, as in the GLUE and LM-BFF `.tsv` files.
/// @throws peft::io_error naming the file and line on unreadable files, invalid UTF-8, a header
///         without a text column, a row whose field count differs from the header's, or an
///         empty text.
inline dataset read_tsv(const std::string& path) {
  static const char* where = "read_tsv";
  const std::string content = detail::data_read(path, where);
  dataset out;
  std::optional<detail::data_columns> cols;
  detail::data_for_each_line(content, [&](std::string_view line, std::size_t number) {
    if (line.empty()) return;
    detail::data_check_utf8(line, where, path, "line", number);
    std::vector<std::string> fields;
    std::size_t pos = 0;
    while (true) {
      const std::size_t tab = line.find('\t', pos);
      fields.emplace_back(
          line.substr(pos, tab == std::string_view::npos ? std::string_view::npos : tab - pos));
      if (tab == std::string_view::npos) break;
      pos = tab + 1;
    }
    if (!cols) {
      cols = detail::data_header(fields, where, path, number);
      return;
    }
    out.push_back(detail::data_row(fields, *cols, where, path, number));
  });
  if (!cols) throw io_error(std::string(where) + ": " + path + ": a header row expected, got an empty file");
  return out;
}

/// Reads a comma-separated file with a header row, quoted as RFC 4180 says: a field that
/// starts with `"` runs to the next lone `"` and may hold commas, newlines and `""` (one quote);
/// CRLF and LF line ends are both accepted. Example lines are the lines records start on.
/// @throws peft::io_error naming the file and line on unreadable files, invalid UTF-8, an
///         unterminated quoted field, text after a closing quote, a quote inside an unquoted
///         field, a header without a text column, a wrong field count or an empty text.
inline dataset read_csv(const std::string& path) {
  static const char* where = "read_csv";
  const std::string content = detail::data_read(path, where);
  dataset out;
  std::optional<detail::data_columns> cols;
  const std::size_t n = content.size();
  std::size_t i = 0, line = 1;
  while (i < n) {
    // One record, starting at `line`.
    const std::size_t start_line = line;
    const std::string at = detail::data_at(where, path, "line", start_line);
    std::vector<std::string> fields;
    std::string field;
    bool end_of_record = false;
    // Blank line: skip.
    if (content[i] == '\n' || (content[i] == '\r' && i + 1 < n && content[i + 1] == '\n')) {
      i += content[i] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    while (!end_of_record) {
      field.clear();
      if (i < n && content[i] == '"') {
        ++i;
        bool closed = false;
        while (i < n) {
          const char c = content[i];
          if (c == '"') {
            if (i + 1 < n && content[i + 1] == '"') {
              field.push_back('"');
              i += 2;
              continue;
            }
            ++i;
            closed = true;
            break;
          }
          if (c == '\n') ++line;
          field.push_back(c);
          ++i;
        }
        if (!closed)
          throw io_error(
              at + "a closing quote expected for the quoted field that starts here, got the end of the file");
        // After the closing quote: a separator, a line end or the end of the file.
        if (i < n && content[i] != ',' && content[i] != '\n' &&
            !(content[i] == '\r' && i + 1 < n && content[i + 1] == '\n')) {
          throw io_error(detail::data_at(where, path, "line", line) +
                         "a comma or a line end expected after a closing quote, got '" +
                         std::string(1, content[i]) + "'");
        }
      } else {
        while (i < n && content[i] != ',' && content[i] != '\n' &&
               !(content[i] == '\r' && i + 1 < n && content[i + 1] == '\n')) {
          if (content[i] == '"') {
            throw io_error(at +
                           "no quote inside an unquoted field expected (quote the whole field and double the "
                           "quote), got '\"' in \"" +
                           field + "\"...");
          }
          field.push_back(content[i++]);
        }
      }
      detail::data_check_utf8(field, where, path, "line", start_line);
      fields.push_back(field);
      if (i >= n) {
        end_of_record = true;
      } else if (content[i] == ',') {
        ++i;
      } else {  // line end
        i += content[i] == '\r' ? 2 : 1;
        ++line;
        end_of_record = true;
      }
    }
    if (!cols) {
      cols = detail::data_header(fields, where, path, start_line);
    } else {
      out.push_back(detail::data_row(fields, *cols, where, path, start_line));
    }
  }
  if (!cols) throw io_error(std::string(where) + ": " + path + ": a header row expected, got an empty file");
  return out;
}

/// Reads a test fixture of the npm `sentiment` package (`test/fixtures/{imdb,yelp,amazon}.json`):
/// a JSON array of `{"text": ..., "class": 0|1}`. Texts are trimmed (the fixtures end every
/// sentence with two spaces); `class` becomes the label string ("0", "1"); a string class is
/// kept as is and a null class with a text gives an unlabelled example. Placeholder entries
/// with an empty text and a null class (each fixture ends with one) are skipped. `line` is the
/// 1-based entry number.
/// @throws peft::io_error naming the file (and entry) on unreadable files, invalid UTF-8, bad
///         JSON, a non-array top level, a non-object entry, a missing text or a bad class.
inline dataset read_sentiment_json(const std::string& path) {
  static const char* where = "read_sentiment_json";
  return detail::data_sentiment_from_json(detail::data_parse_json_file(path, where), where, path);
}

/// Reads the chatbot corpus of the npm `wink-naive-bayes-text-classifier` package
/// (`chatbot-example/chatbot-training-data.json`): `{"sentences": [{"text", "intent",
/// "training", "entities"}]}`. The label is the intent; `split` keeps the sentences flagged
/// `"training": true` (train), false (test) or all of them. Entities are ignored. `line` is the
/// 1-based position in the `sentences` array.
/// @throws peft::io_error naming the file (and entry) on unreadable files, bad JSON, or an
///         entry without a non-empty text, a non-empty intent and a boolean training flag.
inline dataset read_chatbot_json(const std::string& path, chatbot_split split = chatbot_split::all) {
  static const char* where = "read_chatbot_json";
  return detail::data_chatbot_from_json(detail::data_parse_json_file(path, where), split, where, path);
}

/// Reads `path` with the reader its extension names (case-insensitive): `.jsonl` read_jsonl(),
/// `.tsv` read_tsv(), `.csv` read_csv(); `.json` read_sentiment_json() when the top level is an
/// array and read_chatbot_json() (all sentences) when it is an object with `"sentences"`.
/// @throws peft::invalid_argument for any other extension; peft::io_error from the readers.
inline dataset read_dataset(const std::string& path) {
  static const char* where = "read_dataset";
  const std::string ext = detail::data_extension(path);
  if (ext == "jsonl") return read_jsonl(path);
  if (ext == "tsv") return read_tsv(path);
  if (ext == "csv") return read_csv(path);
  if (ext == "json") {
    const nlohmann::json j = detail::data_parse_json_file(path, where);
    if (j.is_array()) return detail::data_sentiment_from_json(j, "read_sentiment_json", path);
    if (j.is_object() && j.contains("sentences"))
      return detail::data_chatbot_from_json(j, chatbot_split::all, "read_chatbot_json", path);
    throw io_error(std::string(where) + ": " + path +
                   ": a JSON array of {text, class} or an object with \"sentences\" expected, got " +
                   detail::data_brief(j));
  }
  throw invalid_argument(std::string(where) +
                         ": a file extension .jsonl, .tsv, .csv or .json expected, got \"" +
                         (ext.empty() ? std::string("(none)") : "." + ext) + "\" in " + path);
}

}  // namespace peft

#endif  // PEFT_DATA_READERS_HPP
