"""Regenerates the graph-only fixtures of the real-model benchmark (bench/real_models.sh) in
bench/models/: the architectures of tests/torch at the sizes they are deployed at.

Needs torch and torchvision, which the project's venv does not have (bench/README.md says how
to install them in a venv of their own): `python bench/export_real_models.py [model ...]`.

The export is tests/torch/export.py's (the same models, seeds, perturbation, weight
stripping), with the dynamo exporter that `torch.onnx.export` uses by default:
- the CNNs at 224x224 with a dynamic batch (`<model>_batchN_dynamo.onnx`), traced at batch 2
  because the exporter specializes a dimension traced at 1;
- the TransformerEncoder pair at sequence length 128 and batch 1 and 8, one export each
  (`<model>_batch<B>_dynamo.onnx`): tests/torch exports them with a static batch too
  (its `DYNAMIC_BATCH` lists only CNNs).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "torch"))

from export import MODELS, export  # noqa: E402  tests/torch/export.py

OUT = os.path.join(HERE, "models")
IMAGE = (2, 3, 224, 224)
SEQUENCE = 128
TRANSFORMER_BATCHES = (1, 8)
TRANSFORMERS = ("transformer", "transformer_norm_first")


def main():
    names = sys.argv[1:] or list(MODELS)
    for name in names:
        if name in TRANSFORMERS:
            _, (_, _, d) = MODELS[name]
            for b in TRANSFORMER_BATCHES:
                export(name, "dynamo", shape=(b, SEQUENCE, d), out_dir=OUT, stem=f"{name}_batch{b}_dynamo")
        else:
            export(name, "dynamo", dynamic_batch=True, shape=IMAGE, out_dir=OUT)


if __name__ == "__main__":
    main()
