#!/usr/bin/env python3
"""Data parallelism on this machine, side by side in one run: `dcgan64`, global batch 64,
2 MPI ranks × 1 thread against 1 process × 2 threads, alternating rounds; median seconds per
iteration and images/s. Then, on paper, the bytes each iteration all-reduces and what the ring
all-reduce costs on 8 GPUs over NVLink and on 4 nodes over 25 Gb/s Ethernet.

Needs a release trainer built with MPI (`cargo build --release -p wgan-trainer --features
mpi`), OpenMPI (`scripts/test-env.sh` installs it) and torch (for the layer lists of
`scripts/torch_goldens.py`).

    .venv-torch/bin/python scripts/bench_ranks.py --iters 4 --rounds 2
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def seconds_per_iteration(cmd):
    """Runs a training command (ending in --out), returns its iterations' seconds after the first."""
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        out = subprocess.run(cmd + [run], capture_output=True, text=True, env=MPI_ENV)
        if out.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
        with open(os.path.join(run, "metrics.csv")) as f:
            rows = f.read().splitlines()[1:]
        return [float(r.split(",")[6]) for r in rows][1:]


def parameters(image, z_dim, g_width, c_width, channels, stride):
    """(generator, critic) weights and the generator's BatchNorm channels, from the same
    layer lists as the trainer (scripts/torch_goldens.py's `architecture`)."""
    from torch_goldens import architecture  # noqa: E402

    a = architecture(image, z_dim, g_width, c_width, stride)

    def count(layers):
        total, bn, bn_layers = 0, 0, 0
        for c_in, c_out, k, _s, _p, bias, norm, _act in layers:
            c_in, c_out = c_in or channels, c_out or channels
            total += c_in * c_out * k * k + (c_out if bias else 0)
            if norm:
                total += 2 * c_out
            if norm == "bn":
                bn += c_out
                bn_layers += 1
        return total, bn, bn_layers

    (g, bn, bn_layers), (c, _, _) = count(a["gen"]), count(a["critic"])
    return g, c, bn, bn_layers


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=4, help="timed iterations per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--trainer", default=os.path.join(ROOT, "target", "release", "trainer"))
    a = ap.parse_args()
    train = [a.trainer, "train", "--preset", "dcgan64", "--channels", "3", "--batch-size", str(a.batch),
             "--steps", str(a.iters + 1), "--sample-every", "1000000", "--checkpoint-every", "1000000"]
    runs = {
        "1 process × 2 threads": train + ["--threads", "2", "--out"],
        "2 MPI ranks × 1 thread": ["mpirun", "-n", "2", "--bind-to", "none", "--oversubscribe"]
        + train + ["--threads", "1", "--out"],
    }
    times = {k: [] for k in runs}
    for _ in range(a.rounds):
        for name, cmd in runs.items():
            times[name] += seconds_per_iteration(cmd)
    base = statistics.median(times["1 process × 2 threads"])
    print(f"\ndcgan64 (3 channels), global batch {a.batch}, {os.cpu_count()} cores, median of "
          f"{a.rounds}×{a.iters} iterations (5 critic + 1 generator step), rounds alternating\n")
    print("| run | s / iteration | ratio | real images / s |\n|---|---|---|---|")
    for name in runs:
        t = statistics.median(times[name])
        print(f"| {name} | {t:.3f} | {t / base:.2f}× | {5 * a.batch / t:.1f} |")

    g, c, bn, bn_layers = parameters(64, 100, 64, 64, 3, 2)
    # Per iteration: each of the 5 critic steps all-reduces the critic's gradients (f32
    # weights, f64 biases and norm parameters) and its 4 logged values; the generator step the
    # generator's gradients and its loss. SyncBatchNorm sums 2 values (f64) per BatchNorm
    # channel in each generator forward (6 per iteration) and backward (1); and one flag says
    # whether any rank was asked to stop.
    grad_bytes = 4 * (5 * c + g)
    bn_bytes = 8 * 2 * bn * (6 + 1)
    total = grad_bytes + bn_bytes
    calls = 5 * 3 + 3 + bn_layers * (6 + 1) + 1
    print(f"\nAll-reduced per iteration: critic {c:,} weights × 5 steps + generator {g:,} weights "
          f"= {grad_bytes / 1e6:.1f} MB; SyncBatchNorm {bn_bytes / 1e3:.1f} kB; "
          f"{calls} all-reduces in all\n")
    t_cpu = statistics.median(times["2 MPI ranks × 1 thread"])
    print(f"| interconnect | ranks | bus bandwidth | latency per hop | ring all-reduce per iteration | "
          f"share of the {t_cpu:.2f} s step measured above | of a 100 ms step | of a 25 ms step |\n"
          "|---|---|---|---|---|---|---|---|")
    for name, k, bw, lat in [("NVLink (one node)", 8, 300e9, 5e-6),
                             ("25 Gb/s Ethernet (4 nodes)", 4, 25e9 / 8, 30e-6)]:
        # Ring all-reduce: each rank sends and receives 2(K-1)/K of the bytes over the slowest
        # link, in 2(K-1) hops per all-reduce.
        t = 2 * (k - 1) / k * total / bw + calls * 2 * (k - 1) * lat
        shares = " | ".join(f"{100 * t / (s + t):.1f} %" for s in (t_cpu, 0.1, 0.025))
        print(f"| {name} | {k} | {bw / 1e9:.1f} GB/s | {lat * 1e6:.0f} µs | {1e3 * t:.2f} ms | {shares} |")


if __name__ == "__main__":
    main()
