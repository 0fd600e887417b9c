#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Every task kind through peft-train -> peft-predict, and its bad input.

usage: check_task_kinds.py PEFT_TRAIN PEFT_PREDICT PEFT_SERVE USE_LITE_DIST BERT_DIR SCRATCH

Small synthetic tasks, each learnt end to end on a real tokenizer:
- regression (the real USE-lite encoder): sentences whose target is the grade of their
  adjective; Pearson on the test rows must beat 0.8;
- multi-label (USE-lite): the topics a sentence mentions; micro-F1 must beat 0.8, with the
  threshold chosen on a dev file and saved with the task;
- token classification (USE-lite's unigram pieces): person and place names, BIO tags; entity
  F1 (seqeval's counting) must beat 0.8;
- extractive reading comprehension (a small BERT with a WordPiece vocabulary, whose 40
  positions force several windows per context): the one grade word of a long context; F1
  (in percent, as SQuAD's script reports it) must beat 80.
A model that learnt nothing scores far below each bar (Pearson ~0, micro-F1 of the majority
topic ~0.4, entity F1 0, span F1 ~5). For each, peft-predict on the saved task must
reproduce the metrics peft-train printed, exactly, and write its kind's predictions.
Malformed files of each kind must be refused with one line naming the file and line.
Every run takes one thread: ctest runs another test beside this one, and two OpenMP teams of
two threads on two cores wait for each other far longer than the small models compute.
"""
import json
import os
import random
import subprocess
import sys

train_exe, predict_exe, serve_exe, use_lite, bert_dir, scratch = sys.argv[1:7]
os.makedirs(scratch, exist_ok=True)
quick = os.environ.get("PEFT_EXAMPLES_QUICK") == "1"
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def run(*args, stdin=None):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900, input=stdin)


def last_json(text):
    lines = text.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}


def write_jsonl(name, rows):
    path = os.path.join(scratch, name)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


rng = random.Random(7)
subjects = ["the film", "this movie", "the story", "her acting", "the music", "that ending", "the plot"]
grades = {"awful": 0.0, "poor": 0.25, "fine": 0.5, "good": 0.75, "great": 1.0}


def regression_rows(n):
    rows = []
    for _ in range(n):
        adj = rng.choice(sorted(grades))
        rows.append({"text": "%s was %s" % (rng.choice(subjects), adj), "label": grades[adj]})
    return rows


topics = {"food": ["pizza", "bread", "apples", "soup"], "sport": ["football", "tennis", "running"],
          "weather": ["rain", "snow", "sunshine", "wind"]}


def multi_label_rows(n):
    rows = []
    for _ in range(n):
        chosen = [t for t in sorted(topics) if rng.random() < 0.45]
        words = [rng.choice(topics[t]) for t in chosen] or ["nothing much"]
        rng.shuffle(words)
        rows.append({"text": "we talked about " + " and ".join(words), "labels": chosen})
    return rows


people = [["Anna", "Smith"], ["Peter"], ["Maria", "Lopez"], ["John", "Brown"], ["Ellen"]]
places = [["Paris"], ["New", "York"], ["Berlin"], ["Tokyo"], ["San", "Diego"]]


def token_rows(n):
    rows = []
    for _ in range(n):
        p, c = rng.choice(people), rng.choice(places)
        verb = rng.choice(["visited", "left", "loves", "moved to"]).split()
        tokens = p + verb + c
        tags = ["B-PER"] + ["I-PER"] * (len(p) - 1) + ["O"] * len(verb) + ["B-LOC"] + ["I-LOC"] * (len(c) - 1)
        if rng.random() < 0.5:
            tokens = ["yesterday"] + tokens
            tags = ["O"] + tags
        rows.append({"tokens": tokens, "tags": tags})
    return rows


# The small BERT's vocabulary: a context of its words, with one grade word in it.
filler = ["film", "movie", "plot", "cast", "story", "acting", "music", "scene", "ending", "very", "quite", "not",
          "really", "long", "short", "start"]
answers = ["funny", "sad", "slow", "fast"]


def qa_rows(n):
    rows = []
    for i in range(n):
        words = [rng.choice(filler) for _ in range(rng.randint(30, 60))]
        at = rng.randrange(len(words))
        words[at] = rng.choice(answers)
        context = " ".join(words)
        start = len(" ".join(words[:at])) + (1 if at else 0)
        rows.append({"id": "q%d" % i, "question": "good or bad", "context": context,
                     "answers": {"text": [words[at]], "answer_start": [start]}})
    return rows


n_train, n_test = (48, 24) if quick else (160, 60)
tasks = [
    # kind, model, method, files, extra flags, metric, bar
    ("regression", use_lite, "head", regression_rows, ["--epochs", "8"], "pearson", 0.8),
    ("multi_label", use_lite, "head", multi_label_rows, ["--epochs", "10"], "micro_f1", 0.8),
    ("token_classification", use_lite, "lora", token_rows, ["--epochs", "6", "--lr", "3e-3"], "f1", 0.8),
    ("extractive_qa", bert_dir, "lora", qa_rows,
     ["--epochs", "6", "--max-length", "40", "--doc-stride", "16", "--max-query-length", "8"], "f1", 80),
]
for kind, model, method, make, extra, metric, bar in tasks:
    train_path = write_jsonl(kind + "_train.jsonl", make(n_train))
    dev_path = write_jsonl(kind + "_dev.jsonl", make(n_test // 2))
    test_path = write_jsonl(kind + "_test.jsonl", make(n_test))
    out = os.path.join(scratch, "task_" + kind)
    r = run(train_exe, "--model", model, "--method", method, "--kind", kind, "--train", train_path,
            "--dev", dev_path, "--test", test_path, "--seed", "2", "--batch", "8", "--save", out, "--threads", "1",
            *extra)
    res = last_json(r.stdout)
    metrics = res.get("metrics", {})
    check(r.returncode == 0 and res.get("kind") == kind,
          "%s: peft-train runs (rc %d) %s" % (kind, r.returncode, r.stderr.strip().splitlines()[-1:] if r.returncode else ""))
    check(metrics.get(metric, -1) > bar, "%s: %s %.3f > %.2f on the test rows (%s)" %
          (kind, metric, metrics.get(metric, -1), bar, json.dumps(metrics)))
    saved = json.load(open(os.path.join(out, "task.json"))) if os.path.exists(os.path.join(out, "task.json")) else {}
    check(saved.get("kind") == kind, "%s: task.json records the kind" % kind)
    if kind == "multi_label":
        check(abs(saved.get("threshold", -1) - res.get("threshold", -2)) < 1e-12 and 0 < res.get("threshold", 0) < 1,
              "multi_label: the threshold chosen on --dev (%s) is saved with the task" % res.get("threshold"))
    preds = os.path.join(scratch, kind + "_predictions.jsonl")
    p = run(predict_exe, "--model", model, "--adapter", out, "--input", test_path, "--output", preds, "--threads", "1")
    again = last_json(p.stdout)
    same = all(abs(again.get(k, 1e9) - v) < 1e-9 for k, v in metrics.items()) and bool(metrics)
    check(p.returncode == 0 and same, "%s: peft-predict reproduces %s (%s)" % (kind, json.dumps(again), p.stderr.strip()[-200:]))
    lines = [json.loads(l) for l in open(preds)] if os.path.exists(preds) else []
    check(len(lines) == n_test, "%s: one prediction per test row (%d)" % (kind, len(lines)))
    if lines:
        first = lines[0]
        key = {"regression": "values", "multi_label": "labels", "token_classification": "tags",
               "extractive_qa": "answer"}[kind]
        check(key in first, "%s: predictions carry %s: %s" % (kind, key, json.dumps(first)[:160]))
    if kind == "token_classification":
        test_rows = [json.loads(l) for l in open(test_path)]
        check(all(len(a["tags"]) == len(b["tokens"]) for a, b in zip(lines, test_rows)),
              "token_classification: a tag per word of every row")
        s = run(serve_exe, "--model", model, "--task", "ner=" + out, stdin='{"task": "ner", "text": "Anna left"}\n')
        check(s.returncode != 0 and "token_classification" in s.stderr and "peft-predict" in s.stderr,
              "peft-serve refuses a token task, naming its kind: " + s.stderr.strip()[-160:])
    if kind == "regression":
        s = run(serve_exe, "--model", model, "--task", "grade=" + out,
                stdin='{"task": "grade", "text": "the film was great"}\n{"task": "grade", "text": "the film was awful"}\n')
        served = [json.loads(l) for l in s.stdout.strip().splitlines() if l.startswith("{")]
        ok = len(served) == 2 and all("values" in x for x in served)
        check(s.returncode == 0 and ok and served[0]["values"]["target"] > served[1]["values"]["target"],
              "peft-serve answers a regression task with its value: " + s.stdout.strip()[:200])


def refused(kind, name, content, model, expect):
    path = os.path.join(scratch, name)
    with open(path, "w") as f:
        f.write(content)
    r = run(train_exe, "--model", model, "--method", "head", "--kind", kind, "--train", path, "--test", path)
    msg = r.stderr.strip()
    check(r.returncode != 0 and all(e in msg for e in expect) and len(msg.splitlines()) == 1,
          "%s: %s refused: %s" % (kind, name, msg))


refused("token_classification", "bad_tags.jsonl",
        '{"tokens": ["Anna", "left"], "tags": ["B-PER", "O"]}\n{"tokens": ["Anna", "left"], "tags": ["B-PER"]}\n',
        use_lite, ["bad_tags.jsonl", "line 2", "1", "2"])
refused("extractive_qa", "bad_span.jsonl",
        json.dumps({"id": "x1", "question": "q", "context": "good film",
                    "answers": {"text": ["plot"], "answer_start": [5]}}) + "\n",
        bert_dir, ["bad_span.jsonl", "x1", "plot"])
refused("regression", "bad_target.jsonl", '{"text": "good", "label": 0.5}\n{"text": "bad", "label": "low"}\n',
        use_lite, ["bad_target.jsonl", "line 2"])
r = run(train_exe, "--model", use_lite, "--method", "head", "--kind", "token_classification", "--pooling", "cls",
        "--train", "x", "--test", "x")
check(r.returncode == 2 and "--pooling" in r.stderr, "a per-token kind with a pooled head is a usage error: " + r.stderr.strip())

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all task-kind checks passed")
