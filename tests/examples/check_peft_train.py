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
import shutil
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
    if method == "head":
        continue
    # The adapter alone, as another program would hand it over: a bare adapter folder (no
    # task.json), the head in a file elsewhere, labels and pooling given on the command line.
    bare = os.path.join(scratch, "bare_" + method)
    shutil.rmtree(bare, ignore_errors=True)
    os.makedirs(bare)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(os.path.join(out, name), bare)
    head = os.path.join(scratch, "head_" + method + ".safetensors")
    shutil.copy(os.path.join(out, "head.safetensors"), head)
    settings = json.load(open(os.path.join(out, "task.json")))
    class_names = json.load(open(os.path.join(out, "labels.json")))["labels"]
    # Labels as a list in class order for some methods, as the labels.json file for the others.
    labels_arg = ",".join(class_names) if method in ("lora", "side") else os.path.join(out, "labels.json")
    bare_preds = os.path.join(scratch, "pred_bare_" + method + ".jsonl")
    q = run(predict_exe, "--model", use_lite, "--adapter", bare, "--head", head, "--labels", labels_arg,
            "--pooling", settings["pooling"], "--max-length", str(settings["max_length"]), "--input", test_path,
            "--output", bare_preds)
    check(q.returncode == 0 and open(bare_preds).read() == open(preds).read(),
          "%s: peft-predict on the bare adapter folder gives the saved task's predictions, byte for byte (%s)"
          % (method, q.stderr.strip()[-200:]))
    q = run(predict_exe, "--model", use_lite, "--adapter", bare, "--input", test_path)
    check(q.returncode == 2 and "needs --head FILE and --labels" in q.stderr,
          "%s: a bare adapter folder without --head/--labels is a usage error (%s)" % (method, q.stderr.strip()[:120]))



def safetensors_shapes(path):
    """Tensor name -> shape, read from a safetensors file's own header (not through peft)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


# Method hyper-parameters on the command line, as an HF PEFT user writes
# LoraConfig(r=4, lora_alpha=16, target_modules=["query", "key", "value"], layers_to_transform=[0, 1]).
common = ["--model", use_lite, "--train", train_path, "--test", test_path, "--shots", "4", "--seed", "3",
          "--epochs", "1"]
head_run = run(train_exe, "--method", "head", *common)
head_params = json.loads(head_run.stdout.strip().splitlines()[-1])["trainable_params"] if head_run.returncode == 0 else -1
out = os.path.join(scratch, "ckpt_lora_flags")
r = run(train_exe, "--method", "lora", *common, "--lora-r", "4", "--lora-alpha", "16", "--lora-dropout", "0",
        "--lora-rslora", "1", "--target-modules", "query,key,value", "--layers", "0,1", "--weight-decay", "0.01", "--warmup", "0.1",
        "--save", out)
check(r.returncode == 0, "peft-train lora with --lora-r/--lora-alpha/--target-modules/--layers runs (%s)" % r.stderr.strip()[-200:])
if r.returncode == 0:
    res = json.loads(r.stdout.strip().splitlines()[-1])
    cfg = json.load(open(os.path.join(out, "adapter_config.json")))
    check(cfg["r"] == 4 and cfg["lora_alpha"] == 16 and cfg["lora_dropout"] == 0 and cfg["use_rslora"] is True and
          sorted(cfg["target_modules"]) == ["key", "query", "value"] and
          # --layers 0,1 is every layer of USE-lite's two: Hugging Face PEFT's null.
          cfg["layers_to_transform"] is None and cfg["peft_cpp"]["num_layers"] == 2,
          "the saved adapter_config.json holds the flags' values: %s" % {k: cfg.get(k) for k in
                                                                       ("r", "lora_alpha", "use_rslora", "target_modules",
                                                                        "layers_to_transform")})
    shapes = safetensors_shapes(os.path.join(out, "adapter_model.safetensors"))
    # 2 layers x 3 targets x (A [4, in] and B [out, 4]).
    rank_ok = len(shapes) == 12 and all((s[0] == 4) if "lora_A" in k else (s[1] == 4) for k, s in shapes.items())
    lora_params = sum(s[0] * s[1] for s in shapes.values())
    check(rank_ok and res["trainable_params"] == lora_params + head_params,
          "trainable parameters = the file's LoRA tensors (%d, rank 4, 12 tensors: %s) + the head's (%d): %d"
          % (lora_params, rank_ok, head_params, res["trainable_params"]))
out = os.path.join(scratch, "ckpt_houlsby_flags")
r = run(train_exe, "--method", "houlsby", *common[:-1], "3", "--adapter-size", "8", "--dev", test_path,
        "--eval-every", "2", "--patience", "1", "--pooling", "cls", "--max-length", "64", "--save", out)
check(r.returncode == 0, "peft-train houlsby with --adapter-size, --dev/--eval-every/--patience, --pooling, --max-length (%s)"
      % r.stderr.strip()[-200:])
if r.returncode == 0:
    cfg = json.load(open(os.path.join(out, "adapter_config.json")))
    settings = json.load(open(os.path.join(out, "task.json")))
    check(cfg["bottleneck_size"] == 8 and settings["pooling"] == "cls" and settings["max_length"] == 64,
          "adapter size, pooling and maximum length are saved as given")
# The few-shot recipes: SetFit's pairs then the head (--objective contrastive) and LP-FT
# (--probe-epochs); each trains, saves, and peft-predict reproduces its accuracy.
for name, extra in [("contrastive", ["--objective", "contrastive", "--pairs", "2"]),
                    ("contrastive-ft", ["--objective", "contrastive-ft", "--pairs", "2", "--pair-lr", "3e-3"]),
                    ("lpft", ["--probe-epochs", "2"])]:
    out_r = os.path.join(scratch, "ckpt_recipe_" + name)
    r = run(train_exe, "--method", "pfeiffer", *common, *extra, "--save", out_r)
    res = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else {}
    check(r.returncode == 0 and "accuracy" in res, "peft-train pfeiffer %s (%s)" % (" ".join(extra), r.stderr.strip()[-200:]))
    if r.returncode == 0:
        p = run(predict_exe, "--model", use_lite, "--adapter", out_r, "--input", test_path, "--output",
                os.path.join(scratch, "pred_recipe_" + name + ".jsonl"))
        acc = json.loads(p.stdout.strip().splitlines()[-1])["accuracy"] if p.returncode == 0 else None
        check(acc == res["accuracy"], "%s: peft-predict reproduces peft-train's accuracy (%s vs %s)" % (name, acc, res["accuracy"]))
for method, extra, expect in [("head", ["--objective", "contrastive"], "have a policy, not head"),
                              ("lora", ["--pairs", "5"], "go with --objective contrastive"),
                              ("lora", ["--objective", "contrastive", "--probe-epochs", "2"], "no --probe-epochs or --steps"),
                              ("lora", ["--objective", "contrastive", "--options", "names"], "a classification head (no --template, --options)"),
                              ("lora", ["--objective", "simclr"], "--objective")]:
    r = run(train_exe, "--method", method, *common, *extra)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and lines and expect in lines[0] and lines[0].startswith("peft-train: "),
          "%s %s: usage error '%s' (got %d: %s)" % (method, " ".join(extra), expect, r.returncode, lines[:1]))

# Each bad value: exit status 2 and one line naming the flag and what it accepts.
for method, extra, expect in [("lora", ["--lora-r", "0"], "--lora-r: expects an integer >= 1, got '0'"),
                              ("lora", ["--lora-alpha", "x"], "--lora-alpha: expects a number in [1e-12, 1e+06], got 'x'"),
                              ("lora", ["--warmup", "2"], "--warmup: expects a number in [0, 1], got '2'"),
                              ("lora", ["--pooling", "max"], "--pooling: expects one of cls, mean, pooler, sentence, tokens, got 'max'"),
                              ("lora", ["--layers", "0,a"], "--layers expects a comma-separated list of integers >= 0, got '0,a'"),
                              ("lora", ["--target-modules", "querry"], "--target-modules"),
                              ("houlsby", ["--lora-r", "4"], "no option 'r'"),
                              ("lora", ["--patience", "2"], "--patience needs --dev"),
                              ("lora", ["--option", "init_sparsity=0.3"], "no option 'init_sparsity'")]:
    r = run(train_exe, "--method", method, *common, *extra)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and lines and expect in lines[0] and lines[0].startswith("peft-train: "),
          "%s %s: usage error '%s' (got %d: %s)" % (method, " ".join(extra), expect, r.returncode, lines[:1]))
r = run(train_exe, "--help")
check(r.returncode == 0 and all(f in r.stdout for f in ("--lora-r", "--lora-alpha", "--target-modules", "--layers",
                                                        "--adapter-size", "--prefix-tokens", "--pooling",
                                                        "--weight-decay", "--warmup", "--max-length", "--patience",
                                                        "--option", "--config", "--teacher-lr", "--router-lr")),
      "peft-train --help lists the method, training, LiST and MPMP options")
check("=5e-06" in r.stdout and "=0.6" in r.stdout, "peft-train --help shows defaults (LiST's teacher lr, warm-up)")
# --config FILE: the options from a file, the command line adding to them.
config = os.path.join(scratch, "train.ini")
with open(config, "w") as f:
    f.write("model = %s\nmethod = lora\ntrain = %s\ntest = %s\nshots = 4\nseed = 3\nepochs = 1\nlora-r = 2\n"
            % (use_lite, train_path, test_path))
out = os.path.join(scratch, "ckpt_config")
r = run(train_exe, "--config", config, "--save", out)
check(r.returncode == 0 and json.load(open(os.path.join(out, "adapter_config.json")))["r"] == 2,
      "peft-train --config FILE reads the options from the file (%s)" % r.stderr.strip()[-200:])

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
