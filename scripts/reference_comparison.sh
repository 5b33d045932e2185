#!/usr/bin/env bash
# The equal-steps comparison of `trainer train` with the PyTorch reference
# (scripts/reference_wgan_gp.py): same preset, data, batch size, steps and seed, then
# `trainer eval --all` on each. By default one run after the other, each with THREADS cores;
# with SIDE_BY_SIDE=1 both train at once with one thread each, so that they share the machine
# under the same conditions and their logged s/it compare directly. Runs that already reached
# their last step are skipped, so the script can be rerun after an interruption (an unfinished
# run of ours is resumed; an unfinished PyTorch run restarts).
#
#   scripts/reference_comparison.sh mnist 0        # MNIST, seed 0 (about 2.5 h on 2 cores)
#   SIDE_BY_SIDE=1 scripts/reference_comparison.sh emoji 0   # Noto emoji, seed 0 (about 1 h)
#
# Environment: TRAINER (default target/release/trainer), RUNS (default runs/compare),
# PYTHON (default .venv-torch/bin/python, with torch, safetensors, numpy, pillow),
# EMOJI (default ../shared/data/emoji-noto-64), THREADS (default 2, 1 with SIDE_BY_SIDE),
# EMOJI_STEPS (default 2000).
# Then: scripts/compare_runs.py --run ours=RUNS/ours-mnist-s0 --run pytorch=RUNS/torch-mnist-s0
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:?usage: reference_comparison.sh mnist|emoji SEED}"
seed="${2:-0}"
trainer="${TRAINER:-target/release/trainer}"
runs="${RUNS:-runs/compare}"
python="${PYTHON:-.venv-torch/bin/python}"
side_by_side="${SIDE_BY_SIDE:-0}"
if [[ "$side_by_side" == 1 ]]; then threads="${THREADS:-1}"; else threads="${THREADS:-2}"; fi
export RAYON_NUM_THREADS="$threads"
mkdir -p "$runs"

case "$what" in
  mnist)
    common=(--preset small --batch-size 32 --steps 3000 --seed "$seed")
    every=250
    data_ours=()
    data_torch=()
    eval_data=()
    ;;
  emoji)
    # Every 10th image (sorted by name) is held out; the rest is the training folder.
    src="${EMOJI:-../shared/data/emoji-noto-64}"
    split="$runs/emoji-split"
    if [[ ! -d "$split/held-out" ]]; then
      mkdir -p "$split/train" "$split/held-out"
      i=0
      for f in $(ls "$src" | grep -i '\.png$' | sort); do
        if (( i % 10 == 9 )); then dest=held-out; else dest=train; fi
        ln -s "$(cd "$src" && pwd)/$f" "$split/$dest/$f"
        i=$((i + 1))
      done
    fi
    common=(--preset small --channels 3 --batch-size 32 --steps "${EMOJI_STEPS:-2000}" --seed "$seed")
    every=250
    data_ours=(--data "$split/train")
    data_torch=(--data "$split/train")
    eval_data=(--data "$split/held-out")
    ;;
  *) echo "unknown comparison '$what': mnist or emoji" >&2; exit 2 ;;
esac

last_step() { cat "$1/checkpoints/latest" 2>/dev/null | sed 's/step_0*//' || true; }
steps="$(printf '%s\n' "${common[@]}" | grep -A1 -- --steps | tail -1)"

ours="$runs/ours-$what-s$seed"
train_ours() {
  if [[ "$(last_step "$ours")" == "$steps" ]]; then return; fi
  if [[ -f "$ours/checkpoints/latest" ]]; then
    "$trainer" resume --checkpoint "$ours"
  else
    rm -rf "$ours"
    "$trainer" train "${common[@]}" "${data_ours[@]}" --ema 0.999 \
      --checkpoint-every "$every" --sample-every "$every" --keep-checkpoints 1000 --out "$ours"
  fi
}

torch="$runs/torch-$what-s$seed"
train_torch() {
  if [[ "$(last_step "$torch")" == "$steps" ]]; then return; fi
  rm -rf "$torch"
  "$python" scripts/reference_wgan_gp.py "${common[@]}" "${data_torch[@]}" \
    --checkpoint-every "$every" --threads "$threads" --out "$torch"
}

if [[ "$side_by_side" == 1 ]]; then
  train_ours > "$runs/ours-$what-s$seed.log" 2>&1 &
  ours_pid=$!
  train_torch > "$runs/torch-$what-s$seed.log" 2>&1 &
  torch_pid=$!
  trap 'kill $ours_pid $torch_pid 2>/dev/null' INT TERM
  wait "$ours_pid" || { echo "our run failed: see $runs/ours-$what-s$seed.log" >&2; exit 1; }
  wait "$torch_pid" || { echo "PyTorch run failed: see $runs/torch-$what-s$seed.log" >&2; exit 1; }
else
  train_ours
  train_torch
fi

# Ours is measured twice: its moving average (eval.csv) and its raw weights (eval-raw.csv).
"$trainer" eval --checkpoint "$ours" --all "${eval_data[@]}" > "$ours/eval.txt"
"$trainer" eval --checkpoint "$ours" --all --weights raw "${eval_data[@]}" > "$ours/eval-raw.txt"
"$trainer" eval --checkpoint "$torch" --all "${eval_data[@]}" > "$torch/eval.txt"
echo "done: $ours $torch"
