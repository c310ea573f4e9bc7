"""Issue #21's exactness bar on the transformer fixtures (tests/llm): each decoder and encoder,
filled with seeded weights (test_llm_models.fill), gets planted dead structure in its first
layers, is pruned by `nnopt --prune-neurons` with B and S pinned, and

- onnxruntime runs the original and the pruned file and they agree to 1e-4 of the logits'
  largest magnitude;
- nnopt's interpreter and its compiled code on the pruned file agree with onnxruntime;
- the projection parameters drop by exactly the removable bound (computed below per family).

Then again with only S pinned, for the fixtures that import with a dynamic batch (not those in
test_llm_models.EXPECTED_DYNAMIC_BATCH, the encoders): the pruned file keeps the batch dynamic
(`dim_param` B), drops the same parameters, and onnxruntime, the interpreter and the compiled
code give the original's logits at batch 1 and 3.

Planted in layer 0 (attention): query head 1's o_proj rows are zero (ignored); the value
columns of key/value head 1 are zero, so with GQA its whole group (query heads 2 and 3) outputs
the value bias, which o_proj's bias absorbs (Qwen2; Llama has no biases, so the heads output
0), and then key/value head 1 is read by no one; query head 0's query columns (and bias) are
zero, so it attends uniformly and must stay. GPT-2 (fused c_attn, no GQA): head 1 ignored, head
2's value columns zero (its bias folds into c_proj's), head 0 query-zero. Planted in layer 1
(FFN): Llama and Qwen2's SwiGLU loses neuron 3 (gate column zero), 7 (up column zero) and 11
(down row zero); GPT-2's MLP loses neuron 5 (c_fc column zero: a constant folded into
c_proj's bias) and 9 (c_proj row zero). BERT (both exports; separate q/k/v with biases, the
run-time attention mask added to the scores, padding in the test input) gets GPT-2's plants:
head 1 ignored, head 2's value columns zero (its value bias folds into the attention output
dense's bias), head 0's query columns and bias zero (stays); the intermediate dense's column 5
zero (the constant gelu(b₅) folds into the output dense's bias) and the output dense's row 9
zero.

`--round-to=1` (exact removal, no channel alignment) and `--residual=keep` (no scatters: the
query-zero head's zero features stay as they are).

    .venv/bin/python tests/python/test_llm_pruning.py
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from test_llm_models import BATCH, DYNAMIC_BATCHES, EXPECTED_DYNAMIC_BATCH, FIXTURES, NNOPT, PINNED, SEQ, SEQ_ONLY, fill, inputs

E, FFN = 64, 128
PRUNE = ["--prune-neurons", "--round-to=1", "--residual=keep"]
FLAGS = [*PRUNE, *PINNED]


def weights(model):
    """The float initializers read by MatMul or Gemm (weights, and a Gemm's bias) and the 1-D
    ones read by Add (biases): what pruning removes from. Masks, rotary tables, norms and
    embeddings are left out (the pruned file holds the folded mask and tables as constants)."""
    inits = {t.name: t for t in model.graph.initializer}
    used = set()
    for n in model.graph.node:
        for i in n.input:
            t = inits.get(i)
            if t is None or t.data_type != onnx.TensorProto.FLOAT:
                continue
            if n.op_type in ("MatMul", "Gemm") or (n.op_type == "Add" and len(t.dims) == 1):
                used.add(i)
    return sum(int(np.prod(inits[i].dims)) for i in used)


def projections(model):
    """The [in, out] weight initializers of the MatMul/Gemm nodes, in graph order, and the 1-D
    bias initializer each one's output is added to (or its Gemm's C), if any."""
    inits = {t.name: t for t in model.graph.initializer}
    adds = {}
    for n in model.graph.node:
        if n.op_type == "Add":
            for a, b in (n.input, n.input[::-1]):
                if b in inits and len(inits[b].dims) == 1:
                    adds[a] = b
    out = []
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits:
            bias = n.input[2] if n.op_type == "Gemm" and len(n.input) > 2 else adds.get(n.output[0])
            out.append((inits[n.input[1]], inits.get(bias) if bias else None))
    return out


def edit(t, f):
    a = numpy_helper.to_array(t).copy()
    f(a)
    t.CopyFrom(numpy_helper.from_array(a, t.name))


def zero_cols(lo, hi):
    def f(a):
        a[:, lo:hi] = 0
    return f


def zero_rows(lo, hi):
    def f(a):
        a[lo:hi, :] = 0
    return f


def zero(lo, hi):
    def f(a):
        a[lo:hi] = 0
    return f


def plant_gqa(model, biases):
    """Llama/Qwen2 (4 query heads, 2 key/value heads of 16): returns the parameter drop."""
    p = projections(model)
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = p[0:4]
    (wg, _), (wu, _), (wd, _) = p[4:7]
    d = 16
    edit(wo, zero_rows(1 * d, 2 * d))  # query head 1 ignored
    edit(wv, zero_cols(1 * d, 2 * d))  # key/value head 1's values: query heads 2, 3 constant
    edit(wq, zero_cols(0, d))  # query head 0 attends uniformly: stays
    if bq is not None:
        edit(bq, zero(0, d))
    for j, (w, f) in {3: (wg, zero_cols), 7: (wu, zero_cols), 11: (wd, zero_rows)}.items():
        edit(w, f(j, j + 1))
    heads = 3 * d * E + 1 * d * E * 2 + 3 * d * E  # q rows, k and v rows of one kv head, o columns
    if biases:
        heads += 3 * d + 2 * d - E  # their biases; o_proj gains a bias for the constant heads
    return heads + 3 * 3 * E


def plant_gpt2(model):
    """GPT-2 (4 heads of 16, fused c_attn [E, 3E] with bias): returns the parameter drop."""
    p = projections(model)
    (wqkv, bqkv), (wo, _) = p[0:2]
    (wfc, bfc), (wpr, _) = p[2:4]
    d = 16
    edit(wo, zero_rows(1 * d, 2 * d))  # head 1 ignored
    edit(wqkv, zero_cols(2 * E + 2 * d, 2 * E + 3 * d))  # head 2's values: constant bias
    edit(wqkv, zero_cols(0, d))  # head 0's queries: stays
    edit(bqkv, zero(0, d))
    edit(wfc, zero_cols(5, 6))  # neuron 5 constant gelu(b): folded into c_proj's bias
    edit(wpr, zero_rows(9, 10))  # neuron 9 ignored
    heads = 2 * (3 * d * E + 3 * d) + 2 * d * E
    return heads + 2 * (E + 1 + E)


def plant_bert(model):
    """BERT (4 heads of 16, q/k/v/output dense with biases, GELU FFN of 128): returns the
    parameter drop."""
    p = projections(model)
    (wq, bq), (_, _), (wv, _), (wo, _) = p[0:4]
    (wi, _), (wout, _) = p[10:12]
    d = 16
    edit(wo, zero_rows(1 * d, 2 * d))  # head 1 ignored
    edit(wv, zero_cols(2 * d, 3 * d))  # head 2's values: its value bias, a constant
    edit(wq, zero_cols(0, d))  # head 0's queries: attends uniformly, stays
    edit(bq, zero(0, d))
    edit(wi, zero_cols(5, 6))  # layer 1's neuron 5: gelu(b₅), folded into the next bias
    edit(wout, zero_rows(9, 10))  # layer 1's neuron 9 ignored
    heads = 2 * (4 * d * E + 3 * d)  # q, k, v rows with their biases, output dense columns
    return heads + 2 * (E + 1 + E)


PLANT = {
    "llama_dynamo": lambda m: plant_gqa(m, biases=False),
    "qwen2_dynamo": lambda m: plant_gqa(m, biases=True),
    "gpt2_dynamo": plant_gpt2,
    "bert_dynamo": plant_bert,
    "bert_ts": plant_bert,
}


def rel(got, want):
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-6))


def nnopt(*args):
    r = subprocess.run([NNOPT, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"nnopt {' '.join(args)} failed:\n{r.stderr}"
    return r


def check(name, d):
    model = onnx.load(os.path.join(FIXTURES, f"{name}.onnx"), load_external_data=False)
    fill(model, np.random.default_rng(21))
    drop = PLANT[name](model)
    src, dst = os.path.join(d, f"{name}.onnx"), os.path.join(d, f"{name}_pruned.onnx")
    onnx.save(model, src)
    nnopt(*FLAGS, src, "-o", dst)
    feeds = inputs(model, np.random.default_rng(5))
    want = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = ort.InferenceSession(dst, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    err = rel(got, want)
    assert err <= 1e-4, f"{name}: the pruned file differs in onnxruntime by {err:.3g} of the largest logit"
    before, after = weights(model), weights(onnx.load(dst))
    assert before - after == drop, f"{name}: {before} -> {after} parameters, expected a drop of {drop}"
    args = []
    for k, v in feeds.items():
        np.save(os.path.join(d, f"{k}.npy"), v)
        args += ["--input", f"{k}={os.path.join(d, f'{k}.npy')}"]
    errs = []
    for mode in (["--interp"], ["--no-cache"]):
        y = os.path.join(d, "y.npy")
        nnopt("run", *mode, dst, *args, "--output", y)
        errs.append(rel(np.load(y), want))
        assert errs[-1] <= 1e-4, f"{name}: nnopt run {mode} on the pruned file differs by {errs[-1]:.3g}"
    print(f"ok {name}: {before} -> {after} projection parameters (drop {drop}), onnxruntime "
          f"{err:.2e}, interpreter {errs[0]:.2e}, compiled {errs[1]:.2e}")
    if name not in EXPECTED_DYNAMIC_BATCH:
        dynamic_batch(name, src, d, drop, before)


def dynamic_batch(name, src, d, drop, before):
    """Pruned with only S pinned: the written file keeps the batch dynamic, drops the same
    parameters, and onnxruntime, nnopt's interpreter and its compiled code give the original's
    logits at batch 1 and 3; it imports again."""
    dst = os.path.join(d, f"{name}_pruned_dynamic.onnx")
    nnopt(*PRUNE, *SEQ_ONLY, src, "-o", dst)
    pruned = onnx.load(dst)
    dims = [x.dim_value or x.dim_param for x in pruned.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", SEQ], f"{name}: the pruned file's input has dims {dims}"
    after = weights(pruned)
    assert before - after == drop, f"{name}: {before} -> {after} parameters with B dynamic, expected a drop of {drop}"
    worst = 0.0
    model = onnx.load(src)
    for b in DYNAMIC_BATCHES:
        feeds = inputs(model, np.random.default_rng(5 + b), b)
        want = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        got = ort.InferenceSession(dst, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        worst = max(worst, rel(got, want))
        ids = os.path.join(d, "ids.npy")
        np.save(ids, feeds["input_ids"])
        for mode in (["--interp"], ["--no-cache"]):
            y = os.path.join(d, "y.npy")
            nnopt("run", *mode, dst, "--input", ids, "--output", y)
            worst = max(worst, rel(np.load(y), want))
    assert worst <= 1e-4, f"{name}: the pruned dynamic-batch file differs by {worst:.3g}"
    nnopt("import", dst, "-o", os.path.join(d, f"{name}_again.nnir"))
    print(f"ok {name}: B dynamic, the same drop, onnxruntime, interpreter and compiled code agree "
          f"at batch 1 and 3 ({worst:.2e}), imports again")


def main():
    with tempfile.TemporaryDirectory() as d:
        for name in PLANT:
            check(name, d)


if __name__ == "__main__":
    sys.exit(main())
