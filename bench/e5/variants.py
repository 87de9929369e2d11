#!/usr/bin/env python3
"""Speed/fidelity of other ways to run the converted e5 model's linear layers, against the shipped 4-bit one
(`MatMulNBits`, accuracy_level 4), on Python onnxruntime, one padded batch of the first 32 Spanish tweets, 2 threads:

    .cache/venv-e5-bench/bin/python bench/e5/variants.py [--model-dir .cache/models/multilingual-e5-small]

* `nbits-acc0`: the same 4-bit weights, fp32 compute (`accuracy_level` 0).
* `int8-dynamic`: weights dequantized then re-quantized per channel to int8 by onnxruntime's own
  `quantize_dynamic` (`DynamicQuantizeMatMul`: one activation scale for the whole batch, so a text's embedding
  depends on the other texts of its batch).
* `int8-per-token`: the same int8 weights, activations quantized per token in the graph (uint8, zero point 128),
  `MatMulInteger` — batch-independent, but many small element-wise ops.

First prints the shipped model's throughput on unpadded batches of identical 25-token inputs (batch 1, 2, 8, 32), to
separate the kernel's scaling from padding. Then prints texts/s, the minimum cosine of the pooled embeddings against the shipped model, and how much one text's
embedding moves between being alone and in the batch. Throw-away files go to
.cache/bench-e5/variants/. Exploratory: none of these is what scripts/fetch-e5 produces.
"""

import argparse
import json
import os
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import Tokenizer


def nbits_weights(inits, node):
    k = next(a.i for a in node.attribute if a.name == "K")
    n = next(a.i for a in node.attribute if a.name == "N")
    q = numpy_helper.to_array(inits[node.input[1]]).reshape(n, -1)
    s = numpy_helper.to_array(inits[node.input[2]]).reshape(n, -1)
    nib = np.empty((n, k), np.float32)
    nib[:, 0::2] = q & 15
    nib[:, 1::2] = q >> 4
    return ((nib - 8).reshape(n, k // 32, 32) * s[:, :, None]).reshape(n, k)  # [N, K]


def rewrite(model, per_node, extra_inits=()):
    g = onnx.ModelProto()
    g.CopyFrom(model)
    inits = {i.name: i for i in g.graph.initializer}
    nodes, drop, added = [], set(), list(extra_inits)
    for node in g.graph.node:
        if node.op_type != "MatMulNBits":
            nodes.append(node)
            continue
        new_nodes, new_inits = per_node(inits, node)
        nodes += new_nodes
        added += new_inits
        drop |= {node.input[1], node.input[2]}
    del g.graph.node[:]
    g.graph.node.extend(nodes)
    keep = [i for i in g.graph.initializer if i.name not in drop] + added
    del g.graph.initializer[:]
    g.graph.initializer.extend(keep)
    return g


def fp32(inits, node):
    w = nbits_weights(inits, node).T.copy()
    name = node.name + ".w32"
    return [helper.make_node("MatMul", [node.input[0], name], list(node.output), name=node.name)], [
        numpy_helper.from_array(w, name)
    ]


def per_token(done):
    def build(inits, node):
        w = nbits_weights(inits, node)
        ws = np.abs(w).max(1) / 127.0
        ws[ws == 0] = 1
        wq = np.clip(np.rint(w / ws[:, None]), -127, 127).astype(np.int8).T.copy()
        p, x, y, qn = node.name, node.input[0], node.output[0], "q." + node.input[0]
        out = []
        if qn not in done:
            done.add(qn)
            out += [
                helper.make_node("Abs", [x], [qn + ".abs"]),
                helper.make_node("ReduceMax", [qn + ".abs", "pt.axes"], [qn + ".amax"], keepdims=1),
                helper.make_node("Max", [qn + ".amax", "pt.eps"], [qn + ".amax2"]),
                helper.make_node("Mul", [qn + ".amax2", "pt.inv127"], [qn + ".xs"]),
                helper.make_node("Div", [x, qn + ".xs"], [qn + ".xd"]),
                helper.make_node("Add", [qn + ".xd", "pt.128"], [qn + ".xo"]),
                helper.make_node("Round", [qn + ".xo"], [qn + ".xr"]),
                helper.make_node("Cast", [qn + ".xr"], [qn + ".xq"], to=TensorProto.UINT8),
            ]
        out += [
            helper.make_node("MatMulInteger", [qn + ".xq", p + ".wq", "pt.zp"], [p + ".acc"]),
            helper.make_node("Cast", [p + ".acc"], [p + ".accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + ".accf", qn + ".xs"], [p + ".y1"]),
            helper.make_node("Mul", [p + ".y1", p + ".ws"], [y]),
        ]
        return out, [numpy_helper.from_array(wq, p + ".wq"), numpy_helper.from_array(ws.astype(np.float32), p + ".ws")]

    return build


def per_token_fused(done):
    """Per-token int8 with fewer ops: one QuantizeLinear per input (per-axis scale over the flattened tokens) and
    com.microsoft MatMulIntegerToFloat (int32 accumulate, weight scales) + one Mul by the token scales."""

    def build(inits, node):
        w = nbits_weights(inits, node)
        n_out, k = w.shape
        ws = np.abs(w).max(1) / 127.0
        ws[ws == 0] = 1
        wq = np.clip(np.rint(w / ws[:, None]), -127, 127).astype(np.int8).T.copy()
        p, x, y, qn = node.name, node.input[0], node.output[0], "f." + node.input[0]
        out = []
        if qn not in done:
            done.add(qn)
            out += [
                helper.make_node("Shape", [x], [qn + ".shape3"]),
                helper.make_node("Reshape", [x, f"pf.flat{k}"], [qn + ".x2"]),
                helper.make_node("Abs", [qn + ".x2"], [qn + ".abs"]),
                helper.make_node("ReduceMax", [qn + ".abs", "pf.axis1"], [qn + ".amax"], keepdims=0),
                helper.make_node("Max", [qn + ".amax", "pt.eps"], [qn + ".amax2"]),
                helper.make_node("Mul", [qn + ".amax2", "pt.inv127"], [qn + ".xs"]),
                helper.make_node("Shape", [qn + ".xs"], [qn + ".m"]),
                helper.make_node("Expand", ["pt.zp", qn + ".m"], [qn + ".zp"]),
                helper.make_node("QuantizeLinear", [qn + ".x2", qn + ".xs", qn + ".zp"], [qn + ".xq"], axis=0),
                helper.make_node("Unsqueeze", [qn + ".xs", "pf.axis1"], [qn + ".xs2"]),
                helper.make_node("Slice", [qn + ".shape3", "pf.zero", "pf.two"], [qn + ".bs"]),
            ]
        out += [
            helper.make_node("MatMulIntegerToFloat", [qn + ".xq", p + ".wq", "pf.one", p + ".ws", "pt.zp"],
                             [p + ".mf"], domain="com.microsoft"),
            helper.make_node("Mul", [p + ".mf", qn + ".xs2"], [p + ".y2"]),
            helper.make_node("Concat", [qn + ".bs", p + ".n"], [p + ".shape"], axis=0),
            helper.make_node("Reshape", [p + ".y2", p + ".shape"], [y]),
        ]
        return out, [numpy_helper.from_array(wq, p + ".wq"), numpy_helper.from_array(ws.astype(np.float32), p + ".ws"),
                     numpy_helper.from_array(np.array([n_out], np.int64), p + ".n")]

    return build


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=".cache/models/multilingual-e5-small")
    ap.add_argument("--texts", default=".cache/models/data/tass-tweets-es.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    out = ".cache/bench-e5/variants"
    os.makedirs(out, exist_ok=True)
    base = onnx.load(f"{args.model_dir}/model.onnx")

    acc0 = onnx.ModelProto()
    acc0.CopyFrom(base)
    for n in acc0.graph.node:
        for a in n.attribute:
            if n.op_type == "MatMulNBits" and a.name == "accuracy_level":
                a.i = 0
    onnx.save(acc0, f"{out}/nbits-acc0.onnx")
    onnx.save(rewrite(base, fp32), f"{out}/fp32.onnx")
    quantize_dynamic(f"{out}/fp32.onnx", f"{out}/int8-dynamic.onnx", weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"], extra_options={"DefaultTensorType": TensorProto.FLOAT})
    consts = [
        numpy_helper.from_array(np.array([-1], np.int64), "pt.axes"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "pt.eps"),
        numpy_helper.from_array(np.array(1 / 127, np.float32), "pt.inv127"),
        numpy_helper.from_array(np.array(128.0, np.float32), "pt.128"),
        numpy_helper.from_array(np.array(128, np.uint8), "pt.zp"),
    ]
    pt = rewrite(base, per_token(set()), consts)
    del pt.opset_import[:]
    pt.opset_import.extend([helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    onnx.save(pt, f"{out}/int8-per-token.onnx")
    fconsts = consts + [
        numpy_helper.from_array(np.array([1], np.int64), "pf.axis1"),
        numpy_helper.from_array(np.array([0], np.int64), "pf.zero"),
        numpy_helper.from_array(np.array([2], np.int64), "pf.two"),
        numpy_helper.from_array(np.array(1.0, np.float32), "pf.one"),
        numpy_helper.from_array(np.array([-1, 384], np.int64), "pf.flat384"),
        numpy_helper.from_array(np.array([-1, 1536], np.int64), "pf.flat1536"),
    ]
    pf = rewrite(base, per_token_fused(set()), fconsts)
    del pf.opset_import[:]
    pf.opset_import.extend([helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    onnx.save(pf, f"{out}/int8-per-token-fused.onnx")

    shipped = ort.SessionOptions()
    shipped.intra_op_num_threads = args.threads
    s = ort.InferenceSession(f"{args.model_dir}/model.onnx", shipped, providers=["CPUExecutionProvider"])
    for b in (1, 2, 8, 32):
        ids = np.full((b, 25), 1000, np.int64)
        ids[:, 0], ids[:, -1] = 0, 2
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        s.run(None, feeds)
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds / 2:
            s.run(None, feeds)
            runs += 1
        dt = (time.perf_counter() - start) / runs
        print(f"shipped, {b:2} x 25 tokens, no padding: {b / dt:6.1f} texts/s {b * 25 / dt:6.0f} tokens/s", flush=True)

    tok = Tokenizer.from_file(f"{args.model_dir}/tokenizer.json")
    tok.enable_padding(pad_id=tok.token_to_id("<pad>"), pad_token="<pad>")
    tok.enable_truncation(max_length=256)
    texts = [json.loads(line)["text"] for line in open(args.texts, encoding="utf-8")][:32]
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    print(f"batch {ids.shape[0]} x {ids.shape[1]} tokens ({int(mask.sum())} real), {args.threads} threads")
    ref = None
    for name, path in [("nbits-acc4 (shipped)", f"{args.model_dir}/model.onnx"), ("nbits-acc0", f"{out}/nbits-acc0.onnx"),
                       ("int8-dynamic", f"{out}/int8-dynamic.onnx"), ("int8-per-token", f"{out}/int8-per-token.onnx"),
                       ("int8-per-token-fused", f"{out}/int8-per-token-fused.onnx")]:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feeds = {"input_ids": ids, "attention_mask": mask}
        h = s.run(None, feeds)[0]
        e = (h * mask[:, :, None]).sum(1)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        ref = e if ref is None else ref
        # Batch dependence: the longest text alone vs in the batch (0 up to float rounding when scales are per token).
        i = int(mask.sum(1).argmax())
        h1 = s.run(None, {"input_ids": ids[i:i + 1, : mask[i].sum()], "attention_mask": mask[i:i + 1, : mask[i].sum()]})[0]
        e1 = h1[0].mean(0)
        e1 /= np.linalg.norm(e1)
        alone = float(np.abs(e1 - e[i]).max())
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            s.run(None, feeds)
            runs += 1
        dt = (time.perf_counter() - start) / runs
        print(f"{name:22} {len(texts) / dt:7.1f} texts/s  {os.path.getsize(path) / 1e6:6.1f} MB  "
              f"min cosine vs shipped {float((e * ref).sum(1).min()):.5f}  alone-vs-batched max diff {alone:.1e}",
              flush=True)


if __name__ == "__main__":
    main()
