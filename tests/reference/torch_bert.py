#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Reference BERT / RoBERTa checkpoints and outputs computed by PyTorch.

Usage: /usr/bin/python3 torch_bert.py OUTPUT_DIR

Builds small random models and computes their outputs with PyTorch only:
torch.nn.TransformerEncoderLayer (post-LN, exact-erf GELU, dropout 0) for the layers, and
explicit embeddings (word + position + token type, then LayerNorm). Everything is computed
in float64 from the weights exactly as stored in the checkpoint (float32, float16 or
bfloat16 values), then saved as float32 (and float64 in *_f64.npy).

Folders written under OUTPUT_DIR:
  bert/        F32 BERT checkpoint (bert.* keys, cls.predictions.* MLM head, pooler, a tied
               cls.predictions.decoder.weight and an I64 bert.embeddings.position_ids buffer
               as older transformers versions saved them)
  roberta/     F32 RoBERTa checkpoint (roberta.* keys, lm_head.* MLM head, pooler,
               pad_token_id 1, type_vocab_size 1, positions offset by padding_idx + 1)
  model_f16/   the BERT model with every float tensor stored as F16
  model_bf16/  the BERT model with every float tensor stored as BF16
Each folder holds config.json, model.safetensors, the inputs and the expected outputs:
  inputs_ids.npy, inputs_mask.npy, token_type_ids.npy, position_ids.npy   int64 [B, T]
  hidden.npy [B, T, H], mlm_logits.npy [B, T, V], pooled.npy [B, H]        float32
  hidden_seg0.npy [B, T, H]: hidden states with every token type 0 (peft-encode --ids)
  hidden_f64.npy, mlm_logits_f64.npy, pooled_f64.npy                       float64
  word_embeddings.npy [V, H] float32: the stored word embeddings, exactly
The safetensors files are written with the standard library (struct + json) only.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

BATCH_LENGTHS = [7, 12, 4]  # padded to max(BATCH_LENGTHS)


# --------------------------------------------------------------------------- safetensors


def tensor_bytes(t, dtype):
    """Little-endian bytes of tensor t stored as dtype ('F32', 'F16', 'BF16', 'F64', 'I64')."""
    t = t.detach().contiguous().cpu()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F64":
        return t.to(torch.float64).numpy().astype("<f8").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == "I64":
        return t.to(torch.int64).numpy().astype("<i8").tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> (dtype string, torch tensor). Sorted names, contiguous data,
    header padded with spaces to a multiple of 8 bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name in sorted(tensors):
        dtype, t = tensors[name]
        b = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# --------------------------------------------------------------------------- models


def base_config(model_type):
    cfg = {
        "model_type": model_type,
        "architectures": ["BertForMaskedLM" if model_type == "bert" else "RobertaForMaskedLM"],
        "vocab_size": 100,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "max_position_embeddings": 40,
        "type_vocab_size": 2 if model_type == "bert" else 1,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "pad_token_id": 0 if model_type == "bert" else 1,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "position_embedding_type": "absolute",
    }
    return cfg


def random_weights(cfg, seed):
    """float64 weights under Hugging Face key names, without the model prefix for the body
    ('embeddings.*', 'encoder.*', 'pooler.*') and 'mlm.*' for the MLM head."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    w = {}

    def linear(name, out_f, in_f, gain=1.0):
        w[name + ".weight"] = randn(out_f, in_f, scale=gain / math.sqrt(in_f))
        w[name + ".bias"] = randn(out_f, scale=0.1)

    def norm(name, width):
        w[name + ".weight"] = 1.0 + randn(width, scale=0.2)
        w[name + ".bias"] = randn(width, scale=0.1)

    w["embeddings.word_embeddings.weight"] = randn(V, H, scale=0.5)
    w["embeddings.position_embeddings.weight"] = randn(cfg["max_position_embeddings"], H, scale=0.3)
    w["embeddings.token_type_embeddings.weight"] = randn(cfg["type_vocab_size"], H, scale=0.3)
    norm("embeddings.LayerNorm", H)
    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i
        linear(p + "attention.self.query", H, H, gain=1.5)
        linear(p + "attention.self.key", H, H, gain=1.5)
        linear(p + "attention.self.value", H, H)
        linear(p + "attention.output.dense", H, H)
        norm(p + "attention.output.LayerNorm", H)
        linear(p + "intermediate.dense", I, H)
        linear(p + "output.dense", H, I)
        norm(p + "output.LayerNorm", H)
    linear("pooler.dense", H, H)
    linear("mlm.dense", H, H)
    norm("mlm.norm", H)
    w["mlm.bias"] = randn(V, scale=0.1)
    return w


def round_weights(w, dtype):
    """Weights as they will be read back from a checkpoint stored as dtype, in float64."""
    tt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    return {k: v.to(tt).to(torch.float64) for k, v in w.items()}


def hf_key(cfg, key):
    """Our internal key to the Hugging Face …ForMaskedLM key."""
    roberta = cfg["model_type"] == "roberta"
    if key.startswith("mlm."):
        rest = key[4:]
        if roberta:
            return {"dense.weight": "lm_head.dense.weight", "dense.bias": "lm_head.dense.bias",
                    "norm.weight": "lm_head.layer_norm.weight", "norm.bias": "lm_head.layer_norm.bias",
                    "bias": "lm_head.bias"}[rest]
        return {"dense.weight": "cls.predictions.transform.dense.weight",
                "dense.bias": "cls.predictions.transform.dense.bias",
                "norm.weight": "cls.predictions.transform.LayerNorm.weight",
                "norm.bias": "cls.predictions.transform.LayerNorm.bias",
                "bias": "cls.predictions.bias"}[rest]
    return cfg["model_type"] + "." + key


def make_inputs(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    B, T = len(BATCH_LENGTHS), max(BATCH_LENGTHS)
    V, pad = cfg["vocab_size"], cfg["pad_token_id"]
    ids = torch.full((B, T), pad, dtype=torch.int64)
    mask = torch.zeros((B, T), dtype=torch.int64)
    types = torch.zeros((B, T), dtype=torch.int64)
    for b, n in enumerate(BATCH_LENGTHS):
        # Real tokens avoid the pad id and the last vocabulary row (which holds planted
        # subnormal values in the F16/BF16 checkpoints).
        ids[b, :n] = torch.randint(3, V - 1, (n,), generator=g)
        mask[b, :n] = 1
        if cfg["type_vocab_size"] > 1:
            types[b, n // 2:n] = 1
    if cfg["model_type"] == "roberta":
        # transformers' create_position_ids_from_input_ids: padding_idx + cumsum over non-pad.
        positions = torch.cumsum(mask, dim=1) * mask + pad
    else:
        positions = torch.arange(T, dtype=torch.int64).unsqueeze(0).expand(B, T).clone()
    assert int(positions.max()) < cfg["max_position_embeddings"]
    return ids, mask, types, positions


def forward(cfg, w, ids, mask, types, positions):
    """Returns hidden [B,T,H], mlm logits [B,T,V], pooled [B,H], all float64."""
    H, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions] +
         w["embeddings.token_type_embeddings.weight"][types])
    h = F.layer_norm(x, (H,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    key_padding = mask == 0  # True = ignore this key
    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i
        layer = torch.nn.TransformerEncoderLayer(
            H, cfg["num_attention_heads"], cfg["intermediate_size"], dropout=0.0, activation="gelu",
            batch_first=True, norm_first=False, layer_norm_eps=eps, dtype=torch.float64)
        with torch.no_grad():
            layer.self_attn.in_proj_weight.copy_(torch.cat([w[p + "attention.self.query.weight"],
                                                            w[p + "attention.self.key.weight"],
                                                            w[p + "attention.self.value.weight"]], 0))
            layer.self_attn.in_proj_bias.copy_(torch.cat([w[p + "attention.self.query.bias"],
                                                          w[p + "attention.self.key.bias"],
                                                          w[p + "attention.self.value.bias"]], 0))
            layer.self_attn.out_proj.weight.copy_(w[p + "attention.output.dense.weight"])
            layer.self_attn.out_proj.bias.copy_(w[p + "attention.output.dense.bias"])
            layer.norm1.weight.copy_(w[p + "attention.output.LayerNorm.weight"])
            layer.norm1.bias.copy_(w[p + "attention.output.LayerNorm.bias"])
            layer.linear1.weight.copy_(w[p + "intermediate.dense.weight"])
            layer.linear1.bias.copy_(w[p + "intermediate.dense.bias"])
            layer.linear2.weight.copy_(w[p + "output.dense.weight"])
            layer.linear2.bias.copy_(w[p + "output.dense.bias"])
            layer.norm2.weight.copy_(w[p + "output.LayerNorm.weight"])
            layer.norm2.bias.copy_(w[p + "output.LayerNorm.bias"])
        # Training mode with dropout 0 computes the same function and keeps PyTorch off its
        # fused inference fast path, so the reference is the plain composite implementation.
        layer.train()
        h_next = layer(h, src_key_padding_mask=key_padding).detach()
        diff = float((h_next - manual_bert_layer(cfg, w, i, h, mask)).abs().max())
        assert diff < 1e-10, "TransformerEncoderLayer disagrees with the hand-written layer: %g" % diff
        h = h_next
    t = F.gelu(F.linear(h, w["mlm.dense.weight"], w["mlm.dense.bias"]))
    t = F.layer_norm(t, (H,), w["mlm.norm.weight"], w["mlm.norm.bias"], eps)
    logits = t @ w["embeddings.word_embeddings.weight"].T + w["mlm.bias"]
    pooled = torch.tanh(F.linear(h[:, 0], w["pooler.dense.weight"], w["pooler.dense.bias"]))
    return h, logits, pooled


def manual_bert_layer(cfg, w, i, h, mask):
    """The BERT layer written out by hand, used only to check the wiring of forward()."""
    p = "encoder.layer.%d." % i
    B, T, H = h.shape
    nh = cfg["num_attention_heads"]
    dh = H // nh
    eps = cfg["layer_norm_eps"]

    def lin(x, name):
        return x @ w[p + name + ".weight"].T + w[p + name + ".bias"]

    def heads(x):
        return x.reshape(B, T, nh, dh).transpose(1, 2)

    q, k, v = heads(lin(h, "attention.self.query")), heads(lin(h, "attention.self.key")), heads(
        lin(h, "attention.self.value"))
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
    scores = scores.masked_fill((mask == 0)[:, None, None, :], float("-inf"))
    ctx = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, H)
    a = F.layer_norm(h + lin(ctx, "attention.output.dense"), (H,), w[p + "attention.output.LayerNorm.weight"],
                     w[p + "attention.output.LayerNorm.bias"], eps)
    f = lin(0.5 * lin(a, "intermediate.dense") * (1 + torch.erf(lin(a, "intermediate.dense") / math.sqrt(2))),
            "output.dense")
    return F.layer_norm(a + f, (H,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)


def plant_subnormals(w, dtype):
    """Puts values that are subnormal in the storage dtype into the last word-embedding row
    (never used by the inputs), to test the C++ conversion of subnormals."""
    row = w["embeddings.word_embeddings.weight"][-1]
    if dtype == "F16":
        vals = [2.0 ** -24, -(2.0 ** -24), 3 * 2.0 ** -20, 1023 * 2.0 ** -24, -(513 * 2.0 ** -24)]
    elif dtype == "BF16":
        vals = [2.0 ** -133, -(2.0 ** -130), 3 * 2.0 ** -128, 2.0 ** -126 * 0.5]
    else:
        return
    for k, v in enumerate(vals):
        row[k] = v


def write_model(out_dir, cfg, w_full, storage_dtype, seed_inputs, extras=True):
    os.makedirs(out_dir, exist_ok=True)
    w = round_weights(w_full, storage_dtype)
    if storage_dtype in ("F16", "BF16"):
        planted = {k: v.clone() for k, v in w.items()}
        plant_subnormals(planted, storage_dtype)
        w = round_weights(planted, storage_dtype)
        row = w["embeddings.word_embeddings.weight"][-1]
        assert bool((row[:4] != 0).all()), "subnormals were flushed to zero"
    ids, mask, types, positions = make_inputs(cfg, seed_inputs)
    hidden, logits, pooled = forward(cfg, w, ids, mask, types, positions)

    tensors = {hf_key(cfg, k): (storage_dtype, v) for k, v in w.items()}
    if extras and cfg["model_type"] == "bert":
        # Older transformers checkpoints carry the position-id buffer and the tied decoder.
        tensors["bert.embeddings.position_ids"] = (
            "I64", torch.arange(cfg["max_position_embeddings"], dtype=torch.int64).unsqueeze(0))
        tensors["cls.predictions.decoder.weight"] = (storage_dtype, w["embeddings.word_embeddings.weight"])
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")

    def save(name, a, dtype):
        np.save(os.path.join(out_dir, name), np.ascontiguousarray(a.detach().numpy().astype(dtype)))

    save("inputs_ids.npy", ids, np.int64)
    save("inputs_mask.npy", mask, np.int64)
    save("token_type_ids.npy", types, np.int64)
    save("position_ids.npy", positions, np.int64)
    save("hidden.npy", hidden, np.float32)
    save("mlm_logits.npy", logits, np.float32)
    save("pooled.npy", pooled, np.float32)
    save("hidden_f64.npy", hidden, np.float64)
    save("mlm_logits_f64.npy", logits, np.float64)
    save("pooled_f64.npy", pooled, np.float64)
    save("word_embeddings.npy", w["embeddings.word_embeddings.weight"], np.float32)
    # peft-encode's --ids path has no segment input (all token types 0): its reference.
    hidden_seg0, _, _ = forward(cfg, w, ids, mask, torch.zeros_like(types), positions)
    save("hidden_seg0.npy", hidden_seg0, np.float32)
    assert torch.isfinite(hidden).all() and torch.isfinite(logits).all()
    return hidden


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torch_bert.py OUTPUT_DIR")
    out = sys.argv[1]
    torch.set_num_threads(1)
    bert = base_config("bert")
    wb = random_weights(bert, seed=1234)
    h32 = write_model(os.path.join(out, "bert"), bert, wb, "F32", seed_inputs=99)
    h16 = write_model(os.path.join(out, "model_f16"), bert, wb, "F16", seed_inputs=99)
    hb16 = write_model(os.path.join(out, "model_bf16"), bert, wb, "BF16", seed_inputs=99)
    roberta = base_config("roberta")
    wr = random_weights(roberta, seed=4321)
    write_model(os.path.join(out, "roberta"), roberta, wr, "F32", seed_inputs=77)
    # The rounded checkpoints must give visibly different outputs, or they test nothing.
    print("max |hidden(F32) - hidden(F16)|  = %.3g" % float((h32 - h16).abs().max()))
    print("max |hidden(F32) - hidden(BF16)| = %.3g" % float((h32 - hb16).abs().max()))
    print("reference_torch: wrote", out)


if __name__ == "__main__":
    main()
