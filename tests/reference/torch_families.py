#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Reference checkpoints and outputs for more Hugging Face encoder families, by PyTorch.

Usage: /usr/bin/python3 torch_families.py OUTPUT_DIR

Builds small random models under the exact key names of each family's Hugging Face
checkpoint and computes their outputs with explicit torch ops written from the published
architectures (no transformers code). Every layer is computed twice, by hand (explicit
softmax, LayerNorm and GELU) and with torch.nn.MultiheadAttention + F.layer_norm + F.gelu,
and the two must agree to 1e-10; the BERT-shaped models (xlm-roberta, sharded, sentence)
are also checked against torch_bert.forward (torch.nn.TransformerEncoderLayer). Everything
is computed in float64 from the weights exactly as stored (float32), then saved as float32
(*.npy) and float64 (*_f64.npy). Dropout is 0; padded keys are masked out of attention.

Folders written under OUTPUT_DIR:
  xlm-roberta/  XLMRobertaForMaskedLM: RoBERTa's architecture and keys (roberta.*, lm_head.*,
                decoder tied to the word embeddings, not stored), pooler, pad_token_id 1,
                type_vocab_size 1, layer_norm_eps 1e-5, positions padding_idx + cumsum(mask)
  distilbert/   DistilBertForMaskedLM (distilbert.*, vocab_transform / vocab_layer_norm /
                vocab_projector.bias head, vocab_projector.weight tied, not stored), no token
                types, positions 0..T-1, LayerNorm eps 1e-12 everywhere
  electra/      ElectraForPreTraining (a discriminator, no MLM head): embedding_size 16 <
                hidden_size 32, electra.embeddings_project, BERT layer names, two token types;
                discriminator_predictions.* stored too (discriminator_logits.npy [B, T])
  albert/       AlbertForMaskedLM: embedding_size 16, hidden_size 32, ONE shared layer
                (albert_layer_groups.0.albert_layers.0) applied num_hidden_layers = 3 times,
                gelu_new (tanh GELU) in the layer FFN and in the MLM head, pooler (pooled.npy)
  mpnet/        MPNetForMaskedLM: relative position bias (encoder.relative_attention_bias,
                32 buckets) added to the scores of every layer, pad_token_id 1, positions
                padding_idx + cumsum(mask), no token types, layer_norm_eps 1e-5;
                relative_buckets.npy int64 [T, T] (bucket of key j for query i, T of the test
                batch) and relative_bucket_table.npy int64 [513, 2] (relative position
                -256..256, its bucket)
  sharded/      torch_bert's base_config("bert") with new weights, as BertForMaskedLM, in two
                shards model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
  sentence/     a sentence-transformers folder (modules.json, sentence_bert_config.json,
                1_Pooling/config.json (mean), empty 2_Normalize/) around a BertModel whose
                model.safetensors has no 'bert.' prefix (embeddings.*, encoder.*, pooler.*);
                sentence_{mean,cls,max,mean_sqrt_len}.npy [B, H]: each pooling over the real
                tokens, then L2-normalised
Each folder holds config.json, model.safetensors (or the shards), the inputs and outputs:
  inputs_ids.npy, inputs_mask.npy, token_type_ids.npy, position_ids.npy   int64 [B, T]
  (token_type_ids all zeros for families without token types; position_ids as the model
  uses them), hidden.npy [B, T, H] (last hidden state), mlm_logits.npy [B, T, V] where the
  folder has an MLM head, pooled.npy [B, H] where it has a pooler, and *_f64.npy twins.
"""

import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bert  # noqa: E402  (safetensors writer, BATCH_LENGTHS, the BERT reference)

BATCH_LENGTHS = torch_bert.BATCH_LENGTHS
FIRST_REAL_ID = 4  # ids 0..3 are pad / special tokens in every family's vocabulary
TOL = 1e-10

# --------------------------------------------------------------------------- weights


class Init:
    """Random float64 weights under Hugging Face key names."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.w = {}

    def randn(self, *shape, scale=1.0):
        return torch.randn(*shape, generator=self.g, dtype=torch.float64) * scale

    def table(self, name, rows, width, scale):
        self.w[name] = self.randn(rows, width, scale=scale)

    def linear(self, name, out_f, in_f, gain=1.0):
        self.w[name + ".weight"] = self.randn(out_f, in_f, scale=gain / math.sqrt(in_f))
        self.w[name + ".bias"] = self.randn(out_f, scale=0.1)

    def norm(self, name, width):
        self.w[name + ".weight"] = 1.0 + self.randn(width, scale=0.2)
        self.w[name + ".bias"] = self.randn(width, scale=0.1)

    def vector(self, name, n, scale=0.1):
        self.w[name] = self.randn(n, scale=scale)

    def stored(self):
        """The weights as read back from the F32 checkpoint, in float64."""
        return {k: v.to(torch.float32).to(torch.float64) for k, v in self.w.items()}


# Roles of the post-LN layer's tensors -> each family's names (relative to the layer prefix).
BERT_LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
              "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
              "ff1": "intermediate.dense", "ff2": "output.dense", "ln2": "output.LayerNorm"}
DISTILBERT_LAYER = {"q": "attention.q_lin", "k": "attention.k_lin", "v": "attention.v_lin",
                    "o": "attention.out_lin", "ln1": "sa_layer_norm",
                    "ff1": "ffn.lin1", "ff2": "ffn.lin2", "ln2": "output_layer_norm"}
ALBERT_LAYER = {"q": "attention.query", "k": "attention.key", "v": "attention.value",
                "o": "attention.dense", "ln1": "attention.LayerNorm",
                "ff1": "ffn", "ff2": "ffn_output", "ln2": "full_layer_layer_norm"}
MPNET_LAYER = {"q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v",
               "o": "attention.attn.o", "ln1": "attention.LayerNorm",
               "ff1": "intermediate.dense", "ff2": "output.dense", "ln2": "output.LayerNorm"}


def init_layer(init, prefix, names, H, I):
    init.linear(prefix + names["q"], H, H, gain=1.5)
    init.linear(prefix + names["k"], H, H, gain=1.5)
    init.linear(prefix + names["v"], H, H)
    init.linear(prefix + names["o"], H, H)
    init.norm(prefix + names["ln1"], H)
    init.linear(prefix + names["ff1"], I, H)
    init.linear(prefix + names["ff2"], H, I)
    init.norm(prefix + names["ln2"], H)


# --------------------------------------------------------------------------- explicit ops


# Adapters on linears, by module name (see write_adapters): ("lora", A, B, scale) or
# ("ia3", l, feedforward). Empty while the base models are computed.
ADAPTERS = {}


def linear(x, w, name):
    a = ADAPTERS.get(name)
    if a is not None and a[0] == "ia3" and a[2]:
        x = x * a[1]  # a feedforward (IA)^3 vector scales the input
    y = x @ w[name + ".weight"].T + w[name + ".bias"]
    if a is not None and a[0] == "lora":
        y = y + a[3] * ((x @ a[1].T) @ a[2].T)
    if a is not None and a[0] == "ia3" and not a[2]:
        y = y * a[1]  # any other scales the output, bias included (Hugging Face PEFT's IA3 layer)
    return y


def layer_norm(x, w, name, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance, as LayerNorm
    return (x - mu) / torch.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


def gelu(x):
    """Exact (erf) GELU: 'gelu' in every config here."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_new(x):
    """'gelu_new' (ALBERT): the tanh approximation."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


ACT = {"gelu": gelu, "gelu_new": gelu_new}
ACT_TORCH = {"gelu": lambda x: F.gelu(x), "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


def softmax(s):
    e = torch.exp(s - s.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def post_ln_layer(w, p, names, h, mask, nh, eps, act, bias=None):
    """One post-LN Transformer layer, by hand. bias: [nh, T, T] added to the scaled scores."""
    B, T, H = h.shape
    dh = H // nh

    def heads(x):
        return x.reshape(B, T, nh, dh).transpose(1, 2)

    q, k, v = (heads(linear(h, w, p + names[r])) for r in ("q", "k", "v"))
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
    if bias is not None:
        scores = scores + bias
    scores = scores.masked_fill((mask == 0)[:, None, None, :], float("-inf"))
    ctx = (softmax(scores) @ v).transpose(1, 2).reshape(B, T, H)
    a = layer_norm(h + linear(ctx, w, p + names["o"]), w, p + names["ln1"], eps)
    f = linear(ACT[act](linear(a, w, p + names["ff1"])), w, p + names["ff2"])
    return layer_norm(a + f, w, p + names["ln2"], eps)


def post_ln_layer_mha(w, p, names, h, mask, nh, eps, act, bias=None):
    """The same layer through torch.nn.MultiheadAttention, F.layer_norm and F.gelu."""
    B, T, H = h.shape
    mha = torch.nn.MultiheadAttention(H, nh, dropout=0.0, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([w[p + names[r] + ".weight"] for r in ("q", "k", "v")], 0))
        mha.in_proj_bias.copy_(torch.cat([w[p + names[r] + ".bias"] for r in ("q", "k", "v")], 0))
        mha.out_proj.weight.copy_(w[p + names["o"] + ".weight"])
        mha.out_proj.bias.copy_(w[p + names["o"] + ".bias"])
    mha.train()  # dropout 0; keeps torch off its fused inference path
    attn_mask = None
    if bias is not None:  # MultiheadAttention adds a float attn_mask after the 1/sqrt(d) scaling
        attn_mask = bias.unsqueeze(0).expand(B, nh, T, T).reshape(B * nh, T, T)
    att = mha(h, h, h, key_padding_mask=(mask == 0), attn_mask=attn_mask, need_weights=False)[0].detach()

    def ln(x, name):
        return F.layer_norm(x, (H,), w[p + name + ".weight"], w[p + name + ".bias"], eps)

    def lin(x, name):
        return F.linear(x, w[p + name + ".weight"], w[p + name + ".bias"])

    a = ln(h + att, names["ln1"])
    return ln(a + lin(ACT_TORCH[act](lin(a, names["ff1"])), names["ff2"]), names["ln2"])


def run_layers(w, prefixes, names, h, mask, nh, eps, act, bias=None):
    """Applies the layers at the given key prefixes in order, checking each one twice."""
    for p in prefixes:
        h_next = post_ln_layer(w, p, names, h, mask, nh, eps, act, bias)
        if not ADAPTERS:  # MultiheadAttention knows nothing of adapters
            diff = float((h_next - post_ln_layer_mha(w, p, names, h, mask, nh, eps, act, bias)).abs().max())
            assert diff < TOL, "%s: hand-written layer and MultiheadAttention disagree by %g" % (p, diff)
        h = h_next
    return h


# --------------------------------------------------------------------------- inputs / outputs


def make_inputs(V, pad, n_types, offset_positions, max_positions, seed):
    """ids avoid the pad and special ids (0..3); a second segment when n_types > 1;
    positions padding_idx + cumsum(mask) (RoBERTa / MPNet) or 0..T-1."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(BATCH_LENGTHS), max(BATCH_LENGTHS)
    ids = torch.full((B, T), pad, dtype=torch.int64)
    mask = torch.zeros((B, T), dtype=torch.int64)
    types = torch.zeros((B, T), dtype=torch.int64)
    for b, n in enumerate(BATCH_LENGTHS):
        ids[b, :n] = torch.randint(FIRST_REAL_ID, V - 1, (n,), generator=g)
        mask[b, :n] = 1
        if n_types > 1:
            types[b, n // 2:n] = 1
    assert not bool(((ids == pad) & (mask == 1)).any())
    if offset_positions:
        positions = torch.cumsum(mask, dim=1) * mask + pad
    else:
        positions = torch.arange(T, dtype=torch.int64).unsqueeze(0).expand(B, T).clone()
    assert int(positions.max()) < max_positions
    return ids, mask, types, positions


def write_config(path, cfg):
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def write_checkpoint(out_dir, w):
    torch_bert.write_safetensors(os.path.join(out_dir, "model.safetensors"),
                                 {k: ("F32", v) for k, v in w.items()}, {"format": "pt"})


def save_arrays(out_dir, arrays):
    """int64 tensors as <name>.npy; float tensors as <name>.npy (float32) + <name>_f64.npy."""
    for name, a in arrays.items():
        a = a.detach()
        if a.dtype == torch.int64:
            np.save(os.path.join(out_dir, name + ".npy"), np.ascontiguousarray(a.numpy().astype(np.int64)))
        else:
            assert bool(torch.isfinite(a).all()), name
            np.save(os.path.join(out_dir, name + ".npy"), np.ascontiguousarray(a.numpy().astype(np.float32)))
            np.save(os.path.join(out_dir, name + "_f64.npy"), np.ascontiguousarray(a.numpy().astype(np.float64)))


def input_arrays(ids, mask, types, positions):
    return {"inputs_ids": ids, "inputs_mask": mask, "token_type_ids": types, "position_ids": positions}


# --------------------------------------------------------------------------- adapter folders

TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings", "relative_attention_bias")


def hf_chosen(w, targets):
    """The linear modules a Hugging Face PEFT target_modules list chooses, by its published rule:
    a module whose full name equals an entry or ends with "." + the entry. Every linear of the
    model is a candidate (heads, poolers and projections too), as in Hugging Face PEFT."""
    linears = sorted(k[:-len(".weight")] for k, v in w.items()
                     if k.endswith(".weight") and v.dim() == 2 and not any(t in k for t in TABLES))
    return [m for m in linears if any(m == t or m.endswith("." + t) for t in targets)]


def write_adapters(out, w, body, seed, lora_targets, ia3=None):
    """Hugging Face PEFT folders for this family's model (keys base_model.model.<module>...),
    each with hidden.npy: the model's last hidden state with the adapter in place.
      lora/  LoraConfig(r=2, lora_alpha=5, target_modules=lora_targets), lora_A and lora_B random
             (a trained adapter, not the B = 0 start)
      ia3/   IA3Config(target_modules, feedforward_modules) from ia3 = (targets, feedforward),
             vectors 1 + noise; feedforward when the module name ends with an entry (no dot
             boundary, as Hugging Face PEFT's is_feedforward)
    Writes chosen_modules.json in each: the module names the rule chose."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.3).to(torch.float32).to(torch.float64)

    variants = [("lora", lora_targets, None)] + ([("ia3", ia3[0], ia3[1])] if ia3 else [])
    for kind, targets, ff in variants:
        ADAPTERS.clear()
        tensors = {}
        chosen = hf_chosen(w, targets)
        assert chosen, (out, targets)
        for m in chosen:
            out_f, in_f = w[m + ".weight"].shape
            key = "base_model.model." + m
            if kind == "lora":
                r, alpha = 2, 5.0
                A, B = rnd(r, in_f), rnd(out_f, r)
                ADAPTERS[m] = ("lora", A, B, alpha / r)
                tensors[key + ".lora_A.weight"] = A
                tensors[key + ".lora_B.weight"] = B
            else:
                is_ff = any(m.endswith(t) for t in ff)
                v = (1.0 + rnd(in_f if is_ff else out_f)).to(torch.float32).to(torch.float64)  # as stored
                ADAPTERS[m] = ("ia3", v, is_ff)
                tensors[key + ".ia3_l"] = v.reshape(1, in_f) if is_ff else v.reshape(out_f, 1)
        h = body(w)
        ADAPTERS.clear()
        cfg = {"peft_type": kind.upper(), "task_type": None, "target_modules": targets, "inference_mode": True,
               "base_model_name_or_path": None, "revision": None, "modules_to_save": None, "fan_in_fan_out": False}
        if kind == "lora":
            cfg.update({"r": 2, "lora_alpha": 5, "lora_dropout": 0.0, "bias": "none", "use_rslora": False,
                        "init_lora_weights": True, "layers_to_transform": None, "layers_pattern": None,
                        "rank_pattern": {}, "alpha_pattern": {}, "use_dora": False})
        else:
            cfg.update({"feedforward_modules": ff, "init_ia3_weights": True})
        d = os.path.join(out, kind)
        os.makedirs(d, exist_ok=True)
        write_config(os.path.join(d, "adapter_config.json"), cfg)
        torch_bert.write_safetensors(os.path.join(d, "adapter_model.safetensors"),
                                     {k: ("F32", v) for k, v in tensors.items()}, {"format": "pt"})
        with open(os.path.join(d, "chosen_modules.json"), "w") as f:
            json.dump(chosen, f, indent=2)
            f.write("\n")
        save_arrays(d, {"hidden": h})


# --------------------------------------------------------------------------- BERT-shaped body


def bert_body(w, pfx, cfg, ids, mask, types, positions, project=None):
    """BERT / RoBERTa / ELECTRA body: (word + position [+ token type]) embeddings, LayerNorm,
    optionally a Linear projection (ELECTRA's embeddings_project), then the BERT layers."""
    eps, nh = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    e = pfx + "embeddings."
    x = w[e + "word_embeddings.weight"][ids] + w[e + "position_embeddings.weight"][positions]
    if e + "token_type_embeddings.weight" in w:
        x = x + w[e + "token_type_embeddings.weight"][types]
    h = layer_norm(x, w, e + "LayerNorm", eps)
    if project is not None:
        h = linear(h, w, project)
    prefixes = [pfx + "encoder.layer.%d." % i for i in range(cfg["num_hidden_layers"])]
    return run_layers(w, prefixes, BERT_LAYER, h, mask, nh, eps, cfg["hidden_act"])


def torch_bert_check(cfg, w, pfx, mlm, ids, mask, types, positions, hidden, logits, pooled):
    """Cross-checks a BERT-shaped model against torch_bert.forward (TransformerEncoderLayer).
    mlm: HF key of the head's {dense, norm, bias} or None."""
    tw = {k[len(pfx):]: v for k, v in w.items() if k.startswith(pfx)}
    if "embeddings.token_type_embeddings.weight" not in tw:
        tw["embeddings.token_type_embeddings.weight"] = torch.zeros(1, cfg["hidden_size"], dtype=torch.float64)
    H = cfg["hidden_size"]
    for ours, hf in (mlm or {}).items():
        tw["mlm." + ours] = w[hf]
    if not mlm:  # torch_bert.forward always computes a head: give it a dummy one
        tw.update({"mlm.dense.weight": torch.eye(H, dtype=torch.float64), "mlm.dense.bias": torch.zeros(H, dtype=torch.float64),
                   "mlm.norm.weight": torch.ones(H, dtype=torch.float64), "mlm.norm.bias": torch.zeros(H, dtype=torch.float64),
                   "mlm.bias": torch.zeros(cfg["vocab_size"], dtype=torch.float64)})
    h2, l2, p2 = torch_bert.forward(cfg, tw, ids, mask, types, positions)
    diff = float((hidden - h2).abs().max())
    if mlm:
        diff = max(diff, float((logits - l2).abs().max()))
    if pooled is not None:
        diff = max(diff, float((pooled - p2).abs().max()))
    assert diff < TOL, "disagreement with torch_bert.forward: %g" % diff


# --------------------------------------------------------------------------- 1. xlm-roberta


def xlm_roberta(out):
    cfg = {
        "model_type": "xlm-roberta", "architectures": ["XLMRobertaForMaskedLM"],
        "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 40, "type_vocab_size": 1,
        "initializer_range": 0.02, "layer_norm_eps": 1e-05, "pad_token_id": 1, "bos_token_id": 0,
        "eos_token_id": 2, "position_embedding_type": "absolute", "use_cache": True,
        "classifier_dropout": None, "torch_dtype": "float32",
    }
    V, H, I, P = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["max_position_embeddings"]
    init = Init(5151)
    init.table("roberta.embeddings.word_embeddings.weight", V, H, 0.5)
    init.table("roberta.embeddings.position_embeddings.weight", P, H, 0.3)
    init.table("roberta.embeddings.token_type_embeddings.weight", 1, H, 0.3)
    init.norm("roberta.embeddings.LayerNorm", H)
    for i in range(cfg["num_hidden_layers"]):
        init_layer(init, "roberta.encoder.layer.%d." % i, BERT_LAYER, H, I)
    init.linear("roberta.pooler.dense", H, H)
    init.linear("lm_head.dense", H, H)
    init.norm("lm_head.layer_norm", H)
    init.vector("lm_head.bias", V)
    w = init.stored()

    ids, mask, types, positions = make_inputs(V, cfg["pad_token_id"], 1, True, P, seed=515)
    h = bert_body(w, "roberta.", cfg, ids, mask, types, positions)
    write_adapters(out, w, lambda w: bert_body(w, "roberta.", cfg, ids, mask, types, positions), 5152,
                   ["query", "value"])
    t = layer_norm(gelu(linear(h, w, "lm_head.dense")), w, "lm_head.layer_norm", cfg["layer_norm_eps"])
    logits = t @ w["roberta.embeddings.word_embeddings.weight"].T + w["lm_head.bias"]
    pooled = torch.tanh(linear(h[:, 0], w, "roberta.pooler.dense"))
    torch_bert_check(cfg, w, "roberta.", {"dense.weight": "lm_head.dense.weight", "dense.bias": "lm_head.dense.bias",
                                          "norm.weight": "lm_head.layer_norm.weight",
                                          "norm.bias": "lm_head.layer_norm.bias", "bias": "lm_head.bias"},
                     ids, mask, types, positions, h, logits, pooled)
    os.makedirs(out, exist_ok=True)
    write_config(os.path.join(out, "config.json"), cfg)
    write_checkpoint(out, w)
    save_arrays(out, {**input_arrays(ids, mask, types, positions), "hidden": h, "mlm_logits": logits, "pooled": pooled})


# --------------------------------------------------------------------------- 2. distilbert


def distilbert(out):
    cfg = {
        "model_type": "distilbert", "architectures": ["DistilBertForMaskedLM"],
        "vocab_size": 100, "dim": 48, "n_layers": 3, "n_heads": 4, "hidden_dim": 192,
        "max_position_embeddings": 40, "activation": "gelu", "sinusoidal_pos_embds": False,
        "pad_token_id": 0, "dropout": 0.1, "attention_dropout": 0.1, "qa_dropout": 0.1,
        "seq_classif_dropout": 0.2, "tie_weights_": True, "initializer_range": 0.02,
        "torch_dtype": "float32",
    }
    eps = 1e-12  # DistilBERT's LayerNorms are hard-wired to 1e-12 (no config field)
    V, H, I, P = cfg["vocab_size"], cfg["dim"], cfg["hidden_dim"], cfg["max_position_embeddings"]
    init = Init(6262)
    init.table("distilbert.embeddings.word_embeddings.weight", V, H, 0.5)
    init.table("distilbert.embeddings.position_embeddings.weight", P, H, 0.3)
    init.norm("distilbert.embeddings.LayerNorm", H)
    for i in range(cfg["n_layers"]):
        init_layer(init, "distilbert.transformer.layer.%d." % i, DISTILBERT_LAYER, H, I)
    init.linear("vocab_transform", H, H)
    init.norm("vocab_layer_norm", H)
    init.vector("vocab_projector.bias", V)
    w = init.stored()

    ids, mask, types, positions = make_inputs(V, cfg["pad_token_id"], 1, False, P, seed=626)
    e = "distilbert.embeddings."

    def body(w):
        x = w[e + "word_embeddings.weight"][ids] + w[e + "position_embeddings.weight"][positions]
        h = layer_norm(x, w, e + "LayerNorm", eps)
        prefixes = ["distilbert.transformer.layer.%d." % i for i in range(cfg["n_layers"])]
        return run_layers(w, prefixes, DISTILBERT_LAYER, h, mask, cfg["n_heads"], eps, cfg["activation"])

    h = body(w)
    write_adapters(out, w, body, 6263, ["q_lin", "v_lin", "lin2"], ia3=(["k_lin", "v_lin", "lin2"], ["lin2"]))
    t = layer_norm(gelu(linear(h, w, "vocab_transform")), w, "vocab_layer_norm", eps)
    logits = t @ w[e + "word_embeddings.weight"].T + w["vocab_projector.bias"]
    os.makedirs(out, exist_ok=True)
    write_config(os.path.join(out, "config.json"), cfg)
    write_checkpoint(out, w)
    save_arrays(out, {**input_arrays(ids, mask, types, positions), "hidden": h, "mlm_logits": logits})


# --------------------------------------------------------------------------- 3. electra


def electra(out):
    cfg = {
        "model_type": "electra", "architectures": ["ElectraForPreTraining"],
        "vocab_size": 100, "embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 128, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 40, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "summary_type": "first", "summary_use_proj": True,
        "summary_activation": "gelu", "summary_last_dropout": 0.1, "pad_token_id": 0,
        "position_embedding_type": "absolute", "use_cache": True, "classifier_dropout": None,
        "torch_dtype": "float32",
    }
    V, E, H, I, P = (cfg["vocab_size"], cfg["embedding_size"], cfg["hidden_size"], cfg["intermediate_size"],
                     cfg["max_position_embeddings"])
    init = Init(7373)
    init.table("electra.embeddings.word_embeddings.weight", V, E, 0.5)
    init.table("electra.embeddings.position_embeddings.weight", P, E, 0.3)
    init.table("electra.embeddings.token_type_embeddings.weight", 2, E, 0.3)
    init.norm("electra.embeddings.LayerNorm", E)
    init.linear("electra.embeddings_project", H, E)
    for i in range(cfg["num_hidden_layers"]):
        init_layer(init, "electra.encoder.layer.%d." % i, BERT_LAYER, H, I)
    init.linear("discriminator_predictions.dense", H, H)
    init.linear("discriminator_predictions.dense_prediction", 1, H)
    w = init.stored()

    ids, mask, types, positions = make_inputs(V, cfg["pad_token_id"], 2, False, P, seed=737)
    h = bert_body(w, "electra.", cfg, ids, mask, types, positions, project="electra.embeddings_project")
    # "output.dense" also ends attention.output.dense: both are chosen, as Hugging Face PEFT does.
    write_adapters(out, w, lambda w: bert_body(w, "electra.", cfg, ids, mask, types, positions,
                                               project="electra.embeddings_project"), 7374,
                   ["query", "value", "output.dense"])
    disc = linear(gelu(linear(h, w, "discriminator_predictions.dense")), w,
                  "discriminator_predictions.dense_prediction").squeeze(-1)
    os.makedirs(out, exist_ok=True)
    write_config(os.path.join(out, "config.json"), cfg)
    write_checkpoint(out, w)
    save_arrays(out, {**input_arrays(ids, mask, types, positions), "hidden": h, "discriminator_logits": disc})


# --------------------------------------------------------------------------- 4. albert


def albert(out):
    cfg = {
        "model_type": "albert", "architectures": ["AlbertForMaskedLM"],
        "vocab_size": 100, "embedding_size": 16, "hidden_size": 32, "num_hidden_layers": 3,
        "num_hidden_groups": 1, "inner_group_num": 1, "num_attention_heads": 4,
        "intermediate_size": 128, "hidden_act": "gelu_new", "hidden_dropout_prob": 0,
        "attention_probs_dropout_prob": 0, "max_position_embeddings": 40, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "classifier_dropout_prob": 0.1,
        "position_embedding_type": "absolute", "pad_token_id": 0, "bos_token_id": 2,
        "eos_token_id": 3, "torch_dtype": "float32",
    }
    V, E, H, I, P = (cfg["vocab_size"], cfg["embedding_size"], cfg["hidden_size"], cfg["intermediate_size"],
                     cfg["max_position_embeddings"])
    eps, act = cfg["layer_norm_eps"], cfg["hidden_act"]
    shared = "albert.encoder.albert_layer_groups.0.albert_layers.0."
    init = Init(8484)
    init.table("albert.embeddings.word_embeddings.weight", V, E, 0.5)
    init.table("albert.embeddings.position_embeddings.weight", P, E, 0.3)
    init.table("albert.embeddings.token_type_embeddings.weight", 2, E, 0.3)
    init.norm("albert.embeddings.LayerNorm", E)
    init.linear("albert.encoder.embedding_hidden_mapping_in", H, E)
    init_layer(init, shared, ALBERT_LAYER, H, I)
    init.linear("albert.pooler", H, H)
    init.linear("predictions.dense", E, H)
    init.norm("predictions.LayerNorm", E)
    init.vector("predictions.bias", V)
    w = init.stored()

    ids, mask, types, positions = make_inputs(V, cfg["pad_token_id"], 2, False, P, seed=848)
    e = "albert.embeddings."
    # num_hidden_groups 1, inner_group_num 1: layer i uses group int(i / (L / groups)) = 0.
    L, G = cfg["num_hidden_layers"], cfg["num_hidden_groups"]
    groups = [int(i / (L / G)) for i in range(L)]
    assert groups == [0, 0, 0]

    def body(w):
        x = (w[e + "word_embeddings.weight"][ids] + w[e + "position_embeddings.weight"][positions] +
             w[e + "token_type_embeddings.weight"][types])
        h = linear(layer_norm(x, w, e + "LayerNorm", eps), w, "albert.encoder.embedding_hidden_mapping_in")
        return run_layers(w, [shared] * L, ALBERT_LAYER, h, mask, cfg["num_attention_heads"], eps, act)

    h = body(w)
    # The adapters sit on the one shared layer's modules, so every layer runs them.
    write_adapters(out, w, body, 8485, ["query", "value", "ffn"],
                   ia3=(["key", "value", "ffn_output"], ["ffn_output"]))
    pooled = torch.tanh(linear(h[:, 0], w, "albert.pooler"))
    t = layer_norm(gelu_new(linear(h, w, "predictions.dense")), w, "predictions.LayerNorm", eps)
    logits = t @ w[e + "word_embeddings.weight"].T + w["predictions.bias"]
    os.makedirs(out, exist_ok=True)
    write_config(os.path.join(out, "config.json"), cfg)
    write_checkpoint(out, w)
    save_arrays(out, {**input_arrays(ids, mask, types, positions), "hidden": h, "mlm_logits": logits,
                      "pooled": pooled})


# --------------------------------------------------------------------------- 5. mpnet


def relative_position_bucket(relative_position, num_buckets=32, max_distance=128):
    """MPNet's (T5's bidirectional) bucketing of relative_position = key - query, computed as
    the published code does (the logarithm in float32):
      n = -relative_position; half = num_buckets // 2; max_exact = half // 2
      bucket = (half if n < 0 else 0)        # keys after the query use the upper half
             + (|n|                           if |n| < max_exact
                else min(half - 1, max_exact + int(float32(log(|n| / max_exact))
                                                    / log(max_distance / max_exact) * (half - max_exact))))
    With 32 buckets and max_distance 128: key j == query i -> 0; j < i -> 0..15; j > i -> 16..31;
    |j - i| < 8 is exact, beyond: 8 + floor(2 * log2(|j - i| / 8)) capped at 15, i.e.
    |d| 8..11 -> 8, 12..15 -> 9, 16..22 -> 10, 23..31 -> 11, 32..45 -> 12, 46..63 -> 13,
    64..90 -> 14, >= 91 -> 15 (checked against the integer-exact form below)."""
    n = -relative_position
    half = num_buckets // 2
    ret = (n < 0).to(torch.int64) * half
    n = n.abs()
    max_exact = half // 2
    is_small = n < max_exact
    large = max_exact + (torch.log(n.float() / max_exact) / math.log(max_distance / max_exact) *
                         (half - max_exact)).to(torch.int64)
    large = torch.minimum(large, torch.full_like(large, half - 1))
    return ret + torch.where(is_small, n, large)


def relative_position_bucket_exact(d):
    """The same buckets for 32 buckets / max_distance 128 in integer arithmetic:
    8 + floor(2 log2(n / 8)) = bit_length(n * n) + 1 for n >= 8."""
    n = -d
    ret = 16 if n < 0 else 0
    n = abs(n)
    return ret + (n if n < 8 else min(15, (n * n).bit_length() + 1))


def mpnet(out):
    cfg = {
        "model_type": "mpnet", "architectures": ["MPNetForMaskedLM"],
        "vocab_size": 100, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 96, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 40,
        "initializer_range": 0.02, "layer_norm_eps": 1e-05, "relative_attention_num_buckets": 32,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "torch_dtype": "float32",
    }
    V, H, I, P = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["max_position_embeddings"]
    nh, eps, nb = cfg["num_attention_heads"], cfg["layer_norm_eps"], cfg["relative_attention_num_buckets"]
    init = Init(9595)
    init.table("mpnet.embeddings.word_embeddings.weight", V, H, 0.5)
    init.table("mpnet.embeddings.position_embeddings.weight", P, H, 0.3)
    init.norm("mpnet.embeddings.LayerNorm", H)
    for i in range(cfg["num_hidden_layers"]):
        init_layer(init, "mpnet.encoder.layer.%d." % i, MPNET_LAYER, H, I)
    init.table("mpnet.encoder.relative_attention_bias.weight", nb, nh, 1.0)
    init.linear("lm_head.dense", H, H)
    init.norm("lm_head.layer_norm", H)
    init.vector("lm_head.bias", V)
    w = init.stored()

    # The bucket function against its integer-exact form, over a wide range.
    rel = torch.arange(-256, 257, dtype=torch.int64)
    table = relative_position_bucket(rel, nb)
    assert table.tolist() == [relative_position_bucket_exact(d) for d in rel.tolist()]
    assert int(table.min()) == 0 and int(table.max()) == nb - 1

    ids, mask, types, positions = make_inputs(V, cfg["pad_token_id"], 1, True, P, seed=959)
    T = ids.shape[1]
    ar = torch.arange(T, dtype=torch.int64)  # plain 0..T-1, not the padding-offset ids
    buckets = relative_position_bucket(ar[None, :] - ar[:, None], nb)  # [query i, key j]
    bias = w["mpnet.encoder.relative_attention_bias.weight"][buckets].permute(2, 0, 1)  # [nh, T, T]

    e = "mpnet.embeddings."

    def body(w):
        x = w[e + "word_embeddings.weight"][ids] + w[e + "position_embeddings.weight"][positions]
        h = layer_norm(x, w, e + "LayerNorm", eps)
        prefixes = ["mpnet.encoder.layer.%d." % i for i in range(cfg["num_hidden_layers"])]
        return run_layers(w, prefixes, MPNET_LAYER, h, mask, nh, eps, cfg["hidden_act"], bias=bias)

    h = body(w)
    write_adapters(out, w, body, 9596, ["q", "v", "output.dense"])
    t = layer_norm(gelu(linear(h, w, "lm_head.dense")), w, "lm_head.layer_norm", eps)
    logits = t @ w[e + "word_embeddings.weight"].T + w["lm_head.bias"]
    os.makedirs(out, exist_ok=True)
    write_config(os.path.join(out, "config.json"), cfg)
    write_checkpoint(out, w)
    save_arrays(out, {**input_arrays(ids, mask, types, positions), "hidden": h, "mlm_logits": logits,
                      "relative_buckets": buckets, "relative_bucket_table": torch.stack([rel, table], 1)})


# --------------------------------------------------------------------------- 6./7. BERT


BERT_MLM = {"dense.weight": "mlm.dense.weight", "dense.bias": "mlm.dense.bias", "norm.weight": "mlm.norm.weight",
            "norm.bias": "mlm.norm.bias", "bias": "mlm.bias"}


def bert_outputs(cfg, w, seed_inputs, mlm, single_segment=False):
    """hidden, logits (or None), pooled of torch_bert's BERT (keys without prefix, mlm.*);
    with single_segment, every token type is 0 (single sentences, as sentence-transformers
    encodes them)."""
    ids, mask, types, positions = make_inputs(cfg["vocab_size"], cfg["pad_token_id"],
                                              1 if single_segment else cfg["type_vocab_size"],
                                              False, cfg["max_position_embeddings"], seed_inputs)
    h = bert_body(w, "", cfg, ids, mask, types, positions)
    logits = None
    if mlm:
        t = layer_norm(gelu(linear(h, w, "mlm.dense")), w, "mlm.norm", cfg["layer_norm_eps"])
        logits = t @ w["embeddings.word_embeddings.weight"].T + w["mlm.bias"]
    pooled = torch.tanh(linear(h[:, 0], w, "pooler.dense"))
    torch_bert_check(cfg, w, "", BERT_MLM if mlm else None, ids, mask, types, positions, h, logits, pooled)
    return (ids, mask, types, positions), h, logits, pooled


def sharded(out):
    cfg = torch_bert.base_config("bert")
    w = torch_bert.round_weights(torch_bert.random_weights(cfg, seed=2468), "F32")
    inputs, h, logits, pooled = bert_outputs(cfg, w, 246, True)
    tensors = {torch_bert.hf_key(cfg, k): v for k, v in w.items()}
    names = sorted(tensors)
    half = len(names) // 2
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    os.makedirs(out, exist_ok=True)
    weight_map, total = {}, 0
    for part, chosen in enumerate((names[:half], names[half:])):
        torch_bert.write_safetensors(os.path.join(out, files[part]), {k: ("F32", tensors[k]) for k in chosen},
                                     {"format": "pt"})
        for k in chosen:
            weight_map[k] = files[part]
            total += tensors[k].numel() * 4
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")
    write_config(os.path.join(out, "config.json"), cfg)
    save_arrays(out, {**input_arrays(*inputs), "hidden": h, "mlm_logits": logits, "pooled": pooled})


def sentence_embeddings(h, mask):
    """The four sentence-transformers pooling modes over the real tokens, each L2-normalised."""
    m = mask.to(torch.float64).unsqueeze(-1)  # [B, T, 1]
    total = (h * m).sum(1)
    n = m.sum(1)
    pooled = {
        "mean": total / n,
        "cls": h[:, 0],
        "max": h.masked_fill(m == 0, float("-inf")).max(1).values,
        "mean_sqrt_len": total / torch.sqrt(n),
    }
    # Second formulation, one sentence at a time over its own tokens.
    for b, length in enumerate(BATCH_LENGTHS):
        real = h[b, :length]
        check = {"mean": real.mean(0), "cls": real[0], "max": real.max(0).values,
                 "mean_sqrt_len": real.sum(0) / math.sqrt(length)}
        for k, v in check.items():
            assert float((pooled[k][b] - v).abs().max()) < TOL, k
    out = {}
    for k, v in pooled.items():
        out[k] = v / torch.sqrt((v * v).sum(1, keepdim=True)).clamp_min(1e-12)
        assert float((out[k] - F.normalize(v, p=2.0, dim=1)).abs().max()) < TOL
    return out


def sentence(out):
    cfg = dict(torch_bert.base_config("bert"), architectures=["BertModel"])
    w = torch_bert.round_weights(torch_bert.random_weights(cfg, seed=1357), "F32")
    w = {k: v for k, v in w.items() if not k.startswith("mlm.")}
    inputs, h, _, pooled = bert_outputs(cfg, w, 135, False, single_segment=True)
    H = cfg["hidden_size"]
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    os.makedirs(os.path.join(out, "2_Normalize"), exist_ok=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    with open(os.path.join(out, "modules.json"), "w") as f:
        json.dump(modules, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 32, "do_lower_case": False}, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": H, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
                   "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}, f, indent=2)
        f.write("\n")
    write_config(os.path.join(out, "config.json"), cfg)
    write_checkpoint(out, w)  # BertModel keys: embeddings.*, encoder.*, pooler.*
    sent = sentence_embeddings(h, inputs[1])
    save_arrays(out, {**input_arrays(*inputs), "hidden": h, "pooled": pooled,
                      **{"sentence_" + k: v for k, v in sent.items()}})


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torch_families.py OUTPUT_DIR")
    out = sys.argv[1]
    torch.set_num_threads(1)
    start = time.time()
    for name, fn in (("xlm-roberta", xlm_roberta), ("distilbert", distilbert), ("electra", electra),
                     ("albert", albert), ("mpnet", mpnet), ("sharded", sharded), ("sentence", sentence)):
        fn(os.path.join(out, name))
    print("reference_families: wrote %s in %.2f s" % (out, time.time() - start))


if __name__ == "__main__":
    main()
