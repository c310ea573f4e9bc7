#!/usr/bin/env python3
"""onnxruntime's speed on pruned files against the original, per model and pruning variant.

`ort_prune_suite.py [--variants default,scatter,keep] [--threads 1,2] [--rounds 15] MODEL.onnx...`
(MODEL files with weights, e.g. tests/python/fill_torch_models.py's outputs in /tmp/torch_filled):
for each model and variant, prunes with `$NNOPT` (default target/release/nnopt), reads the MAC
ratio and the neurons kept for alignment from `--pass-statistics`, then times the original and
the pruned files with bench/ort_prune_ab.py (default session options, alternating blocks). Prints
a Markdown table: model, variant, MAC ratio, kept for alignment, nn.scatters left (exported
`Expand` nodes), and the pruned speedup at each thread count. Variants: `default` is
`--prune-neurons`; `scatter`, `keep` and `auto` add `--residual=` that.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
NNOPT = os.environ.get("NNOPT", os.path.join(HERE, "..", "target", "release", "nnopt"))

ap = argparse.ArgumentParser()
ap.add_argument("models", nargs="+")
ap.add_argument("--variants", default="default,scatter,keep")
ap.add_argument("--threads", default="1,2")
ap.add_argument("--rounds", type=int, default=15)
ap.add_argument("--block", type=int, default=10)
a = ap.parse_args()


def prune(model, variant, out):
    flags = ["--prune-neurons"] + ([] if variant == "default" else [f"--residual={variant}"])
    r = subprocess.run(
        [NNOPT, *flags, "--pass-statistics", model, "-o", out], capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(f"{model} {variant}: nnopt failed:\n{r.stderr}")
    total = re.search(r"^\s*total\s+\d+\s+\d+\s+(\d+)\s+(\d+)", r.stderr, re.M)
    aligned = sum(int(k) for k in re.findall(r"kept (\d+) for alignment", r.stderr))
    scatters = sum(n.op_type == "Expand" for n in onnx.load(out).graph.node)
    return int(total[1]) / int(total[2]), aligned, scatters


def speedups(model, pruned):
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "ort_prune_ab.py"),
            model,
            *pruned,
            "--threads",
            a.threads,
            "--rounds",
            str(a.rounds),
            "--block",
            str(a.block),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"onnxruntime \S+ (\d+) thread\(s\): (\S+): .* speedup ([\d.]+)x", line)
        if m:
            out[(m[2], int(m[1]))] = float(m[3])
        m = re.match(r"(\S+): largest difference (\S+)", line)
        if m and float(m[2]) > 1e-4:
            sys.exit(f"{m[1]}: outputs differ by {m[2]} of the largest output")
    return out


threads = [int(t) for t in a.threads.split(",")]
print("| model | variant | MAC ratio | kept for alignment | scatters | "
      + " | ".join(f"ORT {t} thread(s)" for t in threads) + " |")
print("|---|---|---|---|---|" + "---|" * len(threads))
with tempfile.TemporaryDirectory() as tmp:
    for model in a.models:
        name = os.path.basename(model).removesuffix(".onnx")
        rows = []
        for v in a.variants.split(","):
            out = os.path.join(tmp, f"{name}_{v}.onnx")
            rows.append((v, out, *prune(model, v, out)))
        sp = speedups(model, [r[1] for r in rows])
        for v, out, macs, aligned, scatters in rows:
            cells = " | ".join(f"{sp[(out, t)]:.2f}x" for t in threads)
            print(f"| {name} | {v} | {macs:.2f} | {aligned} | {scatters} | {cells} |", flush=True)
