#!/usr/bin/env python3
"""Figures of heads alone and of their average, from `sentiment_support --predictions DIR` files.

    combine.py FILE_NAME DIR[:WEIGHT] [DIR[:WEIGHT] ...]

For the file FILE_NAME (e.g. `support-heldout-11-es.jsonl`) under each DIR: per declared language, 3-class accuracy,
macro-F1, neutral recall, binary accuracy on positive/negative texts (negative vs positive probability, as
`sentiment_support` counts it), log-loss and top-label ECE (10 bins) of each head's served probabilities, then of
their weighted mean. One head alone reproduces `sentiment_support`'s figures (checked for lora-8 on set 10).

Why: an ensemble of adapters, or a weight-averaged one (`adapter_soup.py`), is judged on the same texts and the same
way as a single head, without changing the product (models/MODELS.md, "Rule 7").
"""
import json, math, sys
from collections import defaultdict

def load(d, name):
    return [json.loads(l) for l in open(f"{d}/{name}")]

def figures(rows, probs):
    labels = rows[0]["labels"]
    neg, neu, pos = labels.index("negative"), labels.index("neutral"), labels.index("positive")
    out = {}
    for lang in sorted({r["lang"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["lang"] == lang]
        truth = [labels.index(rows[i]["label"]) for i in idx]
        P = [probs[i] for i in idx]
        pred = [max(range(3), key=lambda k: p[k]) for p in P]
        acc = sum(t == p for t, p in zip(truth, pred)) / len(idx)
        f1s = []
        for c in range(3):
            tp = sum(t == c and p == c for t, p in zip(truth, pred))
            fp = sum(t != c and p == c for t, p in zip(truth, pred))
            fn = sum(t == c and p != c for t, p in zip(truth, pred))
            pr = tp / (tp + fp) if tp + fp else 0
            rc = tp / (tp + fn) if tp + fn else 0
            f1s.append(2 * pr * rc / (pr + rc) if pr + rc else 0)
        nrec = sum(t == neu and p == neu for t, p in zip(truth, pred)) / max(1, sum(t == neu for t in truth))
        polar = [(t, p) for t, p in zip(truth, P) if t != neu]
        bwrong = sum((neg if p[neg] > p[pos] else pos) != t for t, p in polar)
        ll = -sum(math.log(max(p[t], 1e-12)) for t, p in zip(truth, P)) / len(idx)
        bins = defaultdict(list)
        for t, p in zip(truth, P):
            k = max(range(3), key=lambda j: p[j]); c = p[k]
            bins[min(int(c * 10), 9)].append((c, k == t))
        ece = sum(abs(sum(c for c, _ in b) / len(b) - sum(h for _, h in b) / len(b)) * len(b) for b in bins.values()) / len(idx)
        out[lang] = dict(n=len(idx), acc=acc, f1=sum(f1s) / 3, nrec=nrec, binary=1 - bwrong / len(polar), bwrong=bwrong,
                         npolar=len(polar), ll=ll, ece=ece)
    return out

def show(name, f):
    for lang, x in f.items():
        print(f"  {name:<28} {lang} n={x['n']} 3c {x['acc']:.3f} F1 {x['f1']:.3f} neu {x['nrec']:.3f} "
              f"bin {x['binary']:.3f} ({x['bwrong']}/{x['npolar']}) ll {x['ll']:.3f} ece {x['ece']:.3f}")

name = sys.argv[1]
heads = []
for a in sys.argv[2:]:
    d, _, w = a.partition(":")
    heads.append((d, float(w or 1)))
rows_by = {d: load(d, name) for d, _ in heads}
base = rows_by[heads[0][0]]
for d, _ in heads:
    assert [r["text"] for r in rows_by[d]] == [r["text"] for r in base]
print(name)
for d, _ in heads:
    show(d.rsplit("/", 1)[-1], figures(base, [r["served"] for r in rows_by[d]]))
W = sum(w for _, w in heads)
avg = [[sum(w * rows_by[d][i]["served"][k] for d, w in heads) / W for k in range(3)] for i in range(len(base))]
show("average", figures(base, avg))
