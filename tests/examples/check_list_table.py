#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""peft-list-table end to end with a tiny schedule (Yelp, K=8, one seed, four student steps per
session): it exits 0 and prints exactly one row, `| yelp | 8 |`, whose pool and test sizes are
the split worked out here from the Yelp file, whose five accuracies and two diagnostics are
percentages, and which the Markdown file it writes repeats.

usage: check_list_table.py PEFT_LIST_TABLE ASSETS_DIR SCRATCH
"""
import json
import os
import re
import shutil
import subprocess
import sys

table_exe, assets, scratch = sys.argv[1:4]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


shots, test_size = 8, 400  # K asked for below; the program's fixed test set per domain
out_md = os.path.join(scratch, "list-table.md")
r = subprocess.run([table_exe, "--assets", assets, "--domains", "yelp", "--shots", str(shots), "--seeds", "1",
                    "--sessions", "1", "--student-steps", "4", "--finetune-epochs", "1", "--epochs", "1",
                    "--out", out_md], capture_output=True, text=True, timeout=900)
why = "" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]  # the program's own error
check(r.returncode == 0, "peft-list-table exits 0 (exit %d)%s" % (r.returncode, why))

yelp = json.load(open(os.path.join(assets, "sentiment", "test", "fixtures", "yelp.json")))
yelp = [e for e in yelp if e.get("class") is not None and e["text"].strip()]
classes = len({e["class"] for e in yelp})
# The pool is every labelled sentence that is neither in the test set nor among the K per class.
pool = len(yelp) - test_size - classes * shots

# Two tables: the accuracies, then (after a title) the paired differences; each a run of "|" lines.
runs, current = [], []
for l in r.stdout.splitlines() + [""]:
    if l.startswith("|"):
        current.append(l)
    elif current:
        runs.append(current)
        current = []
table = runs[0] if runs else []
paired = runs[1] if len(runs) > 1 else []
header = [x.strip() for x in table[0].strip("|").split("|")] if table else []
cols = ["domain", "K / class", "pool", "test", "head", "full", "list-adapter", "list-kd", "list",
        "teacher pseudo-label acc.", "kept by re-weighting"]
check(header == cols, "columns %s" % header)
rows = [[x.strip() for x in l.strip().strip("|").split("|")] for l in table[2:]]
check(len(rows) == 1 and rows[0][:2] == ["yelp", str(shots)], "exactly one row, yelp / %d: %s" % (shots, rows))
if rows and len(rows[0]) == len(cols):
    f = dict(zip(cols, rows[0]))
    check(f["pool"] == str(pool), "pool %s sentences, expected %d - %d - %d x %d = %d" %
          (f["pool"], len(yelp), test_size, classes, shots, pool))
    check(f["test"] == str(test_size), "test %s sentences, expected %d" % (f["test"], test_size))
    for c in cols[4:9]:
        a = re.fullmatch(r"(\d+\.\d) ± (\d+\.\d)", f[c])
        check(a is not None and 0 <= float(a.group(1)) <= 100 and float(a.group(2)) == 0.0,
              "%s: accuracy '%s' is a percentage, std 0 with one seed" % (c, f[c]))
        # One seed: a count of right answers out of 400, printed to 0.1 (so within 0.05).
        k = float(a.group(1)) * test_size / 100 if a else 0.5
        check(abs(k - round(k)) <= 0.05 * test_size / 100 + 1e-9, "%s: %s %% is k / %d" % (c, f[c], test_size))
    for c in cols[9:]:
        a = re.fullmatch(r"(\d+(?:\.\d)?) %", f[c])
        check(a is not None and 0 <= float(a.group(1)) <= 100, "%s: '%s' is a percentage" % (c, f[c]))
else:
    check(False, "the row has %d fields" % len(cols))
# The paired differences: one seed, so each is the difference of the two accuracies and its
# standard error 0.
pairs = [("list", "head"), ("list", "full"), ("list", "list-kd"), ("list", "list-adapter"), ("list-adapter", "head")]
check(len(paired) == 3, "a paired-differences table of one row: %s" % paired)
if len(paired) == 3 and rows and len(rows[0]) == len(cols):
    ph = [x.strip() for x in paired[0].strip("|").split("|")]
    check(ph == ["domain", "K / class"] + ["%s − %s" % p for p in pairs], "paired columns %s" % ph)
    pr = [x.strip() for x in paired[2].strip("|").split("|")]
    f = dict(zip(cols, rows[0]))
    for (x, y), cell in zip(pairs, pr[2:]):
        d = re.fullmatch(r"([+-]\d+\.\d) ± 0\.0", cell)
        want = float(f[x].split()[0]) - float(f[y].split()[0])
        check(d is not None and abs(float(d.group(1)) - want) <= 0.11,
              "%s − %s: '%s' is %.1f - %.1f" % (x, y, cell, float(f[x].split()[0]), float(f[y].split()[0])))
md_lines = [l for l in open(out_md).read().splitlines() if l.startswith("|")] if os.path.exists(out_md) else []
check(md_lines == table + paired, "the Markdown file holds the printed tables")

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
