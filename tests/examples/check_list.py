#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""peft-train --method list (LiST self-training) end to end on the real USE-lite encoder and
real Yelp sentences, with a short schedule: it learns, reports every session (pseudo-label
share kept by the re-weighting), shows the phases in its progress display, saves a task that
peft-predict reproduces exactly, and rejects a run without an unlabelled pool.
With PEFT_EXAMPLES_QUICK=1 (set by `scripts/test --sanitize`) the schedule is cut further and
the learning bar is left to the Release build.

usage: check_list.py PEFT_TRAIN PEFT_PREDICT USE_LITE_DIST ASSETS_DIR SCRATCH
"""
import json
import os
import random
import subprocess
import sys

train_exe, predict_exe, use_lite, assets, scratch = sys.argv[1:6]
quick = os.environ.get("PEFT_EXAMPLES_QUICK") == "1"
os.makedirs(scratch, exist_ok=True)
yelp = [e for e in json.load(open(os.path.join(assets, "sentiment", "test", "fixtures", "yelp.json")))
        if e.get("class") is not None and e["text"].strip()]
random.Random(3).shuffle(yelp)
# Disjoint: test sentences, the labelled source (--shots picks 32 per class) and the pool.
n = 60 if quick else 200
test, labelled, pool = yelp[:n], yelp[200:400], yelp[400:400 + n]
paths = {}
for name, rows, with_label in (("test", test, True), ("train", labelled, True), ("pool", pool, False)):
    paths[name] = os.path.join(scratch, name + ".jsonl")
    with open(paths[name], "w") as f:
        for e in rows:
            f.write(json.dumps({"text": e["text"], "label": str(e["class"])} if with_label else {"text": e["text"]}) + "\n")

failures = []


def check(ok, what):
    print("%s  %s" % ("ok  " if ok else "FAIL", what))
    if not ok:
        failures.append(what)


out = os.path.join(scratch, "task")
args = [train_exe, "--model", use_lite, "--method", "list", "--train", paths["train"], "--test", paths["test"],
        "--unlabeled", paths["pool"], "--shots", "8" if quick else "32", "--seed", "1",
        "--teacher-epochs", "2" if quick else "8", "--teacher-lr", "1e-3", "--sessions", "2",
        "--student-steps", "4" if quick else "30", "--finetune-epochs", "1" if quick else "3",
        "--student-lr", "1e-3", "--batch", "8", "--save", out]
r = subprocess.run(args, capture_output=True, text=True, timeout=1500)
check(r.returncode == 0, "peft-train --method list runs (%s)" % r.stderr.strip()[-300:])
if r.returncode == 0:
    res = json.loads(r.stdout.strip().splitlines()[-1])
    check(res["method"] == "list" and (quick or res["accuracy"] > 0.6), "LiST learns: accuracy %.3f" % res["accuracy"])
    check(0 <= res["teacher_accuracy"] <= 1, "reports the phase-0 teacher's accuracy %.3f" % res["teacher_accuracy"])
    s = res["sessions"]
    check(len(s) == 2 and all(0 <= x["kept"] <= 1 and 0 <= x["accuracy"] <= 1 for x in s),
          "one report per session with the kept share: %s" % s)
    for phase in ("LiST teacher", "LiST session 1/2", "warm-up", "re-weighted", "fine-tune", "kept"):
        check(phase in r.stderr, "progress shows '%s'" % phase)
    p = subprocess.run([predict_exe, "--model", use_lite, "--adapter", out, "--input", paths["test"], "--output",
                        os.path.join(scratch, "pred.jsonl")],
                       capture_output=True, text=True, timeout=600)
    check(p.returncode == 0 and json.loads(p.stdout.strip().splitlines()[-1])["accuracy"] == res["accuracy"],
          "peft-predict reproduces the saved LiST student's accuracy (%s)" % p.stderr.strip()[-200:])

r = subprocess.run(args[:9], capture_output=True, text=True, timeout=60)
check(r.returncode == 2 and "needs --unlabeled" in r.stderr, "list without --unlabeled is a usage error: " + r.stderr.strip()[:80])
r = subprocess.run(args + ["--lr", "1e-3"], capture_output=True, text=True, timeout=60)
check(r.returncode == 2 and "--teacher-lr" in r.stderr, "list with --lr is a usage error")
sys.exit(1 if failures else 0)
