#!/usr/bin/env bash
# Times two nnopt binaries on the same command line, alternating run by run so that the
# machine's slow stretches hit both; prints the min and median wall and CPU (user+sys) seconds
# of each and the ratio new/old. For refactorings that must not change speed.
#
#   bench/ab.sh OLD_NNOPT NEW_NNOPT RUNS -- ARGS...      (ARGS: nnopt's arguments)
set -euo pipefail
old="$1"; new="$2"; runs="$3"; shift 4
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for _ in $(seq "$runs"); do
  for side in old new; do
    bin="$old"; [ "$side" = new ] && bin="$new"
    /usr/bin/time -f "%e %U %S" -o "$tmp/t" "$bin" "$@" >/dev/null 2>&1 || { echo "ab: $bin $* failed" >&2; exit 1; }
    awk '{print $1, $2 + $3}' "$tmp/t" >>"$tmp/$side"
  done
done
python3 - "$tmp" <<'PY'
import statistics, sys
d = sys.argv[1]
res = {}
for side in ("old", "new"):
    rows = [tuple(map(float, l.split())) for l in open(f"{d}/{side}")]
    wall, cpu = [r[0] for r in rows], [r[1] for r in rows]
    res[side] = (min(wall), statistics.median(wall), min(cpu), statistics.median(cpu))
    print(f"{side}: wall min {res[side][0]:.3f} s median {res[side][1]:.3f} s; cpu min {res[side][2]:.3f} s median {res[side][3]:.3f} s")
o, n = res["old"], res["new"]
print(f"new/old: wall min {n[0] / o[0]:.3f}, cpu min {n[2] / max(o[2], 1e-9):.3f}, cpu median {n[3] / max(o[3], 1e-9):.3f}")
PY
