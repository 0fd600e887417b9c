#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Reference data for a SentencePiece-Unigram tokenizer read from a Hugging Face tokenizer.json.

Usage: /usr/bin/python3 sentencepiece_ref.py ASSETS_DIR OUTPUT_DIR

ASSETS_DIR is the npm assets folder (.cache/npm/node_modules): review text from
sentiment/test/fixtures/{yelp,imdb,amazon}.json, and @huggingface/tokenizers@0.2.0 (pure JS).
Needs Debian's python3-sentencepiece (0.1.97 tested; no protobuf package: the model file is
parsed by hand below) and node.

Written into OUTPUT_DIR:
  spm_unigram.model         a unigram model trained here by sentencepiece (about 1 s, twice, to
                            check that training is deterministic), vocab_size 2000, nmt_nfkc
  spm_xlmr_tokenizer.json   that model as an XLM-RoBERTa tokenizer.json (fairseq id layout)
  spm_plain_tokenizer.json  that model with sentencepiece's own ids (ALBERT-like, no template)
  spm_ref.json              sentences with sentencepiece's ids and pieces (the ground truth),
                            the XLM-R ids derived from them, and tokenizers.js' ids
  spm_charsmap_cases.json   single characters and short strings through the nmt_nfkc charsmap
  spm_albert.model          a second unigram model in ALBERT's layout (see "The .model files")
  spm_model_ref.json        the ids transformers' slow XLMRobertaTokenizer (on spm_unigram.model)
                            and AlbertTokenizer (on spm_albert.model) give, for
                            test_sentencepiece_model (libsentencepiece reading the .model files)

The tokenizer.json layout follows what transformers' slow->fast conversion (SpmConverter and
its XLM-R / ALBERT subclasses) writes for a unigram model; chosen fields:
  model       {"type": "Unigram", "unk_id", "vocab": [[piece, score], ...], "byte_fallback": false}
              XLM-R: <s> <pad> </s> <unk> (score 0.0) take ids 0..3, then every spm piece from
              spm index 3 on keeps its score (spm id k >= 3 -> k + 1, fairseq's offset of 1;
              spm's own <unk> <s> </s> at 0..2 are replaced by the four fairseq specials), and
              <mask> (0.0) comes last; unk_id 3.
              plain: spm's pieces in spm order, unk_id = spm's unk id (0 here).
  normalizer  Sequence[Precompiled(the model's precompiled_charsmap, base64), Replace(Regex " {2,}"
              -> " ")]: the layout of the released xlm-roberta-base / albert files (newer
              transformers write Strip(right) + Replace(" {2,}" -> "▁") instead; this older form
              leaves a trailing space, which sentencepiece removes: see "notes" in spm_ref.json).
  pre_tokenizer Metaspace("▁", prepend_scheme "always", split true) plus add_prefix_space true
              for readers that predate prepend_scheme; the decoder is the same Metaspace.
  post_processor XLM-R: TemplateProcessing "<s> $A </s>" / "<s> $A </s> </s> $B </s>", every type
              id 0 (RoBERTa-style models have a single segment); plain: null.
  added_tokens XLM-R: <s> <pad> </s> <unk> (special, normalized false), <mask> (special, lstrip
              true, normalized false). plain: spm's control/unknown pieces <unk> <s> </s>.

spm_ref.json:
  {"model": "spm_unigram.model", "model_sha256", "deterministic": bool,
   "spm": {"vocab_size", "unk_id", "bos_id", "eos_id", "pad_id", "normalizer_name",
           "add_dummy_prefix", "remove_extra_whitespaces", "escape_whitespaces",
           "charsmap_bytes", "charsmap_trie_bytes", "unk_surface"},
   "xlmr": {"bos_id": 0, "pad_id": 1, "eos_id": 2, "unk_id": 3, "mask_id", "vocab_size"},
   "sentences": [{"text",
                  "normalized"    sentencepiece's normalized text: its pieces joined (dummy
                                  prefix and spaces as "▁"; pieces cover it exactly),
                  "spm_ids", "spm_pieces"  sp.encode(text, out_type=int / str),
                  "decoded"       sp.decode(spm_ids),
                  "xlmr_ids"      [0] + spm_ids mapped (unk -> 3, k -> k + 1) + [2],
                  "js_plain_ids"  tokenizers.js on spm_plain_tokenizer.json, no special tokens,
                  "js_xlmr_ids"   tokenizers.js on spm_xlmr_tokenizer.json, with <s> ... </s>,
                  "js_plain_agrees" (js_plain_ids == spm_ids), "js_xlmr_agrees",
                  "js_difference" null, or why tokenizers.js differs (see js_reasons)}],
   "pairs": [{"a", "b", "xlmr_pair_ids" ([0] + A + [2, 2] + B + [2] from spm ids),
              "js_xlmr_pair_ids", "js_agrees", "js_difference"}],
   "notes": [why tokenizers.js differs where it does]}

Self-checks (the script fails when one does not hold): the hand-parsed ModelProto agrees with
sentencepiece's own accessors; `normalize` below (charsmap lookup in the darts-clone trie plus
sentencepiece's whitespace rules) reproduces sentencepiece's normalized text on every sentence,
every charsmap case and every single code point of the BMP and the supplementary ranges that
NFKC maps; and `viterbi` below (unigram lattice over the parsed pieces) reproduces spm_ids on
every sentence. These two functions are the documented target for the C++ port. Every sentence
or pair on which tokenizers.js differs from sentencepiece must have a reason from js_reasons.

The .model files (spm_model_ref.json): transformers' slow tokenizers run sentencepiece on the
.model file itself and add their own rules; those rules are written out below from their
published definitions (tokenization_xlm_roberta.py, tokenization_albert.py and the special-token
split of PreTrainedTokenizer.tokenize), never imported (transformers is not a Debian package):
  split       the special tokens are matched verbatim in the raw text (leftmost, then longest);
              <mask> / [MASK] (lstrip) take the whitespace on their left (Python rstrip); every
              text between them is tokenized on its own, empty ones dropped.
  XLM-R       pieces of sp.encode(section, out_type=str); a piece's id is sp.piece_to_id + 1, or
              3 when that is 0 (<unk>); <s> <pad> </s> <unk> are 0..3, <mask> = pieces + 1.
              decode: the tokens joined, "▁" -> " ", Python strip().
  ALBERT      spm_albert.model is trained here on the same text, preprocessed as below, with
              ALBERT's ids: <pad> 0, <unk> 1, control symbols [CLS] [SEP] [MASK] 2..4, no
              <s> </s>; split_by_number false, so that pieces ending in a digit and ',' exist
              and the rule below runs (the script checks that it does). Per section:
              preprocess (remove_space: " ".join(strip().split()); `` and '' -> "; NFKD and
              characters with unicodedata.combining() removed; lower()), sp.encode as pieces,
              then a piece longer than one character ending in a str.isdigit() character and ','
              is replaced by sp.encode(piece[:-1] without "▁") (their first piece's "▁" dropped
              when the piece had none, the piece dropped if it was only "▁") and ","; ids by
              sp.piece_to_id. decode: sp.decode of the pieces between special tokens, a kept
              special token preceded by " " unless it follows another one, Python strip().
  spm_model_ref.json: {"xlmr"|"albert": {"model", role ids "cls" "sep" "pad" "mask" "unk",
              "vocab_size", "sentences": [{"text", "ids" (no special tokens around), "decoded"
              (decode, special tokens skipped), "decoded_special" (decode of the single layout,
              special tokens kept), "has_unknown", "spm_roundtrip" (sp.decode(sp.encode(x)) of
              the text, preprocessed for ALBERT)}], "pairs": [{"a", "b", "ids", "types"}]},
   albert sentences also "ids_cased" (do_lower_case false) and "digit_comma" (the rule ran).
Where a text has no unknown character and no literal special token, decode(ids) must give
spm_roundtrip back (checked here).

Training is deterministic here (num_threads 1, no shuffling, sentences from an iterator so the
stored trainer spec holds no temporary path): two runs give byte-identical outputs. The trained
model's NormalizerSpec stores no add_dummy_prefix / remove_extra_whitespaces / escape_whitespaces
field at all: a reader must apply the proto2 defaults (all true) when they are absent.
"""

import base64
import hashlib
import io
import json
import math
import os
import random
import struct
import re
import shutil
import subprocess
import sys
import unicodedata

import sentencepiece as spm

SPACE = "\u2581"  # "▁", sentencepiece's whitespace symbol

# ---------------------------------------------------------------------------------------------
# Sentences: those of tokenizers_ref.js, then cases for sentencepiece's normalizer and unknowns.
LONG_PARAGRAPH = ("The quick brown fox jumps over the lazy dog, while 12 unbelievably well-behaved "
                  "puppies watched from the porch; nobody knew why (or how) it happened at 10:30 "
                  "on a Tuesday! ")
# The shared sentences (tokenizer_sentences.json), then whitespace, unseen scripts and
# special-token cases.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer_sentences.json"), encoding="utf-8") as _f:
    SENTENCES = json.load(_f) + [
    # sentencepiece-specific cases
    "a  b   c    d     e",
    "  two leading spaces",
    "two trailing spaces  ",
    "\tleading tab and trailing newline\n",
    "line one\nline two\r\nline three\rline four",
    "Ｈｅｌｌｏ，\u3000ｗｏｒｌｄ！ Ｔｈｅ ｙｅａｒ ２０２４．",
    "ﬃ ﬄ ﬅ ﬆ œuvre æther Ĳssel",
    "Ǿ ǿ Ḁ ḁ ǲ Ŀ ŉ ſ",
    "ｶﾞｷﾞｸﾞ ﾊﾟﾋﾟﾌﾟ ｱｲｳｴｵ",
    "rare CJK 龘靐齉 and 𠀀𪚥",
    "संस्कृत देवनागरी लिपि",
    "Tamil தமிழ் and Georgian ქართული",
    "literal <s> and </s> and <unk> and <mask> and <pad>",
    "e\u0301\u0301 double accent and \u0301 lone accent",
    "x\u200by\u200cz\ufeff",
    "\u3000\u3000ideographic\u3000\u3000spaces\u3000",
    "ℌℑℜ ℕ ℤ ℚ ℝ ⅓ ⅔ ⅛ Ⅻ ⅻ",
    "2024年1月1日 ㍻ ㋿ ㈱ ㍿",
    "مَرْحَبًا ــــ ﷺ ﻻ",
    "Σοφία τελικό ς σ Σ",
    "¨ ´ ¸ ˜ ˘ ˙",
    "Ｍｉｘｅｄ　ｆｕｌｌ－ｗｉｄｔｈ　ｐｕｎｃｔｕａｔｉｏｎ：　（ａ）［ｂ］｛ｃ｝",
    "ＡＢＣ～ｘｙｚ wave dash",
    "emoji only 😀😀😀",
    "🤖🦾 robots 🧪",
    "non\u00a0\u00a0breaking\u202fnarrow\u205fmath\u1680ogham",
    "unaffable unbelievably unreliable undeniable",
]

PAIRS = [
    ("How old are you?", "I am 6 years old."),
    ("first only", " "),
    ("Crème brûlée", "中文 text"),
    ("  spaced   out  ", "\ttabbed\n"),
    (LONG_PARAGRAPH, "short"),
    ("short", LONG_PARAGRAPH * 2),
]

CHARSMAP_CASES = [
    "Ａ", "ｚ", "０", "ﬁ", "ﬀ", "ﬃ", "①", "⑴", "㈱", "½", "²", "™", "℡", "㎏",
    "\u00a0", "\u3000", "\u2003", "\u200b", "\u200d", "\ufeff", "\u00ad", "\u2028", "\u1680",
    "a\u0301", "e\u0301\u0301", "\u0301", "ｶﾞ", "ﾊﾟ", "ｶ", "ℌ", "𝔢", "Ⅻ", "ſ", "ǅ", "Ǳ",
    "\t", "\n", "\r", "\r\n", "\u0000", "\u0007", "\u001b", "\u007f", "\u0085", "\ufffd",
    "¨", "´", "~", "～", "\uff5e", "▁", "  ", "a b", " a", "a ", "é", "e\u0301", "Å", "A\u030a",
    "가", "\u1100\u1161", "각", "\u1100\u1161\u11a8", "ﷺ", "ﻻ", "🇫🇷", "👍🏽", "❤️",
]


# ---------------------------------------------------------------------------------------------
# Training text: the review corpus plus generated lines in other scripts, so their characters
# are covered (character_coverage 1.0 keeps every character of the training text).
def training_lines(assets):
    lines = []
    for name in ("yelp", "imdb", "amazon"):
        path = os.path.join(assets, "sentiment", "test", "fixtures", name + ".json")
        with open(path, encoding="utf-8") as f:
            for row in json.load(f):
                text = " ".join(row["text"].split())
                if text:
                    lines.append(text)
    words = {
        "latin": ("crème brûlée naïve café Ångström façade jalapeño Øresund Straße Müller Götter "
                  "über schön Größe señor año niño mañana corazón canción São João ação coração "
                  "Łódź Kraków źródło żółw gęś Dvořák příliš žluťoučký kůň úpěl ďábelské ódy "
                  "İstanbul ıspanak çiçek ğüzel Åse Ærø øl déjà vu élève garçon Noël Zoë "
                  "Tiếng Việt phở bánh").split(),
        "greek": ("Ελληνικά γλώσσα καλημέρα κόσμε ΟΔΟΣ Σίσυφος ΣΟΦΟΣ ΚΑΙ ΣΟΦΙΑ σοφία "
                  "αλφάβητο θάλασσα ήλιος φως ψυχή ωραίο ζωή ξένος").split(),
        "cyrillic": ("Русский текст Привет мир ЁЖИК ёжик Москва книга быстрый хороший день "
                     "щука съезд эхо юла яблоко Україна їжак ґанок").split(),
        "cjk": ("中文 分词 测试 我爱 北京 天安门 日本語 テキスト カタカナ ひらがな 東京 "
                "大学 学生 先生 電車 時間 今日 明日 水 火 山 川 人 年 月 日 "
                "한국어 문장 입니다 안녕하세요 서울 사랑").split(),
        "arabic": ("العربية مرحبا بالعالم كتاب مدرسة شمس قمر سلام بيت ١٢٣ ٤٥٦ "
                   "عبرית שלום עולם").split(),
        "fullwidth": ("Ｆｕｌｌｗｉｄｔｈ ＡＳＣＩＩ ＡＢＣ ｘｙｚ ０１２３４５６７８９ "
                      "ｶﾀｶﾅ ﾊﾝｶｸ （ａ） ［ｂ］ ！ ？").split(),
        "digits": ("0 1 2 3 4 5 6 7 8 9 10 42 100 2023 2024 3.14 1,000 12:30 "
                   "½ ① x² ℃ ™").split(),
    }
    rng = random.Random(20240611)
    for key in sorted(words):
        for _ in range(60):
            lines.append(" ".join(rng.choice(words[key]) for _ in range(rng.randint(3, 10))))
    return lines


def train(lines):
    """The model's bytes. Sentences come from an iterator, not a file: the trainer spec stored in
    the model would otherwise hold the (temporary) input path."""
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, model_type="unigram", vocab_size=2000,
        character_coverage=1.0, normalization_rule_name="nmt_nfkc",
        input_sentence_size=10000, shuffle_input_sentence=False, seed_sentencepiece_size=100000,
        num_threads=1, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=False,
        minloglevel=2)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# ModelProto, parsed by hand (protobuf wire format: a key varint = field << 3 | wire type;
# wire type 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). Fields of
# sentencepiece_model.proto used here:
#   ModelProto       1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
#   SentencePiece    1 piece (string), 2 score (float, fixed32), 3 type (enum, default NORMAL=1:
#                    NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6)
#   TrainerSpec      3 model_type (UNIGRAM=1), 4 vocab_size, 35 byte_fallback, 40 unk_id,
#                    41 bos_id, 42 eos_id, 43 pad_id (int32: -1 is a 10-byte varint),
#                    44 unk_surface, 45 unk_piece, 46 bos_piece, 47 eos_piece, 48 pad_piece
#   NormalizerSpec   1 name, 2 precompiled_charsmap (bytes), 3 add_dummy_prefix,
#                    4 remove_extra_whitespaces, 5 escape_whitespaces (bools, proto2 default true
#                    when absent), 6 normalization_rule_tsv
def read_varint(buf, pos):
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def fields(buf):
    """Yields (field number, wire type, value) of one message; value is an int or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield field, wire, value


def int32(v):
    """A varint-encoded int32 (negative values are sign-extended to 64 bits)."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_model(blob):
    model = {"pieces": [], "trainer": {}, "normalizer": {}}
    for field, _, value in fields(blob):
        if field == 1:
            piece = {"piece": "", "score": 0.0, "type": 1}
            for f, _, v in fields(value):
                if f == 1:
                    piece["piece"] = v.decode("utf-8")
                elif f == 2:
                    piece["score"] = struct.unpack("<f", v)[0]
                elif f == 3:
                    piece["type"] = v
            model["pieces"].append(piece)
        elif field == 2:
            names = {3: "model_type", 4: "vocab_size", 35: "byte_fallback", 40: "unk_id",
                     41: "bos_id", 42: "eos_id", 43: "pad_id", 44: "unk_surface",
                     45: "unk_piece", 46: "bos_piece", 47: "eos_piece", 48: "pad_piece"}
            for f, wire, v in fields(value):
                if f in names:
                    model["trainer"][names[f]] = v.decode("utf-8") if wire == 2 else int32(v)
        elif field == 3:
            for f, wire, v in fields(value):
                if f == 1:
                    model["normalizer"]["name"] = v.decode("utf-8")
                elif f == 2:
                    model["normalizer"]["precompiled_charsmap"] = bytes(v)
                elif f in (3, 4, 5):
                    key = {3: "add_dummy_prefix", 4: "remove_extra_whitespaces",
                           5: "escape_whitespaces"}[f]
                    model["normalizer"][key] = bool(v)
    t, n = model["trainer"], model["normalizer"]
    n["present"] = sorted(k for k in ("add_dummy_prefix", "remove_extra_whitespaces",
                                      "escape_whitespaces") if k in n)
    for key in ("add_dummy_prefix", "remove_extra_whitespaces", "escape_whitespaces"):
        n.setdefault(key, True)  # proto2 defaults
    for key, default in (("unk_id", 0), ("bos_id", 1), ("eos_id", 2), ("pad_id", -1)):
        t.setdefault(key, default)
    t.setdefault("unk_surface", " \u2047 ")
    return model


# ---------------------------------------------------------------------------------------------
# precompiled_charsmap: uint32 LE trie_size, then trie_size bytes of darts-clone double-array
# units (uint32 LE each), then the replacement strings, each ending in "\0". A trie key is the
# UTF-8 of an input sequence; its value is the byte offset of its replacement in that string area.
#
# darts-clone unit (uint32 u):
#   has_leaf = (u >> 8) & 1                    a value child hangs at this node's offset
#   value    = u & 0x7FFFFFFF                  (of the value unit: its bit 31 is set)
#   label    = u & 0x800000FF                  the byte that leads here (bit 31 marks a value unit,
#                                              so it never equals a byte)
#   offset   = (u >> 10) << ((u & 0x200) >> 6) children of this node are at pos ^ offset ^ byte
# commonPrefixSearch(key): pos = offset(units[0]); for each byte c at index i: pos ^= c;
# u = units[pos]; stop if label(u) != c; pos ^= offset(u); if has_leaf(u): a key of length i + 1
# matches, with value = value(units[pos]).
def decode_charsmap(blob):
    (trie_size,) = struct.unpack_from("<I", blob, 0)
    if trie_size % 4 or 4 + trie_size > len(blob):
        raise ValueError("bad precompiled_charsmap")
    units = struct.unpack_from("<%dI" % (trie_size // 4), blob, 4)
    return units, blob[4 + trie_size:]


def common_prefix_search(units, key):
    """[(value, matched length in bytes)] of every trie key that is a prefix of key (bytes)."""
    out = []
    pos = (units[0] >> 10) << ((units[0] & 0x200) >> 6)
    for i, c in enumerate(key):
        pos ^= c
        if pos >= len(units):
            break
        u = units[pos]
        if (u & 0x800000FF) != c:
            break
        pos ^= (u >> 10) << ((u & 0x200) >> 6)
        if (u >> 8) & 1:
            out.append((units[pos] & 0x7FFFFFFF, i + 1))
    return out


def normalize_prefix(charsmap, data):
    """sentencepiece's NormalizePrefix on UTF-8 bytes: (replacement bytes, bytes consumed). The
    longest trie match wins; without one, one UTF-8 character is copied as it is."""
    units, strings = charsmap
    best = None
    for value, length in common_prefix_search(units, data[:64]):
        if best is None or length > best[1]:
            best = (value, length)
    if best is not None:
        end = strings.index(b"\0", best[0])
        return strings[best[0]:end], best[1]
    n = 1
    lead = data[0]
    if lead >= 0xF0:
        n = 4
    elif lead >= 0xE0:
        n = 3
    elif lead >= 0xC0:
        n = 2
    return data[:n], n


def charsmap_only(charsmap, text):
    """The charsmap applied over the whole text, without the whitespace rules."""
    data, out = text.encode("utf-8"), b""
    while data:
        rep, n = normalize_prefix(charsmap, data)
        out += rep
        data = data[n:]
    return out.decode("utf-8")


def normalize(charsmap, flags, text):
    """sentencepiece's Normalizer::Normalize (no user-defined symbols, whitespace as prefix):
    skip leading input whose replacement is exactly " ", add the dummy prefix, drop spaces that
    begin a replacement when the output so far ends in a space, write " " as "▁", and strip
    trailing "▁" (nmt_nfkc maps a literal U+2581 in the input to " " as well)."""
    data = text.encode("utf-8")
    rm = flags["remove_extra_whitespaces"]
    space = SPACE.encode() if flags["escape_whitespaces"] else b" "
    if rm:
        while data:
            rep, n = normalize_prefix(charsmap, data)
            if rep != b" ":
                break
            data = data[n:]
    if not data:
        return ""
    out = bytearray()
    if flags["add_dummy_prefix"]:
        out += space
    prev_space = rm
    while data:
        rep, n = normalize_prefix(charsmap, data)
        while prev_space and rep.startswith(b" "):
            rep = rep[1:]
        if rep:
            out += rep.replace(b" ", space) if flags["escape_whitespaces"] else rep
            prev_space = rep.endswith(b" ")
        data = data[n:]
        if not rm:
            prev_space = False
    if rm:
        while out.endswith(space):
            del out[-len(space):]
    return out.decode("utf-8")


# ---------------------------------------------------------------------------------------------
# Unigram encoding (sentencepiece's unigram_model.cc, no byte fallback): a lattice over the code
# points of the normalized text; NORMAL and USER_DEFINED pieces are its nodes (CONTROL, UNKNOWN,
# UNUSED, BYTE never match text); where no one-character piece starts at a position, an <unk>
# node of one character with score min(NORMAL scores) - 10 is added; the best path (sum of
# scores) wins; consecutive <unk> are merged into one.
def viterbi(model, normalized):
    pieces = model["pieces"]
    vocab = {p["piece"]: i for i, p in enumerate(pieces) if p["type"] in (1, 4)}
    unk = model["trainer"]["unk_id"]
    unk_score = min(p["score"] for p in pieces if p["type"] == 1) - 10.0
    max_len = max(len(p) for p in vocab)
    n = len(normalized)
    best = [(-math.inf, -1, -1)] * (n + 1)  # (score, start, id)
    best[0] = (0.0, -1, -1)
    for start in range(n):
        base = best[start][0]
        single = False
        for length in range(1, min(max_len, n - start) + 1):
            pid = vocab.get(normalized[start:start + length])
            if pid is None:
                continue
            single |= length == 1
            score = base + pieces[pid]["score"]
            if score > best[start + length][0]:
                best[start + length] = (score, start, pid)
        if not single and base + unk_score > best[start + 1][0]:
            best[start + 1] = (base + unk_score, start, unk)
    out, end = [], n
    while end > 0:
        _, start, pid = best[end]
        out.append((normalized[start:end], pid))
        end = start
    out.reverse()
    merged = []
    for piece, pid in out:
        if pid == unk and merged and merged[-1][1] == unk:
            merged[-1] = (merged[-1][0] + piece, unk)
        else:
            merged.append((piece, pid))
    return merged


# ---------------------------------------------------------------------------------------------
# Hugging Face tokenizer.json files.
def added(content, id_, lstrip=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip,
            "rstrip": False, "normalized": False, "special": True}


def tokenizer_json(model, xlmr):
    charsmap = base64.b64encode(model["normalizer"]["precompiled_charsmap"]).decode("ascii")
    meta = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": True,
            "add_prefix_space": True}
    pieces = model["pieces"]
    if xlmr:
        vocab = [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
        vocab += [[p["piece"], p["score"]] for p in pieces[3:]]
        vocab.append(["<mask>", 0.0])
        added_tokens = [added("<s>", 0), added("<pad>", 1), added("</s>", 2), added("<unk>", 3),
                        added("<mask>", len(vocab) - 1, lstrip=True)]
        unk_id = 3
        a, b = {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}
        s, e = {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}
        post = {"type": "TemplateProcessing", "single": [s, a, e], "pair": [s, a, e, e, b, e],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                                   "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
    else:
        vocab = [[p["piece"], p["score"]] for p in pieces]
        added_tokens = [added(p["piece"], i) for i, p in enumerate(pieces) if p["type"] in (2, 3)]
        unk_id = model["trainer"]["unk_id"]
        post = None
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": charsmap},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": dict(meta), "post_processor": post, "decoder": dict(meta),
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": vocab, "byte_fallback": False},
    }


# tokenizers.js 0.2.0's Precompiled normalizer ignores the charsmap: it removes some C0/C1
# controls, maps some spaces to " ", then applies NFKC (not across U+FF5E). Written out here so
# every difference from sentencepiece can be given a reason, and none is left unexplained.
JS_REMOVED = re.compile("[\u0001-\u0008\u000B\u000E-\u001F\u007F\u008F\u009F]")
JS_SPACES = re.compile("[\u0009\u000A\u000C\u000D\u00A0\u1680\u2000-\u200F\u2028\u2029"
                       "\u202F\u205F\u2581\u3000\uFEFF\uFFFD]")


def js_normalize(text):
    text = JS_SPACES.sub(" ", JS_REMOVED.sub("", text))
    return "\uff5e".join(unicodedata.normalize("NFKC", part) for part in text.split("\uff5e"))


def js_reasons(charsmap, text):
    """Why Hugging Face tokenizers (and tokenizers.js) may encode text unlike sentencepiece."""
    reasons = []
    if re.search(r"<(s|/s|unk|pad|mask)>", text):
        reasons.append("a literal special token (<s> </s> <unk> <pad> <mask>) is matched as an "
                       "added token")
    if js_normalize(text).endswith(" "):
        reasons.append("trailing whitespace: kept as a final '▁' piece, stripped by sentencepiece")
    for c in sorted(set(text)):
        if charsmap_only(charsmap, c) != js_normalize(c):
            reasons.append("U+%04X: the charsmap gives %r, tokenizers.js %r" % (
                ord(c), charsmap_only(charsmap, c), js_normalize(c)))
    return reasons


JS_PROGRAM = r"""
"use strict";
const fs = require("fs");
const { Tokenizer } = require("@huggingface/tokenizers");
const req = JSON.parse(fs.readFileSync(0, "utf8"));
const load = (p) => new Tokenizer(JSON.parse(fs.readFileSync(p, "utf8")), {});
const plain = load(req.plain), xlmr = load(req.xlmr);
process.stdout.write(JSON.stringify({
  plain: req.texts.map((t) => plain.encode(t, { add_special_tokens: false }).ids),
  xlmr: req.texts.map((t) => xlmr.encode(t).ids),
  pairs: req.pairs.map(([a, b]) => xlmr.encode(a, { text_pair: b }).ids),
}));
"""


def run_js(assets, plain_path, xlmr_path):
    env = dict(os.environ)
    env["NODE_PATH"] = os.pathsep.join(p for p in (assets, env.get("NODE_PATH", "")) if p)
    request = json.dumps({"plain": plain_path, "xlmr": xlmr_path, "texts": SENTENCES,
                          "pairs": [list(p) for p in PAIRS]})
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        sys.exit("sentencepiece_ref.py: node not found (Debian: nodejs)")
    res = subprocess.run([node, "-e", JS_PROGRAM], input=request.encode("utf-8"), env=env,
                         stdout=subprocess.PIPE, check=True, timeout=120)
    return json.loads(res.stdout)


# ---------------------------------------------------------------------------------------------
# The .model files through transformers' slow tokenizers (see "The .model files" above).
MODEL_EXTRA = [
    "Paris is the <mask> of France.",
    "paris is the [MASK] of france, x[MASK]y and [MASK]",
    "literal [CLS] and [SEP] and [MASK] and <pad> and <unk> here",
    "``Quoted'' TEXT with ÀCCÉNTS, Ǆ and ﬁ ligatures,   and   spaces",
    "In 1990, 2001, and 2024, prices rose 9,9 times: 1,000, 10,000, 100,000,",
    "Items 1,2,3, then ١٢٣, ² ③, and 7,",
    "ΟΔΟΣ ΣΟΦΟΣ ΚΑΙ ΣΟΦΙΑ İstanbul",
    "\x1cinformation\x1fseparators\x1d",
]
MODEL_SENTENCES = SENTENCES + MODEL_EXTRA
MODEL_PAIRS = PAIRS + [("Paris is the <mask>.", "1,000, 2,000,"), ("[MASK] first", "then [SEP] literal")]


def albert_training_lines(lines):
    """The text preprocessed as AlbertTokenizer does, plus lists of numbers with commas."""
    rng = random.Random(20240612)
    numbers = []
    for _ in range(300):
        words = []
        for _ in range(rng.randint(3, 8)):
            n = rng.choice([rng.randint(0, 9), rng.randint(10, 99), rng.randint(1900, 2030),
                            rng.randint(1000, 999999)])
            words.append(f"{n:,}," if rng.random() < 0.5 else f"{n},")
        numbers.append(" ".join(words) + " and " + str(rng.randint(0, 99)))
    return [albert_preprocess(line) for line in lines] + numbers


def train_albert(lines):
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, model_type="unigram", vocab_size=1000,
        character_coverage=1.0, normalization_rule_name="nmt_nfkc",
        input_sentence_size=10000, shuffle_input_sentence=False, seed_sentencepiece_size=100000,
        num_threads=1, pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        control_symbols=["[CLS]", "[SEP]", "[MASK]"], split_by_number=False,
        byte_fallback=False, minloglevel=2)
    return out.getvalue()


def split_specials(text, specials, lstrip):
    """[(section, special token or None)]: the specials matched in the raw text, leftmost then
    longest; a token in `lstrip` takes the whitespace on its left; empty sections dropped."""
    parts, start, i = [], 0, 0
    while i < len(text):
        best = max((t for t in specials if text.startswith(t, i)), key=len, default=None)
        if best is None:
            i += 1
            continue
        if i > start:
            parts.append([text[start:i], None])
        parts.append([best, best])
        i += len(best)
        start = i
    if start < len(text):
        parts.append([text[start:], None])
    for k, (_, tok) in enumerate(parts):
        if tok in lstrip and k > 0 and parts[k - 1][1] is None:
            parts[k - 1][0] = parts[k - 1][0].rstrip()
    return [(sec, tok) for sec, tok in parts if sec]


XLMR_FIXED = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}


def xlmr_ids(sp, text):
    mask = sp.get_piece_size() + 1
    specials = dict(XLMR_FIXED, **{"<mask>": mask})
    ids = []
    for sec, tok in split_specials(text, specials, {"<mask>"}):
        if tok:
            ids.append(specials[tok])
            continue
        for piece in sp.encode(sec, out_type=str):
            k = sp.piece_to_id(piece)
            ids.append(specials[piece] if piece in specials else k + 1 if k else 3)
    return ids


def xlmr_decode(sp, ids, skip_special):
    n = sp.get_piece_size()
    names = {v: k for k, v in XLMR_FIXED.items()}
    names[n + 1] = "<mask>"
    tokens = [names.get(i) or sp.id_to_piece(i - 1) for i in ids if not (skip_special and i in names)]
    return "".join(tokens).replace(SPACE, " ").strip()


def albert_preprocess(text, lower=True):
    out = " ".join(text.strip().split())
    out = out.replace("``", '"').replace("''", '"')
    out = "".join(c for c in unicodedata.normalize("NFKD", out) if not unicodedata.combining(c))
    return out.lower() if lower else out


ALBERT_SPECIALS = ["[CLS]", "[SEP]", "<unk>", "<pad>", "[MASK]"]


def albert_pieces(sp, text):
    """Pieces of one preprocessed section, with the digit-and-comma rule; and whether it ran."""
    out, ran = [], False
    for piece in sp.encode(text, out_type=str):
        if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
            ran = True
            cur = sp.encode(piece[:-1].replace(SPACE, ""), out_type=str)
            if piece[0] != SPACE and cur[0][0] == SPACE:
                cur = cur[1:] if len(cur[0]) == 1 else [cur[0][1:]] + cur[1:]
            out += cur + [","]
        else:
            out.append(piece)
    return out, ran


def albert_ids(sp, text, lower=True):
    ids, ran = [], False
    for sec, tok in split_specials(text, ALBERT_SPECIALS, {"[MASK]"}):
        if tok:
            ids.append(sp.piece_to_id(tok))
            continue
        pieces, r = albert_pieces(sp, albert_preprocess(sec, lower))
        ran |= r
        ids += [sp.piece_to_id(p) for p in pieces]
    return ids, ran


def albert_decode(sp, ids, skip_special):
    special = {sp.piece_to_id(t) for t in ALBERT_SPECIALS}
    out, run, prev_special = "", [], False
    for i in ids:
        if i in special:
            if skip_special:
                continue
            if not prev_special:
                out += " "
            out += sp.decode([sp.id_to_piece(j) for j in run]) + sp.id_to_piece(i)
            run, prev_special = [], True
        else:
            run.append(i)
            prev_special = False
    return (out + sp.decode([sp.id_to_piece(j) for j in run])).strip()


def model_reference(xsp, asp):
    """spm_model_ref.json (see the header)."""
    def literal_special(text):
        return any(t in text for t in list(XLMR_FIXED) + ["<mask>"] + ALBERT_SPECIALS)

    n = xsp.get_piece_size()
    xl = {"model": "spm_unigram.model", "cls": 0, "pad": 1, "sep": 2, "unk": 3, "mask": n + 1,
          "vocab_size": n + 2, "sentences": [], "pairs": []}
    role = {t: asp.piece_to_id(t) for t in ALBERT_SPECIALS}
    check([asp.id_to_piece(i) for i in range(5)] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
          "spm_albert.model: ALBERT's ids <pad> <unk> [CLS] [SEP] [MASK] at 0..4")
    al = {"model": "spm_albert.model", "cls": role["[CLS]"], "sep": role["[SEP]"], "pad": role["<pad>"],
          "mask": role["[MASK]"], "unk": role["<unk>"], "vocab_size": asp.get_piece_size(),
          "sentences": [], "pairs": []}
    roundtrips = [0, 0]
    digit_comma = 0
    for text in MODEL_SENTENCES:
        ids = xlmr_ids(xsp, text)
        row = {"text": text, "ids": ids, "decoded": xlmr_decode(xsp, ids, True),
               "decoded_special": xlmr_decode(xsp, [0] + ids + [2], False), "has_unknown": 3 in ids,
               "spm_roundtrip": xsp.decode(xsp.encode(text))}
        if not row["has_unknown"] and not literal_special(text):
            check(row["decoded"] == row["spm_roundtrip"], "XLM-R decode round trip on %r" % text)
            roundtrips[0] += 1
        xl["sentences"].append(row)
        ids, ran = albert_ids(asp, text)
        pre = albert_preprocess(text)
        row = {"text": text, "ids": ids, "ids_cased": albert_ids(asp, text, lower=False)[0],
               "decoded": albert_decode(asp, ids, True),
               "decoded_special": albert_decode(asp, [al["cls"]] + ids + [al["sep"]], False),
               "has_unknown": al["unk"] in ids, "digit_comma": ran,
               "spm_roundtrip": asp.decode(asp.encode(pre))}
        if not row["has_unknown"] and not literal_special(text):
            check(row["decoded"] == row["spm_roundtrip"], "ALBERT decode round trip on %r" % text)
            roundtrips[1] += 1
        digit_comma += ran
        al["sentences"].append(row)
    check(digit_comma >= 3, "ALBERT's digit-and-comma rule ran on only %d sentences" % digit_comma)
    for a, b in MODEL_PAIRS:
        ia, ib = xlmr_ids(xsp, a), xlmr_ids(xsp, b)
        ids = [0] + ia + [2, 2] + ib + [2]
        xl["pairs"].append({"a": a, "b": b, "ids": ids, "types": [0] * len(ids)})
        ia, ib = albert_ids(asp, a)[0], albert_ids(asp, b)[0]
        al["pairs"].append({"a": a, "b": b, "ids": [al["cls"]] + ia + [al["sep"]] + ib + [al["sep"]],
                            "types": [0] * (len(ia) + 2) + [1] * (len(ib) + 1)})
    print("sentencepiece_ref.py: .model layouts: %d sentences, %d pairs; decode round trips "
          "XLM-R %d, ALBERT %d; ALBERT's digit-and-comma rule ran on %d sentences" % (
              len(MODEL_SENTENCES), len(MODEL_PAIRS), roundtrips[0], roundtrips[1], digit_comma))
    return {"xlmr": xl, "albert": al}


# ---------------------------------------------------------------------------------------------
def check(cond, what):
    if not cond:
        sys.exit("sentencepiece_ref.py: self-check failed: " + what)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: /usr/bin/python3 sentencepiece_ref.py ASSETS_DIR OUTPUT_DIR")
    assets, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    spm.set_random_generator_seed(20240611)

    # Train twice on the same text; the two models must be byte for byte the same.
    lines = training_lines(assets)
    blob = train(lines)
    deterministic = train(lines) == blob
    if not deterministic:
        print("sentencepiece_ref.py: WARNING: two trainings gave different models", file=sys.stderr)
    model_path = os.path.join(out_dir, "spm_unigram.model")
    with open(model_path, "wb") as f:
        f.write(blob)
    sp = spm.SentencePieceProcessor(model_file=model_path)

    # The hand-parsed proto against sentencepiece's accessors.
    model = parse_model(blob)
    pieces, trainer, norm = model["pieces"], model["trainer"], model["normalizer"]
    check(len(pieces) == sp.get_piece_size(), "piece count")
    for i, p in enumerate(pieces):
        check(p["piece"] == sp.id_to_piece(i), "piece %d" % i)
        check(p["score"] == sp.get_score(i), "score %d" % i)
        check((p["type"] == 2) == sp.is_unknown(i) and (p["type"] == 3) == sp.is_control(i)
              and (p["type"] == 5) == sp.is_unused(i) and (p["type"] == 6) == sp.is_byte(i),
              "type %d" % i)
    check((trainer["unk_id"], trainer["bos_id"], trainer["eos_id"], trainer["pad_id"])
          == (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()), "special ids")
    check(trainer.get("model_type") == 1 and trainer.get("vocab_size") == len(pieces),
          "trainer spec model_type / vocab_size")
    check([p["piece"] for p in pieces[:3]] == ["<unk>", "<s>", "</s>"]
          and (trainer["unk_id"], trainer["bos_id"], trainer["eos_id"]) == (0, 1, 2),
          "spm ids 0..2 are <unk> <s> </s> (the XLM-R layout needs it)")
    check(norm.get("name") == "nmt_nfkc", "normalizer name")
    charsmap = decode_charsmap(norm["precompiled_charsmap"])
    unk = trainer["unk_id"]

    plain_path = os.path.join(out_dir, "spm_plain_tokenizer.json")
    xlmr_path = os.path.join(out_dir, "spm_xlmr_tokenizer.json")
    xlmr_doc = tokenizer_json(model, True)
    for p, doc in ((plain_path, tokenizer_json(model, False)), (xlmr_path, xlmr_doc)):
        with open(p, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
    mask_id = len(xlmr_doc["model"]["vocab"]) - 1

    def to_xlmr(ids):
        out = []
        for k in ids:
            check(k == unk or k >= 3, "control id %d in an encoding" % k)
            out.append(3 if k == unk else k + 1)
        return out

    js = run_js(assets, plain_path, xlmr_path)

    # Sentences.
    rows = []
    for i, text in enumerate(SENTENCES):
        ids = sp.encode(text, out_type=int)
        toks = sp.encode(text, out_type=str)
        normalized = "".join(toks)
        check(normalize(charsmap, norm, text) == normalized, "normalize() on %r" % text)
        check(viterbi(model, normalized) == list(zip(toks, ids)), "viterbi() on %r" % text)
        xl = [0] + to_xlmr(ids) + [2]
        agree = (js["plain"][i] == ids, js["xlmr"][i] == xl)
        why = None if all(agree) else js_reasons(charsmap, text)
        check(why is None or why, "tokenizers.js differs from spm on %r for no known reason" % text)
        rows.append({"text": text, "normalized": normalized, "spm_ids": ids, "spm_pieces": toks,
                     "decoded": sp.decode(ids), "xlmr_ids": xl,
                     "js_plain_ids": js["plain"][i], "js_xlmr_ids": js["xlmr"][i],
                     "js_plain_agrees": agree[0], "js_xlmr_agrees": agree[1], "js_difference": why})
    pairs = []
    for i, (a, b) in enumerate(PAIRS):
        ids = [0] + to_xlmr(sp.encode(a)) + [2, 2] + to_xlmr(sp.encode(b)) + [2]
        why = None if js["pairs"][i] == ids else js_reasons(charsmap, a) + js_reasons(charsmap, b)
        check(why is None or why, "tokenizers.js differs from spm on pair %r for no known reason" % ((a, b),))
        pairs.append({"a": a, "b": b, "xlmr_pair_ids": ids, "js_xlmr_pair_ids": js["pairs"][i],
                      "js_agrees": why is None, "js_difference": why})

    # Charsmap cases, and every single code point of the BMP and of the supplementary blocks that
    # NFKC maps (math alphanumerics, enclosed alphanumerics, CJK compatibility ideographs, tags).
    cases = []
    for text in CHARSMAP_CASES:
        toks = sp.encode(text, out_type=str)
        normalized = "".join(toks)
        check(normalize(charsmap, norm, text) == normalized, "normalize() on case %r" % text)
        cases.append({"text": text, "codepoints": ["U+%04X" % ord(c) for c in text],
                      "charsmap": charsmap_only(charsmap, text), "spm_normalized": normalized})
    singles = [chr(c) for r in ((0, 0xD800), (0xE000, 0x10000), (0x1D400, 0x1D800),
                                (0x1F100, 0x1F300), (0x2F800, 0x2FA20), (0xE0000, 0xE0200))
               for c in range(*r)]
    spm_single = sp.encode(singles, out_type=str)
    changed = 0
    for c, toks in zip(singles, spm_single):
        got = normalize(charsmap, norm, c)
        check(got == "".join(toks), "normalize() on U+%04X" % ord(c))
        changed += charsmap_only(charsmap, c) != c

    plain_ok = sum(r["js_plain_agrees"] for r in rows)
    xlmr_ok = sum(r["js_xlmr_agrees"] for r in rows)
    notes = [
        "spm_ids / spm_pieces / decoded come from python3-sentencepiece and are the ground truth.",
        "tokenizers.js 0.2.0 ignores precompiled_charsmap: its Precompiled normalizer is NFKC plus "
        "removal of C0 controls and mapping of some whitespace to ' ', so control, zero-width and "
        "exotic whitespace characters can differ from spm.",
        "With Precompiled + Replace(' {2,}' -> ' ') and Metaspace, trailing whitespace becomes a "
        "trailing '▁' piece in Hugging Face tokenizers, while sentencepiece strips it "
        "(remove_extra_whitespaces).",
        "Literal '<s>', '</s>', '<unk>' (and '<mask>' in the XLM-R file) in the text are matched "
        "as added tokens by Hugging Face tokenizers but are plain text for sentencepiece.",
    ]
    ref = {
        "model": "spm_unigram.model", "model_sha256": hashlib.sha256(blob).hexdigest(),
        "deterministic": deterministic,
        "spm": {"vocab_size": len(pieces), "unk_id": unk, "bos_id": trainer["bos_id"],
                "eos_id": trainer["eos_id"], "pad_id": trainer["pad_id"],
                "normalizer_name": norm["name"], "add_dummy_prefix": norm["add_dummy_prefix"],
                "remove_extra_whitespaces": norm["remove_extra_whitespaces"],
                "escape_whitespaces": norm["escape_whitespaces"],
                "charsmap_bytes": len(norm["precompiled_charsmap"]),
                "charsmap_trie_bytes": 4 * len(charsmap[0]), "unk_surface": trainer["unk_surface"]},
        "xlmr": {"bos_id": 0, "pad_id": 1, "eos_id": 2, "unk_id": 3, "mask_id": mask_id,
                 "vocab_size": mask_id + 1},
        "sentences": rows, "pairs": pairs, "notes": notes,
    }
    with open(os.path.join(out_dir, "spm_ref.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out_dir, "spm_charsmap_cases.json"), "w", encoding="utf-8") as f:
        json.dump({"note": "charsmap: the precompiled_charsmap alone (longest match, else the "
                           "character itself), from normalize_prefix in sentencepiece_ref.py; "
                           "spm_normalized: sentencepiece's full normalization (its pieces "
                           "joined: dummy prefix, whitespace rules, ' ' as '▁').",
                   "cases": cases}, f, ensure_ascii=False, indent=1)

    # The .model files: an ALBERT-layout model, trained twice like the first one.
    albert_lines = albert_training_lines(lines)
    albert_blob = train_albert(albert_lines)
    if train_albert(albert_lines) != albert_blob:
        print("sentencepiece_ref.py: WARNING: two trainings gave different ALBERT models", file=sys.stderr)
    albert_path = os.path.join(out_dir, "spm_albert.model")
    with open(albert_path, "wb") as f:
        f.write(albert_blob)
    model_ref = model_reference(sp, spm.SentencePieceProcessor(model_file=albert_path))
    with open(os.path.join(out_dir, "spm_model_ref.json"), "w", encoding="utf-8") as f:
        json.dump(model_ref, f, ensure_ascii=False, indent=1)

    print("sentencepiece_ref.py: %d pieces, deterministic %s, normalizer flags %s (present: %s)" % (
        len(pieces), deterministic,
        {k: norm[k] for k in ("add_dummy_prefix", "remove_extra_whitespaces", "escape_whitespaces")},
        norm["present"]))
    print("sentencepiece_ref.py: normalize() agrees with sentencepiece on %d sentences, %d cases, "
          "%d single code points (%d changed by the charsmap); viterbi() on %d sentences" % (
              len(rows), len(cases), len(singles), changed, len(rows)))
    print("sentencepiece_ref.py: tokenizers.js plain ids = spm ids on %d/%d sentences, XLM-R ids "
          "on %d/%d, pairs %d/%d" % (plain_ok, len(rows), xlmr_ok, len(rows),
                                     sum(p["js_agrees"] for p in pairs), len(pairs)))
    for r in rows:
        if not r["js_plain_agrees"] or not r["js_xlmr_agrees"]:
            print("  differs (plain %s, xlmr %s): %r: %s" % (
                r["js_plain_agrees"], r["js_xlmr_agrees"], r["text"][:50], "; ".join(r["js_difference"])))


if __name__ == "__main__":
    main()
