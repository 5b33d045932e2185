#!/usr/bin/env bash
# Load test of `runtime serve` on 127.0.0.1: throughput (images/s) and p50/p99 latency of
# closed-loop clients each asking for one image, at 1, 8, 32 and 128 concurrent clients, with
# dynamic batching (--max-batch 64, no delay and 5 ms) and without (--max-batch 1), on the
# shipped generator and on
# a dcgan64-shaped one; plus `runtime bench`'s best images/s on the same model and the server's
# RSS before and after. Prints Markdown tables.
#
#   scripts/bench_serve.sh                 # 10 s per row
#   SECONDS_PER=30 scripts/bench_serve.sh  # longer rows
#
# Traffic goes to 127.0.0.1 only; every row is bounded by SECONDS_PER.
set -euo pipefail
cd "$(dirname "$0")/.."
per="${SECONDS_PER:-10}"
port="${PORT:-18080}"
cargo build --release -q -p wgan-runtime --bin runtime --example loadgen
bin=target/release/runtime
loadgen=target/release/examples/loadgen
eval "$(scripts/test-env.sh)"
dcgan="target/bench-dcgan64.onnx"
[ -f "$dcgan" ] || "$WGAN_TEST_PYTHON" runtime/tests/fixtures/make_fixtures.py --dcgan64 "$dcgan" >/dev/null

rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }

for model in shipped dcgan64; do
  model_args=()
  [ "$model" = dcgan64 ] && model_args=(--model "$dcgan")
  best=$("$bin" bench "${model_args[@]}" --batch-sizes 1,8,64 --iters 5 | awk 'NR>3 {print $5}' | sort -g | tail -1)
  echo
  echo "### $model (runtime bench best: $best images/s)"
  for mode in "64 0" "64 5" "1 0"; do
    read -r max_batch delay <<<"$mode"
    log=$(mktemp)
    "$bin" serve "${model_args[@]}" --port "$port" --max-batch "$max_batch" --max-delay-ms "$delay" \
      --log-level warn 2>"$log" &
    pid=$!
    for _ in $(seq 1 200); do grep -q "listening on" "$log" && break; sleep 0.05; done
    rss0=$(rss_kb "$pid")
    echo
    echo "--max-batch $max_batch --max-delay-ms $delay (server RSS at start ${rss0} kB)"
    echo
    header=--header
    for clients in 1 8 32 128; do
      "$loadgen" --url "http://127.0.0.1:$port" --clients "$clients" --seconds "$per" $header
      header=
    done
    echo
    echo "server RSS at end $(rss_kb "$pid") kB"
    kill -TERM "$pid"
    wait "$pid" || true
    rm -f "$log"
  done
done
