#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Every method learns: a small peft-train run per method on the real USE-lite encoder and
real Yelp sentences reaches clearly above chance on held-back sentences, and the same seed
gives the same result twice.

With PEFT_EXAMPLES_QUICK=1 (set by `scripts/test --sanitize`) every method runs one short epoch
on a few shots: the sanitizer build checks the code paths and determinism; the learning bar is
checked by the Release build.

usage: check_methods.py PEFT_TRAIN USE_LITE_DIST ASSETS_DIR SCRATCH
"""
import json
import os
import random
import subprocess
import sys

train_exe, use_lite, assets, scratch = sys.argv[1:5]
quick = os.environ.get("PEFT_EXAMPLES_QUICK") == "1"
os.makedirs(scratch, exist_ok=True)
yelp = [e for e in json.load(open(os.path.join(assets, "sentiment", "test", "fixtures", "yelp.json")))
        if e.get("class") is not None and e["text"].strip()]
random.Random(7).shuffle(yelp)
test, pool = yelp[:300], yelp[300:]  # held-back test sentences, disjoint from the training pool
if quick:
    test = test[:40]
for name, rows in (("test.jsonl", test), ("train.jsonl", pool)):
    with open(os.path.join(scratch, name), "w") as f:
        for e in rows:
            f.write(json.dumps({"text": e["text"], "label": str(e["class"])}) + "\n")

failures = []


def train(method, seed="2"):
    r = subprocess.run([train_exe, "--model", use_lite, "--method", method, "--train",
                        os.path.join(scratch, "train.jsonl"), "--test", os.path.join(scratch, "test.jsonl"),
                        "--shots", "4" if quick else "32", "--seed", seed, "--epochs", "1" if quick else "6"],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return json.loads(r.stdout.strip().splitlines()[-1]), ""


for method in ["head", "full", "houlsby", "pfeiffer", "list-adapter", "prefix", "mask", "side", "lora"]:
    res, err = train(method)
    ok = res is not None and (0 <= res["accuracy"] <= 1 if quick else res["accuracy"] > 0.6)
    print("%s  %-13s accuracy %s %s" % ("ok  " if ok else "FAIL", method, res and "%.3f" % res["accuracy"], err))
    if not ok:
        failures.append(method)

a, _ = train("lora", "5")
b, _ = train("lora", "5")
same = a is not None and b is not None and a["accuracy"] == b["accuracy"] and a["macro_f1"] == b["macro_f1"]
print("%s  determinism: lora seed 5 twice -> %s, %s" % ("ok  " if same else "FAIL", a and a["accuracy"], b and b["accuracy"]))
if not same:
    failures.append("determinism")
sys.exit(1 if failures else 0)
