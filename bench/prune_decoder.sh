#!/usr/bin/env bash
# Bytes benchmark of pruning an LLM-sized ONNX model (issue #21): bench/gen_decoder.py writes a
# decoder with external data (16 layers at TinyLlama's widths: 3.1 GiB of f32 weights, one SwiGLU
# neuron in 8 dead); `nnopt --prune-neurons dec.onnx -o out.onnx` (import, prune, export with
# external data) runs next to `cp` of the weights, interleaved, 3 rounds, warm page cache; then
# nnopt's peak RSS and peak anonymous RSS. The model needs 3.3 GB of disk, the outputs (cp's copy,
# then nnopt's 3.0 GB) go to $OUT_DIR (default: beside the model; /dev/shm keeps them off a full
# disk); everything is deleted at the end.
# Usage: [OUT_DIR=DIR] bench/prune_decoder.sh [LAYERS] [NNOPT] (default 16, target/release/nnopt).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
layers=${1:-16}
nnopt=${2:-target/release/nnopt}
dir=$(mktemp -d /tmp/nnopt-decoder.XXXXXX)
out=$(mktemp -d "${OUT_DIR:-$dir}/nnopt-decoder-out.XXXXXX")
trap 'rm -rf "$out" "$dir"' EXIT
.venv/bin/python bench/gen_decoder.py "$dir/dec.onnx" --layers "$layers"
ls -l "$dir"
cat "$dir/dec.onnx.data" > /dev/null
for round in 1 2 3; do
  rm -f "$out"/*; sync
  s=$(t cp "$dir/dec.onnx.data" "$out/copy.data")
  echo "round $round: cp $s s"
  rm -f "$out"/*; sync
  s=$(t "$nnopt" --prune-neurons "$dir/dec.onnx" -o "$out/out.onnx")
  echo "round $round: nnopt --prune-neurons $s s"
done
ls -l "$out"
rm -f "$out"/*; sync
/usr/bin/time -f "nnopt peak RSS: %M KiB" "$nnopt" --prune-neurons "$dir/dec.onnx" -o "$out/out.onnx"
rm -f "$out"/*; sync
echo "nnopt $(peak_anon "$nnopt" --prune-neurons "$dir/dec.onnx" -o "$out/out.onnx")"
