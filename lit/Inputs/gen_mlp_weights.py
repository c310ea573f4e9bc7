"""Writes the safetensors file of lit/prune/external-weights.nnir: a 16 -> 24 -> 8 MLP whose
hidden neurons 3 and 7 have all-zero incoming weights (and non-zero biases). Standard library
only, deterministic."""
import json
import struct
import sys

def values(n, seed):
    # A small LCG: deterministic values in [-1, 1) without numpy.
    out, x = [], seed
    for _ in range(n):
        x = (1103515245 * x + 12345) % (1 << 31)
        out.append(x / (1 << 30) - 1.0)
    return out

w1 = values(24 * 16, 1)
for dead in (3, 7):
    w1[dead * 16:(dead + 1) * 16] = [0.0] * 16
tensors = {
    "fc1.weight": ([24, 16], w1),
    "fc1.bias": ([24], values(24, 2)),
    "fc2.weight": ([8, 24], values(8 * 24, 3)),
    "fc2.bias": ([8], values(8, 4)),
}
header, data, offset = {}, b"", 0
for name, (shape, vals) in tensors.items():
    blob = struct.pack(f"<{len(vals)}f", *vals)
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
    data += blob
    offset += len(blob)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
