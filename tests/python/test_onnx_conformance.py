"""Conformance: runs the onnx 1.22.0 backend node tests of the operators nnopt imports through
`nnopt run --interp model.onnx` and compares with the expected outputs (the backend runner's
tolerances, rtol 1e-3 / atol 1e-7); every test the interpreter passes also runs compiled
(`nnopt run`: MLIR, schedules, JIT; atol 1e-6 for FMA contraction), which must pass or be
refused by the lowering with a diagnostic. Writes the per-operator table to docs/onnx.md between the
markers when called with --write-docs, and fails when a test that passed before (listed in
tests/python/conformance_expected.txt) no longer passes.

A test is `pass`, `fail` (imported and ran, wrong numbers or a runtime error) or `refused` (the
importer rejected the model with a diagnostic: an unsupported opset, attribute or computed
shape input).
"""

import glob
import os
import subprocess
import sys
import tempfile
from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NNOPT = os.environ.get(
    "NNOPT", os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "nnopt")
)
EXPECTED = os.path.join(ROOT, "tests", "python", "conformance_expected.txt")
DOC = os.path.join(ROOT, "docs", "onnx.md")
BEGIN, END = "<!-- conformance:begin -->", "<!-- conformance:end -->"

SUPPORTED = [
    "Conv", "Gemm", "MatMul", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Gelu", "HardSwish",
    "Add", "Sub", "Mul", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
    "BatchNormalization", "Flatten", "Reshape", "Transpose", "Softmax", "LayerNormalization",
    "Identity", "Dropout", "Constant", "Gather", "Squeeze", "Unsqueeze", "Shape", "Cast",
    "Slice", "Split", "Expand", "RMSNormalization", "Neg",
]


def tests():
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    for d in sorted(glob.glob(os.path.join(data, "*"))):
        if d.endswith("_expanded") or "_expanded_" in d:
            continue
        m = onnx.load(os.path.join(d, "model.onnx"))
        ops = {n.op_type for n in m.graph.node}
        if len(ops) == 1 and ops <= set(SUPPORTED):
            yield os.path.basename(d), ops.pop(), d


def model_path(d, tmp):
    """The test's model as onnx 1.22.0 saved it (IR version 13, opsets up to 25 for these
    operators: nothing is re-labelled), or a copy with its integer inputs bound as constants."""
    path = os.path.join(d, "model.onnx")
    m = onnx.load(path)
    bound = bind_integer_inputs(m, d)
    if not bound:
        return path, []
    out = os.path.join(tmp, "model.onnx")
    onnx.save(m, out)
    return out, bound


INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}


def bind_integer_inputs(m, d):
    """nnopt takes shapes, axes and indices only as constants; node tests often feed them as
    graph inputs. Such an integer input becomes an initializer holding the test's value (the
    test then checks the operator with constant operands, which is what nnopt supports).
    Returns the bound input positions."""
    ds = os.path.join(d, "test_data_set_0")
    inits = {t.name for t in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    bound = []
    for k, vi in enumerate(inputs):
        if vi.type.tensor_type.elem_type not in INT_TYPES:
            continue
        t = onnx.TensorProto()
        with open(os.path.join(ds, f"input_{k}.pb"), "rb") as f:
            t.ParseFromString(f.read())
        t.name = vi.name
        m.graph.initializer.append(t)
        bound.append(k)
    for k in reversed(bound):
        del m.graph.input[k]
    return bound


def run_one(d, tmp):
    status, why = run_model(d, tmp)
    return status, why


def run_model(d, tmp):
    ds = os.path.join(d, "test_data_set_0")
    ins = sorted(glob.glob(os.path.join(ds, "input_*.pb")), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
    outs = sorted(glob.glob(os.path.join(ds, "output_*.pb")), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
    path, bound = model_path(d, tmp)
    args = [NNOPT, "run", "--interp", path]
    model = onnx.load(path)
    inits = {t.name for t in model.graph.initializer}
    graph_inputs = [i.name for i in model.graph.input if i.name not in inits]
    for k, p in enumerate(ins):
        if k in bound:
            continue
        t = onnx.TensorProto()
        with open(p, "rb") as f:
            t.ParseFromString(f.read())
        try:
            a = numpy_helper.to_array(t)
        except ValueError:
            return "refused", "an input is not a plain tensor"
        if a.dtype != np.float32:
            # nnopt's graph inputs are float; an integer input (a shape, indices, axes) is
            # refused by the importer, which is what this test should record.
            a = a.astype(np.float32)
        q = os.path.join(tmp, f"in{k}.npy")
        np.save(q, a)
        args += ["--input", q]
    expected = []
    for k, p in enumerate(outs):
        t = onnx.TensorProto()
        with open(p, "rb") as f:
            t.ParseFromString(f.read())
        try:
            expected.append(numpy_helper.to_array(t))
        except ValueError:
            return "refused", "an output is not a plain tensor"
        args += ["--output", os.path.join(tmp, f"out{k}.npy")]
    if len(ins) - len(bound) != len(graph_inputs):
        return "refused", "inputs do not match the graph"
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        msg = r.stderr.strip().splitlines()[0] if r.stderr.strip() else f"exit {r.returncode}"
        # Import errors are diagnostics about the model; anything else is a failure to run.
        kind = "fail" if "interp" in msg or "kernel" in msg else "refused"
        return kind, msg.removeprefix("error: ")
    for k, want in enumerate(expected):
        got = np.load(os.path.join(tmp, f"out{k}.npy"))
        if got.shape != want.shape:
            return "fail", f"output {k} has shape {got.shape}, expected {want.shape}"
        if not np.allclose(got, want.astype(np.float32), rtol=1e-3, atol=1e-7, equal_nan=True):
            err = np.max(np.abs(got - want))
            return "fail", f"output {k} differs by up to {err:.3g}"
    notes = []
    if bound:
        notes.append("integer inputs bound as constants")
    compiled, why = run_compiled(args, expected, tmp)
    notes.append(f"compiled: {compiled}" + (f" ({why})" if why else ""))
    return "pass", "; ".join(notes)


def run_compiled(interp_args, expected, tmp):
    """The same test through the compiled path (`nnopt run` without --interp: MLIR lowering,
    transform schedules, JIT). `pass`; `not lowered` (a diagnostic of the lowering, e.g. a
    dynamic spatial size); or `fail` (wrong numbers, a crash, any other error)."""
    args = [a for a in interp_args if a != "--interp"]
    args = [a.replace(os.path.join(tmp, "out"), os.path.join(tmp, "jit")) for a in args]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        msg = r.stderr.strip().splitlines()[0] if r.stderr.strip() else f"exit {r.returncode}"
        if r.returncode == 1 and "cannot be lowered to MLIR yet" in r.stderr:
            return "not lowered", msg.removeprefix("error: ")
        return "fail", msg.removeprefix("error: ")
    for k, want in enumerate(expected):
        got = np.load(os.path.join(tmp, f"jit{k}.npy"))
        if got.shape != want.shape:
            return "fail", f"output {k} has shape {got.shape}, expected {want.shape}"
        if not np.allclose(got, want.astype(np.float32), rtol=1e-3, atol=1e-6, equal_nan=True):
            return "fail", f"output {k} differs by up to {np.max(np.abs(got - want)):.3g}"
    return "pass", ""


def main():
    results = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for name, op, d in tests():
            status, why = run_one(d, tmp)
            results[op].append((name, status, why))
    lines = [
        "| operator | tests | pass | of which with integer inputs bound | fail | refused | compiled: pass / not lowered / fail |",
        "|---|---|---|---|---|---|---|",
    ]
    details = []
    passed = set()
    jit_failed = []
    for op in SUPPORTED:
        rs = results.get(op, [])
        c = {s: sum(1 for r in rs if r[1] == s) for s in ("pass", "fail", "refused")}
        consts = sum(1 for r in rs if r[1] == "pass" and "bound" in r[2])
        jit = {k: sum(1 for r in rs if f"compiled: {k}" in r[2]) for k in ("pass", "not lowered", "fail")}
        lines.append(
            f"| {op} | {len(rs)} | {c['pass']} | {consts} | {c['fail']} | {c['refused']} "
            f"| {jit['pass']} / {jit['not lowered']} / {jit['fail']} |"
        )
        for name, status, why in rs:
            if status == "pass":
                passed.add(name)
                if "compiled: pass" not in why:
                    details.append(f"| `{name}` | pass, {why.split('compiled: ', 1)[1].replace('|', '/')} | compiled path |")
                if "compiled: fail" in why:
                    jit_failed.append(f"{name}: {why}")
            else:
                details.append(f"| `{name}` | {status} | {why.replace('|', '/')} |")
    total = sum(len(v) for v in results.values())
    print("\n".join(lines))
    print(f"{len(passed)} of {total} node tests pass")
    if "--write-docs" in sys.argv:
        table = "\n".join(lines) + f"\n\n{len(passed)} of {total} node tests pass.\n\n| test | result | reason |\n|---|---|---|\n" + "\n".join(details)
        text = open(DOC).read()
        a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
        open(DOC, "w").write(text[:a] + "\n" + table + "\n" + text[b:])
        with open(EXPECTED, "w") as f:
            f.write("\n".join(sorted(passed)) + "\n")
    if os.path.exists(EXPECTED):
        before = {l.strip() for l in open(EXPECTED) if l.strip()}
        lost = sorted(before - passed)
        assert not lost, f"node tests that passed before now fail: {lost}"
    assert not jit_failed, "compiled code disagrees with the interpreter's pass:\n" + "\n".join(jit_failed)


if __name__ == "__main__":
    main()
