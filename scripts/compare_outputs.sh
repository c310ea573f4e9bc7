#!/usr/bin/env bash
# Runs two nnopt binaries over the examples, the lit inputs, the test corpus and the torch.onnx
# graphs, and diffs everything they print or write: canonical text, pruned IR and statistics,
# emitted MLIR and schedules, ONNX import and pruned ONNX bytes. A refactoring that claims to keep
# behaviour shows an empty diff here.
#   scripts/compare_outputs.sh OLD_NNOPT NEW_NNOPT [OUT_DIR]
# ONNX models come from $ONNX_MODELS (default tests/torch, whose graphs have no weights: fill them
# first with `.venv/bin/python tests/python/fill_torch_models.py DIR`).
set -uo pipefail
old="$(realpath "$1")"; new="$(realpath "$2")"
out="${3:-$(mktemp -d)}"
cd "$(dirname "$0")/.."
mkdir -p "$out/old" "$out/new"

run_all() {
  local bin="$1" dst="$2"
  local f key split
  for f in examples/*.nnir tests/corpus/*.nnir $(find lit -name '*.nnir' -not -path '*/Inputs/*' | sort); do
    key="${f//\//_}"
    split=""
    grep -q '^// -----' "$f" && split="--split-input-file"
    for mode in print prune emit-mlir emit-transform emit-mlir-t2 stats; do
      case $mode in
        print) args=() ;;
        prune) args=(--prune-neurons) ;;
        emit-mlir) args=(--emit=mlir) ;;
        emit-transform) args=(--emit=transform) ;;
        emit-mlir-t2) args=(--emit=mlir --threads 2) ;;
        stats) args=(--prune-neurons --pass-statistics) ;;
      esac
      # shellcheck disable=SC2086
      (cd "$(dirname "$f")" && "$bin" $split "${args[@]}" "$(basename "$f")") \
        >"$dst/$key.$mode.out" 2>"$dst/$key.$mode.err"
      echo "exit $?" >>"$dst/$key.$mode.out"
      # Pass timings differ from run to run.
      sed -i -E 's/[0-9]+(\.[0-9]+)? ?(ms|µs|us|s)\b/<time>/g' "$dst/$key.$mode.out" "$dst/$key.$mode.err"
    done
  done
  for f in "${ONNX_MODELS:-tests/torch}"/*.onnx; do
    key="$(basename "$f" .onnx)"
    "$bin" import "$f" -o "$dst/$key.nnir" >/dev/null 2>"$dst/$key.import.err"; echo "exit $?" >>"$dst/$key.import.err"
    "$bin" --prune-neurons "$f" -o "$dst/$key.pruned.onnx" >/dev/null 2>"$dst/$key.prune.err"; echo "exit $?" >>"$dst/$key.prune.err"
    "$bin" --prune-neurons --pass-statistics "$f" -o "$dst/$key.pruned.nnir" >"$dst/$key.stats" 2>&1
    sed -i -E 's/[0-9]+(\.[0-9]+)? ?(ms|µs|us|s)\b/<time>/g' "$dst/$key.stats"
    "$bin" --emit=mlir "$f" >"$dst/$key.mlir" 2>&1
  done
}
run_all "$old" "$out/old"
run_all "$new" "$out/new"
if diff -r "$out/old" "$out/new" >"$out/diff.txt"; then
  echo "compare_outputs: identical ($(ls "$out/old" | wc -l) outputs, in $out)"
else
  echo "compare_outputs: DIFFERENT, see $out/diff.txt"; head -50 "$out/diff.txt"; exit 1
fi
