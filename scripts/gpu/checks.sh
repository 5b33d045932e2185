#!/usr/bin/env bash
# Every GPU check in one call, on a machine with an NVIDIA GPU, PyTorch and its nvidia-*
# libraries (no Rust needed). Run from the folder that scripts/gpu/build-cuda.sh filled
# (target/cuda-bundle/). Prints one table at the end.
#   1. trainer on CUDA, dcgan64, end to end (finite losses, samples, checkpoint)
#   2. a GPU checkpoint resumes on CPU, and a CPU checkpoint resumes on GPU
#   3. trainer sample --device cuda at batch 1, 64 and 1024
# Not yet scripted (see the README's GPU section): CPU/GPU parity of one critic step and the
# iteration time against PyTorch eager on the same GPU.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
py="${PYTHON:-python3}"
# The CUDA libraries PyTorch ships (cuBLAS, cuRAND, NVRTC, runtime) serve candle too.
libs="$("$py" -c 'import os,glob,nvidia; r=os.path.dirname(nvidia.__file__); print(":".join(sorted({os.path.dirname(p) for p in glob.glob(r+"/**/lib*.so*", recursive=True)})))')"
export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
out="$(mktemp -d)"
results=()
step() { local name="$1"; shift; local t0=$SECONDS; if "$@" >"$out/$name.log" 2>&1; then results+=("| $name | ok | $((SECONDS-t0)) s |"); else results+=("| $name | FAILED (see $out/$name.log) | $((SECONDS-t0)) s |"); fi; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step train-cuda-dcgan64 ./trainer train --device cuda --preset dcgan64 --channels 1 --steps 20 --sample-every 10 --checkpoint-every 10 --out "$out/gpu-run"
step resume-gpu-run-on-cpu ./trainer resume "$out/gpu-run" --device cpu --steps 21
step train-cpu-tiny ./trainer train --device cpu --preset tiny --steps 2 --out "$out/cpu-run"
step resume-cpu-run-on-gpu ./trainer resume "$out/cpu-run" --device cuda --steps 3
for n in 1 64 1024; do
  step "sample-cuda-n$n" ./trainer sample --device cuda --checkpoint "$out/gpu-run" --n "$n" --out "$out/sample-$n.png"
done
grep -h "s/it" "$out"/train-cuda-dcgan64.log | tail -n 3
echo "| check | result | wall |"
echo "|---|---|---|"
printf '%s\n' "${results[@]}"
echo "logs and outputs: $out"
