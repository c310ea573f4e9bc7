"""`--prune-report=FILE.html` on real models (issue #19): the page parses as XML (XHTML with
inline SVG), has one row per weighted layer of the model, and each row's bar tiles its full
width with parts whose channel counts add up to the layer's channels before pruning, kept for
alignment and removed as the `--pass-statistics` table and the written ONNX file say.

Run with the project venv: `.venv/bin/python tests/python/test_prune_report.py`, with the nnopt
binary of `cargo build` (as test_torch_models.py finds it).
"""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import onnx

from test_round_to import check_each, widths as node_widths
from test_torch_models import FIXTURES, NNOPT, fill

MODELS = ["mobilenet_v2_ts", "squeezenet1_1_ts", "transformer_ts"]
XHTML, SVG = "{http://www.w3.org/1999/xhtml}", "{http://www.w3.org/2000/svg}"


def widths(model):
    """Output channels of each weighted node, by the names the report may give it: its node
    name, and its weight's name without `.weight` (PyTorch's module name)."""
    by_node = node_widths(model)
    out = dict(by_node)
    for n in model.graph.node:
        if n.name in by_node and n.input[1].endswith(".weight"):
            out[n.input[1].removesuffix(".weight")] = by_node[n.name]
    return out


def check(name, d):
    rng = np.random.default_rng(zlib.crc32(name.rsplit("_", 1)[0].encode()))
    model = onnx.load(os.path.join(FIXTURES, f"{name}.onnx"), load_external_data=False)
    fill(model, rng)
    src, dst, page = (os.path.join(d, f"{name}{s}") for s in (".onnx", ".pruned.onnx", ".html"))
    onnx.save(model, src)
    r = subprocess.run(
        [NNOPT, "--prune-neurons", "--round-to=16", "--pass-statistics", f"--prune-report={page}", src, "-o", dst],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, f"{name}: {r.stderr}"
    root = ET.parse(page).getroot()
    assert root.tag == f"{XHTML}html", root.tag
    rows = [tr for tr in root.iter(f"{XHTML}tr") if tr.find(f"{XHTML}td/{SVG}svg") is not None]
    before, after = widths(model), widths(onnx.load(dst))
    # NNIR may hold more weighted ops than the file has nodes (a fused attention projection
    # imports as one linear per head input), never fewer.
    assert len(rows) >= len(node_widths(model)), f"{name}: {len(rows)} bars for {len(node_widths(model))} layers"
    aligned_total, checked = 0, 0
    for tr in rows:
        cells = tr.findall(f"{XHTML}td")
        layer = cells[0].text.split(" (")[0]
        svg = cells[1].find(f"{SVG}svg")
        rects = svg.findall(f"{SVG}rect")
        # The parts tile the bar: each starts where the last ended, the last ends at the edge.
        x = 0
        for rect in rects:
            assert int(rect.get("x")) == x, f"{name} {layer}: a gap in the bar"
            x += int(rect.get("width"))
        assert x == int(svg.get("width")), f"{name} {layer}: the bar is {x} of {svg.get('width')} wide"
        parts = {rect.get("class"): int(rect.find(f"{SVG}title").text.split()[0]) for rect in rects}
        aligned_total += parts.get("aligned", 0)
        if layer not in before:
            continue
        checked += 1
        assert sum(parts.values()) == before[layer], f"{name} {layer}: {parts} for {before[layer]} channels"
        kept = parts.get("live", 0) + parts.get("aligned", 0)
        assert kept == after.get(layer, before[layer]), f"{name} {layer}: {kept} kept, the file has {after.get(layer)}"
    assert checked >= len(node_widths(model)) // 2, f"{name}: only {checked} bars name a layer of the file"
    stats = sum(int(n) for n in re.findall(r"kept (\d+) for alignment", r.stderr))
    assert aligned_total == stats, f"{name}: {aligned_total} aligned in the page, {stats} in the statistics"
    print(f"{name:20} {len(rows)} layers, {aligned_total} channels kept for alignment: the page agrees")


if __name__ == "__main__":
    sys.exit(check_each(MODELS, check))
