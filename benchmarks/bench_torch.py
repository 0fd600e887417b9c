# SPDX-License-Identifier: Apache-2.0
"""PyTorch reference side of peft's benchmarks: a BERT encoder with PEFT methods, timed on CPU.

The model is a post-LN BERT encoder written in plain ``torch.nn`` (no ``transformers``), with
random weights and random inputs, plus one of several parameter-efficient fine-tuning methods
(adapters, LoRA, prefix tuning, mask tuning, side tuning, or full fine-tuning). The script times
either inference steps (forward only) or training steps (forward + cross-entropy + backward +
AdamW over the trainable parameters) and prints exactly one JSON line on stdout:

    {"tokens_per_s": float, "peak_rss_mb": float, "steps": int, "seconds": float}

where tokens = batch * seq * steps over the timed steps (the warm-up steps are not timed) and
peak_rss_mb is the process's peak resident set size. Everything else goes to stderr.

It is meant to be a fair, tuned PyTorch baseline: intra-op threads set explicitly, frozen
parameters excluded from autograd, ``inference_mode`` + ``eval()`` for inference, and bf16 via
CPU autocast.

Usage (Debian's interpreter, which has torch; the ``python3`` on PATH may not):

    /usr/bin/python3 benchmarks/bench_torch.py --config {bert-base,minilm} \\
        --mode {infer,train} --method M --batch 16 --seq 128 --steps N --warmup W \\
        --precision {fp32,bf16} [--threads 2] [--seed 0]

    # Export the eval-mode plain encoder (method none) to ONNX for bench_ort.js, then exit:
    /usr/bin/python3 benchmarks/bench_torch.py --config minilm --batch 16 --seq 128 \\
        --export-onnx /tmp/minilm.onnx

Methods: none (inference only), houlsby, top2-houlsby, list-adapter, prefix, lora, mask, side,
full. In all but ``full`` every backbone parameter is frozen; ``full`` trains every linear map
of every layer, the set peft's full_finetune trains (no embedding table, no LayerNorm).
"""

import argparse
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass

METHODS = ("none", "houlsby", "top2-houlsby", "list-adapter", "prefix", "lora", "mask", "side",
           "full")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=("bert-base", "minilm"), required=True)
    p.add_argument("--mode", choices=("infer", "train"), default="infer")
    p.add_argument("--method", choices=METHODS, default="none")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the timed ones")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export-onnx", metavar="PATH",
                   help="export the eval-mode plain encoder to PATH (ONNX) and exit")
    p.add_argument("--opset", type=int, default=14, help="ONNX opset for --export-onnx")
    args = p.parse_args(argv)
    if args.mode == "train" and args.method == "none" and not args.export_onnx:
        p.error("--method none is inference only; pick a PEFT method (or full) to train")
    if min(args.batch, args.seq, args.threads) < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--batch, --seq, --threads and --steps must be >= 1, --warmup >= 0")
    return args


# The environment must be set before torch (and the OpenBLAS it loads) is imported:
# - OMP_WAIT_POLICY=PASSIVE: torch's OpenMP workers otherwise spin while OpenBLAS's own
#   pthreads run a GEMM, and the two fight over the cores;
# - OPENBLAS_NUM_THREADS: Debian's torch does its GEMMs through OpenBLAS, which would otherwise
#   use every core whatever --threads says.
# setdefault: a value chosen by the caller (e.g. the benchmark driver) wins.
_ARGS = parse_args() if __name__ == "__main__" else None
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if _ARGS is not None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(_ARGS.threads))

import torch  # noqa: E402  (see above)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def log(*parts):
    """Diagnostics go to stderr; stdout carries only the result line."""
    print(*parts, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Model shapes


@dataclass(frozen=True)
class Config:
    vocab: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    positions: int = 512
    token_types: int = 2
    dropout: float = 0.1
    ln_eps: float = 1e-12


CONFIGS = {
    "bert-base": Config(vocab=30522, hidden=768, layers=12, heads=12, ffn=3072),
    "minilm": Config(vocab=30522, hidden=384, layers=6, heads=12, ffn=1536),
}

# PEFT hyper-parameters (fixed by the benchmark's specification).
ADAPTER_BOTTLENECK = 64      # houlsby, top2-houlsby
LIST_ADAPTER_RANK = 128      # list-adapter
PREFIX_TOKENS = 16           # prefix
PREFIX_MLP_HIDDEN = 512      # prefix re-parameterisation MLP
LORA_RANK, LORA_ALPHA = 8, 8  # lora on Q and V
MASK_THRESHOLD = 0.01        # mask: weight kept where score > threshold
MASK_INIT_LOW, MASK_INIT_HIGH = -0.02, (0.02 + 0.01) / 0.05 - 0.02
MASK_UNMASKED_BOTTOM = 2     # mask: the bottom two layers are left unmasked
SIDE_HIDDEN = 64             # side
LEARNING_RATE = 1e-3
ATTENTION_MASK_FILL = -10000.0  # additive mask value for padded key positions (as in BERT)


# --------------------------------------------------------------------------------------------
# BERT encoder


class Embeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab, cfg.hidden)
        self.position = nn.Embedding(cfg.positions, cfg.hidden)
        self.token_type = nn.Embedding(cfg.token_types, cfg.hidden)
        self.norm = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.register_buffer("position_ids", torch.arange(cfg.positions), persistent=False)

    def forward(self, input_ids, token_type_ids):
        positions = self.position_ids[: input_ids.shape[1]]
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with an additive mask.

    ``query``/``key``/``value`` are plain Linears that PEFT methods may replace (LoRA, mask
    tuning). Optional prefix keys/values (prefix tuning) are prepended to K and V.
    """

    def __init__(self, cfg):
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.hidden // cfg.heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def _split_heads(self, t):
        """[B, T, H] -> [B, heads, T, head_dim] (a view, no copy)."""
        b, t_len, _ = t.shape
        return t.view(b, t_len, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, mask_add, prefix_kv=None):
        b, t_len, hidden = x.shape
        # Scale Q rather than the scores: [B,T,H] elements instead of [B,heads,T,S].
        q = self._split_heads(self.query(x)) * self.scale
        k = self._split_heads(self.key(x))
        v = self._split_heads(self.value(x))
        if prefix_kv is not None:
            # Prefix keys/values [heads, P, head_dim], shared across the batch.
            pk, pv = prefix_kv
            k = torch.cat((pk.expand(b, -1, -1, -1), k), dim=2)
            v = torch.cat((pv.expand(b, -1, -1, -1), v), dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2))  # [B, heads, T, S]
        # In place: matmul's backward needs its inputs, not its output.
        scores.add_(mask_add)
        probs = self.dropout(torch.softmax(scores, dim=-1))
        context = torch.matmul(probs, v)  # [B, heads, T, head_dim]
        return context.transpose(1, 2).reshape(b, t_len, hidden)


class Layer(nn.Module):
    """One post-LN transformer layer with four PEFT hook points.

    ``attn_pre``/``ffn_pre`` act on a sub-layer's dense output before its dropout,
    ``attn_post``/``ffn_post`` after the dropout and before residual + LayerNorm.
    They are identities unless a method installs something there.
    """

    def __init__(self, cfg):
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.attn_out = nn.Linear(cfg.hidden, cfg.hidden)
        self.attn_norm = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.ffn_in = nn.Linear(cfg.hidden, cfg.ffn)
        self.ffn_out = nn.Linear(cfg.ffn, cfg.hidden)
        self.ffn_norm = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.attn_pre = nn.Identity()
        self.attn_post = nn.Identity()
        self.ffn_pre = nn.Identity()
        self.ffn_post = nn.Identity()

    def forward(self, x, mask_add, prefix_kv=None):
        a = self.attn_out(self.attention(x, mask_add, prefix_kv))
        a = self.attn_post(self.dropout(self.attn_pre(a)))
        x = self.attn_norm(a + x)
        f = self.ffn_out(F.gelu(self.ffn_in(x)))  # exact (erf) GELU
        f = self.ffn_post(self.dropout(self.ffn_pre(f)))
        return self.ffn_norm(f + x)


class Encoder(nn.Module):
    """Embeddings + a stack of layers; returns the last hidden state [B, T, H]."""

    def __init__(self, cfg):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))

    def run_layers(self, h, attention_mask, prefix=None):
        """Runs the layers over embeddings ``h``.

        ``prefix``: optional [layers, 2, heads, P, head_dim] keys/values; the mask then gets
        P always-visible columns in front.
        """
        if prefix is not None:
            visible = attention_mask.new_ones(attention_mask.shape[0], prefix.shape[3])
            attention_mask = torch.cat((visible, attention_mask), dim=1)
        # [B, 1, 1, S]: 0 where a key may be attended to, a large negative value elsewhere.
        mask_add = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * ATTENTION_MASK_FILL
        for i, layer in enumerate(self.layers):
            h = layer(h, mask_add, None if prefix is None else (prefix[i, 0], prefix[i, 1]))
        return h

    def forward(self, input_ids, attention_mask, token_type_ids, prefix=None):
        return self.run_layers(self.embeddings(input_ids, token_type_ids), attention_mask, prefix)


# --------------------------------------------------------------------------------------------
# PEFT modules


class BottleneckAdapter(nn.Module):
    """Houlsby adapter: h + up(gelu_tanh(down(h))); ``up`` starts at zero (identity at init)."""

    def __init__(self, hidden, bottleneck):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h):
        return h + self.up(F.gelu(self.down(h), approximate="tanh"))


class LinearAdapter(nn.Module):
    """List-adapter: z + (z W1^T) W2^T, low rank, no bias, no activation; W2 starts at zero."""

    def __init__(self, hidden, rank):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(rank, hidden))
        self.w2 = nn.Parameter(torch.zeros(hidden, rank))
        nn.init.kaiming_uniform_(self.w1, a=math.sqrt(5))  # nn.Linear's default init

    def forward(self, z):
        return z + F.linear(F.linear(z, self.w1), self.w2)


class LoRALinear(nn.Module):
    """y = x W^T + b + scale * (x A^T) B^T around a frozen Linear; B starts at zero."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x):
        update = F.linear(F.linear(x, self.lora_a), self.lora_b)
        return self.base(x) + (update if self.scale == 1.0 else self.scale * update)


class _ThresholdMask(torch.autograd.Function):
    """W_eff = W * 1[S > tau], with the straight-through gradient dS = dW_eff * W."""

    @staticmethod
    def forward(ctx, scores, weight, threshold):
        ctx.save_for_backward(weight)
        return weight * (scores > threshold)

    @staticmethod
    def backward(ctx, grad_w_eff):
        (weight,) = ctx.saved_tensors
        return grad_w_eff * weight, None, None


class MaskedLinear(nn.Module):
    """Mask tuning (Zhao et al. 2020): a frozen Linear whose weight is gated by trainable scores.

    Only the weight is masked; the bias is used as is.
    """

    def __init__(self, base, threshold):
        super().__init__()
        self.weight = base.weight  # frozen (requires_grad False)
        self.bias = base.bias
        self.threshold = threshold
        self.scores = nn.Parameter(torch.empty_like(base.weight))
        nn.init.uniform_(self.scores, MASK_INIT_LOW, MASK_INIT_HIGH)

    def forward(self, x):
        w_eff = _ThresholdMask.apply(self.scores, self.weight, self.threshold)
        return F.linear(x, w_eff, self.bias)


class PrefixEncoder(nn.Module):
    """Prefix tuning with the MLP re-parameterisation.

    Embedding(P, H) -> Linear(H, 512) -> tanh -> Linear(512, layers*2*H), reshaped to per-layer
    keys and values split into heads: [layers, 2, heads, P, head_dim].
    """

    def __init__(self, cfg, tokens, mlp_hidden):
        super().__init__()
        self.layers, self.heads = cfg.layers, cfg.heads
        self.head_dim = cfg.hidden // cfg.heads
        self.embedding = nn.Embedding(tokens, cfg.hidden)
        self.mlp = nn.Sequential(nn.Linear(cfg.hidden, mlp_hidden), nn.Tanh(),
                                 nn.Linear(mlp_hidden, cfg.layers * 2 * cfg.hidden))

    def forward(self):
        kv = self.mlp(self.embedding.weight)  # [P, layers*2*H]
        kv = kv.view(kv.shape[0], self.layers, 2, self.heads, self.head_dim)
        return kv.permute(1, 2, 3, 0, 4)  # [layers, 2, heads, P, head_dim]


class SideNetwork(nn.Module):
    """Side tuning: sigmoid(a) * base + (1 - sigmoid(a)) * side_mlp(h0), ``a`` starts at 0."""

    def __init__(self, hidden, side_hidden):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden, side_hidden), nn.ReLU(),
                                 nn.Linear(side_hidden, hidden))
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, h0, base):
        gate = torch.sigmoid(self.alpha)
        return gate * base + (1.0 - gate) * self.mlp(h0)


# --------------------------------------------------------------------------------------------
# The classifier and how each method is installed


class Classifier(nn.Module):
    """Encoder (+ the method's extra modules) and a two-class head on the CLS token."""

    def __init__(self, cfg):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.prefix = None  # PrefixEncoder for method prefix
        self.side = None  # SideNetwork for method side
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden, 2)

    def features(self, input_ids, attention_mask, token_type_ids):
        """The last hidden state [B, T, H] (blended with the side network for method side)."""
        if self.side is not None:
            # The frozen encoder runs without autograd (in train mode: with dropout).
            with torch.no_grad():
                h0 = self.encoder.embeddings(input_ids, token_type_ids)
                base = self.encoder.run_layers(h0, attention_mask)
            return self.side(h0, base)
        prefix = self.prefix() if self.prefix is not None else None  # once per step
        return self.encoder(input_ids, attention_mask, token_type_ids, prefix)

    def forward(self, input_ids, attention_mask, token_type_ids):
        cls = self.features(input_ids, attention_mask, token_type_ids)[:, 0]
        return self.head(self.head_dropout(cls))


def apply_method(model, cfg, method):
    """Freezes the backbone (except for ``full``) and installs the method's trainable modules.

    Modules created here are trainable (requires_grad True by default), as is the head.
    """
    model.encoder.requires_grad_(False)
    layers = model.encoder.layers
    if method == "full":
        # The same trainable set as peft's full_finetune: every linear map (weight and bias)
        # of every layer. peft trains no embedding table and no LayerNorm (its stated
        # departure), so neither does this side; the ratio then compares the same work.
        for layer in layers:
            for module in layer.modules():
                if isinstance(module, nn.Linear):
                    module.requires_grad_(True)
    if method in ("houlsby", "top2-houlsby"):
        chosen = layers if method == "houlsby" else layers[-2:]
        for layer in chosen:
            layer.attn_post = BottleneckAdapter(cfg.hidden, ADAPTER_BOTTLENECK)
            layer.ffn_post = BottleneckAdapter(cfg.hidden, ADAPTER_BOTTLENECK)
    elif method == "list-adapter":
        for layer in layers:
            layer.attn_pre = LinearAdapter(cfg.hidden, LIST_ADAPTER_RANK)
            layer.ffn_pre = LinearAdapter(cfg.hidden, LIST_ADAPTER_RANK)
    elif method == "prefix":
        model.prefix = PrefixEncoder(cfg, PREFIX_TOKENS, PREFIX_MLP_HIDDEN)
    elif method == "lora":
        for layer in layers:
            att = layer.attention
            att.query = LoRALinear(att.query, LORA_RANK, LORA_ALPHA)
            att.value = LoRALinear(att.value, LORA_RANK, LORA_ALPHA)
    elif method == "mask":
        for layer in layers[MASK_UNMASKED_BOTTOM:]:
            att = layer.attention
            att.query = MaskedLinear(att.query, MASK_THRESHOLD)
            att.key = MaskedLinear(att.key, MASK_THRESHOLD)
            att.value = MaskedLinear(att.value, MASK_THRESHOLD)
            layer.attn_out = MaskedLinear(layer.attn_out, MASK_THRESHOLD)
            layer.ffn_in = MaskedLinear(layer.ffn_in, MASK_THRESHOLD)
            layer.ffn_out = MaskedLinear(layer.ffn_out, MASK_THRESHOLD)
    elif method == "side":
        model.side = SideNetwork(cfg.hidden, SIDE_HIDDEN)
    elif method not in ("none", "full"):
        raise ValueError(f"unknown method {method!r}")


# --------------------------------------------------------------------------------------------
# Benchmark


def random_inputs(cfg, batch, seq, seed):
    """Random token ids in [0, vocab), mask all ones, token types zero, labels in {0, 1}."""
    gen = torch.Generator().manual_seed(seed + 1)
    input_ids = torch.randint(0, cfg.vocab, (batch, seq), generator=gen)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    token_type_ids = torch.zeros(batch, seq, dtype=torch.long)
    labels = torch.randint(0, 2, (batch,), generator=gen)
    return input_ids, attention_mask, token_type_ids, labels


def export_onnx(args, cfg):
    """Exports the eval-mode plain encoder: (input_ids, attention_mask) -> last_hidden_state."""

    class EncoderOnly(nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids, attention_mask, torch.zeros_like(input_ids))

    model = EncoderOnly(Encoder(cfg)).eval()
    input_ids, attention_mask, _, _ = random_inputs(cfg, args.batch, args.seq, args.seed)
    start = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(model, (input_ids, attention_mask), args.export_onnx,
                          input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"],
                          opset_version=args.opset, do_constant_folding=True)
    log(f"exported {args.config} [{args.batch}x{args.seq}] to {args.export_onnx} "
        f"(opset {args.opset}) in {time.perf_counter() - start:.1f}s")


def main(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = CONFIGS[args.config]
    if args.seq > cfg.positions:
        sys.exit(f"--seq {args.seq} exceeds the {cfg.positions} positions of {args.config}")
    if args.export_onnx:
        export_onnx(args, cfg)  # --mode, --method and --precision do not apply
        return

    model = Classifier(cfg)
    apply_method(model, cfg, args.method)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_total = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in trainable)
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.config} "
        f"{args.mode} {args.method} {args.precision}, batch {args.batch} x seq {args.seq}: "
        f"{n_train:,} trainable of {n_total:,} parameters (incl. head)")

    input_ids, attention_mask, token_type_ids, labels = random_inputs(
        cfg, args.batch, args.seq, args.seed)
    bf16 = args.precision == "bf16"

    def autocast():
        """bf16: CPU autocast around forward and loss; fp32: a no-op context."""
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    if args.mode == "infer":
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                model.features(input_ids, attention_mask, token_type_ids)
    else:
        model.train()
        optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                logits = model(input_ids, attention_mask, token_type_ids)
                loss = F.cross_entropy(logits, labels)
            loss.backward()
            optimizer.step()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start

    tokens = args.batch * args.seq * args.steps
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    log(f"{args.steps} steps in {seconds:.3f}s: {tokens / seconds:.1f} tokens/s, "
        f"peak RSS {peak_rss_mb:.0f} MiB")
    print(json.dumps({"tokens_per_s": tokens / seconds, "peak_rss_mb": peak_rss_mb,
                      "steps": args.steps, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main(_ARGS)
