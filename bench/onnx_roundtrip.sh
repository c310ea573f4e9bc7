#!/usr/bin/env bash
# ONNX benchmark of issue #5: import + prune + export of a model with about 1 GiB of weights
# (`nnopt --prune-neurons big.onnx -o pruned.onnx`), next to `cp` of the same file, interleaved,
# 3 rounds each; also the peak RSS of nnopt and its anonymous part. The model is
# bench/gen_big_weights.py's MLP (half of the hidden neurons dead) exported by `nnopt export`:
# Gemm nodes with transB = 1, the form PyTorch's nn.Linear exports; then a MatMul-form model
# (bench/gen_matmul_onnx.py, weights [in, out]). Usage: bench/onnx_roundtrip.sh [WIDTH] (8192 = 1 GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/peak_anon.sh
width=${1:-8192}
dir=$(mktemp -d /tmp/nnopt-onnx.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 bench/gen_big_weights.py "$dir" "$width"
cargo build --release --no-default-features -q
nnopt=target/release/nnopt
$nnopt export "$dir/big.nnir" -o "$dir/big.onnx"
rm -f "$dir/big.safetensors"
ls -l "$dir/big.onnx"
t() { local s=$(date +%s.%N); "$@" || { echo "failed: $*" >&2; exit 1; }; local e=$(date +%s.%N); echo "$e - $s" | bc; }
for round in 1 2 3; do
  rm -f "$dir/copy.onnx" "$dir/pruned.onnx"
  echo "round $round: cp $(t cp "$dir/big.onnx" "$dir/copy.onnx") s"
  rm -f "$dir/copy.onnx"
  echo "round $round: nnopt --prune-neurons big.onnx -o pruned.onnx $(t $nnopt --prune-neurons "$dir/big.onnx" -o "$dir/pruned.onnx") s"
done
/usr/bin/time -f "nnopt peak RSS: %M KiB" $nnopt --prune-neurons "$dir/big.onnx" -o "$dir/pruned.onnx"
echo "nnopt $(peak_anon $nnopt --prune-neurons "$dir/big.onnx" -o "$dir/pruned.onnx")"
ls -l "$dir/pruned.onnx"
# The MatMul form (weights [in, out]): the importer transposes each weight into a new buffer.
.venv/bin/python bench/gen_matmul_onnx.py "$dir/mm.onnx" "$width"
ls -l "$dir/mm.onnx"
for round in 1 2 3; do
  rm -f "$dir/copy.onnx" "$dir/pruned.onnx"
  echo "round $round: cp mm.onnx $(t cp "$dir/mm.onnx" "$dir/copy.onnx") s"
  rm -f "$dir/copy.onnx"
  echo "round $round: nnopt --prune-neurons mm.onnx -o pruned.onnx $(t $nnopt --prune-neurons "$dir/mm.onnx" -o "$dir/pruned.onnx") s"
done
echo "nnopt $(peak_anon $nnopt --prune-neurons "$dir/mm.onnx" -o "$dir/pruned.onnx")"
