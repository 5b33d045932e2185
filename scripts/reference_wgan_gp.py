#!/usr/bin/env python3
"""The PyTorch reference: WGAN-GP trained the way a typical PyTorch script does it, on the same
data, preset, batch size and steps as `trainer train`, saved in this project's checkpoint format
so that `trainer eval` measures both the same way.

What it does (Gulrajani et al. 2017, Algorithm 1, as in the seed-style reference scripts):
- modules from `torch_goldens.build` (this project's layer names, so the weights need no
  renaming), DCGAN initialisation as `trainer train` uses (conv weights N(0, 0.02), conv biases 0,
  BatchNorm γ N(1, 0.02) and β 0, InstanceNorm γ 1 and β 0); `--init pytorch` keeps PyTorch's
  default initialisation instead;
- data through a `DataLoader(shuffle=True, drop_last=True)`, cycled forever: epochs without
  replacement, as most scripts do (`trainer train` reads a shuffled stream that also never
  repeats an image within an epoch; its batches may straddle two epochs);
- per critic step a new real batch and new z, per-sample ε ~ U[0, 1], penalty
  λ·mean((‖∇C(x̂)‖₂ − 1)²) with λ 10, 5 critic steps per generator step, Adam lr 1e-4,
  β (0.0, 0.9), both networks in train mode throughout (BatchNorm running statistics updated by
  every generator forward, as in `trainer train`).

Data: MNIST IDX files (default: the 9,000 digits bundled in `trainer/data/mnist-10k/`, which is
what `trainer train` uses without `--data`) or a folder of images (RGBA composited onto white,
shorter side resized to the preset's size with bilinear filtering, centre crop), values in
[-1, 1]. Grey from RGB is luma 0.299 R + 0.587 G + 0.114 B, as in the trainer.

Output: RUN/checkpoints/step_NNNNNN/{generator,critic}.safetensors + state.json (the header and
configuration `trainer eval` reads; no optimiser state, so `trainer resume` refuses these runs),
RUN/checkpoints/latest, and RUN/metrics.csv in the trainer's columns (its sec_per_iter is wall
time on this machine, shared with whatever else ran).

    .venv-torch/bin/python scripts/reference_wgan_gp.py --preset small --batch-size 32 \\
        --steps 3000 --seed 0 --checkpoint-every 250 --out runs/torch-mnist-s0
    target/release/trainer eval --checkpoint runs/torch-mnist-s0 --all

Needs torch, safetensors and numpy, and Pillow for image folders
(`python3 -m venv .venv-torch && .venv-torch/bin/pip install torch safetensors numpy pillow`).
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from torch_goldens import PRESETS, build, preset_or_custom  # noqa: E402

EMBEDDED_MNIST = os.path.join(ROOT, "trainer", "data", "mnist-10k", "train-images-idx3-ubyte.gz")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
METRICS_HEADER = "step,critic_loss,wasserstein,penalty,grad_norm,generator_loss,sec_per_iter"


def read_idx_images(path):
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x803:
        sys.exit(f"{path} is not an MNIST images file (magic 0x{magic:08x})")
    return np.frombuffer(raw[16:16 + n * rows * cols], dtype=np.uint8).reshape(n, rows, cols)


def to_unit(pixels):
    """[0, 255] → [-1, 1]."""
    return pixels.astype(np.float32) / 127.5 - 1.0


def load_mnist(path, channels, size):
    from PIL import Image

    digits = read_idx_images(path)
    if digits.shape[1:] != (size, size):
        digits = np.stack([
            np.asarray(Image.fromarray(d).resize((size, size), Image.BILINEAR)) for d in digits])
    x = to_unit(digits)[:, None]
    return np.repeat(x, channels, axis=1)


def load_folder(path, channels, size):
    from PIL import Image

    files = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs
        if f.lower().endswith(IMAGE_EXTENSIONS))
    out = []
    for f in files:
        try:
            img = Image.open(f)
            img.load()
        except Exception:
            continue
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
        w, h = rgb.size
        if w <= h:
            nw, nh = size, max(size, round(h * size / w))
        else:
            nw, nh = max(size, round(w * size / h)), size
        if (nw, nh) != (w, h):
            rgb = rgb.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        rgb = np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.float32)
        if channels == 1:
            grey = rgb @ np.float32([0.299, 0.587, 0.114])
            out.append(grey[None])
        else:
            out.append(rgb.transpose(2, 0, 1))
    if not out:
        sys.exit(f"no images found under {path}")
    return to_unit(np.stack(out))


@torch.no_grad()
def dcgan_init(*modules):
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0.0, 0.02)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.02)
                m.bias.zero_()
            elif isinstance(m, nn.InstanceNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()


def save_checkpoint(run, step, g, c, config, description, elapsed):
    from safetensors.torch import save_file

    root = os.path.join(run, "checkpoints")
    name = f"step_{step:06d}"
    tmp = os.path.join(root, f".{name}.tmp-{os.getpid()}")
    os.makedirs(tmp, exist_ok=True)
    for net, file in ((g, "generator.safetensors"), (c, "critic.safetensors")):
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(state, os.path.join(tmp, file))
    state = {
        "format_version": 1,
        "preset": config["preset"],
        "channels": config["channels"],
        "image_size": config["image_size"],
        "z_dim": config["z_dim"],
        "g_width": config["g_width"],
        "c_width": config["c_width"],
        "step": step,
        "dataset": description,
        "config": config,
        "rng_state": [1, 2, 3, 4],
        "data_seed": config["seed"],
        "data_cursor": step * config["n_critic"] * config["batch_size"],
        "sample_seed": config["seed"],
        "elapsed_secs": elapsed,
        "trained_by": f"scripts/reference_wgan_gp.py (PyTorch {torch.__version__})",
    }
    with open(os.path.join(tmp, "state.json"), "w") as f:
        json.dump(state, f, indent=2)
    final = os.path.join(root, name)
    if os.path.exists(final):
        import shutil
        shutil.rmtree(final)
    os.rename(tmp, final)
    with open(os.path.join(root, "latest.tmp"), "w") as f:
        f.write(name)
    os.replace(os.path.join(root, "latest.tmp"), os.path.join(root, "latest"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--image-size", type=int, help="a power of two from 16 to 256 (default: the preset's)")
    ap.add_argument("--width", type=int, help="both widths (features_g and features_d)")
    ap.add_argument("--g-width", type=int)
    ap.add_argument("--c-width", type=int)
    ap.add_argument("--z-dim", type=int)
    ap.add_argument("--channels", type=int, default=1, choices=(1, 3))
    ap.add_argument("--data", help="MNIST IDX images file or image folder (default: the bundled MNIST digits)")
    ap.add_argument("--steps", type=int, default=2000, help="generator steps")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-critic", type=int, default=5)
    ap.add_argument("--lambda-gp", type=float, default=10.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", choices=("dcgan", "pytorch"), default="dcgan")
    ap.add_argument("--checkpoint-every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True, help="run directory (new or empty)")
    args = ap.parse_args()

    if os.path.exists(os.path.join(args.out, "checkpoints")):
        sys.exit(f"{args.out} already holds a run; choose another --out")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    name, numbers, p = preset_or_custom(
        args.preset, args.image_size, args.z_dim,
        args.g_width if args.g_width is not None else args.width,
        args.c_width if args.c_width is not None else args.width)
    size, z_dim = p["image"], p["z_dim"]

    if args.data is None or not os.path.isdir(args.data):
        path = args.data or EMBEDDED_MNIST
        data = load_mnist(path, args.channels, size)
        description = f"MNIST IDX {os.path.basename(path)} ({len(data)} images, 28×28 → {size}×{size})"
    else:
        data = load_folder(args.data, args.channels, size)
        description = f"image folder {os.path.abspath(args.data)} ({len(data)} images, {size}×{size})"
    print(f"{description}; preset {name} {numbers}, batch {args.batch_size}, {args.steps} steps, "
          f"seed {args.seed}, {args.threads} threads", file=sys.stderr)

    g, c = build(p, args.channels)
    if args.init == "dcgan":
        dcgan_init(g, c)
    g.train()
    c.train()
    opt_g = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(0.0, 0.9))
    opt_c = torch.optim.Adam(c.parameters(), lr=args.lr, betas=(0.0, 0.9))
    loader = torch.utils.data.DataLoader(torch.from_numpy(data), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True)

    def batches():
        while True:
            yield from loader

    real_batches = batches()
    config = {
        "preset": name, "channels": args.channels, "image_size": numbers[0], "z_dim": numbers[1],
        "g_width": numbers[2], "c_width": numbers[3],
        "data": os.path.abspath(args.data) if args.data else None, "format": "auto",
        "steps": args.steps, "batch_size": args.batch_size, "n_critic": args.n_critic,
        "lambda_gp": args.lambda_gp,
        "adam": {"lr": args.lr, "beta1": 0.0, "beta2": 0.9, "eps": 1e-8, "weight_decay": 0.0},
        "seed": args.seed, "sample_every": args.checkpoint_every,
        "checkpoint_every": args.checkpoint_every, "keep_checkpoints": 1000, "device": "cpu",
    }
    os.makedirs(os.path.join(args.out, "checkpoints"), exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(dict(config, init=args.init, trained_by="scripts/reference_wgan_gp.py"), f, indent=2)
    metrics = open(os.path.join(args.out, "metrics.csv"), "w")
    metrics.write(METRICS_HEADER + "\n")
    elapsed = 0.0
    for step in range(1, args.steps + 1):
        t0 = time.perf_counter()
        sums = np.zeros(4)
        for _ in range(args.n_critic):
            real = next(real_batches)
            fake = g(torch.randn(args.batch_size, z_dim, 1, 1)).detach()
            eps = torch.rand(args.batch_size, 1, 1, 1)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad = torch.autograd.grad(c(x_hat).sum(), x_hat, create_graph=True)[0]
            norm = torch.sqrt((grad * grad).flatten(1).sum(1) + 1e-16)
            penalty = args.lambda_gp * ((norm - 1) ** 2).mean()
            wasserstein = c(real).mean() - c(fake).mean()
            loss = -wasserstein + penalty
            opt_c.zero_grad(set_to_none=True)
            loss.backward()
            opt_c.step()
            sums += [loss.item(), wasserstein.item(), penalty.item(), norm.mean().item()]
        loss_g = -c(g(torch.randn(args.batch_size, z_dim, 1, 1))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        secs = time.perf_counter() - t0
        elapsed += secs
        m = sums / args.n_critic
        if not np.all(np.isfinite(m)) or not np.isfinite(loss_g.item()):
            sys.exit(f"training diverged at step {step}")
        metrics.write(f"{step},{m[0]},{m[1]},{m[2]},{m[3]},{loss_g.item()},{secs}\n")
        if step % args.checkpoint_every == 0 or step == args.steps:
            metrics.flush()
            save_checkpoint(args.out, step, g, c, config, description, elapsed)
            print(f"step {step} · W {m[1]:.3f} · GP {m[2]:.3f} · G {loss_g.item():.3f} · "
                  f"{elapsed:.0f} s", file=sys.stderr)
    metrics.close()


if __name__ == "__main__":
    main()
