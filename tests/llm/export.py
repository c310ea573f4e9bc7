"""Regenerates the transformer fixtures of issue #21: graph-only ONNX exports of the `transformers`
model classes people deploy, at small random configurations.

Needs torch, transformers, onnx and onnxscript (not run by CI, which cannot install torch; the
fixtures are committed): `python tests/llm/export.py [family ...]`, run from anywhere. Pinned
when the fixtures were made (the script prints its versions): torch 2.15.0, transformers 5.25.0,
onnx 1.23.2, onnxscript 0.7.2. The TorchScript exporter fails on the decoders (`aten::diff`, which
transformers' packed-sequence detection uses, has no opset 17 translation), so only BERT has a
`_ts` fixture.

Every family is a full-sequence forward without KV cache (`use_cache=False`), hidden size 64, two
layers, four query heads (two key/value heads where the family has GQA), a vocabulary of 100,
exported in eval mode with a dynamic batch (`B`) and sequence length (`S`):

| family | class | what it brings |
|---|---|---|
| `llama` | LlamaForCausalLM | GQA, no biases, RMSNorm, rotary, SwiGLU MLP |
| `qwen2` | Qwen2ForCausalLM | GQA, q/k/v biases |
| `gpt2` | GPT2LMHeadModel | fused QKV (Conv1D), learned positions, GELU (tanh) |
| `bert` | BertModel | bidirectional, biases, GELU FFN, `attention_mask` input |

Exporters: the dynamo one (`dynamo=True`, opset 18) always, `<family>_dynamo.onnx`; the
TorchScript one (`dynamo=False`, opset 17) too, `<family>_ts.onnx`, when it succeeds for that
family (a failure is printed and skipped: it is the second exporter, not the bar).

Only the graph is kept, as in tests/torch/export.py (whose `strip_weights` and
`strip_debug_info` this reuses): float initializers of 8 or more elements become external-data
references to a file that is never written; integer and boolean initializers and small float
constants stay inline, because they are the graph's plumbing.
"""

import importlib.util
import os
import sys
import tempfile
import warnings

import onnx
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
# tests/torch/export.py by path: this file's own name would shadow it on sys.path.
_spec = importlib.util.spec_from_file_location("torch_export", os.path.join(os.path.dirname(HERE), "torch", "export.py"))
_torch_export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_torch_export)
perturb, strip_debug_info, strip_weights = _torch_export.perturb, _torch_export.strip_debug_info, _torch_export.strip_weights

HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
VOCAB = 100
FFN = 128
POSITIONS = 128
# Example sizes for tracing: distinct from each other and from every config size so that the
# exporter cannot confuse a dynamic dimension with a constant.
BATCH, SEQ = 3, 7


def llama():
    return transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
            num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=POSITIONS,
            use_cache=False, tie_word_embeddings=False, attn_implementation="eager",
        )
    )


def qwen2():
    return transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(
            vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
            num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=POSITIONS,
            use_cache=False, tie_word_embeddings=False, attn_implementation="eager",
        )
    )


def gpt2():
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=FFN,
            n_positions=POSITIONS, use_cache=False, attn_implementation="eager",
        )
    )


def bert():
    return transformers.BertModel(
        transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            intermediate_size=FFN, max_position_embeddings=POSITIONS, attn_implementation="eager",
        ),
        add_pooling_layer=False,
    )


class Logits(torch.nn.Module):
    """The model's first output as a plain tensor (logits, or BERT's last hidden state), so the
    exported graph has one output `y` whatever the model returns."""

    def __init__(self, model, with_mask):
        super().__init__()
        self.model = model
        self.with_mask = with_mask

    def forward(self, input_ids, attention_mask=None):
        kwargs = dict(input_ids=input_ids, use_cache=False, return_dict=False)
        if self.with_mask:
            kwargs["attention_mask"] = attention_mask
        if isinstance(self.model, transformers.BertModel):
            del kwargs["use_cache"]
        return self.model(**kwargs)[0]


# family -> (builder, whether the graph takes an attention mask)
FAMILIES = {"llama": (llama, False), "qwen2": (qwen2, False), "gpt2": (gpt2, False), "bert": (bert, True)}


def options(path, with_mask):
    names = ["input_ids"] + (["attention_mask"] if with_mask else [])
    if path == "ts":
        axes = {n: {0: "B", 1: "S"} for n in names}
        axes["y"] = {0: "B", 1: "S"}
        return dict(dynamo=False, opset_version=17, dynamic_axes=axes, input_names=names, output_names=["y"])
    b = torch.export.Dim("B", min=1, max=64)
    s = torch.export.Dim("S", min=2, max=POSITIONS)
    shapes = {"input_ids": {0: b, 1: s}}
    if with_mask:
        shapes["attention_mask"] = {0: b, 1: s}
    return dict(dynamo=True, opset_version=18, dynamic_shapes=shapes, input_names=names, output_names=["y"])


def export(family, path):
    build, with_mask = FAMILIES[family]
    torch.manual_seed(0)
    model = Logits(build().eval(), with_mask).eval()
    perturb(model)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), dtype=torch.int64)
    args = (ids, torch.ones(BATCH, SEQ, dtype=torch.int64)) if with_mask else (ids,)
    stem = f"{family}_{path}"
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "m.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, f, **options(path, with_mask))
        m = onnx.load(f)
    strip_weights(m, f"{stem}.weights")
    strip_debug_info(m)
    out = os.path.join(HERE, f"{stem}.onnx")
    with open(out, "wb") as fh:
        fh.write(m.SerializeToString())
    print(f"wrote {out} ({os.path.getsize(out)} bytes, opset {m.opset_import[0].version})")


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, onnx {onnx.__version__}")
    for family in sys.argv[1:] or list(FAMILIES):
        export(family, "dynamo")
        try:
            export(family, "ts")
        except Exception as e:  # the second exporter is optional; say why it was skipped
            print(f"skipped {family}_ts: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


if __name__ == "__main__":
    main()
