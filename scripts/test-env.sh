#!/usr/bin/env bash
# Creates the project-local test environment (idempotent) and prints `export` lines for it
# (OpenMPI's and Chromium's packages are installed first where missing, see below):
#   .venv/            Python with onnx, onnxruntime and numpy (the independent ONNX references),
#                     tritonclient (Triton's ModelConfig schema, to parse config.pbtxt) and
#                     tensorboard (its EventAccumulator reads the runs' event files back)
#   ORT_DYLIB_PATH    ONNX Runtime's shared library from the onnxruntime wheel (for `--features ort`)
#   WGAN_TEST_PYTHON  the interpreter the Rust tests call
# Usage: eval "$(scripts/test-env.sh)"
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# Debian's packages, installed where missing (as root, or through sudo): OpenMPI and libclang
# for the data-parallel tests (`--features wgan-trainer/mpi`: rsmpi's bindings are generated
# against the system's mpi.h), and Chromium, which loads the server's page headless
# (runtime/tests/page.rs).
debian_packages="openmpi-bin libopenmpi-dev libclang-dev chromium"
if ! dpkg -s $debian_packages >/dev/null 2>&1; then
  sudo=""
  if [[ "$(id -u)" != 0 ]]; then sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends $debian_packages; } >&2
fi
venv="$root/.venv"
stamp="$venv/.wgan-test-env-v3"
if [[ ! -f "$stamp" ]]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "onnx==1.23.2" "onnxruntime==1.31.1" "numpy>=1.26" "tritonclient==2.73.0" \
    "tensorboard==2.21.0" >&2
  touch "$stamp"
fi
lib="$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -n1)"
echo "export WGAN_TEST_PYTHON='$venv/bin/python'"
echo "export ORT_DYLIB_PATH='$lib'"
