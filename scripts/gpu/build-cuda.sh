#!/usr/bin/env bash
# Builds the CUDA trainer on a machine without a GPU: nvcc and the CUDA 13 libraries come from
# PyPI wheels installed into the project-local .cuda/ (no system CUDA needed). The build goes
# to target/cuda/ (the CPU build in target/release/ is left alone). Output:
# target/cuda-bundle/ with the stripped `trainer` (CUDA), `runtime` (ort only, with CUDA and
# TensorRT provider options, no tract) and `export` binaries plus the check scripts, ready
# to carry to a GPU machine and run with `bash checks.sh` there.
#
# Usage: scripts/gpu/build-cuda.sh [COMPUTE_CAP]   (default 90: H100/H200)
set -euo pipefail
cd "$(dirname "$0")/../.."
cap="${1:-90}"
venv=.cuda
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  nvidia-cuda-nvcc nvidia-cuda-runtime nvidia-cublas nvidia-curand nvidia-cuda-nvrtc nvidia-cuda-cccl
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cuda_root="$site/nvidia/cu13"
[[ -d "$cuda_root" ]] || cuda_root="$(dirname "$(find "$site/nvidia" -name nvcc -type f | head -n1)")/.."
export CUDA_ROOT="$(cd "$cuda_root" && pwd)"
export PATH="$CUDA_ROOT/bin:$PATH"
# candle's build scripts link against libcuda/libcublas/libcurand/libnvrtc: point the linker at
# the wheels' libraries (the driver's libcuda.so comes from the GPU machine at run time; the
# runtime wheel ships a stub for linking).
libdirs="$(find "$site/nvidia" -name 'lib*.so*' -printf '%h\n' | sort -u | tr '\n' ':')"
export LIBRARY_PATH="${libdirs}${LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP="$cap"
nvcc --version
cargo build --release --target-dir target/cuda -p wgan-trainer --features cuda
cargo build --release --target-dir target/cuda -p wgan-runtime --no-default-features --features cli,cuda
cargo build --release -p wgan-export
bundle=target/cuda-bundle
mkdir -p "$bundle"
cp target/cuda/release/trainer target/cuda/release/runtime target/release/export "$bundle/"
strip "$bundle/trainer" "$bundle/runtime" "$bundle/export"
cp scripts/gpu/checks.sh scripts/torch_goldens.py scripts/bench_training.py "$bundle/"
ls -lh "$bundle"
du -sh "$bundle"
