"""Channel alignment in onnxruntime (issue #19): `nnopt --prune-neurons --round-to=N` on the
real-model graphs of tests/torch (weights filled and dead neurons planted as
test_torch_models.py does) writes a model whose every pruned Conv, Gemm and MatMul layer has a
multiple of N output channels (a layer pruning left whole keeps its count), that computes the
same outputs in onnxruntime to 1e-4 of the largest output, and that is no larger than the
original. Alignment only keeps neurons that could go, so the aligned file is never smaller
than the unaligned one.

Run with the project venv: `.venv/bin/python tests/python/test_round_to.py`, with the nnopt
binary of `cargo build` (as test_torch_models.py finds it).
"""

import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx

from test_torch_models import FIXTURES, NNOPT, fill, input_shape, params, run

MODELS = ["mobilenet_v2_ts", "resnet18_dynamo", "squeezenet1_1_ts", "transformer_ts"]
TOLERANCE = 1e-4


def widths(model):
    """Output channels of each weighted node, by node name."""
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        w = inits.get(n.input[1]) if len(n.input) > 1 else None
        if w is None:
            continue
        if n.op_type == "Conv":
            out[n.name] = w[0]
        elif n.op_type == "Gemm":
            trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
            out[n.name] = w[0] if trans_b else w[1]
        elif n.op_type == "MatMul":
            out[n.name] = w[-1]
    return out


def prune(src, dst, *flags):
    r = subprocess.run([NNOPT, "--prune-neurons", *flags, src, "-o", dst], capture_output=True, text=True)
    assert r.returncode == 0, f"{src}: nnopt --prune-neurons {flags} failed: {r.stderr}"
    return onnx.load(dst)


def check(name, d):
    rng = np.random.default_rng(zlib.crc32(name.rsplit("_", 1)[0].encode()))
    model = onnx.load(os.path.join(FIXTURES, f"{name}.onnx"), load_external_data=False)
    fill(model, rng)
    src = os.path.join(d, f"{name}.onnx")
    onnx.save(model, src)
    before = widths(model)
    x = rng.standard_normal(input_shape(model)).astype(np.float32)
    want = run(src, x)
    scale = max(float(np.max(np.abs(want))), 1e-6)
    unaligned = params(prune(src, os.path.join(d, "p1.onnx"), "--round-to=1"))
    for n in (8, 16):
        dst = os.path.join(d, f"{name}.r{n}.onnx")
        pruned = prune(src, dst, f"--round-to={n}")
        after = widths(pruned)
        bad = {k: (before.get(k), v) for k, v in after.items() if v != before.get(k) and v % n}
        assert not bad, f"{name}: round-to={n} left widths that are not multiples: {bad}"
        assert any(v != before.get(k) for k, v in after.items()), f"{name}: round-to={n} pruned nothing"
        err = float(np.max(np.abs(run(dst, x) - want))) / scale
        assert err <= TOLERANCE, f"{name}: round-to={n}: outputs differ by {err:.3g} of the largest"
        p = params(pruned)
        assert unaligned <= p <= params(model), f"{name}: round-to={n}: {unaligned} <= {p} <= {params(model)} fails"
        print(f"{name:20} round-to={n:<3} parameters {params(model)} -> {p} (unaligned {unaligned}), diff {err:.2e}")


def check_each(models, check):
    """Runs check(name, dir) on every model, reporting every failure, not only the first."""
    failures = []
    with tempfile.TemporaryDirectory() as d:
        for name in models:
            try:
                check(name, d)
            except AssertionError as e:
                failures.append(str(e))
    for f in failures:
        print(f"FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(check_each(MODELS, check))
