#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end checks of the peft-encode program (run by ctest with Debian's python3 + numpy).

usage: check_peft_encode.py PEFT_ENCODE USE_LITE_DIST REFERENCE_DIR SCRATCH_DIR

- USE-lite from text: sentence embeddings equal the TF.js runtime's golden ones (<= 1e-4),
  and stay within cosine 0.999 of them with --precision bf16.
- BERT from ids/mask: hidden states equal PyTorch's on the real positions (<= 1e-4).
- Every bad input exits non-zero with exactly one line on stderr, and writes no output.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

exe, use_lite, ref, scratch = sys.argv[1:5]
os.makedirs(scratch, exist_ok=True)
failures = []


def run(*args):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


# USE-lite: text in, sentence embeddings out (the default pooling).
golden = json.load(open(os.path.join(ref, "use_lite", "golden.json")))
sentences = [s for s in golden["sentences"] if "\n" not in s and "\r" not in s and s != ""]
keep = [i for i, s in enumerate(golden["sentences"]) if s in sentences]
text = os.path.join(scratch, "sentences.txt")
with open(text, "w", encoding="utf-8") as f:
    f.write("\n".join(sentences) + "\n")
out = os.path.join(scratch, "use_lite.npy")
r = run("--model", use_lite, "--input", text, "--output", out, "--threads", "2")
check(r.returncode == 0, "USE-lite text encoding exits 0 (%s)" % r.stderr.strip())
if r.returncode == 0:
    got = np.load(out)
    want = np.array(golden["embeddings"], dtype=np.float64)[keep]
    check(got.shape == (len(sentences), 512), "USE-lite output shape [B, 512]: %s" % (got.shape,))
    diff = float(np.abs(got - want).max())
    print("      USE-lite max abs diff vs TF.js: %.3g over %d sentences" % (diff, len(sentences)))
    check(diff <= 1e-4, "USE-lite embeddings match the TF.js runtime")
    # bf16 frozen weights: every embedding keeps its direction (cosine > 0.999 to TF.js's).
    out16 = os.path.join(scratch, "use_lite_bf16.npy")
    r = run("--model", use_lite, "--input", text, "--output", out16, "--precision", "bf16")
    check(r.returncode == 0, "USE-lite --precision bf16 exits 0 (%s)" % r.stderr.strip())
    if r.returncode == 0:
        got16 = np.load(out16).astype(np.float64)
        cos = (got16 * want).sum(1) / (np.linalg.norm(got16, axis=1) * np.linalg.norm(want, axis=1))
        print("      USE-lite bf16 weights: worst cosine to TF.js %.6f, max abs diff %.3g" %
              (float(cos.min()), float(np.abs(got16 - want).max())))
        check(float(cos.min()) > 0.999, "USE-lite bf16 embeddings stay within cosine 0.999 of TF.js's")
        check(float(np.abs(got16 - want).max()) > 1e-6, "--precision bf16 really rounds the weights")
    r = run("--model", use_lite, "--input", text, "--output", out, "--pool", "none")
    check(r.returncode == 0 and np.load(out).shape[0] == len(sentences) and np.load(out).shape[2] == 512,
          "USE-lite --pool none gives [B, T, 512]")

# BERT: ids + mask in, hidden states out (the default pooling for HF models).
bert = os.path.join(ref, "torch", "bert")
out = os.path.join(scratch, "bert.npy")
r = run("--model", bert, "--ids", os.path.join(bert, "inputs_ids.npy"), "--mask",
        os.path.join(bert, "inputs_mask.npy"), "--output", out)
check(r.returncode == 0, "BERT ids encoding exits 0 (%s)" % r.stderr.strip())
if r.returncode == 0:
    got = np.load(out)
    want = np.load(os.path.join(bert, "hidden_seg0.npy"))  # --ids carries no segments
    mask = np.load(os.path.join(bert, "inputs_mask.npy")).astype(bool)
    diff = float(np.abs(got - want)[mask].max())
    print("      BERT max abs diff vs PyTorch: %.3g" % diff)
    check(got.shape == want.shape and diff <= 1e-4, "BERT hidden states match PyTorch")
    check(float(np.abs(got[~mask]).max()) == 0.0, "padding positions are zero")
    r = run("--model", bert, "--ids", os.path.join(bert, "inputs_ids.npy"), "--output", out, "--pool", "cls")
    check(r.returncode == 0 and np.load(out).shape == (3, 64), "BERT --pool cls gives [B, H]")

# Bad input: one clear line on stderr, non-zero exit, no output file left behind.
bad = os.path.join(scratch, "bad")
os.makedirs(bad, exist_ok=True)
corrupt = os.path.join(bad, "corrupt_model")
shutil.rmtree(corrupt, ignore_errors=True)
shutil.copytree(bert, corrupt)
with open(os.path.join(corrupt, "model.safetensors"), "r+b") as f:
    f.truncate(1000)
np.save(os.path.join(bad, "float_ids.npy"), np.zeros((2, 3), dtype=np.float32))
np.save(os.path.join(bad, "big_ids.npy"), np.full((1, 4), 100000, dtype=np.int64))
np.save(os.path.join(bad, "ids.npy"), np.ones((2, 3), dtype=np.int64))
np.save(os.path.join(bad, "mask_wrong.npy"), np.ones((2, 4), dtype=np.int64))
np.save(os.path.join(bad, "ids_1d.npy"), np.ones((3,), dtype=np.int64))
np.save(os.path.join(bad, "long_ids.npy"), np.ones((1, 41), dtype=np.int64))
empty = os.path.join(bad, "empty.txt")
open(empty, "w").close()
bad_out = os.path.join(bad, "out.npy")
cases = [
    ("missing model folder", ["--model", os.path.join(bad, "nope"), "--input", text], "does not exist"),
    ("missing input file", ["--model", use_lite, "--input", os.path.join(bad, "nope.txt")], "cannot open"),
    ("empty input file", ["--model", use_lite, "--input", empty], "empty"),
    ("corrupt safetensors", ["--model", corrupt, "--ids", os.path.join(bad, "ids.npy")], "safetensors"),
    ("float ids", ["--model", bert, "--ids", os.path.join(bad, "float_ids.npy")], "int"),
    ("1-D ids", ["--model", bert, "--ids", os.path.join(bad, "ids_1d.npy")], "2"),
    ("ids out of vocabulary", ["--model", bert, "--ids", os.path.join(bad, "big_ids.npy")], "token id expected"),
    ("sequence too long", ["--model", bert, "--ids", os.path.join(bad, "long_ids.npy")], "sequence length"),
    ("mask shape mismatch", ["--model", bert, "--ids", os.path.join(bad, "ids.npy"), "--mask",
                             os.path.join(bad, "mask_wrong.npy")], "does not match"),
    ("unknown pooling", ["--model", bert, "--ids", os.path.join(bad, "ids.npy"), "--pool", "max"], "--pool"),
    ("text without a vocabulary", ["--model", bert, "--input", text], "vocab.txt"),
    ("no input given", ["--model", bert], "exactly one of"),
    ("unknown precision", ["--model", bert, "--ids", os.path.join(bad, "ids.npy"), "--precision", "fp16"],
     "precision"),
]
for name, args, needle in cases:
    if os.path.exists(bad_out):
        os.remove(bad_out)
    r = run(*args, "--output", bad_out)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    first = lines[0] if lines else ""
    ok = r.returncode != 0 and len(lines) >= 1 and needle.lower() in first.lower() and not os.path.exists(bad_out)
    # Usage errors print the usage after the one-line reason; runtime errors print exactly one line.
    if r.returncode == 1:
        ok = ok and len(lines) == 1
    check(ok, "bad input rejected: %s -> rc %d: %s" % (name, r.returncode, first))


sys.exit(1 if failures else 0)
