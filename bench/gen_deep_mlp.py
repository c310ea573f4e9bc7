#!/usr/bin/env python3
"""A deep MLP for the pruning scale benchmark: `gen_deep_mlp.py LAYERS > deep.nnir`.

Each layer is 4 ops (weight, bias, nn.linear, nn.relu) of width 8 with two fan-in-dead
neurons, so LAYERS = 25000 gives a 100k-op graph in which every layer has something to remove
and every removal folds into the next layer's bias.
"""
import random
import sys

L = int(sys.argv[1]); W = 8
random.seed(1)
print(f"func @deep(%x: tensor<?x{W}xf32>) -> (tensor<?x{W}xf32>) {{")
cur = "%x"
for l in range(L):
    rows = []
    for j in range(W):
        if j in (3, 5) and l < L - 1:
            rows.append("[" + ", ".join("0.0" for _ in range(W)) + "]")
        else:
            rows.append("[" + ", ".join(f"{random.uniform(0.1,1):.2f}" for _ in range(W)) + "]")
    print(f"  %w{l} = nn.constant dense<[{', '.join(rows)}]> : tensor<{W}x{W}xf32>")
    print(f"  %b{l} = nn.constant dense<[{', '.join(f'{random.uniform(-1,1):.2f}' for _ in range(W))}]> : tensor<{W}xf32>")
    print(f"  %h{l} = nn.linear {cur}, %w{l}, %b{l} : tensor<?x{W}xf32>")
    print(f"  %a{l} = nn.relu %h{l} : tensor<?x{W}xf32>")
    cur = f"%a{l}"
print(f"  return {cur} : tensor<?x{W}xf32>\n}}")
