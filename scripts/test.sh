#!/usr/bin/env bash
# Set-up, then every test: cargo test (unit, snapshot, property), clippy, fmt, and the lit suite.
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
