#!/usr/bin/env bash
# Set-up, then every test: cargo test (unit, snapshot, property), clippy, fmt, the lit suite, and
# the Python ONNX tests (onnxruntime oracle, onnx backend node-test conformance) in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export INSTA_UPDATE=no
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo clippy --no-default-features --all-targets -- -D warnings
cargo test --no-default-features
cargo test
cargo build
/usr/lib/llvm-22/bin/lit -v lit/
# Both use the binary that `cargo build` just made (target/, or $CARGO_TARGET_DIR).
.venv/bin/python tests/python/test_onnx_oracle.py
.venv/bin/python tests/python/test_onnx_conformance.py
