// SPDX-License-Identifier: Apache-2.0
/**
 * ONNX Runtime side of peft's benchmarks: times inference of an exported BERT encoder on CPU.
 *
 * Loads an ONNX model written by `bench_torch.py --export-onnx` (inputs `input_ids` and
 * `attention_mask`, int64 [batch, seq]; output the last hidden state), feeds it random token ids
 * and an all-ones mask, runs `--warmup` untimed steps and then `--steps` timed ones, and prints
 * exactly one JSON line on stdout:
 *
 *   {"tokens_per_s": float, "peak_rss_mb": float, "steps": int, "seconds": float}
 *
 * where tokens = batch * seq * steps over the timed steps. Everything else goes to stderr.
 *
 * Usage:
 *   node benchmarks/bench_ort.js --model PATH --batch 16 --seq 128 --steps N --warmup W \
 *       [--threads 2] [--vocab 30522] [--seed 0]
 *
 * onnxruntime-node is looked up in PEFT_BENCH_NPM (a node_modules folder) if set, else in
 * .cache/bench-npm/node_modules of this repository; install it there with
 *   npm install --ignore-scripts --prefix .cache/bench-npm onnxruntime-node
 * (--ignore-scripts: the install script only fetches GPU libraries; the CPU one ships inside).
 */
'use strict';

const path = require('path');
const { performance } = require('perf_hooks');

const USAGE = 'usage: node bench_ort.js --model PATH [--batch 16] [--seq 128] [--steps 10] ' +
  '[--warmup 2] [--threads 2] [--vocab 30522] [--seed 0]';

/** Parses `--name value` pairs; every option but --model is a non-negative integer. */
function parseArgs(argv) {
  const opts = { model: null, batch: 16, seq: 128, steps: 10, warmup: 2, threads: 2,
    vocab: 30522, seed: 0 };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].startsWith('--') ? argv[i].slice(2) : null;
    const value = argv[i + 1];
    if (name === 'help') fail(USAGE, 0);
    if (name === null || !(name in opts) || value === undefined) {
      fail(`bad argument ${JSON.stringify(argv[i])}\n${USAGE}`);
    }
    if (name === 'model') {
      opts.model = value;
    } else {
      if (!/^\d+$/.test(value)) fail(`--${name} needs a non-negative integer, got ${value}`);
      opts[name] = Number(value);
    }
  }
  if (!opts.model) fail(`--model is required\n${USAGE}`);
  for (const name of ['batch', 'seq', 'steps', 'threads', 'vocab']) {
    if (opts[name] < 1) fail(`--${name} must be at least 1`);
  }
  return opts;
}

function fail(message, code = 2) {
  console.error(message);
  process.exit(code);
}

/** Loads onnxruntime-node from the benchmark's own npm folder (not from wherever node runs). */
function loadOrt() {
  const modules = process.env.PEFT_BENCH_NPM ||
    path.join(__dirname, '..', '.cache', 'bench-npm', 'node_modules');
  let resolved;
  try {
    // Node searches the node_modules folders of `modules` and its ancestors: `modules` itself.
    resolved = require.resolve('onnxruntime-node', { paths: [modules] });
  } catch (err) {
    fail(`onnxruntime-node not found under ${modules} (set PEFT_BENCH_NPM or run: npm install ` +
      `--ignore-scripts --prefix ${path.dirname(modules)} onnxruntime-node)\n${err.message}`, 1);
  }
  return require(resolved);
}

/** mulberry32: a small seeded PRNG, so every run feeds the same token ids. */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(opts.model, {
    intraOpNumThreads: opts.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });

  // Inputs: random ids in [0, vocab), mask all ones (no padding).
  const dims = [opts.batch, opts.seq];
  const count = opts.batch * opts.seq;
  const random = mulberry32(opts.seed + 1);
  const ids = BigInt64Array.from({ length: count }, () => BigInt(Math.floor(random() * opts.vocab)));
  const available = {
    input_ids: new ort.Tensor('int64', ids, dims),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(count).fill(1n), dims),
  };
  const feeds = {};
  for (const name of session.inputNames) {
    if (!(name in available)) fail(`the model has an unexpected input ${name}`, 1);
    feeds[name] = available[name];
  }
  console.error(`onnxruntime-node ${ort.env.versions.node}, ${opts.threads} threads, ` +
    `inputs ${session.inputNames.join(', ')} [${dims.join('x')}]`);

  for (let i = 0; i < opts.warmup; i++) await session.run(feeds);
  const start = performance.now();
  for (let i = 0; i < opts.steps; i++) await session.run(feeds);
  const seconds = (performance.now() - start) / 1000;

  const tokensPerS = (count * opts.steps) / seconds;
  const peakRssMb = process.resourceUsage().maxRSS / 1024; // KiB -> MiB
  console.error(`${opts.steps} steps in ${seconds.toFixed(3)}s: ${tokensPerS.toFixed(1)} tokens/s, ` +
    `peak RSS ${peakRssMb.toFixed(0)} MiB`);
  console.log(JSON.stringify({ tokens_per_s: tokensPerS, peak_rss_mb: peakRssMb,
    steps: opts.steps, seconds }));
}

main().catch((err) => fail(err && err.stack ? err.stack : String(err), 1));
