#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""peft-train -> peft-predict round trips on the real USE-lite encoder, and bad input.

usage: check_peft_train.py PEFT_TRAIN PEFT_PREDICT USE_LITE_DIST ASSETS_DIR TORCH_BERT_DIR SCRATCH

For several methods: train on 16 labelled Yelp sentences per class (a few epochs), save, then
peft-predict on the same test file must reproduce the accuracy peft-train printed, exactly.
Malformed data, an unknown label at predict time and a checkpoint from another model must be
rejected with one clear line on stderr.
With PEFT_EXAMPLES_QUICK=1 (set by `scripts/test --sanitize`) training is one epoch on 4 shots
and the test file has 40 sentences: the same checks, less arithmetic.
"""
import json
import os
import subprocess
import sys

train_exe, predict_exe, use_lite, assets, bert_dir, scratch = sys.argv[1:7]
os.makedirs(scratch, exist_ok=True)
quick = os.environ.get("PEFT_EXAMPLES_QUICK") == "1"
n_test = 40 if quick else 120
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=900)


# A test file of 120 (quick: 40) Yelp sentences (JSONL, string labels), disjoint from nothing in
# particular: the few-shot sample is drawn from the full Yelp file, so some overlap is possible;
# this test checks reproduction, not generalisation.
yelp = json.load(open(os.path.join(assets, "sentiment", "test", "fixtures", "yelp.json")))
yelp = [e for e in yelp if e.get("class") is not None and e["text"].strip()]
test_path = os.path.join(scratch, "test.jsonl")
with open(test_path, "w") as f:
    for e in yelp[-n_test:]:
        f.write(json.dumps({"text": e["text"], "label": "pos" if e["class"] == 1 else "neg"}) + "\n")
train_path = os.path.join(scratch, "train.jsonl")
with open(train_path, "w") as f:
    for e in yelp[:-n_test]:
        f.write(json.dumps({"text": e["text"], "label": "pos" if e["class"] == 1 else "neg"}) + "\n")

for method in ["head", "list-adapter", "lora", "prefix", "side"]:
    out = os.path.join(scratch, "ckpt_" + method)
    r = run(train_exe, "--model", use_lite, "--method", method, "--train", train_path, "--test", test_path,
            "--shots", "4" if quick else "16", "--seed", "3", "--epochs", "1" if quick else "3", "--save", out)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    try:
        res = json.loads(last)
    except ValueError:
        res = {}
    keys = {"method", "accuracy", "macro_f1", "trainable_params", "backbone_params", "train_seconds",
            "examples_per_second"}
    check(r.returncode == 0 and keys <= set(res), "peft-train %s prints the JSON result (%s)" % (method, r.stderr.strip()[-200:]))
    if r.returncode != 0:
        continue
    preds = os.path.join(scratch, "pred_" + method + ".jsonl")
    p = run(predict_exe, "--model", use_lite, "--adapter", out, "--input", test_path, "--output", preds)
    check(p.returncode == 0, "peft-predict %s runs (%s)" % (method, p.stderr.strip()))
    if p.returncode != 0:
        continue
    acc = json.loads(p.stdout.strip().splitlines()[-1])["accuracy"]
    check(acc == res["accuracy"], "%s: peft-predict accuracy %.4f == peft-train's %.4f" % (method, acc, res["accuracy"]))
    rows = [json.loads(l) for l in open(preds)]
    check(len(rows) == n_test and all(abs(sum(x["scores"].values()) - 1) < 1e-5 and x["label"] in ("neg", "pos") for x in rows),
          "%s: one prediction per line with label and probabilities" % method)

# Bad input.
bad_data = os.path.join(scratch, "bad.jsonl")
with open(bad_data, "w") as f:
    f.write('{"text": "fine", "label": "pos"}\n{"text": "broken", "label": \n')
r = run(train_exe, "--model", use_lite, "--method", "head", "--train", bad_data, "--test", test_path)
check(r.returncode != 0 and "line 2" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
      "malformed data names the line: " + r.stderr.strip())
unknown = os.path.join(scratch, "unknown.jsonl")
with open(unknown, "w") as f:
    f.write('{"text": "great food", "label": "neutral"}\n')
r = run(predict_exe, "--model", use_lite, "--adapter", os.path.join(scratch, "ckpt_head"), "--input", unknown)
check(r.returncode != 0 and "neutral" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
      "unknown label at predict time is rejected: " + r.stderr.strip())
r = run(predict_exe, "--model", bert_dir, "--adapter", os.path.join(scratch, "ckpt_lora"), "--input", test_path)
check(r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1,
      "a checkpoint from another model is rejected: " + r.stderr.strip())
r = run(train_exe, "--model", use_lite, "--method", "nope", "--train", train_path, "--test", test_path)
check(r.returncode != 0 and "unknown method" in r.stderr, "unknown method is rejected: " + r.stderr.strip())

sys.exit(1 if failures else 0)
