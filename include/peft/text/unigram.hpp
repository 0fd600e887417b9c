// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_UNIGRAM_HPP
#define PEFT_TEXT_UNIGRAM_HPP

/// @file unigram.hpp
/// SentencePiece-unigram tokenizer for Universal Sentence Encoder lite, reproducing exactly the
/// ids that the USE-lite TF.js runtime (`@energetic-ai/embeddings` 0.2.0, whose tokenizer is
/// the one of `@tensorflow-models/universal-sentence-encoder` 1.3.3) feeds the model:
///
/// 1. NFKC-normalise the text. If the result is non-empty, prepend U+2581 ("▁") and replace
///    every U+0020 space (only that character: tabs, newlines and other spaces stay as they
///    are, and runs of spaces are kept) by U+2581. No lower-casing, no trimming.
/// 2. Split into code points. For each position, every vocabulary piece that starts there is a
///    lattice edge with the piece's score; a position where no piece starts gets one edge of
///    length 1 with id 0 (the unknown piece) and score 0.
/// 3. Viterbi over end positions in increasing order, edges by increasing start: the best score
///    of an end position starts at 0, and 0 also means "unset", so an edge replaces it when the
///    current best is exactly 0 or its score is >= the best (ties go to the later start).
///    Positions no edge reaches keep score 0 and id 0.
/// 4. Backtrack from the end, stepping back by the UTF-16 length of the chosen piece's string
///    (the unknown piece "\uFFFD" has length 1), merge runs of consecutive id 0, and reverse.
///
/// Quirks of the real vocab.json that this reproduces: pieces 0-5 (unknown, `<s>`, `</s>`,
/// three extra ids) are never produced; seven pieces have a `null` score, which JavaScript
/// adds as 0; ":30" scores +30 and ":00" scores 0; "”5" appears three times and the last one
/// (id 4464) wins. Ids are the model's embedding rows directly (no offset); the table has
/// 8002 rows, of which 8000 and 8001 are never produced. No begin or end token is added. The
/// model itself keeps only positions < 128 (its ClipToMaxLength node), so encode() truncates to
/// the first `max_length` ids (default 128).

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/types.hpp"
#include "../core/limits.hpp"
#include "../error.hpp"
#include "unicode.hpp"

namespace peft {

/// One vocabulary entry: the piece and its log-probability score.
struct unigram_piece {
  std::string piece;
  double score = 0.0;
};

/// SentencePiece-unigram tokenizer (USE-lite flavour, see the file comment).
class unigram_tokenizer {
public:
  /// Sequence length the USE-lite model keeps.
  static constexpr index default_max_length = 128;

  /// Builds the tokenizer from pieces in id order; the first `reserved` pieces (control and
  /// unknown symbols) are never matched.
  /// @throws peft::invalid_argument if there are no matchable pieces or `reserved` is outside
  ///         [1, pieces.size()), or a piece is not valid UTF-8.
  explicit unigram_tokenizer(std::vector<unigram_piece> pieces, index reserved = 6)
      : m_pieces(std::move(pieces)) {
    static const char* where = "unigram_tokenizer::unigram_tokenizer";
    if (reserved < 1 || static_cast<std::size_t>(reserved) >= m_pieces.size()) {
      throw invalid_argument(detail::expected_got(
          where, "reserved count", "in [1, " + std::to_string(m_pieces.size()) + ")", reserved));
    }
    m_reserved = reserved;
    build(where);
  }

  /// Reads a USE-style `vocab.json`: an array of `[piece, score]` pairs (a `null` score counts
  /// as 0, as in the JavaScript runtime).
  /// @throws peft::io_error if the file cannot be read or parsed, or an entry is malformed
  ///         (naming the entry index).
  static unigram_tokenizer from_vocab_json(const std::string& path, index reserved = 6) {
    static const char* where = "unigram_tokenizer::from_vocab_json";
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(std::string(where) + ": a readable file expected, got \"" + path + "\"");
    std::ostringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
      j = detail::parse_json_limited(ss.str(), std::string(where) + ": " + path);
    } catch (const nlohmann::json::exception& e) {
      throw io_error(std::string(where) + ": valid JSON expected in " + path + ", got " + e.what());
    }
    if (!j.is_array())
      throw io_error(std::string(where) + ": " + path + ": a top-level array expected, got " + j.type_name());
    std::vector<unigram_piece> pieces;
    pieces.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
      const auto& e = j[i];
      if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !(e[1].is_number() || e[1].is_null())) {
        std::string got = e.dump();
        if (got.size() > 60) got = got.substr(0, 57) + "...";
        throw io_error(std::string(where) + ": " + path + ": entry " + std::to_string(i) +
                       " expected [string, number or null], got " + got);
      }
      pieces.push_back({e[0].get<std::string>(), e[1].is_null() ? 0.0 : e[1].get<double>()});
    }
    try {
      return unigram_tokenizer(std::move(pieces), reserved);
    } catch (const invalid_argument& e) {
      throw io_error(std::string(where) + ": " + path + ": " + e.what());
    }
  }

  /// Ids of `text` as the model receives them, keeping the first `max_length`.
  /// @throws peft::invalid_argument if `max_length < 1` or `text` is not valid UTF-8.
  std::vector<std::int32_t> encode(std::string_view text, index max_length = default_max_length) const {
    static const char* where = "unigram_tokenizer::encode";
    if (max_length < 1) throw invalid_argument(detail::expected_got(where, "max_length", ">= 1", max_length));
    std::u32string s = unicode::nfkc(unicode::decode_utf8(text, where));
    if (!s.empty()) {
      std::replace(s.begin(), s.end(), U' ', separator);
      s.insert(s.begin(), separator);
    }
    const std::size_t n = s.size();

    // Lattice edges, generated by increasing start, then bucketed by end (stable).
    struct edge {
      std::uint32_t start;
      std::int32_t id;
      double score;
    };
    std::vector<edge> edges;
    std::vector<std::uint32_t> edge_end;
    edges.reserve(n * 4);
    edge_end.reserve(n * 4);
    for (std::size_t i = 0; i < n; ++i) {
      bool any = false;
      std::int32_t at = 0;
      for (std::size_t k = i; k < n; ++k) {
        at = child(at, s[k]);
        if (at < 0) break;
        const auto& nd = m_nodes[static_cast<std::size_t>(at)];
        if (nd.id >= 0) {
          edges.push_back({static_cast<std::uint32_t>(i), nd.id, nd.score});
          edge_end.push_back(static_cast<std::uint32_t>(k + 1));
          any = true;
        }
      }
      if (!any) {
        edges.push_back({static_cast<std::uint32_t>(i), 0, 0.0});
        edge_end.push_back(static_cast<std::uint32_t>(i + 1));
      }
    }
    std::vector<std::uint32_t> first(n + 2, 0);
    for (auto e : edge_end) ++first[e + 1];
    for (std::size_t p = 1; p < first.size(); ++p) first[p] += first[p - 1];
    std::vector<std::uint32_t> order(edges.size());
    {
      std::vector<std::uint32_t> fill(first.begin(), first.end() - 1);
      for (std::size_t k = 0; k < edges.size(); ++k)
        order[fill[edge_end[k]]++] = static_cast<std::uint32_t>(k);
    }

    // Viterbi with the runtime's "0 means unset" rule.
    std::vector<double> best(n + 1, 0.0);
    std::vector<std::int32_t> words(n + 1, 0);
    for (std::size_t end = 0; end <= n; ++end) {
      for (std::uint32_t q = first[end]; q < first[end + 1]; ++q) {
        const edge& e = edges[order[q]];
        const double score = e.score + best[e.start];
        if (best[end] == 0.0 || score >= best[end]) {
          best[end] = score;
          words[end] = e.id;
        }
      }
    }

    // Backtrack by the UTF-16 length of each chosen piece; merge consecutive unknowns.
    std::vector<std::int32_t> ids;
    std::ptrdiff_t iter = static_cast<std::ptrdiff_t>(n);
    bool previous_unknown = false;
    while (iter > 0) {
      const std::int32_t id = words[static_cast<std::size_t>(iter)];
      if (!(previous_unknown && id == 0)) ids.push_back(id);
      previous_unknown = id == 0;
      iter -= static_cast<std::ptrdiff_t>(m_utf16_length[static_cast<std::size_t>(id)]);
    }
    std::reverse(ids.begin(), ids.end());
    if (ids.size() > static_cast<std::size_t>(max_length)) ids.resize(static_cast<std::size_t>(max_length));
    return ids;
  }

  /// Number of pieces (ids are in [0, vocab_size())).
  index vocab_size() const noexcept { return static_cast<index>(m_pieces.size()); }
  /// Number of leading pieces that are never matched.
  index reserved() const noexcept { return m_reserved; }
  /// Id of the unknown piece.
  static constexpr std::int32_t unk_id() noexcept { return 0; }
  /// Piece of `id`. @throws peft::invalid_argument if `id` is outside [0, vocab_size()).
  const unigram_piece& piece(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= m_pieces.size()) {
      throw invalid_argument(detail::expected_got("unigram_tokenizer::piece", "id in [0, vocab_size)",
                                                  "[0, " + std::to_string(m_pieces.size()) + ")", id));
    }
    return m_pieces[static_cast<std::size_t>(id)];
  }

private:
  static constexpr char32_t separator = 0x2581;

  struct node {
    std::uint32_t first_child = 0;  // into m_edges
    std::uint32_t num_children = 0;
    std::int32_t id = -1;  // piece ending here, or -1
    double score = 0.0;
  };
  struct child_edge {
    char32_t symbol;
    std::int32_t target;
  };

  std::int32_t child(std::int32_t parent, char32_t c) const {
    const node& p = m_nodes[static_cast<std::size_t>(parent)];
    const auto* b = m_edges.data() + p.first_child;
    const auto* e = b + p.num_children;
    const auto* it = std::lower_bound(b, e, c, [](const child_edge& x, char32_t v) { return x.symbol < v; });
    return (it != e && it->symbol == c) ? it->target : -1;
  }

  void build(const char* where) {
    // Insert into a simple build-time trie (children as sorted vectors), later pieces overwriting
    // earlier duplicates as the runtime's trie does, then flatten.
    std::vector<std::vector<child_edge>> kids(1);
    std::vector<node> nodes(1);
    m_utf16_length.resize(m_pieces.size());
    for (std::size_t i = 0; i < m_pieces.size(); ++i) {
      std::u32string cps;
      try {
        cps = unicode::decode_utf8(m_pieces[i].piece, where);
      } catch (const invalid_argument&) {
        throw invalid_argument(std::string(where) + ": valid UTF-8 expected for piece " + std::to_string(i) +
                               ", got invalid bytes");
      }
      std::size_t len16 = 0;
      for (char32_t c : cps) len16 += unicode::utf16_length(c);
      m_utf16_length[i] = static_cast<std::uint32_t>(len16);
      if (static_cast<index>(i) < m_reserved || cps.empty()) continue;
      std::int32_t cur = 0;
      for (char32_t c : cps) {
        auto& ks = kids[static_cast<std::size_t>(cur)];
        auto it = std::lower_bound(ks.begin(), ks.end(), c,
                                   [](const child_edge& x, char32_t v) { return x.symbol < v; });
        if (it != ks.end() && it->symbol == c) {
          cur = it->target;
        } else {
          const auto fresh = static_cast<std::int32_t>(nodes.size());
          ks.insert(it, {c, fresh});
          nodes.emplace_back();
          kids.emplace_back();
          cur = fresh;
        }
      }
      nodes[static_cast<std::size_t>(cur)].id = static_cast<std::int32_t>(i);
      nodes[static_cast<std::size_t>(cur)].score = m_pieces[i].score;
    }
    if (nodes.size() == 1)
      throw invalid_argument(std::string(where) + ": at least one matchable piece expected, got none");
    for (std::size_t k = 0; k < nodes.size(); ++k) {
      nodes[k].first_child = static_cast<std::uint32_t>(m_edges.size());
      nodes[k].num_children = static_cast<std::uint32_t>(kids[k].size());
      m_edges.insert(m_edges.end(), kids[k].begin(), kids[k].end());
    }
    m_nodes = std::move(nodes);
  }

  std::vector<unigram_piece> m_pieces;
  std::vector<std::uint32_t> m_utf16_length;
  std::vector<node> m_nodes;
  std::vector<child_edge> m_edges;
  index m_reserved = 6;
};

}  // namespace peft

#endif  // PEFT_TEXT_UNIGRAM_HPP
