"""LLM-shaped checks in onnxruntime: gated MLPs (SwiGLU as Llama writes it, GeGLU with biases)
with planted dead neurons of every removable kind, and multi-head attention with planted dead
heads (ignored, constant, and a query-zero head that stays), pruned by `nnopt --prune-neurons`
to the exact parameter bound (docs/passes.md, `glu-neuron-elimination` and
`attention-head-elimination`); attention with a head count that does not divide the width or
query and key heads of different counts, refused at import (issue #21's bad input); and ONNX external data written by
nnopt (`--external-data[=FILE]`), loaded by onnxruntime and read back by nnopt, also for a small
decoder from bench/gen_decoder.py.

Run with the project venv: `.venv/bin/python tests/python/test_llm_weights.py` (scripts/test.sh
does).
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
rng = np.random.default_rng(21)
D, H = 16, 32


def params(model):
    """Float initializer elements read by MatMul and Add (the weights and biases)."""
    inits = {t.name: t for t in model.graph.initializer}
    used = {i for n in model.graph.node if n.op_type in ("MatMul", "Add", "Gemm") for i in n.input if i in inits}
    return sum(int(np.prod(inits[i].dims)) for i in used if inits[i].data_type == TensorProto.FLOAT)


def glu(act, biases):
    """x + down(act(gate(x)) * up(x)) on [batch, tokens, D]: MatMul projections ([in, out]
    weights), SiLU as Sigmoid + Mul (how torch exports it) or Gelu; with `biases`, an Add after
    each projection. Hidden neurons 1 (gate column zero), 4 (up column zero), 7 (down row zero)
    and, with biases, 9 (gate and up zero: the constant act(b_g)·b_u folds into down's bias)
    are removable; returns the model and the parameter drop they allow."""
    wg, wu, wd = (rng.standard_normal(s).astype(np.float32) * 0.5 for s in [(D, H), (D, H), (H, D)])
    bg, bu, bd = (rng.standard_normal(n).astype(np.float32) * 0.5 for n in [H, H, D])
    wg[:, 1] = 0
    wu[:, 4] = 0
    wd[7, :] = 0
    dead = [1, 4, 7]
    if biases:
        bg[1] = 0  # act(0) = 0: the product is 0 whatever up computes
        bu[4] = 0
        wg[:, 9] = 0
        wu[:, 9] = 0
        dead.append(9)
    inits = {"wg": wg, "wu": wu, "wd": wd}
    nodes = []

    def proj(x, w, b, out):
        if biases:
            nodes.append(helper.make_node("MatMul", [x, w], [out + "_m"]))
            nodes.append(helper.make_node("Add", [out + "_m", b], [out]))
            inits[b] = {"bg": bg, "bu": bu, "bd": bd}[b]
        else:
            nodes.append(helper.make_node("MatMul", [x, w], [out]))

    proj("x", "wg", "bg", "g")
    if act == "silu":
        nodes.append(helper.make_node("Sigmoid", ["g"], ["sg"]))
        nodes.append(helper.make_node("Mul", ["g", "sg"], ["a"]))
    else:
        nodes.append(helper.make_node("Gelu", ["g"], ["a"]))
    proj("x", "wu", "bu", "u")
    nodes.append(helper.make_node("Mul", ["a", "u"], ["h"]))
    proj("h", "wd", "bd", "f")
    nodes.append(helper.make_node("Add", ["x", "f"], ["y"]))
    g = helper.make_graph(
        nodes,
        f"{act}_glu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, D])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 9
    onnx.checker.check_model(m, full_check=True)
    per_neuron = 3 * D + (2 if biases else 0)
    return m, len(dead) * per_neuron


def nnopt(*args):
    r = subprocess.run([NNOPT, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"nnopt {' '.join(args)} failed: {r.stderr}"
    return r


def ort_run(path, x):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def rel(got, want):
    return np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-6)


def check_pruned(name, model, drop, d, *flags):
    """Prunes `model` with `flags`; onnxruntime on the pruned file agrees with the original, the
    parameters drop by exactly `drop`, and nnopt's interpreter and compiled code on the pruned
    file agree with onnxruntime."""
    src, dst = os.path.join(d, "model.onnx"), os.path.join(d, "pruned.onnx")
    onnx.save(model, src)
    nnopt("--prune-neurons", *flags, src, "-o", dst)
    pruned = onnx.load(dst)
    onnx.checker.check_model(pruned, full_check=True)
    x = rng.standard_normal((2, 3, D)).astype(np.float32)
    want, got = ort_run(src, x), ort_run(dst, x)
    err = rel(got, want)
    assert err <= 1e-4, f"{name}: pruned differs from the original by {err:.3g} of the largest magnitude"
    before, after = params(model), params(pruned)
    assert before - after == drop, f"{name}: {before} -> {after} parameters, expected a drop of {drop}"
    # nnopt reads its own output back, and its interpreter agrees with onnxruntime.
    xp, yp = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
    np.save(xp, x)
    nnopt("run", "--interp", dst, "--input", xp, "--output", yp)
    ierr = rel(np.load(yp), want)
    assert ierr <= 1e-4, f"{name}: nnopt's interpreter on the pruned model differs by {ierr:.3g}"
    nnopt("run", dst, "--input", xp, "--output", yp)
    cerr = rel(np.load(yp), want)
    assert cerr <= 1e-4, f"{name}: the compiled pruned model differs from onnxruntime by {cerr:.3g}"
    print(f"ok {name}: {before} -> {after} parameters, max relative difference {err:.2e}, "
          f"re-imported {ierr:.2e}, compiled {cerr:.2e}")


def attention(biases):
    """y = x + o_proj(attention(x)) on [2, 3, E] as exporters write multi-head attention:
    q/k/v MatMuls (and Adds with `biases`), Reshape to [B, S, H, D], Transpose, scaled scores
    with a causal mask, Softmax, the weighted values, Transpose and Reshape back, o_proj.
    Head 1's o_proj rows ([in, out] weights) are zero (ignored); head 2's value columns are zero
    (with `biases` it outputs the value bias, which o_proj's bias absorbs); head 0's query columns
    and bias are zero (uniform attention: it stays). Returns the model and the parameter drop of
    heads 1 and 2."""
    E, H, HD, B, S = 16, 4, 4, 2, 3
    w = {n: rng.standard_normal((E, E)).astype(np.float32) * 0.5 for n in ["wq", "wk", "wv", "wo"]}
    b = {n: rng.standard_normal(E).astype(np.float32) * 0.5 for n in ["bq", "bk", "bv", "bo"]}
    w["wo"][1 * HD:2 * HD, :] = 0
    w["wv"][:, 2 * HD:3 * HD] = 0
    w["wq"][:, 0:HD] = 0
    b["bq"][0:HD] = 0
    mask = np.triu(np.full((S, S), -1e9, np.float32), 1)
    inits = dict(w, mask=mask, scale=np.array([1 / np.sqrt(HD)], np.float32),
                 split=np.array([B, S, H, HD], np.int64), merge=np.array([B, S, E], np.int64))
    if biases:
        inits.update(b)
    nodes = []

    def proj(x, n, out):
        if biases:
            nodes.append(helper.make_node("MatMul", [x, "w" + n], [out + "_m"]))
            nodes.append(helper.make_node("Add", [out + "_m", "b" + n], [out]))
        else:
            nodes.append(helper.make_node("MatMul", [x, "w" + n], [out]))

    for n in "qkv":
        proj("x", n, n)
        nodes.append(helper.make_node("Reshape", [n, "split"], [n + "4"]))
        nodes.append(helper.make_node("Transpose", [n + "4"], [n + "h"], perm=[0, 2, 1, 3]))
    nodes += [
        helper.make_node("Transpose", ["kh"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["qh", "kt"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["ss"]),
        helper.make_node("Add", ["ss", "mask"], ["sm"]),
        helper.make_node("Softmax", ["sm"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "vh"], ["a"]),
        helper.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["at", "merge"], ["m"]),
    ]
    proj("m", "o", "f")
    nodes.append(helper.make_node("Add", ["x", "f"], ["y"]))
    g = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, E])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, S, E])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 9
    onnx.checker.check_model(m, full_check=True)
    per_head = 4 * HD * E + (3 * HD if biases else 0)
    return m, 2 * per_head


def check_bad_heads(d):
    """Issue #21's bad input: a head count that does not divide the width, and query and key
    heads of different counts, are refused at import with one diagnostic naming the node, its
    op type and opset, and nothing is written (so no pattern ever sees them)."""
    E, B, S = 16, 2, 3
    ones = numpy_helper.from_array(np.ones((E, E), np.float32), "w")

    def model(nodes, shapes, out):
        inits = [ones] + [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in shapes.items()]
        g = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, E])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
        m.ir_version = 9
        return m

    cases = [
        ("5 heads of a width of 16",
         model([helper.make_node("MatMul", ["x", "w"], ["q"]),
                helper.make_node("Reshape", ["q", "shape"], ["q4"], name="split_heads")],
               {"shape": [B, S, 5, -1]}, "q4"),
         "node 'split_heads' (Reshape, opset 20): cannot infer -1"),
        ("4 query heads against 2 key heads",
         model([helper.make_node("MatMul", ["x", "w"], ["q"]),
                helper.make_node("MatMul", ["x", "w"], ["k"]),
                helper.make_node("Reshape", ["q", "sq"], ["q4"]),
                helper.make_node("Reshape", ["k", "sk"], ["k4"]),
                helper.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
                helper.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
                helper.make_node("MatMul", ["qh", "kt"], ["s"], name="scores")],
               {"sq": [B, S, 4, 4], "sk": [B, S, 2, 8]}, "s"),
         "node 'scores' (MatMul, opset 20): inner dimensions of tensor<2x4x3x4xf32> and tensor<2x2x8x3xf32> differ"),
    ]
    for name, m, want in cases:
        src, dst = os.path.join(d, "heads_refused.onnx"), os.path.join(d, "heads_refused_out.onnx")
        onnx.save(m, src)
        r = subprocess.run([NNOPT, "--prune-neurons", src, "-o", dst], capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.count("error:") == 1, f"{name}: exit {r.returncode}\n{r.stderr}"
        assert want in r.stderr and "panicked" not in r.stderr, f"{name}: expected '{want}' in\n{r.stderr}"
        assert not os.path.exists(dst), f"{name}: a refused model wrote {dst}"
        print(f"ok bad input, {name}: {want}")


def check_external_data(d):
    """A pruned model written with external data (the default file and a named one): both
    files appear, every large initializer lives in the data file at an aligned offset under a
    relative location, onnxruntime runs it, and nnopt reads it back."""
    model, _ = glu("silu", True)
    src = os.path.join(d, "m.onnx")
    onnx.save(model, src)
    x = rng.standard_normal((2, 3, D)).astype(np.float32)
    want = ort_run(src, x)
    for flag, data_name in [("--external-data", "out.onnx.data"), ("--external-data=weights.bin", "weights.bin")]:
        out = os.path.join(d, "out.onnx")
        for stale in [out, os.path.join(d, data_name)]:
            if os.path.exists(stale):
                os.remove(stale)
        nnopt("--prune-neurons", flag, src, "-o", out)
        data = os.path.join(d, data_name)
        assert os.path.exists(data), f"{flag}: no {data_name}"
        m = onnx.load(out, load_external_data=False)
        external = [t for t in m.graph.initializer if t.data_location == TensorProto.EXTERNAL]
        assert external, f"{flag}: no initializer is external"
        for t in external:
            info = {e.key: e.value for e in t.external_data}
            assert info["location"] == data_name, info
            assert int(info["offset"]) % 64 == 0, info
            assert int(info["offset"]) + int(info["length"]) <= os.path.getsize(data), info
        got = ort_run(out, x)
        err = rel(got, want)
        assert err <= 1e-4, f"{flag}: onnxruntime on the external-data model differs by {err:.3g}"
        xp, yp = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        np.save(xp, x)
        nnopt("run", "--interp", out, "--input", xp, "--output", yp)
        ierr = rel(np.load(yp), want)
        assert ierr <= 1e-4, f"{flag}: nnopt reading its external data differs by {ierr:.3g}"
        print(f"ok external data ({flag}): {len(external)} initializers in {data_name}, {err:.2e}, re-imported {ierr:.2e}")
    # A path, not a file name, is a usage error, and nothing is written.
    r = subprocess.run([NNOPT, "--prune-neurons", "--external-data=sub/w.bin", src, "-o", os.path.join(d, "bad.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and not os.path.exists(os.path.join(d, "bad.onnx")), r.stderr


def check_generated_decoder(d):
    """bench/gen_decoder.py's decoder at a test size (2 layers, D = 256, 7 MB): read through
    its external data, pruned into a model with external data (forced: it is far under 2 GiB),
    which onnxruntime runs like the original; each MLP loses exactly its planted dead
    neurons."""
    layers, dim, ffn = 2, 256, 704
    src, dst = os.path.join(d, "dec.onnx"), os.path.join(d, "dec_pruned.onnx")
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen_decoder.py"), src, "--layers", str(layers),
                    "--dim", str(dim), "--ffn", str(ffn), "--heads", "4"], check=True)
    # Exact removal (--round-to=1): the default alignment depends on the host's vector width.
    nnopt("--prune-neurons", "--round-to=1", "--external-data", src, "-o", dst)
    assert os.path.exists(dst + ".data")
    x = rng.standard_normal((1, 4, dim)).astype(np.float32)
    want, got = ort_run(src, x), ort_run(dst, x)
    err = rel(got, want)
    assert err <= 1e-4, f"decoder: pruned differs from the original by {err:.3g}"
    before, after = params(onnx.load(src)), params(onnx.load(dst))
    dead = sum(len(range(layer % 8, ffn, 8)) for layer in range(layers))
    assert before - after == dead * 3 * dim, f"decoder: {before} -> {after} parameters, expected a drop of {dead * 3 * dim}"
    print(f"ok generated decoder: {before} -> {after} parameters, max relative difference {err:.2e}")


def main():
    with tempfile.TemporaryDirectory() as d:
        for name, act, biases in [("SwiGLU, Llama-style (no biases)", "silu", False),
                                  ("SwiGLU with biases", "silu", True),
                                  ("GeGLU with biases", "gelu", True)]:
            model, drop = glu(act, biases)
            # The drop is exact removal: ONNX output is aligned to the runtime's channel block
            # by default, which would keep these small hidden layers whole (test_round_to.py).
            check_pruned(name, model, drop, d, "--round-to=1")
        for name, biases in [("attention heads, no biases", False), ("attention heads with biases", True)]:
            model, drop = attention(biases)
            # residual=keep: the query-zero head's zero features stay as they are (without it,
            # dead-neuron-elimination may restore them with a scatter, which is exact too).
            check_pruned(name, model, drop, d, "--round-to=1", "--residual=keep")
        check_bad_heads(d)
        check_external_data(d)
        check_generated_decoder(d)


if __name__ == "__main__":
    sys.exit(main())
