#!/usr/bin/env bash
# The real-model benchmark: nnopt beside onnxruntime on torchvision models and
# nn.TransformerEncoder at their deployed sizes, original and pruned (bench/README.md).
#
#   bench/real_models.sh [--models resnet18,squeezenet1_1] [--batches 1,8] [--threads 1,2]
#                        [--runs 20] [--timeout 1800] [--work DIR]
#
# Builds the release nnopt unless $NNOPT names one; Python is $PYTHON, else the project's
# .venv (it needs numpy, onnx and onnxruntime, not torch).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NNOPT:-}" ]; then
  cargo build --release --quiet
  NNOPT=target/release/nnopt
fi
exec "${PYTHON:-.venv/bin/python}" bench/real_models.py --nnopt "$NNOPT" "$@"
