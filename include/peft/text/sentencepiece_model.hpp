// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_SENTENCEPIECE_MODEL_HPP
#define PEFT_TEXT_SENTENCEPIECE_MODEL_HPP

/// @file sentencepiece_model.hpp
/// Tokenizers of model folders that hold SentencePiece's own `.model` file and no
/// tokenizer.json (XLM-RoBERTa's `sentencepiece.bpe.model`, ALBERT's `spiece.model`), run by
/// libsentencepiece with the ids and rules of transformers' slow `XLMRobertaTokenizer` and
/// `AlbertTokenizer`:
///
/// - **XLM-R** (fairseq's id layout): `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3; SentencePiece's
///   piece k (k >= 3; its 0, 1, 2 are `<unk>`, `<s>`, `</s>`) has id k + 1, its unknown piece
///   id 3, and `<mask>` is the last id (SentencePiece's size + 1). `<s> A </s>` and
///   `<s> A </s></s> B </s>`, every token type 0. decode() joins the pieces, turns "▁" into
///   spaces and strips the ends.
/// - **ALBERT** (SentencePiece's ids as they are): `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]`
///   (B's part token type 1), with `[CLS]`, `[SEP]`, `<pad>`, `[MASK]` and `<unk>` taken from
///   the model's pieces. Before SentencePiece, each text goes through AlbertTokenizer's
///   preprocessing (albert_text_options): whitespace stripped and collapsed, `` and '' to ",
///   NFKD without combining marks, lower case. A piece that ends in a digit and ',' ("▁9,") is
///   encoded again without its ',' and the ',' added as a piece of its own ("▁9" ","), as
///   AlbertTokenizer does so that "9,9" does not hide a number. decode() runs SentencePiece's
///   decoder between the special tokens (AlbertTokenizer.convert_tokens_to_string).
///
/// In both, the special tokens are matched verbatim in the text first (`<mask>` / `[MASK]`
/// swallowing the whitespace on their left, which changes nothing while SentencePiece strips
/// trailing whitespace itself, as both models' normalisers do), as transformers' slow
/// tokenizers split the text at them; each text between them is encoded on its own.
///
/// Departures from transformers: a pair is truncated by Hugging Face tokenizers' longest-first
/// rule (tokenizer::longest_first), which the slow tokenizers apply one token at a time and so
/// can split a tie the other way; decode() does not run `clean_up_tokenization_spaces` (it would
/// break the round trip); tokenize() gives vocabulary tokens (the unknown piece for characters the
/// model lacks), where transformers gives the text of an unknown piece. `<mask>`'s whitespace rule
/// strips Unicode White_Space, Python's `rstrip` also U+001C..U+001F.
///
/// Optional: this needs libsentencepiece (Debian: libsentencepiece-dev) and is compiled only
/// when `PEFT_WITH_SENTENCEPIECE` is defined (CMake: PEFT_SENTENCEPIECE, on by default when the
/// library is installed, links it into peft::peft; with it off, linking peft_sentencepiece_usage
/// does it for one target of peft's own tree).
/// Without it load_sentencepiece_model() still exists and throws peft::io_error saying so.
/// A folder with a tokenizer.json is read without the library (sentencepiece.hpp).

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../error.hpp"
#include "tokenizer.hpp"
#include "unicode.hpp"

#ifdef PEFT_WITH_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace peft {

/// Which transformers tokenizer a `.model` file is used as (see the file comment).
enum class spm_layout { xlm_roberta, albert };

/// AlbertTokenizer's text preprocessing, as tokenizer_config.json sets it.
struct albert_text_options {
  bool remove_space = true;   ///< strip the ends and collapse whitespace runs into one space
  bool keep_accents = false;  ///< false: NFKD, then every combining mark removed
  bool do_lower_case = true;  ///< lower-case (Python's `str.lower`, final sigma included)
};

namespace detail {

/// Python's `str.isspace`, which `str.split()` and `str.strip()` use: White_Space plus the
/// information separators U+001C..U+001F.
inline bool python_isspace(char32_t c) noexcept {
  return unicode::is_whitespace(c) || (c >= 0x1C && c <= 0x1F);
}

/// Python's `str.isdigit` (Numeric_Type Digit or Decimal, Unicode 14.0 as the other tables):
/// the ranges below, from `unicodedata`.
inline bool python_isdigit(char32_t c) noexcept {
  static constexpr char32_t ranges[][2] = {
      {0x30, 0x39},       {0xB2, 0xB3},       {0xB9, 0xB9},       {0x660, 0x669},     {0x6F0, 0x6F9},
      {0x7C0, 0x7C9},     {0x966, 0x96F},     {0x9E6, 0x9EF},     {0xA66, 0xA6F},     {0xAE6, 0xAEF},
      {0xB66, 0xB6F},     {0xBE6, 0xBEF},     {0xC66, 0xC6F},     {0xCE6, 0xCEF},     {0xD66, 0xD6F},
      {0xDE6, 0xDEF},     {0xE50, 0xE59},     {0xED0, 0xED9},     {0xF20, 0xF29},     {0x1040, 0x1049},
      {0x1090, 0x1099},   {0x1369, 0x1371},   {0x17E0, 0x17E9},   {0x1810, 0x1819},   {0x1946, 0x194F},
      {0x19D0, 0x19DA},   {0x1A80, 0x1A89},   {0x1A90, 0x1A99},   {0x1B50, 0x1B59},   {0x1BB0, 0x1BB9},
      {0x1C40, 0x1C49},   {0x1C50, 0x1C59},   {0x2070, 0x2070},   {0x2074, 0x2079},   {0x2080, 0x2089},
      {0x2460, 0x2468},   {0x2474, 0x247C},   {0x2488, 0x2490},   {0x24EA, 0x24EA},   {0x24F5, 0x24FD},
      {0x24FF, 0x24FF},   {0x2776, 0x277E},   {0x2780, 0x2788},   {0x278A, 0x2792},   {0xA620, 0xA629},
      {0xA8D0, 0xA8D9},   {0xA900, 0xA909},   {0xA9D0, 0xA9D9},   {0xA9F0, 0xA9F9},   {0xAA50, 0xAA59},
      {0xABF0, 0xABF9},   {0xFF10, 0xFF19},   {0x104A0, 0x104A9}, {0x10A40, 0x10A43}, {0x10D30, 0x10D39},
      {0x10E60, 0x10E68}, {0x11052, 0x1105A}, {0x11066, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F},
      {0x111D0, 0x111D9}, {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659},
      {0x116C0, 0x116C9}, {0x11730, 0x11739}, {0x118E0, 0x118E9}, {0x11950, 0x11959}, {0x11C50, 0x11C59},
      {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59},
      {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9}, {0x1E950, 0x1E959}, {0x1F100, 0x1F10A},
      {0x1FBF0, 0x1FBF9}};
  const auto* it = std::upper_bound(std::begin(ranges), std::end(ranges), c,
                                    [](char32_t v, const char32_t(&r)[2]) { return v < r[0]; });
  return it != std::begin(ranges) && c <= (*(it - 1))[1];
}

/// @p text with every non-overlapping @p from, left to right, replaced by @p to.
inline std::u32string replace_all(const std::u32string& text, std::u32string_view from,
                                  std::u32string_view to) {
  std::u32string out;
  for (std::size_t i = 0; i < text.size();) {
    if (text.compare(i, from.size(), from) == 0) {
      out += to;
      i += from.size();
    } else {
      out += text[i++];
    }
  }
  return out;
}

/// @p s without the python_isspace characters at its ends (Python's `str.strip()`).
inline std::u32string python_strip(std::u32string_view s) {
  std::size_t a = 0, b = s.size();
  while (a < b && python_isspace(s[a])) ++a;
  while (b > a && python_isspace(s[b - 1])) --b;
  return std::u32string(s.substr(a, b - a));
}

/// The sentencepiece model file of a folder: `sentencepiece.bpe.model` (XLM-R), else
/// `spiece.model` (ALBERT); empty when it has neither.
inline std::string sentencepiece_model_file(const std::string& dir) {
  namespace fs = std::filesystem;
  for (const char* name : {"sentencepiece.bpe.model", "spiece.model"})
    if (fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
  return {};
}

}  // namespace detail

/// AlbertTokenizer's `preprocess_text`: with `remove_space`, the text stripped and its
/// whitespace runs collapsed into one space; `` and '' replaced by "; without `keep_accents`,
/// NFKD and every character of non-zero canonical combining class removed; with
/// `do_lower_case`, Python's `str.lower`.
/// @throws peft::invalid_argument on invalid UTF-8
inline std::string albert_preprocess(std::string_view text, const albert_text_options& options,
                                     const char* where = "albert_preprocess") {
  std::u32string s = unicode::decode_utf8(text, where);
  if (options.remove_space) {
    std::u32string joined;
    bool space = false;
    for (char32_t c : detail::python_strip(s)) {
      if (detail::python_isspace(c)) {
        space = true;
        continue;
      }
      if (space) joined += U' ';
      space = false;
      joined += c;
    }
    s = std::move(joined);
  }
  s = detail::replace_all(detail::replace_all(s, U"``", U"\""), U"''", U"\"");
  if (!options.keep_accents) {
    s = unicode::nfkd(s);
    s.erase(std::remove_if(s.begin(), s.end(), [](char32_t c) { return unicode::combining_class(c) != 0; }),
            s.end());
  }
  if (options.do_lower_case) s = unicode::to_lower(s);
  return unicode::encode_utf8(s);
}

#ifdef PEFT_WITH_SENTENCEPIECE

/// A SentencePiece `.model` file run by libsentencepiece as XLM-R's or ALBERT's slow
/// transformers tokenizer (see the file comment). Copies share the loaded model, which is
/// only read after loading.
class sentencepiece_model_tokenizer : public layout_tokenizer {
public:
  /// Loads @p model_path and lays its ids out as @p layout says.
  /// @param albert the text preprocessing (ALBERT only)
  /// @throws peft::io_error naming the file: sentencepiece's message when it cannot load it
  ///         (absent, truncated, not a model), XLM-R's `<unk> <s> </s>` not at ids 0..2, or a
  ///         special token ALBERT needs not among the pieces
  sentencepiece_model_tokenizer(const std::string& model_path, spm_layout layout,
                                albert_text_options albert = {})
      : m_layout(layout), m_albert(albert) {
    static const char* where = "sentencepiece_model_tokenizer";
    auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
    const auto status = sp->Load(model_path);
    if (!status.ok()) {
      // sentencepiece names only the failed call when the protobuf does not parse.
      std::string msg = status.ToString();
      if (msg.find("ParseFromArray") != std::string::npos)
        msg = "bytes that are no ModelProto (truncated or another format): " + msg;
      throw io_error(std::string(where) + ": a SentencePiece model expected in \"" + model_path + "\", got " +
                     msg);
    }
    m_sp = std::move(sp);
    const int n = m_sp->GetPieceSize();
    auto bad = [&](const std::string& what, const std::string& got) {
      return io_error(std::string(where) + ": " + model_path + ": " + what + " expected, got " + got);
    };
    auto add = [&](const std::string& token, std::int32_t id, bool lstrip) {
      added_token t;
      t.content = token;
      t.id = id;
      t.lstrip = lstrip;
      t.special = true;
      t.normalized = false;
      m_added.push_back(std::move(t));
    };
    if (layout == spm_layout::xlm_roberta) {
      // fairseq's dictionary puts its four specials first and shifts SentencePiece's pieces by
      // one; SentencePiece's own <unk> <s> </s> (ids 0..2) give way to them.
      if (n < 3 || m_sp->IdToPiece(0) != "<unk>" || m_sp->IdToPiece(1) != "<s>" ||
          m_sp->IdToPiece(2) != "</s>")
        throw bad("pieces <unk> <s> </s> at ids 0, 1, 2 (XLM-R's layout)",
                  n < 3 ? std::to_string(n) + " pieces"
                        : "\"" + m_sp->IdToPiece(0) + "\" \"" + m_sp->IdToPiece(1) + "\" \"" +
                              m_sp->IdToPiece(2) + "\"");
      m_vocab = {"<s>", "<pad>", "</s>", "<unk>"};
      for (int k = 3; k < n; ++k) m_vocab.push_back(m_sp->IdToPiece(k));
      m_vocab.push_back("<mask>");
      m_cls = 0;
      m_pad = 1;
      m_sep = 2;
      m_unk = 3;
      m_mask = n + 1;
      m_mask_token = "<mask>";
      add("<s>", 0, false);
      add("<pad>", 1, false);
      add("</s>", 2, false);
      add("<unk>", 3, false);
      add("<mask>", m_mask, true);  // "behaves like a normal word": takes the space before it
      m_post = special_layout::roberta(m_cls, m_sep);
    } else {
      for (int k = 0; k < n; ++k) m_vocab.push_back(m_sp->IdToPiece(k));
      auto role = [&](const char* token) {
        const int id = m_sp->PieceToId(token);
        if (m_sp->IdToPiece(id) != token) throw bad(std::string("ALBERT's piece \"") + token + "\"", "none");
        return static_cast<std::int32_t>(id);
      };
      m_cls = role("[CLS]");
      m_sep = role("[SEP]");
      m_pad = role("<pad>");
      m_mask = role("[MASK]");
      m_unk = role("<unk>");
      m_mask_token = "[MASK]";
      add("[CLS]", m_cls, false);
      add("[SEP]", m_sep, false);
      add("<unk>", m_unk, false);
      add("<pad>", m_pad, false);
      add("[MASK]", m_mask, true);
      m_post = special_layout::bert(m_cls, m_sep);
    }
    // The specials first: transformers looks them up before the pieces.
    for (const auto& t : m_added) m_ids.emplace(t.content, t.id);
    for (std::size_t k = 0; k < m_vocab.size(); ++k) m_ids.emplace(m_vocab[k], static_cast<std::int32_t>(k));
  }

  /// The tokenizer of a model folder holding `sentencepiece.bpe.model` or `spiece.model`. The
  /// layout comes from tokenizer_config.json's `tokenizer_class` (XLMRobertaTokenizer or
  /// AlbertTokenizer, "Fast" or not), else config.json's `model_type` (xlm-roberta,
  /// xlm-roberta-xl, albert), else the file's name; ALBERT's `do_lower_case`, `remove_space`
  /// and `keep_accents` come from tokenizer_config.json when it sets them.
  /// @throws peft::io_error naming the file and field: no model file, another tokenizer class
  ///         or model type, a malformed JSON file, or what the constructor refuses
  static sentencepiece_model_tokenizer from_folder(const std::string& dir) {
    static const char* where = "sentencepiece_model_tokenizer::from_folder";
    namespace fs = std::filesystem;
    const std::string model = detail::sentencepiece_model_file(dir);
    if (model.empty())
      throw io_error(std::string(where) + ": '" + dir +
                     "': sentencepiece.bpe.model or spiece.model expected, got neither");
    const fs::path p(dir);
    nlohmann::json tok_config = nlohmann::json::object();
    const std::string tok_config_path = (p / "tokenizer_config.json").string();
    if (fs::exists(tok_config_path)) tok_config = detail::read_tokenizer_json(tok_config_path, where);
    auto bad = [&](const std::string& path, const std::string& what, const std::string& expected,
                   const std::string& got) {
      return io_error(std::string(where) + ": " + path + ": " + what + " expected " + expected + ", got " +
                      got);
    };
    spm_layout layout;
    const std::string config_path = (p / "config.json").string();
    if (tok_config.contains("tokenizer_class") && !tok_config["tokenizer_class"].is_null()) {
      const auto& c = tok_config["tokenizer_class"];
      const std::string name = c.is_string() ? c.get<std::string>() : std::string();
      if (name == "XLMRobertaTokenizer" || name == "XLMRobertaTokenizerFast")
        layout = spm_layout::xlm_roberta;
      else if (name == "AlbertTokenizer" || name == "AlbertTokenizerFast")
        layout = spm_layout::albert;
      else
        throw bad(tok_config_path, "tokenizer_class",
                  "\"XLMRobertaTokenizer\" or \"AlbertTokenizer\" (or \"...Fast\")", detail::brief_json(c));
    } else {
      const nlohmann::json config = fs::exists(config_path) ? detail::read_tokenizer_json(config_path, where)
                                                            : nlohmann::json::object();
      if (config.contains("model_type") && !config["model_type"].is_null()) {
        const auto& c = config["model_type"];
        const std::string type = c.is_string() ? c.get<std::string>() : std::string();
        if (type == "xlm-roberta" || type == "xlm-roberta-xl")
          layout = spm_layout::xlm_roberta;
        else if (type == "albert")
          layout = spm_layout::albert;
        else
          throw bad(config_path, "model_type", "\"xlm-roberta\", \"xlm-roberta-xl\" or \"albert\"",
                    detail::brief_json(c));
      } else {
        layout = fs::path(model).filename() == "spiece.model" ? spm_layout::albert : spm_layout::xlm_roberta;
      }
    }
    albert_text_options albert;
    auto flag = [&](const char* key, bool& out) {
      // XLMRobertaTokenizer has no such options; its folder's values are not read.
      if (layout != spm_layout::albert || !tok_config.contains(key) || tok_config[key].is_null()) return;
      if (!tok_config[key].is_boolean())
        throw bad(tok_config_path, key, "a boolean", detail::brief_json(tok_config[key]));
      out = tok_config[key].get<bool>();
    };
    flag("do_lower_case", albert.do_lower_case);
    flag("remove_space", albert.remove_space);
    flag("keep_accents", albert.keep_accents);
    return sentencepiece_model_tokenizer(model, layout, albert);
  }

  std::string kind() const override { return "sentencepiece_model"; }
  /// XLM-R's or ALBERT's ids and rules.
  spm_layout model_layout() const noexcept { return m_layout; }
  /// ALBERT's text preprocessing (unused for XLM-R).
  const albert_text_options& albert_options() const noexcept { return m_albert; }

  /// Text of @p ids. XLM-R: the tokens joined, "▁" turned into spaces, the ends stripped
  /// (XLMRobertaTokenizer.convert_tokens_to_string). ALBERT: SentencePiece's decoding of the
  /// pieces between special tokens, each kept special token preceded by a space unless it
  /// follows another, the ends stripped (AlbertTokenizer.convert_tokens_to_string).
  /// @throws peft::invalid_argument on an id outside the vocabulary
  std::string decode(const std::vector<std::int32_t>& ids, bool skip_special = true) const override {
    for (std::int32_t id : ids) id_to_token(id);  // range check, naming the id
    std::u32string out;
    if (m_layout == spm_layout::xlm_roberta) {
      std::string joined;
      for (std::int32_t id : ids)
        if (!(skip_special && is_special(id))) joined += m_vocab[static_cast<std::size_t>(id)];
      out = detail::replace_all(unicode::decode_utf8(joined), U"\u2581", U" ");
    } else {
      std::vector<int> run;
      bool prev_special = false;
      auto flush = [&] {
        std::string text;
        const auto status = m_sp->Decode(run, &text);
        if (!status.ok())
          throw invalid_argument("sentencepiece_model_tokenizer::decode: sentencepiece failed: " +
                                 status.ToString());
        run.clear();
        out += unicode::decode_utf8(text);
      };
      for (std::int32_t id : ids) {
        if (is_special(id)) {
          if (skip_special) continue;
          if (!prev_special) out += U' ';
          flush();
          out += unicode::decode_utf8(m_vocab[static_cast<std::size_t>(id)]);
          prev_special = true;
        } else {
          run.push_back(id);
          prev_special = false;
        }
      }
      flush();
    }
    return unicode::encode_utf8(detail::python_strip(out));
  }

  const std::string& mask_token() const noexcept override { return m_mask_token; }

private:
  const special_layout& layout() const override { return m_post; }

  std::vector<std::int32_t> text_ids(std::string_view text, const char* where) const override {
    unicode::decode_utf8(text, where);  // invalid UTF-8 is refused, not replaced by sentencepiece
    std::vector<std::int32_t> ids;
    detail::split_added(m_added, text, false, [&](std::string_view section, std::int32_t id) {
      if (id >= 0)
        ids.push_back(id);
      else if (m_layout == spm_layout::xlm_roberta)
        xlm_roberta_ids(section, ids, where);
      else
        albert_ids(section, ids, where);
    });
    return ids;
  }

  std::vector<std::string> spm_pieces(std::string_view text, const char* where) const {
    std::vector<std::string> pieces;
    const auto status = m_sp->Encode(text, &pieces);
    if (!status.ok())
      throw invalid_argument(std::string(where) + ": sentencepiece failed: " + status.ToString());
    return pieces;
  }

  void xlm_roberta_ids(std::string_view section, std::vector<std::int32_t>& ids, const char* where) const {
    std::vector<int> spm_ids;
    const auto status = m_sp->Encode(section, &spm_ids);
    if (!status.ok())
      throw invalid_argument(std::string(where) + ": sentencepiece failed: " + status.ToString());
    // Id 0 is SentencePiece's <unk> (checked on loading).
    for (int k : spm_ids) ids.push_back(k == 0 ? m_unk : static_cast<std::int32_t>(k + 1));
  }

  void albert_ids(std::string_view section, std::vector<std::int32_t>& ids, const char* where) const {
    static const std::string space = "\xE2\x96\x81";  // "▁"
    auto id_of = [&](const std::string& piece) {
      ids.push_back(static_cast<std::int32_t>(m_sp->PieceToId(piece)));
    };
    for (const std::string& piece : spm_pieces(albert_preprocess(section, m_albert, where), where)) {
      const std::u32string cps = unicode::decode_utf8(piece);
      if (cps.size() < 2 || cps.back() != U',' || !detail::python_isdigit(cps[cps.size() - 2])) {
        id_of(piece);
        continue;
      }
      // "▁9," becomes "▁9" ",": the piece without its ',' (and without "▁") encoded again,
      // its leading "▁" dropped when the original piece had none.
      std::string inner = piece.substr(0, piece.size() - 1);
      for (std::size_t at; (at = inner.find(space)) != std::string::npos;) inner.erase(at, space.size());
      std::vector<std::string> cur = spm_pieces(inner, where);
      if (piece.compare(0, space.size(), space) != 0 && !cur.empty() &&
          cur[0].compare(0, space.size(), space) == 0) {
        if (cur[0] == space)
          cur.erase(cur.begin());
        else
          cur[0].erase(0, space.size());
      }
      for (const auto& c : cur) id_of(c);
      id_of(",");
    }
  }

  std::shared_ptr<const sentencepiece::SentencePieceProcessor> m_sp;
  spm_layout m_layout;
  albert_text_options m_albert;
  special_layout m_post;
  std::string m_mask_token;
};

#endif  // PEFT_WITH_SENTENCEPIECE

/// The tokenizer of a model folder holding a SentencePiece `.model` file
/// (sentencepiece_model_tokenizer::from_folder).
/// @throws peft::io_error as from_folder does; when peft is built without libsentencepiece
///         (no `PEFT_WITH_SENTENCEPIECE`), always, saying how to build it with the library
inline std::shared_ptr<const tokenizer> load_sentencepiece_model(const std::string& dir) {
#ifdef PEFT_WITH_SENTENCEPIECE
  return std::make_shared<sentencepiece_model_tokenizer>(sentencepiece_model_tokenizer::from_folder(dir));
#else
  const std::string model = detail::sentencepiece_model_file(dir);
  throw io_error(
      "load_sentencepiece_model: '" + dir + "' has a SentencePiece model (" +
      (model.empty() ? std::string("none found") : std::filesystem::path(model).filename().string()) +
      ") and no tokenizer.json; reading it needs libsentencepiece, which this peft was built without "
      "(install Debian's libsentencepiece-dev and configure with -DPEFT_SENTENCEPIECE=ON, or link "
      "peft_sentencepiece_usage); a tokenizer.json, if the model has one exported, is read without it");
#endif
}

}  // namespace peft

#endif  // PEFT_TEXT_SENTENCEPIECE_MODEL_HPP
