"""Prints `name dtype shape` for each tensor of a safetensors file, in file order."""
import json
import struct
import sys

with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
for name, info in sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])[0]):
    if name != "__metadata__":
        print(name, info["dtype"], "x".join(map(str, info["shape"])))
