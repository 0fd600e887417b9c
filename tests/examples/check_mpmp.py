#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""MPMP end to end on the real USE-lite encoder and real sentences, with a tiny schedule:
peft-mpmp-pretrain builds a prompt library from two upstream tasks (Yelp sentiment and the
chatbot intents); peft-train --method mpmp adapts it to Amazon sentiment (unseen) by
router-only tuning (exactly layers x modules parameters, library untouched), two-stage tuning
(saved, and reproduced by peft-predict) and black-box tuning; prompts from scratch; the
results-table program; and bad input.

usage: check_mpmp.py PEFT_MPMP_PRETRAIN PEFT_TRAIN PEFT_PREDICT PEFT_MPMP_TABLE USE_LITE_DIST ASSETS_DIR SCRATCH

With PEFT_EXAMPLES_QUICK=1 (set by `scripts/test --sanitize`) pre-training is shorter and the test
file smaller; every check still runs.
"""
import hashlib
import json
import os
import random
import subprocess
import sys

pretrain_exe, train_exe, predict_exe, table_exe, use_lite, assets, scratch = sys.argv[1:8]
quick = os.environ.get("PEFT_EXAMPLES_QUICK") == "1"
os.makedirs(scratch, exist_ok=True)
failures = []


def check(ok, what):
    print("%s  %s" % ("ok  " if ok else "FAIL", what))
    if not ok:
        failures.append(what)


def sentiment(domain):
    rows = [e for e in json.load(open(os.path.join(assets, "sentiment", "test", "fixtures", domain + ".json")))
            if e.get("class") is not None and e["text"].strip()]
    random.Random(5).shuffle(rows)
    return [{"text": e["text"], "label": str(e["class"])} for e in rows]


def write(name, rows):
    path = os.path.join(scratch, name + ".jsonl")
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def run(args, timeout=900):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def last_json(r):
    return json.loads(r.stdout.strip().splitlines()[-1])


def digest(folder):
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        h.update(name.encode())
        h.update(open(os.path.join(folder, name), "rb").read())
    return h.hexdigest()


chat = json.load(open(os.path.join(assets, "wink-naive-bayes-text-classifier", "chatbot-example",
                                   "chatbot-training-data.json")))["sentences"]
yelp = write("yelp", sentiment("yelp")[:160])
intent = write("intent", [{"text": s["text"], "label": s["intent"]} for s in chat][:120])
amazon = sentiment("amazon")
amazon_train, amazon_test = write("amazon_train", amazon[:300]), write("amazon_test", amazon[300:340 if quick else 420])

lib = os.path.join(scratch, "library")
steps = 8 if quick else 24
pre = [pretrain_exe, "--model", use_lite, "--task", "yelp=" + yelp, "--task", "intent=" + intent, "--steps", str(steps),
       "--batch", "16", "--prompt-tokens", "4", "--modules", "4", "--intrinsic-dim", "16", "--max-length", "32",
       "--prompt-lr", "1e-3", "--router-lr", "5e-3", "--eval-every", "4" if quick else "12", "--save", lib]
r = run(pre)
check(r.returncode == 0, "peft-mpmp-pretrain runs (%s)" % r.stderr.strip()[-300:])
if r.returncode == 0:
    res = last_json(r)
    check([t["name"] for t in res["tasks"]] == ["yelp", "intent"] and sum(t["steps"] for t in res["tasks"]) == steps,
          "both upstream tasks drawn, %d steps in all: %s" % (steps, res["tasks"]))
    check(all(0 <= t["dev_accuracy"] <= 1 for t in res["tasks"]), "dev accuracy per task")
    check(res["router_parameters_per_task"] == 2 * 4, "router: 2 layers x 4 modules per task")
    for f in ("library.json", "heads.safetensors", "adapter_config.json", "adapter_model.safetensors"):
        check(os.path.exists(os.path.join(lib, f)), "library has " + f)
    info = json.load(open(os.path.join(lib, "library.json")))
    check([t["labels"] for t in info["tasks"]] == [["0", "1"], ["DepartureTime", "FindConnection"]],
          "library records each task's labels: %s" % [t["labels"] for t in info["tasks"]])

before = digest(lib) if os.path.isdir(lib) else ""
common = [train_exe, "--model", use_lite, "--method", "mpmp", "--train", amazon_train, "--test", amazon_test,
          "--shots", "8", "--seed", "2"]
r = run(common + ["--mpmp-library", lib, "--stage", "router", "--router-epochs", "6", "--router-lr", "5e-2",
                  "--eval-every", "2"])
check(r.returncode == 0, "router-only tuning runs (%s)" % r.stderr.strip()[-300:])
if r.returncode == 0:
    res = last_json(r)
    st = res["stages"]
    check(len(st) == 1 and st[0]["stage"] == "router" and st[0]["trainable_params"] == 8 and res["trainable_params"] == 8,
          "router-only tuning exposes exactly 2 x 4 router logits: %s" % st)
    check(res["library_head"] == "yelp", "the head comes from the upstream task with the same labels (yelp)")
    check(st[0]["best_dev_accuracy"] >= st[0]["start_dev_accuracy"], "the kept router is at least as good on dev as the start")
    check(0 <= res["accuracy"] <= 1, "test accuracy %.3f" % res["accuracy"])
check(digest(lib) == before, "the library files are unchanged by downstream tuning")

task_dir = os.path.join(scratch, "task")
r = run(common + ["--mpmp-library", lib, "--stage", "both", "--router-epochs", "4", "--prompt-epochs", "4",
                  "--router-lr", "5e-2", "--prompt-lr", "1e-3", "--eval-every", "2", "--save", task_dir])
check(r.returncode == 0, "two-stage tuning runs (%s)" % r.stderr.strip()[-300:])
if r.returncode == 0:
    res = last_json(r)
    st = res["stages"]
    check([s["stage"] for s in st] == ["router", "prompts"], "two explicit stages: router, then prompts")
    if len(st) == 2:
        check(st[1]["start_dev_accuracy"] == st[0]["best_dev_accuracy"], "stage 2 starts from stage 1's kept router")
        check(st[1]["trainable_params"] == 4 * 4 * (256 + 512) + 2 * 512 + 2,
              "stage 2 tunes the materialised prompts (M x n x H per layer) and the head: %d" % st[1]["trainable_params"])
    p = run([predict_exe, "--model", use_lite, "--adapter", task_dir, "--input", amazon_test, "--output",
             os.path.join(scratch, "pred.jsonl")], timeout=600)
    check(p.returncode == 0 and last_json(p)["accuracy"] == res["accuracy"],
          "peft-predict reproduces the saved MPMP task's accuracy (%s)" % p.stderr.strip()[-200:])

r = run(common + ["--mpmp-library", lib, "--blackbox", "1", "--router-budget", "6", "--prompt-budget", "40"])
check(r.returncode == 0, "black-box tuning runs (%s)" % r.stderr.strip()[-300:])
if r.returncode == 0:
    res = last_json(r)
    st = res["stages"]
    check(len(st) == 2 and st[0]["steps"] == 6 and st[1]["steps"] == 40 // (20 * 2) * 20 * 2 and
          res["trainable_params"] == 8 + 2 * 16,
          "black-box: 6 BO evaluations of 8 router logits, one CMA-ES round over both layers' z (16 each): %s" % st)

r = run(common + ["--stage", "prompts", "--prompt-epochs", "4", "--prompt-lr", "1e-3", "--prompt-tokens", "4",
                  "--modules", "2", "--intrinsic-dim", "8"])
check(r.returncode == 0, "prompt tuning from scratch runs (%s)" % r.stderr.strip()[-300:])
if r.returncode == 0:
    res = last_json(r)
    check(res["library_head"] == "" and res["trainable_params"] == 2 * 4 * (256 + 512) + 2 * 512 + 2,
          "from scratch: materialised prompts + a fresh head, no library head")

if os.path.isdir(lib):
    r = run([table_exe, "--library", lib, "--seeds", "1", "--shots", "4", "--router-epochs", "2", "--prompt-epochs", "2",
             "--router-budget", "3", "--prompt-budget", "40", "--test-size", "60", "--out", os.path.join(scratch, "table.md")], timeout=900)
    check(r.returncode == 0 and "| router-only | 8 |" in r.stdout and "| black-box |" in r.stdout,
          "peft-mpmp-table runs end to end (%s)" % (r.stdout + r.stderr).strip()[-300:])

# The reference's form: one span head shared by every task, each task's labels written after
# its text as options. The target's labels ("bad"/"good") are options no upstream task has.
span_lib = os.path.join(scratch, "span_library")
r = run(pre[:pre.index("--save")] + ["--head", "span", "--options", "yelp:0=negative,1=positive",
                                      "--save", span_lib])
check(r.returncode == 0, "peft-mpmp-pretrain --head span runs (%s)" % r.stderr.strip()[-300:])
if r.returncode == 0:
    res = last_json(r)
    check(res["head"] == "span" and all(0 <= t["dev_accuracy"] <= 1 for t in res["tasks"]),
          "a span library, with a dev accuracy per task over its options: %s" % res["tasks"])
    info = json.load(open(os.path.join(span_lib, "library.json")))
    check(info["head"] == "span" and info["tasks"][0]["options"] == ["negative", "positive"] and
          info["tasks"][1]["options"] == ["DepartureTime", "FindConnection"],
          "library.json records the head form and each task's options: %s" % info["tasks"])
span_task = os.path.join(scratch, "span_task")
r = run(common + ["--mpmp-library", span_lib, "--options", "0=bad,1=good", "--stage", "both", "--router-epochs", "4",
                  "--prompt-epochs", "4", "--router-lr", "5e-2", "--prompt-lr", "1e-3", "--eval-every", "2",
                  "--save", span_task])
check(r.returncode == 0, "two-stage tuning from the span head runs (%s)" % r.stderr.strip()[-300:])
if r.returncode == 0:
    res = last_json(r)
    check(res["library_head"] == "span" and [s["stage"] for s in res["stages"]] == ["router", "prompts"],
          "the target starts from the library's span head: %s" % res["library_head"])
    saved = json.load(open(os.path.join(span_task, "task.json")))
    check(saved.get("choices") == ["bad", "good"] and saved["pooling"] == "tokens",
          "the saved task records its options: %s" % saved.get("choices"))
    out = os.path.join(scratch, "span_pred.jsonl")
    p = run([predict_exe, "--model", use_lite, "--adapter", span_task, "--input", amazon_test, "--output", out],
            timeout=600)
    check(p.returncode == 0 and last_json(p)["accuracy"] == res["accuracy"],
          "peft-predict reproduces the span task's accuracy (%s)" % p.stderr.strip()[-200:])
    if p.returncode == 0:
        rows = [json.loads(l) for l in open(out)]
        check(all(r["label"] in ("0", "1") and abs(sum(r["scores"].values()) - 1) < 1e-6 for r in rows),
              "each prediction is a class with the options' probabilities")
r = run(common + ["--mpmp-library", span_lib, "--blackbox", "1", "--router-budget", "4", "--prompt-budget", "40"])
check(r.returncode == 0 and last_json(r)["library_head"] == "span",
      "black-box tuning from the span head runs (%s)" % r.stderr.strip()[-300:])
r = run(common + ["--mpmp-library", lib, "--options", "0=bad,1=good", "--stage", "router", "--router-epochs", "1"],
        timeout=120)
check(r.returncode == 1 and "span head" in r.stderr,
      "label options with a head-per-task library are refused: " + r.stderr.strip()[-160:])
if os.path.isdir(span_lib):
    r = run([table_exe, "--library", span_lib, "--seeds", "1", "--shots", "4", "--router-epochs", "2",
             "--prompt-epochs", "2", "--router-budget", "3", "--prompt-budget", "40", "--test-size", "60",
             "--target-options", "0=bad,1=good", "--out", os.path.join(scratch, "span_table.md")], timeout=900)
    check(r.returncode == 0 and "| router-only | 8 |" in r.stdout and "head: span" in r.stdout,
          "peft-mpmp-table reads a span library (%s)" % (r.stdout + r.stderr).strip()[-300:])

# Bad input: usage errors (exit 2) and a broken library (exit 1, naming the file and field).
r = run(common + ["--blackbox", "1"], timeout=60)
check(r.returncode == 2 and "--mpmp-library" in r.stderr, "--blackbox without a library is a usage error")
r = run(common + ["--lr", "1e-3"], timeout=60)
check(r.returncode == 2 and "--router-lr" in r.stderr, "mpmp with --lr is a usage error")
r = run(common + ["--stage", "sideways"], timeout=60)
check(r.returncode == 2 and "--stage: expects one of router, prompts, both, got 'sideways'" in r.stderr,
      "an unknown --stage is a usage error naming the accepted values")
r = run([train_exe, "--model", use_lite, "--method", "lora", "--train", amazon_train, "--test", amazon_test,
         "--stage", "router"], timeout=60)
check(r.returncode == 2 and "--method mpmp" in r.stderr, "MPMP options with another method are a usage error")
r = run([pretrain_exe, "--model", use_lite, "--save", lib + "2"], timeout=60)
check(r.returncode == 2 and "--task" in r.stderr, "peft-mpmp-pretrain without a task is a usage error")
if os.path.isdir(lib):
    broken = os.path.join(scratch, "broken")
    os.makedirs(broken, exist_ok=True)
    for f in os.listdir(lib):
        open(os.path.join(broken, f), "wb").write(open(os.path.join(lib, f), "rb").read())
    info = json.load(open(os.path.join(broken, "library.json")))
    del info["tasks"][0]["labels"]
    json.dump(info, open(os.path.join(broken, "library.json"), "w"))
    r = run(common + ["--mpmp-library", broken, "--stage", "router", "--router-epochs", "1"], timeout=120)
    check(r.returncode == 1 and "library.json" in r.stderr and "labels" in r.stderr,
          "a library.json without labels is rejected naming the file and field: " + r.stderr.strip()[-160:])
sys.exit(1 if failures else 0)
