#!/usr/bin/env bash
# Builds the CUDA trainer on a machine without a GPU: nvcc and the CUDA 13 libraries come from
# PyPI wheels installed into the project-local .cuda/ (no system CUDA needed), NCCL from the
# nvidia-nccl-cu13 wheel. The build goes to target/cuda/ (the CPU build in target/release/ is
# left alone). Output: target/cuda-bundle/ with the stripped `trainer` (CUDA), `trainer-nccl`
# (CUDA with NCCL and MPI, for data-parallel GPU ranks), `runtime` (ort only, with CUDA and
# TensorRT provider options, no tract) and `export` binaries, the OpenMPI libraries
# `trainer-nccl` loads (lib/), and the check scripts; and target/cuda-bundle.tar.xz, the same
# compressed, ready to carry to a GPU machine and run with `bash checks.sh` there.
#
# Needs OpenMPI's development files for `trainer-nccl` (Debian: openmpi-bin libopenmpi-dev
# libclang-dev, as scripts/test-env.sh installs them).
#
# Usage: scripts/gpu/build-cuda.sh [COMPUTE_CAP]   (default 90: H100/H200)
#
# The CUDA release is pinned (CUDA_RELEASE, default 13.0) to the target machine's driver:
# candle's kernels are compiled to PTX here and JIT-compiled by the driver there, and a driver
# refuses PTX from a newer nvcc than its own CUDA release (driver 580 = CUDA 13.0). nvcc's own
# dependencies (nvvm, crt) are pinned too: unpinned, pip takes the newest, whose PTX the
# pinned ptxas then rejects.
set -euo pipefail
cd "$(dirname "$0")/../.."
cap="${1:-90}"
release="${CUDA_RELEASE:-13.0}"
# The NCCL the `nccl` build links: the release of cudarc's bindings (NCCL 2.30's API). Its
# wheel is compiled with a later CUDA 13 (13.3) and relies on CUDA's minor-version
# compatibility to run on a 13.0 driver. On the GPU machine PyTorch's own nvidia-nccl wheel
# provides libnccl.so.2.
NCCL_RELEASE="${NCCL_RELEASE:-2.30}"
venv=.cuda
# A folder filled for another release is rebuilt: wheels of two releases must not mix.
if [[ -d "$venv" && "$(cat "$venv/release" 2>/dev/null)" != "$release+nccl$NCCL_RELEASE" ]]; then
  rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "nvidia-cuda-nvcc==$release.*" "nvidia-nvvm==$release.*" "nvidia-cuda-crt==$release.*" \
  "nvidia-cuda-runtime==$release.*" "nvidia-cuda-nvrtc==$release.*" \
  "nvidia-cuda-cccl==$release.*" "nvidia-cublas==$release.*" nvidia-curand \
  "nvidia-nccl-cu13==$NCCL_RELEASE.*"
echo "$release+nccl$NCCL_RELEASE" >"$venv/release"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cuda_root="$site/nvidia/cu13"
[[ -d "$cuda_root" ]] || cuda_root="$(dirname "$(find "$site/nvidia" -name nvcc -type f | head -n1)")/.."
export CUDA_ROOT="$(cd "$cuda_root" && pwd)"
export PATH="$CUDA_ROOT/bin:$PATH"
# candle links its CUDA libraries at build time (cudarc's dynamic-linking: -lcuda -lcublas
# -lcublasLt -lcurand -lnvrtc -lcudart; and -lnccl in the nccl build). The wheels ship only versioned names
# (libcublas.so.13), so .cuda/link/ gets the unversioned names the linker looks for. The
# driver's libcuda.so.1 exists only on GPU machines: here the linker gets a stub with its
# soname that defines every driver entry point cudarc declares; at run time the real driver
# library is loaded in its place.
link="$venv/link"
mkdir -p "$link"
for lib in cudart cublas cublasLt curand nvrtc nccl; do
  f="$(find "$site/nvidia" -name "lib$lib.so.*" ! -name '*alt*' | sort | head -n1)"
  [[ -n "$f" ]] || { echo "error: lib$lib.so.* not found under $site/nvidia" >&2; exit 1; }
  ln -sf "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$link/lib$lib.so"
done
cudarc_src="$(cargo metadata --format-version 1 --manifest-path Cargo.toml --features wgan-trainer/cuda |
  python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))')"
python3 - "$cudarc_src/src/driver/sys/mod.rs" >"$link/cuda_stub.c" <<'PY'
import re, sys
names = sorted(set(re.findall(r"pub unsafe fn (cu[A-Z]\w*)\(", open(sys.argv[1]).read())))
print("/* Link-time stand-in for the NVIDIA driver library: never loaded. */")
for n in names:
    print(f"void {n}(void) {{}}")
PY
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$link/cuda_stub.c"
export LIBRARY_PATH="$(cd "$link" && pwd)${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="$cap"
nvcc --version
# The NCCL build first (its binary is set aside: the plain CUDA build replaces it; both share
# the compiled kernels).
cargo build --release --target-dir target/cuda -p wgan-trainer --features nccl
cp target/cuda/release/trainer target/cuda/trainer-nccl
cargo build --release --target-dir target/cuda -p wgan-trainer --features cuda
cargo build --release --target-dir target/cuda -p wgan-runtime --no-default-features --features cli,cuda
cargo build --release -p wgan-export
bundle=target/cuda-bundle
rm -rf "$bundle"
mkdir -p "$bundle"
cp target/cuda/release/trainer target/cuda/release/runtime target/release/export "$bundle/"
cp target/cuda/trainer-nccl "$bundle/trainer-nccl"
strip "$bundle/trainer" "$bundle/trainer-nccl" "$bundle/runtime" "$bundle/export"
# OpenMPI's libraries for trainer-nccl on a machine without them (checks.sh puts lib/ on the
# loader's path): everything it links that is neither the C runtime nor a CUDA library.
mkdir -p "$bundle/lib"
ldd target/cuda/trainer-nccl | awk '/=> \// {print $3}' |
  grep -Ev '/(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|libz|ld-linux[^/]*)\.so|/libcuda|/libcu(blas|rand)|/libnvrtc|/libnccl|/libcudart' |
  xargs -r cp -L -t "$bundle/lib/"
ls "$bundle/lib"
cp scripts/gpu/checks.sh scripts/torch_goldens.py scripts/bench_training.py scripts/compare_generators.py "$bundle/"
ls -lh "$bundle"
# One compressed file to carry (the bundle itself is larger than it compresses to).
tar -C "$bundle" -cf - . | xz -T0 -6 >target/cuda-bundle.tar.xz.tmp
mv target/cuda-bundle.tar.xz.tmp target/cuda-bundle.tar.xz
ls -lh target/cuda-bundle.tar.xz
echo "on the GPU machine: mkdir b && tar -xJf cuda-bundle.tar.xz -C b && bash b/checks.sh"
