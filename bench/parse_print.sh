#!/usr/bin/env bash
# Parse + verify + print throughput: nnopt vs mlir-opt on equivalent inputs (issue #2).
#
#   bench/parse_print.sh                 # 100 MB of dense literals + 100k ops
#   BENCH_MB=10 BENCH_OPS=10000 bench/parse_print.sh
#
# Env: BENCH_MB, BENCH_OPS, BENCH_RUNS (default 3), BENCH_SEED (1), MLIR_OPT (path),
#      BENCH_NO_FANOUT=1 (no value with more than 2 uses, see gen_large.py --no-fanout),
#      BENCH_DIR (keep inputs/outputs there instead of a temp dir), BENCH_SKIP_BUILD=1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MB="${BENCH_MB:-100}"
OPS="${BENCH_OPS:-100000}"
RUNS="${BENCH_RUNS:-3}"
SEED="${BENCH_SEED:-1}"
MLIR_OPT="${MLIR_OPT:-/usr/lib/llvm-22/bin/mlir-opt}"

cd "$ROOT"
source bench/common.sh
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "== cargo build --release --no-default-features (in target/no-mlir)" >&2
  build_no_mlir >&2
fi
NNOPT="$ROOT/$no_mlir_nnopt"

if [ -n "${BENCH_DIR:-}" ]; then
  DIR="$BENCH_DIR"; mkdir -p "$DIR"
else
  DIR="$(mktemp -d)"; trap 'rm -rf "$DIR"' EXIT
fi

echo "== generating inputs (mb=$MB ops=$OPS seed=$SEED no_fanout=${BENCH_NO_FANOUT:-0}) in $DIR" >&2
FANOUT_ARG=(); [ "${BENCH_NO_FANOUT:-0}" = 1 ] && FANOUT_ARG=(--no-fanout)
python3 "$ROOT/bench/gen_large.py" --mb "$MB" --ops "$OPS" --seed "$SEED" --out-dir "$DIR" "${FANOUT_ARG[@]}"

HAVE_TIME=0
if [ -x /usr/bin/time ] && /usr/bin/time -f '%M' -o /dev/null true 2>/dev/null; then HAVE_TIME=1; fi

# run LABEL CMD... : RUNS timed runs; appends "label secs rss_kb" lines to $DIR/results
: > "$DIR/results"
run() {
  local label="$1"; shift
  local i t0 t1 rss
  for i in $(seq "$RUNS"); do
    sync
    t0=$(date +%s.%N)
    if [ "$HAVE_TIME" = 1 ]; then
      /usr/bin/time -f '%M' -o "$DIR/rss" "$@"
      rss=$(tail -1 "$DIR/rss")
    else
      "$@"; rss=NA
    fi
    t1=$(date +%s.%N)
    echo "$label $(echo "$t1 - $t0" | bc -l) $rss" >> "$DIR/results"
    echo "   $label run $i: $(echo "$t1 - $t0" | bc -l) s, rss ${rss} KB" >&2
  done
}

echo "== timing ($RUNS runs each)" >&2
# Warm the page cache once for both inputs.
cat "$DIR/large.nnir" "$DIR/large.mlir" > /dev/null
run nnopt "$NNOPT" "$DIR/large.nnir" -o "$DIR/out.nnir"
run mlir-opt "$MLIR_OPT" "$DIR/large.mlir" -o "$DIR/out.mlir"
run mlir-opt-1thread "$MLIR_OPT" --mlir-disable-threading "$DIR/large.mlir" -o "$DIR/out1.mlir"

echo "== re-reading nnopt output" >&2
"$NNOPT" "$DIR/out.nnir" -o "$DIR/out2.nnir"
if cmp -s "$DIR/out.nnir" "$DIR/out2.nnir"; then REREAD="ok (fixed point)"; else REREAD="ok, but output differs from first print"; fi

python3 - "$DIR" "$REREAD" <<'PY'
import os, statistics, sys
d, reread = sys.argv[1], sys.argv[2]
res = {}
for line in open(os.path.join(d, "results")):
    label, secs, rss = line.split()
    res.setdefault(label, []).append((float(secs), rss))
inp = {"nnopt": "large.nnir", "mlir-opt": "large.mlir", "mlir-opt-1thread": "large.mlir"}
out = {"nnopt": "out.nnir", "mlir-opt": "out.mlir", "mlir-opt-1thread": "out1.mlir"}
med = {k: statistics.median(s for s, _ in v) for k, v in res.items()}
print()
print("| tool | input bytes | output bytes | median s (of %d) | MB/s | peak RSS MB | time vs mlir-opt |" % len(res["nnopt"]))
print("|---|---:|---:|---:|---:|---:|---:|")
for k in ["nnopt", "mlir-opt", "mlir-opt-1thread"]:
    ib = os.path.getsize(os.path.join(d, inp[k])); ob = os.path.getsize(os.path.join(d, out[k]))
    rss = [r for _, r in res[k] if r != "NA"]
    rss_s = "%.0f" % (max(int(r) for r in rss) / 1024) if rss else "n/a"
    print("| %s | %d | %d | %.2f | %.1f | %s | %.2fx |" % (
        k, ib, ob, med[k], ib / 1e6 / med[k], rss_s, med[k] / med["mlir-opt"]))
print()
print("all runs (s):", {k: [round(s, 3) for s, _ in v] for k, v in res.items()})
print("nnopt re-read of its own output:", reread)
PY
