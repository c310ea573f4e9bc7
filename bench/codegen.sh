#!/usr/bin/env bash
# Code-generation benchmark (issue #4): a ResNet-style conv network (batch 1) and an MLP
# (batch 64), each unpruned and pruned, compiled by nnopt (transform schedules, JIT at -O3) and
# run in onnxruntime on the same models (exported with `nnopt export`), on 1 and 2 threads.
# Rounds are interleaved so that the shared machine's drift hits every configuration alike;
# compare ratios within a round. Usage: bench/codegen.sh [ROUNDS] (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
dir=$(mktemp -d /tmp/nnopt-codegen.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cargo build --release -q
nnopt=target/release/nnopt
py=.venv/bin/python
$py bench/gen_codegen_nets.py "$dir"
for m in mlp resnet; do
  $nnopt --prune-neurons "$dir/$m.nnir" -o "$dir/${m}_pruned.nnir" 2>/dev/null
  for v in "$m" "${m}_pruned"; do $nnopt export "$dir/$v.nnir" -o "$dir/$v.onnx"; done
done
for round in $(seq "$rounds"); do
  echo "== round $round"
  for threads in 1 2; do
    $nnopt bench "$dir/resnet.nnir" --compare "$dir/resnet_pruned.nnir" --runs 10 --threads "$threads"
    $nnopt bench "$dir/mlp.nnir" --compare "$dir/mlp_pruned.nnir" --runs 20 --batch 64 --threads "$threads"
    if $py -c "import onnxruntime" 2>/dev/null; then
      for v in resnet resnet_pruned; do $py bench/ort_latency.py "$dir/$v.onnx" 1 10 "$threads"; done
      for v in mlp mlp_pruned; do $py bench/ort_latency.py "$dir/$v.onnx" 64 20 "$threads"; done
    fi
  done
done
