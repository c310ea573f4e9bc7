"""Regenerates the torch.onnx.export fixtures of tests/python/test_torch_models.py.

Needs torch and torchvision (not run by CI, which cannot install torch; the fixtures are
committed): `python tests/torch/export.py [model ...]`, run from anywhere. Pinned when the
fixtures were made: torch 2.15.0, torchvision 0.29, onnx 1.23.

Each model is exported in eval mode through both exporters: the TorchScript one
(`dynamo=False`, opset 17) and the dynamo one (`dynamo=True`, opset 18), with static shapes
(small inputs: 64×64 images, 2×10 tokens); ResNet18 and MobileNetV2 also with a dynamic batch
(`<model>_batchN_<exporter>.onnx`). Only the graph is kept: every floating-point
initializer of 8 or more elements (the weights) is turned into an external-data reference to
`<name>.weights`, a file that is never written, so the committed `.onnx` holds names, shapes and
data types but no weights; the test fills them with seeded random values. The per-node debug
metadata of the dynamo exporter (stack traces) is dropped too. Integer initializers
(shapes, axes) and small float constants (scales, epsilons) stay inline: they are the graph.
"""

import os
import sys
import tempfile
import warnings

import onnx
import torch
import torchvision
from onnx import TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
# A float initializer with fewer elements is a constant of the graph (an attention scale, a
# Clip bound), not a weight: it keeps its value.
MIN_WEIGHT_ELEMENTS = 8


def encoder(norm_first):
    layer = torch.nn.TransformerEncoderLayer(
        d_model=64, nhead=4, dim_feedforward=128, batch_first=True, norm_first=norm_first
    )
    return torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


IMAGE = (2, 3, 64, 64)
TOKENS = (2, 10, 64)
MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), IMAGE),
    "resnet50": (lambda: torchvision.models.resnet50(num_classes=10), IMAGE),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), IMAGE),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), IMAGE),
    "squeezenet1_1": (lambda: torchvision.models.squeezenet1_1(num_classes=10), IMAGE),
    # ResNeXt's 32x4d bottleneck (grouped 3x3 convs, 32 groups of 4 channels) with one block
    # per stage: the grouped convs of resnext50_32x4d at a fifth of its depth.
    "resnext14_32x4d": (
        lambda: torchvision.models.resnet.ResNet(
            torchvision.models.resnet.Bottleneck, [1, 1, 1, 1], groups=32, width_per_group=4, num_classes=10
        ),
        IMAGE,
    ),
    "regnet_x_400mf": (lambda: torchvision.models.regnet_x_400mf(num_classes=10), IMAGE),
    "densenet121": (lambda: torchvision.models.densenet121(num_classes=10), IMAGE),
    "transformer": (lambda: encoder(norm_first=False), TOKENS),
    "transformer_norm_first": (lambda: encoder(norm_first=True), TOKENS),
}
PATHS = {"ts": dict(dynamo=False, opset_version=17), "dynamo": dict(dynamo=True, opset_version=18)}
# Exports with a dynamic batch, for the CNNs whose graphs keep it symbolic without arithmetic on
# it (the TorchScript attention multiplies the batch by the heads, which nnopt cannot import).
DYNAMIC_BATCH = ["resnet18", "mobilenet_v2"]


def dynamic(path):
    """`PATHS[path]` with the batch dimension of the input and output dynamic."""
    if path == "ts":
        return dict(PATHS[path], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return dict(PATHS[path], dynamic_shapes={"x": {0: torch.export.Dim("N", min=1, max=64)}})


def strip_weights(model, location):
    """Replaces the data of every weight by an external reference to `location` (never written)."""
    offset = 0
    for t in model.graph.initializer:
        numel = 1
        for d in t.dims:
            numel *= d
        if t.data_type != TensorProto.FLOAT or numel < MIN_WEIGHT_ELEMENTS:
            continue
        length = 4 * numel
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in [("location", location), ("offset", offset), ("length", length)]:
            t.external_data.add(key=k, value=str(v))
        offset += length


def strip_debug_info(model):
    """Drops what the dynamo exporter records per node for debugging (stack traces, module
    paths: most of the file, and local paths), which no importer reads."""
    for n in model.graph.node:
        del n.metadata_props[:]
        n.ClearField("doc_string")
    model.graph.ClearField("doc_string")


def perturb(model):
    """Makes every parameter and batch-norm statistic distinct, as after training: at their
    initial values many are equal (all BN scales 1, both encoder layers copies of one), and the
    exporters would share the equal ones between layers, which trained models never do."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def export(name, path, dynamic_batch=False, shape=None, out_dir=HERE, stem=None):
    """Writes `out_dir/stem.onnx` (default: this directory, the test fixtures' names) from the
    example input `shape` (default: the small one of `MODELS`)."""
    build, small = MODELS[name]
    shape = shape or small
    torch.manual_seed(0)
    model = build().eval()
    perturb(model)
    x = torch.randn(*shape)
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "m.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            options = dynamic(path) if dynamic_batch else PATHS[path]
            torch.onnx.export(model, (x,), f, input_names=["x"], output_names=["y"], **options)
        m = onnx.load(f)  # with external data, if the exporter wrote any
    stem = stem or (f"{name}_batchN_{path}" if dynamic_batch else f"{name}_{path}")
    strip_weights(m, f"{stem}.weights")
    strip_debug_info(m)
    out = os.path.join(out_dir, f"{stem}.onnx")
    with open(out, "wb") as fh:
        fh.write(m.SerializeToString())
    print(f"wrote {out} ({os.path.getsize(out)} bytes, IR {m.ir_version}, opset {m.opset_import[0].version})")


def main():
    names = sys.argv[1:] or list(MODELS)
    for name in names:
        for path in PATHS:
            export(name, path)
            if name in DYNAMIC_BATCH:
                export(name, path, dynamic_batch=True)


if __name__ == "__main__":
    main()
