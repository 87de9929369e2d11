#!/usr/bin/env python3
"""Writes one LoRA adapter whose merged update is the weighted sum of others' (a "soup" of adapters).

    adapter_soup.py OUT.npz ADAPTER.npz:WEIGHT [ADAPTER.npz:WEIGHT ...]

Each adapter adds scale_i · B_i A_i to a layer; the soup adds sum_i w_i · scale_i · B_i A_i, which is one adapter of
rank sum_i rank_i with A = [A_1; A_2; ...], B = [w_1 scale_1 B_1, w_2 scale_2 B_2, ...] and scale 1, so
`models/convert/e5_to_onnx.py --adapter OUT.npz` merges it like any other and the merged model costs the same to run.

Why: averaging the weights of models fine-tuned from one base often keeps the gains of each at the cost of one model
(an ensemble costs one encoder pass per member). Measured in models/MODELS.md ("Rule 7"): it did not help here.
"""

import sys

import numpy as np

LINEARS = ("q", "k", "v", "ao", "fi", "fo")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    members = []
    for arg in sys.argv[2:]:
        path, _, weight = arg.rpartition(":")
        with np.load(path) as z:
            members.append(({k: z[k] for k in z.files}, float(weight)))
    out = {"rank": np.array(sum(int(a["rank"]) for a, _ in members)), "scale": np.array(1.0, np.float32)}
    for name in LINEARS:
        out[f"{name}_a"] = np.concatenate([a[f"{name}_a"] for a, _ in members], axis=1).astype(np.float16)
        out[f"{name}_b"] = np.concatenate(
            [a[f"{name}_b"].astype(np.float32) * float(a["scale"]) * w for a, w in members], axis=2).astype(np.float16)
    np.savez_compressed(sys.argv[1], **out)
    print(f"adapter_soup: wrote {sys.argv[1]} (rank {int(out['rank'])})")


if __name__ == "__main__":
    main()
