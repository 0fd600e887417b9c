#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generates include/peft/text/detail/unicode_tables.hpp from Python's unicodedata.

The tables hold what peft's tokenizers need and nothing more:
  * a reduced character class (other, Mn, punctuation, control/format/private/surrogate,
    unassigned, separator);
  * canonical combining classes;
  * one-level decomposition mappings, canonical and compatibility (NFD, NFKC);
  * the few canonical pairs that must not recompose (primary composites are derived at run
    time from the canonical two-code-point mappings minus these and the non-starters);
  * simple lower-case mappings (U+0130's two-code-point lower case is handled in code);
  * Case_Ignorable and Cased, for the Final_Sigma rule of lower-casing.

Every table is a sorted list of runs, delta-coded into unsigned integers, and each integer is
written as a little-endian base-32 varint in a base-64 alphabet (5 payload bits per
character, bit 5 set on all but the last character). The header stays small (~40 KB) and
text/unicode.hpp decodes it once, on first use.

Usage: scripts/gen_unicode_tables.py [output.hpp]   (default: the path above)
"""
import os
import sys
import unicodedata as ud

MAX_CP = 0x110000
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# Reduced classes; keep in sync with peft::unicode::char_class.
OTHER, MARK_NONSPACING, PUNCTUATION, CONTROL, UNASSIGNED, SEPARATOR, LETTER, NUMBER = range(8)


def char_class(cp):
    cat = ud.category(chr(cp))
    if cat == "Mn":
        return MARK_NONSPACING
    if cat[0] == "P":
        return PUNCTUATION
    if cat == "Cn":
        return UNASSIGNED
    if cat[0] == "C":
        return CONTROL
    if cat[0] == "Z":
        return SEPARATOR
    if cat[0] == "L":
        return LETTER
    if cat[0] == "N":
        return NUMBER
    return OTHER


def zigzag(v):
    return 2 * v if v >= 0 else -2 * v - 1


def varint(v):
    assert v >= 0
    out = []
    while True:
        low = v & 31
        v >>= 5
        if v:
            out.append(ALPHABET[32 | low])
        else:
            out.append(ALPHABET[low])
            return "".join(out)


def class_stream():
    """Runs: (start - previous start, class)."""
    out, prev_cls, prev_start = [], None, 0
    for cp in range(MAX_CP):
        c = char_class(cp)
        if c != prev_cls:
            out += [cp - prev_start, c]
            prev_cls, prev_start = c, cp
    return out


def ccc_stream():
    """Runs of equal non-zero class: (first - previous last - 1, last - first, class)."""
    runs = []
    for cp in range(MAX_CP):
        c = ud.combining(chr(cp))
        if not c:
            continue
        if runs and runs[-1][1] == cp - 1 and runs[-1][2] == c:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, c])
    out, prev_last = [], -1
    for first, last, c in runs:
        out += [first - prev_last - 1, last - first, c]
        prev_last = last
    return out


def decomposition_stream():
    """Entries (first - previous last - 1, 2 * len + compat, ...). len == 1: count, then
    zigzag(target - first); code point first + k maps to target + k for k < count.
    len > 1: the mapped code points as zigzag deltas from the previous one (starting at first)."""
    entries = []
    for cp in range(MAX_CP):
        d = ud.decomposition(chr(cp))
        if not d:
            continue
        parts = d.split()
        compat = 1 if parts[0].startswith("<") else 0
        cps = [int(x, 16) for x in parts if not x.startswith("<")]
        last = entries[-1] if entries else None
        if (len(cps) == 1 and last and len(last[2]) == 1 and last[1] == compat
                and last[0] + last[3] == cp and last[2][0] + last[3] == cps[0]):
            last[3] += 1
            continue
        entries.append([cp, compat, cps, 1])
    out, prev_last = [], -1
    for first, compat, cps, count in entries:
        out += [first - prev_last - 1, 2 * len(cps) + compat]
        if len(cps) == 1:
            out += [count, zigzag(cps[0] - first)]
        else:
            prev = first
            for c in cps:
                out.append(zigzag(c - prev))
                prev = c
        prev_last = first + count - 1
    return out


def exclusion_stream():
    """Starters with a canonical two-code-point mapping that do not recompose (composition
    exclusions), as deltas."""
    out, prev = [], 0
    for cp in range(MAX_CP):
        d = ud.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        if len(parts) != 2 or ud.combining(chr(cp)) or ud.combining(chr(parts[0])):
            continue
        if ud.normalize("NFC", chr(parts[0]) + chr(parts[1])) != chr(cp):
            out.append(cp - prev)
            prev = cp
    return out


def lower_stream():
    """Runs (first - previous first, count - 1, stride, zigzag(delta)): code point
    first + stride * k lower-cases to itself + delta."""
    pairs = []
    for cp in range(MAX_CP):
        lo = chr(cp).lower()
        if lo == chr(cp):
            continue
        if len(lo) != 1:
            assert cp == 0x130 and lo == "i\u0307", hex(cp)
            continue
        pairs.append((cp, ord(lo) - cp))
    runs = []
    for cp, delta in pairs:
        if runs:
            first, count, stride, dl = runs[-1]
            if dl == delta:
                if count == 1 and cp - first in (1, 2):
                    runs[-1] = [first, 2, cp - first, dl]
                    continue
                if count > 1 and cp == first + stride * count:
                    runs[-1][1] += 1
                    continue
        runs.append([cp, 1, 1, delta])
    out, prev = [], 0
    for first, count, stride, delta in runs:
        out += [first - prev, count - 1, stride, zigzag(delta)]
        prev = first
    return out


def range_stream(pred):
    """Closed ranges as (first - previous last - 1, last - first)."""
    ranges, start = [], None
    for cp in range(MAX_CP):
        if pred(cp):
            if start is None:
                start = cp
        elif start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, MAX_CP - 1))
    out, prev_last = [], -1
    for first, last in ranges:
        out += [first - prev_last - 1, last - first]
        prev_last = last
    return out


def is_case_ignorable(cp):
    # Probed through str.lower()'s Final_Sigma handling: U+03A3 after "A<c>" is final iff c is
    # case-ignorable or cased; U+03A3 followed by <c> (after "A") is final iff c is
    # case-ignorable or not cased. Both hold iff c is case-ignorable.
    if 0xD800 <= cp < 0xE000:
        return False
    c = chr(cp)
    return (("A" + c + "\u03a3").lower()[-1] == "\u03c2"
            and ("A\u03a3" + c).lower()[1] == "\u03c2")


def is_cased_not_ignorable(cp):
    # "<c>\u03a3" ends in a final sigma iff c is cased and not case-ignorable.
    if 0xD800 <= cp < 0xE000:
        return False
    return (chr(cp) + "\u03a3").lower()[-1] == "\u03c2"


def literal(name, doc, values):
    text = "".join(varint(v) for v in values)
    lines = [text[i:i + 96] for i in range(0, len(text), 96)] or [""]
    body = "\n".join('    "%s"' % line for line in lines)
    return (f"/// {doc} ({len(values)} integers)\n"
            f"inline constexpr const char {name}[] =\n{body};\n")


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "include", "peft", "text", "detail",
        "unicode_tables.hpp")
    tables = [
        ("classes", "Character class runs: (start delta, class)", class_stream()),
        ("combining_classes", "Canonical combining class runs", ccc_stream()),
        ("decompositions", "One-level decomposition mappings", decomposition_stream()),
        ("composition_exclusions", "Canonical pairs that do not recompose", exclusion_stream()),
        ("lower_case", "Lower-case mapping runs", lower_stream()),
        ("case_ignorable", "Case_Ignorable ranges", range_stream(is_case_ignorable)),
        ("cased", "Cased-and-not-Case_Ignorable ranges", range_stream(is_cased_not_ignorable)),
    ]
    body = "\n".join(literal(n, d, v) for n, d, v in tables)
    text = f"""// SPDX-License-Identifier: Apache-2.0
// GENERATED by scripts/gen_unicode_tables.py from Python {sys.version.split()[0]} unicodedata
// (Unicode {ud.unidata_version}). Do not edit by hand; rerun the script instead.
#ifndef PEFT_TEXT_DETAIL_UNICODE_TABLES_HPP
#define PEFT_TEXT_DETAIL_UNICODE_TABLES_HPP

/// @file unicode_tables.hpp
/// Unicode {ud.unidata_version} property tables for text/unicode.hpp, delta-coded as base-32
/// varints in a base-64 alphabet; the stream layouts are documented in
/// scripts/gen_unicode_tables.py and decoded by peft::detail::unicode_data.

namespace peft {{
namespace detail {{
namespace unicode_tables {{

/// Unicode version of the tables.
inline constexpr const char unicode_version[] = "{ud.unidata_version}";

{body}
}}  // namespace unicode_tables
}}  // namespace detail
}}  // namespace peft

#endif  // PEFT_TEXT_DETAIL_UNICODE_TABLES_HPP
"""
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.normpath(out_path)} ({len(text)} bytes): " +
          ", ".join(f"{n} {len(v)}" for n, _, v in tables))


if __name__ == "__main__":
    main()
