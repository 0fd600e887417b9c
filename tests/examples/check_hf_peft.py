#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Hugging Face PEFT LoRA, (IA)3 and prompt-tuning folders through the example programs, both ways, on the small
BERT sequence classifier of tests/reference/torch_hf_peft.py.

usage: check_hf_peft.py PEFT_TRAIN PEFT_PREDICT HF_REFERENCE_DIR SCRATCH PEFT_SERVE

In: peft-predict on a folder PeftModelForSequenceClassification saves (LoRA + the classifier in
modules_to_save), with neither --head nor --labels, prints the class probabilities PyTorch
computed for each sentence, within 1e-5, and names classes by the model's id2label.
Init: peft-train --init-adapter starts from such a folder (its config sets the hyper-parameters).
Out: peft-train --method lora --save writes a folder that passes Hugging Face PEFT's loading
rules (hf_peft_rules.py) for the targets peft can express as a list and for those only a
regular expression expresses, and peft-predict reproduces the accuracy peft-train printed.
(IA)3: peft-predict takes Hugging Face's sequence-classifier folder with its classifier, and
peft-train --method ia3 (--init-adapter from that folder too) writes folders that pass the same
rules and that peft-predict reproduces.
Prompt tuning: peft-predict on Hugging Face's sequence-classifier folder prints PyTorch's
probabilities (its virtual tokens in front, the pooler reading the first of them), and
peft-train --method prompt-tuning (random and text initialisation) writes folders that pass the
rules and that peft-predict reproduces.
Prefix tuning: the same for Hugging Face's folder (the text's positions after the prefix) and
for peft-train --method prefix --prefix-position-offset 1.
Serve: peft-serve takes the four sequence-classifier folders (LoRA, (IA)3, prompt and prefix
tuning) as four tasks of one mixed stream, with no --head or --labels, and answers each as
PyTorch (LoRA, prompt, prefix) or peft-predict ((IA)3) does.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_peft_rules  # noqa: E402

train_exe, predict_exe, ref, scratch, serve_exe = sys.argv[1:6]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
model = os.path.join(ref, "model")
text = os.path.join(ref, "text.jsonl")
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=600)


cfg = json.load(open(os.path.join(model, "config.json")))
layers, hidden, inter = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]
pred = os.path.join(scratch, "pred.jsonl")


def predicted_as_torch(folder, probs, what):
    """peft-predict on Hugging Face's folder prints PyTorch's probabilities (file probs)."""
    r = run(predict_exe, "--model", model, "--adapter", os.path.join(ref, folder), "--input", text,
            "--output", pred, "--threads", "1")
    check(r.returncode == 0, "peft-predict takes Hugging Face's %s folder %s" % (
        what, r.stderr.strip()[-300:] if r.returncode else ""))
    if r.returncode == 0:
        got = [json.loads(l)["scores"] for l in open(pred)]
        want = json.load(open(os.path.join(ref, probs)))
        check(len(got) == len(want) and all(set(g) == set(w) for g, w in zip(got, want)),
              "%s: one row per sentence, classes named by id2label: %s" % (what, sorted(got[0]) if got else None))
        worst = max((abs(g[k] - w[k]) for g, w in zip(got, want) for k in w), default=1.0)
        check(worst <= 1e-5, "%s: probabilities equal PyTorch's within 1e-5 (worst %.2g)" % (what, worst))


def trained_folder(method, name, extra, shown):
    """peft-train --method METHOD --save a folder: it passes Hugging Face PEFT's loading rules and
    peft-predict reproduces the accuracy peft-train printed. Returns its config, or None."""
    out = os.path.join(scratch, name)
    r = run(train_exe, "--model", model, "--method", method, "--train", text, "--test", text, "--epochs", "2",
            "--seed", "1", "--threads", "1", "--save", out, *extra)
    check(r.returncode == 0, "peft-train --method %s %s runs %s" % (
        method, " ".join(extra), r.stderr.strip()[-300:] if r.returncode else ""))
    if r.returncode != 0:
        return None
    acc = json.loads(r.stdout.strip().splitlines()[-1])["accuracy"]
    saved = json.load(open(os.path.join(out, "adapter_config.json")))
    found = hf_peft_rules.problems(out, layers, hidden, inter, "bert.")
    check(not found, "%s: the folder passes Hugging Face PEFT's loading rules (%s %r): %s" % (
        name, shown, saved.get(shown), found))
    p = run(predict_exe, "--model", model, "--adapter", out, "--input", text, "--output", pred, "--threads", "1")
    check(p.returncode == 0 and json.loads(p.stdout.strip().splitlines()[-1])["accuracy"] == acc,
          "%s: peft-predict reproduces the accuracy peft-train printed %s" % (
              name, p.stderr.strip()[-200:] if p.returncode else ""))
    return saved


# In: a Hugging Face sequence classifier's LoRA folder, with neither --head nor --labels.
predicted_as_torch("lora_seqcls", "text_probs.json", "LoRA")

# Out: peft-train's LoRA folders against Hugging Face PEFT's loading rules.
for targets, regex in (("query,value,ffn_in", False), ("key,ffn_out", True)):
    saved = trained_folder("lora", "lora_" + targets.replace(",", "_"),
                           ["--target-modules", targets, "--layers", "1", "--lora-r", "2"], "target_modules")
    if saved:
        check(isinstance(saved["target_modules"], str) == regex,
              "target_modules %r: %s" % (saved["target_modules"], "a regular expression" if regex else "a list"))
        check(saved["base_model_name_or_path"] == model and "peft_version" not in saved and "peft_cpp" in saved,
              "base_model_name_or_path is the model folder; peft's own fields are under peft_cpp")

# (IA)3: Hugging Face's folder in (its classifier too), peft-train's folders out.
r = run(predict_exe, "--model", model, "--adapter", os.path.join(ref, "ia3_seqcls"), "--input", text,
        "--output", pred, "--threads", "1")
check(r.returncode == 0 and sorted(json.loads(open(pred).readline())["scores"]) == sorted(cfg["id2label"].values()),
      "peft-predict takes Hugging Face's (IA)3 sequence-classifier folder, classes from id2label %s" % (
          r.stderr.strip()[-300:] if r.returncode else ""))


for name, extra in (("ia3", []), ("ia3_attn", ["--target-modules", "key,value,attn_out,ffn_out", "--layers", "1"]),
                    ("ia3_init", ["--init-adapter", os.path.join(ref, "ia3_seqcls")])):
    saved = trained_folder("ia3", name, extra, "feedforward_modules")
    if saved and name == "ia3_init":
        check(saved["feedforward_modules"] == ["attention.output.dense", "output.dense"],
              "--init-adapter keeps Hugging Face's feed-forward choice: %r" % saved["feedforward_modules"])



# Prompt tuning: Hugging Face's folder in, peft-train's folders out.
predicted_as_torch("prompt_seqcls", "prompt_text_probs.json", "prompt-tuning")
for name, extra in (("prompt", ["--virtual-tokens", "3"]),
                    ("prompt_text", ["--prompt-init", "TEXT", "--prompt-init-text", "good bad"]),
                    ("prompt_init", ["--init-adapter", os.path.join(ref, "prompt_seqcls")])):
    saved = trained_folder("prompt-tuning", name, extra, "prompt_tuning_init")
    if saved and name == "prompt_init":
        check(saved["num_virtual_tokens"] == 4, "--init-adapter keeps the folder's 4 virtual tokens: %r" %
              saved["num_virtual_tokens"])

# Prefix tuning: Hugging Face's folder in, peft-train's folder (positions after the prefix) out.
predicted_as_torch("prefix_seqcls", "prefix_text_probs.json", "prefix-tuning")
trained_folder("prefix", "prefix", ["--prefix-tokens", "3", "--prefix-position-offset", "1"], "num_virtual_tokens")

# Serve: the four Hugging Face sequence-classifier folders as tasks of one mixed stream.
sentences = [json.loads(l)["text"] for l in open(text)]
r = run(predict_exe, "--model", model, "--adapter", os.path.join(ref, "ia3_seqcls"), "--input", text,
        "--output", pred, "--threads", "1")
ia3_probs = [json.loads(l)["scores"] for l in open(pred)] if r.returncode == 0 else []
want = {"lora": json.load(open(os.path.join(ref, "text_probs.json"))), "ia3": ia3_probs,
        "prompt": json.load(open(os.path.join(ref, "prompt_text_probs.json"))),
        "prefix": json.load(open(os.path.join(ref, "prefix_text_probs.json")))}
stream = [(task, i) for i in range(len(sentences)) for task in ("lora", "ia3", "prompt", "prefix")]
r = subprocess.run([serve_exe, "--model", model, "--task", "lora=" + os.path.join(ref, "lora_seqcls"),
                    "--task", "ia3=" + os.path.join(ref, "ia3_seqcls"),
                    "--task", "prompt=" + os.path.join(ref, "prompt_seqcls"),
                    "--task", "prefix=" + os.path.join(ref, "prefix_seqcls"), "--batch", "7", "--threads", "1"],
                   input="".join(json.dumps({"task": t, "text": sentences[i]}) + "\n" for t, i in stream),
                   capture_output=True, text=True, timeout=600)
check(r.returncode == 0, "peft-serve takes the four Hugging Face folders with no --head or --labels %s" % (
    r.stderr.strip()[-300:] if r.returncode else ""))
if r.returncode == 0:
    answers = [json.loads(l) for l in r.stdout.strip().splitlines()]
    worst = max((abs(a["scores"][k] - want[t][i][k]) for a, (t, i) in zip(answers, stream) for k in want[t][i]),
                default=1.0)
    check(len(answers) == len(stream) and all(a["task"] == t for a, (t, _) in zip(answers, stream)) and worst <= 1e-5,
          "peft-serve answers %d mixed requests as PyTorch / peft-predict (worst %.2g)" % (len(stream), worst))

# --init-adapter: training starts from the Hugging Face folder, whose config sets the rank,
# targets and patterns; at a learning rate of 1e-12 the saved LoRA is the folder's.
def tensors(path):
    return {k: values for k, (_, values) in hf_peft_rules.read_f32_tensors(path).items()}


init = os.path.join(scratch, "init")
r = run(train_exe, "--model", model, "--method", "lora", "--init-adapter", os.path.join(ref, "lora_seqcls"),
        "--train", text, "--test", text, "--epochs", "1", "--lr", "1e-12", "--head-lr", "1e-12", "--seed", "1",
        "--threads", "1", "--save", init)
check(r.returncode == 0, "peft-train --init-adapter takes the Hugging Face folder %s" % (
    r.stderr.strip()[-300:] if r.returncode else ""))
if r.returncode == 0:
    c = json.load(open(os.path.join(init, "adapter_config.json")))
    check(c["r"] == 4 and c["use_rslora"] is True and
          c["rank_pattern"].get("encoder.layer.1.attention.self.query") == 2,
          "the folder's r, rsLoRA and rank pattern carry over: %s" % {k: c[k] for k in ("r", "use_rslora", "rank_pattern")})
    ours = tensors(os.path.join(init, "adapter_model.safetensors"))
    theirs = {k: v for k, v in tensors(os.path.join(ref, "lora_seqcls", "adapter_model.safetensors")).items()
              if ".lora_" in k}
    worst = max((abs(x - y) for k in theirs for x, y in zip(ours.get(k, ()), theirs[k])), default=1.0)
    check(set(ours) == set(theirs) and worst <= 1e-8,
          "the saved LoRA is the folder's (same keys, largest change %.2g at lr 1e-12)" % worst)
r = run(train_exe, "--model", model, "--method", "lora", "--init-adapter", os.path.join(ref, "lora_seqcls"),
        "--lora-r", "2", "--train", text, "--test", text)
check(r.returncode == 2 and "--init-adapter" in r.stderr and "--lora-r" in r.stderr,
      "--init-adapter with a hyper-parameter flag is a usage error naming both: " + r.stderr.strip()[-160:])

# --prompt-init TEXT starts the prompt at the word embeddings of the text's ids, special tokens
# included ([CLS] good bad [SEP], repeated to 20 rows), as Hugging Face PEFT does: at lr 1e-12
# the saved prompt is that start.
out = os.path.join(scratch, "prompt_text_start")
r = run(train_exe, "--model", model, "--method", "prompt-tuning", "--prompt-init", "TEXT", "--prompt-init-text",
        "good bad", "--train", text, "--test", text, "--epochs", "1", "--lr", "1e-12", "--head-lr", "1e-12",
        "--seed", "1", "--threads", "1", "--save", out)
check(r.returncode == 0, "peft-train --prompt-init TEXT at lr 1e-12 runs %s" % (r.stderr.strip()[-300:] if r.returncode else ""))
if r.returncode == 0:
    vocab = [l.strip() for l in open(os.path.join(model, "vocab.txt"))]
    ids = [vocab.index(w) for w in ("[CLS]", "good", "bad", "[SEP]")] * 5
    words = tensors(os.path.join(model, "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    prompt = tensors(os.path.join(out, "adapter_model.safetensors"))["prompt_embeddings"]
    want = [x for i in ids for x in words[i * hidden:(i + 1) * hidden]]
    worst = max((abs(a - b) for a, b in zip(prompt, want)), default=1.0)
    check(len(prompt) == len(want) and worst <= 1e-6,
          "the TEXT prompt starts at the embeddings of [CLS] good bad [SEP] repeated (largest change %.2g)" % worst)

# A refused field reaches the user as one line naming it.
bad = os.path.join(scratch, "dora")
shutil.copytree(os.path.join(ref, "lora_seqcls"), bad)
c = json.load(open(os.path.join(bad, "adapter_config.json")))
c["use_dora"] = True
json.dump(c, open(os.path.join(bad, "adapter_config.json"), "w"))
r = run(predict_exe, "--model", model, "--adapter", bad, "--input", text, "--threads", "1")
check(r.returncode == 1 and "use_dora" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
      "a DoRA folder is refused in one line naming use_dora: " + r.stderr.strip()[-200:])

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
