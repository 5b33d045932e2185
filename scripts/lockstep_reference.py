#!/usr/bin/env python3
"""Lockstep check of `trainer train` against PyTorch over many iterations: PyTorch resumes one of
our checkpoints and replays our own random streams, and its weights are compared with ours at
every later checkpoint of the same run.

The PyTorch goldens (`tests/torch_goldens.rs`) check one critic step and one generator step. A
difference that only shows over many iterations (Adam's moments and step count after step 1,
BatchNorm running statistics, the order of real batches, latents and interpolation weights
across the 5 critic steps, the data stream across epochs) would pass them and still change what
a run learns. Here PyTorch (the modules of `torch_goldens.build`, `torch.optim.Adam`, autograd
for the penalty, the loop of `reference_wgan_gp.py`) starts from checkpoint FROM of our run —
weights, BatchNorm buffers, both optimisers' moments and step counts — and draws exactly what
our trainer drew after it:

- latents and interpolation weights from our xoshiro256++ stream, restored from `rng_state`
  (`wgan_models::latent`: per critic step b·z_dim normals for the latents, then b uniforms for
  ε; per generator step b·z_dim normals);
- real batches from our shuffled stream (`trainer/src/data/loader.rs`: position p of the stream
  is image perm_e[p mod N] of epoch e = p div N, perm_e = Rng(data_seed ^ e·0x9E3779B97F4A7C15)
  Fisher–Yates on 0..N), starting at `data_cursor`, over the images our trainer decoded
  (`cargo run -p wgan-trainer --example dump_dataset -- DATA PRESET CHANNELS data.npy`).

If the two trainers compute the same update, the only differences are float rounding (sums in
another order), which a GAN amplifies slowly; a different update shows at once. Prints, for each
later checkpoint, the relative difference of the generator's weights, the critic's weights, the
BatchNorm running statistics and the Adam moments,
and the losses against our metrics.csv. Differences are measured on the updates since the start
checkpoint, ‖Δours − ΔPyTorch‖ / ‖ΔPyTorch‖ over all tensors of a group, so that tensors that
barely move (biases whose gradient is zero up to rounding) do not dominate.

    target/release/trainer train --preset small --channels 3 --data DATA --batch-size 32 \\
        --steps 150 --checkpoint-every 10 --keep-checkpoints 1000 --sample-every 1000 --out RUN
    cargo run --release -p wgan-trainer --example dump_dataset -- DATA small 3 RUN/data.npy
    .venv-torch/bin/python scripts/lockstep_reference.py --run RUN --data-npy RUN/data.npy --from 100

Needs torch, safetensors and numpy.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_goldens import PRESETS, build  # noqa: E402

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(x):
    x = (x + GOLDEN) & MASK
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return x, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Rng:
    """`wgan_models::latent::Rng`: xoshiro256++ seeded by SplitMix64."""

    def __init__(self, seed=None, state=None):
        if state is None:
            s, out = seed & MASK, []
            for _ in range(4):
                s, v = splitmix64(s)
                out.append(v)
            state = out
        self.s = list(state)

    def next_u64(self):
        s = self.s
        result = (rotl((s[0] + s[3]) & MASK, 23) + s[0]) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def uniform_f32(self):
        return np.float32((self.next_u64() >> 40) * (1.0 / (1 << 24)))

    def normal_f32(self):
        u1 = ((self.next_u64() >> 11) + 1) * 2.0 ** -53
        u2 = (self.next_u64() >> 11) * 2.0 ** -53
        return np.float32(math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2))

    def normals(self, n):
        return np.array([self.normal_f32() for _ in range(n)], dtype=np.float32)

    def below(self, n):
        zone = MASK - (MASK % n)
        while True:
            x = self.next_u64()
            if x < zone:
                return x % n

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


class DataStream:
    """`trainer/src/data/loader.rs`: epochs of seeded permutations, concatenated."""

    def __init__(self, seed, n, cursor):
        self.seed, self.n, self.cursor = seed, n, cursor
        self.epoch, self.perm = None, None

    def indices(self, count):
        out = []
        for _ in range(count):
            e = self.cursor // self.n
            if e != self.epoch:
                self.perm = list(range(self.n))
                Rng(self.seed ^ ((e * GOLDEN) & MASK)).shuffle(self.perm)
                self.epoch = e
            out.append(self.perm[self.cursor % self.n])
            self.cursor += 1
        return out


def checkpoint_dir(run, step):
    return os.path.join(run, "checkpoints", f"step_{step:06d}")


FILES = ("generator.safetensors", "critic.safetensors", "optimizer.safetensors")
GROUPS = ("generator", "critic", "running stats", "adam moments")


def read_checkpoint(run, step):
    """{file: {name: tensor}} of checkpoint `step` of our run."""
    from safetensors.torch import load_file

    return {f: load_file(os.path.join(checkpoint_dir(run, step), f)) for f in FILES}


class Replica:
    """The PyTorch trainer in one precision, resumed from one of our checkpoints."""

    def __init__(self, cfg, ckpt, dtype):
        self.dtype = dtype
        self.g, self.c = build(cfg["preset"], cfg["channels"])
        for net, file in ((self.g, "generator.safetensors"), (self.c, "critic.safetensors")):
            missing, unexpected = net.load_state_dict(ckpt[file], strict=False)
            missing = [k for k in missing if not k.endswith("num_batches_tracked")]
            if missing or unexpected:
                sys.exit(f"{file}: missing {missing}, unexpected {unexpected}")
            net.to(dtype).train()
        adam = cfg["adam"]
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=adam["lr"], betas=(0.0, 0.9),
                                      eps=adam["eps"])
        self.opt_c = torch.optim.Adam(self.c.parameters(), lr=adam["lr"], betas=(0.0, 0.9),
                                      eps=adam["eps"])
        moments = ckpt["optimizer.safetensors"]
        for prefix, net, opt in (("generator", self.g, self.opt_g), ("critic", self.c, self.opt_c)):
            step = float(moments[f"{prefix}.step"].item())
            for name, p in net.named_parameters():
                opt.state[p] = {
                    "step": torch.tensor(step),
                    "exp_avg": moments[f"{prefix}.{name}.exp_avg"].to(dtype).clone(),
                    "exp_avg_sq": moments[f"{prefix}.{name}.exp_avg_sq"].to(dtype).clone(),
                }

    def critic_step(self, real, z, eps, lam):
        real, z, eps = real.to(self.dtype), z.to(self.dtype), eps.to(self.dtype)
        c = self.c
        fake = self.g(z).detach()
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        grad = torch.autograd.grad(c(x_hat).sum(), x_hat, create_graph=True)[0]
        norm = torch.sqrt((grad * grad).flatten(1).sum(1) + 1e-16)
        penalty = lam * ((norm - 1) ** 2).mean()
        wasserstein = c(real).mean() - c(fake).mean()
        loss = -wasserstein + penalty
        self.opt_c.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_c.step()
        return loss.item()

    def generator_step(self, z):
        loss = -self.c(self.g(z.to(self.dtype))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return loss.item()

    def snapshot(self):
        """The replica's state in our checkpoint's layout."""
        out = {f: {} for f in FILES}
        for file, net in (("generator.safetensors", self.g), ("critic.safetensors", self.c)):
            for name, t in net.state_dict().items():
                out[file][name] = t.detach()
        for prefix, net, opt in (("generator", self.g, self.opt_g), ("critic", self.c, self.opt_c)):
            for name, p in net.named_parameters():
                for key in ("exp_avg", "exp_avg_sq"):
                    out["optimizer.safetensors"][f"{prefix}.{name}.{key}"] = opt.state[p][key]
        return out


def group_names(replica):
    """(group, file, tensor name) of every tensor compared."""
    out = []
    for name, _ in replica.g.named_parameters():
        out.append(("generator", "generator.safetensors", name))
    for name, _ in replica.c.named_parameters():
        out.append(("critic", "critic.safetensors", name))
    for name, _ in replica.g.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            out.append(("running stats", "generator.safetensors", name))
    for prefix, net in (("generator", replica.g), ("critic", replica.c)):
        for name, _ in net.named_parameters():
            for key in ("exp_avg", "exp_avg_sq"):
                out.append(("adam moments", "optimizer.safetensors", f"{prefix}.{name}.{key}"))
    return out


def update_diff(a, b, start, names):
    """Per group, ‖(a − start) − (b − start)‖ / ‖b − start‖ over the group's tensors: how far
    update a since the start checkpoint is from update b. Tensors that barely move (biases
    whose gradient is zero up to rounding) cannot dominate it."""
    out = {}
    for group in GROUPS:
        sel = [(f, n) for g, f, n in names if g == group]
        flat = lambda snap: torch.cat([snap[f][n].detach().double().flatten() for f, n in sel])
        fa, fb, fs = flat(a), flat(b), flat(start)
        out[group] = float((fa - fb).norm() / max((fb - fs).norm(), 1e-30))
    return out


def read_metrics(run):
    rows = {}
    with open(os.path.join(run, "metrics.csv")) as f:
        header = f.readline().strip().split(",")
        for line in f:
            v = dict(zip(header, line.strip().split(",")))
            rows[int(v["step"])] = v
    return rows


def fmt(d):
    return " / ".join(f"{d[g]:.1e}" for g in GROUPS)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a run of `trainer train` with several checkpoints")
    ap.add_argument("--data-npy", required=True, help="the run's images as dump_dataset wrote them")
    ap.add_argument("--from", dest="start", type=int, required=True, help="checkpoint step to resume")
    ap.add_argument("--to", type=int, help="last step to compare (default: the run's latest)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    start_dir = checkpoint_dir(args.run, args.start)
    state = json.load(open(os.path.join(start_dir, "state.json")))
    cfg = state["config"]
    steps = sorted(int(n[5:]) for n in os.listdir(os.path.join(args.run, "checkpoints"))
                   if n.startswith("step_") and int(n[5:]) > args.start)
    if args.to is not None:
        steps = [s for s in steps if s <= args.to]
    if not steps:
        sys.exit(f"no checkpoint after step {args.start} in {args.run}")
    adam = cfg["adam"]
    if (adam["beta1"], adam["beta2"], adam["weight_decay"]) != (0.0, 0.9, 0.0):
        sys.exit("this check replays Adam betas (0, 0.9) without weight decay only")
    data = np.load(args.data_npy)
    b, n_critic, lam = cfg["batch_size"], cfg["n_critic"], cfg["lambda_gp"]
    z_dim = PRESETS[cfg["preset"]]["z_dim"]

    start = read_checkpoint(args.run, args.start)
    f32, f64 = Replica(cfg, start, torch.float32), Replica(cfg, start, torch.float64)
    names = group_names(f32)
    rng = Rng(state=state["rng_state"])
    stream = DataStream(state["data_seed"], len(data), state["data_cursor"])
    ours = read_metrics(args.run)

    print(f"{args.run}: preset {cfg['preset']}, {cfg['channels']} channel(s), batch {b}, "
          f"{len(data)} images; PyTorch resumes step {args.start} with our random streams, "
          "in float32 and in float64")
    print("Relative difference of the update since that step, "
          "generator / critic / BatchNorm running statistics / Adam moments:")
    print("step | critic loss ours, PyTorch f32, f64 | ours vs PyTorch f32 | "
          "ours vs f64 | PyTorch f32 vs f64")
    step = args.start
    for target in steps:
        while step < target:
            losses = np.zeros((2,))
            for _ in range(n_critic):
                real = torch.from_numpy(data[stream.indices(b)])
                z = torch.from_numpy(rng.normals(b * z_dim)).reshape(b, z_dim, 1, 1)
                eps = torch.from_numpy(np.array([rng.uniform_f32() for _ in range(b)]))
                eps = eps.reshape(b, 1, 1, 1)
                losses += [r.critic_step(real, z, eps, lam) for r in (f32, f64)]
            z = torch.from_numpy(rng.normals(b * z_dim)).reshape(b, z_dim, 1, 1)
            for r in (f32, f64):
                r.generator_step(z)
            step += 1
        mine = read_checkpoint(args.run, step)
        s32, s64 = f32.snapshot(), f64.snapshot()
        critic_loss = float(ours.get(step, {}).get("critic_loss", "nan"))
        print(f"{step} | {critic_loss:.5f}, {losses[0] / n_critic:.5f}, {losses[1] / n_critic:.5f}"
              f" | {fmt(update_diff(mine, s32, start, names))}"
              f" | {fmt(update_diff(mine, s64, start, names))}"
              f" | {fmt(update_diff(s32, s64, start, names))}", flush=True)


if __name__ == "__main__":
    main()
