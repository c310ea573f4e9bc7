#!/usr/bin/env python3
"""A decoder-shaped ONNX model with external data and planted dead SwiGLU neurons, for the
bytes benchmark of pruning an LLM-sized model (docs/performance.md, "LLM-sized weights"):
`gen_decoder.py OUT.onnx [--layers N --dim D --ffn F --heads H --seq S]` writes OUT.onnx and
its weights in OUT.onnx.data (onnx.helper and numpy; no torch).

Each layer is pre-norm (LayerNormalization): multi-head self-attention with MatMul projections
(weights [in, out], as exporters write them) and a residual add, then a SwiGLU MLP (gate and up
MatMul, SiLU as Sigmoid + Mul, down MatMul) and a residual add. In every MLP one neuron in 8 is
dead, the kinds in turn: gate column zero, up column zero, down row zero (docs/passes.md,
`glu-neuron-elimination`), so pruning removes one eighth of each MLP's hidden width.
The defaults (16 layers, D = 2048, F = 5632, TinyLlama's widths) give 3.07 GiB of f32 weights;
`--layers 2 --dim 256 --ffn 704 --heads 4` gives 7 MB for tests.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--layers", type=int, default=16)
p.add_argument("--dim", type=int, default=2048)
p.add_argument("--ffn", type=int, default=5632)
p.add_argument("--heads", type=int, default=16)
p.add_argument("--seq", type=int, default=4)
a = p.parse_args()
D, F, H, S = a.dim, a.ffn, a.heads, a.seq
hd = D // H
rng = np.random.default_rng(21)
data_name = os.path.basename(a.out) + ".data"
data = open(os.path.join(os.path.dirname(os.path.abspath(a.out)), data_name), "wb")
inits, nodes = [], []


def external(name, arr):
    """An initializer whose bytes go to the data file, 64 KiB-aligned."""
    off = data.tell()
    pad = -off % 65536
    data.write(b"\0" * pad)
    off += pad
    b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
    data.write(b)
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(arr.shape))
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", data_name), ("offset", str(off)), ("length", str(len(b)))):
        e = t.external_data.add()
        e.key, e.value = k, v
    inits.append(t)
    return name


def weight(name, rows, cols):
    return external(name, rng.standard_normal((rows, cols), dtype=np.float32) * (1.0 / np.sqrt(rows)))


def node(op, ins, out, **kw):
    nodes.append(helper.make_node(op, ins, [out], name=out, **kw))
    return out


def shape(name, dims):
    inits.append(helper.make_tensor(name, TensorProto.INT64, [len(dims)], dims))
    return name


h = "x"
to_heads, to_model = shape("to_heads", [1, S, H, hd]), shape("to_model", [1, S, D])
for l in range(a.layers):
    p_ = f"l{l}."
    g1 = external(p_ + "ln1.weight", np.ones(D, np.float32))
    b1 = external(p_ + "ln1.bias", np.zeros(D, np.float32))
    x1 = node("LayerNormalization", [h, g1, b1], p_ + "ln1", axis=-1)
    q, k, v = (node("MatMul", [x1, weight(p_ + n + ".weight", D, D)], p_ + n) for n in ("q", "k", "v"))
    qh = node("Transpose", [node("Reshape", [q, to_heads], p_ + "qr")], p_ + "qh", perm=[0, 2, 1, 3])
    kh = node("Transpose", [node("Reshape", [k, to_heads], p_ + "kr")], p_ + "kh", perm=[0, 2, 3, 1])
    vh = node("Transpose", [node("Reshape", [v, to_heads], p_ + "vr")], p_ + "vh", perm=[0, 2, 1, 3])
    att = node("Softmax", [node("MatMul", [qh, kh], p_ + "scores")], p_ + "att", axis=-1)
    ctx = node("Transpose", [node("MatMul", [att, vh], p_ + "ctxh")], p_ + "ctxt", perm=[0, 2, 1, 3])
    o = node("MatMul", [node("Reshape", [ctx, to_model], p_ + "ctx"), weight(p_ + "o.weight", D, D)], p_ + "o")
    h = node("Add", [h, o], p_ + "res1")
    g2 = external(p_ + "ln2.weight", np.ones(D, np.float32))
    b2 = external(p_ + "ln2.bias", np.zeros(D, np.float32))
    x2 = node("LayerNormalization", [h, g2, b2], p_ + "ln2", axis=-1)
    wg = rng.standard_normal((D, F), dtype=np.float32) * (1.0 / np.sqrt(D))
    wu = rng.standard_normal((D, F), dtype=np.float32) * (1.0 / np.sqrt(D))
    wd = rng.standard_normal((F, D), dtype=np.float32) * (1.0 / np.sqrt(F))
    dead = np.arange(l % 8, F, 8)
    wg[:, dead[0::3]] = 0
    wu[:, dead[1::3]] = 0
    wd[dead[2::3], :] = 0
    gate = node("MatMul", [x2, external(p_ + "gate.weight", wg)], p_ + "gate")
    del wg
    act = node("Mul", [gate, node("Sigmoid", [gate], p_ + "gate_sigmoid")], p_ + "gate_silu")
    up = node("MatMul", [x2, external(p_ + "up.weight", wu)], p_ + "up")
    del wu
    prod = node("Mul", [act, up], p_ + "prod")
    down = node("MatMul", [prod, external(p_ + "down.weight", wd)], p_ + "down")
    del wd
    h = node("Add", [h, down], p_ + "res2")
data.close()
nodes.append(helper.make_node("Identity", [h], ["y"], name="y"))
g = helper.make_graph(
    nodes,
    "decoder",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, D])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, S, D])],
    inits,
)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
m.ir_version = 9
onnx.save(m, a.out)
