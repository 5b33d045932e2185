#!/usr/bin/env bash
# Soak test of `runtime serve` on 127.0.0.1: CLIENTS closed-loop clients (default 8) asking for
# one image each, for MINUTES minutes (default 10) in one-minute slices; prints the throughput
# row of each slice and the server's RSS after it, to show whether memory stays flat.
#
#   scripts/soak_serve.sh                      # shipped model, 8 clients, 10 minutes
#   MODEL=target/bench-dcgan64.onnx MINUTES=5 scripts/soak_serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${MINUTES:-10}"
clients="${CLIENTS:-8}"
port="${PORT:-18081}"
cargo build --release -q -p wgan-runtime --bin runtime --example loadgen
model_args=()
[ -n "${MODEL:-}" ] && model_args=(--model "$MODEL")
log=$(mktemp)
target/release/runtime serve "${model_args[@]}" --port "$port" --log-level warn 2>"$log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 200); do grep -q "listening on" "$log" && break; sleep 0.05; done
echo "minute | clients | ok | other | images/s | p50 ms | p99 ms | server RSS kB"
echo "start: RSS $(ps -o rss= -p "$pid" | tr -d ' ') kB"
for m in $(seq 1 "$minutes"); do
  row=$(target/release/examples/loadgen --url "http://127.0.0.1:$port" --clients "$clients" --seconds 60)
  echo "$m $row $(ps -o rss= -p "$pid" | tr -d ' ')"
done
