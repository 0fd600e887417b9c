// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_PROMPT_HPP
#define PEFT_TEXT_PROMPT_HPP

/// @file prompt.hpp
/// Prompt templates and verbalizers for prompt-based fine-tuning of a masked-LM encoder, in the
/// mini-language of LM-BFF and LiST (`src/dataset.py:tokenize_multipart_input`, METHODS.md §1.1).
///
/// A template alternates literal text and `*directive*`s:
///
/// | directive | tokens |
/// |---|---|
/// | `*cls*` | the classifier token |
/// | `*mask*` | the mask token (exactly one per template) |
/// | `*sep*` | the separator token |
/// | `*sep+*` | the separator token, then the segment id goes up by one |
/// | `*sent_N*` | sentence N (0: the text, 1: the second text) |
/// | `*+sent_N*` | sentence N with a leading space |
/// | `*sent-_N*` | sentence N without its last character |
/// | `*sentl_N*` | sentence N with its first character lower-cased |
/// | `*+sentl_N*`, `*sentl-_N*`, `*+sent-_N*`, `*+sentl-_N*` | combinations, in that spelling |
///
/// Literal text between directives is tokenized as written, with `_` standing for a space:
/// `*cls**sent_0*_It_was*mask*.*sep+*` is `[CLS] <sentence> it was [MASK] . [SEP]`.
/// The tokens of a part get the current segment id; `*sep+*` raises it for the parts after it.
///
/// **Spaces.** Each part is tokenized on its own. Byte-level BPE (RoBERTa) keeps a word's
/// leading space in its token ("Ġwas"), so `_It_was` and `*+sent_1*` tokenize as LM-BFF and
/// LiST intend; BERT's pre-tokenizer splits at whitespace, so there the space changes nothing.
/// Label words get the leading space LM-BFF and LiST give them (" great" -> "Ġgreat"), except
/// words that start with `<`, `[`, `.` or `,`, as in LM-BFF. Single-character literals are
/// tokenized like any other text (LM-BFF looks them up verbatim, which differs only for
/// characters an uncased vocabulary lower-cases).
///
/// **Segments.** With a tokenizer whose pairs have token types (BERT), `*sep+*` raises the
/// segment id; with one whose pairs are all type 0 (RoBERTa, whose encoder has one token type),
/// every segment id is 0, as LM-BFF does for RoBERTa.
///
/// **Truncation.** LM-BFF and LiST cut the assembled ids at the tail and assert that the mask
/// survived. Here, when a sequence is longer than `max_length`, tokens are removed from the
/// ends of the sentence parts only, one at a time from the currently longest sentence part
/// (the earlier one on ties), until it fits; template tokens are never removed, so the mask and
/// the closing `[SEP]` are always kept. A template whose own tokens exceed `max_length` is an
/// error.
///
/// Demonstration directives (`*label_N*`, `*labelx_N*`) and upper-casing (`*sentu_N*`) of
/// LM-BFF are not supported and are rejected by the parser.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/limits.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "tokenizer.hpp"
#include "unicode.hpp"

namespace peft {

/// Templates of LM-BFF / LiST for common tasks (METHODS.md §1.1 table).
namespace templates {
/// SST-2, MR, CR, MPQA (label words terrible / great).
inline constexpr const char* it_was = "*cls**sent_0*_It_was*mask*.*sep+*";
/// subj, CoLA (subjective / objective, incorrect / correct).
inline constexpr const char* this_is = "*cls**sent_0*_This_is*mask*.*sep+*";
/// MNLI, RTE, QNLI (No / Yes / Maybe).
inline constexpr const char* nli = "*cls**sent-_0*?*mask*,*+sentl_1**sep+*";
/// QQP, MRPC, STS-B (No / Yes).
inline constexpr const char* paraphrase = "*cls**sent_0**mask*,*+sentl_1**sep+*";
/// TREC (Description / Entity / ...).
inline constexpr const char* question = "*cls**mask*:*+sent_0**sep+*";
}  // namespace templates

/// One parsed piece of a template.
struct prompt_part {
  enum class kind { literal, cls, mask, sep, sep_plus, sentence };
  kind type = kind::literal;
  std::string text;            ///< literal text, `_` already replaced by spaces
  index sentence = 0;          ///< sentence number of a `*sent_N*` part
  bool leading_space = false;  ///< `+`: a space before the sentence
  bool lower_first = false;    ///< `l`: first character lower-cased
  bool drop_last = false;      ///< `-`: last character removed
  std::string source;          ///< the part as written, e.g. `*+sentl_1*` or `_It_was`
};

/// A template applied to one example.
struct prompt_encoding {
  std::vector<std::int32_t> ids;       ///< token ids, at most max_length
  std::vector<std::int32_t> segments;  ///< segment (token type) id of every token
  index mask_position = -1;            ///< position of the mask token in `ids`
  index truncated = 0;                 ///< sentence tokens removed to fit max_length
};

/// A parsed LM-BFF / LiST template (see the file comment for the language).
class prompt_template {
public:
  /// Parses `spec`.
  /// @throws peft::invalid_argument naming the offending part (and its offset in `spec`) on an
  ///         empty template, an unmatched `*`, an empty or unknown directive, a template without
  ///         a sentence, or a mask count other than one.
  explicit prompt_template(std::string spec) : m_spec(std::move(spec)) { parse(); }

  /// The template as written.
  const std::string& spec() const noexcept { return m_spec; }
  /// Parts in order (empty literals dropped).
  const std::vector<prompt_part>& parts() const noexcept { return m_parts; }
  /// Sentences an example must supply: one more than the highest `N` of `*sent_N*`.
  index num_sentences() const noexcept { return m_num_sentences; }
  /// Number of `*sep+*` parts (the highest segment id is at most this).
  index num_segment_increments() const noexcept { return m_sep_plus; }

  /// Applies the template to `sentences` (0: text, 1: second text, ...).
  /// @param max_length maximum number of ids; sentence parts are truncated to fit (see file comment)
  /// @throws peft::invalid_argument if fewer sentences are given than the template uses, a
  ///         text is not valid UTF-8 or contains the mask token itself, `max_length < 1`, or the
  ///         template's own tokens do not fit in `max_length`.
  prompt_encoding apply(const tokenizer& tok, const std::vector<std::string_view>& sentences,
                        index max_length) const {
    static const char* where = "prompt_template::apply";
    if (max_length < 1) throw invalid_argument(detail::expected_got(where, "max_length", ">= 1", max_length));
    if (static_cast<index>(sentences.size()) < m_num_sentences) {
      throw invalid_argument(std::string(where) + ": sentences expected " + std::to_string(m_num_sentences) +
                             " (template \"" + m_spec + "\" uses *sent_" +
                             std::to_string(m_num_sentences - 1) + "*), got " +
                             std::to_string(sentences.size()));
    }
    for (const auto& [id, name] : {std::pair<std::int32_t, const char*>{tok.mask_id(), "mask"},
                                   {m_uses_cls ? tok.cls_id() : 0, "classifier"},
                                   {m_uses_sep ? tok.sep_id() : 0, "separator"}}) {
      if (id < 0)
        throw invalid_argument(std::string(where) + ": template \"" + m_spec + "\" needs a " + name +
                               " token, got a " + tok.kind() + " tokenizer without one");
    }
    // Tokens of every part.
    std::vector<std::vector<std::int32_t>> tokens(m_parts.size());
    std::size_t fixed = 0, total = 0;
    for (std::size_t p = 0; p < m_parts.size(); ++p) {
      const auto& part = m_parts[p];
      auto& t = tokens[p];
      switch (part.type) {
        case prompt_part::kind::cls: t.push_back(tok.cls_id()); break;
        case prompt_part::kind::mask: t.push_back(tok.mask_id()); break;
        case prompt_part::kind::sep:
        case prompt_part::kind::sep_plus: t.push_back(tok.sep_id()); break;
        case prompt_part::kind::literal: t = piece_ids(tok, part.text, where); break;
        case prompt_part::kind::sentence: {
          const std::string text =
              sentence_text(part, sentences[static_cast<std::size_t>(part.sentence)], where);
          t = piece_ids(tok, text, where);
          if (std::find(t.begin(), t.end(), tok.mask_id()) != t.end()) {
            throw invalid_argument(std::string(where) + ": sentence " + std::to_string(part.sentence) +
                                   " expected without the mask token \"" + tok.mask_token() +
                                   "\", got one (the template supplies the only mask)");
          }
          break;
        }
      }
      if (part.type != prompt_part::kind::sentence) fixed += t.size();
      total += t.size();
    }
    if (fixed > static_cast<std::size_t>(max_length)) {
      throw invalid_argument(std::string(where) +
                             ": template tokens expected at most max_length = " + std::to_string(max_length) +
                             ", got " + std::to_string(fixed) + " for \"" + m_spec + "\"");
    }
    // Truncate sentence parts from their ends, longest first.
    prompt_encoding out;
    if (total > static_cast<std::size_t>(max_length)) {
      std::size_t excess = total - static_cast<std::size_t>(max_length);
      out.truncated = static_cast<index>(excess);
      while (excess > 0) {
        std::size_t longest = m_parts.size();
        for (std::size_t p = 0; p < m_parts.size(); ++p) {
          if (m_parts[p].type != prompt_part::kind::sentence) continue;
          if (longest == m_parts.size() || tokens[p].size() > tokens[longest].size()) longest = p;
        }
        PEFT_ASSERT(longest < m_parts.size() && !tokens[longest].empty());
        // Remove as many as possible at once while this part stays the longest.
        std::size_t second = 0;
        for (std::size_t p = 0; p < m_parts.size(); ++p) {
          if (p != longest && m_parts[p].type == prompt_part::kind::sentence)
            second = std::max(second, tokens[p].size());
        }
        const std::size_t cut = std::max<std::size_t>(
            1, std::min(excess, tokens[longest].size() - std::min(second, tokens[longest].size())));
        tokens[longest].resize(tokens[longest].size() - cut);
        excess -= cut;
      }
    }
    // Assemble.
    std::int32_t segment = 0;
    out.ids.reserve(std::min(total, static_cast<std::size_t>(max_length)));
    for (std::size_t p = 0; p < m_parts.size(); ++p) {
      for (std::int32_t id : tokens[p]) {
        if (id == tok.mask_id()) {
          if (out.mask_position >= 0) {
            throw invalid_argument(std::string(where) +
                                   ": one mask token expected, got a second one from \"" + m_parts[p].source +
                                   "\" in \"" + m_spec + "\"");
          }
          out.mask_position = static_cast<index>(out.ids.size());
        }
        out.ids.push_back(id);
        out.segments.push_back(segment);
      }
      if (m_parts[p].type == prompt_part::kind::sep_plus && tok.uses_token_types()) ++segment;
    }
    PEFT_ASSERT(out.mask_position >= 0);
    PEFT_ASSERT(out.ids.size() <= static_cast<std::size_t>(max_length));
    return out;
  }

  /// One-text form of apply().
  prompt_encoding apply(const tokenizer& tok, std::string_view text, index max_length) const {
    return apply(tok, std::vector<std::string_view>{text}, max_length);
  }
  /// Pair form of apply(): `text` is sentence 0, `text_b` sentence 1.
  prompt_encoding apply(const tokenizer& tok, std::string_view text, std::string_view text_b,
                        index max_length) const {
    return apply(tok, std::vector<std::string_view>{text, text_b}, max_length);
  }

private:
  /// Token ids of `text` without special tokens around them.
  static std::vector<std::int32_t> piece_ids(const tokenizer& tok, std::string_view text, const char* where) {
    try {
      return tok.piece_ids(text);
    } catch (const invalid_argument& e) {
      throw invalid_argument(std::string(where) + ": " + e.what());
    }
  }

  /// The sentence with the part's modifiers applied (on code points, as Python slicing does).
  static std::string sentence_text(const prompt_part& part, std::string_view s, const char* where) {
    if (!part.lower_first && !part.drop_last)
      return part.leading_space ? " " + std::string(s) : std::string(s);
    std::u32string cps = unicode::decode_utf8(s, where);
    if (part.lower_first && !cps.empty()) {
      std::u32string first = unicode::to_lower(cps.substr(0, 1));
      cps.replace(0, 1, first);
    }
    if (part.drop_last && !cps.empty()) cps.pop_back();
    return (part.leading_space ? " " : "") + unicode::encode_utf8(cps);
  }

  [[noreturn]] void fail(const std::string& what, std::size_t offset) const {
    throw invalid_argument("prompt_template: " + what + " at offset " + std::to_string(offset) + " in \"" +
                           m_spec + "\"");
  }

  void parse() {
    if (m_spec.empty()) throw invalid_argument("prompt_template: a template expected, got an empty string");
    std::size_t pos = 0;
    index masks = 0;
    bool has_sentence = false;
    while (pos < m_spec.size()) {
      const std::size_t star = m_spec.find('*', pos);
      const std::size_t lit_end = star == std::string::npos ? m_spec.size() : star;
      if (lit_end > pos) {
        prompt_part part;
        part.type = prompt_part::kind::literal;
        part.source = m_spec.substr(pos, lit_end - pos);
        part.text = part.source;
        std::replace(part.text.begin(), part.text.end(), '_', ' ');
        m_parts.push_back(std::move(part));
      }
      if (star == std::string::npos) break;
      const std::size_t close = m_spec.find('*', star + 1);
      if (close == std::string::npos) fail("a closing '*' expected for the directive opened", star);
      const std::string name = m_spec.substr(star + 1, close - star - 1);
      prompt_part part;
      part.source = "*" + name + "*";
      if (name.empty()) {
        fail("a directive between '*' expected, got \"**\"", star);
      } else if (name == "cls") {
        part.type = prompt_part::kind::cls;
        m_uses_cls = true;
      } else if (name == "mask") {
        part.type = prompt_part::kind::mask;
        ++masks;
      } else if (name == "sep") {
        part.type = prompt_part::kind::sep;
        m_uses_sep = true;
      } else if (name == "sep+") {
        part.type = prompt_part::kind::sep_plus;
        m_uses_sep = true;
        ++m_sep_plus;
      } else if (!parse_sentence(name, part)) {
        std::string hint;
        if (name.rfind("label", 0) == 0) hint = " (demonstrations are not supported)";
        if (name.find("sentu") != std::string::npos) hint = " (upper-casing is not supported)";
        fail("a directive (*cls*, *mask*, *sep*, *sep+*, *[+]sent[l][-]_N*) expected, got \"" + part.source +
                 "\"" + hint,
             star);
      }
      if (part.type == prompt_part::kind::sentence) {
        has_sentence = true;
        m_num_sentences = std::max(m_num_sentences, part.sentence + 1);
      }
      m_parts.push_back(std::move(part));
      pos = close + 1;
    }
    if (masks != 1) {
      throw invalid_argument("prompt_template: exactly one *mask* expected, got " + std::to_string(masks) +
                             " in \"" + m_spec + "\"");
    }
    if (!has_sentence) {
      throw invalid_argument(
          "prompt_template: at least one sentence directive (*sent_0*) expected, got none in \"" + m_spec +
          "\"");
    }
  }

  /// `[+]sent[l][-]_N` with N a decimal number of at most 4 digits.
  static bool parse_sentence(const std::string& name, prompt_part& part) {
    std::size_t i = 0;
    if (i < name.size() && name[i] == '+') {
      part.leading_space = true;
      ++i;
    }
    if (name.compare(i, 4, "sent") != 0) return false;
    i += 4;
    if (i < name.size() && name[i] == 'l') {
      part.lower_first = true;
      ++i;
    }
    if (i < name.size() && name[i] == '-') {
      part.drop_last = true;
      ++i;
    }
    if (i >= name.size() || name[i] != '_') return false;
    ++i;
    const std::string digits = name.substr(i);
    if (digits.empty() || digits.size() > 4 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return false;
    part.type = prompt_part::kind::sentence;
    part.sentence = static_cast<index>(std::stol(digits));
    return true;
  }

  std::string m_spec;
  std::vector<prompt_part> m_parts;
  index m_num_sentences = 0;
  index m_sep_plus = 0;
  bool m_uses_cls = false, m_uses_sep = false;
};

/// Label words of prompt-based fine-tuning: one vocabulary token per label, in label-id order.
/// The classifier's logits are the masked-LM scores of these ids at the mask position.
class verbalizer {
public:
  /// `words[i]` is the label word of label id `i`. Each word is tokenized with `tok` after a
  /// leading space (see the file comment; an uncased vocabulary also lower-cases it) and must
  /// give exactly one token that is neither the unknown token nor a special token; two labels
  /// may not share a token.
  /// @throws peft::invalid_argument naming the word (and its word pieces) otherwise, or if
  ///         `words` is empty.
  verbalizer(const tokenizer& tok, std::vector<std::string> words) : m_words(std::move(words)) {
    static const char* where = "verbalizer::verbalizer";
    if (m_words.empty())
      throw invalid_argument(std::string(where) + ": label words expected at least 1, got 0");
    std::unordered_map<std::int32_t, std::size_t> seen;
    for (std::size_t i = 0; i < m_words.size(); ++i) {
      const std::string& w = m_words[i];
      const std::string name = "label word " + std::to_string(i) + " \"" + w + "\"";
      std::vector<std::string> pieces;
      try {
        // LM-BFF's rule: " " + word, unless the word starts with '<', '[', '.' or ','.
        const bool bare = !w.empty() && (w[0] == '<' || w[0] == '[' || w[0] == '.' || w[0] == ',');
        pieces = tok.tokenize(bare ? w : " " + w);
      } catch (const invalid_argument& e) {
        throw invalid_argument(std::string(where) + ": " + name + ": " + e.what());
      }
      if (pieces.size() != 1) {
        std::string got;
        for (const auto& p : pieces) got += (got.empty() ? "\"" : ", \"") + p + "\"";
        throw invalid_argument(std::string(where) + ": " + name +
                               " expected to be a single vocabulary token, got " +
                               std::to_string(pieces.size()) + " word pieces [" + got + "]");
      }
      const std::int32_t id = tok.token_to_id(pieces[0]);
      if (id == tok.unk_id() || id == tok.cls_id() || id == tok.sep_id() || id == tok.pad_id() ||
          id == tok.mask_id()) {
        throw invalid_argument(std::string(where) + ": " + name +
                               " expected to be an ordinary vocabulary token, got \"" + pieces[0] +
                               "\" (id " + std::to_string(id) + ")");
      }
      auto [it, inserted] = seen.emplace(id, i);
      if (!inserted) {
        throw invalid_argument(std::string(where) + ": distinct label words expected, got \"" + w +
                               "\" (token \"" + pieces[0] + "\") for labels " + std::to_string(it->second) +
                               " and " + std::to_string(i));
      }
      m_ids.push_back(id);
    }
  }

  /// Parses `"label=word,label=word,..."` (e.g. `0=terrible,1=great`) and orders the words by
  /// `labels`, the label strings in label-id order (label_map::labels()). Spaces around names
  /// are ignored.
  /// @throws peft::invalid_argument on a malformed entry, an unknown or repeated label, a label
  ///         without a word, or a word that is not a single token.
  static verbalizer parse(const tokenizer& tok, std::string_view spec,
                          const std::vector<std::string>& labels) {
    static const char* where = "verbalizer::parse";
    if (labels.empty()) throw invalid_argument(std::string(where) + ": labels expected at least 1, got 0");
    auto trim = [](std::string_view s) {
      while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
      while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
      return std::string(s);
    };
    std::vector<std::string> words(labels.size());
    std::vector<bool> given(labels.size(), false);
    std::size_t pos = 0;
    while (pos <= spec.size()) {
      std::size_t comma = spec.find(',', pos);
      if (comma == std::string_view::npos) comma = spec.size();
      const std::string_view entry = spec.substr(pos, comma - pos);
      const std::size_t eq = entry.find('=');
      if (eq == std::string_view::npos) {
        throw invalid_argument(std::string(where) + ": entries \"label=word\" expected, got \"" +
                               std::string(entry) + "\" in \"" + std::string(spec) + "\"");
      }
      const std::string label = trim(entry.substr(0, eq)), word = trim(entry.substr(eq + 1));
      if (label.empty() || word.empty()) {
        throw invalid_argument(std::string(where) + ": a non-empty label and word expected, got \"" +
                               std::string(entry) + "\" in \"" + std::string(spec) + "\"");
      }
      const auto it = std::find(labels.begin(), labels.end(), label);
      if (it == labels.end()) {
        std::string known;
        for (const auto& l : labels) known += (known.empty() ? "\"" : ", \"") + l + "\"";
        throw invalid_argument(std::string(where) + ": a known label (one of " + known +
                               ") expected, got \"" + label + "\" in \"" + std::string(spec) + "\"");
      }
      const auto k = static_cast<std::size_t>(it - labels.begin());
      if (given[k])
        throw invalid_argument(std::string(where) + ": one word per label expected, got label \"" + label +
                               "\" twice");
      given[k] = true;
      words[k] = word;
      pos = comma + 1;
    }
    for (std::size_t k = 0; k < labels.size(); ++k) {
      if (!given[k]) {
        throw invalid_argument(std::string(where) + ": a word for every label expected, got none for \"" +
                               labels[k] + "\" in \"" + std::string(spec) + "\"");
      }
    }
    return verbalizer(tok, std::move(words));
  }

  /// Number of labels.
  index size() const noexcept { return static_cast<index>(m_ids.size()); }
  /// Label-word token ids in label-id order.
  const std::vector<std::int32_t>& ids() const noexcept { return m_ids; }
  /// Label words as given, in label-id order.
  const std::vector<std::string>& words() const noexcept { return m_words; }

  /// `{"words": [...], "ids": [...]}`, for a task checkpoint.
  nlohmann::json to_json() const { return nlohmann::json{{"words", m_words}, {"ids", m_ids}}; }

  /// Rebuilds a verbalizer from to_json() with `tok`, checking that the stored ids are the ones
  /// `tok` gives (a checkpoint made with another vocabulary is rejected).
  /// @throws peft::invalid_argument on a malformed object, a bad word, or different ids.
  static verbalizer from_json(const tokenizer& tok, const nlohmann::json& j) {
    static const char* where = "verbalizer::from_json";
    if (!j.is_object() || !j.contains("words") || !j["words"].is_array())
      throw invalid_argument(std::string(where) + ": an object with a \"words\" array expected, got " +
                             j.dump().substr(0, 60));
    std::vector<std::string> words;
    for (const auto& w : j["words"]) {
      if (!w.is_string())
        throw invalid_argument(std::string(where) + ": string label words expected, got " + w.dump());
      words.push_back(w.get<std::string>());
    }
    verbalizer v(tok, std::move(words));
    if (j.contains("ids")) {
      std::vector<std::int32_t> stored;
      const auto& ids = j["ids"];
      // Each id range-checked: get<std::vector<int32_t>> would convert a float or a wide
      // integer without a check (undefined for a float beyond int32's range).
      if (!detail::json_to_integer(ids, stored))
        throw invalid_argument(std::string(where) + ": \"ids\" expected an array of 32-bit integers, got " +
                               ids.dump().substr(0, 60));
      if (stored != v.ids()) {
        throw invalid_argument(std::string(where) + ": label-word ids expected " + j["ids"].dump() +
                               " (as stored), got " + nlohmann::json(v.ids()).dump() +
                               " from this tokenizer (a different vocabulary?)");
      }
    }
    return v;
  }

private:
  std::vector<std::string> m_words;
  std::vector<std::int32_t> m_ids;
};

}  // namespace peft

#endif  // PEFT_TEXT_PROMPT_HPP
