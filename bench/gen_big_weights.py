#!/usr/bin/env python3
"""An MLP with large external weights for the bytes benchmark of the pruning pass:
`gen_big_weights.py DIR WIDTH` writes DIR/big.nnir and DIR/big.safetensors.

Layers: WIDTH/2 -> WIDTH -> WIDTH -> WIDTH -> WIDTH -> WIDTH/2, f32, each with a bias; in every
hidden layer the odd neurons have all-zero incoming weights (half of the neurons are dead, with
non-zero biases). WIDTH = 8192 gives 1.0 GiB of weights. Standard library only: rows are drawn
from a pool of random rows, so writing is I/O-bound.
"""
import json
import os
import random
import struct
import sys

out_dir, width = sys.argv[1], int(sys.argv[2])
random.seed(7)
dims = [width // 2, width, width, width, width, width // 2]
layers = []
for i in range(len(dims) - 1):
    layers.append((f"fc{i + 1}", dims[i + 1], dims[i], i + 1 < len(dims) - 1))

header, offset = {}, 0
for name, rows, cols, _ in layers:
    for suffix, shape in ((".weight", [rows, cols]), (".bias", [rows])):
        size = 4 * rows * (cols if suffix == ".weight" else 1)
        header[name + suffix] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)

pool = {}
def row(cols, k):
    key = (cols, k % 16)
    if key not in pool:
        pool[key] = struct.pack(f"<{cols}f", *(random.uniform(-0.05, 0.05) for _ in range(cols)))
    return pool[key]

with open(os.path.join(out_dir, "big.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for name, rows, cols, hidden in layers:
        zero = bytes(4 * cols)
        for r in range(rows):
            f.write(zero if hidden and r % 2 == 1 else row(cols, r))
        f.write(struct.pack(f"<{rows}f", *(random.uniform(-0.5, 0.5) for _ in range(rows))))

with open(os.path.join(out_dir, "big.nnir"), "w") as f:
    f.write('module attributes {weights = "big.safetensors"} {\n')
    f.write(f"  func @mlp(%x: tensor<?x{dims[0]}xf32>) -> (tensor<?x{dims[-1]}xf32>) {{\n")
    cur = "%x"
    for i, (name, rows, cols, hidden) in enumerate(layers):
        f.write(f'    %{name}_w = nn.weight "{name}.weight" : tensor<{rows}x{cols}xf32>\n')
        f.write(f'    %{name}_b = nn.weight "{name}.bias" : tensor<{rows}xf32>\n')
        f.write(f"    %{name} = nn.linear {cur}, %{name}_w, %{name}_b : tensor<?x{rows}xf32>\n")
        cur = f"%{name}"
        if hidden:
            f.write(f"    %{name}_a = nn.relu {cur} : tensor<?x{rows}xf32>\n")
            cur = f"%{name}_a"
    f.write(f"    return {cur} : tensor<?x{dims[-1]}xf32>\n  }}\n}}\n")
