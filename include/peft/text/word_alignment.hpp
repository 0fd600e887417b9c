// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_WORD_ALIGNMENT_HPP
#define PEFT_TEXT_WORD_ALIGNMENT_HPP

/// @file word_alignment.hpp
/// Model input rows made from words, and predictions read back onto words, for the two task
/// kinds whose labels live on words rather than on the whole text:
///
/// - Token classification (BIO / NER): encode_words() tokenizes each word on its own, as
///   Hugging Face tokenizers do with `is_split_into_words=True`, keeps which word every
///   position comes from, and truncates at whole words; align_word_labels() puts each word's
///   tag on its first piece (-100, ignored by the loss, everywhere else), word_predictions()
///   reads one prediction per word back.
/// - Extractive reading comprehension (SQuAD): qa_windows() splits the context at white
///   space, tokenizes each word, and slides windows of `question + context pieces` over long
///   contexts (BERT's run_squad recipe: windows start every `doc_stride` pieces, and a piece
///   counts for the window where it has the most context on both sides); best_answer() picks
///   the highest-scoring span of one example from its windows' start/end logits and returns it
///   as the context's own bytes.
///
/// Where the special tokens go is read from the tokenizer itself (what encode() and
/// encode_pair() put around a probe text), so every `peft::tokenizer` works: BERT's
/// `[CLS] A [SEP] B [SEP]` with token types 0/1, RoBERTa's `<s> A </s></s> B </s>`, GPT-2's
/// bare texts.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/types.hpp"
#include "../data/task_data.hpp"
#include "../error.hpp"
#include "tokenizer.hpp"
#include "unicode.hpp"
#include "unigram.hpp"

namespace peft {

/// A row of ids made from words: which word each position comes from (-1: a special token).
struct word_encoding {
  std::vector<std::int32_t> ids, segments;  ///< segments: token types (all 0: the single-text layout)
  std::vector<int> word_of_token;           ///< same length as ids; -1 for special tokens
  std::size_t words_kept = 0;               ///< leading words that fit in max_length; the rest are cut whole
};

namespace detail {

/// The special tokens of a tokenizer's single or pair layout, and where the texts go.
struct special_frame {
  std::vector<std::int32_t> ids, types;  ///< the special tokens in order, with their token types
  std::size_t a_at = 0, b_at = 0;        ///< the first / second text goes before ids[a_at] / ids[b_at]
  std::int32_t a_type = 0, b_type = 0;   ///< token types of the texts' pieces
};

/// Where `tok` puts its special tokens around one text (`pair == false`) or two. Found from
/// encode() / encode_pair() of an empty text and of a probe text whose first piece is not a
/// special token: that piece's position is where the text goes.
/// @throws peft::invalid_argument if no probe gives a consistent layout
inline special_frame find_frame(const tokenizer& tok, bool pair, const char* where) {
  constexpr index big = index(1) << 20;
  special_frame f;
  std::vector<std::int32_t> types;
  if (pair) {
    f.ids = tok.encode_pair("", "", big, &f.types);
    f.types.resize(f.ids.size(), 0);
  } else {
    f.ids = tok.encode("", big);
    f.types.assign(f.ids.size(), 0);
  }
  auto special = [&](std::int32_t id) { return std::find(f.ids.begin(), f.ids.end(), id) != f.ids.end(); };
  for (const char* probe : {"a", "x", "the", "1", "A", "."}) {
    const std::vector<std::int32_t> q = tok.piece_ids(probe);
    if (q.empty() || special(q.front())) continue;
    std::vector<std::int32_t> s = pair ? tok.encode_pair(probe, probe, big, &types) : tok.encode(probe, big);
    types.resize(s.size(), 0);
    const std::size_t texts = pair ? 2 : 1;
    if (s.size() != f.ids.size() + texts * q.size()) continue;
    std::size_t a = 0;
    while (a < s.size() && special(s[a])) ++a;
    std::size_t b = a + q.size();
    if (pair) {
      while (b < s.size() && special(s[b])) ++b;
      if (b == s.size()) continue;
      b -= q.size();
    }
    // a and b index the special tokens before which each text goes; check the rebuilt row.
    std::vector<std::int32_t> rebuilt(f.ids.begin(), f.ids.begin() + static_cast<std::ptrdiff_t>(a));
    rebuilt.insert(rebuilt.end(), q.begin(), q.end());
    if (pair) {
      if (b < a || b > f.ids.size()) continue;
      rebuilt.insert(rebuilt.end(), f.ids.begin() + static_cast<std::ptrdiff_t>(a),
                     f.ids.begin() + static_cast<std::ptrdiff_t>(b));
      rebuilt.insert(rebuilt.end(), q.begin(), q.end());
      rebuilt.insert(rebuilt.end(), f.ids.begin() + static_cast<std::ptrdiff_t>(b), f.ids.end());
    } else {
      if (a > f.ids.size()) continue;
      rebuilt.insert(rebuilt.end(), f.ids.begin() + static_cast<std::ptrdiff_t>(a), f.ids.end());
    }
    if (rebuilt != s) continue;
    f.a_at = a;
    f.b_at = b;
    f.a_type = types[a];
    if (pair) f.b_type = types[b + q.size()];
    return f;
  }
  throw invalid_argument(std::string(where) + ": a tokenizer whose " + (pair ? "pair" : "single-text") +
                         " layout can be probed expected, got one whose probe texts do not encode to pieces "
                         "between its special tokens");
}

/// "'word' (word 3)" for error messages, the word shortened to 40 bytes.
inline std::string name_word(const std::string& w, std::size_t k) {
  return "'" + (w.size() > 40 ? w.substr(0, 37) + "..." : w) + "' (word " + std::to_string(k) + ")";
}

/// Builds a word_encoding from each word's pieces inside `frame` (single layout), keeping the
/// leading words that fit in `max_length`.
inline word_encoding assemble_words(const special_frame& frame,
                                    const std::vector<std::vector<std::int32_t>>& pieces,
                                    const std::vector<std::string>& words, index max_length,
                                    const char* where) {
  const std::size_t specials = frame.ids.size();
  for (std::size_t k = 0; k < pieces.size(); ++k)
    if (pieces[k].empty())
      throw invalid_argument(std::string(where) +
                             ": every word expected to yield pieces, got no pieces for " +
                             name_word(words[k], k));
  const std::size_t first = pieces.empty() ? 1 : pieces.front().size();
  if (max_length < 0 || static_cast<std::size_t>(max_length) < specials + first)
    throw invalid_argument(detail::expected_got(
        where, "max_length",
        ">= " + std::to_string(specials + first) + " (" + std::to_string(specials) + " special tokens + " +
            (pieces.empty() ? std::string("1 piece")
                            : std::to_string(first) + " pieces of " + name_word(words[0], 0)) +
            ")",
        max_length));
  const std::size_t budget = static_cast<std::size_t>(max_length) - specials;
  word_encoding e;
  std::size_t used = 0;
  while (e.words_kept < pieces.size() && used + pieces[e.words_kept].size() <= budget)
    used += pieces[e.words_kept++].size();
  auto put_specials = [&](std::size_t from, std::size_t to) {
    for (std::size_t k = from; k < to; ++k) {
      e.ids.push_back(frame.ids[k]);
      e.word_of_token.push_back(-1);
    }
  };
  put_specials(0, frame.a_at);
  for (std::size_t w = 0; w < e.words_kept; ++w) {
    e.ids.insert(e.ids.end(), pieces[w].begin(), pieces[w].end());
    e.word_of_token.insert(e.word_of_token.end(), pieces[w].size(), static_cast<int>(w));
  }
  put_specials(frame.a_at, specials);
  e.segments.assign(e.ids.size(), 0);
  return e;
}

/// Whether `tok` is byte-level BPE, whose words carry their leading space ("Ġ").
inline bool is_byte_level(const tokenizer& tok) { return tok.kind() == "bpe"; }

}  // namespace detail

/// Words as Hugging Face tokenizers encode `is_split_into_words=True`: each word tokenized on
/// its own (byte-level BPE: each non-empty word with a leading space unless it has one, as
/// `add_prefix_space=True` does, RoBERTa's recipe), between the tokenizer's special tokens for
/// one text. Words that do not fit in `max_length` are cut whole: a word is never split.
/// @param words the words of one sentence (each must yield at least one piece)
/// @throws peft::invalid_argument if `max_length` cannot hold the special tokens plus the first
///         word (plus one piece when there are no words), or a word yields no pieces (naming the
///         word and its position), or on invalid UTF-8
inline word_encoding encode_words(const tokenizer& tok, const std::vector<std::string>& words,
                                  index max_length) {
  static const char* where = "encode_words";
  const detail::special_frame frame = detail::find_frame(tok, false, where);
  const bool space = detail::is_byte_level(tok);
  std::vector<std::vector<std::int32_t>> pieces;
  pieces.reserve(words.size());
  for (const auto& w : words)
    pieces.push_back(tok.piece_ids(space && !w.empty() && w.front() != ' ' ? " " + w : w));
  return detail::assemble_words(frame, pieces, words, max_length, where);
}

/// The same for USE-lite's unigram tokenizer, which adds no special tokens: each word is
/// encoded as the text it is alone (so it starts with "▁", as encode() prepends it to every
/// non-empty text).
/// @throws peft::invalid_argument as the other overload
inline word_encoding encode_words(const unigram_tokenizer& tok, const std::vector<std::string>& words,
                                  index max_length) {
  static const char* where = "encode_words";
  std::vector<std::vector<std::int32_t>> pieces;
  pieces.reserve(words.size());
  for (const auto& w : words) pieces.push_back(tok.encode(w, std::numeric_limits<index>::max()));
  return detail::assemble_words(detail::special_frame{}, pieces, words, max_length, where);
}

/// Label ids per position: a word's first piece gets its word's label, its other pieces and the
/// special tokens get -100 (ignored), as Hugging Face's token-classification recipes do
/// (`label_all_tokens=False`).
/// @param word_labels one label per word of the sentence `e` was made from
/// @throws peft::invalid_argument if `e` names a word beyond `word_labels`
inline std::vector<int> align_word_labels(const word_encoding& e, const std::vector<int>& word_labels) {
  if (word_labels.size() < e.words_kept)
    throw invalid_argument(detail::expected_got("align_word_labels", "word labels",
                                                ">= " + std::to_string(e.words_kept), word_labels.size()));
  std::vector<int> out(e.word_of_token.size(), -100);
  for (std::size_t p = 0; p < e.word_of_token.size(); ++p) {
    const int w = e.word_of_token[p];
    if (w < 0 || (p > 0 && e.word_of_token[p - 1] == w)) continue;
    if (static_cast<std::size_t>(w) >= word_labels.size())
      throw invalid_argument(detail::expected_got("align_word_labels", "word labels",
                                                  ">= " + std::to_string(w + 1), word_labels.size()));
    out[p] = word_labels[static_cast<std::size_t>(w)];
  }
  return out;
}

/// One prediction per word from one per position: each kept word takes its first piece's
/// prediction; words cut by truncation get `fallback`.
/// @param position_predictions one per position of `e` (more, e.g. a padded row, are ignored)
/// @param words the sentence's number of words (the size of the result)
/// @throws peft::invalid_argument if there are fewer predictions than positions or `words` is
///         below `e.words_kept`
inline std::vector<int> word_predictions(const word_encoding& e, const std::vector<int>& position_predictions,
                                         std::size_t words, int fallback) {
  static const char* where = "word_predictions";
  if (position_predictions.size() < e.word_of_token.size())
    throw invalid_argument(detail::expected_got(where, "position predictions",
                                                ">= " + std::to_string(e.word_of_token.size()),
                                                position_predictions.size()));
  if (words < e.words_kept)
    throw invalid_argument(detail::expected_got(where, "words", ">= " + std::to_string(e.words_kept), words));
  std::vector<int> out(words, fallback);
  std::vector<bool> seen(words, false);
  for (std::size_t p = 0; p < e.word_of_token.size(); ++p) {
    const int w = e.word_of_token[p];
    if (w < 0 || static_cast<std::size_t>(w) >= words || seen[static_cast<std::size_t>(w)]) continue;
    seen[static_cast<std::size_t>(w)] = true;
    out[static_cast<std::size_t>(w)] = position_predictions[p];
  }
  return out;
}

/// One window of an extractive-QA example: `[CLS] question [SEP] context pieces [SEP]` in the
/// tokenizer's pair layout.
struct qa_window {
  std::vector<std::int32_t> ids, segments;
  std::size_t example = 0;                   ///< index of the qa_example in the input vector
  index context_begin = 0, context_end = 0;  ///< positions [begin, end) of the context pieces in ids
  std::vector<int> word_of_token;            ///< context word of each position (-1 outside the context)
  std::vector<bool> max_context;             ///< per position: the piece has its most context in this window
  index start = 0, end = 0;                  ///< answer's first / last piece; 0, 0 when not in this window
};

/// A context split into words at white space (Unicode White_Space).
struct qa_context_words {
  std::vector<std::string> words;
  std::vector<std::pair<std::size_t, std::size_t>> spans;  ///< byte spans [begin, end) in the context
};

/// The words of `context` (runs of non-White_Space characters) with their byte spans.
/// @throws peft::invalid_argument on invalid UTF-8
inline qa_context_words split_context(const std::string& context) {
  const std::u32string cps = unicode::decode_utf8(context, "split_context");
  qa_context_words out;
  std::size_t byte = 0;
  bool in_word = false;
  for (char32_t c : cps) {
    const std::size_t len = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (unicode::is_whitespace(c)) {
      in_word = false;
    } else if (in_word) {
      out.spans.back().second = byte + len;
    } else {
      out.spans.emplace_back(byte, byte + len);
      in_word = true;
    }
    byte += len;
  }
  for (const auto& [b, e] : out.spans) out.words.push_back(context.substr(b, e - b));
  return out;
}

/// All windows of all examples, in example order (BERT's run_squad recipe). Each context word
/// is tokenized on its own (byte-level BPE: with the space before it, as in the running text,
/// so the first word of a context that starts the text has none); the question is tokenized as
/// a whole and cut to `max_query_length` pieces; windows of at most `max_length - question -
/// special tokens` context pieces start every `doc_stride` pieces (every window length, if
/// shorter, so no piece is skipped) until one reaches the end (an empty context gets one empty
/// window); `max_context` marks, per piece, the window where min(pieces left, pieces right) +
/// 0.01 * window length is highest (the first such window on ties). The training target is the
/// first answer of an answerable example: its byte span mapped to the words it touches, then to
/// the first piece of the first word and the last piece of the last word; 0, 0 in windows that
/// do not hold it whole, and for unanswerable or unlabelled examples.
/// @throws peft::invalid_argument if an answer does not lie in its context or covers no word
///         (naming the example id), `max_length` cannot hold an example's question, the
///         special tokens and one context piece (naming the example id), `doc_stride < 1` or
///         `max_query_length < 1`, or on invalid UTF-8
inline std::vector<qa_window> qa_windows(const tokenizer& tok, const std::vector<qa_example>& examples,
                                         index max_length, index doc_stride, index max_query_length) {
  static const char* where = "qa_windows";
  if (doc_stride < 1) throw invalid_argument(detail::expected_got(where, "doc_stride", ">= 1", doc_stride));
  if (max_query_length < 1)
    throw invalid_argument(detail::expected_got(where, "max_query_length", ">= 1", max_query_length));
  const detail::special_frame frame = detail::find_frame(tok, true, where);
  const bool space = detail::is_byte_level(tok);
  const std::size_t specials = frame.ids.size();
  std::vector<qa_window> out;
  for (std::size_t x = 0; x < examples.size(); ++x) {
    const qa_example& ex = examples[x];
    const std::string name = "example '" + ex.id + "'";
    // Question pieces, cut.
    std::vector<std::int32_t> q = tok.piece_ids(ex.question);
    if (q.size() > static_cast<std::size_t>(max_query_length))
      q.resize(static_cast<std::size_t>(max_query_length));
    if (max_length < 0 || static_cast<std::size_t>(max_length) < q.size() + specials + 1)
      throw invalid_argument(detail::expected_got(
          where, "max_length",
          ">= " + std::to_string(q.size() + specials + 1) + " for " + name + " (" + std::to_string(q.size()) +
              " question pieces + " + std::to_string(specials) + " special tokens + 1 context piece)",
          max_length));
    const std::size_t room = static_cast<std::size_t>(max_length) - q.size() - specials;
    // Context pieces and the word of each; first piece of each word (words without pieces
    // point at the next word's).
    const qa_context_words cw = split_context(ex.context);
    std::vector<std::int32_t> doc;
    std::vector<int> doc_word;
    std::vector<std::size_t> word_begin(cw.words.size() + 1), word_end(cw.words.size());
    for (std::size_t w = 0; w < cw.words.size(); ++w) {
      word_begin[w] = doc.size();
      const bool lead = space && cw.spans[w].first > 0;
      const auto p = tok.piece_ids(lead ? " " + cw.words[w] : cw.words[w]);
      doc.insert(doc.end(), p.begin(), p.end());
      doc_word.insert(doc_word.end(), p.size(), static_cast<int>(w));
      word_end[w] = doc.size();
    }
    word_begin[cw.words.size()] = doc.size();
    // Answers: each must lie in the context and cover a word; the first is the target.
    bool has_target = false;
    std::size_t target_first = 0, target_last = 0;  // doc piece positions, inclusive
    for (std::size_t a = 0; a < ex.answers.size(); ++a) {
      const qa_answer& ans = ex.answers[a];
      const std::size_t b = ans.start, e = ans.start + ans.text.size();
      if (ans.text.empty() || b > ex.context.size() || ans.text.size() > ex.context.size() - b)
        throw invalid_argument(std::string(where) + ": " + name + ": answer " + std::to_string(a) +
                               " expected a non-empty byte span inside the context (" +
                               std::to_string(ex.context.size()) + " bytes), got [" + std::to_string(b) +
                               ", " + std::to_string(e) + ")");
      std::size_t first_word = 0;
      while (first_word < cw.spans.size() && cw.spans[first_word].second <= b) ++first_word;
      std::size_t words_before_end = first_word;
      while (words_before_end < cw.spans.size() && cw.spans[words_before_end].first < e) ++words_before_end;
      if (words_before_end == first_word)
        throw invalid_argument(std::string(where) + ": " + name + ": answer " + std::to_string(a) +
                               " expected to cover a word of the context, got only white space at [" +
                               std::to_string(b) + ", " + std::to_string(e) + ")");
      if (a == 0 && !ex.impossible) {
        const std::size_t first = word_begin[first_word], last_end = word_end[words_before_end - 1];
        if (last_end > first) {  // else the words have no pieces: nothing to point at
          has_target = true;
          target_first = first;
          target_last = last_end - 1;
        }
      }
    }
    // Window spans over the context pieces.
    std::vector<std::pair<std::size_t, std::size_t>> spans;  // (begin, length)
    for (std::size_t s = 0;;) {
      const std::size_t len = std::min(room, doc.size() - s);
      spans.emplace_back(s, len);
      if (s + len >= doc.size()) break;
      s += std::min(len, static_cast<std::size_t>(doc_stride));  // a stride beyond the window skips nothing
    }
    // Which window gives each piece the most context (min of left and right, ties to the
    // longer window, then the earlier one).
    std::vector<std::size_t> best_window(doc.size(), 0);
    std::vector<double> best_score(doc.size(), -1.0);
    for (std::size_t k = 0; k < spans.size(); ++k) {
      const auto [s, len] = spans[k];
      for (std::size_t p = s; p < s + len; ++p) {
        const double score =
            static_cast<double>(std::min(p - s, s + len - 1 - p)) + 0.01 * static_cast<double>(len);
        if (score > best_score[p]) {
          best_score[p] = score;
          best_window[p] = k;
        }
      }
    }
    for (std::size_t k = 0; k < spans.size(); ++k) {
      const auto [s, len] = spans[k];
      qa_window win;
      win.example = x;
      auto put = [&](std::int32_t id, std::int32_t type, int word, bool max_ctx) {
        win.ids.push_back(id);
        win.segments.push_back(type);
        win.word_of_token.push_back(word);
        win.max_context.push_back(max_ctx);
      };
      auto put_specials = [&](std::size_t from, std::size_t to) {
        for (std::size_t i = from; i < to; ++i) put(frame.ids[i], frame.types[i], -1, false);
      };
      put_specials(0, frame.a_at);
      for (std::int32_t id : q) put(id, frame.a_type, -1, false);
      put_specials(frame.a_at, frame.b_at);
      win.context_begin = static_cast<index>(win.ids.size());
      for (std::size_t p = s; p < s + len; ++p) put(doc[p], frame.b_type, doc_word[p], best_window[p] == k);
      win.context_end = static_cast<index>(win.ids.size());
      put_specials(frame.b_at, specials);
      if (has_target && target_first >= s && target_last < s + len) {
        win.start = win.context_begin + static_cast<index>(target_first - s);
        win.end = win.context_begin + static_cast<index>(target_last - s);
      }
      out.push_back(std::move(win));
    }
  }
  return out;
}

/// The answer best_answer() picks: the context's bytes, its score, and where it is.
struct qa_answer_span {
  std::string text;  ///< the context bytes from the first word's begin to the last word's end; "" for null
  double score = 0;  ///< start + end logit (the null score for a null answer)
  std::size_t window = 0;    ///< index into the windows passed
  index start = 0, end = 0;  ///< positions in that window (0, 0 for a null answer)
};

/// The best answer of one example from its windows' start and end logits (BERT's run_squad
/// rule). In each window, the `n_best` highest start and the `n_best` highest end positions
/// among the context pieces are paired; a pair counts when end >= start, end - start + 1 <=
/// `max_answer_length` and the start piece has its most context in this window; its score is
/// start logit + end logit, and the highest wins (the first one on ties). With `allow_null`
/// (SQuAD 2.0), the null score is the minimum over windows of `start_logits[w][0] +
/// end_logits[w][0]`, and the answer is "" when null score - best score > `null_threshold`
/// (also when no pair counts). Without it, no counting pair gives "" with score -infinity.
/// @param context the example's context (the windows' word indices point into its words)
/// @param windows the example's windows, in qa_windows() order
/// @param start_logits, end_logits per window, one logit per position (extra ones are ignored)
/// @throws peft::invalid_argument on no windows, a null window, windows of different examples,
///         logits of the wrong count or shorter than a window, a word index beyond the context,
///         `n_best < 1` or `max_answer_length < 1`
inline qa_answer_span best_answer(const std::string& context, const std::vector<const qa_window*>& windows,
                                  const std::vector<std::vector<double>>& start_logits,
                                  const std::vector<std::vector<double>>& end_logits, index n_best = 20,
                                  index max_answer_length = 30, bool allow_null = false,
                                  double null_threshold = 0.0) {
  static const char* where = "best_answer";
  if (windows.empty())
    throw invalid_argument(std::string(where) + ": at least one window expected, got none");
  if (n_best < 1) throw invalid_argument(detail::expected_got(where, "n_best", ">= 1", n_best));
  if (max_answer_length < 1)
    throw invalid_argument(detail::expected_got(where, "max_answer_length", ">= 1", max_answer_length));
  if (start_logits.size() != windows.size() || end_logits.size() != windows.size())
    throw invalid_argument(detail::expected_got(
        where, "start / end logit rows", windows.size(),
        std::to_string(start_logits.size()) + " / " + std::to_string(end_logits.size())));
  const qa_context_words cw = split_context(context);
  for (std::size_t k = 0; k < windows.size(); ++k) {
    const qa_window* w = windows[k];
    if (!w)
      throw invalid_argument(std::string(where) + ": window " + std::to_string(k) + " expected, got null");
    if (w->example != windows[0]->example)
      throw invalid_argument(detail::expected_got(where, ("example of window " + std::to_string(k)).c_str(),
                                                  windows[0]->example, w->example));
    if (start_logits[k].size() < w->ids.size() || end_logits[k].size() < w->ids.size() || w->ids.empty())
      throw invalid_argument(detail::expected_got(
          where, ("logits of window " + std::to_string(k)).c_str(),
          ">= " + std::to_string(std::max<std::size_t>(w->ids.size(), 1)),
          std::to_string(start_logits[k].size()) + " / " + std::to_string(end_logits[k].size())));
    if (w->word_of_token.size() != w->ids.size() || w->max_context.size() != w->ids.size() ||
        w->context_begin < 0 || w->context_end < w->context_begin ||
        static_cast<std::size_t>(w->context_end) > w->ids.size())
      throw invalid_argument(std::string(where) + ": window " + std::to_string(k) +
                             " expected as qa_windows() makes it");
    for (index p = w->context_begin; p < w->context_end; ++p) {
      const int word = w->word_of_token[static_cast<std::size_t>(p)];
      if (word < 0 || static_cast<std::size_t>(word) >= cw.words.size())
        throw invalid_argument(
            detail::expected_got(where, "context word index", "< " + std::to_string(cw.words.size()), word));
    }
  }
  // The n_best positions of the context with the highest finite logits, highest first.
  auto top = [&](const std::vector<double>& logits, const qa_window& w) {
    std::vector<index> pos;
    for (index p = w.context_begin; p < w.context_end; ++p)
      if (std::isfinite(logits[static_cast<std::size_t>(p)])) pos.push_back(p);
    std::stable_sort(pos.begin(), pos.end(), [&](index a, index b) {
      return logits[static_cast<std::size_t>(a)] > logits[static_cast<std::size_t>(b)];
    });
    if (pos.size() > static_cast<std::size_t>(n_best)) pos.resize(static_cast<std::size_t>(n_best));
    return pos;
  };
  qa_answer_span best;
  bool found = false;
  for (std::size_t k = 0; k < windows.size(); ++k) {
    const qa_window& w = *windows[k];
    const auto& sl = start_logits[k];
    const auto& el = end_logits[k];
    const auto starts = top(sl, w), ends = top(el, w);
    for (index s : starts) {
      if (!w.max_context[static_cast<std::size_t>(s)]) continue;
      for (index e : ends) {
        if (e < s || e - s + 1 > max_answer_length) continue;
        const double score = sl[static_cast<std::size_t>(s)] + el[static_cast<std::size_t>(e)];
        if (found && !(score > best.score)) continue;
        found = true;
        best.score = score;
        best.window = k;
        best.start = s;
        best.end = e;
      }
    }
  }
  if (found) {
    const auto& w = *windows[best.window];
    const std::size_t b =
        cw.spans[static_cast<std::size_t>(w.word_of_token[static_cast<std::size_t>(best.start)])].first;
    const std::size_t e =
        cw.spans[static_cast<std::size_t>(w.word_of_token[static_cast<std::size_t>(best.end)])].second;
    best.text = context.substr(b, e - b);
  }
  if (allow_null) {
    std::size_t null_window = 0;
    double null_score = std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < windows.size(); ++k) {
      const double s = start_logits[k][0] + end_logits[k][0];
      if (s < null_score) {
        null_score = s;
        null_window = k;
      }
    }
    if (!found || null_score - best.score > null_threshold) {
      qa_answer_span null;
      null.score = null_score;
      null.window = null_window;
      return null;
    }
  }
  if (!found) best.score = -std::numeric_limits<double>::infinity();
  return best;
}

}  // namespace peft

#endif  // PEFT_TEXT_WORD_ALIGNMENT_HPP
