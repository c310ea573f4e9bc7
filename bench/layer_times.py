#!/usr/bin/env python3
"""Per-layer latency of an imported model by surgery (issue #17): each conv, pool, concat, add
or relu of the function becomes a function of its own (a conv takes the `nn.clip`/`nn.relu`
after it along), whose inputs are arguments and whose weights come from the model's
safetensors; each is timed with `nnopt bench --runs 50 --no-cache`. Prints the minimum and
median ms per layer and the sum of the minima, to rank where a model's time goes.

    nnopt import M.onnx -o M.nnir
    bench/layer_times.py target/release/nnopt M.nnir [--filter REGEX] [-- NNOPT_BENCH_ARGS...]

`--filter` keeps the layers whose NNIR line matches (e.g. 'groups = [1-9][0-9]|max_pool' for
depthwise convs and max pools); arguments after `--` go to `nnopt bench` (`--target-cpu=haswell`,
`--threads 2`). A dynamic batch becomes 1. The layer files go to a temporary directory.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

KINDS = ("nn.conv2d", "nn.concat", "nn.max_pool2d", "nn.avg_pool2d", "nn.relu", "nn.add")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("nnopt")
    p.add_argument("model", help="an imported model (.nnir beside its .safetensors)")
    p.add_argument("--filter")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = p.parse_args(argv[:cut])
    extra = argv[cut + 1:]
    lines = open(a.model).read().splitlines()
    weights_file = re.search(r'weights = "([^"]+)"', lines[0]).group(1)
    weights_file = os.path.abspath(os.path.join(os.path.dirname(a.model), weights_file))
    header = re.sub(r'weights = "[^"]+"', f'weights = "{weights_file}"', lines[0])
    types, weights, ops = {}, {}, []
    for arg in re.search(r"func @\w+\((.*)\) ->", lines[1]).group(1).split(", "):
        name, ty = arg.split(": ")
        types[name] = ty.replace("?", "1")
    for line in lines[2:]:
        m = re.match(r"\s*(%[\w.]+) = (nn\.\w+) (.*) : (tensor<[^>]*>)", line)
        if not m:
            continue
        name, kind, rest, ty = m.groups()
        types[name] = ty.replace("?", "1")
        if kind == "nn.weight":
            weights[name] = line
        ops.append((name, kind, rest, line))
    total = 0.0
    with tempfile.TemporaryDirectory() as work:
        for i, (name, kind, rest, line) in enumerate(ops):
            if kind not in KINDS or (a.filter and not re.search(a.filter, line)):
                continue
            operands = re.findall(r"%[\w.]+", rest.split("{")[0])
            ins = list(dict.fromkeys(o for o in operands if o not in weights))
            body = [weights[o] for o in operands if o in weights] + [line.replace("?", "1")]
            result = name
            nxt = ops[i + 1] if i + 1 < len(ops) else None
            if kind == "nn.conv2d" and nxt and nxt[1] in ("nn.clip", "nn.relu") and name in nxt[2]:
                body.append(nxt[3].replace("?", "1"))
                result = nxt[0]
            args = ", ".join(f"{o}: {types[o]}" for o in ins)
            text = (f"{header}\n  func @f({args}) -> ({types[result]}) {{\n" + "\n".join(body)
                    + f"\n    return {result} : {types[result]}\n  }}\n}}\n")
            path = os.path.join(work, f"{i:03d}.nnir")
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([a.nnopt, "bench", path, "--runs", "50", "--no-cache"] + extra,
                               capture_output=True, text=True)
            m = re.search(r"median ([\d.]+) ms.*min ([\d.]+) ms", r.stdout + r.stderr)
            if not m:
                print(f"{name}: failed: {(r.stdout + r.stderr)[-300:]}")
                continue
            median, least = float(m.group(1)), float(m.group(2))
            total += least
            attrs = re.search(r"\{(.*)\}", rest)
            fused = " + " + nxt[1] if result != name else ""
            print(f"{least:8.3f} {median:8.3f}  {name:14s} {kind}{fused} {types[ins[0]] if ins else ''}"
                  f" -> {types[result]} {attrs.group(1) if attrs else ''}", flush=True)
    print(f"sum of minima {total:.3f} ms")


if __name__ == "__main__":
    main()
