#!/usr/bin/env python3
"""Generate equivalent large NNIR and MLIR inputs for the parse+verify+print benchmark.

    python3 bench/gen_large.py --mb 100 --ops 100000 --out-dir DIR [--seed 1]

Writes DIR/large.nnir and DIR/large.mlir. Both contain, in one function @main:
  * dense constants `tensor<512x512xf32>` written as nested decimal lists (the same text in
    both files) until the literal payload reaches at least --mb megabytes;
  * a chain of --ops element-wise ops on tensor<4xf32> that cycles add, relu, mul.
NNIR uses nn.constant / nn.add / nn.relu / nn.mul; MLIR uses arith.constant / arith.addf /
arith.maximumf (against a zero constant, i.e. relu) / arith.mulf inside func.func.
Python 3 standard library only; output is deterministic for a given seed and sizes.
"""
import argparse
import os
import random

ROWS = COLS = 512
SHAPE = f"{ROWS}x{COLS}xf32"


def dense_literal(rng):
    # 6 significant decimals in [-1, 1); the same text is used for both dialects.
    rows = []
    for _ in range(ROWS):
        row = ", ".join("%.6f" % (rng.random() * 2.0 - 1.0) for _ in range(COLS))
        rows.append("[" + row + "]")
    return "[" + ",\n    ".join(rows) + "]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=100.0, help="approximate size of the dense literals in MB (1e6 bytes)")
    ap.add_argument("--ops", type=int, default=100000, help="number of ops in the element-wise chain")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", default=".")
    ap.add_argument("--no-fanout", action="store_true",
                    help="binary ops use the previous value twice (and relu is max(v, v) in MLIR) instead of "
                         "sharing %y / %zero, so no value has more than 2 uses")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    os.makedirs(a.out_dir, exist_ok=True)
    target = int(a.mb * 1e6)
    T = "tensor<4xf32>"
    with open(os.path.join(a.out_dir, "large.nnir"), "w") as fn, \
         open(os.path.join(a.out_dir, "large.mlir"), "w") as fm:
        fn.write(f"func @main(%x: {T}, %y: {T}) -> ({T}) {{\n")
        fm.write(f"func.func @main(%x: {T}, %y: {T}) -> ({T}) {{\n")
        # Constants: at least one if mb > 0.
        written, i = 0, 0
        while written < target:
            lit = dense_literal(rng)
            fn.write(f"  %w{i} = nn.constant dense<{lit}> : tensor<{SHAPE}>\n")
            fm.write(f"  %w{i} = arith.constant dense<{lit}> : tensor<{SHAPE}>\n")
            written += len(lit)
            i += 1
        fm.write(f"  %zero = arith.constant dense<0.0> : {T}\n")
        prev = "%x"
        for k in range(a.ops):
            cur = f"%v{k}"
            m = k % 3
            other = prev if a.no_fanout else "%y"
            if m == 0:
                fn.write(f"  {cur} = nn.add {prev}, {other} : {T}\n")
                fm.write(f"  {cur} = arith.addf {prev}, {other} : {T}\n")
            elif m == 1:
                fn.write(f"  {cur} = nn.relu {prev} : {T}\n")
                zero = prev if a.no_fanout else "%zero"
                fm.write(f"  {cur} = arith.maximumf {prev}, {zero} : {T}\n")
            else:
                fn.write(f"  {cur} = nn.mul {prev}, {other} : {T}\n")
                fm.write(f"  {cur} = arith.mulf {prev}, {other} : {T}\n")
            prev = cur
        fn.write(f"  return {prev} : {T}\n}}\n")
        fm.write(f"  return {prev} : {T}\n}}\n")


if __name__ == "__main__":
    main()
