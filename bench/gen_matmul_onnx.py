#!/usr/bin/env python3
"""A MatMul-form ONNX model for bench/onnx_roundtrip.sh: `gen_matmul_onnx.py OUT.onnx [WIDTH]`.
x[?, W/2] -> MatMul W1[W/2, W] -> Add -> Relu -> MatMul W2[W, W] -> Add, weights stored [in, out]
as TensorFlow-style exporters write them (the importer turns each into an [out, in] linear
weight); every odd neuron of the first layer has a zero column and a non-zero bias.
WIDTH 8192 gives 403 MB. Needs numpy and onnx (the project venv has both). Seeded."""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out, width = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8192
rng = np.random.default_rng(3)
k = width // 2
w1 = (rng.standard_normal((k, width), dtype=np.float32) / np.sqrt(k)).astype(np.float32)
w1[:, 1::2] = 0.0
b1 = (0.1 * rng.standard_normal(width)).astype(np.float32)
w2 = (rng.standard_normal((width, width), dtype=np.float32) / np.sqrt(width)).astype(np.float32)
b2 = (0.1 * rng.standard_normal(width)).astype(np.float32)
nodes = [
    helper.make_node("MatMul", ["x", "w1"], ["m1"]),
    helper.make_node("Add", ["m1", "b1"], ["a1"]),
    helper.make_node("Relu", ["a1"], ["r1"]),
    helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
    helper.make_node("Add", ["m2", "b2"], ["y"]),
]
inits = [numpy_helper.from_array(a, n) for n, a in [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)]]
g = helper.make_graph(
    nodes,
    "matmul_mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
    inits,
)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
m.ir_version = 8
onnx.save(m, out)
