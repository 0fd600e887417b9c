// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_WORDPIECE_HPP
#define PEFT_TEXT_WORDPIECE_HPP

/// @file wordpiece.hpp
/// BERT's tokenizer: basic tokenisation (clean-up, CJK splitting, lower-casing with accent
/// stripping, whitespace and punctuation splitting) then greedy longest-match-first WordPiece
/// with `##` continuations, as Hugging Face `tokenizers` does it for BERT checkpoints
/// (`BertNormalizer` + `BertPreTokenizer` + `WordPiece` + `TemplateProcessing`).
///
/// Special tokens written literally in the text ("It was [MASK].") are matched first, on the
/// raw text, leftmost-longest, and map to their ids, as Hugging Face's added tokens do.
///
/// Known differences from tokenizers.js 0.2.0 (the test reference), where this class follows
/// the Rust and Python BERT tokenizers instead: CJK ideographs outside the Basic Multilingual
/// Plane (Extension B and later) are split into words of their own (tokenizers.js tests UTF-16
/// code units and misses them), and unassigned code points are removed as control characters.

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/types.hpp"
#include "../core/limits.hpp"
#include "../error.hpp"
#include "tokenizer.hpp"
#include "unicode.hpp"

namespace peft {

/// Options of the BERT basic tokeniser and the WordPiece model.
struct wordpiece_options {
  bool clean_text = true;                ///< drop NUL, U+FFFD and control characters; whitespace to ' '
  bool handle_chinese_chars = true;      ///< put spaces around CJK ideographs
  bool lowercase = true;                 ///< full Unicode lower-casing
  std::optional<bool> strip_accents;     ///< NFD and drop Mn marks; unset: follow `lowercase`
  index max_input_chars_per_word = 100;  ///< longer words become the unknown token
  std::string continuing_subword_prefix = "##";
  std::string unk_token = "[UNK]";
  std::string cls_token = "[CLS]";
  std::string sep_token = "[SEP]";
  std::string pad_token = "[PAD]";
  std::string mask_token = "[MASK]";
  /// Where the special tokens go; unset: `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]` (B's
  /// part token type 1), BERT's layout.
  std::optional<special_layout> layout;
};

/// BERT WordPiece tokenizer.
///
/// Ids produced by encode() start with `[CLS]` and end with `[SEP]`; encode_pair() builds
/// `[CLS] A [SEP] B [SEP]` with segment ids 0 for the first part and 1 for the second, unless
/// the tokenizer.json's post-processor says otherwise (MPNet: `<s> A </s></s> B </s>`).
class wordpiece_tokenizer : public layout_tokenizer {
public:
  /// Builds a tokenizer from the vocabulary in id order.
  /// @throws peft::invalid_argument on an empty vocabulary, a duplicate or empty token, a
  ///         missing special token, or max_input_chars_per_word < 1.
  explicit wordpiece_tokenizer(std::vector<std::string> vocab, wordpiece_options options = {},
                               std::vector<added_token> added = {})
      : m_options(std::move(options)) {
    m_vocab = std::move(vocab);
    build("wordpiece_tokenizer::wordpiece_tokenizer", std::move(added));
  }

  /// Reads a `vocab.txt` (one token per line, id = line number - 1). The special tokens
  /// `[PAD] [UNK] [CLS] [SEP] [MASK]` must be present; `lowercase` also turns on accent
  /// stripping, as for `bert-base-uncased`.
  /// @throws peft::io_error if the file cannot be read, is empty, holds invalid UTF-8, an empty
  ///         line or a duplicate token (naming the file and line), or lacks a special token.
  static wordpiece_tokenizer from_vocab_txt(const std::string& path, bool lowercase = true) {
    static const char* where = "wordpiece_tokenizer::from_vocab_txt";
    const std::string text = detail::read_tokenizer_file(path, where);
    std::vector<std::string> vocab;
    std::unordered_map<std::string, std::size_t> line_of;
    std::size_t pos = 0, line = 0;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string token = text.substr(pos, end - pos);
      pos = end + 1;
      ++line;
      if (!token.empty() && token.back() == '\r') token.pop_back();
      const std::string at = path + " line " + std::to_string(line);
      if (token.empty())
        throw io_error(std::string(where) + ": a token expected at " + at + ", got an empty line");
      try {
        unicode::decode_utf8(token);
      } catch (const invalid_argument&) {
        throw io_error(std::string(where) + ": valid UTF-8 expected at " + at + ", got invalid bytes");
      }
      auto [it, inserted] = line_of.emplace(token, line);
      if (!inserted) {
        throw io_error(std::string(where) + ": unique tokens expected, got \"" + token + "\" again at " + at +
                       " (first at line " + std::to_string(it->second) + ")");
      }
      vocab.push_back(std::move(token));
    }
    if (vocab.empty())
      throw io_error(std::string(where) + ": at least one token expected in " + path + ", got none");
    wordpiece_options opt;
    opt.lowercase = lowercase;
    try {
      return wordpiece_tokenizer(std::move(vocab), opt);
    } catch (const invalid_argument& e) {
      throw io_error(std::string(where) + ": " + path + ": " + e.what());
    }
  }

  /// Reads a Hugging Face `tokenizer.json` whose model is WordPiece. Understood: normalizer
  /// `BertNormalizer` (or null), pre-tokenizer `BertPreTokenizer`, post-processor
  /// `TemplateProcessing` or `BertProcessing` (for the `[CLS]`/`[SEP]` names), `padding.pad_token`,
  /// `added_tokens`, and the model's `vocab`, `unk_token`, `continuing_subword_prefix`,
  /// `max_input_chars_per_word`. The mask token is `[MASK]`.
  /// @throws peft::io_error on unreadable or malformed files, other model / normaliser /
  ///         pre-tokeniser types, vocabularies whose ids are not 0..n-1, or missing special tokens.
  static wordpiece_tokenizer from_tokenizer_json(const std::string& path) {
    static const char* where = "wordpiece_tokenizer::from_tokenizer_json";
    return from_json(detail::read_tokenizer_json(path, where), path, where);
  }

  /// Reads a `tokenizer.json` already parsed (see from_tokenizer_json); `path` names it in errors.
  static wordpiece_tokenizer from_json(const nlohmann::json& j, const std::string& path,
                                       const char* where = "wordpiece_tokenizer::from_json") {
    auto bad = [&](const std::string& what, const std::string& expected, const std::string& got) {
      return io_error(std::string(where) + ": " + path + ": " + what + " expected " + expected + ", got " +
                      got);
    };
    auto brief = detail::brief_json;
    if (!j.contains("model") || !j["model"].is_object()) throw bad("\"model\"", "an object", "none");
    const auto& model = j["model"];
    if (model.contains("type") && model["type"] != "WordPiece") {
      throw bad("model.type", "\"WordPiece\"", brief(model["type"]));
    }
    if (!model.contains("vocab") || !model["vocab"].is_object())
      throw bad("model.vocab", "an object", "none");
    wordpiece_options opt;
    auto get_string = [&](const nlohmann::json& obj, const char* key, const std::string& name,
                          std::string& out) {
      if (!obj.contains(key) || obj[key].is_null()) return;
      if (!obj[key].is_string()) throw bad(name, "a string", brief(obj[key]));
      out = obj[key].get<std::string>();
    };
    auto get_bool = [&](const nlohmann::json& obj, const char* key, const std::string& name, bool& out) {
      if (!obj.contains(key) || obj[key].is_null()) return;
      if (!obj[key].is_boolean()) throw bad(name, "a boolean", brief(obj[key]));
      out = obj[key].get<bool>();
    };
    get_string(model, "unk_token", "model.unk_token", opt.unk_token);
    get_string(model, "continuing_subword_prefix", "model.continuing_subword_prefix",
               opt.continuing_subword_prefix);
    if (model.contains("max_input_chars_per_word") && !model["max_input_chars_per_word"].is_null()) {
      if (!detail::json_to_integer(model["max_input_chars_per_word"], opt.max_input_chars_per_word)) {
        throw bad("model.max_input_chars_per_word", "an integer", brief(model["max_input_chars_per_word"]));
      }
    }
    // Normaliser.
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      const auto& n = j["normalizer"];
      if (!n.is_object() || n.value("type", "") != "BertNormalizer") {
        throw bad("normalizer.type", "\"BertNormalizer\" or a null normalizer", brief(n));
      }
      get_bool(n, "clean_text", "normalizer.clean_text", opt.clean_text);
      get_bool(n, "handle_chinese_chars", "normalizer.handle_chinese_chars", opt.handle_chinese_chars);
      get_bool(n, "lowercase", "normalizer.lowercase", opt.lowercase);
      if (n.contains("strip_accents") && !n["strip_accents"].is_null()) {
        bool s = false;
        get_bool(n, "strip_accents", "normalizer.strip_accents", s);
        opt.strip_accents = s;
      }
    } else {
      opt.clean_text = opt.handle_chinese_chars = opt.lowercase = false;
      opt.strip_accents = false;
    }
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      const auto& p = j["pre_tokenizer"];
      if (!p.is_object() || p.value("type", "") != "BertPreTokenizer") {
        throw bad("pre_tokenizer.type", "\"BertPreTokenizer\"", brief(p));
      }
    }
    if (j.contains("padding") && j["padding"].is_object())
      get_string(j["padding"], "pad_token", "padding.pad_token", opt.pad_token);
    // Vocabulary, by id.
    const auto& v = model["vocab"];
    std::vector<std::string> vocab(v.size());
    std::vector<bool> seen(v.size(), false);
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!it.value().is_number_integer())
        throw bad("model.vocab[\"" + it.key() + "\"]", "an integer id", brief(it.value()));
      const auto id = it.value().get<std::int64_t>();
      if (id < 0 || id >= static_cast<std::int64_t>(v.size())) {
        throw bad("model.vocab[\"" + it.key() + "\"]", "an id in [0, " + std::to_string(v.size()) + ")",
                  std::to_string(id));
      }
      const auto k = static_cast<std::size_t>(id);
      if (seen[k])
        throw bad("model.vocab ids", "unique",
                  "id " + std::to_string(id) + " for \"" + vocab[k] + "\" and \"" + it.key() + "\"");
      seen[k] = true;
      vocab[k] = it.key();
    }
    std::vector<added_token> added = detail::read_added_tokens(j, bad);
    // Special tokens from the post-processor (BERT's layout when there is none).
    if (j.contains("post_processor") && !j["post_processor"].is_null())
      opt.layout = detail::read_post_processor(j, bad, vocab, added, opt.cls_token, opt.sep_token);
    // RoBERTa-style names where BERT's are absent (MPNet's vocabulary).
    for (auto [role, alt] : {std::pair<std::string*, const char*>{&opt.mask_token, "<mask>"}, {&opt.pad_token, "<pad>"}})
      if (detail::token_id_in(vocab, added, *role) < 0 && detail::token_id_in(vocab, added, alt) >= 0) *role = alt;
    try {
      return wordpiece_tokenizer(std::move(vocab), opt, std::move(added));
    } catch (const invalid_argument& e) {
      throw io_error(std::string(where) + ": " + path + ": " + e.what());
    }
  }

  std::string kind() const override { return "wordpiece"; }

  /// Word pieces of `text` (no special tokens added).
  /// @throws peft::invalid_argument if `text` is not valid UTF-8.
  std::vector<std::string> tokenize(std::string_view text) const override {
    std::vector<std::string> out;
    run(text, "wordpiece_tokenizer::tokenize",
        [&](std::string_view piece, std::int32_t) { out.emplace_back(piece); });
    return out;
  }

  /// Text of `ids` as Hugging Face's WordPiece decoder writes it: pieces joined by spaces,
  /// `##` continuations glued to the piece before, then the clean-up of spaces before
  /// punctuation and English contractions (`cleanup: true`).
  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const override {
    std::string out;
    for (std::int32_t id : ids) {
      const std::string& t = id_to_token(id);
      if (skip_special && is_special(id)) continue;
      const std::string& prefix = m_options.continuing_subword_prefix;
      if (!prefix.empty() && t.compare(0, prefix.size(), prefix) == 0) {
        out += t.substr(prefix.size());
      } else {
        if (!out.empty()) out += ' ';
        out += t;
      }
    }
    for (const char* pattern : {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"}) {
      const std::string from(pattern), to = from == " ' " ? "'" : from.substr(1);
      for (std::size_t pos = out.find(from); pos != std::string::npos; pos = out.find(from, pos + to.size()))
        out.replace(pos, from.size(), to);
    }
    return out;
  }

  const std::string& mask_token() const noexcept override { return m_options.mask_token; }
  const wordpiece_options& options() const noexcept { return m_options; }

private:
  void build(const char* where, std::vector<added_token> added) {
    if (m_vocab.empty())
      throw invalid_argument(std::string(where) + ": a non-empty vocabulary expected, got 0 tokens");
    if (m_options.max_input_chars_per_word < 1) {
      throw invalid_argument(detail::expected_got(where, "max_input_chars_per_word", ">= 1",
                                                  m_options.max_input_chars_per_word));
    }
    // Added tokens may extend the vocabulary (ids past its end fill it up). Every id needs a
    // token, so an id beyond vocabulary + added tokens leaves a gap: refuse it before resizing.
    const std::size_t max_size = m_vocab.size() + added.size();
    for (const auto& t : added) {
      const auto id = static_cast<std::size_t>(t.id);
      if (id >= max_size)
        throw invalid_argument(std::string(where) + ": added token '" + t.content + "' id expected < " +
                               std::to_string(max_size) + " (" + std::to_string(m_vocab.size()) + " tokens + " +
                               std::to_string(added.size()) + " added), got " + std::to_string(id));
      if (id >= m_vocab.size()) m_vocab.resize(id + 1);
      if (m_vocab[id].empty()) m_vocab[id] = t.content;
    }
    m_ids.reserve(m_vocab.size());
    for (std::size_t i = 0; i < m_vocab.size(); ++i) {
      if (m_vocab[i].empty())
        throw invalid_argument(std::string(where) + ": a token expected for id " + std::to_string(i) +
                               ", got none");
      if (!m_ids.emplace(m_vocab[i], static_cast<std::int32_t>(i)).second) {
        throw invalid_argument(std::string(where) + ": unique tokens expected, got \"" + m_vocab[i] +
                               "\" twice (id " + std::to_string(i) + ")");
      }
    }
    auto special = [&](const std::string& token, const char* role) {
      auto it = m_ids.find(token);
      if (it == m_ids.end()) {
        throw invalid_argument(std::string(where) + ": " + role + " token \"" + token +
                               "\" expected in the vocabulary, got none");
      }
      return it->second;
    };
    m_unk = special(m_options.unk_token, "unknown");
    m_cls = special(m_options.cls_token, "classifier");
    m_sep = special(m_options.sep_token, "separator");
    m_pad = special(m_options.pad_token, "padding");
    m_mask = special(m_options.mask_token, "mask");
    m_layout = m_options.layout ? *m_options.layout : special_layout::bert(m_cls, m_sep);
    for (const auto* items : {&m_layout.single, &m_layout.pair})
      for (std::int32_t id : *items)
        if (id < -2 || id >= static_cast<std::int32_t>(m_vocab.size()))
          throw invalid_argument(std::string(where) + ": post-processor token ids expected in the vocabulary, got " +
                                 std::to_string(id));
    if (added.empty()) {
      for (const std::string* s : {&m_options.pad_token, &m_options.unk_token, &m_options.cls_token,
                                   &m_options.sep_token, &m_options.mask_token}) {
        added.push_back({*s, m_ids.at(*s), false, false, false, true});
      }
    }
    for (auto& t : added) {
      if (t.content.empty())
        throw invalid_argument(std::string(where) + ": non-empty added tokens expected, got an empty one");
      if (t.normalized) t.content = unicode::encode_utf8(normalize(unicode::decode_utf8(t.content, where)));
    }
    m_added = std::move(added);
  }

  bool is_special(std::int32_t id) const {
    if (id == m_unk || id == m_cls || id == m_sep || id == m_pad || id == m_mask) return true;
    return std::any_of(m_added.begin(), m_added.end(), [&](const added_token& t) { return t.special && t.id == id; });
  }

  std::u32string normalize(std::u32string text) const {
    if (m_options.clean_text) {
      std::u32string out;
      out.reserve(text.size());
      for (char32_t c : text) {
        if (c == 0 || c == 0xFFFD || unicode::is_control(c)) continue;
        out.push_back(unicode::is_whitespace(c) ? U' ' : c);
      }
      text.swap(out);
    }
    if (m_options.handle_chinese_chars) {
      std::u32string out;
      out.reserve(text.size());
      for (char32_t c : text) {
        if (unicode::is_cjk(c)) {
          out.push_back(U' ');
          out.push_back(c);
          out.push_back(U' ');
        } else {
          out.push_back(c);
        }
      }
      text.swap(out);
    }
    if (m_options.lowercase) text = unicode::to_lower(text);
    if (m_options.strip_accents.value_or(m_options.lowercase)) text = unicode::strip_accents(text);
    return text;
  }

  /// Calls emit(piece, id) for every word piece of `text` (special tokens included).
  template <typename F>
  void run(std::string_view text, const char* where, F&& emit) const {
    unicode::decode_utf8(text, where);  // validate once, up front
    detail::split_added(m_added, text, false, [&](std::string_view section, std::int32_t id) {
      if (id >= 0) {
        emit(section, id);
        return;
      }
      const std::string normalized = unicode::encode_utf8(normalize(unicode::decode_utf8(section, where)));
      detail::split_added(m_added, normalized, true, [&](std::string_view sub, std::int32_t sub_id) {
        if (sub_id >= 0) {
          emit(sub, sub_id);
        } else {
          word_pieces(sub, emit);
        }
      });
    });
  }

  /// BERT pre-tokenisation (whitespace and punctuation) then WordPiece, on normalised text.
  template <typename F>
  void word_pieces(std::string_view text, F& emit) const {
    const std::u32string cps = unicode::decode_utf8(text);
    std::string word, candidate;
    std::vector<std::size_t> bounds;  // byte offset of every code point of `word`, plus the end
    auto flush = [&]() {
      if (bounds.empty()) return;
      bounds.push_back(word.size());
      wordpiece(word, bounds, candidate, emit);
      word.clear();
      bounds.clear();
    };
    for (char32_t c : cps) {
      if (unicode::is_whitespace(c)) {
        flush();
      } else if (unicode::is_punctuation(c)) {
        flush();
        bounds.push_back(0);
        unicode::append_utf8(word, c);
        flush();
      } else {
        bounds.push_back(word.size());
        unicode::append_utf8(word, c);
      }
    }
    flush();
  }

  template <typename F>
  void wordpiece(const std::string& word, const std::vector<std::size_t>& bounds, std::string& candidate,
                 F& emit) const {
    const std::size_t n = bounds.size() - 1;  // code points
    if (n > static_cast<std::size_t>(m_options.max_input_chars_per_word)) {
      emit(m_options.unk_token, m_unk);
      return;
    }
    std::vector<std::pair<std::size_t, std::int32_t>> pieces;  // (end code point, id)
    std::size_t start = 0;
    while (start < n) {
      std::size_t end = n;
      std::int32_t found = -1;
      for (; end > start; --end) {
        candidate.clear();
        if (start > 0) candidate += m_options.continuing_subword_prefix;
        candidate.append(word, bounds[start], bounds[end] - bounds[start]);
        auto it = m_ids.find(candidate);
        if (it != m_ids.end()) {
          found = it->second;
          break;
        }
      }
      if (found < 0) {
        emit(m_options.unk_token, m_unk);
        return;
      }
      pieces.emplace_back(end, found);
      start = end;
    }
    for (const auto& p : pieces) emit(m_vocab[static_cast<std::size_t>(p.second)], p.second);
  }

  const special_layout& layout() const override { return m_layout; }
  std::vector<std::int32_t> text_ids(std::string_view text, const char* where) const override {
    std::vector<std::int32_t> ids;
    run(text, where, [&](std::string_view, std::int32_t id) { ids.push_back(id); });
    return ids;
  }

  wordpiece_options m_options;
  special_layout m_layout;
};

}  // namespace peft

#endif  // PEFT_TEXT_WORDPIECE_HPP
