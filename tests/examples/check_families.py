#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The encoder families through the command lines, against PyTorch.

usage: check_families.py PEFT_TRAIN PEFT_PREDICT PEFT_SERVE PEFT_ENCODE FAMILIES_DIR SCRATCH

FAMILIES_DIR holds the folders tests/reference/torch_families.py writes (random weights under
each family's Hugging Face key names, with PyTorch's outputs).

1. peft-encode --ids gives PyTorch's hidden states for the families whose inputs have one token
   type (XLM-R, DistilBERT, MPNet; the sharded BERT's have two, and test_parity_torch covers
   it), and --pool sentence on the sentence-transformers folder gives its mean-pooled,
   normalised embedding.
2. Every family trains from text with peft-train (a WordPiece vocab.txt is added to a copy of
   the folder: the reference folders have no tokenizer), peft-predict reproduces the accuracy
   peft-train printed, and peft-serve answers for the saved task. Sentence pairs run on
   DistilBERT and MPNet, which have no token types; prompt tuning runs on ALBERT and ELECTRA,
   whose word embeddings are narrower than their layers; a prompt template with label words
   runs on DistilBERT's and BERT's (the sharded folder's) masked-LM heads.
3. The LoRA folders peft-train saves carry the family's own Hugging Face module paths:
   DistilBERT's `transformer.layer.<i>.attention.q_lin` named `q_lin` in target_modules, and on
   ALBERT one LoRA per module of the shared layer (albert_layer_groups.0.albert_layers.0), not
   one per layer.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

train_exe, predict_exe, serve_exe, encode_exe, families, scratch = sys.argv[1:7]
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def run(*args, stdin=None):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, input=stdin)


def last_json(text):
    lines = text.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}


shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)

# 1. Hidden states and sentence embeddings against PyTorch.
for name in ["xlm-roberta", "distilbert", "mpnet"]:
    d = os.path.join(families, name)
    out = os.path.join(scratch, name + "_hidden.npy")
    r = run(encode_exe, "--model", d, "--ids", os.path.join(d, "inputs_ids.npy"), "--mask",
            os.path.join(d, "inputs_mask.npy"), "--output", out)
    if r.returncode != 0:
        check(False, "peft-encode --ids on %s: %s" % (name, r.stderr.strip()))
        continue
    mask = np.load(os.path.join(d, "inputs_mask.npy")).astype(bool)
    diff = np.abs(np.load(out) - np.load(os.path.join(d, "hidden.npy")))[mask].max()
    check(diff < 2e-5, "peft-encode --ids on %s equals PyTorch's hidden states (max diff %.2e)" % (name, diff))
d = os.path.join(families, "sentence")
out = os.path.join(scratch, "sentence.npy")
r = run(encode_exe, "--model", d, "--ids", os.path.join(d, "inputs_ids.npy"), "--mask", os.path.join(d, "inputs_mask.npy"),
        "--output", out)
if r.returncode == 0:
    diff = np.abs(np.load(out) - np.load(os.path.join(d, "sentence_mean.npy"))).max()
    check(diff < 2e-5, "peft-encode on a sentence-transformers folder gives its normalised mean embedding (max diff %.2e)" % diff)
else:
    check(False, "peft-encode on a sentence-transformers folder: " + r.stderr.strip())

# 2. Training from text on every family.
words = ["good", "great", "nice", "fine", "happy", "bad", "awful", "rude", "slow", "sad", "the", "food", "was",
         "and", "it", "terrible", "service", "staff", "."]


def with_vocab(name):
    """A copy of the family folder with a WordPiece vocab.txt that fits its embeddings."""
    src = os.path.join(families, name)
    dst = os.path.join(scratch, name)
    shutil.copytree(src, dst)
    cfg = json.load(open(os.path.join(src, "config.json")))
    V, pad = cfg["vocab_size"], cfg.get("pad_token_id", 0)
    vocab = [None] * V
    vocab[pad] = "[PAD]"
    free = [i for i in range(V) if vocab[i] is None]
    for token in ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words:
        vocab[free.pop(0)] = token
    for k, i in enumerate(free):
        vocab[i] = "w%d" % k
    with open(os.path.join(dst, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    return dst


good, bad = words[:5], words[5:10]
rows = [("the food was %s and %s" % (good[k % 5], good[(k + 2) % 5]) if k % 2 == 0 else
         "the service was %s and %s" % (bad[k % 5], bad[(k + 3) % 5]), "pos" if k % 2 == 0 else "neg")
        for k in range(40)]
paths = {}
for split, part in [("train", rows[:24]), ("test", rows[24:])]:
    for pairs in (False, True):
        key = split + ("_pairs" if pairs else "")
        paths[key] = os.path.join(scratch, key + ".jsonl")
        with open(paths[key], "w") as f:
            for text, label in part:
                e = {"text": text, "label": label}
                if pairs:
                    e["text_b"] = "it was " + ("nice" if label == "pos" else "sad")
                f.write(json.dumps(e) + "\n")

def safetensors_names(path):
    """The sorted tensor names of a safetensors file (its JSON header)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return sorted(k for k in header if k != "__metadata__")


def lora_keys(modules):
    return sorted("base_model.model.%s.lora_%s.weight" % (m, ab) for m in modules for ab in "AB")


# peft-train's LoRA: query and value of every layer (3 DistilBERT layers; ALBERT's 3 layers
# run one shared layer).
LORA_PATHS = {
    "distilbert": (["q_lin", "v_lin"], lora_keys("distilbert.transformer.layer.%d.attention.%s_lin" % (i, w)
                                                 for i in range(3) for w in "qv")),
    "albert": (["query", "value"], lora_keys("albert.encoder.albert_layer_groups.0.albert_layers.0.attention." + w
                                             for w in ("query", "value"))),
}

runs = [
    ("distilbert", "lora", "", []),
    ("distilbert", "houlsby", "_pairs", []),
    ("distilbert", "lora", "", ["--template", "*cls**sent_0*_it_was*mask*.*sep+*", "--verbalizer", "neg=terrible,pos=great"]),
    ("electra", "prompt-tuning", "", []),
    ("electra", "bitfit", "", []),
    ("albert", "prompt-tuning", "", []),
    ("albert", "lora", "", []),
    ("mpnet", "ia3", "_pairs", []),
    ("xlm-roberta", "prefix", "", []),
    ("sharded", "houlsby", "", ["--template", "*cls**sent_0*_it_was*mask*.*sep+*", "--verbalizer", "neg=terrible,pos=great"]),
]
folders = {}
for fam, method, data, extra in runs:
    if fam not in folders:
        folders[fam] = with_vocab(fam)
    model = folders[fam]
    what = "%s %s%s%s" % (fam, method, " (pairs)" if data else "", " (prompt head)" if extra else "")
    ckpt = os.path.join(scratch, "ckpt_%s_%s%s%d" % (fam, method, data, len(extra)))
    r = run(train_exe, "--model", model, "--method", method, "--train", paths["train" + data], "--test",
            paths["test" + data], "--epochs", "2", "--seed", "4", "--save", ckpt, *extra)
    res = last_json(r.stdout)
    if r.returncode != 0 or "accuracy" not in res:
        check(False, "peft-train %s: %s" % (what, r.stderr.strip()[-300:]))
        continue
    p = run(predict_exe, "--model", model, "--adapter", ckpt, "--input", paths["test" + data], "--output",
            os.path.join(scratch, "pred.jsonl"))
    acc = last_json(p.stdout).get("accuracy")
    check(p.returncode == 0 and acc is not None and abs(acc - res["accuracy"]) < 1e-12,
          "%s: trains (accuracy %s) and peft-predict reproduces it (%s)" % (what, res["accuracy"], acc))
    request = {"task": "t", "text": rows[30][0]}
    if data:
        request["text_b"] = "it was nice"
    s = run(serve_exe, "--model", model, "--task", "t=" + ckpt, stdin=json.dumps(request) + "\n")
    answer = last_json(s.stdout)
    check(s.returncode == 0 and answer.get("label") in ("pos", "neg"),
          "%s: peft-serve answers (%s)" % (what, s.stdout.strip()[-120:] or s.stderr.strip()[-200:]))
    if method == "lora" and not extra and fam in LORA_PATHS:
        with open(os.path.join(ckpt, "adapter_config.json")) as f:
            targets = json.load(f).get("target_modules")
        keys = safetensors_names(os.path.join(ckpt, "adapter_model.safetensors"))
        want_targets, want_keys = LORA_PATHS[fam]
        check(targets == want_targets and keys == want_keys,
              "%s: Hugging Face module paths (target_modules %s, %d tensors: %s ...)" %
              (what, targets, len(keys), keys[0] if keys else None))

sys.exit(1 if failures else 0)
