#!/usr/bin/env python3
"""Generation latency: onnxruntime (Python) against `runtime bench` (native, tract and ort) on one
ONNX file.

Runs everything in one go on the same model and thread count, and prints medians and ratios
(ratio = our median / onnxruntime-Python's median; below 1 is faster) and each engine's peak
resident memory. Each engine is timed the same way, in its own process: two warm-up runs per
batch size, then --iters timed runs; onnxruntime-Python with intra_op_num_threads = --threads,
`runtime bench` with --threads.

    eval "$(scripts/test-env.sh)"
    cargo build --release -p wgan-runtime --features ort
    $WGAN_TEST_PYTHON runtime/tests/fixtures/make_fixtures.py --dcgan64 /tmp/dcgan64.onnx
    $WGAN_TEST_PYTHON scripts/bench_generation.py target/release/runtime --model /tmp/dcgan64.onnx
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort


def quantile(sorted_times, q):
    pos = q * (len(sorted_times) - 1)
    lo, hi = int(pos // 1), int(-(-pos // 1))
    return sorted_times[lo] + (sorted_times[hi] - sorted_times[lo]) * (pos - lo)


def bench_python(model, batch_sizes, iters, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    z_dim = inp.shape[1]
    rows = {}
    for b in batch_sizes:
        z = np.random.default_rng(0).standard_normal((b, z_dim, 1, 1)).astype(np.float32)
        for _ in range(2):
            sess.run(None, {inp.name: z})
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            sess.run(None, {inp.name: z})
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        rows[b] = (statistics.median(times), quantile(times, 0.9), times[0])
    return rows


def run_child(cmd):
    """(returncode, stdout, stderr, peak RSS in MB) of a child process."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, out, err, usage.ru_maxrss / 1024


def bench_python_child(model, batch_sizes, iters, threads):
    """bench_python in a fresh process, so that its peak memory is its own."""
    code, out, err, rss = run_child([sys.executable, os.path.abspath(__file__), "--python-child",
                                     "--model", model, "--batch-sizes",
                                     ",".join(map(str, batch_sizes)), "--iters", str(iters),
                                     "--threads", str(threads), "x"])
    if code != 0:
        sys.exit(f"onnxruntime-python: {err.strip()}")
    return {int(b): tuple(v) for b, v in json.loads(out).items()}, rss


def bench_runtime(binary, model, backend, batch_sizes, iters, threads, ort_lib):
    cmd = [binary, "bench", "--model", model, "--backend", backend, "--threads", str(threads),
           "--batch-sizes", ",".join(map(str, batch_sizes)), "--iters", str(iters)]
    if backend == "ort" and ort_lib:
        cmd += ["--ort-lib", ort_lib]
    code, stdout, stderr, rss = run_child(cmd)
    if code != 0:
        print(f"{backend}: {stderr.strip()}", file=sys.stderr)
        return None
    if backend in ("native", "auto") and "native" not in stdout:
        print(f"{backend}: the native backend did not run this model:\n{stdout}", file=sys.stderr)
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if m:
            rows[int(m.group(1))] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
    return rows, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runtime", help="path to the release `runtime` binary")
    ap.add_argument("--model", required=True, help="ONNX generator file")
    ap.add_argument("--batch-sizes", default="1,8,64,256")
    ap.add_argument("--iters", type=int, default=10, help="timed runs per batch size (after 2 warm-ups)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds over the engines")
    ap.add_argument("--backends", default="native,tract,ort", help="runtime backends to time")
    ap.add_argument("--python-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ort-lib", default=os.environ.get("ORT_DYLIB_PATH") or
                    os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime.so." + ort.__version__))
    args = ap.parse_args()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.python_child:
        print(json.dumps(bench_python(args.model, sizes, args.iters, args.threads)))
        return

    # Rounds alternate the engines so that other work on a shared machine hits them alike; each
    # cell keeps the best (lowest) median over the rounds, with that round's p90, and the
    # fastest single run.
    results, peak = {}, {}
    for _ in range(args.rounds):
        rows, rss = bench_python_child(args.model, sizes, args.iters, args.threads)
        runs = {"onnxruntime-python": rows}
        peak["onnxruntime-python"] = max(peak.get("onnxruntime-python", 0), rss)
        for backend in args.backends.split(","):
            got = bench_runtime(args.runtime, args.model, backend, sizes, args.iters, args.threads,
                                args.ort_lib)
            if got is not None:
                runs[f"runtime {backend}"] = got[0]
                peak[f"runtime {backend}"] = max(peak.get(f"runtime {backend}", 0), got[1])
        for name, rows in runs.items():
            best = results.setdefault(name, {})
            for b, (med, p90, mn) in rows.items():
                old = best.get(b)
                best[b] = (min(med, old[0]) if old else med,
                           p90 if not old or med < old[0] else old[1],
                           min(mn, old[2]) if old else mn)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"model {args.model}, {args.threads} threads, {args.rounds} rounds of {args.iters} timed "
          f"runs per size, load average {load:.1f} on {os.cpu_count()} cores")
    print("median ms (p90 ms) / min ms  [median ratio to onnxruntime-Python]")
    names = list(results)
    print(f"{'batch':>6}  " + "  ".join(f"{n:>36}" for n in names))
    base = results["onnxruntime-python"]
    for b in sizes:
        cells = []
        for n in names:
            med, p90, mn = results[n].get(b, (float("nan"),) * 3)
            cells.append(f"{med:8.2f} ({p90:8.2f}) / {mn:7.2f} [{med / base[b][0]:4.2f}x]")
        print(f"{b:>6}  " + "  ".join(f"{c:>36}" for c in cells))
    print("peak RSS (MB, largest batch included): " + "; ".join(
        f"{n} {peak[n]:.0f}" for n in names))
    print("images/s at the median: " + "; ".join(
        f"{n}: " + ", ".join(f"b{b} {b / results[n][b][0] * 1e3:.0f}" for b in sizes if b in results[n])
        for n in names))

if __name__ == "__main__":
    main()
