#!/usr/bin/env python3
"""Checks that no evaluation text is a near-duplicate of a training text or of a text of an earlier evaluation set.

    python3 models/data/overlap.py [--drop]

Near-duplicate: same language and word sets (lower-cased, punctuation dropped) with Jaccard similarity >= 0.7, which
catches "Can't complain." against "Can't complain." and "Llevo dos semanas esperando el reembolso..." against "Llevo
tres semanas esperando el reembolso...". The test strings of the sentiment quality and API tests count as
evaluation texts too (they measure generalisation, so no training or development text may equal one).

Why: the support texts are written by the same team (and partly by the same language model), so independently
written sets still repeat short stock phrases; a figure measured on a text the model trained on is not a held-out
figure. Sets in priority order: training batches (a new batch's texts that repeat an evaluation text are dropped
from the batch), then `support-heldout` (fixed since it was first measured), `support-heldout-2`, `support-dev`
(each loses what repeats an earlier set or a training text). `--drop` rewrites the files without those rows;
without it, the script lists them and exits 1 if there are any.
"""

import json
import re
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent
ROOT = DATA.parent.parent
TRAIN_FIXED = ["support-train-en.jsonl", "support-train-es.jsonl", "support-train-3-en.jsonl", "support-train-3-es.jsonl"]
TRAIN_NEW = ["support-train-4-en.jsonl", "support-train-4-es.jsonl"]
HELDOUT = ["support-heldout-en.jsonl", "support-heldout-es.jsonl"]
HELDOUT_2 = ["support-heldout-2-en.jsonl", "support-heldout-2-es.jsonl"]
DEV = ["support-dev-en.jsonl", "support-dev-es.jsonl"]
TEST_SOURCES = ["models/tests/sentiment_quality.rs", "tests/it/sentiment_analyze.rs"]


def load(name):
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def words(text):
    return frozenset(re.sub(r"[^\w ]", " ", text.lower()).split())


def near(a, b):
    return len(a & b) / max(1, len(a | b)) >= 0.7


def index(names):
    return [(r["lang"], words(r["text"])) for n in names for r in load(n)]


def test_strings():
    found = set()
    for source in TEST_SOURCES:
        found |= set(re.findall(r'"([^"\\]{3,})"', (ROOT / source).read_text(encoding="utf-8")))
    return found


def check(names, against, exact):
    """(file, kept rows, dropped rows) for each file of `names`."""
    others = index(against)
    out = []
    for name in names:
        kept, dropped = [], []
        for r in load(name):
            w = words(r["text"])
            if r["text"] in exact or any(lang == r["lang"] and near(w, o) for lang, o in others):
                dropped.append(r)
            else:
                kept.append(r)
        out.append((name, kept, dropped))
    return out


def main():
    write = "--drop" in sys.argv[1:]
    exact = test_strings()
    results = check(TRAIN_NEW, HELDOUT + HELDOUT_2 + DEV, exact)
    results += check(HELDOUT_2, TRAIN_FIXED + TRAIN_NEW + HELDOUT, exact)
    results += check(DEV, TRAIN_FIXED + TRAIN_NEW + HELDOUT + HELDOUT_2, exact)
    found = 0
    for name, kept, dropped in results:
        found += len(dropped)
        for r in dropped:
            print(f"{name}: near-duplicate: {r['text']!r}")
        if write and dropped:
            with open(DATA / name, "w", encoding="utf-8") as f:
                for r in kept:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            print(f"{name}: kept {len(kept)}, dropped {len(dropped)}")
    if found and not write:
        sys.exit(1)
    print(f"overlap: {found} near-duplicate texts{' dropped' if write else ''}")


if __name__ == "__main__":
    main()
