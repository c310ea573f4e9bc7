#!/usr/bin/env python3
"""Summarises bench/codegen.sh's log (stdin): per round and thread count, the median over the
round's processes of each model's median latency in nnopt and in onnxruntime, their ratio
(target: at most 1.25 on one thread, 1.5 on two), and nnopt's pruned-over-unpruned speedup
against 0.8 of the MAC ratio (its target)."""
import re
import statistics
import sys
from collections import defaultdict

HEADER = re.compile(r"^== round (\d+) threads (\d+) process \d+$")
NNOPT = re.compile(r"/(\w+)\.nnir: @\w+ batch \d+: median ([0-9.]+) ms .* ([0-9]+) MACs/sample")
MACHINE = re.compile(r"^machine: .*")
ORT = re.compile(r"/(\w+)\.onnx: onnxruntime \S+ \d+ thread\(s\) batch \d+: median ([0-9.]+) ms")

times = defaultdict(list)  # (round, threads, side, model) -> per-process medians
macs = {}
key = None
machines = set()
for line in sys.stdin:
    if MACHINE.match(line):
        machines.add(line.strip())
    elif m := HEADER.match(line.strip()):
        key = (int(m[1]), int(m[2]))
    elif key and (m := NNOPT.search(line)):
        times[key + ("nnopt", m[1])].append(float(m[2]))
        macs[m[1]] = int(m[3])
    elif key and (m := ORT.search(line)):
        times[key + ("ort", m[1])].append(float(m[2]))

rows = sorted({k[:2] for k in times})
# `nnopt bench` names the CPU and the target it compiled for: figures only compare on equal ones.
for m in sorted(machines):
    print(m)
print("round threads model          nnopt ms  ort ms  nnopt/ort  (per-process nnopt | ort)")
for rnd, th in rows:
    for model in ["resnet", "resnet_pruned", "mlp", "mlp_pruned"]:
        a = times.get((rnd, th, "nnopt", model), [])
        o = times.get((rnd, th, "ort", model), [])
        if not a:
            continue
        am = statistics.median(a)
        line = f"{rnd:5} {th:7} {model:14} {am:8.2f}"
        if o:
            om = statistics.median(o)
            line += f" {om:7.2f} {am / om:10.2f}"
        else:
            line += " " * 19
        line += "  (" + " ".join(f"{x:.2f}" for x in a) + " | " + " ".join(f"{x:.2f}" for x in o) + ")"
        print(line)
print("round threads model   speedup  MAC ratio  0.8 x MAC ratio")
for rnd, th in rows:
    for model in ["resnet", "mlp"]:
        a = times.get((rnd, th, "nnopt", model))
        b = times.get((rnd, th, "nnopt", model + "_pruned"))
        if a and b:
            mac = macs[model] / macs[model + "_pruned"]
            speedup = statistics.median(a) / statistics.median(b)
            print(f"{rnd:5} {th:7} {model:7} {speedup:7.2f} {mac:10.2f} {0.8 * mac:16.2f}")
