#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reference values for test_optim and test_losses from PyTorch (torch.optim.SGD / Adam /
AdamW, torch.optim.lr_scheduler.LambdaLR, torch.nn.utils.clip_grad_norm_, F.cross_entropy,
F.kl_div, and the task losses: F.mse_loss, F.binary_cross_entropy_with_logits,
F.cross_entropy(ignore_index=-100), the extractive-QA start/end loss). Writes <out_dir>/optim.json.

The parameter set is two stores, laid out exactly as in tests/test_optim.cpp:
  store 0: a.weight [2x3] (weight), a.bias [3] (bias)
  store 1: b.norm [2] (norm), b.weight [1x2] (weight)
Flat index j runs over store 0 then store 1. Initial value p[j] = sin(0.7 j + 0.3); the
gradient at step t (1-based) is g[j] = cos(1.3 j + 0.5 t) * (1 + 0.1 t).
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

BLOCKS = [  # (store, name, numel, group)
    (0, "a.weight", 6, "weight"),
    (0, "a.bias", 3, "bias"),
    (1, "b.norm", 2, "norm"),
    (1, "b.weight", 2, "weight"),
]
STEPS = 3


def init_values(dtype):
    out, j = [], 0
    for _, _, n, _ in BLOCKS:
        out.append(torch.tensor([math.sin(0.7 * (j + k) + 0.3) for k in range(n)], dtype=dtype, requires_grad=True))
        j += n
    return out


def set_grads(params, t):
    j = 0
    for p in params:
        n = p.numel()
        p.grad = torch.tensor([math.cos(1.3 * (j + k) + 0.5 * t) * (1 + 0.1 * t) for k in range(n)], dtype=p.dtype)
        j += n


def hf_linear(warmup, total):
    # transformers.get_linear_schedule_with_warmup's lambda
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    return f


def run(case, dtype=torch.float64):
    params = init_values(dtype)
    lr = case["lr"]
    groups = []
    for (store, _, _, group), p in zip(BLOCKS, params):
        scale = case.get("store_lr_scale", {}).get(str(store), 1.0)
        if group == "weight":
            wd = case.get("store_wd", {}).get(str(store), case.get("wd", 0.0))
        else:
            wd = 0.0
        groups.append({"params": [p], "lr": lr * scale, "weight_decay": wd})
    kind = case["kind"]
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=case.get("momentum", 0.0),
                              dampening=case.get("dampening", 0.0), nesterov=case.get("nesterov", False))
    elif kind == "adam":
        opt = torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    sched = None
    if "linear_schedule" in case:
        w, tot = case["linear_schedule"]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, hf_linear(w, tot))
    trace = []
    for t in range(1, STEPS + 1):
        set_grads(params, t)
        opt.step()
        if sched is not None:
            sched.step()
        trace.append(torch.cat([p.detach().reshape(-1) for p in params]).double().tolist())
    return trace


CASES = {
    "sgd_plain": {"kind": "sgd", "lr": 0.1},
    "sgd_momentum": {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.1, "wd": 0.01},
    "sgd_nesterov": {"kind": "sgd", "lr": 0.05, "momentum": 0.8, "nesterov": True, "wd": 0.05},
    "adam": {"kind": "adam", "lr": 0.01},
    "adam_l2": {"kind": "adam", "lr": 0.01, "wd": 0.1},
    "adamw": {"kind": "adamw", "lr": 0.01, "wd": 0.1},
    "adamw_store_options": {"kind": "adamw", "lr": 0.01, "wd": 0.1, "store_lr_scale": {"1": 0.5},
                            "store_wd": {"1": 0.3}},
    "adamw_linear_schedule": {"kind": "adamw", "lr": 0.01, "wd": 0.1, "linear_schedule": [1, 3]},
}


def clip_case(scale, max_norm):
    params = init_values(torch.float64)
    set_grads(params, 1)
    for p in params:
        p.grad.mul_(scale)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return {"scale": scale, "max_norm": max_norm, "norm": float(norm),
            "grads": torch.cat([p.grad.reshape(-1) for p in params]).tolist()}


def losses():
    logits = torch.tensor([[0.5, -1.2, 2.0], [1.5, 0.3, -0.7], [-2.0, 0.1, 0.4], [3.0, 2.5, -1.0]],
                          dtype=torch.float64)
    labels = [2, 0, 1, 1]
    weights = torch.tensor([0.1, 0.4, 0.2, 0.3], dtype=torch.float64)
    teacher_logits = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.2, 0.9], [-0.5, 1.5, 0.0], [0.0, 0.0, 0.0]],
                                  dtype=torch.float64)
    q = torch.softmax(teacher_logits, -1)
    q[3] = torch.tensor([0.25, 0.75, 0.0], dtype=torch.float64)  # a zero target: 0 log 0 = 0
    out = {"logits": logits.tolist(), "labels": labels, "weights": weights.tolist(), "teacher": q.tolist()}
    y = torch.tensor(labels)

    def value_grad(fn):
        z = logits.clone().requires_grad_(True)
        v = fn(z)
        v.backward()
        return float(v), z.grad.tolist()

    out["ce_mean"], out["ce_mean_grad"] = value_grad(lambda z: F.cross_entropy(z, y))
    out["ce_weighted"], out["ce_weighted_grad"] = value_grad(
        lambda z: (F.cross_entropy(z, y, reduction="none") * weights).sum())
    out["ce_per_example"] = F.cross_entropy(logits, y, reduction="none").tolist()
    kl = lambda z: F.kl_div(F.log_softmax(z, -1), q, reduction="none").sum(-1)
    out["kl_mean"], out["kl_mean_grad"] = value_grad(lambda z: kl(z).mean())
    out["kl_weighted"], out["kl_weighted_grad"] = value_grad(lambda z: (kl(z) * weights).sum())
    out["kl_per_example"] = kl(logits).tolist()
    return out


def task_losses():
    """Losses of the other task kinds (test_losses.cpp): F.mse_loss, F.binary_cross_entropy_with_logits,
    F.cross_entropy(ignore_index=-100), BertForQuestionAnswering's start/end loss, built from
    torch ops here (clamp(0, T), ignore_index=T, average of the two means), and SetFit's
    cosine-similarity pair loss."""
    def value_grad(z0, fn):
        z = torch.tensor(z0, dtype=torch.float64, requires_grad=True)
        v = fn(z)
        v.backward()
        return {"value": float(v), "grad": z.grad.tolist()}

    out = {}
    z = [[0.3 * math.sin(1.1 * (3 * i + k)) * (2 + i) for k in range(3)] for i in range(4)]
    t = [[math.cos(0.7 * (3 * i + k)) for k in range(3)] for i in range(4)]
    tt = torch.tensor(t, dtype=torch.float64)
    out["mse"] = {"z": z, "targets": t, **value_grad(z, lambda x: F.mse_loss(x, tt))}

    y = [[1.0, 0.0, 0.25], [0.0, 1.0, 1.0], [0.5, 0.0, 1.0], [0.0, 0.75, 0.0]]
    yt = torch.tensor(y, dtype=torch.float64)
    out["bce"] = {"z": z, "targets": y, **value_grad(z, lambda x: F.binary_cross_entropy_with_logits(x, yt))}
    zl = [[1000.0, -1000.0, 1000.0], [-1000.0, 0.5, -999.5]]
    yl = [[1.0, 0.0, 0.0], [1.0, 0.25, 0.0]]
    ylt = torch.tensor(yl, dtype=torch.float64)
    out["bce_large"] = {"z": zl, "targets": yl,
                        **value_grad(zl, lambda x: F.binary_cross_entropy_with_logits(x, ylt))}

    zt = [[2.0 * math.sin(0.9 * (4 * i + k) + 0.4) for k in range(4)] for i in range(7)]
    labels = [2, -100, 0, 3, -100, 1, 3]
    lt = torch.tensor(labels)
    out["token"] = {"z": zt, "labels": labels,
                    **value_grad(zt, lambda x: F.cross_entropy(x, lt, ignore_index=-100))}

    B, T = 3, 5
    zs = [[1.5 * math.cos(0.8 * (2 * r + c) + 0.1) for c in range(2)] for r in range(B * T)]
    start, end = [1, 7, -2], [3, 4, 5]  # 7 and 5 (>= T) ignored; -2 clamped to 0

    def span(x):
        x = x.reshape(B, T, 2)
        s = torch.tensor(start).clamp(0, T)
        e = torch.tensor(end).clamp(0, T)
        return (F.cross_entropy(x[:, :, 0], s, ignore_index=T) + F.cross_entropy(x[:, :, 1], e, ignore_index=T)) / 2

    out["span"] = {"z": zs, "T": T, "start": start, "end": end, **value_grad(zs, span)}

    # SetFit's contrastive step: sentence-transformers' CosineSimilarityLoss is
    # MSELoss(cosine_similarity(u, v), target); rows 0..P-1 pair with rows P..2P-1.
    P, D = 4, 5
    zc = [[math.sin(0.6 * (D * r + c) + 0.3) * (1 + 0.5 * r) for c in range(D)] for r in range(2 * P)]
    tc = [1.0, 0.0, 1.0, 0.0]
    tct = torch.tensor(tc, dtype=torch.float64)
    out["cosine_pairs"] = {"z": zc, "targets": tc,
                           **value_grad(zc, lambda x: F.mse_loss(F.cosine_similarity(x[:P], x[P:], dim=1), tct))}
    return out


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    ref = {"steps": STEPS, "cases": {}, "cases_f32": {}}
    for name, case in CASES.items():
        ref["cases"][name] = run(case)
    for name in ("sgd_momentum", "adamw", "adamw_store_options"):
        ref["cases_f32"][name] = run(CASES[name], torch.float32)
    ref["clip"] = [clip_case(1.0, 1.0), clip_case(0.05, 1.0), clip_case(3.0, 0.5)]
    ref["losses"] = losses()
    ref["task_losses"] = task_losses()
    with open(os.path.join(out_dir, "optim.json"), "w") as f:
        json.dump(ref, f, indent=1)


if __name__ == "__main__":
    main()
