#!/usr/bin/env python3
"""Independent references for `trainer eval`'s metrics, computed with scipy and numpy, written to
tests/goldens/eval_metrics.json (committed; the Rust tests read it, CI needs no Python):

- Fréchet distance: the formula of the FID reference code (pytorch-fid, TTUR): means, `np.cov`
  covariances and `scipy.linalg.sqrtm(Σ₁ Σ₂)`, on random feature sets (a well-conditioned one,
  one with correlated features, one as wide as the classifier's 64 features);
- Laplacian pyramid of the sliced Wasserstein distance: Progressive GAN's reference code
  (`scipy.ndimage.convolve(mode='mirror')` with the 5×5 Gaussian, subsampling, zero-insertion
  upsampling), on a grey 32×32 batch and an RGB 16×16 one.

    .venv-torch/bin/python scripts/eval_goldens.py      # needs numpy and scipy
"""
import json
import os

import numpy as np
import scipy
from scipy import linalg, ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "goldens", "eval_metrics.json")


def frechet(a, b):
    """pytorch-fid's calculate_frechet_distance on the statistics of two feature sets."""
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


GAUSS = np.float64([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6],
                    [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]) / 256.0


def pyr_down(x):
    return ndimage.convolve(x, GAUSS[None, None], mode="mirror")[:, :, ::2, ::2]


def pyr_up(x):
    s = x.shape
    res = np.zeros((s[0], s[1], s[2] * 2, s[3] * 2), x.dtype)
    res[:, :, ::2, ::2] = x
    return ndimage.convolve(res, GAUSS[None, None] * 4.0, mode="mirror")


def laplacian_pyramid(x, levels):
    pyramid = [x.copy()]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] -= pyr_up(pyramid[-1])
    return pyramid


def main():
    rng = np.random.default_rng(20261202)
    fd_cases = []
    for name, n1, n2, d in (("independent", 60, 45, 6), ("correlated", 80, 70, 12),
                            ("classifier-wide", 150, 120, 64)):
        mix = rng.normal(size=(d, d)) if name != "independent" else np.eye(d)
        a = rng.normal(size=(n1, d)) @ mix
        b = (rng.normal(size=(n2, d)) * 1.3 + 0.4) @ mix
        # Four decimals, so the file stays small and both sides read the same f32 values.
        a, b = np.round(a, 4).astype(np.float32), np.round(b, 4).astype(np.float32)
        fd_cases.append({"name": name, "dim": d,
                         "a": [float(f"{v:.4f}") for v in a.ravel()],
                         "b": [float(f"{v:.4f}") for v in b.ravel()],
                         "fd": frechet(a.astype(np.float64), b.astype(np.float64))})
    pyr_cases = []
    for name, n, c, s in (("grey32", 2, 1, 32), ("rgb16", 1, 3, 16)):
        x = np.round(rng.uniform(-1, 1, size=(n, c, s, s)), 3).astype(np.float32)
        levels = 1
        r = s // 2
        while r >= 16:
            levels += 1
            r //= 2
        pyr = laplacian_pyramid(x.astype(np.float64), levels)
        pyr_cases.append({"name": name, "channels": c, "size": s,
                          "images": [float(f"{v:.3f}") for v in x.ravel()],
                          "levels": [[float(f"{v:.7g}") for v in p.ravel()] for p in pyr]})
    with open(OUT, "w") as f:
        json.dump({"generated_by": f"scripts/eval_goldens.py (numpy {np.__version__}, "
                                   f"scipy {scipy.__version__})",
                   "frechet": fd_cases, "pyramid": pyr_cases}, f)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")
    for c in fd_cases:
        print(f"  FD {c['name']}: {c['fd']:.10f}")


if __name__ == "__main__":
    main()
