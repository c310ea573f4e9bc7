"""Oracle test: small real architectures with dead neurons, pruned by
`nnopt --prune-neurons x.onnx -o y.onnx`, must compute the same outputs in onnxruntime
(1e-5 relative) with exactly the expected number of parameters removed; and `nnopt run` (the
compiled path, on one and two threads) must compute onnxruntime's outputs to 1e-4.

Run with the project venv: `.venv/bin/python tests/python/test_onnx_oracle.py` (scripts/test.sh
does). Each model has a known set of dead neurons; the expected parameter drop is derived from
docs/passes.md: a dead neuron feeding a weighted consumer (linear, ungrouped conv) loses its row,
its bias entry and the consumer's column, also through a concat whose readers are such consumers
(the scatter that restores it for the concat folds into them).
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NNOPT = os.environ.get(
    "NNOPT", os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "nnopt")
)
rng = np.random.default_rng(0)

# Initializers counted as parameters: those read by weighted ops and bias adds (the exporter's
# Transpose of a linear weight included). Shapes, indices and scatter fills are not parameters.
PARAM_OPS = {"Conv", "Gemm", "MatMul", "Add", "Transpose", "BatchNormalization", "LayerNormalization"}


def params(model):
    inits = {t.name: t for t in model.graph.initializer}
    used = set()
    for n in model.graph.node:
        if n.op_type in PARAM_OPS:
            used.update(i for i in n.input if i in inits)
    return sum(int(np.prod(inits[i].dims)) for i in used if inits[i].data_type == TensorProto.FLOAT)


def w(*shape):
    return rng.standard_normal(shape).astype(np.float32) * 0.5


def init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def make(name, nodes, inits, x_shape, y_shape, opset=17, ir=8):
    """The model; with `ir=None` it keeps the IR version the pinned onnx writes (13 for 1.22)."""
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [init(k, v) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    if ir is not None:
        m.ir_version = ir
    onnx.checker.check_model(m, full_check=True)
    return m


def residual(dead):
    """x → conv3x3 → relu → conv1x1 → + x; hidden channels `dead` have zero filters and a
    negative bias (relu → 0)."""
    c, h = 4, 8
    w1, b1 = w(h, c, 3, 3), w(h)
    w1[dead] = 0
    b1[dead] = -np.abs(b1[dead]) - 0.1
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"]),
        helper.make_node("Add", ["c2", "x"], ["y"]),
    ]
    m = make("residual", nodes, {"w1": w1, "b1": b1, "w2": w(c, h, 1, 1), "b2": w(c)}, [2, c, 6, 6], [2, c, 6, 6])
    return m, len(dead) * (c * 9 + 1 + c)


def depthwise(dead):
    """x → conv1x1 → relu → depthwise 3x3 (zero-padded) → relu → conv1x1. Pruning follows a
    dead channel of the first conv through the depthwise conv: when relu(b1_j) = 0 the
    depthwise channel is the constant relu(b2_j) and folds into the last conv, so the first
    conv's row, the depthwise filter and the last conv's column go; when relu(b1_j) > 0 the
    padded depthwise conv sees it only inside the image and the channel stays."""
    c, h, d = 3, 6, 5
    w1, b1 = w(h, c, 1, 1), w(h)
    w1[dead] = 0
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], group=h, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["y"]),
    ]
    inits = {"w1": w1, "b1": b1, "w2": w(h, 1, 3, 3), "b2": w(h), "w3": w(d, h, 1, 1), "b3": w(d)}
    m = make("depthwise", nodes, inits, [1, c, 5, 5], [1, d, 5, 5])
    return m, sum((c + 1) + (9 + 1) + d for j in dead if b1[j] <= 0)


def concat(dead, batch=1):
    """Two 1x1 conv branches concatenated, then a 1x1 conv; dead channels of branch a are
    constant (random bias, sigmoid) and reach the head through the concat. With a dynamic
    batch the exported scatter builds its fill's shape from Shape/Slice/Concat."""
    c, ha, hb, d = 3, 4, 5, 2
    wa, ba = w(ha, c, 1, 1), w(ha)
    wa[dead] = 0
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["sa"]),
        helper.make_node("Conv", ["x", "wb", "bb"], ["b"]),
        helper.make_node("Relu", ["b"], ["rb"]),
        helper.make_node("Concat", ["sa", "rb"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "wc", "bc"], ["y"]),
    ]
    inits = {"wa": wa, "ba": ba, "wb": w(hb, c, 1, 1), "bb": w(hb), "wc": w(d, ha + hb, 1, 1), "bc": w(d)}
    m = make("concat", nodes, inits, [batch, c, 4, 4], [batch, d, 4, 4])
    # The scatter that restores the dead channels for the concat folds into the head conv
    # (sink-scatter-through-concat): each dead channel also loses the head's column.
    return m, len(dead) * (c + 1 + d)


def ffn(dead, latest=False):
    """Transformer FFN on [batch, tokens, model]: MatMul + Add → Gelu → MatMul + Add, with
    LayerNorm in front and a residual add; dead hidden neurons (zero columns of W1, random
    biases) fold into the second bias."""
    dm, hid = 8, 16
    w1, b1 = w(dm, hid), w(hid)
    w1[:, dead] = 0
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "beta"], ["ln"], axis=-1),
        helper.make_node("MatMul", ["ln", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["h1"]),
        helper.make_node("Gelu", ["h1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["f"]),
        helper.make_node("Add", ["f", "x"], ["y"]),
    ]
    inits = {"g": w(dm), "beta": w(dm), "w1": w1, "b1": b1, "w2": w(hid, dm), "b2": w(dm)}
    if latest:
        m = make("ffn", nodes, inits, [2, 3, dm], [2, 3, dm], opset=onnx.defs.onnx_opset_version(), ir=None)
        assert m.ir_version == onnx.IR_VERSION == 13, m.ir_version
    else:
        m = make("ffn", nodes, inits, [2, 3, dm], [2, 3, dm], opset=20)
    return m, len(dead) * (2 * dm + 1)


def check(name, model, expected_drop, x_shape, compiled_on_source=False):
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "x.onnx"), os.path.join(d, "y.onnx")
        onnx.save(model, src)
        r = subprocess.run([NNOPT, "--prune-neurons", src, "-o", dst], capture_output=True, text=True)
        assert r.returncode == 0, f"{name}: nnopt failed: {r.stderr}"
        pruned = onnx.load(dst)
        onnx.checker.check_model(pruned, full_check=True)
        x = rng.standard_normal(x_shape).astype(np.float32)
        want = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        got = ort.InferenceSession(dst, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        rel = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-6))
        scale_rel = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-6)
        assert scale_rel <= 1e-5, f"{name}: outputs differ, max relative {rel:.3g} (to the output scale {scale_rel:.3g})"
        before, after = params(model), params(pruned)
        assert before - after == expected_drop, f"{name}: {before} -> {after} parameters, expected a drop of {expected_drop}"
        # The compiled path too (MLIR, transform schedules, JIT; one and two threads), against
        # onnxruntime: on the pruned model, or on the original where nnopt cannot re-import
        # its own export (a dynamic-batch scatter, docs/onnx.md).
        target = src if compiled_on_source else dst
        xp, yp = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        np.save(xp, x)
        for threads in ["1", "2"]:
            r = subprocess.run([NNOPT, "run", target, "--input", xp, "--output", yp, "--threads", threads],
                               capture_output=True, text=True)
            assert r.returncode == 0, f"{name}: compiled run failed: {r.stderr}"
            got = np.load(yp)
            err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-6)
            assert err <= 1e-4, f"{name}: compiled ({threads} threads) differs from onnxruntime: {err:.3g}"
        print(f"ok {name}: {before} -> {after} parameters, max relative difference {scale_rel:.2e}, compiled {err:.2e}")


def main():
    for name, build, x_shape, on_source in [
        ("residual", residual, [2, 4, 6, 6], False),
        ("depthwise", depthwise, [1, 3, 5, 5], False),
        ("concat", concat, [1, 3, 4, 4], False),
        ("concat, dynamic batch", lambda dead: concat(dead, "N"), [3, 3, 4, 4], True),
        ("ffn", ffn, [2, 3, 8], False),
        ("ffn, as the pinned onnx saves it (IR 13, newest opset)", lambda dead: ffn(dead, True), [2, 3, 8], False),
    ]:
        model, drop = build([1, 2])
        check(name, model, drop, x_shape, on_source)


if __name__ == "__main__":
    sys.exit(main())
