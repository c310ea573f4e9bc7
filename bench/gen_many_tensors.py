#!/usr/bin/env python3
"""A safetensors file whose header is large, for timing the header reader:
`gen_many_tensors.py DIR N` writes DIR/many.safetensors (N tensors of 2x2 f32 plus a
`__metadata__` object; N = 500000 gives a 57 MB header) and DIR/many.nnir, which loads one of them,
so that `nnopt DIR/many.nnir` is dominated by opening the weights file. Standard library only.
"""
import json
import os
import struct
import sys

out_dir, n = sys.argv[1], int(sys.argv[2])
header, offset = {"__metadata__": {"format": "pt"}}, 0
for i in range(n):
    header[f"layer{i}.block.weight"] = {"dtype": "F32", "shape": [2, 2], "data_offsets": [offset, offset + 16]}
    offset += 16
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(out_dir, "many.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + bytes(offset))
with open(os.path.join(out_dir, "many.nnir"), "w") as f:
    f.write('module attributes {weights = "many.safetensors"} {\n')
    f.write("  func @f(%x: tensor<1x2xf32>) -> (tensor<1x2xf32>) {\n")
    f.write('    %w = nn.weight "layer0.block.weight" : tensor<2x2xf32>\n')
    f.write("    %y = nn.linear %x, %w : tensor<1x2xf32>\n")
    f.write("    return %y : tensor<1x2xf32>\n  }\n}\n")
