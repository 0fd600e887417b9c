// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_BPE_HPP
#define PEFT_TEXT_BPE_HPP

/// @file bpe.hpp
/// Byte-level BPE, the tokenizer of GPT-2, RoBERTa, BART and their descendants, as Hugging Face
/// `tokenizers` runs it (`ByteLevel` pre-tokenizer, `BPE` model, a RoBERTa, BERT, template or
/// byte-level post-processor, `ByteLevel` decoder):
///
/// 1. Added tokens (`<s>`, `<mask>`, ...) are matched verbatim in the text first, leftmost then
///    longest; `lstrip` / `rstrip` ones swallow the whitespace beside them. The text between
///    them is normalised (NFC / NFKC when the file asks) and pre-tokenized section by section.
/// 2. With `add_prefix_space`, a section that does not start with a space gets one.
/// 3. GPT-2's pattern splits the section into words: `'s 't 're 've 'm 'll 'd` (lower case
///    only), an optional space then letters (`\p{L}+`), an optional space then numbers
///    (`\p{N}+`), an optional space then anything else that is neither space, letter nor
///    number, whitespace that is not followed by a non-space, and any other whitespace. "Space"
///    is Unicode's White_Space property, as Rust's and Python's regex engines define `\s`.
/// 4. Each word's UTF-8 bytes become printable characters (GPT-2's byte-to-unicode table: the
///    188 printable Latin-1 bytes stand for themselves, the others for U+0100 onwards, so a
///    space is "Ġ"), and the word is merged pair by pair, the pair of lowest merge rank first
///    and the leftmost of equal ranks, until no pair of the merge list is left.
/// 5. The post-processor adds the special tokens: `<s> A </s>` and `<s> A </s></s> B </s>` with
///    token type 0 throughout for RoBERTa, none for GPT-2.
///
/// Decoding maps the characters back to bytes and the bytes to text, replacing an invalid
/// UTF-8 sequence (a word piece may end inside a character) with U+FFFD, as Rust's
/// `String::from_utf8_lossy` does.
///
/// Known difference from tokenizers.js 0.2.0 (a test reference), where this class follows the
/// Rust and Python tokenizers: JavaScript's `\s` also matches U+FEFF and not U+0085, so text
/// holding those two characters splits differently there.

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <queue>
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

/// Options of a byte-level BPE tokenizer (the fields of `tokenizer.json` it reads).
struct bpe_options {
  bool add_prefix_space = false;  ///< ByteLevel: a space before each section that lacks one
  bool use_regex = true;          ///< ByteLevel: split words with GPT-2's pattern
  bool ignore_merges = false;     ///< BPE: a word in the vocabulary is one token, unmerged
  /// Normaliser: "" (none), "NFC" or "NFKC".
  std::string normalizer;
  /// Role tokens; an empty name means the model has none (GPT-2 has no mask or classifier).
  std::string unk_token, cls_token, sep_token, pad_token, mask_token;
  /// Special tokens around the texts (default: none, as GPT-2's ByteLevel post-processor).
  special_layout post;
};

/// Byte-level BPE tokenizer (see the file comment).
class bpe_tokenizer : public layout_tokenizer {
public:
  /// @param vocab tokens in id order (byte-level characters, e.g. "Ġgreat")
  /// @param merges the merge list in rank order, each a pair of vocabulary tokens whose
  ///        concatenation is also in the vocabulary
  /// @param added tokens matched verbatim in the text; their ids may extend the vocabulary
  /// @throws peft::invalid_argument on an empty vocabulary, a duplicate or missing token, a
  ///         merge of unknown tokens, a byte with no vocabulary token and no unknown token, a
  ///         named role token that is not in the vocabulary, or an unknown normaliser
  bpe_tokenizer(std::vector<std::string> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
                bpe_options options = {}, std::vector<added_token> added = {})
      : m_options(std::move(options)) {
    m_vocab = std::move(vocab);
    build("bpe_tokenizer::bpe_tokenizer", merges, std::move(added));
  }

  /// Reads a Hugging Face `tokenizer.json` whose model is BPE with the ByteLevel pre-tokenizer.
  /// Understood: normaliser null, NFC or NFKC; pre-tokenizer ByteLevel (`add_prefix_space`,
  /// `use_regex`); post-processor RobertaProcessing, BertProcessing, TemplateProcessing (one id
  /// per special token), ByteLevel, a Sequence of those, or null; decoder ByteLevel or null; the
  /// model's `vocab`, `merges` ("a b" strings or [a, b] pairs), `unk_token`, `ignore_merges`;
  /// `added_tokens`; `padding.pad_token`. The mask token is the added token "<mask>" when there
  /// is one.
  /// @throws peft::io_error naming the file and field on anything else (BPE dropout, a
  ///         continuing-subword prefix or end-of-word suffix, byte fallback, other normalisers
  ///         or pre-tokenizers) or a malformed file.
  static bpe_tokenizer from_tokenizer_json(const std::string& path) {
    static const char* where = "bpe_tokenizer::from_tokenizer_json";
    const nlohmann::json j = detail::read_tokenizer_json(path, where);
    return from_json(j, path, where);
  }

  /// Reads a `tokenizer.json` already parsed (see from_tokenizer_json); `path` names it in errors.
  static bpe_tokenizer from_json(const nlohmann::json& j, const std::string& path,
                                 const char* where = "bpe_tokenizer::from_json") {
    auto bad = [&](const std::string& what, const std::string& expected, const std::string& got) {
      return io_error(std::string(where) + ": " + path + ": " + what + " expected " + expected + ", got " + got);
    };
    using detail::brief_json;
    if (!j.contains("model") || !j["model"].is_object()) throw bad("\"model\"", "an object", "none");
    const auto& model = j["model"];
    if (model.value("type", "BPE") != "BPE") throw bad("model.type", "\"BPE\"", brief_json(model["type"]));
    bpe_options opt;
    auto empty_or_null = [&](const char* key) {
      if (!model.contains(key) || model[key].is_null()) return;
      if (!model[key].is_string() || !model[key].get<std::string>().empty())
        throw bad(std::string("model.") + key, "null or \"\" (byte-level BPE)", brief_json(model[key]));
    };
    empty_or_null("continuing_subword_prefix");
    empty_or_null("end_of_word_suffix");
    if (model.contains("dropout") && !model["dropout"].is_null() &&
        !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0))
      throw bad("model.dropout", "null (BPE dropout is a training-time sampler)", brief_json(model["dropout"]));
    if (model.contains("byte_fallback") && model["byte_fallback"].is_boolean() && model["byte_fallback"].get<bool>())
      throw bad("model.byte_fallback", "false (the bytes are the byte-level alphabet)", "true");
    auto get_bool = [&](const nlohmann::json& obj, const char* key, const std::string& name, bool& out) {
      if (!obj.contains(key) || obj[key].is_null()) return;
      if (!obj[key].is_boolean()) throw bad(name, "a boolean", brief_json(obj[key]));
      out = obj[key].get<bool>();
    };
    get_bool(model, "ignore_merges", "model.ignore_merges", opt.ignore_merges);
    if (model.contains("unk_token") && !model["unk_token"].is_null()) {
      if (!model["unk_token"].is_string()) throw bad("model.unk_token", "a string", brief_json(model["unk_token"]));
      opt.unk_token = model["unk_token"].get<std::string>();
    }
    // Normaliser.
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      const auto& n = j["normalizer"];
      const std::string type = n.is_object() ? n.value("type", "") : "";
      if (type != "NFC" && type != "NFKC") throw bad("normalizer.type", "null, \"NFC\" or \"NFKC\"", brief_json(n));
      opt.normalizer = type;
    }
    // Pre-tokenizer.
    if (!j.contains("pre_tokenizer") || !j["pre_tokenizer"].is_object() ||
        j["pre_tokenizer"].value("type", "") != "ByteLevel") {
      throw bad("pre_tokenizer.type", "\"ByteLevel\"",
                j.contains("pre_tokenizer") ? brief_json(j["pre_tokenizer"]) : std::string("none"));
    }
    get_bool(j["pre_tokenizer"], "add_prefix_space", "pre_tokenizer.add_prefix_space", opt.add_prefix_space);
    get_bool(j["pre_tokenizer"], "use_regex", "pre_tokenizer.use_regex", opt.use_regex);
    // Decoder (decode() is the ByteLevel one).
    if (j.contains("decoder") && !j["decoder"].is_null() &&
        (!j["decoder"].is_object() || j["decoder"].value("type", "") != "ByteLevel"))
      throw bad("decoder.type", "\"ByteLevel\" or null", brief_json(j["decoder"]));
    // Vocabulary, by id.
    if (!model.contains("vocab") || !model["vocab"].is_object()) throw bad("model.vocab", "an object", "none");
    const auto& v = model["vocab"];
    std::vector<std::string> vocab(v.size());
    std::vector<bool> seen(v.size(), false);
    for (auto it = v.begin(); it != v.end(); ++it) {
      std::int64_t id = -1;
      if (!detail::json_to_integer(it.value(), id))
        throw bad("model.vocab[\"" + it.key() + "\"]", "an integer id", brief_json(it.value()));
      if (id < 0 || id >= static_cast<std::int64_t>(v.size()))
        throw bad("model.vocab[\"" + it.key() + "\"]", "an id in [0, " + std::to_string(v.size()) + ")",
                  std::to_string(id));
      const auto k = static_cast<std::size_t>(id);
      if (seen[k])
        throw bad("model.vocab ids", "unique", "id " + std::to_string(id) + " for \"" + vocab[k] + "\" and \"" +
                                                   it.key() + "\"");
      seen[k] = true;
      vocab[k] = it.key();
    }
    // Merges: "a b" (tokenizers < 0.20) or ["a", "b"].
    std::vector<std::pair<std::string, std::string>> merges;
    if (!model.contains("merges") || !model["merges"].is_array()) throw bad("model.merges", "an array", "none");
    merges.reserve(model["merges"].size());
    for (std::size_t k = 0; k < model["merges"].size(); ++k) {
      const auto& m = model["merges"][k];
      const std::string name = "model.merges[" + std::to_string(k) + "]";
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const std::size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() || s.find(' ', sp + 1) != std::string::npos)
          throw bad(name, "two tokens separated by one space", brief_json(m));
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        throw bad(name, "\"a b\" or [\"a\", \"b\"]", brief_json(m));
      }
    }
    std::vector<added_token> added = detail::read_added_tokens(j, bad);
    auto id_of = [&](const std::string& token) { return detail::token_id_in(vocab, added, token); };
    // Post-processor: which tokens surround the texts.
    opt.post = detail::read_post_processor(j, bad, vocab, added, opt.cls_token, opt.sep_token);
    if (j.contains("padding") && j["padding"].is_object() && j["padding"].contains("pad_token") &&
        j["padding"]["pad_token"].is_string())
      opt.pad_token = j["padding"]["pad_token"].get<std::string>();
    else if (id_of("<pad>") >= 0)
      opt.pad_token = "<pad>";
    if (id_of("<mask>") >= 0) opt.mask_token = "<mask>";
    try {
      return bpe_tokenizer(std::move(vocab), merges, std::move(opt), std::move(added));
    } catch (const invalid_argument& e) {
      throw io_error(std::string(where) + ": " + path + ": " + e.what());
    }
  }

  /// Reads the older pair of files: `vocab.json` (token -> id) and `merges.txt` (a `#version`
  /// line, then one "a b" merge per line). Special tokens follow the vocabulary, as
  /// transformers' slow tokenizers do: RoBERTa's `<s> </s> <unk> <pad> <mask>` when `<s>` and
  /// `</s>` are in it (`<mask>` strips the space before it), else GPT-2's `<|endoftext|>` with
  /// no special tokens added around a text.
  /// @throws peft::io_error naming the file (and line) on anything malformed
  static bpe_tokenizer from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt,
                                         bool add_prefix_space = false) {
    static const char* where = "bpe_tokenizer::from_vocab_merges";
    nlohmann::json j = detail::read_tokenizer_json(vocab_json, where);
    nlohmann::json tok = {{"model", {{"type", "BPE"}, {"vocab", std::move(j)}, {"merges", nlohmann::json::array()}}},
                          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}}}};
    const std::string text = detail::read_tokenizer_file(merges_txt, where);
    std::size_t pos = 0, line = 0;
    auto& merges = tok["model"]["merges"];
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string l = text.substr(pos, end - pos);
      pos = end + 1;
      ++line;
      if (!l.empty() && l.back() == '\r') l.pop_back();
      if (l.empty() || (line == 1 && l.rfind("#version", 0) == 0)) continue;
      const std::size_t sp = l.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= l.size() || l.find(' ', sp + 1) != std::string::npos)
        throw io_error(std::string(where) + ": " + merges_txt + " line " + std::to_string(line) +
                       ": two tokens separated by one space expected, got \"" + l.substr(0, 60) + "\"");
      merges.push_back(nlohmann::json::array({l.substr(0, sp), l.substr(sp + 1)}));
    }
    const auto& vocab = tok["model"]["vocab"];
    auto special = [&](const std::string& s, bool lstrip) {
      return nlohmann::json{{"content", s}, {"id", vocab.contains(s) ? vocab[s] : nlohmann::json(-1)},
                            {"special", true}, {"lstrip", lstrip}, {"normalized", false}};
    };
    nlohmann::json added = nlohmann::json::array();
    if (vocab.is_object() && vocab.contains("<s>") && vocab.contains("</s>")) {
      for (const char* s : {"<s>", "<pad>", "</s>", "<unk>", "<mask>"})
        if (vocab.contains(s)) added.push_back(special(s, std::string(s) == "<mask>"));
      tok["post_processor"] = {{"type", "RobertaProcessing"},
                               {"cls", {"<s>", vocab["<s>"]}},
                               {"sep", {"</s>", vocab["</s>"]}}};
      if (vocab.contains("<unk>")) tok["model"]["unk_token"] = "<unk>";
    } else if (vocab.is_object() && vocab.contains("<|endoftext|>")) {
      added.push_back(special("<|endoftext|>", false));
    }
    tok["added_tokens"] = std::move(added);
    return from_json(tok, vocab_json + " + " + merges_txt, where);
  }

  std::string kind() const override { return "bpe"; }

  /// Text of `ids` (ByteLevel decoder); added tokens marked special are dropped when `skip_special`.
  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const override {
    std::string bytes;
    for (std::int32_t id : ids) {
      const std::string& t = id_to_token(id);
      if (skip_special && is_special(id)) continue;
      for (char32_t c : unicode::decode_utf8(t)) {
        const auto b = byte_of(c);
        if (b >= 0) {
          bytes.push_back(static_cast<char>(b));
        } else {
          unicode::append_utf8(bytes, c);  // an added token's own characters
        }
      }
    }
    return utf8_lossy(bytes);
  }

  const std::string& mask_token() const noexcept override { return m_options.mask_token; }
  const bpe_options& options() const noexcept { return m_options; }

  /// The printable character GPT-2's table gives byte `b` (e.g. 0x20 -> U+0120 "Ġ").
  static char32_t char_of_byte(std::uint8_t b) noexcept { return byte_table().first[b]; }

private:
  /// (byte -> char, char -> byte for chars < 0x144) of GPT-2's table.
  static const std::pair<std::array<char32_t, 256>, std::array<std::int16_t, 0x144>>& byte_table() {
    static const auto table = [] {
      std::pair<std::array<char32_t, 256>, std::array<std::int16_t, 0x144>> t{};
      t.second.fill(-1);
      char32_t next = 256;
      for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t.first[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
        t.second[t.first[static_cast<std::size_t>(b)]] = static_cast<std::int16_t>(b);
      }
      return t;
    }();
    return table;
  }
  static int byte_of(char32_t c) noexcept { return c < 0x144 ? byte_table().second[c] : -1; }

  /// `bytes` as UTF-8, each maximal invalid subsequence replaced by one U+FFFD.
  static std::string utf8_lossy(const std::string& bytes) {
    std::string out;
    const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::size_t n = bytes.size();
    std::size_t i = 0;
    while (i < n) {
      const unsigned char c = s[i];
      std::size_t len = 0;
      unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
      if (c < 0x80) len = 1;
      else if (c >= 0xC2 && c <= 0xDF) len = 2;
      else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
      else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
      std::size_t k = 1;
      if (len > 1) {
        for (; k < len && i + k < n; ++k) {
          const unsigned char b = s[i + k];
          if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
        }
      }
      if (len == 0 || k < len) {
        out += "\xEF\xBF\xBD";
        i += std::max<std::size_t>(k, 1);
      } else {
        out.append(bytes, i, len);
        i += len;
      }
    }
    return out;
  }

  void build(const char* where, const std::vector<std::pair<std::string, std::string>>& merges,
             std::vector<added_token> added) {
    if (m_vocab.empty()) throw invalid_argument(std::string(where) + ": a non-empty vocabulary expected, got 0 tokens");
    if (!m_options.normalizer.empty() && m_options.normalizer != "NFC" && m_options.normalizer != "NFKC")
      throw invalid_argument(std::string(where) + ": normalizer \"\", \"NFC\" or \"NFKC\" expected, got \"" +
                             m_options.normalizer + "\"");
    const std::size_t max_size = m_vocab.size() + added.size();
    for (const auto& t : added) {
      const auto id = static_cast<std::size_t>(t.id);
      if (t.content.empty()) throw invalid_argument(std::string(where) + ": non-empty added tokens expected, got an empty one");
      if (id >= max_size)
        throw invalid_argument(std::string(where) + ": added token '" + t.content + "' id expected < " +
                               std::to_string(max_size) + ", got " + std::to_string(id));
      if (id >= m_vocab.size()) m_vocab.resize(id + 1);
      if (m_vocab[id].empty()) m_vocab[id] = t.content;
    }
    m_ids.reserve(m_vocab.size());
    for (std::size_t i = 0; i < m_vocab.size(); ++i) {
      if (m_vocab[i].empty())
        throw invalid_argument(std::string(where) + ": a token expected for id " + std::to_string(i) + ", got none");
      if (!m_ids.emplace(m_vocab[i], static_cast<std::int32_t>(i)).second)
        throw invalid_argument(std::string(where) + ": unique tokens expected, got \"" + m_vocab[i] + "\" twice (id " +
                               std::to_string(i) + ")");
    }
    auto role = [&](const std::string& token, const char* name) -> std::int32_t {
      if (token.empty()) return -1;
      auto it = m_ids.find(token);
      if (it == m_ids.end())
        throw invalid_argument(std::string(where) + ": " + name + " token \"" + token +
                               "\" expected in the vocabulary, got none");
      return it->second;
    };
    m_unk = role(m_options.unk_token, "unknown");
    m_cls = role(m_options.cls_token, "classifier");
    m_sep = role(m_options.sep_token, "separator");
    m_pad = role(m_options.pad_token, "padding");
    m_mask = role(m_options.mask_token, "mask");
    for (const auto* items : {&m_options.post.single, &m_options.post.pair})
      for (std::int32_t id : *items)
        if (id >= static_cast<std::int32_t>(m_vocab.size()) || id < -2)
          throw invalid_argument(std::string(where) + ": post-processor token ids expected in the vocabulary, got " +
                                 std::to_string(id));
    // Every byte needs a symbol, or some text could not be encoded.
    for (int b = 0; b < 256; ++b) {
      std::string s;
      unicode::append_utf8(s, char_of_byte(static_cast<std::uint8_t>(b)));
      auto it = m_ids.find(s);
      m_byte_id[static_cast<std::size_t>(b)] = it == m_ids.end() ? m_unk : it->second;
      if (m_byte_id[static_cast<std::size_t>(b)] < 0)
        throw invalid_argument(std::string(where) + ": a vocabulary token for byte " + std::to_string(b) + " (\"" + s +
                               "\") or an unknown token expected, got neither");
    }
    m_merges.reserve(merges.size());
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const auto& [a, b] = merges[r];
      auto ia = m_ids.find(a), ib = m_ids.find(b), iab = m_ids.find(a + b);
      if (ia == m_ids.end() || ib == m_ids.end() || iab == m_ids.end())
        throw invalid_argument(std::string(where) + ": merge " + std::to_string(r) + " (\"" + a + "\", \"" + b +
                               "\") expected of vocabulary tokens into one, got " +
                               (ia == m_ids.end() ? "\"" + a + "\" unknown"
                                                  : ib == m_ids.end() ? "\"" + b + "\" unknown"
                                                                      : "\"" + a + b + "\" unknown"));
      // A pair listed twice keeps its last rank, as the Rust BPE builder's map does.
      m_merges[pair_key(ia->second, ib->second)] = {static_cast<std::int32_t>(r), iab->second};
    }
    for (auto& t : added) {
      if (t.normalized && !m_options.normalizer.empty())
        t.content = unicode::encode_utf8(normalize(unicode::decode_utf8(t.content, where)));
    }
    m_added = std::move(added);
  }

  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }

  std::u32string normalize(std::u32string text) const {
    if (m_options.normalizer == "NFC") return unicode::nfc(text);
    if (m_options.normalizer == "NFKC") return unicode::nfkc(text);
    return text;
  }

  const special_layout& layout() const override { return m_options.post; }
  std::vector<std::int32_t> text_ids(std::string_view text, const char* where) const override {
    unicode::decode_utf8(text, where);  // validate once, up front
    std::vector<std::int32_t> ids;
    detail::split_added(m_added, text, false, [&](std::string_view section, std::int32_t id) {
      if (id >= 0) {
        ids.push_back(id);
        return;
      }
      const std::string normalized =
          m_options.normalizer.empty() ? std::string(section)
                                       : unicode::encode_utf8(normalize(unicode::decode_utf8(section, where)));
      detail::split_added(m_added, normalized, true, [&](std::string_view sub, std::int32_t sub_id) {
        if (sub_id >= 0) {
          ids.push_back(sub_id);
        } else {
          pre_tokenize(sub, ids);
        }
      });
    });
    return ids;
  }

  /// ByteLevel pre-tokenisation of one section, then BPE of each word.
  void pre_tokenize(std::string_view section, std::vector<std::int32_t>& ids) const {
    std::u32string cps = unicode::decode_utf8(section);
    if (m_options.add_prefix_space && (cps.empty() || cps.front() != U' ')) cps.insert(cps.begin(), U' ');
    if (!m_options.use_regex) {
      bpe_word(cps, 0, cps.size(), ids);
      return;
    }
    auto space = [&](std::size_t k) { return k < cps.size() && unicode::is_whitespace(cps[k]); };
    auto letter = [&](std::size_t k) { return k < cps.size() && unicode::is_letter(cps[k]); };
    auto number = [&](std::size_t k) { return k < cps.size() && unicode::is_number(cps[k]); };
    auto other = [&](std::size_t k) { return k < cps.size() && !space(k) && !letter(k) && !number(k); };
    std::size_t i = 0;
    const std::size_t n = cps.size();
    while (i < n) {
      std::size_t end = i;
      if (cps[i] == U'\'') {  // 's 't 're 've 'm 'll 'd, first alternative that matches
        for (const char* c : {"s", "t", "re", "ve", "m", "ll", "d"}) {
          std::size_t k = 0;
          while (c[k] && i + 1 + k < n && cps[i + 1 + k] == static_cast<char32_t>(c[k])) ++k;
          if (!c[k]) {
            end = i + 1 + k;
            break;
          }
        }
      }
      if (end == i) {
        const std::size_t j = cps[i] == U' ' ? i + 1 : i;  // the optional space
        if (letter(j)) {
          end = j;
          while (letter(end)) ++end;
        } else if (number(j)) {
          end = j;
          while (number(end)) ++end;
        } else if (other(j)) {
          end = j;
          while (other(end)) ++end;
        } else {  // whitespace: a run not followed by a non-space, else the run less its last
          end = i;
          while (space(end)) ++end;
          if (end < n && end - i > 1) --end;
        }
      }
      bpe_word(cps, i, end, ids);
      i = end;
    }
  }

  /// Byte-level BPE of the code points [begin, end) of `cps`.
  void bpe_word(const std::u32string& cps, std::size_t begin, std::size_t end, std::vector<std::int32_t>& ids) const {
    std::string bytes;
    for (std::size_t k = begin; k < end; ++k) unicode::append_utf8(bytes, cps[k]);
    if (bytes.empty()) return;
    if (m_options.ignore_merges) {
      std::string word;
      for (char b : bytes) unicode::append_utf8(word, char_of_byte(static_cast<std::uint8_t>(b)));
      auto it = m_ids.find(word);
      if (it != m_ids.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    // Symbols as a linked list; merges from a queue ordered by (rank, position).
    struct symbol {
      std::int32_t id;
      std::int32_t prev, next;
    };
    std::vector<symbol> sym(bytes.size());
    for (std::size_t k = 0; k < bytes.size(); ++k) {
      sym[k] = {m_byte_id[static_cast<unsigned char>(bytes[k])], static_cast<std::int32_t>(k) - 1,
                k + 1 < bytes.size() ? static_cast<std::int32_t>(k + 1) : -1};
    }
    using item = std::pair<std::int32_t, std::int32_t>;  // (rank, left position)
    std::priority_queue<item, std::vector<item>, std::greater<item>> queue;
    auto push = [&](std::int32_t left) {
      if (left < 0 || sym[static_cast<std::size_t>(left)].next < 0) return;
      const auto& l = sym[static_cast<std::size_t>(left)];
      auto it = m_merges.find(pair_key(l.id, sym[static_cast<std::size_t>(l.next)].id));
      if (it != m_merges.end()) queue.emplace(it->second.first, left);
    };
    for (std::size_t k = 0; k + 1 < sym.size(); ++k) push(static_cast<std::int32_t>(k));
    while (!queue.empty()) {
      const auto [rank, left] = queue.top();
      queue.pop();
      auto& l = sym[static_cast<std::size_t>(left)];
      if (l.id < 0 || l.next < 0) continue;  // merged away since
      auto& r = sym[static_cast<std::size_t>(l.next)];
      auto it = m_merges.find(pair_key(l.id, r.id));
      if (it == m_merges.end() || it->second.first != rank) continue;  // the pair changed
      l.id = it->second.second;
      r.id = -1;
      l.next = r.next;
      if (r.next >= 0) sym[static_cast<std::size_t>(r.next)].prev = left;
      push(l.prev);
      push(left);
    }
    for (std::int32_t k = 0; k >= 0; k = sym[static_cast<std::size_t>(k)].next) ids.push_back(sym[static_cast<std::size_t>(k)].id);
  }

  bpe_options m_options;
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, std::int32_t>> m_merges;  // (rank, merged id)
  std::array<std::int32_t, 256> m_byte_id{};
};

}  // namespace peft

#endif  // PEFT_TEXT_BPE_HPP
