"""The transformer fixtures of issue #21 (tests/llm, made by tests/llm/export.py): filled with
seeded weights, each runs in onnxruntime, and nnopt either imports it or refuses it with one
diagnostic that names what it cannot read (a node with its op type and opset, or a graph input),
never a panic and never an output file.

    .venv/bin/python tests/python/test_llm_models.py

`EXPECTED` is where each family's import stops today; a change to the importer that gets a
family further must update it (the test fails on any other message, so progress is recorded
and a regression is caught). A family that imports fails the test until the test compares its
`nnopt run --interp` output with onnxruntime's (issue #21's bar: 1e-4 of the logits' largest
magnitude).
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto

from test_torch_models import NNOPT, ROOT, consumers

FIXTURES = os.path.join(ROOT, "tests", "llm")
VOCAB = 100
# Batch and sequence length of the test input: neither is a size of the export's example input
# (3, 7), so a dimension the exporter baked in as a constant would fail here.
BATCH, SEQ = 2, 5

# Where each fixture's import stops: a fragment of the one diagnostic nnopt prints.
EXPECTED = {
    # Positions = arange(S) on the dynamic length: the start of the rotary angles and the causal
    # and packed-sequence mask plumbing (Llama, Qwen2), of the learned positions (GPT-2).
    "llama_dynamo": "node 'node_arange' (Range, opset 18): this operator is not supported",
    "qwen2_dynamo": "node 'node_arange' (Range, opset 18): this operator is not supported",
    "gpt2_dynamo": "node 'node_arange' (Range, opset 18): this operator is not supported",
    # The position-ids buffer [1, 128] sliced to [:, :S].
    "bert_dynamo": "node 'node_slice_1' (Slice, opset 18): only 1-D integer constants (shapes) can be sliced",
    "bert_ts": "node '/model/embeddings/Slice' (Slice, opset 17): only 1-D integer constants (shapes) can be sliced",
}


def fill(model, rng):
    """Gives every stripped initializer seeded data: matrices N(0, 1/fan_in) (fan_in is the
    first axis: MatMul and Gemm weights are stored [in, out], embeddings [vocab, hidden]),
    vectors read by a normalisation's scale (LayerNormalization's input 1, RMSNorm's Mul)
    1 + N(0, 0.1²), other vectors (biases, rotary frequencies) N(0, 0.1²)."""
    uses = consumers(model.graph)
    for t in model.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        shape = tuple(t.dims)
        if len(shape) >= 2:
            values = rng.normal(0.0, 1.0 / np.sqrt(shape[0]), shape)
        else:
            scale = any(
                (n.op_type == "LayerNormalization" and i == 1) or n.op_type == "Mul" for n, i in uses[t.name]
            )
            values = (1.0 if scale else 0.0) + rng.normal(0.0, 0.1, shape)
        del t.external_data[:]
        t.data_location = TensorProto.DEFAULT
        t.raw_data = values.astype(np.float32).tobytes()


def inputs(model, rng):
    """Seeded token ids, and for a model with an attention mask one that hides the last two
    positions of the second sequence (padding)."""
    feeds = {"input_ids": rng.integers(0, VOCAB, (BATCH, SEQ), dtype=np.int64)}
    if any(i.name == "attention_mask" for i in model.graph.input):
        mask = np.ones((BATCH, SEQ), dtype=np.int64)
        mask[1, -2:] = 0
        feeds["attention_mask"] = mask
    return feeds


def check(name, d):
    model = onnx.load(os.path.join(FIXTURES, f"{name}.onnx"), load_external_data=False)
    fill(model, np.random.default_rng(21))
    path = os.path.join(d, f"{name}.onnx")
    onnx.save(model, path)
    feeds = inputs(model, np.random.default_rng(5))
    [y] = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    assert y.shape[:2] == (BATCH, SEQ) and np.isfinite(y).all(), f"{name}: onnxruntime gave {y.shape}"

    out = os.path.join(d, f"{name}.nnir")
    r = subprocess.run([NNOPT, "import", path, "-o", out], capture_output=True, text=True)
    want = EXPECTED[name]
    assert r.returncode == 1, f"{name}: exit {r.returncode}\n{r.stderr}"
    assert "panicked" not in r.stderr and r.stderr.count("error:") == 1, r.stderr
    assert want in r.stderr, f"{name}: expected '{want}' in\n{r.stderr}"
    assert not os.path.exists(out), f"{name}: a refused import wrote {out}"
    print(f"ok {name}: onnxruntime runs it; nnopt refuses it: {want}")


def main():
    names = sorted(f[: -len(".onnx")] for f in os.listdir(FIXTURES) if f.endswith(".onnx"))
    assert names == sorted(EXPECTED), f"fixtures {names} vs EXPECTED {sorted(EXPECTED)}"
    with tempfile.TemporaryDirectory() as d:
        for name in names:
            check(name, d)


if __name__ == "__main__":
    sys.exit(main())
