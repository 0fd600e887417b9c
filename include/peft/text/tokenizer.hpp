// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_TOKENIZER_HPP
#define PEFT_TEXT_TOKENIZER_HPP

/// @file tokenizer.hpp
/// What every Hugging Face tokenizer of peft offers (`peft::tokenizer`), so that the task
/// layer, prompt templates and verbalizers work with WordPiece (BERT) and byte-level BPE
/// (RoBERTa, GPT-2) alike; and the pieces both read from `tokenizer.json`: added tokens
/// matched verbatim in the text, and the longest-first rule that truncates a pair.

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/limits.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "unicode.hpp"

namespace peft {

/// A token matched verbatim in the text before normalisation (Hugging Face "added token").
struct added_token {
  std::string content;
  std::int32_t id = 0;
  bool lstrip = false;      ///< swallow whitespace on the left
  bool rstrip = false;      ///< swallow whitespace on the right
  bool normalized = false;  ///< match in the normalised text instead of the raw text
  bool special = true;      ///< dropped by decode(ids, skip_special = true)
};

/// A sub-word tokenizer of a Hugging Face model folder.
///
/// encode() and encode_pair() add the model's special tokens (`[CLS] A [SEP]` for BERT,
/// `<s> A </s>` for RoBERTa) and truncate the text, never the special tokens, to `max_length`.
/// Ids without a role in the model are -1 (GPT-2 has no classifier or mask token).
class tokenizer {
public:
  virtual ~tokenizer() = default;

  /// "wordpiece" or "bpe".
  virtual std::string kind() const = 0;
  /// Tokens of `text`, no special tokens added. @throws peft::invalid_argument on invalid UTF-8
  virtual std::vector<std::string> tokenize(std::string_view text) const = 0;
  /// Ids of tokenize(text). @throws peft::invalid_argument on invalid UTF-8
  virtual std::vector<std::int32_t> piece_ids(std::string_view text) const = 0;
  /// The text's ids between the model's special tokens, at most `max_length` in all.
  /// @throws peft::invalid_argument if `max_length` cannot hold the special tokens, or on invalid UTF-8
  virtual std::vector<std::int32_t> encode(std::string_view text, index max_length) const = 0;
  /// Two texts in the model's pair layout, truncated longest-first (see longest_first()).
  /// @param segments if non-null, receives the token type ids
  virtual std::vector<std::int32_t> encode_pair(std::string_view a, std::string_view b, index max_length,
                                                std::vector<std::int32_t>* segments = nullptr) const = 0;
  /// Text of `ids`, special tokens dropped when `skip_special`.
  /// @throws peft::invalid_argument on an id outside the vocabulary
  virtual std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const = 0;

  /// Id of `token`. @throws peft::invalid_argument if it is not in the vocabulary.
  virtual std::int32_t token_to_id(std::string_view token) const = 0;
  /// Whether `token` is in the vocabulary.
  virtual bool contains(std::string_view token) const = 0;
  /// Token of `id`. @throws peft::invalid_argument if `id` is outside [0, vocab_size()).
  virtual const std::string& id_to_token(std::int32_t id) const = 0;
  virtual index vocab_size() const = 0;

  virtual std::int32_t cls_id() const = 0;
  virtual std::int32_t sep_id() const = 0;
  virtual std::int32_t pad_id() const = 0;
  virtual std::int32_t mask_id() const = 0;
  virtual std::int32_t unk_id() const = 0;
  /// The mask token's text ("[MASK]", "<mask>"); empty when the model has none.
  virtual const std::string& mask_token() const = 0;
  /// Whether the pair layout gives the second text another token type (BERT: yes; RoBERTa,
  /// whose encoder has a single token type: no).
  virtual bool uses_token_types() const = 0;

  /// Lengths (first, second) kept when two parts of `na` and `nb` pieces must fit in `budget`
  /// (Hugging Face tokenizers' `TruncationStrategy::LongestFirst`): nothing is cut if they fit;
  /// otherwise the longer part is cut to `budget - shorter` if that still leaves it at least as
  /// long as the shorter one; otherwise both are cut, the shorter to `budget / 2` and the longer
  /// to `budget - budget / 2` (with equal lengths the second part gets the extra piece).
  static std::pair<std::size_t, std::size_t> longest_first(std::size_t na, std::size_t nb,
                                                           std::size_t budget) {
    if (na + nb <= budget) return {na, nb};
    const bool swap = na > nb;
    std::size_t n1 = swap ? nb : na, n2;  // n1: the shorter part
    n2 = n1 > budget ? n1 : std::max(n1, budget - n1);
    if (n1 + n2 > budget) {
      n1 = budget / 2;
      n2 = n1 + budget % 2;
    }
    if (swap) std::swap(n1, n2);
    return {std::min(na, n1), std::min(nb, n2)};
  }
};

namespace detail {

/// The whole of a text file. @throws peft::io_error naming `where` and the path
inline std::string read_tokenizer_file(const std::string& path, const char* where) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(std::string(where) + ": a readable file expected, got \"" + path + "\"");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad())
    throw io_error(std::string(where) + ": a readable file expected, got a read error on \"" + path + "\"");
  return ss.str();
}

/// `tokenizer.json` parsed under the read limits. @throws peft::io_error on bad JSON
inline nlohmann::json read_tokenizer_json(const std::string& path, const char* where) {
  const std::string text = read_tokenizer_file(path, where);
  nlohmann::json j;
  try {
    j = parse_json_limited(text, std::string(where) + ": " + path);
  } catch (const nlohmann::json::exception& e) {
    throw io_error(std::string(where) + ": valid JSON expected in " + path + ", got " + e.what());
  }
  if (!j.is_object()) throw io_error(std::string(where) + ": " + path + ": top level expected an object");
  return j;
}

/// A JSON value shortened for an error message.
inline std::string brief_json(const nlohmann::json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

/// The `added_tokens` array of a `tokenizer.json` (absent or null: none).
/// @param bad `bad(what, expected, got)` builds the caller's error
template <typename Bad>
std::vector<added_token> read_added_tokens(const nlohmann::json& j, Bad&& bad) {
  std::vector<added_token> added;
  if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return added;
  if (!j["added_tokens"].is_array()) throw bad("added_tokens", "an array", brief_json(j["added_tokens"]));
  std::size_t k = 0;
  for (const auto& a : j["added_tokens"]) {
    const std::string name = "added_tokens[" + std::to_string(k++) + "]";
    if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id") ||
        !a["id"].is_number_integer()) {
      throw bad(name, "an object with string \"content\" and integer \"id\"", brief_json(a));
    }
    added_token t;
    t.content = a["content"].get<std::string>();
    const auto id = a["id"].get<std::int64_t>();
    if (id < 0 || id > 0x7FFFFFFF) throw bad(name + ".id", "a non-negative 32-bit id", std::to_string(id));
    t.id = static_cast<std::int32_t>(id);
    auto get_bool = [&](const char* key, bool& out) {
      if (!a.contains(key) || a[key].is_null()) return;
      if (!a[key].is_boolean()) throw bad(name + "." + key, "a boolean", brief_json(a[key]));
      out = a[key].get<bool>();
    };
    t.special = false;
    get_bool("special", t.special);
    t.normalized = !t.special;
    get_bool("normalized", t.normalized);
    get_bool("lstrip", t.lstrip);
    get_bool("rstrip", t.rstrip);
    bool single_word = false;
    get_bool("single_word", single_word);
    // Matching only whole words needs Hugging Face's word-boundary rule; no model peft reads
    // sets it, so a file that does is refused rather than tokenized differently.
    if (single_word) throw bad(name + ".single_word", "false (not supported)", "true");
    added.push_back(std::move(t));
  }
  return added;
}

/// Removes White_Space from the start (`front`) or the end of valid UTF-8 `s`.
inline std::string_view trim_whitespace(std::string_view s, bool front) {
  const std::u32string cps = unicode::decode_utf8(s);
  std::size_t a = 0, b = cps.size();
  if (front) {
    while (a < b && unicode::is_whitespace(cps[a])) ++a;
  } else {
    while (b > a && unicode::is_whitespace(cps[b - 1])) --b;
  }
  std::size_t byte_a = 0, byte_b = 0;
  for (std::size_t k = 0; k < cps.size(); ++k) {
    std::string tmp;
    unicode::append_utf8(tmp, cps[k]);
    if (k < a) byte_a += tmp.size();
    if (k < b) byte_b += tmp.size();
  }
  return s.substr(byte_a, byte_b - byte_a);
}

/// Splits `text` at the added tokens whose `normalized` flag equals `normalized_pass`
/// (leftmost, then longest match) and calls `emit(section, id)`: id >= 0 for an added token,
/// -1 for the text between them. `lstrip` / `rstrip` tokens swallow the whitespace of the
/// neighbouring text; empty sections are not emitted.
template <typename F>
void split_added(const std::vector<added_token>& added, std::string_view text, bool normalized_pass, F&& emit) {
  std::vector<std::pair<std::string_view, std::int32_t>> parts;
  std::vector<const added_token*> tokens_of;
  std::size_t start = 0, i = 0;
  while (i < text.size()) {
    const added_token* best = nullptr;
    for (const auto& t : added) {
      if (t.normalized != normalized_pass) continue;
      if (text.compare(i, t.content.size(), t.content) == 0 && (!best || t.content.size() > best->content.size()))
        best = &t;
    }
    if (!best) {
      ++i;
      continue;
    }
    if (i > start) {
      parts.emplace_back(text.substr(start, i - start), -1);
      tokens_of.push_back(nullptr);
    }
    parts.emplace_back(text.substr(i, best->content.size()), best->id);
    tokens_of.push_back(best);
    i += best->content.size();
    start = i;
  }
  if (start < text.size()) {
    parts.emplace_back(text.substr(start), -1);
    tokens_of.push_back(nullptr);
  }
  for (std::size_t k = 0; k < parts.size(); ++k) {
    if (!tokens_of[k]) continue;
    if (tokens_of[k]->lstrip && k > 0 && parts[k - 1].second < 0)
      parts[k - 1].first = trim_whitespace(parts[k - 1].first, false);
    if (tokens_of[k]->rstrip && k + 1 < parts.size() && parts[k + 1].second < 0)
      parts[k + 1].first = trim_whitespace(parts[k + 1].first, true);
  }
  for (const auto& [piece, id] : parts) {
    if (!piece.empty()) emit(piece, id);
  }
}

}  // namespace detail
}  // namespace peft

#endif  // PEFT_TEXT_TOKENIZER_HPP
