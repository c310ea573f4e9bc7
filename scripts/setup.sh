#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian bookworm machine (run as root): installs LLVM/MLIR 22 and
# the lit/FileCheck tools from Debian's packages, only what is missing.
set -euo pipefail

pkgs=(llvm-22-dev libmlir-22-dev mlir-22-tools libpolly-22-dev libclang-22-dev llvm-22-tools
      libzstd-dev libz3-dev libxml2-dev zlib1g-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# llvm-22-tools ships lit as a Python package without a console script on some builds; find one.
if [ ! -x /usr/lib/llvm-22/bin/lit ] && ! command -v lit >/dev/null 2>&1; then
  echo "setup: no lit found in /usr/lib/llvm-22/bin" >&2
  exit 1
fi
test -x /usr/lib/llvm-22/bin/FileCheck || { echo "setup: FileCheck missing" >&2; exit 1; }
# Python venv for the ONNX tests (tests/python/): onnx 1.22.0 is pinned because it is the last
# wheel that ships the backend node test data the conformance test runs.
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -m venv "$root/.venv"
fi
if ! "$root/.venv/bin/python" -c "import onnx, onnxruntime, numpy; assert onnx.__version__ == '1.22.0'" >/dev/null 2>&1; then
  echo "setup: installing onnx==1.22.0 onnxruntime numpy into .venv"
  "$root/.venv/bin/pip" install -q "onnx==1.22.0" onnxruntime numpy
fi
echo "setup: ok"
