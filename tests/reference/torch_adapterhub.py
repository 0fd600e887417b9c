#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""AdapterHub bottleneck adapter, head and AdapterFusion folders, and what they compute, from
PyTorch alone.

Usage: /usr/bin/python3 torch_adapterhub.py OUTPUT_DIR

Removes and recreates OUTPUT_DIR and writes under it the folders AdapterHub (`adapters` 1.2.0)
saves with use_safetensors=True: every JSON file as its loaders write it (json.dump with indent 2
and sorted keys, no final newline), every tensor F32, the safetensors files without metadata.
`adapters` itself is not used (nor installed): the folders and the math below were written from its
source (configuration/adapter_config.py, configuration/adapter_fusion_config.py,
configuration/model_adapters_config.py build_full_config, loading.py, heads/base.py,
heads/model_mixin.py, methods/modeling.py, methods/bottleneck.py, models/bert/modeling_bert.py).

  model/          the small random BERT sequence classifier of torch_hf_peft.py (its
                  write_model_folder: config.json with 3 labels, model.safetensors, vocab.txt and the
                  inputs inputs_ids.npy, inputs_mask.npy, token_type_ids.npy int64 [B, T]), and
  text.jsonl      its sentences with labels (next to model/, as torch_hf_peft.py writes them)
  houlsby_flex/   a double_seq_bn (Houlsby) adapter "sentiment" saved from a BertAdapterModel:
                  mh_adapter and output_adapter, swish, reduction_factor 16 (bottleneck 4); keys
                  bert.encoder.layer.{i}.attention.output.adapters.sentiment.{adapter_down.0,adapter_up}.{weight,bias}
                  and the same under bert.encoder.layer.{i}.output.adapters.sentiment., in
                  adapter.safetensors; and its flex classification head (head_config.json,
                  model_head.safetensors: heads.sentiment.1.{weight,bias} [H, H], [H] and
                  heads.sentiment.4.{weight,bias} [3, H], [3]). Expected: hidden.npy, logits.npy and
                  text_probs.json (text.jsonl's sentences one at a time, [CLS] words [SEP])
  pfeiffer_model/ a seq_bn (Pfeiffer) adapter "topic" saved from BertModel (keys without bert.):
                  output_adapter only, relu, reduction_factor 8, leave_out [0], so only
                  encoder.layer.1.output.adapters.topic.*; no head. Expected: hidden.npy
  pfeiffer_static/ a seq_bn adapter "stance" saved from a BertForSequenceClassification (keys with
                  bert.): residual_before_ln false, scaling 2.0, gelu; and its static head
                  (head_config.json with config null, name null, label2id and num_labels;
                  model_head.safetensors: classifier.weight [3, H], classifier.bias [3]). Expected:
                  hidden.npy, logits.npy and text_probs.json
  fusion/         two seq_bn adapters saved from BertModel, a/ and b/ (reduction_factor 16, each with
                  hidden.npy: that adapter alone), and their AdapterFusion a,b/
                  (adapter_fusion_config.json: the "dynamic" config, adapter_names ["a", "b"], name
                  "a,b"; model_adapter_fusion.safetensors:
                  encoder.layer.{i}.output.adapter_fusion_layer.a,b.{query.weight, query.bias,
                  key.weight, key.bias, value.weight}). Expected: fusion/hidden.npy (Fuse(a, b) active)
  houlsby_bin/    houlsby_flex's adapter_config.json with its weights in pytorch_adapter.bin
                  (torch.save of the state dict) and no adapter.safetensors: a folder our reader refuses
hidden.npy is float32 [B, T, H] and logits.npy float32 [B, 3] for model/'s inputs, from float64 math on
the stored float32 values; text_probs.json is in torch_hf_peft.py's write_text_probs format.

The adapter math (methods/modeling.py Adapter.pre_forward / forward / post_forward, called by
bottleneck.py bottleneck_layer_forward from BertSelfOutput and BertOutput; dropout off): a BERT
sub-layer computes h = dense(x), r is its residual input and LN its own LayerNorm; without an adapter
there it returns LN(h + r). With one (mh_adapter: attention.output, output_adapter: output, layers
not in leave_out):
  residual = h                         (residual_before_ln true)
  z = LN(h + r) if original_ln_before else h
  residual = z                         (residual_before_ln false: LN(h + r) or h, as z is)
  up = scaling * (W_up act(W_down z + b_down) + b_up)
  out = up + residual
  y = LN(out + r) if original_ln_after else out + r
act: relu, swish x sigmoid(x), gelu the exact erf form (the file has a `version` key, so AdapterHub
does not rename "gelu" to "gelu_new").
The flex classification head (heads/base.py, layers 2, tanh, use_pooler false) reads the last hidden
state at token 0: logits = W_4 tanh(W_1 h[:, 0] + b_1) + b_4. The static head is
BertForSequenceClassification's: logits = classifier(tanh(pooler(h[:, 0]))) with the model's pooler.
AdapterFusion (bottleneck.py compose_fuse, modeling.py BertFusion; the dynamic config, temperature
off so T = 1, dropout off), at each sub-layer where the fused adapters all sit: the last adapter's
pre_forward gives z and residual as above, and the query is z (query_before_ln false); every fused
adapter reads z and gives its up_k; U stacks them [B, T, k, H];
  Q = W_q z + b_q,  K_k = W_k up_k + b_k,  V_k = W_v up_k (no bias),  p = softmax_k(Q . K_k)
  ctx = sum_k p_k V_k + residual,  y = LN(ctx + r)   (the last adapter's post_forward)
All weights are random, each folder's from a torch.Generator of its own (seeds 21 to 24): adapter
matrices N(0, 0.3^2) and biases N(0, 0.1^2); the flex head's W_1 N(0, 1 / H) and W_4 N(0, 0.25^2),
the static classifier N(0, 0.5^2); the fusion's W_q and W_k N(0, 0.3^2 / H) (N(0, 0.3^2) would make
the softmax one-hot) and W_v the identity plus N(0, 0.3^2 / H). Biases N(0, 0.1^2) throughout.
"""

import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bert  # noqa: E402  (the safetensors writer)
import torch_hf_peft  # noqa: E402  (the model folder, the encoder, write_text_probs)

VERSION = "adapters.1.2.0"
MODEL_NAME = "tiny-bert"  # model.config.name_or_path of the model the adapters were saved from

# BnConfig's dataclass fields and defaults (configuration/adapter_config.py), all of which asdict
# writes; `architecture` is a class attribute, not a field, so a bottleneck config has none.
BN_DEFAULTS = {
    "mh_adapter": None, "output_adapter": None, "reduction_factor": None, "non_linearity": None,
    "original_ln_before": False, "original_ln_after": True, "ln_before": False, "ln_after": False,
    "init_weights": "bert", "init_weights_seed": None, "is_parallel": False, "scaling": 1.0, "use_gating": False,
    "residual_before_ln": True, "adapter_residual_before_ln": False, "inv_adapter": None,
    "inv_adapter_reduction_factor": None, "cross_adapter": False, "leave_out": [], "dropout": 0.0,
    "phm_layer": False, "phm_dim": 4, "factorized_phm_W": True, "shared_W_phm": False, "shared_phm_rule": True,
    "factorized_phm_rule": False, "phm_c_init": "normal", "phm_init_range": 0.0001, "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform", "phm_rank": 1, "phm_bias": True, "stochastic_depth": 0.0,
}
# The presets' own defaults: SeqBnConfig ("seq_bn", formerly "pfeiffer") and DoubleSeqBnConfig
# ("double_seq_bn", formerly "houlsby").
SEQ_BN = {"original_ln_before": True, "original_ln_after": True, "residual_before_ln": True,
          "adapter_residual_before_ln": False, "ln_before": False, "ln_after": False, "mh_adapter": False,
          "output_adapter": True, "non_linearity": "relu", "reduction_factor": 16}
DOUBLE_SEQ_BN = {"original_ln_before": False, "original_ln_after": True, "residual_before_ln": True,
                 "adapter_residual_before_ln": False, "ln_before": False, "ln_after": False, "mh_adapter": True,
                 "output_adapter": True, "non_linearity": "swish", "reduction_factor": 16}
# DynamicAdapterFusionConfig ("dynamic", the default; configuration/adapter_fusion_config.py).
DYNAMIC_FUSION = {"key": True, "query": True, "value": True, "query_before_ln": False, "regularization": True,
                  "residual_before": False, "temperature": False, "value_before_softmax": True,
                  "value_initialized": True, "dropout_prob": None}
# Where each location key puts its adapter in a BERT layer (models/bert/mixin_bert.py).
SITES = (("mh_adapter", "attention.output"), ("output_adapter", "output"))


def bn_config(preset, **fields):
    cfg = dict(BN_DEFAULTS)
    cfg.update(preset)
    cfg.update(fields)
    return cfg


def full_config(config, model_cfg, name, model_class, **extra):
    """The top level AdapterHub's loaders write around a config (build_full_config and the
    name / model_name / model_class they pass)."""
    d = {"config": config, "hidden_size": model_cfg["hidden_size"], "model_class": model_class,
         "model_name": MODEL_NAME, "model_type": model_cfg["model_type"], "name": name, "version": VERSION}
    d.update(extra)
    return d


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)


def write_tensors(path, tensors):
    """safetensors.torch.save_file(state_dict, path): F32, no metadata."""
    torch_bert.write_safetensors(path, {k: ("F32", v) for k, v in tensors.items()})


def save(path, t):
    np.save(path, t.numpy().astype(np.float32))


def activation(name):
    name = name.lower()
    if name == "relu":
        return torch.relu
    if name in ("swish", "silu"):
        return lambda x: x * torch.sigmoid(x)
    if name == "gelu":
        return lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    if name == "gelu_new":  # transformers' NewGELUActivation: the tanh form
        return lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "tanh":
        return torch.tanh
    raise ValueError("activation %r not written out here" % name)


def stored(t):
    """The float32 value a tensor is saved as, in float64."""
    return t.float().double()


def adapter_sites(cfg, num_layers):
    """(layer, site) of every adapter module the config creates, in module order."""
    return [(l, site) for l in range(num_layers) if l not in cfg["leave_out"] for key, site in SITES if cfg[key]]


def make_adapter(cfg, model_cfg, g):
    """Random weights {(layer, site): (W_down [d, H], b_down [d], W_up [H, d], b_up [H])}, d = H // rf."""
    H = model_cfg["hidden_size"]
    d = max(1, int(H // cfg["reduction_factor"]))
    out = {}
    for site in adapter_sites(cfg, model_cfg["num_hidden_layers"]):
        out[site] = tuple(stored(torch.randn(*shape, generator=g, dtype=torch.float64) * scale)
                          for shape, scale in (((d, H), 0.3), ((d,), 0.1), ((H, d), 0.3), ((H,), 0.1)))
    return out


def adapter_tensors(weights, name, prefix):
    """The file's keys: `prefix` is "bert." for a model with a head (BertAdapterModel,
    BertForSequenceClassification), "" for BertModel."""
    t = {}
    for (l, site), (wd, bd, wu, bu) in weights.items():
        p = "%sencoder.layer.%d.%s.adapters.%s." % (prefix, l, site, name)
        t[p + "adapter_down.0.weight"], t[p + "adapter_down.0.bias"] = wd, bd
        t[p + "adapter_up.weight"], t[p + "adapter_up.bias"] = wu, bu
    return t


def pre_forward(cfg, h, r, ln):
    """Adapter.pre_forward: (the adapter's input z, the residual around it)."""
    residual = h if cfg["residual_before_ln"] is True else None
    z = h
    if cfg["original_ln_before"]:
        z = h + r
        if cfg["residual_before_ln"] == "post_add":
            residual = z
        z = ln(z)
    if not cfg["residual_before_ln"]:
        residual = z
    return z, residual


def up_projection(cfg, site_weights, z):
    """Adapter.forward's `up`: scaling * (W_up act(W_down z + b_down) + b_up)."""
    wd, bd, wu, bu = site_weights
    return (activation(cfg["non_linearity"])(z @ wd.T + bd) @ wu.T + bu) * cfg["scaling"]


def post_forward(cfg, out, r, ln):
    return ln(out + r) if cfg["original_ln_after"] else out + r


def bottleneck(cfg, weights):
    """The encoder's sublayer hook for one active bottleneck adapter."""
    def sublayer(layer, site, h, r, ln):
        sw = weights.get((layer, site))
        if sw is None:
            return ln(h + r)
        z, residual = pre_forward(cfg, h, r, ln)
        return post_forward(cfg, up_projection(cfg, sw, z) + residual, r, ln)
    return sublayer


def fuse(adapters, fusion):
    """The encoder's sublayer hook for Fuse(*adapters) active: `adapters` is [(cfg, weights)] in
    the fusion's order, `fusion` {(layer, site): (W_q, b_q, W_k, b_k, W_v)}."""
    last_cfg = adapters[-1][0]

    def sublayer(layer, site, h, r, ln):
        present = [(c, wts[(layer, site)]) for c, wts in adapters if (layer, site) in wts]
        if not present:
            return ln(h + r)
        wq, bq, wk, bk, wv = fusion[(layer, site)]
        z, residual = pre_forward(last_cfg, h, r, ln)
        ups = torch.stack([up_projection(c, sw, z) for c, sw in present], 2)  # [B, T, k, H]
        q = z @ wq.T + bq
        k = ups @ wk.T + bk
        v = ups @ wv.T
        p = torch.softmax((q.unsqueeze(2) * k).sum(-1) / 1.0, -1)  # [B, T, k]
        ctx = (p.unsqueeze(-1) * v).sum(2) + residual
        sublayer.probs.append(p)
        return post_forward(last_cfg, ctx, r, ln)
    sublayer.probs = []
    return sublayer


def write_adapter(out_dir, cfg, model_cfg, name, model_class, tensors):
    os.makedirs(out_dir)
    write_json(os.path.join(out_dir, "adapter_config.json"), full_config(cfg, model_cfg, name, model_class))
    write_tensors(os.path.join(out_dir, "adapter.safetensors"), tensors)


def main():
    t0 = time.time()
    out = sys.argv[1]
    m = torch_hf_peft.write_model_folder(out)
    model_cfg, w, ids, mask, types, labels = m.cfg, m.w, m.ids, m.mask, m.types, m.labels
    H, L = model_cfg["hidden_size"], model_cfg["num_hidden_layers"]
    label2id = {n: i for i, n in enumerate(labels)}

    def run(sublayer, row_ids=ids, row_mask=mask, row_types=types):
        return torch_hf_peft.encoder(model_cfg, w, row_ids, row_mask, row_types, {}, "", sublayer=sublayer)

    plain = run(None)
    changes = {}
    # Wiring check: with W_up and b_up zero, an adapter whose residual is h (residual_before_ln
    # true) leaves BERT's function unchanged, with or without original_ln_before.
    for preset in (SEQ_BN, DOUBLE_SEQ_BN):
        cfg = bn_config(preset)
        zero = {k: (wd, bd, torch.zeros_like(wu), torch.zeros_like(bu))
                for k, (wd, bd, wu, bu) in make_adapter(cfg, model_cfg, torch.Generator().manual_seed(0)).items()}
        assert float((run(bottleneck(cfg, zero)) - plain).abs().max()) < 1e-12

    # 1. double_seq_bn on a BertAdapterModel with a flex classification head.
    g = torch.Generator().manual_seed(21)
    cfg = bn_config(DOUBLE_SEQ_BN, reduction_factor=16, scaling=1.0)
    weights = make_adapter(cfg, model_cfg, g)
    assert len(weights) == 2 * L
    head = {"heads.sentiment.1.weight": stored(torch.randn(H, H, generator=g, dtype=torch.float64) / math.sqrt(H)),
            "heads.sentiment.1.bias": stored(torch.randn(H, generator=g, dtype=torch.float64) * 0.1),
            "heads.sentiment.4.weight": stored(torch.randn(len(labels), H, generator=g, dtype=torch.float64) * 0.25),
            "heads.sentiment.4.bias": stored(torch.randn(len(labels), generator=g, dtype=torch.float64) * 0.1)}

    def flex_logits(row_ids, row_mask, row_types, hook=bottleneck(cfg, weights)):
        hh = run(hook, row_ids, row_mask, row_types)
        t = torch.tanh(F.linear(hh[:, 0], head["heads.sentiment.1.weight"], head["heads.sentiment.1.bias"]))
        return F.linear(t, head["heads.sentiment.4.weight"], head["heads.sentiment.4.bias"])

    d = os.path.join(out, "houlsby_flex")
    houlsby_config, houlsby_tensors = cfg, adapter_tensors(weights, "sentiment", "bert.")
    write_adapter(d, cfg, model_cfg, "sentiment", "BertAdapterModel", houlsby_tensors)
    head_cfg = {"activation_function": "tanh", "bias": True, "dropout_prob": None, "head_type": "classification",
                "label2id": label2id, "layers": 2, "num_labels": len(labels), "use_pooler": False}
    write_json(os.path.join(d, "head_config.json"), full_config(head_cfg, model_cfg, "sentiment", "BertAdapterModel"))
    write_tensors(os.path.join(d, "model_head.safetensors"), head)
    h = run(bottleneck(cfg, weights))
    save(os.path.join(d, "hidden.npy"), h)
    save(os.path.join(d, "logits.npy"), flex_logits(ids, mask, types))
    torch_hf_peft.write_text_probs(os.path.join(d, "text_probs.json"), m.rows, m.voc, labels, flex_logits)
    changes["houlsby_flex"] = h

    # 2. seq_bn on BertModel, layer 0 left out, no head.
    g = torch.Generator().manual_seed(22)
    cfg = bn_config(SEQ_BN, reduction_factor=8, leave_out=[0])
    weights = make_adapter(cfg, model_cfg, g)
    assert sorted(weights) == [(1, "output")]
    d = os.path.join(out, "pfeiffer_model")
    write_adapter(d, cfg, model_cfg, "topic", "BertModel", adapter_tensors(weights, "topic", ""))
    h = run(bottleneck(cfg, weights))
    save(os.path.join(d, "hidden.npy"), h)
    changes["pfeiffer_model"] = h

    # 3. seq_bn on a BertForSequenceClassification (after adapters.init) with its static head.
    g = torch.Generator().manual_seed(23)
    cfg = bn_config(SEQ_BN, residual_before_ln=False, scaling=2.0, non_linearity="gelu")
    weights = make_adapter(cfg, model_cfg, g)
    cls_w = stored(torch.randn(len(labels), H, generator=g, dtype=torch.float64) * 0.5)
    cls_b = stored(torch.randn(len(labels), generator=g, dtype=torch.float64) * 0.1)
    d = os.path.join(out, "pfeiffer_static")
    write_adapter(d, cfg, model_cfg, "stance", "BertForSequenceClassification",
                  adapter_tensors(weights, "stance", "bert."))
    # A static head has no name (PredictionHeadLoader.save drops it), label2id and num_labels
    # come from the model config.
    write_json(os.path.join(d, "head_config.json"),
               full_config(None, model_cfg, None, "BertForSequenceClassification", label2id=model_cfg["label2id"],
                           num_labels=len(labels)))
    write_tensors(os.path.join(d, "model_head.safetensors"), {"classifier.weight": cls_w, "classifier.bias": cls_b})
    h = run(bottleneck(cfg, weights))

    def static_logits(row_ids, row_mask, row_types, hook=bottleneck(cfg, weights)):
        hh = run(hook, row_ids, row_mask, row_types)
        return F.linear(torch.tanh(F.linear(hh[:, 0], w["pooler.dense.weight"], w["pooler.dense.bias"])), cls_w, cls_b)

    save(os.path.join(d, "hidden.npy"), h)
    save(os.path.join(d, "logits.npy"), static_logits(ids, mask, types))
    torch_hf_peft.write_text_probs(os.path.join(d, "text_probs.json"), m.rows, m.voc, labels, static_logits)
    changes["pfeiffer_static"] = h

    # 4. Two seq_bn adapters on BertModel and their AdapterFusion (the dynamic config).
    g = torch.Generator().manual_seed(24)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    fused = []
    for name in ("a", "b"):
        cfg = bn_config(SEQ_BN, reduction_factor=16)
        weights = make_adapter(cfg, model_cfg, g)
        d = os.path.join(out, "fusion", name)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        write_adapter(d, cfg, model_cfg, name, "BertModel", adapter_tensors(weights, name, ""))
        save(os.path.join(d, "hidden.npy"), run(bottleneck(cfg, weights)))
        fused.append((cfg, weights))
    # A fusion layer sits at every layer (leave_out is not consulted) where the fused adapters'
    # location key is true: output only for seq_bn.
    fusion, fusion_tensors = {}, {}
    for l in range(L):
        for key, site in SITES:
            if not all(c[key] for c, _ in fused):
                continue
            # N(0, 0.3) for W_q and W_k would put a softmax of 64-term dot products near one-hot;
            # N(0, 0.3 / sqrt(H)) keeps both adapters in play (p(a) from about 0.15 to 0.9).
            wq = stored(randn(H, H) * 0.3 / math.sqrt(H))
            bq = stored(randn(H) * 0.1)
            wk = stored(randn(H, H) * 0.3 / math.sqrt(H))
            bk = stored(randn(H) * 0.1)
            wv = stored(torch.eye(H, dtype=torch.float64) + randn(H, H) * 0.3 / math.sqrt(H))
            fusion[(l, site)] = (wq, bq, wk, bk, wv)
            p = "encoder.layer.%d.%s.adapter_fusion_layer.a,b." % (l, site)
            fusion_tensors.update({p + "query.weight": wq, p + "query.bias": bq, p + "key.weight": wk,
                                   p + "key.bias": bk, p + "value.weight": wv})
    assert sorted(fusion) == [(l, "output") for l in range(L)]
    d = os.path.join(out, "fusion", "a,b")
    os.makedirs(d)
    write_json(os.path.join(d, "adapter_fusion_config.json"),
               full_config(dict(DYNAMIC_FUSION), model_cfg, "a,b", "BertModel", adapter_names=["a", "b"]))
    write_tensors(os.path.join(d, "model_adapter_fusion.safetensors"), fusion_tensors)
    hook = fuse(fused, fusion)
    h = run(hook)
    save(os.path.join(out, "fusion", "hidden.npy"), h)
    changes["fusion"] = h
    probs = torch.cat([p.reshape(-1, 2) for p in hook.probs])
    print("fusion attention: p(a) from %.3f to %.3f, mean %.3f" % (float(probs[:, 0].min()), float(probs[:, 0].max()),
                                                                   float(probs[:, 0].mean())))
    # Against each adapter alone and against a fusion with the identity value matrix.
    for i, name in enumerate(("a", "b")):
        alone = run(bottleneck(*fused[i]))
        print("max |fusion - %s alone| = %.3g" % (name, float((h - alone).abs().max())))
    ident = {k: v[:4] + (torch.eye(H, dtype=torch.float64),) for k, v in fusion.items()}
    print("max |fusion - fusion with W_v = I| = %.3g" % float((h - run(fuse(fused, ident))).abs().max()))

    # 5. houlsby_flex's adapter as AdapterHub saves it by default: torch.save, no safetensors.
    d = os.path.join(out, "houlsby_bin")
    os.makedirs(d)
    write_json(os.path.join(d, "adapter_config.json"),
               full_config(houlsby_config, model_cfg, "sentiment", "BertAdapterModel"))
    torch.save({k: v.float().contiguous() for k, v in houlsby_tensors.items()}, os.path.join(d, "pytorch_adapter.bin"))

    valid = mask.bool()
    for name, h in changes.items():
        assert h.shape == plain.shape and torch.isfinite(h).all()
        diff = (h - plain).abs()[valid]
        print("%-16s max |hidden - no adapter| = %.3g, mean %.3g" % (name, float(diff.max()), float(diff.mean())))
        assert float(diff.max()) > 0.1, name + ": the adapter hardly changes the hidden states"
    print("torch_adapterhub: wrote %s in %.2f s" % (out, time.time() - t0))


if __name__ == "__main__":
    with torch.no_grad():
        main()
