#!/usr/bin/env python3
"""The real-model benchmark (issue #17): nnopt's compiled code beside onnxruntime on the
torch.onnx exports of bench/models, original and pruned. Run it through bench/real_models.sh,
which builds nnopt and picks the Python; bench/README.md describes the options and the table.

For each model: fill the graph-only fixture with seeded weights and planted dead neurons
(tests/python/fill_torch_models.py), prune it (`nnopt --prune-neurons --pass-statistics`,
whose total line gives the MAC ratio), then for each batch and thread count, one after the
other so that a slow stretch of the shared machine hits both:
- `nnopt bench ORIGINAL --compare PRUNED`: both compiled, timed in alternating blocks, with
  their compile times;
- onnxruntime with default session options except the thread count, on both files, timed in
  alternating blocks of the same size, and their outputs compared.
"""

import argparse
import gc
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

from fill_torch_models import fill_file  # noqa: E402

FIXTURES = os.path.join(HERE, "models")
# Rows in the order of the issue; the CNN fixtures have a dynamic batch, the transformers one
# export per batch.
MODELS = [
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "squeezenet1_1",
    "densenet121",
    "transformer",
    "transformer_norm_first",
]
# Runs per block when alternating two models, as `nnopt bench --compare` does.
BLOCK = 10


def machine():
    """CPU model, vector ISA and logical CPUs, from /proc/cpuinfo (Linux) or `platform`."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info:  # names such as "AMD EPYC" leave out the generation
        name += f" (family {info['cpu family']} model {info.get('model', '?')})"
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if "avx512f" in flags:
        extra = [f.removeprefix("avx512").upper() for f in ("avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16")
                 if f in flags]
        isa = "AVX-512 (F" + "".join("/" + e.strip("_") for e in extra) + ")"
    elif "avx2" in flags:
        isa = "AVX2" + (" + FMA" if "fma" in flags else "")
    elif "sve" in flags:
        isa = "NEON + SVE"
    elif "asimd" in flags or platform.machine() in ("aarch64", "arm64"):
        isa = "NEON"
    else:
        isa = "scalar / unknown"
    return name, isa, os.cpu_count()


def fixture(model, batch):
    """The fixture's stem for a batch (None: the model has no export at that batch)."""
    for stem in (f"{model}_batchN_dynamo", f"{model}_batch{batch}_dynamo"):
        if os.path.exists(os.path.join(FIXTURES, f"{stem}.onnx")):
            return stem
    return None


def first_error(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for line in lines:
        if "error" in line.lower() or "panicked" in line:
            return line[:200]
    return (lines[-1] if lines else "no output")[:200]


def run(cmd, timeout):
    """(ok, combined output); a timeout is a failure with that message."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout} s: {' '.join(cmd)}"
    return p.returncode == 0, p.stdout + p.stderr


def prune(nnopt, original, pruned, timeout):
    """Prunes; returns (MACs before, MACs after) from --pass-statistics' total line."""
    ok, out = run([nnopt, "--prune-neurons", original, "-o", pruned, "--pass-statistics"], timeout)
    if not ok:
        raise RuntimeError(f"prune: {first_error(out)}")
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == "total" and len(words) >= 5:
            return int(words[-2]), int(words[-1])
    raise RuntimeError("prune: no total line in --pass-statistics")


BENCH_LINE = re.compile(r"median ([0-9.]+) ms.*compile ([0-9.]+) s")


def nnopt_bench(nnopt, original, pruned, batch, threads, runs, timeout, target_cpu=None):
    """((ms, compile s) of the original, (ms, compile s) of the pruned) by `nnopt bench`."""
    # --no-cache: the compile column times a compile, not a hit of an earlier run's cache.
    cmd = [nnopt, "bench", original, "--compare", pruned, "--runs", str(runs), "--batch", str(batch),
           "--threads", str(threads), "--no-cache"]
    if target_cpu:
        cmd.append(f"--target-cpu={target_cpu}")
    ok, out = run(cmd, timeout)
    if not ok:
        raise RuntimeError(f"nnopt bench: {first_error(out)}")
    # Tolerant of other lines (the machine, notes): the two timing lines come in this order.
    found = [(float(m[1]), float(m[2])) for m in map(BENCH_LINE.search, out.splitlines()) if m]
    if len(found) != 2:
        raise RuntimeError(f"nnopt bench: expected two timing lines, got: {out.strip()[:200]}")
    return found[0], found[1]


def ort_bench(original, pruned, batch, threads, runs):
    """onnxruntime's median ms of both files (alternating blocks), their session creation
    times, and the largest difference of their outputs relative to the largest output."""
    sessions, created = [], []
    for path in (original, pruned):
        opts = ort.SessionOptions()  # default options: only the thread count is set
        opts.intra_op_num_threads = threads
        t = time.perf_counter()
        sessions.append(ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]))
        created.append(time.perf_counter() - t)
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sessions[0].get_inputs():
        shape = [d if isinstance(d, int) else batch for d in i.shape]
        feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32)
    outputs = [s.run(None, feeds)[0] for s in sessions]  # also the warm-up
    diff = float(np.max(np.abs(outputs[0] - outputs[1])) / max(np.max(np.abs(outputs[0])), 1e-30))
    times = ([], [])
    done = 0
    while done < runs:
        n = min(BLOCK, runs - done)
        for s, ts in zip(sessions, times):
            for _ in range(n):
                t = time.perf_counter()
                s.run(None, feeds)
                ts.append((time.perf_counter() - t) * 1e3)
        done += n
    del sessions
    gc.collect()
    return float(np.median(times[0])), float(np.median(times[1])), created, diff


HEADER = ("| model | batch | threads | nnopt ms | ort ms | nnopt/ort | pruned: nnopt ms | ort ms | nnopt/ort "
          "| speedup nnopt | speedup ort | MAC ratio | compile s (pruned) | ort session s | ort diff |")


def row(model, batch, threads, r):
    (n0, c0), (n1, c1) = r["nnopt"]
    o0, o1, created, diff = r["ort"]
    return (f"| {model} | {batch} | {threads} | {n0:.2f} | {o0:.2f} | {n0 / o0:.2f}x | {n1:.2f} | {o1:.2f} | "
            f"{n1 / o1:.2f}x | {n0 / n1:.2f}x | {o0 / o1:.2f}x | {r['macs']:.2f}x | {c0:.1f} ({c1:.1f}) | "
            f"{created[0]:.2f} | {diff:.1e} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nnopt", default=os.path.join(ROOT, "target", "release", "nnopt"))
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: " + ",".join(MODELS))
    p.add_argument("--batches", default="1,8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--runs", type=int, default=20, help="timed runs per model and configuration")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed to one nnopt command")
    p.add_argument("--target-cpu", help="nnopt compiles for this LLVM CPU (e.g. haswell: AVX2 code and "
                   "tiles on an AVX-512 machine) instead of the host")
    p.add_argument("--work", help="where the filled and pruned models go (default: a temporary directory, "
                   "removed at the end)")
    a = p.parse_args()
    models = a.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s): {', '.join(unknown)}")
    batches = [int(b) for b in a.batches.split(",")]
    threads = [int(t) for t in a.threads.split(",")]

    name, isa, cpus = machine()
    print(f"machine: {name}; ISA: {isa}; {cpus} logical CPUs; onnxruntime {ort.__version__}")
    if a.target_cpu:
        print(f"nnopt compiles for --target-cpu={a.target_cpu}")
    print(f"runs {a.runs} per model and configuration (medians), in alternating blocks of {BLOCK}")
    sys.stdout.flush()
    if a.work:
        os.makedirs(a.work, exist_ok=True)
        return bench(a, models, batches, threads)
    with tempfile.TemporaryDirectory() as work:
        a.work = work
        return bench(a, models, batches, threads)


def bench(a, models, batches, threads):
    """Times every configuration; prints the table and the failures; returns the exit code."""
    rows, failures, macs = [], [], {}
    for model in models:
        for batch in batches:
            stem = fixture(model, batch)
            if stem is None:
                failures.append(f"{model}: no fixture for batch {batch}")
                continue
            original = os.path.join(a.work, f"{stem}.onnx")
            pruned = os.path.join(a.work, f"{stem}.pruned.onnx")
            try:
                if stem not in macs:  # a dynamic-batch fixture is filled and pruned once
                    fill_file(os.path.join(FIXTURES, f"{stem}.onnx"), a.work)
                    macs[stem] = prune(a.nnopt, original, pruned, a.timeout)
            except RuntimeError as e:
                failures.append(f"{model}: {e}")
                break
            before, after = macs[stem]
            for t in threads:
                r = {"macs": before / after}
                try:
                    r["nnopt"] = nnopt_bench(a.nnopt, original, pruned, batch, t, a.runs, a.timeout, a.target_cpu)
                except RuntimeError as e:
                    failures.append(f"{model} batch {batch} threads {t}: {e}")
                    continue
                r["ort"] = ort_bench(original, pruned, batch, t, a.runs)
                rows.append(row(model, batch, t, r))
                print("row:", rows[-1])
                sys.stdout.flush()

    print()
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for r in rows:
        print(r)
    for f in failures:
        print(f"failed: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
