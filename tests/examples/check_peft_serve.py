#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""peft-serve: several saved tasks over one USE-lite encoder, a mixed JSONL request stream.

usage: check_peft_serve.py PEFT_TRAIN PEFT_PREDICT PEFT_SERVE USE_LITE_DIST ASSETS_DIR SCRATCH

Three tasks of different methods and label sets are trained with peft-train --save (Yelp with
LoRA, IMDb with prefix-tuning, Amazon with a head only). Their test rows, interleaved into one
JSONL stream, go through peft-serve in mixed batches; every answer must carry the label
peft-predict gives for that row of its own task and the same probabilities (1e-5: the rows of
a task are padded with other rows than in peft-predict's batches). Bad lines must stop
peft-serve with status 2 and name the line, after answering the lines before it.
With PEFT_EXAMPLES_QUICK=1 training is one epoch on 4 shots and each test file has 12 rows.
"""
import json
import os
import shutil
import subprocess
import sys

train_exe, predict_exe, serve_exe, use_lite, assets, scratch = sys.argv[1:7]
os.makedirs(scratch, exist_ok=True)
quick = os.environ.get("PEFT_EXAMPLES_QUICK") == "1"
n_test = 12 if quick else 30
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def run(*args, stdin=None):
    return subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=900)


fixtures = os.path.join(assets, "sentiment", "test", "fixtures")
# name, fixture, method, label names (different per task, so a mix-up shows)
specs = [("yelp", "yelp.json", "lora", ("neg", "pos")),
         ("imdb", "imdb.json", "prefix", ("bad", "good")),
         ("amazon", "amazon.json", "head", ("no", "yes"))]
tests, raw = {}, {}
for name, fixture, method, (neg, pos) in specs:
    rows = json.load(open(os.path.join(fixtures, fixture)))
    rows = [e for e in rows if e.get("class") is not None and e["text"].strip()]
    test = rows[-n_test:]
    raw[name] = test
    for part, data in (("train", rows[:-n_test]), ("test", test)):
        with open(os.path.join(scratch, "%s_%s.jsonl" % (name, part)), "w") as f:
            for e in data:
                f.write(json.dumps({"text": e["text"], "label": pos if e["class"] == 1 else neg}) + "\n")
    ckpt = os.path.join(scratch, "ckpt_" + name)
    r = run(train_exe, "--model", use_lite, "--method", method, "--train", os.path.join(scratch, name + "_train.jsonl"),
            "--test", os.path.join(scratch, name + "_test.jsonl"), "--shots", "4" if quick else "8", "--seed", "5",
            "--epochs", "1" if quick else "2", "--save", ckpt)
    check(r.returncode == 0, "peft-train %s (%s) saves a task (%s)" % (name, method, r.stderr.strip()[-200:]))
    preds = os.path.join(scratch, "pred_" + name + ".jsonl")
    p = run(predict_exe, "--model", use_lite, "--adapter", ckpt, "--input", os.path.join(scratch, name + "_test.jsonl"),
            "--output", preds)
    check(p.returncode == 0, "peft-predict %s runs (%s)" % (name, p.stderr.strip()))
    if failures:
        sys.exit(1)
    tests[name] = [json.loads(l) for l in open(preds)]

# Round robin over the tasks, every request tagged with its source row.
stream = []
for i in range(n_test):
    for name, _, _, _ in specs:
        stream.append({"task": name, "text": raw[name][i]["text"], "id": "%s/%d" % (name, i)})
stream_text = "".join(json.dumps(x) + "\n" for x in stream)
task_args = []
for name, _, _, _ in specs:
    task_args += ["--task", "%s=%s" % (name, os.path.join(scratch, "ckpt_" + name))]


def compare(out, what):
    lines = out.strip().splitlines()
    check(len(lines) == len(stream), "%s: one answer per request (%d of %d)" % (what, len(lines), len(stream)))
    worst, same_label, in_order = 0.0, True, True
    for req, line in zip(stream, lines):
        got = json.loads(line)
        name, i = req["id"].split("/")
        want = tests[name][int(i)]
        in_order = in_order and got.get("id") == req["id"] and got.get("task") == name
        same_label = same_label and got["label"] == want["label"]
        if set(got["scores"]) != set(want["scores"]):
            same_label = False
            continue
        worst = max([worst] + [abs(got["scores"][k] - want["scores"][k]) for k in want["scores"]])
    check(in_order, "%s: answers in request order, with task and id" % what)
    check(same_label, "%s: every label equals peft-predict's for its task" % what)
    check(worst <= 1e-5, "%s: probabilities equal peft-predict's (max diff %.2e)" % (what, worst))


for batch in ("7", "1", "1000"):
    r = run(serve_exe, "--model", use_lite, *task_args, "--batch", batch, "--threads", "1", stdin=stream_text)
    check(r.returncode == 0, "peft-serve --batch %s runs (%s)" % (batch, r.stderr.strip()[-300:]))
    if r.returncode != 0:
        continue
    compare(r.stdout, "--batch " + batch)
    stats = json.loads(r.stderr.strip().splitlines()[-1])
    keys = {"requests", "tasks", "peak_rss_mb", "rss_after_load_mb", "backbone_mb", "tasks_mb"}
    check(keys <= set(stats) and stats["requests"] == len(stream) and stats["tasks"] == 3 and
          stats["backbone_mb"] > stats["tasks_mb"] > 0, "--batch %s: memory report on stderr: %s" % (batch, stats))

# One checkpoint under two names: each name answers as the task.
r = run(serve_exe, "--model", use_lite, "--task", "a=" + os.path.join(scratch, "ckpt_yelp"), "--task",
        "b=" + os.path.join(scratch, "ckpt_yelp"),
        stdin=json.dumps({"task": "a", "text": "great"}) + "\n" + json.dumps({"task": "b", "text": "great"}) + "\n")
out = [json.loads(l) for l in r.stdout.strip().splitlines()] if r.returncode == 0 else []
check(len(out) == 2 and out[0]["scores"] == out[1]["scores"], "the same checkpoint under two names")

# Bad lines: the lines before are answered, then status 2 and the line number.
good = json.dumps({"task": "yelp", "text": "good food"}) + "\n" + "\n"  # a blank line is skipped
for bad, expect in [(json.dumps({"task": "nope", "text": "x"}), "unknown task 'nope'"),
                    ('{"task": "yelp", "text": ', "not valid JSON"),
                    (json.dumps({"task": "yelp"}), "\"text\""),
                    (json.dumps({"task": "yelp", "text": 3}), "\"text\""),
                    (json.dumps(["yelp", "x"]), "JSON object")]:
    r = run(serve_exe, "--model", use_lite, *task_args, "--batch", "8", stdin=good + bad + "\n" + good)
    err = r.stderr.strip().splitlines()
    check(r.returncode == 2 and err and "line 3" in err[-1] and expect in err[-1] and
          len(r.stdout.strip().splitlines()) == 1, "bad line rejected after answering the ones before: %s" % err[-1:])
r = run(serve_exe, "--model", use_lite, "--task", "a=x", "--task", "a=y", stdin="")
check(r.returncode == 2 and "twice" in r.stderr, "a task name given twice is a usage error")
r = run(serve_exe, "--model", use_lite, "--task", "a=" + os.path.join(scratch, "nothing"), stdin="")
check(r.returncode == 1 and "does not exist" in r.stderr, "a missing folder is rejected: " + r.stderr.strip())
empty = os.path.join(scratch, "empty")
os.makedirs(empty, exist_ok=True)
r = run(serve_exe, "--model", use_lite, "--task", "a=" + empty, stdin="")
check(r.returncode == 2 and "no task.json" in r.stderr and "--head" in r.stderr,
      "a folder without task.json and without --head/--labels is a usage error: " + r.stderr.strip()[:160])
r = run(serve_exe, "--model", use_lite, "--task", "a=" + empty, "--head", "a=h.safetensors", "--labels", "a=x,y", stdin="")
check(r.returncode == 1 and "adapter_config.json" in r.stderr, "an empty folder is not an adapter: " + r.stderr.strip()[:160])

# The LoRA task's adapter as a bare adapter folder (no task.json), its head and labels given on
# the command line: it answers exactly as the saved task does.
bare = os.path.join(scratch, "bare_yelp")
shutil.rmtree(bare, ignore_errors=True)
os.makedirs(bare)
for f in ("adapter_config.json", "adapter_model.safetensors"):
    shutil.copy(os.path.join(scratch, "ckpt_yelp", f), bare)
settings = json.load(open(os.path.join(scratch, "ckpt_yelp", "task.json")))
requests = "".join(json.dumps({"task": t, "text": raw["yelp"][i]["text"]}) + "\n" for i in range(5) for t in ("yelp", "bare"))
r = run(serve_exe, "--model", use_lite, "--task", "yelp=" + os.path.join(scratch, "ckpt_yelp"), "--task", "bare=" + bare,
        "--head", "bare=" + os.path.join(scratch, "ckpt_yelp", "head.safetensors"), "--labels", "bare=neg,pos",
        "--pooling", "bare=" + settings["pooling"], stdin=requests)
out = [json.loads(l) for l in r.stdout.strip().splitlines()] if r.returncode == 0 else []
check(len(out) == 10 and all(out[2 * i]["scores"] == out[2 * i + 1]["scores"] for i in range(5)),
      "a bare adapter folder with --head/--labels answers as its saved task (%s)" % r.stderr.strip()[-200:])
r = run(serve_exe, "--model", use_lite, "--task", "yelp=" + os.path.join(scratch, "ckpt_yelp"), "--head", "yelp=x", stdin="")
check(r.returncode == 2 and "holds a saved task" in r.stderr, "--head for a saved task is a usage error")

sys.exit(1 if failures else 0)
