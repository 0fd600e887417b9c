#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""AdapterHub folders through the example programs, both ways, on the small BERT of
tests/reference/torch_adapterhub.py.

usage: check_adapterhub.py PEFT_TRAIN PEFT_PREDICT PEFT_SERVE ADAPTERHUB_REFERENCE_DIR SCRATCH

In: peft-predict on the Houlsby folder with AdapterHub's default two-layer flex head and on the
Pfeiffer folder with a static transformers head, with neither --head nor --labels, prints the class
probabilities PyTorch computed from AdapterHub's math, within 1e-5, classes named by the head's
label2id; a folder holding only pytorch_adapter.bin is refused in one line that names it.
Out: peft-train --method pfeiffer --adapter-ln-before 1 and --method houlsby, each with
--export-adapterhub, write folders that pass AdapterHub's loading rules (adapterhub_rules.py);
PyTorch running AdapterHub's math on the exported weights and head gives the probabilities
peft-predict prints for that folder, and peft-predict on it reproduces the accuracy peft-train
printed. Init: peft-train --init-adapter starts from AdapterHub's Houlsby folder. Serve:
peft-serve takes the two AdapterHub folders and an exported one as tasks of one mixed stream and
answers each as PyTorch does.
"""
import json
import os
import shutil
import subprocess
import sys

import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(os.path.dirname(here), "reference"))
import adapterhub_rules  # noqa: E402
import hf_peft_rules  # noqa: E402
import torch_adapterhub  # noqa: E402
import torch_hf_peft  # noqa: E402

train_exe, predict_exe, serve_exe, ref, scratch = sys.argv[1:6]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
model = os.path.join(ref, "model")
text = os.path.join(ref, "text.jsonl")
pred = os.path.join(scratch, "pred.jsonl")
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=600)


def tensors(path):
    """Every F32 tensor of a safetensors file, as float64 torch tensors."""
    return {k: torch.tensor(values, dtype=torch.float64).reshape(shape)
            for k, (shape, values) in hf_peft_rules.read_f32_tensors(path).items()}


model_cfg = json.load(open(os.path.join(model, "config.json")))
weights = {k[len("bert."):]: v for k, v in tensors(os.path.join(model, "model.safetensors")).items()
           if k.startswith("bert.")}
vocab = [l.strip() for l in open(os.path.join(model, "vocab.txt"))]
rows = [json.loads(l) for l in open(text)]


def torch_probs(folder):
    """The class probabilities AdapterHub's math gives each sentence of text.jsonl with the
    adapter and head of AdapterHub folder `folder` (torch_adapterhub.py's encoder hook)."""
    doc = json.load(open(os.path.join(folder, "adapter_config.json")))
    cfg, name = doc["config"], doc["name"]
    t = {k[len("bert."):] if k.startswith("bert.") else k: v
         for k, v in tensors(os.path.join(folder, "adapter.safetensors")).items()}
    sites = {}
    for l in range(model_cfg["num_hidden_layers"]):
        for _, site in torch_adapterhub.SITES:
            p = "encoder.layer.%d.%s.adapters.%s." % (l, site, name)
            if p + "adapter_up.weight" in t:
                sites[(l, site)] = (t[p + "adapter_down.0.weight"], t[p + "adapter_down.0.bias"],
                                    t[p + "adapter_up.weight"], t[p + "adapter_up.bias"])
    hook = torch_adapterhub.bottleneck(cfg, sites)
    head_doc = json.load(open(os.path.join(folder, "head_config.json")))
    head = tensors(os.path.join(folder, "model_head.safetensors"))
    hc = head_doc["config"]
    labels = [None] * len(hc["label2id"] if hc else head_doc["label2id"])
    for k, i in (hc["label2id"] if hc else head_doc["label2id"]).items():
        labels[i] = k

    def logits(ids):
        ones = torch.ones_like(ids)
        h = torch_hf_peft.encoder(model_cfg, weights, ids, ones, torch.zeros_like(ids), {}, "", sublayer=hook)
        x = h[:, 0]
        if hc is None or hc["use_pooler"]:
            x = torch.tanh(F.linear(x, weights["pooler.dense.weight"], weights["pooler.dense.bias"]))
        if hc is None:
            return F.linear(x, head["classifier.weight"], head["classifier.bias"])
        p = "heads.%s." % name
        if hc["layers"] == 2:
            x = torch.tanh(F.linear(x, head[p + "1.weight"], head[p + "1.bias"]))
            return F.linear(x, head[p + "4.weight"], head[p + "4.bias"])
        return F.linear(x, head[p + "1.weight"], head[p + "1.bias"])

    out = []
    for r in rows:
        ids = torch.tensor([[2] + [vocab.index(w) for w in r["text"].split()] + [3]])
        p = torch.softmax(logits(ids), -1)[0]
        out.append({labels[k]: float(p[k]) for k in range(len(labels))})
    return out


def predicted(folder, want, what):
    """peft-predict on `folder` with neither --head nor --labels prints probabilities `want`."""
    r = run(predict_exe, "--model", model, "--adapter", folder, "--input", text, "--output", pred, "--threads", "1")
    check(r.returncode == 0, "peft-predict takes %s %s" % (what, r.stderr.strip()[-300:] if r.returncode else ""))
    if r.returncode != 0:
        return None
    got = [json.loads(l)["scores"] for l in open(pred)]
    check(len(got) == len(want) and all(set(g) == set(w) for g, w in zip(got, want)),
          "%s: one row per sentence, classes named by the head's label2id: %s" % (what, sorted(got[0]) if got else None))
    worst = max((abs(g[k] - w[k]) for g, w in zip(got, want) for k in w), default=1.0)
    check(worst <= 1e-5, "%s: probabilities equal PyTorch's within 1e-5 (worst %.2g)" % (what, worst))
    return json.loads(r.stdout.strip().splitlines()[-1])


# In: AdapterHub's folders with their heads.
flex_probs = json.load(open(os.path.join(ref, "houlsby_flex", "text_probs.json")))
static_probs = json.load(open(os.path.join(ref, "pfeiffer_static", "text_probs.json")))
predicted(os.path.join(ref, "houlsby_flex"), flex_probs, "AdapterHub's Houlsby folder with a two-layer flex head")
predicted(os.path.join(ref, "pfeiffer_static"), static_probs, "AdapterHub's Pfeiffer folder with a static head")
r = run(predict_exe, "--model", model, "--adapter", os.path.join(ref, "houlsby_bin"), "--input", text,
        "--head", os.path.join(ref, "pfeiffer_static", "model_head.safetensors"), "--labels",
        "negative,neutral,positive")
check(r.returncode != 0 and "pytorch_adapter.bin" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
      "a pickle-only folder is refused in one line naming pytorch_adapter.bin: " + r.stderr.strip()[-200:])

# Out: trained adapters exported as AdapterHub folders.
exported = {}
for method, extra in (("pfeiffer", ["--adapter-ln-before", "1", "--reduction-factor", "8"]),
                      ("houlsby", ["--adapter-size", "8", "--pooling", "pooler"])):
    out, task = os.path.join(scratch, method + "_hub"), os.path.join(scratch, method + "_task")
    r = run(train_exe, "--model", model, "--method", method, "--train", text, "--test", text, "--epochs", "2",
            "--seed", "1", "--threads", "1", "--save", task, "--export-adapterhub", out, *extra)
    check(r.returncode == 0, "peft-train --method %s %s --export-adapterhub runs %s" % (
        method, " ".join(extra), r.stderr.strip()[-300:] if r.returncode else ""))
    if r.returncode != 0:
        continue
    acc = json.loads(r.stdout.strip().splitlines()[-1])["accuracy"]
    found = adapterhub_rules.problems(out, os.path.join(model, "config.json"))
    check(not found, "%s: the exported folder passes AdapterHub's loading rules: %s" % (method, found))
    doc = json.load(open(os.path.join(out, "adapter_config.json")))
    check(doc["config"]["original_ln_before"] == (method == "pfeiffer") and doc["config"]["reduction_factor"] == 8.0,
          "%s: original_ln_before %r, reduction_factor %r" % (method, doc["config"]["original_ln_before"],
                                                            doc["config"]["reduction_factor"]))
    res = predicted(out, torch_probs(out), "the exported %s folder (PyTorch on its weights and head)" % method)
    check(res is not None and res["accuracy"] == acc,
          "%s: peft-predict on the exported folder reproduces the accuracy peft-train printed (%s vs %s)" % (
              method, res and res["accuracy"], acc))
    exported[method] = out

# Init: training starts from AdapterHub's Houlsby folder (its config sets the adapter's shape).
task = os.path.join(scratch, "init_task")
r = run(train_exe, "--model", model, "--method", "houlsby", "--init-adapter", os.path.join(ref, "houlsby_flex"),
        "--train", text, "--test", text, "--epochs", "1", "--seed", "1", "--threads", "1", "--save", task)
check(r.returncode == 0, "peft-train --init-adapter takes AdapterHub's Houlsby folder %s" % (
    r.stderr.strip()[-300:] if r.returncode else ""))
if r.returncode == 0:
    c = json.load(open(os.path.join(task, "adapter_config.json")))
    check(c.get("non_linearity") == "swish" and c.get("adapter_name") == "sentiment",
          "the folder's swish and name carry over: %s" % {k: c.get(k) for k in ("non_linearity", "adapter_name")})

# Serve: AdapterHub folders as tasks of one mixed stream.
tasks = {"flex": (os.path.join(ref, "houlsby_flex"), flex_probs),
         "static": (os.path.join(ref, "pfeiffer_static"), static_probs)}
if "pfeiffer" in exported:
    tasks["exported"] = (exported["pfeiffer"], torch_probs(exported["pfeiffer"]))
stream = [(name, i) for i in range(len(rows)) for name in tasks]
args = [serve_exe, "--model", model, "--batch", "5", "--threads", "1"]
for name, (folder, _) in tasks.items():
    args += ["--task", name + "=" + folder]
r = subprocess.run(args, input="".join(json.dumps({"task": t, "text": rows[i]["text"]}) + "\n" for t, i in stream),
                   capture_output=True, text=True, timeout=600)
check(r.returncode == 0, "peft-serve takes AdapterHub folders with no --head or --labels %s" % (
    r.stderr.strip()[-300:] if r.returncode else ""))
if r.returncode == 0:
    answers = [json.loads(l) for l in r.stdout.strip().splitlines()]
    worst = max((abs(a["scores"][k] - tasks[t][1][i][k]) for a, (t, i) in zip(answers, stream) for k in tasks[t][1][i]),
                default=1.0)
    check(len(answers) == len(stream) and worst <= 1e-5,
          "peft-serve answers %d mixed requests as PyTorch does (worst %.2g)" % (len(stream), worst))

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
