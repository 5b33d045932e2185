#!/usr/bin/env bash
# The project's test command (what CI runs): installs the test environment (the project-local
# .venv with onnx, onnxruntime and its shared library for the ort backend; OpenMPI from
# Debian's packages where missing), then runs every test of the workspace, the ort backend's
# and the MPI data-parallel training's included. No GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/test-env.sh)"
cargo test --workspace --features wgan-runtime/ort,wgan-trainer/mpi "$@"
