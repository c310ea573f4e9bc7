#!/usr/bin/env python3
"""Networks for the code-generation benchmark (bench/codegen.sh): `gen_codegen_nets.py DIR`.

Writes DIR/mlp.nnir and DIR/resnet.nnir, each with its weights in a safetensors file beside it,
and with planted zero-weighted neurons so that `nnopt --prune-neurons` removes some of them:
- mlp: 1024 -> 2048 -> 2048 -> 1024 -> 10, relu; about 40 % of each hidden layer's neurons
  have all-zero incoming weights (odd counts left, e.g. 1229 of 2048).
- resnet: a ResNet-style stage on a 64x56x56 input: a 3x3 stem, two basic blocks (3x3 conv,
  relu, 3x3 conv, residual add, relu), a 1x1 projection to 128 channels, a 3x3 conv at 128,
  global average pool and a linear head. The first conv of each block loses 23 of 64 filters
  (41 stay); the block outputs stay full (they feed residual adds).
Deterministic (seeded numpy).
"""
import json
import os
import struct
import sys

import numpy as np

rng = np.random.default_rng(7)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def dead(rows, frac):
    return rng.choice(rows, size=int(rows * frac), replace=False)


def mlp(out_dir):
    widths = [1024, 2048, 2048, 1024, 10]
    tensors, lines = {}, []
    cur = "%x"
    for i, (k, n) in enumerate(zip(widths, widths[1:])):
        w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        b = (0.1 * rng.standard_normal(n)).astype(np.float32)
        if i < len(widths) - 2:
            w[dead(n, 0.4)] = 0.0
        tensors[f"fc{i}.weight"], tensors[f"fc{i}.bias"] = w, b
        lines.append(f'    %fc{i}.w = nn.weight "fc{i}.weight" : tensor<{n}x{k}xf32>')
        lines.append(f'    %fc{i}.b = nn.weight "fc{i}.bias" : tensor<{n}xf32>')
        lines.append(f"    %fc{i} = nn.linear {cur}, %fc{i}.w, %fc{i}.b : tensor<?x{n}xf32>")
        cur = f"%fc{i}"
        if i < len(widths) - 2:
            lines.append(f"    %fc{i}.relu = nn.relu {cur} : tensor<?x{n}xf32>")
            cur = f"%fc{i}.relu"
    write_safetensors(os.path.join(out_dir, "mlp.safetensors"), tensors)
    with open(os.path.join(out_dir, "mlp.nnir"), "w") as f:
        f.write('module attributes {weights = "mlp.safetensors"} {\n')
        f.write(f"  func @mlp(%x: tensor<?x{widths[0]}xf32>) -> tensor<?x{widths[-1]}xf32> {{\n")
        f.write("\n".join(lines) + "\n")
        f.write(f"    return {cur} : tensor<?x{widths[-1]}xf32>\n  }}\n}}\n")


def resnet(out_dir):
    tensors, lines = {}, []
    hw = 56

    def conv(name, x, cin, cout, k, size, dead_frac=0.0, relu=True):
        w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        b = (0.1 * rng.standard_normal(cout)).astype(np.float32)
        if dead_frac:
            w[dead(cout, dead_frac)] = 0.0
        tensors[f"{name}.weight"], tensors[f"{name}.bias"] = w, b
        pads = "" if k == 1 else " {pads = [1, 1, 1, 1]}"
        ty = f"tensor<?x{cout}x{size}x{size}xf32>"
        lines.append(f'    %{name}.w = nn.weight "{name}.weight" : tensor<{cout}x{cin}x{k}x{k}xf32>')
        lines.append(f'    %{name}.b = nn.weight "{name}.bias" : tensor<{cout}xf32>')
        lines.append(f"    %{name} = nn.conv2d {x}, %{name}.w, %{name}.b{pads} : {ty}")
        if relu:
            lines.append(f"    %{name}.relu = nn.relu %{name} : {ty}")
            return f"%{name}.relu"
        return f"%{name}"

    cur = conv("stem", "%x", 64, 64, 3, hw)
    for blk in range(2):
        a = conv(f"b{blk}.a", cur, 64, 64, 3, hw, dead_frac=23 / 64)
        b = conv(f"b{blk}.b", a, 64, 64, 3, hw, relu=False)
        ty = f"tensor<?x64x{hw}x{hw}xf32>"
        lines.append(f"    %b{blk}.sum = nn.add {b}, {cur} : {ty}")
        lines.append(f"    %b{blk}.out = nn.relu %b{blk}.sum : {ty}")
        cur = f"%b{blk}.out"
    cur = conv("proj", cur, 64, 128, 1, hw)
    cur = conv("c128", cur, 128, 128, 3, hw, dead_frac=0.4)
    lines.append(f"    %pool = nn.global_avg_pool {cur} : tensor<?x128x1x1xf32>")
    lines.append("    %feat = nn.flatten %pool {axis = 1} : tensor<?x128xf32>")
    w = (rng.standard_normal((10, 128)) / np.sqrt(128)).astype(np.float32)
    tensors["fc.weight"], tensors["fc.bias"] = w, np.zeros(10, np.float32)
    lines.append('    %fc.w = nn.weight "fc.weight" : tensor<10x128xf32>')
    lines.append('    %fc.b = nn.weight "fc.bias" : tensor<10xf32>')
    lines.append("    %logits = nn.linear %feat, %fc.w, %fc.b : tensor<?x10xf32>")
    write_safetensors(os.path.join(out_dir, "resnet.safetensors"), tensors)
    with open(os.path.join(out_dir, "resnet.nnir"), "w") as f:
        f.write('module attributes {weights = "resnet.safetensors"} {\n')
        f.write(f"  func @resnet(%x: tensor<?x64x{hw}x{hw}xf32>) -> tensor<?x10xf32> {{\n")
        f.write("\n".join(lines) + "\n")
        f.write("    return %logits : tensor<?x10xf32>\n  }\n}\n")


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
mlp(out)
resnet(out)
