#!/usr/bin/env python3
"""Side-by-side training-iteration benchmark: PyTorch (eager, CPU or CUDA) against this project's
`trainer`, same preset, batch size and thread count, in one run.

One iteration = 5 critic steps (generator forward, critic on real, fake and interpolates,
double backward for the gradient penalty, Adam) + 1 generator step. Prints the median
seconds per iteration (first iteration excluded as warm-up), the peak resident memory of
each process, and the ratios.

Needs torch (`python3 -m venv .venv-torch && .venv-torch/bin/pip install torch safetensors numpy`)
and a release build of the trainer (`cargo build --release -p wgan-trainer`).

    .venv-torch/bin/python scripts/bench_training.py --preset small --batch 64 --iters 4 --threads 2
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def torch_child(preset, batch, iters, threads, device="cpu", channels=1):
    import torch

    sys.path.insert(0, HERE)
    from torch_goldens import PRESETS, build

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    g, c = build(preset, channels)
    g, c = g.to(dev), c.to(dev)
    z_dim, size = PRESETS[preset]["z_dim"], PRESETS[preset]["image"]
    data = (torch.rand(2048, channels, size, size) * 2 - 1).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_c = torch.optim.Adam(c.parameters(), lr=1e-4, betas=(0.0, 0.9))
    times = []
    for _ in range(iters + 1):
        sync()
        t0 = time.perf_counter()
        for _ in range(5):
            real = data[torch.randint(0, data.shape[0], (batch,), device=dev)]
            fake = g(torch.randn(batch, z_dim, 1, 1, device=dev)).detach()
            eps = torch.rand(batch, 1, 1, 1, device=dev)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad = torch.autograd.grad(c(x_hat).sum(), x_hat, create_graph=True)[0]
            norm = torch.sqrt((grad * grad).flatten(1).sum(1) + 1e-16)
            loss = c(fake).mean() - c(real).mean() + 10.0 * ((norm - 1) ** 2).mean()
            opt_c.zero_grad(set_to_none=True)
            loss.backward()
            opt_c.step()
        loss_g = -c(g(torch.randn(batch, z_dim, 1, 1, device=dev))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        sync()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times[1:]}))


def gpu_memory_used_mb():
    """Memory in use on GPU 0 (all processes), from nvidia-smi; None when unavailable."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10).stdout
        return float(out.strip().splitlines()[0])
    except Exception:
        return None


class GpuPeak:
    """Samples GPU 0's memory in use every 50 ms while one engine runs alone on it; `peak`
    is the highest reading minus the reading before it started (context included)."""

    def __init__(self):
        import threading
        self.base = gpu_memory_used_mb()
        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll)

    def poll(self):
        while not self.stop.wait(0.05):
            used = gpu_memory_used_mb()
            if used is not None and self.base is not None:
                self.peak = max(self.peak, used - self.base)

    def __enter__(self):
        if self.base is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


LAST_GPU_PEAK = {"mb": None}


def run_with_rss(cmd, env, device="cpu"):
    """Runs `cmd`; returns (stdout, peak resident memory of that process in MB). On a GPU the
    peak GPU memory of the run is left in LAST_GPU_PEAK."""
    if device.startswith("cuda"):
        with GpuPeak() as gpu:
            result = run_with_rss(cmd, env)
        LAST_GPU_PEAK["mb"] = gpu.peak if gpu.base is not None else None
        return result
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # Read the pipes on threads so the child never blocks on a full pipe, then reap it with
    # wait4, which reports this child's own peak RSS.
    import threading
    chunks = {"out": "", "err": ""}

    def drain(name, pipe):
        chunks[name] = pipe.read()

    threads = [threading.Thread(target=drain, args=(k, p)) for k, p in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}):\n{chunks['err']}")
    return chunks["out"], usage.ru_maxrss / 1024


def torch_round(a):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    out, rss = run_with_rss(
        [sys.executable, __file__, "--child", "--preset", a.preset, "--batch", str(a.batch),
         "--iters", str(a.iters), "--threads", str(a.threads), "--device", a.device], env, a.device)
    return json.loads(out)["times"], rss


def ours_round(a, trainer):
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
        _, rss = run_with_rss(
            [trainer, "train", "--preset", a.preset, "--batch-size", str(a.batch),
             "--steps", str(a.iters + 1), "--sample-every", "1000000",
             "--checkpoint-every", "1000000", "--device", a.device, "--out", run], env, a.device)
        with open(os.path.join(run, "metrics.csv")) as f:
            secs = [float(line.split(",")[6]) for line in f.read().splitlines()[1:]]
    return secs[1:], rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "dcgan64"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=4, help="timed iterations per round")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating rounds of each engine (drift on a shared machine hits both)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both engines on it)")
    ap.add_argument("--trainer", action="append",
                    help="trainer binary (default target/release/trainer); give it again to time "
                         "another build in the same rounds (the first is the one the ratios name)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return torch_child(a.preset, a.batch, a.iters, a.threads, a.device)
    a.trainer = a.trainer or [os.path.join(ROOT, "target", "release", "trainer")]
    for t in a.trainer:
        if not os.path.exists(t):
            sys.exit(f"no trainer at {t}: build it with `cargo build --release -p wgan-trainer`")

    engines = [("PyTorch eager", torch_round)]
    for k, t in enumerate(a.trainer):
        name = "this project" if len(a.trainer) == 1 else f"this project ({t})"
        engines.append((name, lambda a, t=t: ours_round(a, t)))
    times = {name: [] for name, _ in engines}
    peak = {name: 0.0 for name, _ in engines}
    gpu_peak = {name: None for name, _ in engines}
    for _ in range(a.rounds):
        for name, fn in engines:
            LAST_GPU_PEAK["mb"] = None
            t, rss = fn(a)
            times[name] += t
            peak[name] = max(peak[name], rss)
            if LAST_GPU_PEAK["mb"] is not None:
                gpu_peak[name] = max(gpu_peak[name] or 0.0, LAST_GPU_PEAK["mb"])

    base_t = statistics.median(times["PyTorch eager"])
    base_m = peak["PyTorch eager"]
    print(f"\n{a.preset}, batch {a.batch}, {a.device}, {a.threads} threads: median of {a.rounds}×{a.iters} "
          f"iterations (5 critic + 1 generator step), rounds alternating\n")
    gpu = all(v is not None for v in gpu_peak.values())
    head = "| engine | s / iteration (median) | ratio | real images / s | peak RSS (MB) | ratio |"
    rule = "|---|---|---|---|---|---|"
    if gpu:
        head += " peak GPU memory (MB) | ratio |"
        rule += "---|---|"
    print(head)
    print(rule)
    for name, _ in engines:
        t, m = statistics.median(times[name]), peak[name]
        row = f"| {name} | {t:.3f} | {t / base_t:.2f}× | {5 * a.batch / t:.0f} | {m:.0f} | {m / base_m:.2f}× |"
        if gpu:
            g, g0 = gpu_peak[name], gpu_peak["PyTorch eager"]
            row += f" {g:.0f} | {g / g0 if g0 else float('nan'):.2f}× |"
        print(row)
    print("\nreal images / s: 5 critic steps × batch per iteration. GPU memory: nvidia-smi's reading of"
          " GPU 0 while the engine ran alone, minus the reading before (CUDA context included)."
          if gpu else "\nreal images / s: 5 critic steps × batch per iteration.")


if __name__ == "__main__":
    main()
