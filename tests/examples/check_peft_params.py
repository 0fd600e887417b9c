#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""peft-params: its trainable-parameter tables against counts worked out here by hand.

usage: check_peft_params.py PEFT_PARAMS USE_LITE_DIST

The program must exit 0 and print the BERT-base, BERT-large, RoBERTa-large and USE-lite tables.
Every expected count below is arithmetic on the published shapes (BERT-base/large, RoBERTa-large)
or on the tensor shapes in USE-lite's model.json, from each method's published formulation;
none is copied from the program's output. Each printed share must be count / backbone.
"""
import json
import math
import os
import re
import subprocess
import sys

params_exe, use_lite = sys.argv[1:3]
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


def backbone(layers, h, ffn, vocab, positions, types, pooler=True):
    """Every frozen scalar of a BERT-style encoder with pooler, no MLM head."""
    emb = (vocab + positions + types) * h + 2 * h  # three embedding tables + LayerNorm
    layer = (4 * (h * h + h)  # Q, K, V, attention output
             + (h * ffn + ffn) + (ffn * h + h)  # FFN in, out
             + 4 * h)  # two LayerNorms
    return emb + layers * layer + (h * h + h if pooler else 0)


def bottleneck(width, m, bias=True):
    """One adapter: down [m x width] and up [width x m], with biases m and width."""
    return 2 * width * m + ((m + width) if bias else 0)


r = subprocess.run([params_exe, use_lite], capture_output=True, text=True, timeout=300)
why = "" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]  # the program's own error
check(r.returncode == 0, "peft-params exits 0 (exit %d)%s" % (r.returncode, why))
out = r.stdout
check("skipped" not in out, "no table is skipped")

# Tables: "### title", "Backbone: N parameters (...)", then "| method | setting | trainable | share | ...".
tables = {}
for block in out.split("\n### ")[1:]:
    title = block.splitlines()[0]
    m = re.search(r"^Backbone: ([\d,]+) parameters", block, re.M)
    rows = []
    for line in block.splitlines():
        f = [x.strip() for x in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(f) >= 4 and f[0] != "method":
            rows.append(f)
    tables[title.split(" (")[0]] = (int(m.group(1).replace(",", "")) if m else None, rows)
check(sorted(tables) == ["BERT-base", "BERT-large", "RoBERTa-large", "USE-lite"],
      "four tables: %s" % ", ".join(sorted(tables)))


def expect(table, method, setting_part, want):
    """The row of @p method whose setting contains @p setting_part shows @p want and its share."""
    if table not in tables:
        return check(False, "%s: table missing" % table)
    total, rows = tables[table]
    found = [f for f in rows if f[0] == method and setting_part in f[1]]
    if len(found) != 1:
        return check(False, "%s: one '%s' row with '%s', found %d" % (table, method, setting_part, len(found)))
    f = found[0]
    got = int(f[2].replace(",", "")) if re.fullmatch(r"[\d,]+", f[2]) else None
    check(got == want, "%s %s (%s): %s trainable, expected %s" % (table, method, setting_part, f[2], format(want, ",")))
    share = "%.3f%%" % (100.0 * want / total) if total else "?"
    check(f[3] == share, "%s %s (%s): share %s, expected %s" % (table, method, setting_part, f[3], share))


def expect_backbone(table, want):
    got = tables.get(table, (None, []))[0]
    check(got == want, "%s backbone: %s, expected %s" % (table, got, format(want, ",")))


# BERT-base: 12 layers, hidden 768, FFN 3072, vocab 30522, 512 positions, 2 segment types.
L, H = 12, 768
expect_backbone("BERT-base", backbone(L, H, 3072, 30522, 512, 2))  # 109,482,240, as Hugging Face counts it
# LoRA r=8 on query and value: A [r x in] + B [out x r] per matrix, 2 matrices per layer.
expect("BERT-base", "LoRA", "r=8", L * 2 * 8 * (H + H))  # 294,912
# (IA)3: key and value scaled per output feature, the FFN activation per intermediate feature.
expect("BERT-base", "(IA)3", "key, value", L * (2 * H + 3072))  # 55,296
# Prompt tuning: 20 rows of the embedding width.
expect("BERT-base", "Prompt tuning", "20 virtual", 20 * H)  # 15,360
# BitFit: Q, K, V, attention-output, intermediate and output biases and both LayerNorm biases
# of every layer, and the embedding LayerNorm's.
expect("BERT-base", "BitFit", "every linear", L * (4 * H + 3072 + H + 2 * H) + H)  # 102,144
# Houlsby m=64: two adapters per layer (after attention and after the FFN).
expect("BERT-base", "Houlsby adapter", "m=64", L * 2 * bottleneck(H, 64))  # 2,379,264
# Pfeiffer: one adapter per layer, after the FFN, bottleneck 768 / 16 = 48.
expect("BERT-base", "Pfeiffer adapter", "reduction 16", L * bottleneck(H, H // 16))  # 894,528
# LiST: two linear adapters per layer, r=128, no biases.
expect("BERT-base", "LiST adapter", "r=128", L * 2 * bottleneck(H, 128, bias=False))  # 4,718,592
# Prefix-tuning, bare prefix: n key and n value vectors of width H in every layer.
expect("BERT-base", "Prefix-tuning", "bare prefix", 10 * 2 * L * H)  # 184,320
# With the training MLP (peft's PrefixEncoder): embedding [n x H], Linear(H, 512), Linear(512, 2 L H).
expect("BERT-base", "Prefix-tuning", "training MLP", 10 * H + (H * 512 + 512) + (512 * 2 * L * H + 2 * L * H))
# AdapterFusion, AdapterHub's dynamic config: query and key Linear(H, H) with bias, value without.
expect("BERT-base", "AdapterFusion", "3 Pfeiffer", L * (2 * (H * H + H) + H * H))  # 21,252,096
# Mask-tuning: one score per weight of Q, K, V, attention output, FFN in and out, layers 2..11.
expect("BERT-base", "Mask-tuning", "layers >= 2", (L - 2) * (4 * H * H + 2 * H * 3072))  # 70,778,880

# BERT-large (24 x 1024, FFN 4096), Houlsby at three bottleneck sizes.
expect_backbone("BERT-large", backbone(24, 1024, 4096, 30522, 512, 2))  # 335,141,888
for m in (8, 64, 256):
    expect("BERT-large", "Houlsby adapter", "m=%d" % m, 24 * 2 * bottleneck(1024, m))
# RoBERTa-large: vocab 50265, 514 positions, one segment type. LiST r=128 without biases; the
# LM head adds dense Linear(H, H), its LayerNorm and the output bias (the decoder is tied).
expect_backbone("RoBERTa-large", backbone(24, 1024, 4096, 50265, 514, 1))  # 355,359,744
list_large = 24 * 2 * bottleneck(1024, 128, bias=False)  # 12,582,912, the paper's 12.58M
expect("RoBERTa-large", "LiST adapter", "r=128", list_large)
expect("RoBERTa-large", "LiST adapter + LM head", "lm_head", list_large + (1024 * 1024 + 1024) + 2 * 1024 + 50265)

# USE-lite: shapes read from the TF.js weights manifest.
manifest = json.load(open(os.path.join(use_lite, "model.json")))
weights = {w["name"]: w["shape"] for g in manifest["weightsManifest"] for w in g["weights"] if w["dtype"] == "float32"}
qkv = sorted((n, s) for n, s in weights.items() if "qkv_transform_single/kernel" in n)  # [1, 1, in, 3 * att]
ffn1 = sorted((n, s) for n, s in weights.items() if "FFN/conv1/Tensordot" in n)  # [out, ffn]
layers = [(s[2], s[3] // 3) for _, s in qkv]  # (input width, attention width) per layer
outs = [s[0] for _, s in ffn1]  # sub-layer output width per layer
ffns = [s[1] for _, s in ffn1]
check(len(layers) == 2 and len(outs) == 2,
      "USE-lite model.json: %d layers (input, attention) %s, outputs %s" % (len(layers), layers, outs))
# Every float tensor of the checkpoint is a parameter except scalar constants and the
# precomputed sinusoidal timing signal.
use_backbone = sum(math.prod(s) for n, s in weights.items() if len(s) >= 1 and "TimingSignal" not in n)
expect_backbone("USE-lite", use_backbone)
expect("USE-lite", "LoRA", "r=8", sum(2 * 8 * (i + a) for i, a in layers))  # 24,576
expect("USE-lite", "(IA)3", "key, value", sum(2 * a + f for (i, a), f in zip(layers, ffns)))
# The embedding width is layer 0's input width.
expect("USE-lite", "Prompt tuning", "20 virtual", 20 * layers[0][0])
# Pre-norm, no embedding LayerNorm: the attention norm is as wide as the layer's input.
expect("USE-lite", "BitFit", "every linear",
       sum(3 * a + o + f + o + i + o for (i, a), o, f in zip(layers, outs, ffns)))
expect("USE-lite", "Houlsby adapter", "m=64", sum(2 * bottleneck(o, 64) for o in outs))  # 264,448
# Both layers are masked (a 2-layer encoder); Q, K, V and the attention output map the layer's
# input width to its attention width, then to its output width.
expect("USE-lite", "Mask-tuning", "every layer",
       sum(3 * i * a + a * o + 2 * o * f for (i, a), o, f in zip(layers, outs, ffns)))  # 4,521,984

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
