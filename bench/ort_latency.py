#!/usr/bin/env python3
"""onnxruntime's latency on the same models as `nnopt bench`, for bench/codegen.sh.

`ort_latency.py MODEL.onnx BATCH RUNS THREADS`: one warm-up run, then RUNS timed runs of
`session.run` on random inputs whose dynamic dimensions are BATCH; prints the median and the
minimum in ms in the format of `nnopt bench`.
"""
import sys
import time

import numpy as np
import onnxruntime as ort

path, batch, runs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
feeds = {}
rng = np.random.default_rng(0)
for i in sess.get_inputs():
    shape = [d if isinstance(d, int) else batch for d in i.shape]
    feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32)
sess.run(None, feeds)
times = []
for _ in range(runs):
    t = time.perf_counter()
    sess.run(None, feeds)
    times.append((time.perf_counter() - t) * 1e3)
print(f"{path}: onnxruntime {ort.__version__} {threads} thread(s) batch {batch}: "
      f"median {np.median(times):.3f} ms over {runs} runs (min {min(times):.3f} ms)")
