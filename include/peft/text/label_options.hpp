// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_LABEL_OPTIONS_HPP
#define PEFT_TEXT_LABEL_OPTIONS_HPP

/// @file label_options.hpp
/// A classification row written as reading comprehension, as MPMP unifies its tasks
/// (METHODS.md §15.6; Hzfinfdu/MPMP `Deep/dataloader.py`): the text, then every label's name
/// written as an option, separated by a comma. A span head (start/end logits per position)
/// answers by pointing at one option, so a task with labels no other task had needs no new
/// head: its labels are new options.
///
/// Layouts (the reference: `[CLS] prompts text opt_1 ， opt_2 ， ...`):
///  - a tokenizer with special tokens: its pair layout, the text first and the options second,
///    `[CLS] text [SEP] opt_1 , opt_2 , ... opt_C [SEP]` (a text pair: `text [SEP] text_b` as the first part);
///  - USE-lite's unigram tokenizer (no special tokens): `text opt_1 , opt_2 , ... opt_C`.
/// The text is cut to fit; the options never are.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "word_alignment.hpp"

namespace peft {

/// A row with the label options written after its text.
struct option_encoding {
  std::vector<std::int32_t> ids, segments;     ///< segments: token types (empty for USE-lite)
  std::vector<std::pair<index, index>> spans;  ///< each option's first and last position, in label order
};

namespace detail {

/// Lays out text pieces @p a and the options (each option's pieces, @p sep between two) inside
/// @p frame's pair layout, or bare when @p frame is null; cuts @p a to fit @p max_length.
inline option_encoding assemble_options(const special_frame* frame, std::vector<std::int32_t> a,
                                        const std::vector<std::vector<std::int32_t>>& options,
                                        const std::vector<std::string>& names, const std::vector<std::int32_t>& sep,
                                        index max_length) {
  const char* where = "encode_with_options";
  if (options.empty()) throw invalid_argument(std::string(where) + ": expected >= 1 option, got 0");
  std::vector<std::int32_t> b;
  std::vector<std::pair<std::size_t, std::size_t>> rel;  // option spans within b
  for (std::size_t k = 0; k < options.size(); ++k) {
    if (options[k].empty())
      throw invalid_argument(std::string(where) + ": option " + std::to_string(k) + " '" + names[k] +
                             "' expected to yield pieces, got none");
    if (k > 0) b.insert(b.end(), sep.begin(), sep.end());
    rel.emplace_back(b.size(), b.size() + options[k].size() - 1);
    b.insert(b.end(), options[k].begin(), options[k].end());
  }
  const std::size_t specials = frame ? frame->ids.size() : 0;
  if (max_length < 0 || static_cast<std::size_t>(max_length) < specials + b.size() + 1)
    throw invalid_argument(detail::expected_got(
        where, "max_length",
        ">= " + std::to_string(specials + b.size() + 1) + " (" + std::to_string(specials) + " special tokens, " +
            std::to_string(b.size()) + " pieces of the " + std::to_string(options.size()) + " options, 1 of text)",
        max_length));
  if (a.empty()) throw invalid_argument(std::string(where) + ": text expected to yield pieces, got none");
  a.resize(std::min(a.size(), static_cast<std::size_t>(max_length) - specials - b.size()));
  option_encoding e;
  std::size_t b_start = 0;
  if (!frame) {
    e.ids = a;
    b_start = e.ids.size();
    e.ids.insert(e.ids.end(), b.begin(), b.end());
  } else {
    const auto& f = *frame;
    auto put = [&](std::size_t from, std::size_t to) {
      for (std::size_t k = from; k < to; ++k) {
        e.ids.push_back(f.ids[k]);
        e.segments.push_back(f.types[k]);
      }
    };
    put(0, f.a_at);
    e.ids.insert(e.ids.end(), a.begin(), a.end());
    e.segments.insert(e.segments.end(), a.size(), f.a_type);
    put(f.a_at, f.b_at);
    b_start = e.ids.size();
    e.ids.insert(e.ids.end(), b.begin(), b.end());
    e.segments.insert(e.segments.end(), b.size(), f.b_type);
    put(f.b_at, f.ids.size());
  }
  for (const auto& [s, t] : rel) e.spans.emplace_back(static_cast<index>(b_start + s), static_cast<index>(b_start + t));
  return e;
}

}  // namespace detail

/// @p text (and @p text_b when not null) with @p options written after it, in @p tok's pair
/// layout (see the file comment). Byte-level BPE writes each option with a leading space, as
/// a word inside a sentence.
/// @throws peft::invalid_argument when an option or the text yields no pieces, or
///   @p max_length cannot hold the special tokens, every option and one piece of text
/// @param frame @p tok's pair layout (`option_frame`), found once for a whole data set
inline option_encoding encode_with_options(const tokenizer& tok, const detail::special_frame& frame,
                                           const std::string& text, const std::string* text_b,
                                           const std::vector<std::string>& options, index max_length) {
  const bool space = detail::is_byte_level(tok);
  std::vector<std::int32_t> a = tok.piece_ids(text);
  if (text_b) {
    a.push_back(tok.sep_id());
    const auto b = tok.piece_ids(space ? " " + *text_b : *text_b);
    a.insert(a.end(), b.begin(), b.end());
  }
  std::vector<std::vector<std::int32_t>> pieces;
  for (const auto& o : options) pieces.push_back(tok.piece_ids(space ? " " + o : o));
  return detail::assemble_options(&frame, std::move(a), pieces, options, tok.piece_ids(space ? " ," : ","),
                                  max_length);
}

/// @p tok's pair layout, which encode_with_options writes the options into.
inline detail::special_frame option_frame(const tokenizer& tok) {
  return detail::find_frame(tok, true, "encode_with_options");
}

/// The same, finding @p tok's pair layout first.
inline option_encoding encode_with_options(const tokenizer& tok, const std::string& text, const std::string* text_b,
                                           const std::vector<std::string>& options, index max_length) {
  return encode_with_options(tok, option_frame(tok), text, text_b, options, max_length);
}

/// The same for USE-lite's unigram tokenizer: no special tokens; each option and the comma
/// are encoded as texts of their own (each starts with "▁", as every encoded text does).
inline option_encoding encode_with_options(const unigram_tokenizer& tok, const std::string& text,
                                           const std::string* text_b, const std::vector<std::string>& options,
                                           index max_length) {
  constexpr index all = std::numeric_limits<index>::max();
  std::vector<std::int32_t> a = tok.encode(text, all);
  if (text_b) {
    const auto b = tok.encode(*text_b, all);
    a.insert(a.end(), b.begin(), b.end());
  }
  std::vector<std::vector<std::int32_t>> pieces;
  for (const auto& o : options) pieces.push_back(tok.encode(o, all));
  return detail::assemble_options(nullptr, std::move(a), pieces, options, tok.encode(",", all), max_length);
}

}  // namespace peft

#endif  // PEFT_TEXT_LABEL_OPTIONS_HPP
