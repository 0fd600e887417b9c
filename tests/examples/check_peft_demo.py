#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A quick pass of the main demo (one seed, one epoch, head and LoRA): it exits 0 and prints
exactly the rows asked for, with accuracies in [0, 100] % and the trainable counts and test-set
size worked out here from USE-lite's model.json and the Yelp file; the Markdown file it writes
holds the same table.

usage: check_peft_demo.py PEFT_DEMO ASSETS_DIR SCRATCH
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys

demo_exe, assets, scratch = sys.argv[1:4]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


shots = 16  # the demo's default labelled sentences per class
r = subprocess.run([demo_exe, "--assets", assets, "--seeds", "1", "--epochs", "1", "--methods", "head,lora",
                    "--out", scratch], capture_output=True, text=True, timeout=600)
why = "" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]  # the program's own error
check(r.returncode == 0, "peft-demo exits 0 (exit %d)%s" % (r.returncode, why))

# Independent counts. USE-lite: the sentence embedding is the output of its tanh layer.
dist = os.path.join(assets, "@energetic-ai", "model-embeddings-en", "dist")
manifest = json.load(open(os.path.join(dist, "model.json")))
weights = {w["name"]: w["shape"] for g in manifest["weightsManifest"] for w in g["weights"] if w["dtype"] == "float32"}
hidden = weights["module/Encoder_en/hidden_layers/tanh_layer_0/weights"][1]
# Every float tensor except scalar constants and the precomputed sinusoidal timing signal.
backbone = sum(math.prod(s) for n, s in weights.items() if len(s) >= 1 and "TimingSignal" not in n)
# LoRA r=8 on query and value of each layer: A [r x in] + B [att x r]; qkv kernels are [1, 1, in, 3 att].
lora = sum(2 * 8 * (s[2] + s[3] // 3) for n, s in weights.items() if "qkv_transform_single/kernel" in n)
yelp = json.load(open(os.path.join(assets, "sentiment", "test", "fixtures", "yelp.json")))
yelp = [e for e in yelp if e.get("class") is not None and e["text"].strip()]
classes = len({e["class"] for e in yelp})
head = hidden * classes + classes  # linear classification head on the sentence embedding
want_params = {"centroid (no training)": 0, "head": head, "lora": lora + head}

m = re.search(r"frozen USE-lite \((\d+) parameters.*?the other (\d+) as the test set", r.stdout, re.S)
check(m is not None and int(m.group(1)) == backbone,
      "backbone %s parameters, expected %d" % (m.group(1) if m else "?", backbone))
check(m is not None and int(m.group(2)) == len(yelp) - 2 * shots,
      "test set %s sentences, expected %d - 2 x %d" % (m.group(2) if m else "?", len(yelp), shots))

table = [l for l in r.stdout.splitlines() if l.startswith("|")]
rows = [[x.strip() for x in l.strip().strip("|").split("|")] for l in table[2:]]
check([f[0] for f in rows] == list(want_params), "rows exactly %s: %s" % (list(want_params), [f[0] for f in rows]))
for f in rows:
    if len(f) != 5 or f[0] not in want_params:
        check(False, "row %s has 5 fields and a method asked for" % f)
        continue
    a = re.fullmatch(r"(\d+\.\d) ± (\d+\.\d) %", f[1])
    check(a is not None and 0 <= float(a.group(1)) <= 100 and float(a.group(2)) == 0.0,
          "%s: accuracy '%s' is a percentage, std 0 with one seed" % (f[0], f[1]))
    want = want_params[f[0]]
    check(f[2] == str(want), "%s: %s trainable, expected %d" % (f[0], f[2], want))
    check(f[3] == "%.3f %%" % (100.0 * want / backbone), "%s: share %s" % (f[0], f[3]))
    check(re.fullmatch(r"\d+\.\d s", f[4]) is not None, "%s: train time '%s'" % (f[0], f[4]))

md = os.path.join(scratch, "demo.md")
check(os.path.exists(md) and open(md).read().splitlines() == table, "demo.md holds the printed table")

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
