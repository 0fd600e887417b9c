#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Hugging Face PEFT adapter folders, and what they compute, from PyTorch alone.

Usage: /usr/bin/python3 torch_hf_peft.py OUTPUT_DIR

Writes under OUTPUT_DIR:
  model/          a small random BERT sequence classifier as transformers saves it (config.json
                  with id2label, model.safetensors with bert.* keys, a WordPiece vocab.txt of whole
                  words) and the inputs (inputs_ids.npy, inputs_mask.npy, token_type_ids.npy: int64 [B, T])
  text.jsonl      sentences of vocabulary words with labels, and text_probs.json: the class
                  probabilities lora_seqcls gives each (the model's tokenizer, run by hand:
                  [CLS] words [SEP]); prompt_text_probs.json: the same for prompt_seqcls (the
                  prompt put in front of [CLS] words [SEP] as below); prefix_text_probs.json: the
                  same for prefix_seqcls
  lora_seqcls/    LoRA saved from a PeftModelForSequenceClassification: keys
                  base_model.model.bert.encoder..., a list target_modules, rsLoRA, rank_pattern and
                  alpha_pattern, and the classifier saved through modules_to_save
  lora_model/     LoRA saved from a PeftModel over BertModel: keys base_model.model.encoder...,
                  target_modules a regular expression
  lora_bare/      LoRA saved by transformers' own adapter support: keys without base_model.model.,
                  layers_to_transform an integer, "output.dense" (which also ends
                  attention.output.dense)
  ia3_seqcls/     (IA)^3 saved from a PeftModelForSequenceClassification with IA3Config's defaults for
                  BERT as it writes them resolved: target_modules ["key", "value", "output.dense"],
                  feedforward_modules ["output.dense"] (which, matched without a dot boundary, makes
                  attention.output.dense feedforward too); keys base_model.model.bert.encoder...ia3_l,
                  (out, 1) for key and value, (1, in) for both output.dense; the classifier saved
                  through modules_to_save
  ia3_layers/     (IA)^3 saved from a PeftModel over BertModel (task_type null, so auto_mapping is
                  filled): keys base_model.model.encoder...ia3_l, target_modules a regular expression
                  choosing attention.self.key, intermediate.dense and the FFN output.dense (not
                  attention.output.dense) of layers 0 and 1, feedforward_modules ["output.dense"]
  prompt_seqcls/  prompt tuning saved from a PeftModelForSequenceClassification (PromptTuningConfig,
                  prompt_tuning_init RANDOM, 4 virtual tokens (N_VIRTUAL), token_dim, num_layers and
                  num_attention_heads filled in from the model): keys prompt_embeddings [4, H] (no
                  prefix) and the classifier saved through modules_to_save under base_model.
                  (PeftModel.base_model is the transformers model itself for prompt learning)
  prefix_seqcls/  prefix tuning saved from a PeftModelForSequenceClassification (PrefixTuningConfig,
                  prefix_projection false, 3 virtual tokens (N_PREFIX), token_dim, num_layers,
                  num_attention_heads and encoder_hidden_size filled in from the model): keys
                  prompt_embeddings [3, num_layers * 2 * H] (the key/value table itself, no prefix) and
                  the classifier saved through modules_to_save under base_model.
Each adapter folder holds adapter_config.json with the fields Hugging Face PEFT writes,
adapter_model.safetensors (F32, metadata {"format": "pt"}) and the expected outputs:
hidden.npy [B, T, H] ([B, 4 + T, H] for prompt_seqcls: every position, virtual tokens first) and,
for lora_seqcls, ia3_seqcls, prompt_seqcls and prefix_seqcls, logits.npy [B, labels], all float32
from float64 math.

The LoRA math is the paper's, written out here: each chosen linear computes
x W^T + b + s * (x A^T) B^T with s = alpha / r (alpha / sqrt(r) with use_rslora), the rank and
alpha of a module taken from rank_pattern / alpha_pattern when a key matches its path.
The (IA)^3 math is Hugging Face PEFT's (tuners/ia3/layer.py): a chosen linear that is not
feedforward computes (x W^T + b) * l, l flattened to [out] (the bias scaled too); a feedforward one
computes (x * l) W^T + b, l flattened to [in]. Its random vectors come from a generator of their
own, after the LoRA folders, so those stay as they were.
The prompt tuning math is Hugging Face PEFT's (peft_model.py PeftModelForSequenceClassification.forward):
the prompt P [n, H] is put in front of the word embeddings, inputs_embeds = cat(P, word_embeddings(ids));
the attention mask gets n ones in front, token_type_ids n zeros; position_ids are not given, so BERT's
embeddings number the whole sequence 0..n+T-1 (the virtual tokens 0..n-1, the text from n) before
adding position and token type embeddings and the embedding LayerNorm. The pooler then reads
position 0: the first virtual token, not [CLS]. P and that folder's classifier come from a
generator of their own, after (IA)^3's.
The prefix tuning math is Hugging Face PEFT's (peft_model.py get_prompt and
PeftModelForSequenceClassification._prefix_tuning_forward) on BERT's self-attention with
past_key_values: the table E [n, 2 L H] is viewed as [batch, n, 2 L, heads, head_dim] and permuted to
[2 L, batch, heads, n, head_dim], so entry 2l (columns 2l H .. 2l H + H - 1 of E, read as heads x
head_dim) is layer l's past key and entry 2l + 1 its past value. Every self-attention puts those n
keys and values in front of its own (key = cat(past key, key)); the mask gets n ones in front, so
every query attends to the n virtual positions and the real tokens; the token types are not
extended; BERT's embeddings number the text from the past length, n .. n + T - 1. The hidden states
are the text's [B, T, H] and the pooler reads position 0: [CLS]. E and that folder's classifier come
from a generator of their own, after prompt tuning's.
The sequence classifier is BertForSequenceClassification's: tanh pooler on the first token,
then the classifier linear.
"""

import json
import math
import os
import re
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bert  # noqa: E402  (the reference BERT's weights, inputs and safetensors writer)

N_VIRTUAL = 4  # prompt_seqcls's virtual tokens
N_PREFIX = 3  # prefix_seqcls's virtual tokens
LINEARS = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense"]


def lora_config(**fields):
    """adapter_config.json of a LoraConfig: every field Hugging Face PEFT 0.18 writes, at its
    default unless given (huggingface/peft tuners/lora/config.py, config.py)."""
    cfg = {
        "alora_invocation_tokens": None, "alpha_pattern": {}, "arrow_config": None, "auto_mapping": None, "base_model_name_or_path": "tiny-bert", "bias": "none",
        "corda_config": None, "eva_config": None, "ensure_weight_tying": False, "exclude_modules": None, "fan_in_fan_out": False,
        "inference_mode": True, "init_lora_weights": True, "layer_replication": None, "layers_pattern": None,
        "layers_to_transform": None, "loftq_config": {}, "lora_alpha": 8, "lora_bias": False,
        "lora_dropout": 0.1, "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
        "peft_type": "LORA", "peft_version": "0.18.0", "qalora_group_size": 16, "r": 8, "rank_pattern": {},
        "revision": None, "target_modules": ["query", "value"], "target_parameters": None, "task_type": None,
        "trainable_token_indices": None, "use_dora": False, "use_qalora": False, "use_rslora": False,
    }
    cfg.update(fields)
    return cfg


def ia3_config(**fields):
    """adapter_config.json of an IA3Config: every field Hugging Face PEFT 0.18 writes, at its
    default unless given (huggingface/peft tuners/ia3/config.py, config.py). target_modules and
    feedforward_modules default to what IA3Model fills in for BERT when they are null, as the file
    then holds them (constants.py, ia3/model.py _prepare_adapter_config)."""
    cfg = {
        "auto_mapping": None, "base_model_name_or_path": "tiny-bert", "exclude_modules": None, "fan_in_fan_out": False,
        "feedforward_modules": ["output.dense"], "inference_mode": True, "init_ia3_weights": True,
        "modules_to_save": None, "peft_type": "IA3", "peft_version": "0.18.0", "revision": None,
        "target_modules": ["key", "value", "output.dense"], "task_type": None,
    }
    cfg.update(fields)
    return cfg


def prompt_tuning_config(model_cfg, **fields):
    """adapter_config.json of a PromptTuningConfig: every field Hugging Face PEFT 0.18 writes
    (huggingface/peft tuners/prompt_tuning/config.py; PromptLearningConfig and PeftConfig in
    config.py), token_dim, num_layers and num_attention_heads as _prepare_prompt_learning_config
    fills them in from the model (utils/other.py) and num_transformer_submodules as PeftModel sets
    it for an encoder-only task (1)."""
    cfg = {
        "auto_mapping": None, "base_model_name_or_path": "tiny-bert", "inference_mode": True, "modules_to_save": None,
        "num_attention_heads": model_cfg["num_attention_heads"], "num_layers": model_cfg["num_hidden_layers"],
        "num_transformer_submodules": 1, "num_virtual_tokens": None, "peft_type": "PROMPT_TUNING",
        "peft_version": "0.18.0", "prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None, "revision": None,
        "task_type": None, "token_dim": model_cfg["hidden_size"], "tokenizer_kwargs": None,
        "tokenizer_name_or_path": None,
    }
    cfg.update(fields)
    return cfg


def prefix_tuning_config(model_cfg, **fields):
    """adapter_config.json of a PrefixTuningConfig: every field Hugging Face PEFT 0.18 writes
    (huggingface/peft tuners/prefix_tuning/config.py; PromptLearningConfig and PeftConfig in
    config.py), token_dim, num_layers, num_attention_heads and encoder_hidden_size (token_dim) as
    _prepare_prompt_learning_config fills them in from the model (utils/other.py) and
    num_transformer_submodules as PeftModel sets it for an encoder-only task (1)."""
    cfg = {
        "auto_mapping": None, "base_model_name_or_path": "tiny-bert", "encoder_hidden_size": model_cfg["hidden_size"],
        "inference_mode": True, "modules_to_save": None, "num_attention_heads": model_cfg["num_attention_heads"],
        "num_layers": model_cfg["num_hidden_layers"], "num_transformer_submodules": 1, "num_virtual_tokens": None,
        "peft_type": "PREFIX_TUNING", "peft_version": "0.18.0", "prefix_projection": False, "revision": None,
        "task_type": None, "token_dim": model_cfg["hidden_size"],
    }
    cfg.update(fields)
    return cfg


def prefix_past(table, num_layers, hidden):
    """The past keys and values prefix tuning's table [n, num_layers * 2 * hidden] gives each layer,
    {layer: (K [n, hidden], V [n, hidden])}: get_prompt's view [batch, n, 2 L, heads, head_dim] and
    permute to [2 L, batch, heads, n, head_dim] make entry 2l layer l's key and 2l + 1 its value, so
    they are the table's column blocks 2l and 2l + 1 of width hidden (heads x head_dim within)."""
    return {l: (table[:, 2 * l * hidden:(2 * l + 1) * hidden], table[:, (2 * l + 1) * hidden:(2 * l + 2) * hidden])
            for l in range(num_layers)}


def pattern_value(pattern, module, default):
    """Hugging Face's rank_pattern / alpha_pattern lookup: the first key (in the sorted order a
    config read from a file has) that matches a dotted end of the module path."""
    for key, value in sorted(pattern.items()):
        if re.match(r"(.*\.)?(%s)$" % key, module):
            return value
    return default


def chosen(cfg, module, layer):
    tm = cfg["target_modules"]
    if isinstance(tm, str):
        return re.fullmatch(tm, module) is not None
    if not any(module == t or module.endswith("." + t) for t in tm):
        return False
    lt = cfg["layers_to_transform"]
    return lt is None or layer == lt or (isinstance(lt, list) and layer in lt)


def make_lora(cfg, prefix, model_cfg, g):
    """Random A, B (B non-zero, so the adapter changes the output) for every chosen module.
    Returns {module path: (A, B, scale)} with paths under `prefix`."""
    H, I = model_cfg["hidden_size"], model_cfg["intermediate_size"]
    out = {}
    for l in range(model_cfg["num_hidden_layers"]):
        for sub in LINEARS:
            path = "%sencoder.layer.%d.%s" % (prefix, l, sub)
            if not chosen(cfg, path, l):
                continue
            fan_in = I if sub == "output.dense" else H
            fan_out = I if sub == "intermediate.dense" else H
            r = pattern_value(cfg["rank_pattern"], path, cfg["r"])
            alpha = pattern_value(cfg["alpha_pattern"], path, cfg["lora_alpha"])
            scale = alpha / math.sqrt(r) if cfg["use_rslora"] else alpha / r
            A = torch.randn(r, fan_in, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
            B = torch.randn(fan_out, r, generator=g, dtype=torch.float64) * 0.3
            # Stored as float32: the reference computes with the stored values.
            out[path] = (A.float().double(), B.float().double(), scale)
    return out


def ia3_chosen(cfg, module):
    """check_target_module_exists for an IA3Config (which has no layers_to_transform)."""
    ex = cfg["exclude_modules"]
    if isinstance(ex, str) and re.fullmatch(ex, module):
        return False
    if isinstance(ex, list) and any(module == e or module.endswith("." + e) for e in ex):
        return False
    tm = cfg["target_modules"]
    if isinstance(tm, str):
        return re.fullmatch(tm, module) is not None
    return any(module == t or module.endswith("." + t) for t in tm)


def ia3_feedforward(cfg, module):
    """IA3Model._check_target_module_feedforward: a string is re.fullmatch, a list entry matches
    when the path ends with it, with no dot boundary."""
    ff = cfg["feedforward_modules"]
    if isinstance(ff, str):
        return re.fullmatch(ff, module) is not None
    return any(module.endswith(t) for t in ff)


def make_ia3(cfg, prefix, model_cfg, g):
    """Random vectors around 1 (so the adapter changes the output) for every chosen module.
    Returns {module path: (l flattened, feedforward)} with paths under `prefix`."""
    H, I = model_cfg["hidden_size"], model_cfg["intermediate_size"]
    out = {}
    for l in range(model_cfg["num_hidden_layers"]):
        for sub in LINEARS:
            path = "%sencoder.layer.%d.%s" % (prefix, l, sub)
            if not ia3_chosen(cfg, path):
                continue
            ff = ia3_feedforward(cfg, path)
            fan_in = I if sub == "output.dense" else H
            fan_out = I if sub == "intermediate.dense" else H
            v = 1 + 0.3 * torch.randn(fan_in if ff else fan_out, generator=g, dtype=torch.float64)
            out[path] = (v.float().double(), ff)  # the stored float32 values
    return out


def ia3_tensors(ia3, saved_prefix):
    """The file's ia3_l tensors: (1, in) for a feedforward module, (out, 1) otherwise."""
    return {saved_prefix + path + ".ia3_l": (v.reshape(1, -1) if ff else v.reshape(-1, 1))
            for path, (v, ff) in ia3.items()}


def encoder(model_cfg, w, ids, mask, types, lora, prefix, ia3=None, prompt=None, past=None, position_offset=0,
            sublayer=None):
    """The hidden states [B, T, H]; with `prompt` [n, H] (prompt tuning) [B, n + T, H], the
    prompt in front of the word embeddings, n ones in front of the mask and n zeros in front of
    the token types, the positions numbering the whole sequence.
    `prefix` is the module path prefix of the LoRA / (IA)^3 sites ("bert." or ""). `past` (prefix
    tuning's past_key_values) is {layer: (K [n, H], V [n, H])}: each self-attention puts those n
    keys and values (split into heads as its own are) in front of its own, and n ones go in front of
    the mask; the hidden states stay [B, T, H]. `position_offset` is where BERT's embeddings start
    numbering the tokens (past_key_values_length: n with `past`).
    `sublayer(layer, site, h, r, norm)`, when given, replaces how each layer ends its two sub-layers
    (site "attention.output" and "output"): h is the sub-layer's dense output, r its residual input
    and norm(x) the sub-layer's own LayerNorm; without it the sub-layer returns norm(r + h), as
    BERT does (AdapterHub's bottleneck adapters hook in here)."""
    H, eps, nh = model_cfg["hidden_size"], model_cfg["layer_norm_eps"], model_cfg["num_attention_heads"]
    dh = H // nh
    words = w["embeddings.word_embeddings.weight"][ids]
    if prompt is not None:
        Bp, n = ids.shape[0], prompt.shape[0]
        words = torch.cat([prompt.unsqueeze(0).expand(Bp, n, H), words], 1)
        mask = torch.cat([torch.ones(Bp, n, dtype=mask.dtype), mask], 1)
        types = torch.cat([torch.zeros(Bp, n, dtype=types.dtype), types], 1)
    B, T = words.shape[:2]
    positions = torch.arange(position_offset, position_offset + T).unsqueeze(0).expand(B, T)
    assert position_offset + T <= model_cfg["max_position_embeddings"]
    if past is not None:
        n_past = past[0][0].shape[0]
        mask = torch.cat([torch.ones(B, n_past, dtype=mask.dtype), mask], 1)
    x = (words + w["embeddings.position_embeddings.weight"][positions] +
         w["embeddings.token_type_embeddings.weight"][types])
    h = F.layer_norm(x, (H,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)

    def layer_norm(module):
        return lambda t: F.layer_norm(t, (H,), w[module + "LayerNorm.weight"], w[module + "LayerNorm.bias"], eps)

    for i in range(model_cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i

        def lin(x, name):
            vec = ia3.get(prefix + p + name) if ia3 else None
            if vec is not None and vec[1]:  # feedforward: the input scaled
                x = x * vec[0]
            y = x @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            site = lora.get(prefix + p + name)
            if site is not None:
                A, Bm, s = site
                y = y + s * (x @ A.T) @ Bm.T
            if vec is not None and not vec[1]:  # the output scaled, bias included
                y = y * vec[0]
            return y

        def heads(t):
            return t.reshape(B, T, nh, dh).transpose(1, 2)

        q, k, v = (heads(lin(h, "attention.self." + n)) for n in ("query", "key", "value"))
        if past is not None:  # BERT's self-attention: key = cat(past key, key), the same for values
            pk, pv = (t.reshape(1, -1, nh, dh).transpose(1, 2).expand(B, nh, -1, dh) for t in past[i])
            k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
        scores = scores.masked_fill((mask == 0)[:, None, None, :], float("-inf"))
        ctx = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, H)
        if sublayer is None:
            a = F.layer_norm(h + lin(ctx, "attention.output.dense"), (H,), w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], eps)
        else:
            a = sublayer(i, "attention.output", lin(ctx, "attention.output.dense"), h,
                         layer_norm(p + "attention.output."))
        u = lin(a, "intermediate.dense")
        f = lin(0.5 * u * (1 + torch.erf(u / math.sqrt(2))), "output.dense")
        if sublayer is None:
            h = F.layer_norm(a + f, (H,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        else:
            h = sublayer(i, "output", f, a, layer_norm(p + "output."))
    return h


WORDS = ("good bad great awful fine poor nice dull best worst love hate film movie plot cast story acting "
         "music scene ending start long short funny sad slow fast very quite not really").split()


def vocab():
    """[PAD] [UNK] [CLS] [SEP] [MASK], the words, then filler tokens up to the model's 100 rows."""
    v = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    return v + ["[unused%d]" % i for i in range(100 - len(v))]


def write_adapter(out_dir, cfg, tensors, hidden, logits=None):
    """An adapter folder and its expected outputs: hidden.npy and, for a classifier, logits.npy."""
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    torch_bert.write_safetensors(os.path.join(out_dir, "adapter_model.safetensors"),
                                 {k: ("F32", v) for k, v in tensors.items()}, {"format": "pt"})
    np.save(os.path.join(out_dir, "hidden.npy"), hidden.numpy().astype(np.float32))
    if logits is not None:
        np.save(os.path.join(out_dir, "logits.npy"), logits.numpy().astype(np.float32))


def write_text_probs(path, rows, voc, labels, logits_of):
    """The class probabilities of each sentence of text.jsonl ([CLS] words [SEP], one at a time)
    under logits_of(ids, mask, token_types): what peft-predict must print."""
    probs = []
    for r in rows:
        row_ids = torch.tensor([[2] + [voc.index(x) for x in r["text"].split()] + [3]])
        p = torch.softmax(logits_of(row_ids, torch.ones_like(row_ids), torch.zeros_like(row_ids)), -1)[0]
        probs.append({labels[k]: float(p[k]) for k in range(len(labels))})
    with open(path, "w") as f:
        json.dump(probs, f, indent=1)


def write_model_folder(out):
    """Removes and recreates `out`, then writes the small random BERT sequence classifier both
    reference scripts adapt (torch_hf_peft.py and torch_adapterhub.py):
      out/model/    config.json (3 labels negative / neutral / positive, id2label and label2id),
                    model.safetensors (bert.* keys, F32, weights seed 11), vocab.txt (whole
                    words, see vocab()) and the inputs inputs_ids.npy, inputs_mask.npy,
                    token_type_ids.npy (int64 [B, T], seed 12)
      out/text.jsonl  24 sentences of vocabulary words with labels, one JSON object a line
    Returns a namespace: cfg (the model config), w (float64 weights, the stored float32 values,
    under torch_bert's internal names), ids, mask, types, labels, voc (the vocabulary list) and
    rows (the text.jsonl rows)."""
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    model_cfg = torch_bert.base_config("bert")
    labels = ["negative", "neutral", "positive"]
    model_cfg.update({"architectures": ["BertForSequenceClassification"],
                      "id2label": {str(i): n for i, n in enumerate(labels)},
                      "label2id": {n: i for i, n in enumerate(labels)}})
    w = torch_bert.random_weights(model_cfg, seed=11)
    w = {k: v.float().double() for k, v in w.items()}  # the stored float32 values
    ids, mask, types, _ = torch_bert.make_inputs(model_cfg, seed=12)

    model_dir = os.path.join(out, "model")
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(model_cfg, f, indent=2)
    torch_bert.write_safetensors(os.path.join(model_dir, "model.safetensors"),
                                 {torch_bert.hf_key(model_cfg, k): ("F32", v) for k, v in w.items()})
    for name, t in (("inputs_ids", ids), ("inputs_mask", mask), ("token_type_ids", types)):
        np.save(os.path.join(model_dir, name + ".npy"), t.numpy().astype(np.int64))
    voc = vocab()
    assert len(voc) == model_cfg["vocab_size"]
    with open(os.path.join(model_dir, "vocab.txt"), "w") as f:
        f.write("\n".join(voc) + "\n")

    # Sentences of vocabulary words, from a random state of their own.
    rng = np.random.RandomState(14)
    rows = []
    for i in range(24):
        words = [WORDS[j] for j in rng.randint(0, len(WORDS), size=rng.randint(3, 12))]
        rows.append({"text": " ".join(words), "label": labels[i % len(labels)]})
    with open(os.path.join(out, "text.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return SimpleNamespace(cfg=model_cfg, w=w, ids=ids, mask=mask, types=types, labels=labels, voc=voc, rows=rows)


def main():
    out = sys.argv[1]
    m = write_model_folder(out)
    model_cfg, w, ids, mask, types, labels, voc, rows = m.cfg, m.w, m.ids, m.mask, m.types, m.labels, m.voc, m.rows

    g = torch.Generator().manual_seed(13)
    H = model_cfg["hidden_size"]

    # 1. PeftModelForSequenceClassification: rsLoRA, patterns, the classifier in modules_to_save.
    cfg = lora_config(task_type="SEQ_CLS", r=4, lora_alpha=8, use_rslora=True,
                      target_modules=["query", "value", "intermediate.dense"],
                      rank_pattern={"layer\\.1\\.attention\\.self\\.query": 2},
                      alpha_pattern={"intermediate.dense": 3},
                      modules_to_save=["classifier", "score"])  # PeftModelForSequenceClassification adds both
    lora = make_lora(cfg, "bert.", model_cfg, g)
    h = encoder(model_cfg, w, ids, mask, types, lora, "bert.")
    cls_w = (torch.randn(len(labels), H, generator=g, dtype=torch.float64) * 0.5).float().double()
    cls_b = (torch.randn(len(labels), generator=g, dtype=torch.float64) * 0.1).float().double()
    pooled = torch.tanh(F.linear(h[:, 0], w["pooler.dense.weight"], w["pooler.dense.bias"]))
    logits = F.linear(pooled, cls_w, cls_b)
    tensors = {}
    for path, (A, B, _) in lora.items():
        tensors["base_model.model." + path + ".lora_A.weight"] = A
        tensors["base_model.model." + path + ".lora_B.weight"] = B
    # As every Hugging Face PEFT version saves a modules_to_save copy: under the module's own name.
    tensors["base_model.model.classifier.weight"] = cls_w
    tensors["base_model.model.classifier.bias"] = cls_b
    d = os.path.join(out, "lora_seqcls")
    write_adapter(d, cfg, tensors, h, logits)

    # The sentences of text.jsonl through the same classifier, one at a time: what peft-predict must print.
    def lora_logits(row_ids, row_mask, row_types):
        hh = encoder(model_cfg, w, row_ids, row_mask, row_types, lora, "bert.")
        return F.linear(torch.tanh(F.linear(hh[:, 0], w["pooler.dense.weight"], w["pooler.dense.bias"])), cls_w, cls_b)

    write_text_probs(os.path.join(out, "text_probs.json"), rows, voc, labels, lora_logits)

    # 2. PeftModel over BertModel: a regular expression for target_modules.
    cfg = lora_config(task_type="FEATURE_EXTRACTION", r=3, lora_alpha=5,
                      target_modules=".*\\.layer\\.\\d+\\.attention\\.(self\\.key|output\\.dense)")
    lora = make_lora(cfg, "", model_cfg, g)
    h = encoder(model_cfg, w, ids, mask, types, lora, "")
    tensors = {}
    for path, (A, B, _) in lora.items():
        tensors["base_model.model." + path + ".lora_A.weight"] = A
        tensors["base_model.model." + path + ".lora_B.weight"] = B
    d = os.path.join(out, "lora_model")
    write_adapter(d, cfg, tensors, h)

    # 3. transformers' own adapter support: no base_model.model. prefix, one layer.
    cfg = lora_config(r=2, lora_alpha=4, target_modules=["output.dense"], layers_to_transform=1)
    lora = make_lora(cfg, "bert.", model_cfg, g)
    assert len(lora) == 2  # attention.output.dense and output.dense of layer 1
    h = encoder(model_cfg, w, ids, mask, types, lora, "bert.")
    tensors = {}
    for path, (A, B, _) in lora.items():
        tensors[path + ".lora_A.weight"] = A
        tensors[path + ".lora_B.weight"] = B
    d = os.path.join(out, "lora_bare")
    write_adapter(d, cfg, tensors, h)

    # (IA)^3, from a generator of its own so that the folders above keep their values.
    g = torch.Generator().manual_seed(15)

    # 4. PeftModelForSequenceClassification with IA3Config's BERT defaults, the classifier in
    # modules_to_save.
    cfg = ia3_config(task_type="SEQ_CLS", modules_to_save=["classifier", "score"])
    ia3 = make_ia3(cfg, "bert.", model_cfg, g)
    assert len(ia3) == 4 * model_cfg["num_hidden_layers"]
    assert all(ff == p.endswith("output.dense") for p, (_, ff) in ia3.items())
    h = encoder(model_cfg, w, ids, mask, types, {}, "bert.", ia3)
    cls_w = (torch.randn(len(labels), H, generator=g, dtype=torch.float64) * 0.5).float().double()
    cls_b = (torch.randn(len(labels), generator=g, dtype=torch.float64) * 0.1).float().double()
    pooled = torch.tanh(F.linear(h[:, 0], w["pooler.dense.weight"], w["pooler.dense.bias"]))
    logits = F.linear(pooled, cls_w, cls_b)
    tensors = ia3_tensors(ia3, "base_model.model.")
    tensors["base_model.model.classifier.weight"] = cls_w
    tensors["base_model.model.classifier.bias"] = cls_b
    d = os.path.join(out, "ia3_seqcls")
    write_adapter(d, cfg, tensors, h, logits)

    # 5. PeftModel over BertModel (task_type null, so save_pretrained fills auto_mapping): a
    # regular expression for target_modules that leaves attention.output.dense out, and a list
    # feedforward_modules, which only the FFN output.dense of the chosen modules ends with.
    cfg = ia3_config(target_modules=".*\\.layer\\.[01]\\.(attention\\.self\\.key|intermediate\\.dense|output\\.dense)",
                     feedforward_modules=["output.dense"],
                     auto_mapping={"base_model_class": "BertModel",
                                   "parent_library": "transformers.models.bert.modeling_bert"})
    ia3 = make_ia3(cfg, "", model_cfg, g)
    assert sorted({p.split(".", 3)[3] for p in ia3}) == ["attention.self.key", "intermediate.dense", "output.dense"]
    assert all(ff == p.endswith(".output.dense") for p, (_, ff) in ia3.items())
    h = encoder(model_cfg, w, ids, mask, types, {}, "", ia3)
    d = os.path.join(out, "ia3_layers")
    write_adapter(d, cfg, ia3_tensors(ia3, "base_model.model."), h)

    # Prompt tuning, from a generator of its own so that the folders above keep their values.
    g = torch.Generator().manual_seed(16)

    # 6. PeftModelForSequenceClassification with a PromptTuningConfig: the prompt in front of the
    # text, the classifier in modules_to_save.
    cfg = prompt_tuning_config(model_cfg, task_type="SEQ_CLS", num_virtual_tokens=N_VIRTUAL,
                               modules_to_save=["classifier", "score"])
    prompt = (torch.randn(N_VIRTUAL, H, generator=g, dtype=torch.float64) * 0.5).float().double()
    cls_w = (torch.randn(len(labels), H, generator=g, dtype=torch.float64) * 0.5).float().double()
    cls_b = (torch.randn(len(labels), generator=g, dtype=torch.float64) * 0.1).float().double()

    def prompt_logits(row_ids, row_mask, row_types):
        hh = encoder(model_cfg, w, row_ids, row_mask, row_types, {}, "bert.", prompt=prompt)
        # The pooler reads position 0: the first virtual token.
        pooled = torch.tanh(F.linear(hh[:, 0], w["pooler.dense.weight"], w["pooler.dense.bias"]))
        return hh, F.linear(pooled, cls_w, cls_b)

    h, logits = prompt_logits(ids, mask, types)
    assert h.shape == (ids.shape[0], N_VIRTUAL + ids.shape[1], H)
    # prompt learning: PeftModel.base_model is the transformers model, so modules_to_save copies
    # are saved under base_model. and the prompt as prompt_embeddings (utils/save_and_load.py).
    tensors = {"prompt_embeddings": prompt, "base_model.classifier.weight": cls_w,
               "base_model.classifier.bias": cls_b}
    d = os.path.join(out, "prompt_seqcls")
    write_adapter(d, cfg, tensors, h, logits)

    # The sentences of text.jsonl through the prompt-tuned classifier, one at a time.
    write_text_probs(os.path.join(out, "prompt_text_probs.json"), rows, voc, labels,
                     lambda *a: prompt_logits(*a)[1])

    # Prefix tuning, from a generator of its own so that the folders above keep their values.
    g = torch.Generator().manual_seed(17)

    # 7. PeftModelForSequenceClassification with a PrefixTuningConfig: each layer's attention sees
    # the table's keys and values in front of the text's, the classifier in modules_to_save.
    L = model_cfg["num_hidden_layers"]
    cfg = prefix_tuning_config(model_cfg, task_type="SEQ_CLS", num_virtual_tokens=N_PREFIX,
                               modules_to_save=["classifier", "score"])
    table = (torch.randn(N_PREFIX, L * 2 * H, generator=g, dtype=torch.float64) * 0.5).float().double()
    cls_w = (torch.randn(len(labels), H, generator=g, dtype=torch.float64) * 0.5).float().double()
    cls_b = (torch.randn(len(labels), generator=g, dtype=torch.float64) * 0.1).float().double()
    past = prefix_past(table, L, H)

    def prefix_logits(row_ids, row_mask, row_types):
        # PEFT passes the token types as given (not extended) and BERT numbers the text from n.
        hh = encoder(model_cfg, w, row_ids, row_mask, row_types, {}, "bert.", past=past, position_offset=N_PREFIX)
        # The pooler reads position 0 of the text: [CLS].
        pooled = torch.tanh(F.linear(hh[:, 0], w["pooler.dense.weight"], w["pooler.dense.bias"]))
        return hh, F.linear(pooled, cls_w, cls_b)

    h, logits = prefix_logits(ids, mask, types)
    assert h.shape == ids.shape + (H,)
    # As for prompt tuning: prompt_embeddings (no prefix), the classifier under base_model.
    tensors = {"prompt_embeddings": table, "base_model.classifier.weight": cls_w, "base_model.classifier.bias": cls_b}
    d = os.path.join(out, "prefix_seqcls")
    write_adapter(d, cfg, tensors, h, logits)

    # The sentences of text.jsonl through the prefix-tuned classifier, one at a time.
    write_text_probs(os.path.join(out, "prefix_text_probs.json"), rows, voc, labels,
                     lambda *a: prefix_logits(*a)[1])


if __name__ == "__main__":
    with torch.no_grad():
        main()
