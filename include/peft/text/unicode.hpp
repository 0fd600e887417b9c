// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TEXT_UNICODE_HPP
#define PEFT_TEXT_UNICODE_HPP

/// @file unicode.hpp
/// The Unicode pieces peft's tokenizers need: strict UTF-8 decoding and encoding, the
/// character classes BERT's basic tokenizer tests (control, punctuation, whitespace, CJK,
/// non-spacing marks), NFD, NFKC and full lower-casing (with U+0130 and the Final_Sigma
/// rule). Tables come from Python's `unicodedata` (Unicode 14.0, see
/// detail/unicode_tables.hpp and scripts/gen_unicode_tables.py) and are decoded once, on first
/// use, into sorted arrays searched by bisection.
///
/// Invalid UTF-8 is rejected, never replaced: both reference tokenizers work on JavaScript
/// strings, which cannot hold invalid UTF-8, so there is no reference behaviour to copy, and a
/// silent U+FFFD would be dropped by BERT's clean-up and become an unknown piece for
/// SentencePiece, hiding the caller's encoding bug.
///
/// Characters assigned after Unicode 14.0 are unassigned here (class `unassigned`, no
/// decomposition, no case mapping); runtimes with newer tables (Node 20 ships Unicode 17) can
/// differ on those characters only.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "detail/unicode_tables.hpp"

namespace peft {
namespace unicode {

/// The reduced character classes the tokenizers need.
enum class char_class : std::uint8_t {
  other = 0,            ///< symbols (S*) and spacing or enclosing marks (Mc, Me)
  mark_nonspacing = 1,  ///< general category Mn (removed by accent stripping)
  punctuation = 2,      ///< general categories Pc, Pd, Ps, Pe, Pi, Pf, Po
  control = 3,          ///< general categories Cc, Cf, Cs, Co
  unassigned = 4,       ///< general category Cn (in Unicode 14.0)
  separator = 5,        ///< general categories Zs, Zl, Zp
  letter = 6,           ///< general categories Lu, Ll, Lt, Lm, Lo
  number = 7            ///< general categories Nd, Nl, No
};

}  // namespace unicode

namespace detail {

/// Tables of detail/unicode_tables.hpp, decoded into sorted arrays.
class unicode_data {
public:
  struct decomposition {
    char32_t first;
    char32_t count;
    std::uint32_t data;  // target when len == 1, else offset into pool
    std::uint8_t len;
    bool compat;
  };
  struct run3 {
    char32_t first, last;
    std::uint32_t value;
  };
  struct lower_run {
    char32_t first;
    std::uint32_t count, stride;
    std::int32_t delta;
  };

  std::vector<char32_t> class_start;
  std::vector<std::uint8_t> class_id;
  std::vector<run3> ccc;
  std::vector<decomposition> decompositions;
  std::vector<char32_t> pool;
  std::vector<std::pair<std::uint64_t, char32_t>> compositions;  // (first << 21 | second)
  std::vector<lower_run> lower;
  std::vector<std::pair<char32_t, char32_t>> case_ignorable, cased;

  static const unicode_data& get() {
    static const unicode_data data;
    return data;
  }

private:
  class reader {
  public:
    explicit reader(const char* s) : m_s(s) {}
    bool done() const { return *m_s == '\0'; }
    std::uint32_t next() {
      std::uint32_t v = 0;
      unsigned shift = 0;
      for (;;) {
        const std::uint32_t d = digit(*m_s++);
        v |= (d & 31u) << shift;
        shift += 5;
        if (!(d & 32u)) return v;
      }
    }
    std::int32_t next_signed() {
      const std::uint32_t z = next();
      return (z & 1u) ? -static_cast<std::int32_t>((z + 1) / 2) : static_cast<std::int32_t>(z / 2);
    }

  private:
    static std::uint32_t digit(char c) {
      if (c >= 'A' && c <= 'Z') return static_cast<std::uint32_t>(c - 'A');
      if (c >= 'a' && c <= 'z') return static_cast<std::uint32_t>(c - 'a' + 26);
      if (c >= '0' && c <= '9') return static_cast<std::uint32_t>(c - '0' + 52);
      PEFT_ASSERT(c == '+' || c == '/');
      return c == '+' ? 62u : 63u;
    }
    const char* m_s;
  };

  static char32_t add(char32_t base, std::int32_t delta) {
    return static_cast<char32_t>(static_cast<std::int64_t>(base) + delta);
  }

  unicode_data() {
    namespace t = unicode_tables;
    for (reader r(t::classes); !r.done();) {
      const char32_t start = (class_start.empty() ? 0 : class_start.back()) + r.next();
      class_start.push_back(start);
      class_id.push_back(static_cast<std::uint8_t>(r.next()));
    }
    std::int64_t prev_last = -1;
    for (reader r(t::combining_classes); !r.done();) {
      const auto first = static_cast<char32_t>(prev_last + 1 + r.next());
      const char32_t last = first + r.next();
      ccc.push_back({first, last, r.next()});
      prev_last = last;
    }
    prev_last = -1;
    for (reader r(t::decompositions); !r.done();) {
      decomposition d{};
      d.first = static_cast<char32_t>(prev_last + 1 + r.next());
      const std::uint32_t head = r.next();
      d.len = static_cast<std::uint8_t>(head / 2);
      d.compat = (head & 1u) != 0;
      if (d.len == 1) {
        d.count = r.next();
        d.data = add(d.first, r.next_signed());
      } else {
        d.count = 1;
        d.data = static_cast<std::uint32_t>(pool.size());
        char32_t prev = d.first;
        for (std::uint8_t k = 0; k < d.len; ++k) pool.push_back(prev = add(prev, r.next_signed()));
      }
      decompositions.push_back(d);
      prev_last = d.first + d.count - 1;
    }
    std::vector<char32_t> exclusions;
    for (reader r(t::composition_exclusions); !r.done();) {
      exclusions.push_back((exclusions.empty() ? 0 : exclusions.back()) + r.next());
    }
    for (const auto& d : decompositions) {
      if (d.compat || d.len != 2) continue;
      const char32_t a = pool[d.data], b = pool[d.data + 1];
      if (combining_class(d.first) != 0 || combining_class(a) != 0) continue;
      if (std::binary_search(exclusions.begin(), exclusions.end(), d.first)) continue;
      compositions.emplace_back((std::uint64_t{a} << 21) | b, d.first);
    }
    std::sort(compositions.begin(), compositions.end());
    char32_t prev_first = 0;
    for (reader r(t::lower_case); !r.done();) {
      lower_run l{};
      l.first = prev_first + r.next();
      l.count = r.next() + 1;
      l.stride = r.next();
      l.delta = r.next_signed();
      lower.push_back(l);
      prev_first = l.first;
    }
    read_ranges(t::case_ignorable, case_ignorable);
    read_ranges(t::cased, cased);
  }

  static void read_ranges(const char* s, std::vector<std::pair<char32_t, char32_t>>& out) {
    std::int64_t prev_last = -1;
    for (reader r(s); !r.done();) {
      const auto first = static_cast<char32_t>(prev_last + 1 + r.next());
      const char32_t last = first + r.next();
      out.emplace_back(first, last);
      prev_last = last;
    }
  }

public:
  std::uint32_t combining_class(char32_t c) const {
    auto it =
        std::upper_bound(ccc.begin(), ccc.end(), c, [](char32_t v, const run3& r) { return v < r.first; });
    if (it == ccc.begin()) return 0;
    --it;
    return c <= it->last ? it->value : 0;
  }

  static bool in_ranges(const std::vector<std::pair<char32_t, char32_t>>& ranges, char32_t c) {
    auto it =
        std::upper_bound(ranges.begin(), ranges.end(), c,
                         [](char32_t v, const std::pair<char32_t, char32_t>& r) { return v < r.first; });
    if (it == ranges.begin()) return false;
    --it;
    return c <= it->second;
  }

  /// Decomposition of `c` as (pointer, length), or length 0 when it has none of the kind asked.
  std::pair<const char32_t*, std::size_t> decompose_one(char32_t c, bool compat, char32_t& single) const {
    auto it = std::upper_bound(decompositions.begin(), decompositions.end(), c,
                               [](char32_t v, const decomposition& d) { return v < d.first; });
    if (it == decompositions.begin()) return {nullptr, 0};
    --it;
    if (c >= it->first + it->count || (it->compat && !compat)) return {nullptr, 0};
    if (it->len == 1) {
      single = it->data + (c - it->first);
      return {&single, 1};
    }
    return {pool.data() + it->data, it->len};
  }

  char32_t compose_pair(char32_t a, char32_t b) const {
    const std::uint64_t key = (std::uint64_t{a} << 21) | b;
    auto it = std::lower_bound(
        compositions.begin(), compositions.end(), key,
        [](const std::pair<std::uint64_t, char32_t>& e, std::uint64_t k) { return e.first < k; });
    return (it != compositions.end() && it->first == key) ? it->second : 0;
  }
};

}  // namespace detail

namespace unicode {

namespace detail_hangul {
inline constexpr char32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
inline constexpr char32_t l_count = 19, v_count = 21, t_count = 28, n_count = v_count * t_count,
                          s_count = l_count * n_count;
}  // namespace detail_hangul

namespace detail_norm {
[[noreturn]] inline void throw_bad_utf8(const char* where, const unsigned char* p, std::size_t n,
                                        std::size_t at) {
  static const char hex[] = "0123456789ABCDEF";
  std::string got = "byte 0x";
  got += hex[p[at] >> 4];
  got += hex[p[at] & 15];
  // Say whether the sequence starting here is cut short by the end of the text.
  std::size_t len = p[at] >= 0xF0 ? 4 : p[at] >= 0xE0 ? 3 : p[at] >= 0xC0 ? 2 : 1;
  if (at + len > n) {
    bool continuation_only = true;
    for (std::size_t k = at + 1; k < n; ++k) continuation_only = continuation_only && (p[k] & 0xC0) == 0x80;
    if (continuation_only) got = "a sequence cut short by the end of the text";
  }
  throw invalid_argument(std::string(where) + ": valid UTF-8 text expected, got " + got + " at byte offset " +
                         std::to_string(at));
}
}  // namespace detail_norm

/// Unicode version of the property tables.
inline const char* tables_version() noexcept { return peft::detail::unicode_tables::unicode_version; }

/// Decodes strict UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
/// @param where prefix for the error message, e.g. "wordpiece_tokenizer::encode".
/// @throws peft::invalid_argument naming the byte offset where the first invalid sequence starts.
inline std::u32string decode_utf8(std::string_view s, const char* where = "unicode::decode_utf8") {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  auto fail = [&](std::size_t at) { peft::unicode::detail_norm::throw_bad_utf8(where, p, n, at); };
  while (i < n) {
    const unsigned b0 = p[i];
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    std::size_t len = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
      fail(i);
    }
    for (std::size_t k = 1; k < len; ++k) {
      if (i + k >= n) fail(i);
      const unsigned b = p[i + k];
      if ((b & 0xC0) != 0x80) fail(i);
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail(i);
    out.push_back(cp);
    i += len;
  }
  return out;
}

/// Appends the UTF-8 encoding of `c` (which must be a Unicode scalar value) to `out`.
inline void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

/// UTF-8 encoding of a code point sequence.
inline std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

/// Number of UTF-16 code units of `c` (what JavaScript's `String.length` counts).
inline std::size_t utf16_length(char32_t c) noexcept { return c >= 0x10000 ? 2 : 1; }

/// The reduced class of `c`.
inline char_class classify(char32_t c) {
  const auto& d = peft::detail::unicode_data::get();
  if (c > 0x10FFFF) return char_class::unassigned;
  auto it = std::upper_bound(d.class_start.begin(), d.class_start.end(), c);
  return static_cast<char_class>(d.class_id[static_cast<std::size_t>(it - d.class_start.begin()) - 1]);
}

/// The White_Space property (what Rust's `char::is_whitespace` tests).
inline bool is_whitespace(char32_t c) noexcept {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/// BERT's control test: general category C* (including unassigned), except tab, LF and CR.
inline bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  const char_class k = classify(c);
  return k == char_class::control || k == char_class::unassigned;
}

/// BERT's punctuation test: general category P*, or any non-alphanumeric printable ASCII.
inline bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
    return true;
  return classify(c) == char_class::punctuation;
}

/// Unicode's `\p{L}`: general category L* (GPT-2's pre-tokenizer).
inline bool is_letter(char32_t c) { return classify(c) == char_class::letter; }

/// Unicode's `\p{N}`: general category N* (GPT-2's pre-tokenizer).
inline bool is_number(char32_t c) { return classify(c) == char_class::number; }

/// BERT's "Chinese character" test: the CJK Unified Ideographs blocks and extensions and the
/// CJK Compatibility Ideographs (not Hiragana, Katakana or Hangul).
inline bool is_cjk(char32_t c) noexcept {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/// Canonical combining class of `c` (0 for starters).
inline std::uint32_t combining_class(char32_t c) {
  return peft::detail::unicode_data::get().combining_class(c);
}

namespace detail_norm {

inline void decompose(char32_t c, bool compat, std::u32string& out, const peft::detail::unicode_data& d) {
  using namespace detail_hangul;
  if (c >= s_base && c < s_base + s_count) {
    const char32_t s = c - s_base;
    out.push_back(l_base + s / n_count);
    out.push_back(v_base + (s % n_count) / t_count);
    if (s % t_count != 0) out.push_back(t_base + s % t_count);
    return;
  }
  char32_t single = 0;
  const auto [ptr, len] = d.decompose_one(c, compat, single);
  if (len == 0) {
    out.push_back(c);
    return;
  }
  if (len == 1) {
    decompose(single, compat, out, d);
    return;
  }
  for (std::size_t k = 0; k < len; ++k) decompose(ptr[k], compat, out, d);
}

inline std::u32string normalize(std::u32string_view s, bool compat, bool compose) {
  using namespace detail_hangul;
  const auto& d = peft::detail::unicode_data::get();
  std::u32string out;
  out.reserve(s.size() + s.size() / 4);
  for (char32_t c : s) decompose(c, compat, out, d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  std::vector<std::uint32_t> cls(out.size());
  for (std::size_t i = 0; i < out.size(); ++i) cls[i] = d.combining_class(out[i]);
  for (std::size_t i = 1; i < out.size(); ++i) {
    if (cls[i] == 0) continue;
    for (std::size_t j = i; j > 0 && cls[j - 1] > cls[j]; --j) {
      std::swap(out[j - 1], out[j]);
      std::swap(cls[j - 1], cls[j]);
    }
  }
  if (!compose || out.empty()) return out;
  std::size_t starter = 0, write = 1;
  std::uint32_t last_class = cls[0] == 0 ? 0 : 256;
  bool have_starter = cls[0] == 0;
  for (std::size_t i = 1; i < out.size(); ++i) {
    const char32_t c = out[i];
    const std::uint32_t cc = cls[i];
    char32_t composite = 0;
    if (have_starter && (last_class < cc || last_class == 0)) {
      const char32_t st = out[starter];
      if (st >= l_base && st < l_base + l_count && c >= v_base && c < v_base + v_count) {
        composite = s_base + ((st - l_base) * v_count + (c - v_base)) * t_count;
      } else if (st >= s_base && st < s_base + s_count && (st - s_base) % t_count == 0 && c > t_base &&
                 c < t_base + t_count) {
        composite = st + (c - t_base);
      } else {
        composite = d.compose_pair(st, c);
      }
    }
    if (composite != 0) {
      out[starter] = composite;
      continue;
    }
    if (cc == 0) {
      starter = write;
      have_starter = true;
    }
    last_class = cc;
    out[write++] = c;
  }
  out.resize(write);
  return out;
}

inline char32_t simple_lower(char32_t c, const peft::detail::unicode_data& d) {
  auto it = std::upper_bound(
      d.lower.begin(), d.lower.end(), c,
      [](char32_t v, const peft::detail::unicode_data::lower_run& r) { return v < r.first; });
  if (it == d.lower.begin()) return c;
  --it;
  const char32_t off = c - it->first;
  if (off % it->stride != 0 || off / it->stride >= it->count) return c;
  return static_cast<char32_t>(static_cast<std::int64_t>(c) + it->delta);
}

}  // namespace detail_norm

/// Canonical decomposition (NFD), Hangul included.
inline std::u32string nfd(std::u32string_view s) { return detail_norm::normalize(s, false, false); }
/// Canonical composition (NFC).
inline std::u32string nfc(std::u32string_view s) { return detail_norm::normalize(s, false, true); }
/// Compatibility decomposition (NFKD).
inline std::u32string nfkd(std::u32string_view s) { return detail_norm::normalize(s, true, false); }
/// Compatibility decomposition followed by canonical composition (NFKC).
inline std::u32string nfkc(std::u32string_view s) { return detail_norm::normalize(s, true, true); }

/// Full lower-casing as `str.lower()` in Python and `toLowerCase()` in JavaScript do it:
/// simple mappings, U+0130 to "i\u0307", and U+03A3 to final sigma U+03C2 when it ends a word
/// (preceded by a cased letter and not followed by one, skipping case-ignorable characters).
inline std::u32string to_lower(std::u32string_view s) {
  const auto& d = peft::detail::unicode_data::get();
  using D = peft::detail::unicode_data;
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x130) {
      out.push_back('i');
      out.push_back(0x307);
    } else if (c == 0x3A3) {
      std::size_t j = i;
      while (j > 0 && D::in_ranges(d.case_ignorable, s[j - 1])) --j;
      bool final_sigma = j > 0 && D::in_ranges(d.cased, s[j - 1]);
      if (final_sigma) {
        std::size_t k = i + 1;
        while (k < s.size() && D::in_ranges(d.case_ignorable, s[k])) ++k;
        final_sigma = k == s.size() || !D::in_ranges(d.cased, s[k]);
      }
      out.push_back(final_sigma ? 0x3C2 : 0x3C3);
    } else if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    } else {
      out.push_back(detail_norm::simple_lower(c, d));
    }
  }
  return out;
}

/// NFD, then removal of every non-spacing mark (Mn): BERT's accent stripping.
inline std::u32string strip_accents(std::u32string_view s) {
  std::u32string out = nfd(s);
  out.erase(
      std::remove_if(out.begin(), out.end(),
                     [](char32_t c) { return c >= 0x300 && classify(c) == char_class::mark_nonspacing; }),
      out.end());
  return out;
}

}  // namespace unicode
}  // namespace peft

#endif  // PEFT_TEXT_UNICODE_HPP
