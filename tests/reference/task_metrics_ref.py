#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reference values for tests/test_task_metrics.cpp (include/peft/task/metrics.hpp).
Writes <out_dir>/task_metrics.json: every input together with the expected output.

- regression: scipy.stats.pearsonr / spearmanr on fixed random vectors, some with many ties;
- multi-label: micro/macro F1, micro precision/recall and subset accuracy from numpy counts
  of the indicator matrices, with exact fractions (so equal F1 values compare equal when
  choosing the best threshold);
- token classification: entities read from the tags by the rules seqeval's default mode
  follows, restated as "maximal runs of non-O words, cut where the previous word is E/S, the
  word is B/S, or the type changes", scored over sets of (sentence, type, begin, end);
- extractive QA: the SQuAD v2.0 normalization (Python's own str.lower, string.punctuation,
  re's Unicode word boundaries and str.split), bag-of-words F1 and the per-question maximum.

Kept independent of the C++ code: different formulations wherever there is a choice.
Debian: python3-numpy, python3-scipy; run with /usr/bin/python3.
"""
import collections
import fractions
import json
import os
import re
import string
import sys

import numpy as np
import scipy.stats


# --- regression --------------------------------------------------------------------------

def regression_cases(rng):
    cases = []
    x = rng.normal(size=50)
    cases.append((x, 0.6 * x + rng.normal(size=50)))  # continuous, positive
    x = rng.integers(0, 6, size=40).astype(float)  # heavy ties on both sides
    cases.append((x, rng.integers(0, 4, size=40).astype(float) - 0.5 * x))
    x = rng.uniform(-3, 3, size=17)
    cases.append((x, np.round(np.exp(x), 1)))  # monotone with ties: spearman near 1
    cases.append((np.array([1.0, 2.0, 2.0, 3.0]), np.array([4.0, 1.0, 1.0, 0.5])))
    cases.append((np.array([3.0, -1.0]), np.array([0.25, 7.0])))  # two points: r = -1
    x = rng.normal(size=9) * 1e6 + 1e8  # large offset
    cases.append((x, rng.normal(size=9)))
    out = []
    for x, y in cases:
        out.append({
            "x": [float(v) for v in x],
            "y": [float(v) for v in y],
            "pearson": float(scipy.stats.pearsonr(x, y)[0]),
            "spearman": float(scipy.stats.spearmanr(x, y)[0]),
        })
    return out


# --- multi-label -------------------------------------------------------------------------

def frac(num, den):
    return fractions.Fraction(int(num), int(den)) if den else fractions.Fraction(0)


def f1_exact(tp, fp, fn):
    # F1 = harmonic mean of precision and recall, 0 when undefined (zero_division=0).
    p, r = frac(tp, tp + fp), frac(tp, tp + fn)
    return 2 * p * r / (p + r) if p + r else fractions.Fraction(0)


def multi_label_at(probs, truth, t):
    pred = probs >= t
    act = truth == 1
    tp = (pred & act).sum(axis=0)
    fp = (pred & ~act).sum(axis=0)
    fn = (~pred & act).sum(axis=0)
    per_label = [f1_exact(a, b, c) for a, b, c in zip(tp, fp, fn)]
    T, P, N = tp.sum(), fp.sum(), fn.sum()
    return {
        "threshold": float(t),
        "micro_f1": float(f1_exact(T, P, N)),
        "macro_f1": float(sum(per_label) / len(per_label)),
        "micro_precision": float(frac(T, T + P)),
        "micro_recall": float(frac(T, T + N)),
        "subset_accuracy": float(np.all(pred == act, axis=1).mean()),
    }, f1_exact(T, P, N)


def multi_label_cases(rng):
    cases = []
    # Continuous probabilities, 30 x 6; label 5 never true and rarely predicted.
    truth = (rng.uniform(size=(30, 6)) < 0.35).astype(int)
    truth[:, 5] = 0
    probs = np.clip(0.55 * truth + rng.uniform(0, 0.6, size=(30, 6)), 0, 1)
    probs[:, 5] *= 0.3
    cases.append((probs, truth))
    # Probabilities on the threshold grid (>= is tested on equality) and few examples, so that
    # several thresholds share the best F1.
    for n, k in [(4, 3), (5, 2), (3, 4), (6, 3), (2, 2), (7, 5)]:
        truth = (rng.uniform(size=(n, k)) < 0.5).astype(int)
        probs = rng.integers(0, 21, size=(n, k)) / 20
        cases.append((probs, truth))
    grid = np.arange(1, 20) / 20  # the doubles k / 20.0
    out = []
    for probs, truth in cases:
        scores = [multi_label_at(probs, truth, t)[0] for t in (0.3, 0.5, 0.65, 0.05, 0.95, 0.0, 1.0)]
        f1s = [multi_label_at(probs, truth, t)[1] for t in grid]
        best = max(f1s)
        # Among the best, the one closest to 0.5; of two equally close, the lower.
        k = min((abs(k - 10), k) for k in range(1, 20) if f1s[k - 1] == best)[1]
        out.append({
            "probs": probs.tolist(),
            "truth": truth.tolist(),
            "scores": scores,
            "best_threshold": float(grid[k - 1]),
            "best_ties": sum(1 for f in f1s if f == best),
        })
    return out


# --- token classification ----------------------------------------------------------------

def parse(tag):
    """(prefix letter, type) of a tag; the type is what follows the first '-', '_' if none."""
    head, _, rest = tag.partition("-")
    assert tag == "O" or head in ("B", "I", "E", "S"), tag
    return head, (rest or "_")


def spans(tags):
    """seqeval's default-mode entities as (type, begin, end) with end exclusive."""
    found = []
    run = None  # [type, begin] of the open entity
    for i, tag in enumerate(tags):
        prefix, kind = parse(tag)
        if prefix == "O":
            if run:
                found.append((run[0], run[1], i))
            run = None
            continue
        if run is not None:
            prev_prefix, prev_kind = parse(tags[i - 1])
            if prev_prefix in "ES" or prefix in "BS" or prev_kind != kind:
                found.append((run[0], run[1], i))
                run = None
        if run is None:
            run = [kind, i]
    if run:
        found.append((run[0], run[1], len(tags)))
    return found


def ratio(a, b):
    return a / b if b else 0.0


def prf(correct, n_pred, n_true):
    p, r = ratio(correct, n_pred), ratio(correct, n_true)
    return [p, r, 2 * p * r / (p + r) if p + r else 0.0]


def entity_case(rng):
    vocab = ["O", "O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC",
             "B-MISC-X", "I-MISC-X", "B", "I", "E", "S", "B-", "I-"]
    truth, pred = [], []
    for s in range(60):
        n = int(rng.integers(0, 13))
        t = [vocab[int(rng.integers(0, len(vocab)))] for _ in range(n)]
        p = [tag if rng.uniform() < 0.75 else vocab[int(rng.integers(0, len(vocab)))] for tag in t]
        truth.append(t)
        pred.append(p)
    # Hand-picked sentences: I after O, type change, entity at the end, IOBES, IOB1.
    fixed = [
        (["O", "I-PER", "I-PER", "O"], ["O", "B-PER", "I-PER", "O"]),
        (["B-PER", "I-LOC", "I-LOC"], ["B-PER", "I-PER", "I-LOC"]),
        (["O", "B-ORG", "I-ORG"], ["O", "B-ORG", "I-ORG"]),
        (["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"], ["S-PER", "B-LOC", "E-LOC", "E-LOC", "O"]),
        (["I-PER", "I-PER", "B-PER", "I-PER"], ["I-PER", "B-PER", "B-PER", "I-PER"]),
        (["I-LOC", "E-LOC", "I-LOC", "E-LOC"], ["O", "E-LOC", "I-LOC", "E-LOC"]),
    ]
    for t, p in fixed:
        truth.append(t)
        pred.append(p)
    true_set = {(s,) + e for s, tags in enumerate(truth) for e in spans(tags)}
    pred_set = {(s,) + e for s, tags in enumerate(pred) for e in spans(tags)}
    per_type = {}
    for kind in sorted({e[1] for e in true_set | pred_set}):
        ts = {e for e in true_set if e[1] == kind}
        ps = {e for e in pred_set if e[1] == kind}
        per_type[kind] = prf(len(ts & ps), len(ps), len(ts))
    p, r, f = prf(len(true_set & pred_set), len(pred_set), len(true_set))
    return {
        "truth": truth,
        "predicted": pred,
        "truth_entities": [[list(e) for e in spans(t)] for t in truth],
        "predicted_entities": [[list(e) for e in spans(t)] for t in pred],
        "precision": p, "recall": r, "f1": f,
        "true_entities": len(true_set), "predicted_entities_count": len(pred_set),
        "correct": len(true_set & pred_set),
        "per_type": per_type,
    }


# --- extractive QA -----------------------------------------------------------------------

ARTICLE = re.compile(r"\b(?:an|a|the)\b", re.UNICODE)


def normalize(text):
    text = text.lower()
    text = text.translate(str.maketrans("", "", string.punctuation))
    text = ARTICLE.sub(" ", text)
    return " ".join(text.split())


def words(text):
    return normalize(text).split()


def em(pred, gold):
    return float(normalize(pred) == normalize(gold))


def f1(pred, gold):
    p, g = words(pred), words(gold)
    if not p or not g:
        return float(p == g)
    shared = sum((collections.Counter(p) & collections.Counter(g)).values())
    if shared == 0:
        return 0.0
    prec, rec = shared / len(p), shared / len(g)
    return 2 * prec * rec / (prec + rec)


def squad_case(rng):
    fixed = [
        "The Eiffel Tower", "eiffel tower", "the  eiffel\ttower.", "An apple a day", "apple day",
        "a", "the", "An", "...", "", "   ", "the-cat", "thecat", "Theatre and the anatomy",
        "A.B.C.", "abc", "an_a", "U.S. Army", "us army", "don't stop", "dont stop", "1,000 km",
        "1000 km", "x\u00a0the\u00a0y", "x y", "caf\u00e9 the caf\u00e9", "caf\u00e9 caf\u00e9",
        "the\u3000end", "end", "a\x1cb", "\x01a\x01", "\x01 \x01", "the the the", "(a) (b) (c)",
        "b c", "New York City", "new york", "york new", "Paris Paris", "paris",
    ]
    pieces = ["a", "an", "the", "The", "A", "AN", "cat", "Cat", "dog", "x", "1", "2,5", "-", ".", "'",
              "_", " ", " ", "  ", "\t", "\n", "\x1c", "\u00a0", "\u2003", "\u3000", "\u00e9t\u00e9", "na\u00efve",
              "\x01", "(", ")", "$", "~"]
    randoms = ["".join(pieces[int(rng.integers(0, len(pieces)))] for _ in range(int(rng.integers(0, 9))))
               for _ in range(80)]
    strings = fixed + randoms
    pairs = []
    for i in range(len(strings)):
        for j in (i, (i + 1) % len(strings), (i + 7) % len(strings), int(rng.integers(0, len(strings)))):
            pairs.append([i, j, em(strings[i], strings[j]), f1(strings[i], strings[j])])
    # squad_evaluate: one prediction and a list of gold answers per question.
    predictions, golds = [], []
    for q in range(40):
        predictions.append(strings[int(rng.integers(0, len(strings)))])
        golds.append([strings[int(rng.integers(0, len(strings)))] for _ in range(int(rng.integers(0, 4)))])
    predictions += ["", "Eiffel", "the", "apple"]
    golds += [[], [], ["the", "..."], ["An apple", "", "an apple a day"]]
    exact_total = f1_total = 0.0
    for pred, gs in zip(predictions, golds):
        answers = [g for g in gs if normalize(g)] or [""]  # unanswerable: the empty answer
        exact_total += max(em(pred, g) for g in answers)
        f1_total += max(f1(pred, g) for g in answers)
    return {
        "strings": strings,
        "normalized": [normalize(s) for s in strings],
        "pairs": pairs,
        "predictions": predictions,
        "gold_answers": golds,
        "exact_match": 100.0 * exact_total / len(predictions),
        "f1": 100.0 * f1_total / len(predictions),
    }


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20240607)
    ref = {
        "regression": regression_cases(rng),
        "multi_label": multi_label_cases(rng),
        "entities": entity_case(rng),
        "squad": squad_case(rng),
    }
    with open(os.path.join(out_dir, "task_metrics.json"), "w") as f:
        json.dump(ref, f, allow_nan=False)


if __name__ == "__main__":
    main()
