#!/usr/bin/env python3
"""The Python side of bench/e5/run: multilingual-e5-small's converted ONNX file on Python onnxruntime + tokenizers,
the same pipeline as kairos_models::text::Encoder (padding to the longest text of the batch, truncation to 256
tokens, last_hidden_state, mean pooling under the mask, L2), on the same texts as the Rust example e5_bench.

    bench.py --model-dir D --texts F.jsonl [--texts G.jsonl] [--n 256] [--threads 2] [--min-seconds 3]
"""

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_LENGTH = 256


class Encoder:
    def __init__(self, model_dir, threads):
        self.tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
        pad = self.tok.token_to_id("<pad>")
        self.tok.enable_padding(pad_id=pad, pad_token="<pad>")  # to the longest in the batch
        self.tok.enable_truncation(max_length=MAX_LENGTH)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(f"{model_dir}/model.onnx", opts, providers=["CPUExecutionProvider"])

    def embed(self, texts):
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        hidden = self.session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def load_texts(paths, n):
    texts = []
    for path in paths:
        got = 0
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip() and got < n // len(paths):
                    texts.append(json.loads(line)["text"].strip())
                    got += 1
    return texts


def texts_per_second(one_pass, n, min_seconds):
    """Runs `one_pass` (which embeds all `n` texts) once to warm up, then until `min_seconds` have passed."""
    one_pass()
    done, start = 0, time.perf_counter()
    while True:
        one_pass()
        done += n
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model-dir", required=True)
    p.add_argument("--texts", action="append", required=True)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=3.0)
    args = p.parse_args()
    enc = Encoder(args.model_dir, args.threads)
    texts = load_texts(args.texts, args.n)
    print(f"python: {len(texts)} texts, {args.threads} thread(s), onnxruntime {ort.__version__}", flush=True)
    for batch_size in (1, 8, 32):
        batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]

        def one_pass():
            for b in batches:
                enc.embed(b)
        rate = texts_per_second(one_pass, len(texts), args.min_seconds)
        print(f"onnx-python batch={batch_size} texts_per_s={rate:.1f}", flush=True)

    # Serving shape, as in e5_bench: `threads` sessions of one thread each, one Python thread per session, each
    # embedding its share of the texts (onnxruntime releases the GIL while a session runs).
    pool = [Encoder(args.model_dir, 1) for _ in range(args.threads)]
    share = -(-len(texts) // args.threads)
    parts = [texts[i:i + share] for i in range(0, len(texts), share)]
    for batch_size in (1, 8, 32):
        def work(k):
            part = parts[k]
            for i in range(0, len(part), batch_size):
                pool[k].embed(part[i:i + batch_size])
        with ThreadPoolExecutor(max_workers=args.threads) as ex:
            rate = texts_per_second(lambda: list(ex.map(work, range(len(parts)))), len(texts), args.min_seconds)
        print(f"onnx-python {args.threads} sessions x 1 thread, batch={batch_size} from {args.threads} callers "
              f"texts_per_s={rate:.1f}", flush=True)


if __name__ == "__main__":
    main()
