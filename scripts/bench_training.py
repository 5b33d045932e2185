#!/usr/bin/env python3
"""Side-by-side training-iteration benchmark: PyTorch (CPU, eager) against this project's
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
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def torch_child(preset, batch, iters, threads, channels=1):
    import torch

    sys.path.insert(0, HERE)
    from torch_goldens import PRESETS, build

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    g, c = build(preset, channels)
    z_dim, size = PRESETS[preset]["z_dim"], PRESETS[preset]["image"]
    data = torch.rand(2048, channels, size, size) * 2 - 1
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_c = torch.optim.Adam(c.parameters(), lr=1e-4, betas=(0.0, 0.9))
    times = []
    for _ in range(iters + 1):
        t0 = time.perf_counter()
        for _ in range(5):
            real = data[torch.randint(0, data.shape[0], (batch,))]
            fake = g(torch.randn(batch, z_dim, 1, 1)).detach()
            eps = torch.rand(batch, 1, 1, 1)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad = torch.autograd.grad(c(x_hat).sum(), x_hat, create_graph=True)[0]
            norm = torch.sqrt((grad * grad).flatten(1).sum(1) + 1e-16)
            loss = c(fake).mean() - c(real).mean() + 10.0 * ((norm - 1) ** 2).mean()
            opt_c.zero_grad(set_to_none=True)
            loss.backward()
            opt_c.step()
        loss_g = -c(g(torch.randn(batch, z_dim, 1, 1))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times[1:]}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "dcgan64"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trainer", default=os.path.join(ROOT, "target", "release", "trainer"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return torch_child(a.preset, a.batch, a.iters, a.threads)

    rows = []
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--preset", a.preset, "--batch", str(a.batch),
         "--iters", str(a.iters), "--threads", str(a.threads)],
        check=True, capture_output=True, text=True, env=env).stdout
    torch_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows.append(("PyTorch eager", statistics.median(json.loads(out)["times"]), torch_rss))

    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
        subprocess.run(
            [a.trainer, "train", "--preset", a.preset, "--batch-size", str(a.batch),
             "--steps", str(a.iters + 1), "--sample-every", "1000000",
             "--checkpoint-every", "1000000", "--out", run],
            check=True, capture_output=True, text=True, env=env)
        ours_rss = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 0)
        with open(os.path.join(run, "metrics.csv")) as f:
            secs = [float(line.split(",")[6]) for line in f.read().splitlines()[1:]]
        # ru_maxrss of children is the maximum over all children so far: report it only if
        # it grew past PyTorch's peak, else say "≤".
        rows.append(("this project (candle)", statistics.median(secs[1:]),
                     ours_rss if ours_rss > torch_rss else None))

    base_t, base_m = rows[0][1], rows[0][2]
    print(f"\n{a.preset}, batch {a.batch}, {a.threads} threads, median of {a.iters} iterations "
          f"(5 critic + 1 generator step)\n")
    print(f"| engine | s / iteration | ratio | peak RSS (MB) |")
    print(f"|---|---|---|---|")
    for name, t, m in rows:
        mem = f"{m:.0f}" if m is not None else f"≤ {base_m:.0f}"
        print(f"| {name} | {t:.3f} | {t / base_t:.2f}× | {mem} |")


if __name__ == "__main__":
    main()
