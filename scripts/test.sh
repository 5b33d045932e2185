#!/usr/bin/env bash
# The project's test command (what CI runs): installs the test environment into the
# project-local .venv (onnx, onnxruntime and its shared library for the ort backend), then
# runs every test of the workspace, the ort backend's included. No GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/test-env.sh)"
cargo test --workspace --features wgan-runtime/ort "$@"
