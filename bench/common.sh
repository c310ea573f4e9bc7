# Sourced by the bench scripts.
# `t CMD...` runs CMD and prints its wall time in seconds; a failing CMD fails `t` (assign its
# output, `s=$(t ...)`, so that `set -e` ends the script).
t() { local s=$(date +%s.%N); "$@" || { echo "failed: $*" >&2; exit 1; }; local e=$(date +%s.%N); echo "$e - $s" | bc; }

# `peak_anon CMD...` runs CMD and prints its peak anonymous RSS.
# Peak RSS (`/usr/bin/time`) counts the memory-mapped input's file pages, page cache that the
# kernel can drop at any time; the anonymous part is the memory the process itself holds.
# Linux keeps no peak of it, so it is sampled every 5 ms (a shorter spike can be missed).
peak_anon() {
  "$@" & local pid=$! peak=0 kb
  while kb=$(awk '/^RssAnon:/ {print $2}' /proc/$pid/status 2>/dev/null) && [ -n "$kb" ]; do
    [ "$kb" -gt "$peak" ] && peak=$kb
    sleep 0.005
  done
  wait $pid
  echo "peak anonymous RSS (sampled every 5 ms): $peak KiB"
}

# nnopt without the MLIR lowering (`--no-default-features`) is built in a target directory of its
# own, so that it never replaces the default build in target/release. Run from the repository root.
no_mlir_nnopt=target/no-mlir/release/nnopt
build_no_mlir() { CARGO_TARGET_DIR=target/no-mlir cargo build --release --no-default-features "$@"; }
