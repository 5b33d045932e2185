#!/usr/bin/env python3
"""PyTorch reference for the WGAN-GP trainer: builds modules with exactly the
Rust project's weight names and writes a golden file for one training step.

Requires: pip install torch safetensors numpy
Run (from the workspace root):
    python3 -m venv .venv-torch
    .venv-torch/bin/pip install torch safetensors numpy
    .venv-torch/bin/python scripts/torch_goldens.py

Writes tests/goldens/tiny_step.safetensors (tiny preset, 1 channel, batch 6,
float64).  Other scripts may `from torch_goldens import build` to get the
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
PRESETS = {
    "tiny": dict(
        z_dim=8, image=16,
        gen=[(8, 32, 4, 1, 0, False, "bn", "relu"),
             (32, 16, 4, 2, 1, False, "bn", "relu"),
             (16, None, 4, 2, 1, True, None, "tanh")],
        critic=[(None, 16, 4, 2, 1, True, None, "lrelu"),
                (16, 32, 4, 2, 1, False, "in", "lrelu"),
                (32, 1, 4, 1, 0, True, None, None)],
    ),
    "small": dict(
        z_dim=100, image=32,
        gen=[(100, 256, 4, 1, 0, False, "bn", "relu"),
             (256, 128, 4, 2, 1, False, "bn", "relu"),
             (128, 64, 4, 2, 1, False, "bn", "relu"),
             (64, None, 4, 2, 1, True, None, "tanh")],
        critic=[(None, 64, 4, 2, 1, True, None, "lrelu"),
                (64, 128, 4, 2, 1, False, "in", "lrelu"),
                (128, 256, 4, 2, 1, False, "in", "lrelu"),
                (256, 1, 4, 1, 0, True, None, None)],
    ),
    "dcgan64": dict(
        z_dim=100, image=64,
        gen=[(100, 1024, 4, 1, 0, False, "bn", "relu"),
             (1024, 512, 4, 2, 1, False, "bn", "relu"),
             (512, 256, 4, 2, 1, False, "bn", "relu"),
             (256, 128, 4, 2, 1, False, "bn", "relu"),
             (128, None, 4, 2, 1, True, None, "tanh")],
        critic=[(None, 64, 4, 2, 1, True, None, "lrelu"),
                (64, 128, 4, 2, 1, False, "in", "lrelu"),
                (128, 256, 4, 2, 1, False, "in", "lrelu"),
                (256, 512, 4, 2, 1, False, "in", "lrelu"),
                (512, 1, 4, 2, 0, True, None, None)],
    ),
}


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
    """(generator, critic) for a preset, float32, PyTorch default init."""
    p = PRESETS[preset_name]
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


LAMBDA_GP = 10.0
GP_NORM_EPS = 1e-16
ADAM = dict(lr=1e-4, betas=(0.0, 0.9), eps=1e-8, weight_decay=0)


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _grads(module):
    return {k: p.grad.detach().clone() for k, p in module.named_parameters()}


def golden(preset="tiny", channels=1, batch=6, seed=1234):
    """One critic step + one generator step in float64; returns a flat dict."""
    torch.manual_seed(seed)
    G, C = build(preset, channels)
    init_golden(G, C)
    G, C = G.double().train(), C.double().train()
    z_dim, size = PRESETS[preset]["z_dim"], PRESETS[preset]["image"]
    f64 = dict(dtype=torch.float64)
    real = torch.rand(batch, channels, size, size, **f64) * 2 - 1
    z_critic = torch.randn(batch, z_dim, 1, 1, **f64)
    eps = torch.rand(batch, 1, 1, 1, **f64)
    z_gen = torch.randn(batch, z_dim, 1, 1, **f64)

    out = {f"init.G.{k}": v for k, v in _state(G).items()}
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
    out.update({f"out.gen_after_adam.{k}": v for k, v in after.items()
                if k in params})
    out.update({f"out.gen_running.{k}": v for k, v in after.items()
                if k not in params})

    # safetensors wants contiguous, detached tensors; scalars become shape [1].
    return {k: v.detach().clone().contiguous().reshape(v.shape or (1,))
            for k, v in out.items()}


def main():
    from safetensors.torch import save_file

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "tests", "goldens", "tiny_step.safetensors")
    path = os.path.normpath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tensors = golden()
    meta = {"preset": "tiny", "channels": "1", "batch": "6",
            "lambda_gp": "10", "gp_norm_eps": "1e-16",
            "torch_version": torch.__version__}
    save_file(tensors, path, metadata=meta)

    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")
    for k in ("critic_loss", "penalty", "wasserstein", "grad_norm_mean",
              "gen_loss"):
        print(f"  {k:15s} {tensors['out.' + k].item():+.12e}")
    print(f"  c_real          {tensors['out.c_real'].numpy()}")
    print(f"  c_fake          {tensors['out.c_fake'].numpy()}")
    print(f"  grad_norm       {tensors['out.grad_norm'].numpy()}")


if __name__ == "__main__":
    main()
