// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_TOKENIZER_HPP
#define PEFT_TEXT_TOKENIZER_HPP

/// @file tokenizer.hpp
/// What every Hugging Face tokenizer of peft offers (`peft::tokenizer`), so that the task
/// layer, prompt templates and verbalizers work with WordPiece (BERT), byte-level BPE
/// (RoBERTa, GPT-2) and SentencePiece-Unigram (XLM-R, ALBERT) alike; `layout_tokenizer`, the
/// vocabulary and special-token layout the last two share; and the pieces every reader of
/// `tokenizer.json` uses: added tokens matched verbatim in the text, the post-processor's
/// layout, and the longest-first rule that truncates a pair.

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
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

  /// "wordpiece", "bpe", "sentencepiece" or "sentencepiece_model" (the class is `<kind>_tokenizer`).
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

/// Where a post-processor puts the special tokens: the ids of `single` / `pair` around the
/// texts, each element a special token id or -1 for "sequence A" and -2 for "sequence B", with
/// the token type of every element.
struct special_layout {
  std::vector<std::int32_t> single{-1}, single_types{0};
  std::vector<std::int32_t> pair{-1, -2}, pair_types{0, 0};

  /// `<s> A </s>` / `<s> A </s></s> B </s>`, all token type 0 (RobertaProcessing).
  static special_layout roberta(std::int32_t cls, std::int32_t sep) {
    return {{cls, -1, sep}, {0, 0, 0}, {cls, -1, sep, sep, -2, sep}, {0, 0, 0, 0, 0, 0}};
  }
  /// `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]`, B's part token type 1 (BertProcessing).
  static special_layout bert(std::int32_t cls, std::int32_t sep) {
    return {{cls, -1, sep}, {0, 0, 0}, {cls, -1, sep, -2, sep}, {0, 0, 0, 1, 1}};
  }
};

/// A tokenizer whose special tokens come from a `special_layout` (the post-processor of its
/// tokenizer.json): encode() and encode_pair() put the text's ids into the layout, cutting
/// the text (longest first for a pair), never the special tokens.
class layout_tokenizer : public tokenizer {
public:
  /// The vocabulary tokens of piece_ids(text) (byte-level strings such as "ĠIt" for BPE, "▁It"
  /// for SentencePiece).
  std::vector<std::string> tokenize(std::string_view text) const override {
    std::vector<std::string> out;
    for (std::int32_t id : piece_ids(text)) out.push_back(m_vocab[static_cast<std::size_t>(id)]);
    return out;
  }

  std::vector<std::int32_t> piece_ids(std::string_view text) const override {
    return text_ids(text, (kind() + "_tokenizer::piece_ids").c_str());
  }

  /// The text's ids inside the single-text layout, the first ones kept when they do not fit.
  /// @throws peft::invalid_argument if `max_length` is below the layout's special tokens plus one
  std::vector<std::int32_t> encode(std::string_view text, index max_length) const override {
    const std::string where = kind() + "_tokenizer::encode";
    const auto& t = layout().single;
    const index specials = static_cast<index>(t.size()) - 1;
    if (max_length < std::max<index>(specials, 1))
      throw invalid_argument(detail::expected_got(where.c_str(), "max_length",
                                                  ">= " + std::to_string(std::max<index>(specials, 1)), max_length));
    std::vector<std::int32_t> ids = text_ids(text, where.c_str());
    if (ids.size() > static_cast<std::size_t>(max_length - specials)) ids.resize(static_cast<std::size_t>(max_length - specials));
    return assemble(t, layout().single_types, ids, {}, nullptr);
  }

  /// The two texts in the pair layout (`<s> A </s></s> B </s>` for RoBERTa and XLM-R),
  /// truncated longest-first to fit `max_length`.
  std::vector<std::int32_t> encode_pair(std::string_view a, std::string_view b, index max_length,
                                        std::vector<std::int32_t>* segments = nullptr) const override {
    const std::string where = kind() + "_tokenizer::encode_pair";
    const auto& t = layout().pair;
    const index specials = static_cast<index>(t.size()) - 2;
    if (max_length < specials)
      throw invalid_argument(detail::expected_got(where.c_str(), "max_length", ">= " + std::to_string(specials), max_length));
    std::vector<std::int32_t> ia = text_ids(a, where.c_str()), ib = text_ids(b, where.c_str());
    const auto [na, nb] = longest_first(ia.size(), ib.size(), static_cast<std::size_t>(max_length - specials));
    ia.resize(na);
    ib.resize(nb);
    return assemble(t, layout().pair_types, ia, ib, segments);
  }

  bool uses_token_types() const override {
    const auto& t = layout().pair_types;
    return std::any_of(t.begin(), t.end(), [](std::int32_t v) { return v != 0; });
  }

  std::int32_t token_to_id(std::string_view token) const override {
    auto it = m_ids.find(std::string(token));
    if (it == m_ids.end())
      throw invalid_argument(kind() + "_tokenizer::token_to_id: a vocabulary token expected, got \"" +
                             std::string(token) + "\"");
    return it->second;
  }
  bool contains(std::string_view token) const override { return m_ids.count(std::string(token)) != 0; }
  const std::string& id_to_token(std::int32_t id) const override {
    if (id < 0 || static_cast<std::size_t>(id) >= m_vocab.size())
      throw invalid_argument(detail::expected_got((kind() + "_tokenizer::id_to_token").c_str(), "id in [0, vocab_size)",
                                                  "[0, " + std::to_string(m_vocab.size()) + ")", id));
    return m_vocab[static_cast<std::size_t>(id)];
  }
  index vocab_size() const noexcept override { return static_cast<index>(m_vocab.size()); }
  std::int32_t cls_id() const noexcept override { return m_cls; }
  std::int32_t sep_id() const noexcept override { return m_sep; }
  std::int32_t pad_id() const noexcept override { return m_pad; }
  std::int32_t mask_id() const noexcept override { return m_mask; }
  std::int32_t unk_id() const noexcept override { return m_unk; }

protected:
  /// Whether @p id is an added token marked special (decode drops it on request).
  bool is_special(std::int32_t id) const {
    return std::any_of(m_added.begin(), m_added.end(), [&](const added_token& t) { return t.special && t.id == id; });
  }

  std::vector<std::string> m_vocab;                      ///< tokens in id order
  std::unordered_map<std::string, std::int32_t> m_ids;  ///< token -> id
  std::vector<added_token> m_added;
  std::int32_t m_unk = -1, m_cls = -1, m_sep = -1, m_pad = -1, m_mask = -1;

  /// Where the special tokens go.
  virtual const special_layout& layout() const = 0;
  /// The text's ids without special tokens; @p where prefixes errors.
  virtual std::vector<std::int32_t> text_ids(std::string_view text, const char* where) const = 0;

private:
  static std::vector<std::int32_t> assemble(const std::vector<std::int32_t>& layout, const std::vector<std::int32_t>& types,
                                            const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b,
                                            std::vector<std::int32_t>* segments) {
    std::vector<std::int32_t> ids;
    if (segments) segments->clear();
    for (std::size_t k = 0; k < layout.size(); ++k) {
      const auto* part = layout[k] == -1 ? &a : layout[k] == -2 ? &b : nullptr;
      const std::size_t n = part ? part->size() : 1;
      if (part) ids.insert(ids.end(), part->begin(), part->end());
      else ids.push_back(layout[k]);
      if (segments) segments->insert(segments->end(), n, types[k]);
    }
    return ids;
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

/// The id of @p token among the added tokens, else in @p vocab; -1 when neither has it.
inline std::int32_t token_id_in(const std::vector<std::string>& vocab, const std::vector<added_token>& added,
                                const std::string& token) {
  for (const auto& t : added)
    if (t.content == token) return t.id;
  for (std::size_t k = 0; k < vocab.size(); ++k)
    if (vocab[k] == token) return static_cast<std::int32_t>(k);
  return -1;
}

/// A TemplateProcessing post-processor (one id per special token).
template <typename Bad>
special_layout read_template(const nlohmann::json& pp, Bad& bad) {
  std::unordered_map<std::string, std::int32_t> special_ids;
  if (pp.contains("special_tokens") && pp["special_tokens"].is_object()) {
    for (auto it = pp["special_tokens"].begin(); it != pp["special_tokens"].end(); ++it) {
      const auto& ids = it.value().value("ids", nlohmann::json());
      std::int32_t id = -1;
      if (!ids.is_array() || ids.size() != 1 || !detail::json_to_integer(ids[0], id) || id < 0)
        throw bad("post_processor.special_tokens[\"" + it.key() + "\"].ids", "one id",
                  detail::brief_json(ids));
      special_ids[it.key()] = id;
    }
  }
  auto read = [&](const char* key, std::vector<std::int32_t>& items, std::vector<std::int32_t>& types) {
    items.clear();
    types.clear();
    if (!pp.contains(key) || !pp[key].is_array()) throw bad(std::string("post_processor.") + key, "an array", "none");
    for (const auto& item : pp[key]) {
      const bool is_special = item.contains("SpecialToken"), is_seq = item.contains("Sequence");
      const auto& body = is_special ? item["SpecialToken"] : is_seq ? item["Sequence"] : item;
      std::int32_t type = 0;
      if (!(is_special || is_seq) || !body.is_object() || !body.contains("id") || !body["id"].is_string() ||
          !detail::json_to_integer(body.value("type_id", nlohmann::json(0)), type))
        throw bad(std::string("post_processor.") + key + " item", "a SpecialToken or Sequence",
                  detail::brief_json(item));
      const std::string id = body["id"].get<std::string>();
      if (is_seq) {
        if (id != "A" && id != "B") throw bad(std::string("post_processor.") + key + " sequence", "A or B", id);
        items.push_back(id == "A" ? -1 : -2);
      } else {
        auto it = special_ids.find(id);
        if (it == special_ids.end())
          throw bad(std::string("post_processor.") + key + " token \"" + id + "\"", "in special_tokens", "none");
        items.push_back(it->second);
      }
      types.push_back(type);
    }
  };
  special_layout t;
  read("pair", t.pair, t.pair_types);
  read("single", t.single, t.single_types);
  if (std::count(t.single.begin(), t.single.end(), -1) != 1 || std::count(t.single.begin(), t.single.end(), -2) != 0)
    throw bad("post_processor.single", "sequence A once", "another layout");
  if (std::count(t.pair.begin(), t.pair.end(), -1) != 1 || std::count(t.pair.begin(), t.pair.end(), -2) != 1)
    throw bad("post_processor.pair", "sequences A and B once each", "another layout");
  return t;
}

/// The special-token layout of a `tokenizer.json`'s post_processor (RobertaProcessing,
/// BertProcessing, TemplateProcessing, a Sequence of those with ByteLevel, or none: no special
/// tokens), and in @p cls_name / @p sep_name the tokens that play [CLS] and [SEP] in prompts
/// (the single layout's first and last special tokens).
template <typename Bad>
special_layout read_post_processor(const nlohmann::json& j, Bad& bad, const std::vector<std::string>& vocab,
                                   const std::vector<added_token>& added, std::string& cls_name, std::string& sep_name) {
  auto id_of = [&](const std::string& token) { return token_id_in(vocab, added, token); };
  special_layout post;
  // Post-processor: which tokens surround the texts.
  std::vector<nlohmann::json> processors;
  if (j.contains("post_processor") && !j["post_processor"].is_null()) {
    const auto& pp = j["post_processor"];
    if (pp.is_object() && pp.value("type", "") == "Sequence" && pp.contains("processors") &&
        pp["processors"].is_array()) {
      for (const auto& p : pp["processors"]) processors.push_back(p);
    } else {
      processors.push_back(pp);
    }
  }
  bool placed = false;
  for (const auto& pp : processors) {
    const std::string type = pp.is_object() ? pp.value("type", "") : "";
    if (type == "ByteLevel") continue;  // offsets only
    if (placed) throw bad("post_processor", "one processor that adds special tokens", brief_json(pp));
    placed = true;
    if (type == "RobertaProcessing" || type == "BertProcessing") {
      auto name_of = [&](const char* key) {
        if (!pp.contains(key) || !pp[key].is_array() || pp[key].size() != 2 || !pp[key][0].is_string())
          throw bad(std::string("post_processor.") + key, "[token, id]", brief_json(pp.value(key, nlohmann::json())));
        return pp[key][0].get<std::string>();
      };
      cls_name = name_of("cls");
      sep_name = name_of("sep");
      const std::int32_t cls = id_of(cls_name), sep = id_of(sep_name);
      if (cls < 0 || sep < 0)
        throw bad("post_processor tokens", "in the vocabulary", "\"" + (cls < 0 ? cls_name : sep_name) + "\"");
      post = type == "RobertaProcessing" ? special_layout::roberta(cls, sep) : special_layout::bert(cls, sep);
    } else if (type == "TemplateProcessing") {
      post = read_template(pp, bad);
      // The single layout's first and last special tokens play [CLS] and [SEP] in prompts.
      auto name_of_id = [&](std::int32_t id) {
        for (const auto& t : added)
          if (t.id == id) return t.content;
        return static_cast<std::size_t>(id) < vocab.size() ? vocab[static_cast<std::size_t>(id)] : std::string();
      };
      if (post.single.front() >= 0) cls_name = name_of_id(post.single.front());
      if (post.single.back() >= 0) sep_name = name_of_id(post.single.back());
    } else {
      throw bad("post_processor.type",
                "RobertaProcessing, BertProcessing, TemplateProcessing, ByteLevel or Sequence", brief_json(pp));
    }
  }
  return post;
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
