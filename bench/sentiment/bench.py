#!/usr/bin/env python3
"""The Python side of bench/sentiment/run: the same encoder pipeline as kairos_models::text::Encoder, on Python
onnxruntime + tokenizers (the same versions and the same model files).

    bench.py speed     --model-dir D --texts F.jsonl [--n 256] [--threads 1] [--min-seconds 3] [--dump OUT.json]
    bench.py compare   --a A.json --b B.json            (max |difference| between two embedding dumps)
    bench.py reference --model-dir D --out F.json       (the reference embeddings models/tests/text_onnx.rs checks)

Pipeline: tokenizer.json with padding to the longest text of the batch and truncation to 256 tokens, the ONNX model
(last_hidden_state), mean pooling under the attention mask, L2 normalisation. Batches are taken in input order on
both sides, so both process exactly the same tensors.
"""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_LENGTH = 256
REFERENCE_TEXTS = [
    "The service was great, thank you!",
    "This is the worst product I have ever bought.",
    "El sistema no funciona y es urgente.",
    "ok",
]


class Encoder:
    def __init__(self, model_dir, threads):
        self.tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch
        self.tok.enable_truncation(max_length=MAX_LENGTH)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(f"{model_dir}/model.onnx", opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def embed(self, texts):
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
        hidden = self.session.run(["last_hidden_state"], {k: v for k, v in feeds.items() if k in self.inputs})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def load_texts(path, n):
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return texts


def speed(args):
    enc = Encoder(args.model_dir, args.threads)
    texts = load_texts(args.texts, args.n)
    for batch_size in (1, 8, 32):
        batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
        for b in batches[:3]:
            enc.embed(b)  # warm-up
        done, start = 0, time.perf_counter()
        while True:
            for b in batches:
                enc.embed(b)
            done += len(texts)
            elapsed = time.perf_counter() - start
            if elapsed >= args.min_seconds:
                break
        print(f"python batch={batch_size} texts={done} seconds={elapsed:.3f} texts_per_s={done / elapsed:.1f}", flush=True)
    if args.dump:
        emb = np.concatenate([enc.embed(texts[i:i + 32]) for i in range(0, min(len(texts), 64), 32)])
        json.dump({"texts": texts[:len(emb)], "embeddings": emb.tolist()}, open(args.dump, "w"))


def compare(args):
    a, b = json.load(open(args.a)), json.load(open(args.b))
    assert a["texts"] == b["texts"], "the dumps are of different texts"
    diff = np.abs(np.array(a["embeddings"]) - np.array(b["embeddings"])).max()
    print(f"max |rust - python| over {len(a['texts'])} embeddings: {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("embeddings differ by more than 1e-4")


def reference(args):
    enc = Encoder(args.model_dir, 1)
    emb = enc.embed(REFERENCE_TEXTS)
    single = np.concatenate([enc.embed([t]) for t in REFERENCE_TEXTS])
    assert np.abs(emb - single).max() < 1e-4
    out = {
        "source": "bench/sentiment/bench.py reference: Python onnxruntime " + ort.__version__
                  + ", tokenizers (same tokenizer.json), mean pooling + L2, batch of all texts",
        "max_length": MAX_LENGTH,
        "texts": REFERENCE_TEXTS,
        "embeddings": [[float(f"{v:.7g}") for v in row] for row in emb],
    }
    with open(args.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print("wrote", args.out)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--model-dir", required=True)
    s.add_argument("--texts", required=True)
    s.add_argument("--n", type=int, default=256)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--min-seconds", type=float, default=3.0)
    s.add_argument("--dump")
    c = sub.add_parser("compare")
    c.add_argument("--a", required=True)
    c.add_argument("--b", required=True)
    r = sub.add_parser("reference")
    r.add_argument("--model-dir", required=True)
    r.add_argument("--out", required=True)
    args = p.parse_args()
    {"speed": speed, "compare": compare, "reference": reference}[args.cmd](args)


if __name__ == "__main__":
    main()
