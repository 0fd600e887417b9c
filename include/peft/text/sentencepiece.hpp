// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_SENTENCEPIECE_HPP
#define PEFT_TEXT_SENTENCEPIECE_HPP

/// @file sentencepiece.hpp
/// SentencePiece-Unigram tokenizers as a Hugging Face `tokenizer.json` describes them (the
/// `Unigram` model of XLM-RoBERTa, ALBERT, T5, DeBERTa-v3 exports), run as the Rust
/// `tokenizers` library runs that file:
///
/// 1. Added tokens (`<s>`, `<mask>`, ...) are matched verbatim first, as for the other
///    tokenizers (tokenizer.hpp).
/// 2. The normaliser: a Sequence of `Precompiled` (SentencePiece's character map: a
///    double-array trie of byte strings and their replacements, applied leftmost-longest, one
///    character copied where nothing matches), `Replace` (a literal, or a run of one character
///    such as `" {2,}"`), `NFC`/`NFD`/`NFKC`/`NFKD`, `Lowercase`, `StripAccents`, `Strip`
///    and `Prepend`.
/// 3. `Metaspace`: spaces become U+2581 ("▁"), one is prepended to a section that does not
///    start with it (`prepend_scheme` "always"; "first": only the text's first section), and
///    the section is split before each "▁".
/// 4. Unigram: the highest-scoring segmentation of each word into vocabulary pieces (Viterbi
///    over UTF-8 positions); a character no piece covers is the unknown piece with the lowest
///    score minus 10, and consecutive unknowns fuse into one.
/// 5. The post-processor's special tokens (XLM-R: `<s> A </s>` and `<s> A </s></s> B </s>`).
///
/// Departure: Hugging Face's `Precompiled` applies the character map to whole grapheme
/// clusters first, SentencePiece (and this class) leftmost-longest over the bytes; they can
/// differ only where a cluster and a longer map entry overlap. SentencePiece's own
/// `remove_extra_whitespaces` strips leading and trailing spaces, which a tokenizer.json
/// pipeline does not unless it lists `Strip`; this class follows the file.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/types.hpp"
#include "../error.hpp"
#include "tokenizer.hpp"
#include "unicode.hpp"

namespace peft {

namespace detail {

/// Standard base64 (RFC 4648, '=' padding) to bytes; false on any other character.
inline bool base64_decode(std::string_view in, std::string& out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  out.clear();
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '=') {
      for (std::size_t k = i; k < in.size(); ++k)
        if (in[k] != '=') return false;
      break;
    }
    const int v = value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

}  // namespace detail

/// SentencePiece's precompiled character map: a darts-clone double-array trie over byte
/// strings whose values are offsets of NUL-terminated replacements.
class precompiled_charsmap {
public:
  /// @param blob the map as SentencePiece stores it: the trie's size in bytes (uint32, little
  ///        endian), the trie's 32-bit units, then the replacement strings
  /// @throws peft::invalid_argument when the blob is too short, the trie size is not a
  ///         multiple of 4 or exceeds the blob, or a value points outside the strings
  explicit precompiled_charsmap(std::string_view blob) {
    static const char* where = "precompiled_charsmap";
    if (blob.size() < 4) throw invalid_argument(std::string(where) + ": at least 4 bytes expected, got " + std::to_string(blob.size()));
    const std::uint32_t trie_bytes = read_u32(blob.data());
    if (trie_bytes % 4 != 0 || trie_bytes == 0 || trie_bytes > blob.size() - 4)
      throw invalid_argument(std::string(where) + ": trie size expected a positive multiple of 4 within the " +
                             std::to_string(blob.size() - 4) + " bytes that follow, got " + std::to_string(trie_bytes));
    m_units.resize(trie_bytes / 4);
    for (std::size_t k = 0; k < m_units.size(); ++k) m_units[k] = read_u32(blob.data() + 4 + 4 * k);
    m_strings.assign(blob.substr(4 + trie_bytes));
  }

  /// The longest entry that prefixes @p s: (its length in bytes, its replacement), or (0, "").
  std::pair<std::size_t, std::string_view> match(std::string_view s) const {
    std::size_t best_len = 0;
    std::uint32_t best_value = 0;
    std::size_t pos = offset(m_units[0]);
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      pos ^= c;
      if (pos >= m_units.size()) break;
      const std::uint32_t unit = m_units[pos];
      if (label(unit) != c) break;
      pos ^= offset(unit);
      if (pos >= m_units.size()) break;
      if ((unit >> 8) & 1U) {  // has a leaf: a whole entry ends here
        best_len = i + 1;
        best_value = m_units[pos] & 0x7FFFFFFFU;
      }
    }
    if (best_len == 0) return {0, {}};
    if (best_value >= m_strings.size())
      throw invalid_argument("precompiled_charsmap: replacement offset expected < " + std::to_string(m_strings.size()) +
                             ", got " + std::to_string(best_value));
    const char* p = m_strings.data() + best_value;
    return {best_len, std::string_view(p, strnlen(p, m_strings.size() - best_value))};
  }

  /// @p text with every leftmost-longest entry replaced; other characters are kept.
  std::string normalize(std::string_view text) const {
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
      const auto [len, rep] = match(text.substr(i));
      if (len > 0) {
        out.append(rep);
        i += len;
      } else {
        const std::size_t n = utf8_length(static_cast<unsigned char>(text[i]));
        out.append(text.substr(i, n));
        i += n;
      }
    }
    return out;
  }

private:
  static std::uint32_t read_u32(const char* p) {
    std::uint32_t v = 0;
    for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(p[k]);
    return v;
  }
  static std::size_t offset(std::uint32_t unit) noexcept { return (unit >> 10) << ((unit & (1U << 9)) >> 6); }
  static std::uint32_t label(std::uint32_t unit) noexcept { return unit & ((1U << 31) | 0xFFU); }
  static std::size_t utf8_length(unsigned char c) noexcept { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

  std::vector<std::uint32_t> m_units;
  std::string m_strings;
};

/// One step of a tokenizer.json normaliser (see the file comment).
struct spm_normalizer_step {
  enum class kind { precompiled, replace_literal, replace_run, nfc, nfd, nfkc, nfkd, lowercase, strip_accents, strip, prepend };
  kind type = kind::nfkc;
  std::string pattern, content;  ///< replace_literal: pattern -> content; replace_run: pattern is one character
  std::size_t min_run = 1;       ///< replace_run: shortest run replaced
  bool left = true, right = true;  ///< strip
  std::shared_ptr<const precompiled_charsmap> charsmap;
};

/// Options of a SentencePiece-Unigram tokenizer.
struct sentencepiece_options {
  std::vector<spm_normalizer_step> normalizer;
  std::string replacement = "\xE2\x96\x81";  ///< Metaspace's space marker, "▁"
  std::string prepend_scheme = "always";     ///< "always", "first" or "never"
  bool split = true;                         ///< Metaspace: split before each marker
  std::int32_t unk_id = -1;                  ///< the unknown piece (-1: none; an uncovered character is refused)
  std::string cls_token, sep_token, pad_token, mask_token;
  special_layout post;
};

/// SentencePiece-Unigram tokenizer read from a Hugging Face tokenizer.json (see the file comment).
class sentencepiece_tokenizer : public layout_tokenizer {
public:
  /// @param pieces (piece, log-probability score) in id order
  /// @throws peft::invalid_argument on an empty vocabulary, a duplicate or empty piece, an
  ///         unk_id outside it, or a named role token it lacks
  sentencepiece_tokenizer(std::vector<std::pair<std::string, double>> pieces, sentencepiece_options options,
                          std::vector<added_token> added = {})
      : m_options(std::move(options)) {
    build("sentencepiece_tokenizer::sentencepiece_tokenizer", std::move(pieces), std::move(added));
  }

  /// Reads a Hugging Face `tokenizer.json` whose model is Unigram.
  /// @throws peft::io_error naming the file and the field: another model, `byte_fallback`, a
  ///         normaliser or pre-tokenizer this class does not run (named), a malformed map
  static sentencepiece_tokenizer from_tokenizer_json(const std::string& path) {
    static const char* where = "sentencepiece_tokenizer::from_tokenizer_json";
    return from_json(detail::read_tokenizer_json(path, where), path, where);
  }

  /// Reads a `tokenizer.json` already parsed (see from_tokenizer_json); `path` names it in errors.
  static sentencepiece_tokenizer from_json(const nlohmann::json& j, const std::string& path,
                                           const char* where = "sentencepiece_tokenizer::from_json") {
    auto bad = [&](const std::string& what, const std::string& expected, const std::string& got) {
      return io_error(std::string(where) + ": " + path + ": " + what + " expected " + expected + ", got " + got);
    };
    using detail::brief_json;
    if (!j.contains("model") || !j["model"].is_object()) throw bad("\"model\"", "an object", "none");
    const auto& model = j["model"];
    if (model.value("type", "Unigram") != "Unigram") throw bad("model.type", "\"Unigram\"", brief_json(model["type"]));
    if (model.contains("byte_fallback") && model["byte_fallback"].is_boolean() && model["byte_fallback"].get<bool>())
      throw bad("model.byte_fallback", "false (byte pieces are not supported)", "true");
    sentencepiece_options opt;
    if (model.contains("unk_id") && !model["unk_id"].is_null() && !detail::json_to_integer(model["unk_id"], opt.unk_id))
      throw bad("model.unk_id", "an integer", brief_json(model["unk_id"]));
    if (!model.contains("vocab") || !model["vocab"].is_array()) throw bad("model.vocab", "an array of [piece, score]", "none");
    std::vector<std::pair<std::string, double>> pieces;
    pieces.reserve(model["vocab"].size());
    for (std::size_t k = 0; k < model["vocab"].size(); ++k) {
      const auto& e = model["vocab"][k];
      if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number())
        throw bad("model.vocab[" + std::to_string(k) + "]", "[piece, score]", brief_json(e));
      pieces.emplace_back(e[0].get<std::string>(), e[1].get<double>());
    }
    // Normaliser.
    if (j.contains("normalizer") && !j["normalizer"].is_null()) read_normalizer(j["normalizer"], "normalizer", bad, opt.normalizer);
    // Pre-tokenizer: Metaspace, alone or in a Sequence.
    const nlohmann::json* meta = nullptr;
    if (j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object()) {
      const auto& p = j["pre_tokenizer"];
      if (p.value("type", "") == "Metaspace") meta = &p;
      else if (p.value("type", "") == "Sequence" && p.contains("pretokenizers") && p["pretokenizers"].is_array() &&
               p["pretokenizers"].size() == 1 && p["pretokenizers"][0].value("type", "") == "Metaspace")
        meta = &p["pretokenizers"][0];
    }
    if (!meta) throw bad("pre_tokenizer.type", "\"Metaspace\"", j.contains("pre_tokenizer") ? brief_json(j["pre_tokenizer"]) : "none");
    if (meta->contains("replacement")) {
      if (!(*meta)["replacement"].is_string()) throw bad("pre_tokenizer.replacement", "a string", brief_json((*meta)["replacement"]));
      opt.replacement = (*meta)["replacement"].get<std::string>();
    }
    if (meta->contains("prepend_scheme") && (*meta)["prepend_scheme"].is_string()) {
      opt.prepend_scheme = (*meta)["prepend_scheme"].get<std::string>();
      if (opt.prepend_scheme != "always" && opt.prepend_scheme != "first" && opt.prepend_scheme != "never")
        throw bad("pre_tokenizer.prepend_scheme", "\"always\", \"first\" or \"never\"", brief_json((*meta)["prepend_scheme"]));
    } else if (meta->contains("add_prefix_space") && (*meta)["add_prefix_space"].is_boolean()) {
      opt.prepend_scheme = (*meta)["add_prefix_space"].get<bool>() ? "always" : "never";
    }
    if (meta->contains("split") && (*meta)["split"].is_boolean()) opt.split = (*meta)["split"].get<bool>();
    if (j.contains("decoder") && !j["decoder"].is_null() &&
        (!j["decoder"].is_object() || j["decoder"].value("type", "") != "Metaspace"))
      throw bad("decoder.type", "\"Metaspace\" or null", brief_json(j["decoder"]));
    std::vector<added_token> added = detail::read_added_tokens(j, bad);
    std::vector<std::string> names;
    names.reserve(pieces.size());
    for (const auto& p : pieces) names.push_back(p.first);
    opt.post = detail::read_post_processor(j, bad, names, added, opt.cls_token, opt.sep_token);
    auto has = [&](const std::string& t) {
      return std::find(names.begin(), names.end(), t) != names.end() ||
             std::any_of(added.begin(), added.end(), [&](const added_token& a) { return a.content == t; });
    };
    if (j.contains("padding") && j["padding"].is_object() && j["padding"].contains("pad_token") &&
        j["padding"]["pad_token"].is_string())
      opt.pad_token = j["padding"]["pad_token"].get<std::string>();
    else if (has("<pad>"))
      opt.pad_token = "<pad>";
    if (has("<mask>")) opt.mask_token = "<mask>";
    else if (has("[MASK]")) opt.mask_token = "[MASK]";
    try {
      return sentencepiece_tokenizer(std::move(pieces), std::move(opt), std::move(added));
    } catch (const invalid_argument& e) {
      throw io_error(std::string(where) + ": " + path + ": " + e.what());
    }
  }

  std::string kind() const override { return "sentencepiece"; }

  /// Text of @p ids (Metaspace decoder): pieces joined, "▁" back to spaces, the first
  /// token's leading space dropped when a space was prepended.
  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const override {
    std::string out;
    bool first = true;
    for (std::int32_t id : ids) {
      const std::string& t = id_to_token(id);
      if (skip_special && is_special(id)) continue;
      std::string piece;
      for (std::size_t p = 0; p < t.size();) {
        if (!m_options.replacement.empty() && t.compare(p, m_options.replacement.size(), m_options.replacement) == 0) {
          piece += ' ';
          p += m_options.replacement.size();
        } else {
          piece += t[p++];
        }
      }
      if (first && m_options.prepend_scheme != "never" && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
      first = false;
      out += piece;
    }
    return out;
  }

  const std::string& mask_token() const noexcept override { return m_options.mask_token; }

  /// The normaliser's output for @p text (before Metaspace).
  std::string normalize(std::string_view text) const {
    std::string s(text);
    for (const auto& st : m_options.normalizer) s = apply(st, s);
    return s;
  }

private:
  using step = spm_normalizer_step;

  template <typename Bad>
  static void read_normalizer(const nlohmann::json& n, const std::string& name, Bad& bad, std::vector<step>& out) {
    using detail::brief_json;
    const std::string type = n.is_object() ? n.value("type", "") : "";
    step s;
    if (type == "Sequence") {
      if (!n.contains("normalizers") || !n["normalizers"].is_array()) throw bad(name + ".normalizers", "an array", brief_json(n));
      for (std::size_t k = 0; k < n["normalizers"].size(); ++k)
        read_normalizer(n["normalizers"][k], name + ".normalizers[" + std::to_string(k) + "]", bad, out);
      return;
    } else if (type == "Precompiled") {
      const auto& map = n.value("precompiled_charsmap", nlohmann::json());
      if (map.is_null()) return;  // an empty map changes nothing
      std::string blob;
      if (!map.is_string() || !detail::base64_decode(map.get<std::string>(), blob))
        throw bad(name + ".precompiled_charsmap", "base64 text", brief_json(map));
      if (blob.empty()) return;
      s.type = step::kind::precompiled;
      try {
        s.charsmap = std::make_shared<const precompiled_charsmap>(blob);
      } catch (const invalid_argument& e) {
        throw bad(name + ".precompiled_charsmap", "SentencePiece's character map", e.what());
      }
    } else if (type == "Replace") {
      s.content = n.value("content", "");
      const auto& pat = n.value("pattern", nlohmann::json());
      if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
        s.type = step::kind::replace_literal;
        s.pattern = pat["String"].get<std::string>();
        if (s.pattern.empty()) throw bad(name + ".pattern.String", "a non-empty string", "\"\"");
      } else if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
        // A run of one character: "c{n,}" or "c+" (what SentencePiece exports use).
        const std::string re = pat["Regex"].get<std::string>();
        s.type = step::kind::replace_run;
        const auto brace = re.find('{');
        if (re.size() == 2 && re[1] == '+' && re[0] != '\\') {
          s.pattern = re.substr(0, 1);
        } else if (brace == 1 && re.size() > 4 && re.compare(re.size() - 2, 2, ",}") == 0 &&
                   re.find_first_not_of("0123456789", 2) == re.size() - 2 && re[0] != '\\') {
          s.pattern = re.substr(0, 1);
          s.min_run = static_cast<std::size_t>(std::stoul(re.substr(2, re.size() - 4)));
        } else {
          throw bad(name + ".pattern.Regex", "a run of one character (\"c{n,}\" or \"c+\")", "\"" + re + "\"");
        }
        if (s.min_run == 0) s.min_run = 1;
      } else {
        throw bad(name + ".pattern", "{\"String\": ...} or {\"Regex\": ...}", brief_json(pat));
      }
    } else if (type == "NFC") {
      s.type = step::kind::nfc;
    } else if (type == "NFD") {
      s.type = step::kind::nfd;
    } else if (type == "NFKC") {
      s.type = step::kind::nfkc;
    } else if (type == "NFKD") {
      s.type = step::kind::nfkd;
    } else if (type == "Lowercase") {
      s.type = step::kind::lowercase;
    } else if (type == "StripAccents") {
      s.type = step::kind::strip_accents;
    } else if (type == "Strip") {
      s.type = step::kind::strip;
      s.left = n.value("strip_left", true);
      s.right = n.value("strip_right", true);
    } else if (type == "Prepend") {
      s.type = step::kind::prepend;
      s.content = n.value("prepend", "");
    } else {
      throw bad(name + ".type",
                "Sequence, Precompiled, Replace, NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Strip or Prepend",
                brief_json(n));
    }
    out.push_back(std::move(s));
  }

  static std::string apply(const step& s, const std::string& text) {
    switch (s.type) {
      case step::kind::precompiled: return s.charsmap->normalize(text);
      case step::kind::replace_literal: {
        std::string out;
        for (std::size_t i = 0; i < text.size();) {
          if (text.compare(i, s.pattern.size(), s.pattern) == 0) {
            out += s.content;
            i += s.pattern.size();
          } else {
            out += text[i++];
          }
        }
        return out;
      }
      case step::kind::replace_run: {
        std::string out;
        for (std::size_t i = 0; i < text.size();) {
          std::size_t n = 0;
          while (i + n < text.size() && text[i + n] == s.pattern[0]) ++n;
          if (n >= s.min_run) {
            out += s.content;
            i += n;
          } else if (n > 0) {
            out.append(text, i, n);
            i += n;
          } else {
            out += text[i++];
          }
        }
        return out;
      }
      case step::kind::nfc: return unicode::encode_utf8(unicode::nfc(unicode::decode_utf8(text)));
      case step::kind::nfd: return unicode::encode_utf8(unicode::nfd(unicode::decode_utf8(text)));
      case step::kind::nfkc: return unicode::encode_utf8(unicode::nfkc(unicode::decode_utf8(text)));
      case step::kind::nfkd: return unicode::encode_utf8(unicode::nfkd(unicode::decode_utf8(text)));
      case step::kind::lowercase: return unicode::encode_utf8(unicode::to_lower(unicode::decode_utf8(text)));
      case step::kind::strip_accents: {
        std::u32string cps = unicode::decode_utf8(text);
        cps.erase(std::remove_if(cps.begin(), cps.end(),
                                 [](char32_t c) { return unicode::classify(c) == unicode::char_class::mark_nonspacing; }),
                  cps.end());
        return unicode::encode_utf8(cps);
      }
      case step::kind::strip: {
        std::string_view v = text;
        if (s.left) v = detail::trim_whitespace(v, true);
        if (s.right) v = detail::trim_whitespace(v, false);
        return std::string(v);
      }
      case step::kind::prepend: return text.empty() ? text : s.content + text;
    }
    return text;
  }

  void build(const char* where, std::vector<std::pair<std::string, double>> pieces, std::vector<added_token> added) {
    if (pieces.empty()) throw invalid_argument(std::string(where) + ": a non-empty vocabulary expected, got 0 pieces");
    if (m_options.unk_id >= static_cast<std::int32_t>(pieces.size()))
      throw invalid_argument(std::string(where) + ": unk_id expected < " + std::to_string(pieces.size()) + ", got " +
                             std::to_string(m_options.unk_id));
    const std::size_t max_size = pieces.size() + added.size();
    for (const auto& t : added) {
      const auto id = static_cast<std::size_t>(t.id);
      if (t.content.empty()) throw invalid_argument(std::string(where) + ": non-empty added tokens expected, got an empty one");
      if (id >= max_size)
        throw invalid_argument(std::string(where) + ": added token '" + t.content + "' id expected < " +
                               std::to_string(max_size) + ", got " + std::to_string(id));
      if (id >= pieces.size()) pieces.resize(id + 1, {std::string(), 0.0});
      if (pieces[id].first.empty()) pieces[id].first = t.content;
    }
    m_min_score = std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      if (pieces[i].first.empty())
        throw invalid_argument(std::string(where) + ": a piece expected for id " + std::to_string(i) + ", got none");
      if (!m_ids.emplace(pieces[i].first, static_cast<std::int32_t>(i)).second)
        throw invalid_argument(std::string(where) + ": unique pieces expected, got \"" + pieces[i].first + "\" twice");
      m_min_score = std::min(m_min_score, pieces[i].second);
      m_max_piece = std::max(m_max_piece, pieces[i].first.size());
      m_vocab.push_back(pieces[i].first);
      m_scores.push_back(pieces[i].second);
    }
    auto role = [&](const std::string& token, const char* name) -> std::int32_t {
      if (token.empty()) return -1;
      auto it = m_ids.find(token);
      if (it == m_ids.end())
        throw invalid_argument(std::string(where) + ": " + name + " token \"" + token + "\" expected in the vocabulary, got none");
      return it->second;
    };
    m_unk = m_options.unk_id;
    m_cls = role(m_options.cls_token, "classifier");
    m_sep = role(m_options.sep_token, "separator");
    m_pad = role(m_options.pad_token, "padding");
    m_mask = role(m_options.mask_token, "mask");
    for (auto& t : added)
      if (t.normalized) t.content = normalize(t.content);
    m_added = std::move(added);
  }

  const special_layout& layout() const override { return m_options.post; }
  std::vector<std::int32_t> text_ids(std::string_view text, const char* where) const override {
    unicode::decode_utf8(text, where);  // validate once, up front
    std::vector<std::int32_t> ids;
    bool first_section = true;
    detail::split_added(m_added, text, false, [&](std::string_view section, std::int32_t id) {
      if (id >= 0) {
        ids.push_back(id);
        first_section = false;
        return;
      }
      const std::string normalized = normalize(section);
      detail::split_added(m_added, normalized, true, [&](std::string_view sub, std::int32_t sub_id) {
        if (sub_id >= 0) {
          ids.push_back(sub_id);
        } else {
          metaspace(sub, first_section, ids, where);
        }
        first_section = false;
      });
    });
    return ids;
  }

  /// Metaspace on one section, then Unigram on each of its words.
  void metaspace(std::string_view section, bool first_section, std::vector<std::int32_t>& ids, const char* where) const {
    const std::string& r = m_options.replacement;
    std::string s;
    for (char c : section) {
      if (c == ' ') s += r;
      else s += c;
    }
    const bool prepend = m_options.prepend_scheme == "always" || (m_options.prepend_scheme == "first" && first_section);
    if (prepend && s.compare(0, r.size(), r) != 0) s.insert(0, r);
    if (!m_options.split || r.empty()) {
      viterbi(s, ids, where);
      return;
    }
    std::size_t start = 0;
    for (std::size_t p = r.size(); p <= s.size(); ++p) {
      if (p == s.size() || s.compare(p, r.size(), r) == 0) {
        if (p > start) viterbi(std::string_view(s).substr(start, p - start), ids, where);
        start = p;
        if (p == s.size()) break;
      }
    }
  }

  /// The best segmentation of @p word (Hugging Face's `encode_optimized`).
  void viterbi(std::string_view word, std::vector<std::int32_t>& ids, const char* where) const {
    struct node {
      std::int32_t id = -1;
      std::int64_t start = -1;
      double score = 0;
    };
    const std::size_t n = word.size();
    std::vector<node> best(n + 1);
    best[0].start = 0;
    const double unk_score = m_min_score - 10.0;
    std::string key;
    for (std::size_t s = 0; s < n;) {
      if (best[s].start < 0) {  // not reachable: skip to the next character start (cannot happen with unk)
        ++s;
        continue;
      }
      const auto lead = static_cast<unsigned char>(word[s]);
      const std::size_t mblen = std::min<std::size_t>(lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4, n - s);
      bool single = false;
      for (std::size_t len = 1; len <= std::min(m_max_piece, n - s); ++len) {
        key.assign(word.substr(s, len));
        auto it = m_ids.find(key);
        if (it == m_ids.end()) continue;
        const double cand = best[s].score + m_scores[static_cast<std::size_t>(it->second)];
        node& e = best[s + len];
        if (e.start < 0 || cand > e.score) e = {it->second, static_cast<std::int64_t>(s), cand};
        if (len == mblen) single = true;
      }
      if (!single) {
        if (m_options.unk_id < 0)
          throw invalid_argument(std::string(where) + ": a vocabulary piece for \"" + std::string(word.substr(s, mblen)) +
                                 "\" expected (the model has no unknown piece), got none");
        const double cand = best[s].score + unk_score;
        node& e = best[s + mblen];
        if (e.start < 0 || cand > e.score) e = {m_options.unk_id, static_cast<std::int64_t>(s), cand};
      }
      s += mblen;
    }
    std::vector<std::int32_t> rev;
    for (std::int64_t p = static_cast<std::int64_t>(n); p > 0;) {
      const node& e = best[static_cast<std::size_t>(p)];
      // Consecutive unknowns fuse into one.
      if (!(e.id == m_options.unk_id && !rev.empty() && rev.back() == m_options.unk_id)) rev.push_back(e.id);
      p = e.start;
    }
    ids.insert(ids.end(), rev.rbegin(), rev.rend());
  }

  sentencepiece_options m_options;
  std::vector<double> m_scores;
  double m_min_score = 0;
  std::size_t m_max_piece = 1;
};

}  // namespace peft

#endif  // PEFT_TEXT_SENTENCEPIECE_HPP
