#!/usr/bin/env python3
"""A ResNet-50-shaped network for the pruning benchmark, with its weights in safetensors.

`gen_resnet50.py OUT_DIR` writes OUT_DIR/resnet50.nnir and OUT_DIR/resnet50.safetensors:
stem (7x7/2 conv 64, 3x3/2 max pool), 16 bottleneck blocks (1x1, 3x3, 1x1 convs, projection
shortcuts where the shape changes, residual adds), global pooling and a 1000-way linear head,
about 25.5M parameters. One filter in eight of every conv is fan-in dead (zero weights,
bias 0.1), so the pruner has work in every layer. Weight values are a constant pattern: the
benchmark measures the passes, not the numbers.
"""
import json
import os
import struct
import sys
from array import array

out_dir = sys.argv[1]
tensors = []  # (name, shape, array('f'))
lines = []


def weight(name, shape, dead_rows=()):
    n = 1
    for d in shape:
        n *= d
    data = array("f", [0.01]) * n
    if dead_rows:
        row = n // shape[0]
        for j in dead_rows:
            data[j * row:(j + 1) * row] = array("f", [0.0]) * row
    tensors.append((name, shape, data))
    t = "x".join(map(str, shape))
    lines.append(f'    %{name} = nn.weight "{name}" : tensor<{t}xf32>')
    return f"%{name}"


def conv(name, x, cin, cout, k, stride, pad, hw):
    w = weight(name + ".w", [cout, cin, k, k], dead_rows=range(0, cout, 8))
    b = weight(name + ".b", [cout])
    ohw = (hw + 2 * pad - k) // stride + 1
    lines.append(
        f"    %{name} = nn.conv2d {x}, {w}, {b} {{strides = [{stride}, {stride}], "
        f"pads = [{pad}, {pad}, {pad}, {pad}]}} : tensor<?x{cout}x{ohw}x{ohw}xf32>")
    return f"%{name}", ohw


def relu(name, x, c, hw):
    lines.append(f"    %{name} = nn.relu {x} : tensor<?x{c}x{hw}x{hw}xf32>")
    return f"%{name}"


x, hw = conv("stem", "%image", 3, 64, 7, 2, 3, 224)
x = relu("stem.relu", x, 64, hw)
lines.append(f"    %pool = nn.max_pool2d {x} {{kernel = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]}} : tensor<?x64x56x56xf32>")
x, c, hw = "%pool", 64, 56
for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)]):
    for b in range(blocks):
        stride = 2 if b == 0 and stage > 0 else 1
        p = f"s{stage}b{b}"
        y, _ = conv(p + ".a", x, c, width, 1, 1, 0, hw)
        y = relu(p + ".a.relu", y, width, hw)
        y, ohw = conv(p + ".b", y, width, width, 3, stride, 1, hw)
        y = relu(p + ".b.relu", y, width, ohw)
        y, _ = conv(p + ".c", y, width, width * 4, 1, 1, 0, ohw)
        if b == 0:
            skip, _ = conv(p + ".down", x, c, width * 4, 1, stride, 0, hw)
        else:
            skip = x
        lines.append(f"    %{p}.sum = nn.add {y}, {skip} : tensor<?x{width * 4}x{ohw}x{ohw}xf32>")
        x = relu(p + ".out", f"%{p}.sum", width * 4, ohw)
        c, hw = width * 4, ohw
lines.append(f"    %gap = nn.global_avg_pool {x} : tensor<?x{c}x1x1xf32>")
lines.append(f"    %features = nn.flatten %gap {{axis = 1}} : tensor<?x{c}xf32>")
fw = weight("fc.w", [1000, c])
fb = weight("fc.b", [1000])
lines.append(f"    %logits = nn.linear %features, {fw}, {fb} : tensor<?x1000xf32>")
lines.append("    return %logits : tensor<?x1000xf32>")

with open(os.path.join(out_dir, "resnet50.nnir"), "w") as f:
    f.write('module @resnet50 attributes {weights = "resnet50.safetensors"} {\n')
    f.write("  func @main(%image: tensor<?x3x224x224xf32>) -> (tensor<?x1000xf32>) {\n")
    f.write("\n".join(lines) + "\n  }\n}\n")

header, offset = {}, 0
for name, shape, data in tensors:
    size = len(data) * 4
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
    offset += size
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(os.path.join(out_dir, "resnet50.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for _, _, data in tensors:
        data.tofile(f)
print(f"{sum(len(d) for _, _, d in tensors)} parameters", file=sys.stderr)
