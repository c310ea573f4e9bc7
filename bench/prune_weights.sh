#!/usr/bin/env bash
# Bytes benchmark of the pruning pass (issue #3): prune an MLP with ~1 GiB of external f32
# weights (half of the hidden neurons dead) and write the result with its new safetensors file,
# next to `cp` of the weight file (the read+write floor), interleaved, 3 rounds each; also the
# peak RSS of nnopt and its anonymous part. Usage: bench/prune_weights.sh [WIDTH] (8192 = 1 GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
width=${1:-8192}
dir=$(mktemp -d /tmp/nnopt-bytes.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 bench/gen_big_weights.py "$dir" "$width"
build_no_mlir -q
nnopt=$no_mlir_nnopt
ls -l "$dir/big.safetensors"
for round in 1 2 3; do
  rm -f "$dir/copy.safetensors" "$dir/out.nnir" "$dir/out.safetensors"; sync
  s=$(t cp "$dir/big.safetensors" "$dir/copy.safetensors")
  echo "round $round: cp $s s"
  rm -f "$dir/copy.safetensors"; sync
  s=$(t $nnopt --prune-neurons "$dir/big.nnir" -o "$dir/out.nnir")
  echo "round $round: nnopt --prune-neurons -o $s s"
done
/usr/bin/time -f "nnopt peak RSS: %M KiB" $nnopt --prune-neurons "$dir/big.nnir" -o "$dir/out.nnir"
echo "nnopt $(peak_anon $nnopt --prune-neurons "$dir/big.nnir" -o "$dir/out.nnir")"
ls -l "$dir/out.safetensors"
