#!/usr/bin/env bash
# Set-up, then every test: cargo test (unit, snapshot, property), clippy, fmt, the lit suite, and
# the Python ONNX tests (onnxruntime oracle, onnx backend node-test conformance, the
# torch.onnx.export graphs of tests/torch, a smoke run of bench/real_models.sh) in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export INSTA_UPDATE=no
# CI builds once from a fresh clone: incremental caches would only take disk.
export CARGO_INCREMENTAL=0
# The compiled code of every `nnopt run` and `bench` below goes to a cache of the tests' own,
# not the user's ~/.cache/nnopt.
export XDG_CACHE_HOME="$PWD/target/test-cache"
cargo fmt --check
# One clippy run (default features, which include the `mlir` code): a second run without them
# would check every dependency again and CI must stay under 30 minutes; the build without
# `mlir` is still compiled and tested below.
cargo clippy --all-targets -- -D warnings
cargo test --no-default-features
# Builds target/debug/nnopt with every feature for lit and the Python tests.
cargo test
/usr/lib/llvm-22/bin/lit -v lit/
# Both use the binary that `cargo test` just made (target/, or $CARGO_TARGET_DIR).
.venv/bin/python tests/python/test_onnx_oracle.py
.venv/bin/python tests/python/test_onnx_conformance.py
.venv/bin/python tests/python/test_torch_models.py
.venv/bin/python tests/python/test_round_to.py
.venv/bin/python tests/python/test_prune_report.py
.venv/bin/python tests/python/test_llm_weights.py
.venv/bin/python tests/python/test_llm_models.py
.venv/bin/python tests/python/test_llm_pruning.py
.venv/bin/python tests/python/test_numeric_chains.py
# The real-model benchmark's driver on its smallest model, one run: fails if nnopt bench's output
# stops parsing (bench/README.md; `test_torch_models.py bench/models` checks every fixture, slowly).
NNOPT=target/debug/nnopt bench/real_models.sh --models transformer --batches 1 --threads 1 --runs 1
