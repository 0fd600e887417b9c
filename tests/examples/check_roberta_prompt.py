#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Prompt-based fine-tuning on RoBERTa and XLM-R folders from text, end to end, against PyTorch.

usage: check_roberta_prompt.py PEFT_TRAIN PEFT_PREDICT REFERENCE_DIR SCRATCH

REFERENCE_DIR holds bpe_roberta_tokenizer.json (reference_tokenizers_bpe) and spm_unigram.model
with spm_xlmr_tokenizer.json (reference_sentencepiece).

The folder: a small random RoBERTa masked LM (tests/reference/torch_bert.py's weights and key
names) over GPT-2's real byte-level vocabulary in RoBERTa's layout (the tokenizer.json that
reference_tokenizers_bpe writes), so that peft reads it exactly as it reads roberta-base.

1. A LoRA task trained with a vanishing learning rate is the untrained model. For every test
   sentence, the label probabilities peft-predict writes must equal those computed here with
   PyTorch from the same weights: the softmax over the masked-LM logits of " terrible" and
   " great" at the mask of LM-BFF's template "<s> sentence ĠIt Ġwas <mask> . </s>". The ids are
   built here from the vocabulary by hand (every word is one token), not by peft.
2. Houlsby adapters and LiST's self-training with that prompt head train from text, save, and
   peft-predict reproduces the accuracy peft-train printed.
3. A classification-head task on the same folder trains from text (sentence pairs included).
4. The same as 1 on an XLM-R folder whose tokenizer.json is SentencePiece-Unigram: the ids are
   built here with SentencePiece itself (python3-sentencepiece on the .model, fairseq's +1
   offset), each template part encoded on its own as LM-BFF does; then LiST on that folder.
"""
import json
import os
import shutil
import subprocess
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import torch_bert  # noqa: E402

train_exe, predict_exe, ref_dir, scratch = sys.argv[1:5]
tokenizer_json = os.path.join(ref_dir, "bpe_roberta_tokenizer.json")
quick = os.environ.get("PEFT_EXAMPLES_QUICK") == "1"
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900)


def last_json(r):
    lines = r.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}


shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
model = os.path.join(scratch, "roberta")
vocab = json.load(open(tokenizer_json))["model"]["vocab"]
cfg = torch_bert.base_config("roberta")
cfg.update({"vocab_size": len(vocab), "max_position_embeddings": 66, "hidden_size": 32, "num_attention_heads": 2,
            "intermediate_size": 64})
torch.set_num_threads(1)
weights = torch_bert.random_weights(cfg, seed=2024)
torch_bert.write_model(model, cfg, weights, "F32", seed_inputs=3, extras=False)
shutil.copy(tokenizer_json, os.path.join(model, "tokenizer.json"))
w = torch_bert.round_weights(weights, "F32")

# Sentences of words that are single tokens, with and without GPT-2's "Ġ" space marker.
good = ["good", "great", "nice", "fine", "fresh", "friendly", "tasty", "clean", "fast", "happy"]
bad = ["bad", "awful", "rude", "dirty", "slow", "cold", "stale", "sad", "poor", "wrong"]
things = ["food", "service", "staff", "room", "place", "pizza", "coffee", "music"]
G = "\u0120"


def sentence(k, positive):
    words = good if positive else bad
    return "the %s was %s and %s" % (things[k % len(things)], words[k % len(words)], words[(k * 3 + 1) % len(words)])


rows = [(sentence(k, k % 2 == 0), "pos" if k % 2 == 0 else "neg") for k in range(80)]
paths = {}
for name, part in [("train", rows[:48]), ("test", rows[48:])]:
    paths[name] = os.path.join(scratch, name + ".jsonl")
    with open(paths[name], "w") as f:
        for text, label in part:
            f.write(json.dumps({"text": text, "label": label}) + "\n")
template = "*cls**sent_0*_It_was*mask*.*sep+*"
verbalizer = "neg=terrible,pos=great"


def prompt_ids(text):
    words = text.split(" ")
    ids = [vocab["<s>"], vocab[words[0]]] + [vocab[G + x] for x in words[1:]]
    ids += [vocab[G + "It"], vocab[G + "was"], vocab["<mask>"], vocab["."], vocab["</s>"]]
    return ids


# 1. The untrained prompt head against PyTorch.
ckpt0 = os.path.join(scratch, "lora0")
r = run(train_exe, "--model", model, "--method", "lora", "--template", template, "--verbalizer", verbalizer,
        "--train", paths["train"], "--test", paths["test"], "--epochs", "1", "--lr", "1e-12", "--seed", "1",
        "--save", ckpt0)
check(r.returncode == 0 and "accuracy" in last_json(r), "peft-train --template on a RoBERTa folder: " +
      (r.stderr.strip()[-300:] if r.returncode else str(last_json(r).get("accuracy"))))
pred = os.path.join(scratch, "pred0.jsonl")
r = run(predict_exe, "--model", model, "--adapter", ckpt0, "--input", paths["test"], "--output", pred)
check(r.returncode == 0, "peft-predict on the prompt task: " + r.stderr.strip()[-300:])
if r.returncode == 0:
    got = [json.loads(line) for line in open(pred)]
    worst = 0.0
    for (text, _), p in zip(rows[48:], got):
        ids = torch.tensor([prompt_ids(text)])
        mask = torch.ones_like(ids)
        positions = torch.cumsum(mask, dim=1) * mask + cfg["pad_token_id"]
        _, logits, _ = torch_bert.forward(cfg, w, ids, mask, torch.zeros_like(ids), positions)
        at = logits[0, int((ids[0] == vocab["<mask>"]).nonzero()[0, 0])]
        probs = torch.softmax(torch.stack([at[vocab[G + "terrible"]], at[vocab[G + "great"]]]), 0)
        worst = max(worst, abs(float(probs[0]) - p["scores"]["neg"]), abs(float(probs[1]) - p["scores"]["pos"]))
    check(len(got) == 32 and worst < 1e-4,
          "label probabilities equal PyTorch's masked-LM softmax over ' terrible' / ' great' (max diff %.2e)" % worst)

# 2. Training with the prompt head: adapters, then LiST, each reproduced by peft-predict.
runs = {
    "houlsby": ["--method", "houlsby", "--epochs", "2" if quick else "6"],
    "list": ["--method", "list", "--unlabeled", paths["test"], "--teacher-epochs", "2", "--teacher-lr", "1e-3",
             "--sessions", "1", "--student-steps", "4", "--finetune-epochs", "1", "--student-lr", "1e-3",
             "--batch", "8"],
}
for name, extra in runs.items():
    out = os.path.join(scratch, "ckpt_" + name)
    r = run(train_exe, "--model", model, "--template", template, "--verbalizer", verbalizer, "--train", paths["train"],
            "--test", paths["test"], "--seed", "2", "--save", out, *extra)
    res = last_json(r)
    check(r.returncode == 0 and "accuracy" in res,
          "%s with the prompt head trains: %s" % (name, r.stderr.strip()[-300:] if r.returncode else res.get("accuracy")))
    if r.returncode != 0:
        continue
    p = run(predict_exe, "--model", model, "--adapter", out, "--input", paths["test"],
            "--output", os.path.join(scratch, name + ".jsonl"))
    acc = last_json(p).get("accuracy")
    check(p.returncode == 0 and acc is not None and abs(acc - res["accuracy"]) < 1e-12,
          "%s: peft-predict reproduces accuracy %s (got %s)" % (name, res["accuracy"], acc))

# 3. A classification head from text on the same folder, single sentences and pairs.
pairs = os.path.join(scratch, "pairs.jsonl")
with open(pairs, "w") as f:
    for text, label in rows:
        f.write(json.dumps({"text": text, "text_b": "it was " + ("nice" if label == "pos" else "sad"),
                            "label": label}) + "\n")
for name, data in [("head", paths["train"]), ("pairs", pairs)]:
    r = run(train_exe, "--model", model, "--method", "lora", "--train", data, "--test", paths["test"] if name == "head"
            else pairs, "--epochs", "1", "--seed", "3")
    check(r.returncode == 0 and "accuracy" in last_json(r),
          "a classification head on the RoBERTa folder (%s): %s" % (name, r.stderr.strip()[-300:] if r.returncode
                                                                    else last_json(r).get("accuracy")))

# 4. XLM-R (SentencePiece-Unigram tokenizer.json), the untrained prompt head against PyTorch.
import sentencepiece  # noqa: E402

sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(ref_dir, "spm_unigram.model"))
xlmr = os.path.join(scratch, "xlmr")
xcfg = dict(cfg)
xcfg["vocab_size"] = sp.get_piece_size() + 2  # <s> <pad> </s> <unk>, the pieces from 3 on, <mask>
xweights = torch_bert.random_weights(xcfg, seed=77)
torch_bert.write_model(xlmr, xcfg, xweights, "F32", seed_inputs=5, extras=False)  # roberta.* keys, as XLM-R's
with open(os.path.join(xlmr, "config.json")) as f:
    xc = json.load(f)
xc["model_type"] = "xlm-roberta"
xc["architectures"] = ["XLMRobertaForMaskedLM"]
with open(os.path.join(xlmr, "config.json"), "w") as f:
    json.dump(xc, f)
shutil.copy(os.path.join(ref_dir, "spm_xlmr_tokenizer.json"), os.path.join(xlmr, "tokenizer.json"))
xw = torch_bert.round_weights(xweights, "F32")


def spm(text):
    return [k + 1 for k in sp.encode(text)]


mask_id, words = xcfg["vocab_size"] - 1, [spm(" terrible"), spm(" great")]
assert all(len(w) == 1 for w in words)
ckpt = os.path.join(scratch, "xlmr_lora0")
r = run(train_exe, "--model", xlmr, "--method", "lora", "--template", template, "--verbalizer", verbalizer,
        "--train", paths["train"], "--test", paths["test"], "--epochs", "1", "--lr", "1e-12", "--seed", "1",
        "--save", ckpt)
check(r.returncode == 0 and "accuracy" in last_json(r), "peft-train --template on an XLM-R folder: " +
      (r.stderr.strip()[-300:] if r.returncode else str(last_json(r).get("accuracy"))))
pred = os.path.join(scratch, "xlmr_pred.jsonl")
r = run(predict_exe, "--model", xlmr, "--adapter", ckpt, "--input", paths["test"], "--output", pred)
check(r.returncode == 0, "peft-predict on the XLM-R prompt task: " + r.stderr.strip()[-300:])
if r.returncode == 0:
    got = [json.loads(line) for line in open(pred)]
    worst = 0.0
    for (text, _), p in zip(rows[48:], got):
        ids = torch.tensor([[0] + spm(text) + spm(" It was") + [mask_id] + spm(".") + [2]])
        mask = torch.ones_like(ids)
        positions = torch.cumsum(mask, dim=1) * mask + xcfg["pad_token_id"]
        _, logits, _ = torch_bert.forward(xcfg, xw, ids, mask, torch.zeros_like(ids), positions)
        at = logits[0, int((ids[0] == mask_id).nonzero()[0, 0])]
        probs = torch.softmax(torch.stack([at[words[0][0]], at[words[1][0]]]), 0)
        worst = max(worst, abs(float(probs[0]) - p["scores"]["neg"]), abs(float(probs[1]) - p["scores"]["pos"]))
    check(len(got) == 32 and worst < 1e-4,
          "XLM-R label probabilities equal PyTorch's on SentencePiece's own ids (max diff %.2e)" % worst)

# LiST's self-training with the prompt head on the XLM-R folder, reproduced by peft-predict.
out = os.path.join(scratch, "xlmr_list")
r = run(train_exe, "--model", xlmr, "--template", template, "--verbalizer", verbalizer, "--train", paths["train"],
        "--test", paths["test"], "--seed", "2", "--save", out, *runs["list"])
res = last_json(r)
p = run(predict_exe, "--model", xlmr, "--adapter", out, "--input", paths["test"], "--output",
        os.path.join(scratch, "xlmr_list.jsonl")) if r.returncode == 0 else r
check(r.returncode == 0 and p.returncode == 0 and last_json(p).get("accuracy") == res.get("accuracy"),
      "XLM-R: LiST with the prompt head trains (%s) and peft-predict reproduces it: %s" %
      (res.get("accuracy"), r.stderr.strip()[-200:] if r.returncode else last_json(p).get("accuracy")))

# A label word of two tokens is one clear error.
r = run(train_exe, "--model", model, "--method", "lora", "--template", template, "--verbalizer",
        "neg=terrible,pos=unaffable", "--train", paths["train"], "--test", paths["test"], "--epochs", "1")
check(r.returncode != 0 and "single vocabulary token" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
      "a multi-token label word is refused: " + r.stderr.strip())

sys.exit(1 if failures else 0)
