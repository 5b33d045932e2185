#!/usr/bin/env bash
# Every GPU check in one call, on a machine with an NVIDIA GPU, PyTorch and its nvidia-*
# libraries (no Rust needed). Run from the folder that scripts/gpu/build-cuda.sh filled
# (target/cuda-bundle/): `bash checks.sh`. Prints one table at the end; logs stay in a
# temporary folder whose name it prints.
#   1. parity: one critic step (with the penalty) and one generator step on CUDA, in f32 and
#      f64, against the CPU engine in f64 (`trainer check-device`)
#   2. trainer on CUDA, dcgan64, end to end (finite losses, samples, checkpoint)
#   3. a GPU checkpoint resumes on the CPU, and a CPU checkpoint resumes on the GPU
#   4. a dcgan64 iteration (5 critic + 1 generator step, batch 64) against PyTorch eager on
#      the same GPU, side by side (bench_training.py)
#   5. trainer sample --device cuda at batch 1, 64 and 1024 (wall time each)
#   6. runtime gen through ONNX Runtime's CUDA provider, where the machine's onnxruntime has it
#   7. trainer-nccl (the data-parallel GPU build): one rank alone in an NCCL communicator, the
#      generator's synchronised BatchNorm forward and backward through NCCL against the same
#      without it (`check-device --nccl`); with two GPUs and mpirun, 2 ranks × 8 against
#      1 process × 16 on the GPUs (compare_generators.py)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
py="${PYTHON:-python3}"
# The CUDA libraries PyTorch ships (cuBLAS, cuRAND, NVRTC, runtime) serve candle too.
libs="$("$py" -c 'import os,glob,nvidia; r=list(nvidia.__path__)[0]; print(":".join(sorted({os.path.dirname(p) for p in glob.glob(r+"/**/lib*.so*", recursive=True)})))' 2>/dev/null)"
# The driver's libcuda.so.1: on the loader's path already, or in the usual driver folders.
drivers=""
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
  [[ -e "$d/libcuda.so.1" ]] && drivers="$drivers:$d"
done
export LD_LIBRARY_PATH="${libs}${drivers}:${LD_LIBRARY_PATH:-}"
# CHECKS_OUT names the folder for logs and outputs (default: a new temporary folder).
out="${CHECKS_OUT:-$(mktemp -d)}"
mkdir -p "$out"
results=()
step() {
  local name="$1"; shift
  local t0; t0=$(date +%s%N)
  if "$@" >"$out/$name.log" 2>&1; then local r=ok; else local r="FAILED (exit $?)"; fi
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  results+=("| $name | $r | $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s |")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# A binary that cannot start (a missing CUDA library) says so here, before every check fails.
if ! ./trainer --version; then
  echo "error: ./trainer does not start; LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >&2
  ldd ./trainer | grep 'not found' >&2
  exit 1
fi
step parity-dcgan64 ./trainer check-device --device cuda --preset dcgan64 --batch-size 8
step parity-small ./trainer check-device --device cuda --preset small --batch-size 8
step train-cuda-dcgan64 ./trainer train --device cuda --preset dcgan64 --batch-size 64 --steps 20 --sample-every 10 --checkpoint-every 10 --out "$out/gpu-run"
step resume-gpu-run-on-cpu ./trainer resume "$out/gpu-run" --device cpu --steps 21
step train-cpu-small ./trainer train --device cpu --preset small --batch-size 16 --steps 2 --out "$out/cpu-run"
step resume-cpu-run-on-gpu ./trainer resume "$out/cpu-run" --device cuda --steps 4
step bench-vs-pytorch "$py" bench_training.py --trainer ./trainer --device cuda --preset dcgan64 --batch 64 --iters 5 --rounds 2 --threads 16
for n in 1 64 1024; do
  step "sample-cuda-n$n" ./trainer sample --device cuda --checkpoint "$out/gpu-run" --n "$n" --out "$out/sample-$n.png"
done
step export-gpu-run ./export onnx --checkpoint "$out/gpu-run" --out "$out/gpu-run.onnx"
ort_lib="$("$py" -c 'import onnxruntime,os,glob; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__),"capi","libonnxruntime.so*")))[0])' 2>/dev/null)"
providers="$("$py" -c 'import onnxruntime; print(",".join(onnxruntime.get_available_providers()))' 2>/dev/null)"
echo "onnxruntime here: ${ort_lib:-none} (providers: ${providers:-none})"
if [[ -n "$ort_lib" && "$providers" == *CUDAExecutionProvider* ]]; then
  step ort-cuda-bench env ORT_DYLIB_PATH="$ort_lib" ./runtime bench --model "$out/gpu-run.onnx" --backend ort --provider cuda --require-provider --batch-sizes 1,64,1024
else
  results+=("| ort-cuda-bench | skipped: this machine's onnxruntime has no CUDA provider | - |")
  [[ -n "$ort_lib" ]] && step ort-cpu-bench env ORT_DYLIB_PATH="$ort_lib" ./runtime bench --model "$out/gpu-run.onnx" --backend ort --batch-sizes 1,64
fi

# trainer-nccl loads NCCL (PyTorch's nvidia-nccl wheel, on the path above) and OpenMPI's
# libmpi.so.40: the machine's own where it has one (its mpirun needs its own), else the
# bundle's lib/.
mpi_libs="$LD_LIBRARY_PATH"
ldconfig -p 2>/dev/null | grep -q 'libmpi\.so\.40 ' || mpi_libs="$LD_LIBRARY_PATH:$here/lib"
nccl_env=(env LD_LIBRARY_PATH="$mpi_libs" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
step nccl-1-rank "${nccl_env[@]}" ./trainer-nccl check-device --device cuda --preset small --batch-size 8 --nccl
gpus="$(nvidia-smi --list-gpus 2>/dev/null | wc -l)"
if [[ "$gpus" -ge 2 ]] && command -v mpirun >/dev/null; then
  mpi=(mpirun -n 2 --bind-to none --oversubscribe -x LD_LIBRARY_PATH)
  step nccl-1x16 "${nccl_env[@]}" ./trainer-nccl train --device cuda --preset tiny --batch-size 16 --steps 3 --out "$out/nccl-1x16"
  step nccl-2x8 "${nccl_env[@]}" "${mpi[@]}" ./trainer-nccl train --device cuda --preset tiny --batch-size 16 --steps 3 --out "$out/nccl-2x8"
  step nccl-compare "$py" compare_generators.py "$out/nccl-2x8" "$out/nccl-1x16"
else
  results+=("| nccl-2x8 | skipped: needs 2 GPUs and mpirun (this machine: $gpus GPU) | - |")
fi

echo
for f in parity-dcgan64 parity-small; do echo "## $f"; tail -n 40 "$out/$f.log"; echo; done
echo "## train-cuda-dcgan64 (last lines)"; tail -n 3 "$out/train-cuda-dcgan64.log"
echo "## metrics (step, s/iter)"; cut -d, -f1,7 "$out/gpu-run/metrics.csv" | tail -n 5
echo "## bench-vs-pytorch"; tail -n 6 "$out/bench-vs-pytorch.log"
for f in nccl-1-rank nccl-compare; do [[ -f "$out/$f.log" ]] && { echo "## $f"; tail -n 4 "$out/$f.log"; }; done
for f in ort-cuda-bench ort-cpu-bench; do [[ -f "$out/$f.log" ]] && { echo "## $f"; cat "$out/$f.log"; }; done
echo
echo "| check | result | wall |"
echo "|---|---|---|"
printf '%s\n' "${results[@]}"
echo "logs and outputs: $out"
