"""Writes the tests/torch graphs with their weights filled and dead neurons planted, exactly as
test_torch_models.py does, into a directory: inputs for scripts/compare_outputs.sh and for
benchmarks that need real weights.

    .venv/bin/python tests/python/fill_torch_models.py OUT_DIR [FIXTURE_DIR]

FIXTURE_DIR (default tests/torch) holds graph-only exports, e.g. bench/models for
bench/real_models.sh.
"""

import glob
import os
import sys
import zlib

import numpy as np
import onnx

from test_torch_models import FIXTURES, fill


def fill_file(path, out):
    """Writes the fixture `path` filled to OUT/<its name>; returns that path."""
    name = os.path.basename(path)[: -len(".onnx")]
    architecture = name.rsplit("_", 1)[0].removesuffix("_batchN")
    rng = np.random.default_rng(zlib.crc32(architecture.encode()))
    model = onnx.load(path, load_external_data=False)
    fill(model, rng)
    filled = os.path.join(out, f"{name}.onnx")
    onnx.save(model, filled)
    return filled


def main(out, fixtures=FIXTURES):
    os.makedirs(out, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(fixtures, "*.onnx"))):
        fill_file(path, out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
