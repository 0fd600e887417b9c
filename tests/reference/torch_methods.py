#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Every PEFT method recomputed in PyTorch from its published formulation, against peft.

Usage: /usr/bin/python3 torch_methods.py DUMP_DIR

DUMP_DIR is written by tests/test_method_reference.cpp: for each precision (double/, float/)
  model/{config.json,model.safetensors}   the frozen random BERT, Hugging Face key names
  inputs.safetensors                      ids, mask, segments [B, T]; loss_weights R [B*T, H]
  case<k>.safetensors                     one method: metadata (label, method, config JSON,
                                          task, mode), param.<key> (the policy's values under
                                          its checkpoint keys), frozen.<key> (fused adapters),
                                          dropout.* (hidden-dropout scales the forward drew),
                                          policy_dropout.* (LoRA's input and the fusion's
                                          score dropout scales),
                                          noise.<slot> (MPMP's logistic noise), and peft's
                                          results: output [B*T, H], grad.<key>.

For each case this script builds the method in torch from the config and the tensors (read
by their Hugging Face PEFT / AdapterHub key names), runs the BERT encoder written out below
with the method at the place its paper puts it, takes loss = sum(out * R) (+ the AdapterFusion
regulariser), and lets autograd produce the gradient of every parameter. Double dumps are
recomputed in float64, float dumps in float32 from the same (float) values. A difference is
relative to scale: for the output, max |peft - torch| over the real tokens / max |torch output|;
for a parameter block, max |peft - torch| over the block / the largest |torch gradient| of the
method (over all its blocks; a per-block ratio is meaningless for blocks whose exact gradient is
zero, the attention key biases). It must be <= 1e-10 in double and <= 1e-5 in float for the
output and for every block. The script also fails when a method leaves the
frozen encoder's output unchanged, when a gradient is zero everywhere, or when a dumped
parameter is not used by the reference (a key the published layout does not know).

What is written from where (METHODS.md and the papers; peft's documented departures noted):
  LoRA        h = x W^T + b + s dropout(x) A^T B^T on the targeted linears, s = lora_alpha / r,
              or lora_alpha / sqrt(r) with use_rslora (Hu et al.; Kalajdzievski 2023;
              huggingface/peft LoraLayer.update_layer).
  adapters    A(z) = z + act(z Wd^T + bd) Wu^T + bu. Houlsby: attention and FFN outputs,
              after dropout, before residual + LayerNorm (adapter-bert); LiST: linear, no
              bias, before dropout (microsoft/LiST AdapeterLayer); Pfeiffer: FFN only, ReLU,
              after dropout. peft's documented departure: its Pfeiffer adapter reads the FFN
              output h instead of LN(h + x) (AdapterHub original_ln_before); mirrored here.
  prefix      per layer keys/values [P_k; K], [P_v; V] after the projections, prefix columns
              always visible, queries from real tokens only; P = Linear(tanh(Linear(E))) with
              the MLP, or the bare [n, 2*L*H] prompt_embeddings, viewed [n, 2L, N_h, d_h]
              (index 2l keys, 2l+1 values) as huggingface/peft's get_prompt.
  mask        W_eff = W * 1[S > tau]; backward straight-through dS = dL/dM (maskbert
              _Binarizer1), i.e. a binariser whose backward is the identity.
  side        out = sigmoid(a) * base + (1 - sigmoid(a)) * side(h0) (side-tuning's alpha
              blend); the side networks (MLP, one post-LN Transformer layer) are peft's own.
  full        every linear W + dW, b + db.
  fusion      AdapterHub BertFusion at the FFN output: Q = h Wq^T + bq, K_n = up_n Wk^T + bk,
              V_n = up_n Wv^T, alpha = softmax_n(dropout(<Q, K_n>) / T), out = sum_n alpha_n V_n + h,
              loss += w * sum_l ||I - Wv||_F^2 (peft's documented departure: query and
              adapters read the FFN output h).
  mpmp        r = sigmoid((R[t] + noise) / tau) (relaxed Bernoulli, train mode),
              r^ = r / (sum r + 1e-12), P_k = z_k A (viewed [n, H]), p = sum_k r^_k P_k added
              to positions 1..n of the input of every layer (deep) or of layer 0 (shallow);
              materialised (the downstream form): the P_k themselves are the parameters.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

TOLERANCE = {"double": 1e-10, "float": 1e-5}
DTYPES = {"double": torch.float64, "float": torch.float32}
LINEARS = {  # Hugging Face BERT module path inside a layer -> role
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
}


# --------------------------------------------------------------------------- safetensors


def read_safetensors(path):
    """Returns ({name: numpy array}, metadata dict). F32/F64/I64/I32 only."""
    kinds = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4"}
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[b:end], dtype=kinds[e["dtype"]]).reshape(e["shape"]).copy()
    return out, meta


# --------------------------------------------------------------------------- the encoder


class Params:
    """The policy's tensors as leaf tensors with gradients; records which keys were used."""

    def __init__(self, arrays, dtype):
        self.t = {k[len("param."):]: torch.tensor(v, dtype=dtype, requires_grad=True)
                  for k, v in arrays.items() if k.startswith("param.")}
        self.frozen = {k[len("frozen."):]: torch.tensor(v, dtype=dtype)
                       for k, v in arrays.items() if k.startswith("frozen.")}
        self.used, self.used_frozen = set(), set()

    def __getitem__(self, key):
        if key not in self.t:
            raise Mismatch("tensor %s expected (from the config), not in the dump" % key)
        self.used.add(key)
        return self.t[key]

    def vec(self, key):
        return self[key].reshape(-1)

    def unused(self):
        return sorted(set(self.t) - self.used) + sorted(set(self.frozen) - self.used_frozen)


def activation(name, x):
    if name == "relu":
        return torch.relu(x)
    if name == "gelu":
        return F.gelu(x)
    if name == "gelu_new":
        return F.gelu(x, approximate="tanh")
    if name == "swish":
        return x * torch.sigmoid(x)
    if name == "identity":
        return x
    raise ValueError("unknown activation " + name)


def attention(q, k, v, key_mask, heads):
    """Multi-head scaled dot-product attention. q [B,T,D]; k, v [B,S,D]; key_mask [B,S] bool."""
    B, T, D = q.shape
    S = k.shape[1]
    dh = D // heads

    def split(x, n):
        return x.reshape(B, n, heads, dh).transpose(1, 2)

    scores = split(q, T) @ split(k, S).transpose(-1, -2) / math.sqrt(dh)
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return (torch.softmax(scores, -1) @ split(v, S)).transpose(1, 2).reshape(B, T, D)


class Method:
    """The frozen encoder alone; subclasses change it where their paper does."""

    def __init__(self, P, cfg, model_cfg, extra):
        self.P, self.cfg, self.model_cfg, self.extra = P, cfg, model_cfg, extra

    def linear(self, l, role, x, W, b):  # a frozen linear map y = x W^T + b
        return x @ W.T + b

    def prefix(self, l):  # (P_k, P_v) of layer l, [n, H] each, or None
        return None

    def layer_input(self, l, h):  # before layer l
        return h

    def sublayer(self, l, which, h, drop, x):  # the projection output h of a sub-layer, x its input
        return h * drop

    def output(self, h0, h):
        return h

    def loss_extra(self):
        return 0.0


def encoder(W, mcfg, ids, segments, mask, drops, method):
    """BERT (post-LN) in train mode with the given hidden-dropout scales; returns [B, T, H]."""
    B, T = ids.shape
    H, eps, heads = mcfg["hidden_size"], mcfg["layer_norm_eps"], mcfg["num_attention_heads"]
    x = (W["bert.embeddings.word_embeddings.weight"][ids] +
         W["bert.embeddings.position_embeddings.weight"][torch.arange(T)][None] +
         W["bert.embeddings.token_type_embeddings.weight"][segments])
    h = F.layer_norm(x, (H,), W["bert.embeddings.LayerNorm.weight"], W["bert.embeddings.LayerNorm.bias"], eps)
    h = h * drops["embeddings"]
    h0 = h
    real = mask.bool()
    for l in range(mcfg["num_hidden_layers"]):
        p = "bert.encoder.layer.%d." % l

        def lin(role_path, inp):
            return method.linear(l, LINEARS[role_path], inp, W[p + role_path + ".weight"], W[p + role_path + ".bias"])

        h = method.layer_input(l, h)
        q, k, v = lin("attention.self.query", h), lin("attention.self.key", h), lin("attention.self.value", h)
        key_mask = real
        pre = method.prefix(l)
        if pre is not None:
            pk, pv = pre
            n = pk.shape[0]
            k = torch.cat([pk[None].expand(B, n, -1), k], 1)
            v = torch.cat([pv[None].expand(B, n, -1), v], 1)
            key_mask = torch.cat([torch.ones(B, n, dtype=torch.bool), real], 1)
        a = lin("attention.output.dense", attention(q, k, v, key_mask, heads))
        a = method.sublayer(l, "attention", a, drops["attention"][l], h)
        h1 = F.layer_norm(a + h, (H,), W[p + "attention.output.LayerNorm.weight"],
                          W[p + "attention.output.LayerNorm.bias"], eps)
        f = lin("output.dense", F.gelu(lin("intermediate.dense", h1)))
        f = method.sublayer(l, "ffn", f, drops["ffn"][l], h1)
        h = F.layer_norm(f + h1, (H,), W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps)
    return method.output(h0, h)


# --------------------------------------------------------------------------- the methods


ROLE_PATH = {role: path for path, role in LINEARS.items()}


class Mismatch(Exception):
    """The dump does not have the tensors the method's config and published layout call for."""


def chosen_layers(layers, num_layers):
    """A config's layer list; empty means every layer."""
    return sorted(layers) if layers else list(range(num_layers))


def check_shape(t, shape, key):
    if tuple(t.shape) != tuple(shape):
        raise Mismatch("tensor %s shape expected %s, got %s" % (key, list(shape), list(t.shape)))
    return t


class LoRA(Method):
    """Hu et al. 2022: h = W0 x + (alpha / r) B A x on the targeted linears; rsLoRA
    (Kalajdzievski 2023) divides by sqrt(r) instead of r."""

    def __init__(self, *a):
        super().__init__(*a)
        c = self.cfg
        self.scaling = c["lora_alpha"] / (math.sqrt(c["r"]) if c.get("use_rslora", False) else c["r"])
        self.paths = {}  # huggingface/peft keys: base_model.model.<module path>.lora_A.weight
        for l in chosen_layers(c["layers_to_transform"], self.model_cfg["num_hidden_layers"]):
            for role in c["target_modules"]:
                self.paths[(l, role)] = "base_model.model.bert.encoder.layer.%d.%s." % (l, ROLE_PATH[role])

    def linear(self, l, role, x, W, b):
        y = x @ W.T + b
        base = self.paths.get((l, role))
        if base is not None:
            r = self.cfg["r"]
            A = check_shape(self.P[base + "lora_A.weight"], (r, W.shape[1]), base + "lora_A.weight")
            Bm = check_shape(self.P[base + "lora_B.weight"], (W.shape[0], r), base + "lora_B.weight")
            if self.cfg["lora_dropout"] > 0 and self.extra["mode"] == "train":
                x = x * self.extra["policy_dropout"]["%d.%s" % (l, role)]  # dropout on the LoRA input only
            y = y + self.scaling * (x @ A.T) @ Bm.T
        return y


def bottleneck_size(cfg, width):
    """m: bottleneck_size, or width // reduction_factor (AdapterHub's reduction factor)."""
    return cfg["bottleneck_size"] if cfg["bottleneck_size"] > 0 else max(1, int(width // cfg["reduction_factor"]))


def bottleneck(get, prefix, cfg, width):
    """A(z) = z + act(z Wd^T + bd) Wu^T + bu: returns the branch function (without residual)."""
    act, bias, m = cfg["non_linearity"], cfg["bias"], bottleneck_size(cfg, width)
    Wd = check_shape(get(prefix + "adapter_down.0.weight"), (m, width), prefix + "adapter_down.0.weight")
    Wu = check_shape(get(prefix + "adapter_up.weight"), (width, m), prefix + "adapter_up.weight")
    bd = get(prefix + "adapter_down.0.bias").reshape(-1) if bias else None
    bu = get(prefix + "adapter_up.bias").reshape(-1) if bias else None

    def branch(z):
        u = z @ Wd.T
        if bd is not None:
            u = u + bd
        d = activation(act, u) @ Wu.T
        if bu is not None:
            d = d + bu
        return d

    return branch


def adapter_prefix(l, which, name):
    return "encoder.layer.%d.%s.adapters.%s." % (l, "attention.output" if which == "attention" else "output", name)


class Adapters(Method):
    """Houlsby (after dropout), LiST (before dropout, linear, no bias), Pfeiffer (FFN only)."""

    def __init__(self, *a):
        super().__init__(*a)
        c = self.cfg
        self.before_dropout = c["placement"] == "pre_dropout"
        self.units = {}
        where = {"attention": ["attention"], "ffn": ["ffn"], "both": ["attention", "ffn"]}[c["location"]]
        for l in chosen_layers(c["layers"], self.model_cfg["num_hidden_layers"]):
            for which in where:
                self.units[(l, which)] = bottleneck(self.P.__getitem__, adapter_prefix(l, which, c["adapter_name"]), c,
                                                    self.model_cfg["hidden_size"])

    def sublayer(self, l, which, h, drop, x):
        unit = self.units.get((l, which))
        if unit is None:
            return h * drop
        if self.before_dropout:  # LiST: A(Wo a + bo), then dropout
            return (h + unit(h)) * drop
        h = h * drop  # Houlsby / Pfeiffer: dropout, then A
        return h + unit(h)


class Prefix(Method):
    """Li & Liang 2021: trainable keys/values prepended in every layer's self-attention."""

    def __init__(self, *a):
        super().__init__(*a)
        c, m = self.cfg, self.model_cfg
        n, L, H = c["num_virtual_tokens"], m["num_hidden_layers"], m["hidden_size"]
        if c["prefix_projection"] and "prompt_embeddings" not in self.P.t:
            E = check_shape(self.P["prompt_encoder.embedding.weight"], (n, H), "prompt_encoder.embedding.weight")
            check_shape(self.P["prompt_encoder.transform.0.weight"], (c["encoder_hidden_size"], H), "transform.0")
            hid = torch.tanh(E @ self.P["prompt_encoder.transform.0.weight"].T +
                             self.P.vec("prompt_encoder.transform.0.bias"))
            flat = hid @ self.P["prompt_encoder.transform.2.weight"].T + self.P.vec("prompt_encoder.transform.2.bias")
        else:
            flat = self.P["prompt_embeddings"]
        assert flat.shape == (n, 2 * L * H)
        heads = m["num_attention_heads"]
        self.kv = flat.reshape(n, 2 * L, heads, H // heads)  # huggingface/peft get_prompt's view

    def prefix(self, l):
        n = self.kv.shape[0]
        return self.kv[:, 2 * l].reshape(n, -1), self.kv[:, 2 * l + 1].reshape(n, -1)


class Binarize(torch.autograd.Function):
    """maskbert's _Binarizer1: forward 1[s > tau], backward passes the gradient unchanged."""

    @staticmethod
    def forward(ctx, scores, tau):
        return (scores > tau).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class Mask(Method):
    """Zhao et al. 2020: W_eff = W * 1[S > tau], straight-through to the scores."""

    def __init__(self, *a):
        super().__init__(*a)
        c = self.cfg
        self.scores = {(l, role): "bert.encoder.layer.%d.%s.weight_mask" % (l, ROLE_PATH[role])
                       for l in chosen_layers(c["layers"], self.model_cfg["num_hidden_layers"])
                       for role in c["target_modules"]}

    def linear(self, l, role, x, W, b):
        key = self.scores.get((l, role))
        if key is not None:
            W = W * Binarize.apply(check_shape(self.P[key], W.shape, key), self.cfg["threshold"])
        return x @ W.T + b


class Full(Method):
    """Full fine-tuning as an update of every linear: (W + dW) x + b + db."""

    def linear(self, l, role, x, W, b):
        path = [k for k, r in LINEARS.items() if r == role][0]
        key = "encoder.layer.%d.%s" % (l, path)
        return x @ (W + self.P[key + ".weight"]).T + b + self.P.vec(key + ".bias")


class Side(Method):
    """Zhang et al. 2020: out = alpha * base + (1 - alpha) * side(x), alpha = sigmoid(a)."""

    def output(self, h0, h):
        c, P = self.cfg, self.P
        act = c["side_activation"]

        def lin(name, x):
            return x @ P["side_tuning." + name + ".weight"].T + P.vec("side_tuning." + name + ".bias")

        if c["side_network"] == "mlp":
            side = lin("side.mlp.fc2", activation(act, lin("side.mlp.fc1", h0)))
        else:
            t, eps = "side.transformer.", c["side_layer_norm_eps"]
            d = c["side_hidden_size"]

            def ln(name, x):
                return F.layer_norm(x, (d,), P.vec("side_tuning." + t + name + ".weight"),
                                    P.vec("side_tuning." + t + name + ".bias"), eps)

            x = lin(t + "input", h0)
            ctx = attention(lin(t + "layer.attention.self.query", x), lin(t + "layer.attention.self.key", x),
                            lin(t + "layer.attention.self.value", x), self.extra["mask"].bool(), c["side_num_heads"])
            x1 = ln("layer.attention.output.LayerNorm", lin(t + "layer.attention.output.dense", ctx) + x)
            f = lin(t + "layer.output.dense", activation(act, lin(t + "layer.intermediate.dense", x1)))
            side = lin(t + "output", ln("layer.output.LayerNorm", f + x1))
        assert c["alpha_mode"] == "learned"
        alpha = torch.sigmoid(P["side_tuning.alpha"].reshape(()))
        return alpha * h + (1 - alpha) * side


class Fusion(Method):
    """Pfeiffer et al. 2021 (AdapterHub BertFusion) over frozen adapters at the FFN output."""

    def __init__(self, *a):
        super().__init__(*a)
        c = self.cfg
        self.name = c["fusion_name"]
        self.adapters = c["adapters"]
        self.layers = set(chosen_layers(self.adapters[0]["layers"], self.model_cfg["num_hidden_layers"]))
        for ac in self.adapters:
            if ac["location"] != "ffn" or ac["placement"] != "post_dropout":
                raise Mismatch("fused adapter %s expected at the FFN output, after dropout" % ac["adapter_name"])
        self.reg = []

    def frozen(self, key):
        if key not in self.P.frozen:
            raise Mismatch("fused adapter tensor %s expected, not in the dump" % key)
        self.P.used_frozen.add(key)
        return self.P.frozen[key]

    def sublayer(self, l, which, h, drop, x):
        h = h * drop
        if which != "ffn" or l not in self.layers:
            return h
        pre = "encoder.layer.%d.output.adapter_fusion_layer.%s." % (l, self.name)
        P = self.P
        ups = [bottleneck(self.frozen, adapter_prefix(l, "ffn", ac["adapter_name"]), ac, h.shape[-1])(h)
               for ac in self.adapters]
        Q = h @ P[pre + "query.weight"].T + P.vec(pre + "query.bias")
        K = [u @ P[pre + "key.weight"].T + P.vec(pre + "key.bias") for u in ups]
        Wv = P[pre + "value.weight"]
        V = [u @ Wv.T for u in ups]
        s = torch.stack([(Q * k).sum(-1) for k in K], -1)
        if self.cfg["dropout_prob"] > 0 and self.extra["mode"] == "train":
            s = s * self.extra["policy_dropout"]["%d" % l]  # BertFusion: dropout on the scores
        s = s / self.cfg["temperature"]
        alpha = torch.softmax(s, -1)
        self.reg.append(((torch.eye(Wv.shape[0], dtype=Wv.dtype) - Wv) ** 2).sum())
        return sum(alpha[..., i:i + 1] * V[i] for i in range(len(V))) + h

    def loss_extra(self):
        return float(self.extra["regularization_weight"]) * sum(self.reg)


class ModularPrompt(Method):
    """Sun et al. 2022 (MPMP): routed modular prompts added to positions 1..n of layer inputs."""

    def __init__(self, *a):
        super().__init__(*a)
        c = self.cfg
        self.M, self.n, self.tau = c["num_modules"], c["num_prompt_tokens"], c["temperature"]
        self.task = int(self.extra["task"])
        assert c["task"] == self.task and c["sample_router"]

    def layer_input(self, l, h):
        c = self.cfg
        if not c["deep"] and l > 0:
            return h
        s = l if c["deep"] else 0
        M, n, H = self.M, self.n, h.shape[-1]
        S = self.model_cfg["num_hidden_layers"] if c["deep"] else 1
        check_shape(self.P["router"], (c["num_tasks"], S * M), "router")
        if c["materialized"]:  # downstream: the module prompts z_k A themselves are the parameters
            modules = check_shape(self.P["prompt.%d" % s], (M, n * H), "prompt.%d" % s)
        else:
            Z = check_shape(self.P["z"], (S * M, c["intrinsic_dim"]), "z")[s * M:(s + 1) * M]
            modules = Z @ check_shape(self.P["A.%d" % s], (c["intrinsic_dim"], n * H), "A.%d" % s)
        logits = self.P["router"][self.task, s * M:(s + 1) * M]
        noise = self.extra["noise"][s].reshape(-1)
        r = torch.sigmoid((logits + noise) / self.tau)  # RelaxedBernoulli(tau, logits).rsample()
        rh = r / (r.sum() + 1e-12)
        prompt = sum(rh[k] * modules[k].reshape(n, H) for k in range(M))  # P_k = z_k A, [n, H]
        pad = torch.zeros_like(h)
        pad[:, 1:1 + n] = prompt
        return h + pad


METHODS = {"head": Method, "lora": LoRA, "houlsby": Adapters, "pfeiffer": Adapters, "list-adapter": Adapters,
           "prefix": Prefix, "mask": Mask, "full": Full, "side": Side, "fusion": Fusion, "mpmp": ModularPrompt}


# --------------------------------------------------------------------------- comparison


def rel_diff(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    scale = float(np.abs(ref).max())
    return float(np.abs(ours - ref).max()) / (scale if scale > 0 else 1.0), scale


def run_precision(root, prec):
    dtype = DTYPES[prec]
    d = os.path.join(root, prec)
    with open(os.path.join(d, "model", "config.json")) as f:
        mcfg = json.load(f)
    W = {k: torch.tensor(v, dtype=dtype) for k, v in read_safetensors(os.path.join(d, "model", "model.safetensors"))[0].items()}
    inp, _ = read_safetensors(os.path.join(d, "inputs.safetensors"))
    ids, segments, mask = torch.tensor(inp["ids"]), torch.tensor(inp["segments"]), torch.tensor(inp["mask"])
    B, T = ids.shape
    H = mcfg["hidden_size"]
    R = torch.tensor(inp["loss_weights"], dtype=dtype).reshape(B, T, H)
    real = mask.numpy().reshape(-1).astype(bool)
    rows, problems, frozen_out = [], [], None
    k = 0
    while os.path.exists(os.path.join(d, "case%d.safetensors" % k)):
        arrays, meta = read_safetensors(os.path.join(d, "case%d.safetensors" % k))
        k += 1
        label, name = meta["label"], meta["method"]
        cfg = json.loads(meta["config"])
        P = Params(arrays, dtype)
        L = mcfg["num_hidden_layers"]
        if meta["mode"] == "train":
            drops = {"embeddings": torch.tensor(arrays["dropout.embeddings"], dtype=dtype).reshape(B, T, H),
                     "attention": [torch.tensor(arrays["dropout.attention.%d" % l], dtype=dtype).reshape(B, T, H)
                                   for l in range(L)],
                     "ffn": [torch.tensor(arrays["dropout.ffn.%d" % l], dtype=dtype).reshape(B, T, H)
                             for l in range(L)]}
        else:
            drops = {"embeddings": 1.0, "attention": [1.0] * L, "ffn": [1.0] * L}
        B_T = (B, T)
        extra = {"task": meta["task"], "mask": mask, "regularization_weight": meta["regularization_weight"],
                 "mode": meta["mode"],
                 "policy_dropout": {key[len("policy_dropout."):]: torch.tensor(v, dtype=dtype).reshape(B_T + v.shape[1:])
                                    for key, v in arrays.items() if key.startswith("policy_dropout.")},
                 "noise": {int(key.split(".")[1]): torch.tensor(v, dtype=dtype)
                           for key, v in arrays.items() if key.startswith("noise.")}}
        try:
            method = METHODS[name](P, cfg, mcfg, extra)
            out = encoder(W, mcfg, ids, segments, mask, drops, method)
        except Mismatch as e:
            problems.append("%s %s: %s" % (prec, label, e))
            continue
        loss = (out * R).sum() + method.loss_extra()
        leaves = [P.t[key] for key in sorted(P.t)]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True) if leaves else []
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]  # unused: reported below
        out_np = out.detach().reshape(B * T, H).numpy()
        d_out, _ = rel_diff(arrays["output"][real], out_np[real])
        # The scale of a gradient is the largest reference gradient of the method (over all its
        # parameters): some blocks have a reference gradient that is zero up to rounding (the
        # key biases: softmax is invariant to them), where a per-block ratio means nothing.
        keys = sorted(P.t)
        ref_grads = [g.numpy() for g in grads]
        gscale = max([float(np.abs(g).max()) for g in ref_grads] + [0.0])
        if ref_grads and gscale == 0:
            problems.append("%s %s: every reference gradient is zero" % (prec, label))
            gscale = 1.0
        worst, worst_key = 0.0, "-"
        for key, g in zip(keys, ref_grads):
            ours = arrays["grad." + key]
            assert ours.shape == g.shape, (key, ours.shape, g.shape)
            gd = float(np.abs(ours.astype(np.float64) - g).max()) / gscale
            if os.environ.get("PEFT_REF_VERBOSE"):
                print("  %s %s %s diff %.2e (block scale %.2e)" % (prec, label, key, gd, float(np.abs(g).max())))
            if float(np.abs(g).max()) == 0:
                problems.append("%s %s: the reference gradient of %s is zero everywhere" % (prec, label, key))
            if gd >= worst:
                worst, worst_key = gd, key
        for key in P.unused():
            problems.append("%s %s: parameter %s is not used by the reference" % (prec, label, key))
        if name == "head":
            frozen_out = out_np
        elif frozen_out is not None and np.abs(out_np - frozen_out)[real].max() < 1e-3:
            problems.append("%s %s: the method does not change the encoder output" % (prec, label))
        tol = TOLERANCE[prec]
        for what, v in (("output", d_out), ("gradient " + worst_key, worst)):
            if not v <= tol:
                problems.append("%s %s: %s differs by %.3g (relative), tolerance %g" % (prec, label, what, v, tol))
        rows.append((k, label, prec, d_out, worst if P.t else None, len(P.t), sum(int(np.prod(g.shape)) for g in grads)))
    if k == 0:
        problems.append("%s: no cases found in %s" % (prec, d))
    return rows, problems


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torch_methods.py DUMP_DIR")
    torch.set_num_threads(1)
    rows, problems = [], []
    for prec in ("double", "float"):
        r, p = run_precision(sys.argv[1], prec)
        rows += r
        problems += p
    print("| method | precision | output | worst parameter gradient | blocks (values) |")
    print("|---|---|---|---|---|")
    for _, label, prec, d_out, d_grad, nblocks, nvalues in sorted(rows, key=lambda r: (r[0], r[2] != "double")):
        print("| %s | %s | %.1e | %s | %d (%d) |" % (label, prec, d_out, "-" if d_grad is None else "%.1e" % d_grad,
                                                    nblocks, nvalues))
    print("(output: max |peft - torch| / max |torch output|; gradients: the worst block's max |peft - torch| / "
          "the largest |torch gradient| of the method; tolerance: double 1e-10, float 1e-5)")
    if problems:
        print("torch_methods: %d problem(s):" % len(problems))
        for p in problems:
            print("  " + p)
        sys.exit(1)
    print("torch_methods: every method matches its PyTorch reference")


if __name__ == "__main__":
    main()
