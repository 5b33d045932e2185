#!/usr/bin/env python3
"""PyTorch reference for the WGAN-GP trainer: builds modules with exactly the
Rust project's weight names and writes a golden file for one training step.

Requires: pip install torch safetensors numpy
Run (from the workspace root):
    python3 -m venv .venv-torch
    .venv-torch/bin/pip install torch safetensors numpy
    .venv-torch/bin/python scripts/torch_goldens.py

Writes tests/goldens/tiny_step.safetensors (tiny preset, 1 channel, batch 6,
float64) and tests/goldens/custom128_step.safetensors (128x128, width 4,
z 16, 1 channel, batch 2, float32, weights initialised by `init_formula`).  Other scripts may `from torch_goldens import build` to get the
(generator, critic) pair of any preset.

Naming rule (nn.Sequential indices): a layer with a norm is
Sequential(conv, norm, act) at index k (`{prefix}.k.0.*`, `{prefix}.k.1.*`);
a layer without a norm puts the conv at index k and its activation (if any) at
k+1.  The generator's prefix is `net`, the critic's `disc`.
"""
import os

import torch
from torch import nn

# Layer spec: (c_in, c_out, kernel, stride, padding, bias, norm, act).
# c_in/c_out of None stand for the image channel count; norm is "bn", "in" or
# None; act is "relu", "lrelu", "tanh" or None.


def architecture(image, z_dim, g_width, c_width, critic_last_stride=2):
    """The layer lists of the reference DCGAN (features_g = g_width,
    features_d = c_width) extended to any power-of-two image side: one
    up-sampling block per doubling from 4x4 in the generator, one
    down-sampling block per halving in the critic."""
    assert image >= 16 and image & (image - 1) == 0, image
    n = (image // 4).bit_length() - 1            # doublings from 4x4
    gw = [g_width * 2 ** (n - i) for i in range(n)]   # e.g. 1024 .. 128
    cw = [c_width * 2 ** i for i in range(n)]         # e.g. 64 .. 512
    gen = [(z_dim, gw[0], 4, 1, 0, False, "bn", "relu")]
    gen += [(a, b, 4, 2, 1, False, "bn", "relu") for a, b in zip(gw, gw[1:])]
    gen += [(gw[-1], None, 4, 2, 1, True, None, "tanh")]
    critic = [(None, cw[0], 4, 2, 1, True, None, "lrelu")]
    critic += [(a, b, 4, 2, 1, False, "in", "lrelu") for a, b in zip(cw, cw[1:])]
    critic += [(cw[-1], 1, 4, critic_last_stride, 0, True, None, None)]
    return dict(z_dim=z_dim, image=image, gen=gen, critic=critic)


# The named presets (image, z_dim, g_width, c_width); the critic's last 4x4 -> 1
# convolution keeps each preset's stride as first written (any stride gives the
# same single output there).
PRESET_NUMBERS = {  # image, z_dim, g_width, c_width, critic_last_stride
    "tiny": (16, 8, 8, 16, 1),
    "small": (32, 100, 32, 64, 1),
    "dcgan64": (64, 100, 64, 64, 2),
}
PRESETS = {name: architecture(*numbers) for name, numbers in PRESET_NUMBERS.items()}


def preset_or_custom(name, image=None, z_dim=None, g_width=None, c_width=None):
    """(name, numbers, layer lists) of preset `name` with any of its numbers replaced, as
    the Rust trainer's `--image-size/--z-dim/--g-width/--c-width` do: the name is the
    preset whose numbers these are, or "custom"."""
    base = PRESET_NUMBERS[name]
    numbers = tuple(v if v is not None else b for v, b in zip((image, z_dim, g_width, c_width), base))
    for preset, known in PRESET_NUMBERS.items():
        if known[:4] == numbers:
            return preset, numbers, PRESETS[preset]
    return "custom", numbers, architecture(*numbers)


def _act(name):
    return {"relu": lambda: nn.ReLU(),
            "lrelu": lambda: nn.LeakyReLU(0.2),
            "tanh": lambda: nn.Tanh()}[name]()


def _stack(specs, channels, transpose):
    """nn.Sequential following the project's naming rule."""
    conv_cls = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers = []
    for c_in, c_out, k, s, p, bias, norm, act in specs:
        conv = conv_cls(c_in or channels, c_out or channels, k, s, p, bias=bias)
        if norm is not None:
            n = (nn.BatchNorm2d(conv.out_channels) if norm == "bn"
                 else nn.InstanceNorm2d(conv.out_channels, affine=True))
            layers.append(nn.Sequential(conv, n, _act(act)))
        else:
            layers.append(conv)
            if act is not None:
                layers.append(_act(act))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    def __init__(self, specs, channels):
        super().__init__()
        self.net = _stack(specs, channels, transpose=True)

    def forward(self, z):  # z: [N, z_dim, 1, 1] -> [N, C, H, W]
        return self.net(z)


class Critic(nn.Module):
    def __init__(self, specs, channels):
        super().__init__()
        self.disc = _stack(specs, channels, transpose=False)

    def forward(self, x):  # x: [N, C, H, W] -> [N]
        return self.disc(x).reshape(-1)


def build(preset_name, channels):
    """(generator, critic) for a preset (a name, or the dict of `architecture`),
    float32, PyTorch default init."""
    p = PRESETS[preset_name] if isinstance(preset_name, str) else preset_name
    return Generator(p["gen"], channels), Critic(p["critic"], channels)


@torch.no_grad()
def init_golden(*modules):
    """Seeded-RNG init used for the golden (call torch.manual_seed first):
    conv weight/bias N(0, .02); BN weight N(1, .02), bias N(0, .02);
    InstanceNorm weight N(1, .1), bias N(0, .1); BN buffers stay 0 / 1."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0.0, 0.02)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.02)
                m.bias.normal_(0.0, 0.02)
            elif isinstance(m, nn.InstanceNorm2d):
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_(0.0, 0.1)


@torch.no_grad()
def init_formula(*modules):
    """Initialisation by a formula the Rust test computes too, so that a golden
    file need not carry the initial weights: parameter number t (in the sorted
    order of the parameter names of its module), element j (row-major in the
    PyTorch layout) gets u = ((7919 j + 104729 t) mod 2003) / 1001 - 1, in
    float64, rounded to float32; convolutions 0.02 u, norm weights 1 + 0.1 u,
    norm biases 0.1 u. Buffers stay 0 / 1."""
    import numpy as np
    for module in modules:
        params = dict(module.named_parameters())
        for t, name in enumerate(sorted(params)):
            p = params[name]
            j = np.arange(p.numel(), dtype=np.int64)
            u = ((7919 * j + 104729 * t) % 2003) / 1001.0 - 1.0
            owner = module.get_submodule(name.rsplit(".", 1)[0])
            if isinstance(owner, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                v = 1.0 + 0.1 * u if name.endswith("weight") else 0.1 * u
            else:
                v = 0.02 * u
            p.copy_(torch.from_numpy(v.astype(np.float32)).reshape(p.shape))


LAMBDA_GP = 10.0
GP_NORM_EPS = 1e-16
ADAM = dict(lr=1e-4, betas=(0.0, 0.9), eps=1e-8, weight_decay=0)


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _grads(module):
    return {k: p.grad.detach().clone() for k, p in module.named_parameters()}


def golden(preset="tiny", channels=1, batch=6, seed=1234, compact=False):
    """One critic step + one generator step in float64; returns a flat dict.

    `compact` (for large architectures): the initial weights come from
    `init_formula` and are not stored, the inputs are drawn in float32 (so that
    float32 storage keeps them exact), and the weights after Adam are left out
    (the tiny golden checks Adam)."""
    torch.manual_seed(seed)
    arch = PRESETS[preset] if isinstance(preset, str) else preset
    G, C = build(arch, channels)
    (init_formula if compact else init_golden)(G, C)
    G, C = G.double().train(), C.double().train()
    z_dim, size = arch["z_dim"], arch["image"]
    draw = dict(dtype=torch.float32 if compact else torch.float64)
    real = (torch.rand(batch, channels, size, size, **draw) * 2 - 1).double()
    z_critic = torch.randn(batch, z_dim, 1, 1, **draw).double()
    eps = torch.rand(batch, 1, 1, 1, **draw).double()
    z_gen = torch.randn(batch, z_dim, 1, 1, **draw).double()

    out = {}
    if not compact:
        out.update({f"init.G.{k}": v for k, v in _state(G).items()})
        out.update({f"init.C.{k}": v for k, v in _state(C).items()})
    out.update({"in.real": real, "in.z_critic": z_critic, "in.eps": eps,
                "in.z_gen": z_gen})
    opt_c = torch.optim.Adam(C.parameters(), **ADAM)
    opt_g = torch.optim.Adam(G.parameters(), **ADAM)

    # Critic step (G in train mode: batch stats, running stats updated).
    fake = G(z_critic).detach()
    c_real, c_fake = C(real), C(fake)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    g = torch.autograd.grad(C(x_hat).sum(), x_hat, create_graph=True)[0]
    norm = torch.sqrt((g * g).flatten(1).sum(1) + GP_NORM_EPS)
    penalty = LAMBDA_GP * ((norm - 1) ** 2).mean()
    critic_loss = c_fake.mean() - c_real.mean() + penalty
    wasserstein = c_real.mean() - c_fake.mean()
    opt_c.zero_grad()
    critic_loss.backward()
    out.update({"out.fake": fake, "out.c_real": c_real, "out.c_fake": c_fake,
                "out.grad_norm": norm, "out.critic_loss": critic_loss,
                "out.penalty": penalty, "out.wasserstein": wasserstein,
                "out.grad_norm_mean": norm.mean()})
    out.update({f"out.critic_grad.{k}": v for k, v in _grads(C).items()})
    opt_c.step()
    if not compact:
        out.update({f"out.critic_after_adam.{k}": v
                    for k, v in _state(C).items()})

    # Generator step against the updated critic; only G's grads are recorded.
    opt_c.zero_grad()
    opt_g.zero_grad()
    gen_loss = -C(G(z_gen)).mean()
    gen_loss.backward()
    out["out.gen_loss"] = gen_loss
    out.update({f"out.gen_grad.{k}": v for k, v in _grads(G).items()})
    opt_g.step()
    after = _state(G)
    params = dict(G.named_parameters())
    if not compact:
        out.update({f"out.gen_after_adam.{k}": v for k, v in after.items()
                    if k in params})
    out.update({f"out.gen_running.{k}": v for k, v in after.items()
                if k not in params})

    # safetensors wants contiguous, detached tensors; scalars become shape [1].
    return {k: v.detach().clone().contiguous().reshape(v.shape or (1,))
            for k, v in out.items()}


# The golden cases: file name, architecture, channels, batch, compact.
CASES = [
    ("tiny_step.safetensors", "tiny", 1, 6, False),
    # 128x128 with width 4 (z 16): the derivation of the layer lists for a size
    # no preset has, six blocks deep. Stored in float32 to stay under 2 MB.
    ("custom128_step.safetensors", architecture(128, 16, 4, 4), 1, 2, True),
]


def main():
    """Writes every golden, or those named on the command line
    (e.g. `custom128_step.safetensors`)."""
    import sys
    from safetensors.torch import save_file

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    wanted = set(sys.argv[1:])
    for name, arch, channels, batch, compact in CASES:
        if wanted and name not in wanted:
            continue
        path = os.path.normpath(os.path.join(root, "tests", "goldens", name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tensors = golden(arch, channels, batch, compact=compact)
        if compact:
            tensors = {k: v.float() if v.is_floating_point() else v
                       for k, v in tensors.items()}
        a = PRESETS[arch] if isinstance(arch, str) else arch
        meta = {"preset": arch if isinstance(arch, str) else "custom",
                "image_size": str(a["image"]), "z_dim": str(a["z_dim"]),
                "channels": str(channels), "batch": str(batch),
                "init": "formula" if compact else "stored",
                "lambda_gp": "10", "gp_norm_eps": "1e-16",
                "torch_version": torch.__version__}
        save_file(tensors, path, metadata=meta)

        print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")
        for k in ("critic_loss", "penalty", "wasserstein", "grad_norm_mean",
                  "gen_loss"):
            print(f"  {k:15s} {tensors['out.' + k].item():+.12e}")
        print(f"  grad_norm       {tensors['out.grad_norm'].numpy()}")


if __name__ == "__main__":
    main()
