#!/usr/bin/env python3
"""onnxruntime's speed on an original ONNX model and its pruned versions, timed side by side.

`ort_prune_ab.py ORIGINAL.onnx PRUNED.onnx... [--threads 1,2] [--rounds 15] [--block 10]`:
every file gets a session with default options (only the intra-op thread count set); the
sessions then run in alternating blocks of BLOCK runs for ROUNDS rounds, so drift on a shared
machine hits them alike. Prints, per thread count and file, the median of the per-block median
latencies and the original's median over it (the speedup), and each pruned file's largest
output difference relative to the original's largest magnitude.
"""
import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("files", nargs="+")
ap.add_argument("--threads", default="1,2")
ap.add_argument("--rounds", type=int, default=15)
ap.add_argument("--block", type=int, default=10)
a = ap.parse_args()


def session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


first = session(a.files[0], 1)
rng = np.random.default_rng(0)
feeds = {
    i.name: rng.uniform(-1, 1, [d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
    for i in first.get_inputs()
}
reference = first.run(None, feeds)
for path in a.files[1:]:
    out = session(path, 1).run(None, feeds)
    err = max(
        float(np.max(np.abs(o - r))) / max(float(np.max(np.abs(r))), 1e-30)
        for o, r in zip(out, reference)
    )
    print(f"{path}: largest difference {err:.2e} of the largest output")
for threads in [int(t) for t in a.threads.split(",")]:
    sessions = [session(p, threads) for p in a.files]
    for s in sessions:
        for _ in range(3):
            s.run(None, feeds)
    blocks = [[] for _ in sessions]
    for _ in range(a.rounds):
        for s, b in zip(sessions, blocks):
            times = []
            for _ in range(a.block):
                t = time.perf_counter()
                s.run(None, feeds)
                times.append(time.perf_counter() - t)
            b.append(statistics.median(times) * 1e3)
    base = statistics.median(blocks[0])
    for path, b in zip(a.files, blocks):
        m = statistics.median(b)
        print(f"onnxruntime {ort.__version__} {threads} thread(s): {path}: median {m:.3f} ms, speedup {base / m:.2f}x")
