#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A quick pass of the main demo (one seed, one epoch, head and LoRA): it exits 0 and prints
exactly the rows asked for, with accuracies in [0, 100] % and the trainable counts and test-set
size worked out here from USE-lite's model.json and the Yelp file; the Markdown file it writes
holds the same table.

Then the few-shot recipe the README chose on the dev split (Houlsby adapters trained by
SetFit's contrastive pairs, then the head alone) against the head alone, over 3 seeds on the
real sentences: its paired difference must be above 0, and the row must show what the demo
says it measures. Under PEFT_EXAMPLES_QUICK (the sanitizer build) that run is skipped: the
recipes' code runs under the sanitizers in test_trainer and check_peft_train.py, and whether
the recipe pays is the Release build's question.

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

dev = 200  # the demo's default dev split, out of the sentences not drawn as labelled
m = re.search(r"frozen USE-lite \((\d+) parameters.*?(\d+) as a dev split, the other (\d+) as the test set",
              r.stdout, re.S)
check(m is not None and int(m.group(1)) == backbone,
      "backbone %s parameters, expected %d" % (m.group(1) if m else "?", backbone))
check(m is not None and int(m.group(2)) == dev and int(m.group(3)) == len(yelp) - 2 * shots - dev,
      "dev %s and test set %s sentences, expected %d and %d - 2 x %d - %d" %
      (m.group(2) if m else "?", m.group(3) if m else "?", dev, len(yelp), shots, dev))

table = [l for l in r.stdout.splitlines() if l.startswith("|")]
rows = [[x.strip() for x in l.strip().strip("|").split("|")] for l in table[2:]]
check([f[0] for f in rows] == list(want_params), "rows exactly %s: %s" % (list(want_params), [f[0] for f in rows]))
accs = {}
for f in rows:
    if len(f) != 7 or f[0] not in want_params:
        check(False, "row %s has 7 fields and a method asked for" % f)
        continue
    a = re.fullmatch(r"(\d+\.\d) ± (\d+\.\d) %", f[1])
    check(a is not None and 0 <= float(a.group(1)) <= 100 and float(a.group(2)) == 0.0,
          "%s: accuracy '%s' is a percentage, std 0 with one seed" % (f[0], f[1]))
    accs[f[0]] = float(a.group(1)) if a else None
    want = want_params[f[0]]
    check(f[4] == str(want), "%s: %s trainable, expected %d" % (f[0], f[4], want))
    check(f[5] == "%.3f %%" % (100.0 * want / backbone), "%s: share %s" % (f[0], f[5]))
    check(re.fullmatch(r"\d+\.\d s", f[6]) is not None, "%s: train time '%s'" % (f[0], f[6]))
    check(re.fullmatch(r"\d+\.\d %", f[3]) is not None, "%s: dev accuracy '%s' is a percentage" % (f[0], f[3]))
# The paired column: empty for head itself, else the difference of the one seed's accuracies.
for f in rows:
    if len(f) != 7 or accs.get(f[0]) is None or accs.get("head") is None:
        continue
    if f[0] == "head":
        check(f[2] == "", "head: no paired difference with itself")
    else:
        d = re.fullmatch(r"([+-]\d+\.\d) ± (\d+\.\d)", f[2])
        check(d is not None and abs(float(d.group(1)) - (accs[f[0]] - accs["head"])) <= 0.11,
              "%s: paired difference '%s' is its accuracy minus head's (%.1f - %.1f)" % (f[0], f[2], accs[f[0]],
                                                                                      accs["head"]))

md = os.path.join(scratch, "demo.md")
check(os.path.exists(md) and open(md).read().splitlines() == table, "demo.md holds the printed table")

# The chosen recipe against the head alone, over the same seeds (Release only).
quick = os.environ.get("PEFT_EXAMPLES_QUICK") == "1"
if not quick:
    seeds = 3
    r = subprocess.run([demo_exe, "--assets", assets, "--seeds", str(seeds), "--methods", "head,houlsby+setfit",
                        "--dev", "100", "--out", os.path.join(scratch, "recipe")], capture_output=True, text=True,
                       timeout=1200)
    why = "" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]
    check(r.returncode == 0, "peft-demo --methods head,houlsby+setfit exits 0 (exit %d)%s" % (r.returncode, why))
    table = [l for l in r.stdout.splitlines() if l.startswith("|")]
    rows = {f[0]: f for f in ([x.strip() for x in l.strip().strip("|").split("|")] for l in table[2:])}
    check(list(rows) == ["centroid (no training)", "head", "houlsby+setfit"],
          "recipe rows: centroid, head, houlsby+setfit (METHOD+RECIPE is one row): %s" % list(rows))
    f = rows.get("houlsby+setfit", [])
    d = re.fullmatch(r"([+-]\d+\.\d) ± (\d+\.\d)", f[2]) if len(f) == 7 else None
    check(d is not None, "houlsby+setfit has a paired difference: %s" % f)
    check(len(f) == 7 and re.fullmatch(r"\d+\.\d %", f[3]) is not None, "houlsby+setfit has a dev accuracy: %s" % f)
    m = re.search(r"(\d+) as a dev split, the other (\d+) as the test set", r.stdout)
    check(m is not None and int(m.group(1)) == 100 and int(m.group(2)) == len(yelp) - 2 * shots - 100,
          "the dev split comes out of the test set: %s" % (m.group(0) if m else "?"))
    if d is not None:
        check(float(d.group(1)) > 0, "houlsby+setfit beats the head alone over %d seeds: paired %s points" % (seeds, f[2]))

for extra, expect in [(["--methods", "head+setfit"], "the head alone has no policy for a recipe"),
                      (["--methods", "lora+simclr"], "recipe expected plain, lpft, setfit or setfit-ft, got 'simclr'"),
                      (["--recipes", "plain,lp"], "--recipes: recipe expected")]:
    r = subprocess.run([demo_exe, "--assets", assets, *extra], capture_output=True, text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and lines and expect in lines[0], "%s: usage error '%s' (got %d: %s)" %
          (" ".join(extra), expect, r.returncode, lines[:1]))

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
