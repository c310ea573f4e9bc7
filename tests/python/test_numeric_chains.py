"""The numeric chains of the transformer fixtures (issue #21; tests/llm): small ONNX graphs
made of the exact node sequences torch.onnx.export writes for RMSNorm (Llama, Qwen2), GELU in
its tanh form (GPT-2) and erf form (BERT, dynamo and TorchScript), and rotary's Neg. Each runs
in onnxruntime; nnopt imports it as one op (`nn.rms_norm`, `nn.gelu`, `nn.mul` by -1), and
`nnopt run --interp` and compiled `nnopt run` agree with onnxruntime to 1e-4 of the largest
output. The module exported back to ONNX runs in onnxruntime with the same outputs and
re-imports as the same op. Chains that differ from the formulas (another exponent, a wrong
constant) are refused with the node, its op type and opset, and nothing is written.

    .venv/bin/python tests/python/test_numeric_chains.py
"""

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from test_round_to import check_each
from test_torch_models import NNOPT

TOLERANCE = 1e-4
D = 16


def scalar(name, v):
    return helper.make_tensor(name, TensorProto.FLOAT, [], [v])


def graph(name, nodes, inits, opset=18):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5, D])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5, D])
    g = helper.make_graph(nodes, name, [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def rms_norm(scaled=True):
    """Llama's input_layernorm: nodes 56-62 of tests/llm/llama_dynamo.onnx."""
    n = [
        helper.make_node("Pow", ["x", "val_107"], ["pow_1"], name="node_pow"),
        helper.make_node(
            "ReduceMean", ["pow_1", "val_32"], ["mean"], name="node_mean", keepdims=1, noop_with_empty_axes=0
        ),
        helper.make_node("Add", ["mean", "val_110"], ["add_5"], name="node_add"),
        helper.make_node("Sqrt", ["add_5"], ["val_111"], name="node_sqrt"),
        helper.make_node("Reciprocal", ["val_111"], ["rsqrt"], name="node_rsqrt"),
        helper.make_node("Mul", ["x", "rsqrt"], ["mul_3" if scaled else "y"], name="node_mul"),
    ]
    inits = [
        scalar("val_107", 2.0),
        helper.make_tensor("val_32", TensorProto.INT64, [1], [-1]),
        scalar("val_110", 1e-6),
    ]
    if scaled:
        n.append(helper.make_node("Mul", ["weight", "mul_3"], ["y"], name="node_mul_1"))
        w = 1.0 + 0.1 * np.random.default_rng(1).standard_normal(D)
        inits.append(helper.make_tensor("weight", TensorProto.FLOAT, [D], w.astype(np.float32)))
    return graph("rms_norm", n, inits)


def gelu_tanh(k=0.044715, exponent=3.0):
    """GPT-2's NewGELU: nodes 83-90 of tests/llm/gpt2_dynamo.onnx."""
    n = [
        helper.make_node("Mul", ["x", "val_168"], ["mul_22"], name="node_mul_22"),
        helper.make_node("Pow", ["x", "val_169"], ["pow_1"], name="node_pow"),
        helper.make_node("Mul", ["pow_1", "val_170"], ["mul_23"], name="node_mul_23"),
        helper.make_node("Add", ["x", "mul_23"], ["add_8"], name="node_add_8"),
        helper.make_node("Mul", ["add_8", "val_171"], ["mul_24"], name="node_mul_24"),
        helper.make_node("Tanh", ["mul_24"], ["tanh"], name="node_tanh"),
        helper.make_node("Add", ["tanh", "val_9"], ["add_9"], name="node_add_9"),
        helper.make_node("Mul", ["mul_22", "add_9"], ["y"], name="node_mul_25"),
    ]
    inits = [
        scalar("val_168", 0.5),
        scalar("val_169", exponent),
        scalar("val_170", k),
        scalar("val_171", float(np.float32(np.sqrt(2 / np.pi)))),
        scalar("val_9", 1.0),
    ]
    return graph("gelu_tanh", n, inits)


def gelu_erf_dynamo(root2=float(np.float32(np.sqrt(2)))):
    """BERT's intermediate_act_fn: nodes 61-65 of tests/llm/bert_dynamo.onnx."""
    n = [
        helper.make_node("Div", ["x", "val_96"], ["val_97"], name="node_div"),
        helper.make_node("Erf", ["val_97"], ["val_98"], name="node_erf"),
        helper.make_node("Add", ["val_98", "val_99"], ["val_100"], name="node_add"),
        helper.make_node("Mul", ["val_101", "val_100"], ["val_102"], name="node_mul"),
        helper.make_node("Mul", ["x", "val_102"], ["y"], name="node_gelu"),
    ]
    inits = [scalar("val_96", root2), scalar("val_99", 1.0), scalar("val_101", 0.5)]
    return graph("gelu_erf_dynamo", n, inits)


def gelu_erf_ts():
    """The same in TorchScript's export (tests/llm/bert_ts.onnx, nodes 184-191): Constant
    nodes, the product associated the other way, opset 17."""

    def const(name, v):
        return helper.make_node("Constant", [], [name], name=f"{name}_node", value=scalar(name, v))

    n = [
        const("c_sqrt2", float(np.float32(np.sqrt(2)))),
        helper.make_node("Div", ["x", "c_sqrt2"], ["div"], name="/act/Div"),
        helper.make_node("Erf", ["div"], ["erf"], name="/act/Erf"),
        const("c_one", 1.0),
        helper.make_node("Add", ["erf", "c_one"], ["add"], name="/act/Add"),
        helper.make_node("Mul", ["x", "add"], ["mul"], name="/act/Mul"),
        const("c_half", 0.5),
        helper.make_node("Mul", ["mul", "c_half"], ["y"], name="/act/Mul_1"),
    ]
    return graph("gelu_erf_ts", n, [], opset=17)


def neg():
    """rotate_half's negation (Llama's `node_Neg`), then a product so the result is not x."""
    n = [
        helper.make_node("Neg", ["x"], ["neg"], name="node_neg"),
        helper.make_node("Mul", ["neg", "x"], ["y"], name="node_mul"),
    ]
    return graph("neg", n, [])


# name -> (model, a fragment the imported NNIR must contain, fragments it must not)
CASES = {
    "rms_norm": (rms_norm(), "nn.rms_norm %x, %weight {axis = 2, epsilon = 1e-6}", ["nn.mul"]),
    "rms_norm_unscaled": (rms_norm(False), "nn.rms_norm %x {axis = 2, epsilon = 1e-6}", ["nn.mul"]),
    "gelu_tanh": (gelu_tanh(), 'nn.gelu %x {approximate = "tanh"}', ["nn.tanh", "nn.mul"]),
    "gelu_erf_dynamo": (gelu_erf_dynamo(), 'nn.gelu %x {approximate = "none"}', ["nn.mul"]),
    "gelu_erf_ts": (gelu_erf_ts(), 'nn.gelu %x {approximate = "none"}', ["nn.mul"]),
    "neg": (neg(), "nn.mul %x, %neg.minus_one", []),
}

# name -> (model, fragments of the one diagnostic)
REFUSED = {
    # x^4 is no GELU: the Pow stays alone and is refused.
    "gelu_pow4": (gelu_tanh(exponent=4.0), ["node 'node_pow' (Pow, opset 18)", "part of neither"]),
    # 0.045 is not GELU's 0.044715 to f32 precision.
    "gelu_wrong_constant": (gelu_tanh(k=0.045), ["node 'node_pow' (Pow, opset 18)", "part of neither"]),
    # x / 1.5 then Erf: no GELU, and the division by a non-power of two is refused first.
    "erf_wrong_divisor": (gelu_erf_dynamo(root2=1.5), ["node 'node_div' (Div, opset 18)", "powers of two"]),
}


def nnopt(*args):
    return subprocess.run([NNOPT, *args], capture_output=True, text=True)


def run_ort(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def close(name, what, got, want):
    err = float(np.abs(got - want).max()) / float(np.abs(want).max())
    assert err <= TOLERANCE, f"{name}: {what} differs from onnxruntime by {err:.2e} of the largest output"
    return err


def check(name, d):
    model, has, lacks = CASES[name]
    src = os.path.join(d, f"{name}.onnx")
    onnx.checker.check_model(model)
    onnx.save(model, src)
    x = np.random.default_rng(7).standard_normal((2, 5, D)).astype(np.float32) * 2.0
    want = run_ort(src, x)
    nnir = os.path.join(d, f"{name}.nnir")
    r = nnopt("import", src, "-o", nnir)
    assert r.returncode == 0, f"{name}: nnopt import failed: {r.stderr}"
    text = open(nnir).read()
    assert has in text, f"{name}: the import lacks {has!r}:\n{text}"
    for frag in lacks:
        assert frag not in text, f"{name}: the import still has {frag!r}:\n{text}"
    xp = os.path.join(d, f"{name}.x.npy")
    np.save(xp, x)
    errs = []
    for mode in (["--interp"], []):
        out = os.path.join(d, f"{name}.y.npy")
        r = nnopt("run", nnir, *mode, "--input", xp, "-o", out)
        assert r.returncode == 0, f"{name}: nnopt run {mode} failed: {r.stderr}"
        errs.append(close(name, f"nnopt run {' '.join(mode) or '(compiled)'}", np.load(out), want))
    back = os.path.join(d, f"{name}.back.onnx")
    r = nnopt("export", nnir, "-o", back)
    assert r.returncode == 0, f"{name}: nnopt export failed: {r.stderr}"
    errs.append(close(name, "the exported model", run_ort(back, x), want))
    again = os.path.join(d, f"{name}.again.nnir")
    r = nnopt("import", back, "-o", again)
    assert r.returncode == 0, f"{name}: re-import failed: {r.stderr}"
    op = has.split(" ")[0]
    assert op in open(again).read(), f"{name}: the re-imported model lacks {op}"
    print(f"{name:20} interp {errs[0]:.1e}  compiled {errs[1]:.1e}  exported {errs[2]:.1e}")


def check_refused(name, d):
    model, needles = REFUSED[name]
    src = os.path.join(d, f"{name}.onnx")
    onnx.save(model, src)
    run_ort(src, np.ones((1, 5, D), np.float32))
    out = os.path.join(d, f"{name}.nnir")
    r = nnopt("import", src, "-o", out)
    assert r.returncode == 1, f"{name}: expected a refusal, got exit {r.returncode}: {r.stderr}"
    for n in needles:
        assert n in r.stderr, f"{name}: the diagnostic lacks {n!r}: {r.stderr}"
    assert not os.path.exists(out), f"{name}: an output was written"
    print(f"{name:20} refused")


def main():
    # Every case runs and reports its failure, not only the first.
    return max(check_each(CASES, check), check_each(REFUSED, check_refused))


if __name__ == "__main__":
    sys.exit(main())
