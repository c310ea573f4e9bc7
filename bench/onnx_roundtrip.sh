#!/usr/bin/env bash
# ONNX benchmark of issue #5: import + prune + export of a model with about 1 GiB of weights
# (`nnopt --prune-neurons big.onnx -o pruned.onnx`), next to `cp` of the same file, interleaved,
# 3 rounds each; also the peak RSS of nnopt and its anonymous part. The model is
# bench/gen_big_weights.py's MLP (half of the hidden neurons dead) exported by `nnopt export`:
# Gemm nodes with transB = 1, the form PyTorch's nn.Linear exports; then a MatMul-form model
# (bench/gen_matmul_onnx.py, weights [in, out]). Usage: bench/onnx_roundtrip.sh [WIDTH] (8192 = 1 GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
width=${1:-8192}
dir=$(mktemp -d /tmp/nnopt-onnx.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 bench/gen_big_weights.py "$dir" "$width"
build_no_mlir -q
nnopt=$no_mlir_nnopt
$nnopt export "$dir/big.nnir" -o "$dir/big.onnx"
rm -f "$dir/big.safetensors"
ls -l "$dir/big.onnx"
# `rounds NAME`: 3 interleaved rounds of `cp NAME` and `nnopt --prune-neurons NAME`, then
# nnopt's peak RSS and its anonymous part.
rounds() {
  local m=$1 s
  for round in 1 2 3; do
    rm -f "$dir/copy.onnx" "$dir/pruned.onnx"
    s=$(t cp "$dir/$m" "$dir/copy.onnx")
    echo "round $round: cp $m $s s"
    rm -f "$dir/copy.onnx"
    s=$(t $nnopt --prune-neurons "$dir/$m" -o "$dir/pruned.onnx")
    echo "round $round: nnopt --prune-neurons $m -o pruned.onnx $s s"
  done
  /usr/bin/time -f "nnopt peak RSS: %M KiB" $nnopt --prune-neurons "$dir/$m" -o "$dir/pruned.onnx"
  echo "nnopt $(peak_anon $nnopt --prune-neurons "$dir/$m" -o "$dir/pruned.onnx")"
  ls -l "$dir/pruned.onnx"
}
rounds big.onnx
# The MatMul form (weights [in, out]): the importer transposes each weight into a new buffer.
.venv/bin/python bench/gen_matmul_onnx.py "$dir/mm.onnx" "$width"
ls -l "$dir/mm.onnx"
rounds mm.onnx
