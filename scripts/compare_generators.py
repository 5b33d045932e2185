#!/usr/bin/env python3
"""Compares the generator weights of two runs' latest checkpoints: ‖a − b‖ / ‖b‖ over every
tensor of generator.safetensors, the measure of `tests/distributed.rs`. For a data-parallel
run against its one-process twin (scripts/gpu/checks.sh runs 2 GPU ranks × 8 against one GPU
process × 16). Needs only numpy; exits 1 above --tolerance.

    python3 scripts/compare_generators.py RUN_A RUN_B [--tolerance 1e-3]
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64}


def latest_checkpoint(run):
    ckpts = os.path.join(run, "checkpoints")
    steps = sorted(d for d in os.listdir(ckpts) if d.startswith("step_"))
    if not steps:
        sys.exit(f"error: no checkpoint in {ckpts}")
    return os.path.join(ckpts, steps[-1])


def read_safetensors(path):
    """name -> array, from the safetensors layout: an 8-byte little-endian header length, the
    JSON header (dtype, shape, data offsets per tensor), then the tensors' bytes."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] not in DTYPES:
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[t["dtype"]]).astype(np.float64)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--tolerance", type=float, default=1e-3)
    args = p.parse_args()
    a, b = (
        read_safetensors(os.path.join(latest_checkpoint(r), "generator.safetensors"))
        for r in (args.run_a, args.run_b)
    )
    if a.keys() != b.keys():
        sys.exit(f"error: the generators have different tensors: {sorted(a.keys() ^ b.keys())}")
    names = sorted(a)
    va = np.concatenate([a[k] for k in names])
    vb = np.concatenate([b[k] for k in names])
    rel = float(np.linalg.norm(va - vb) / np.linalg.norm(vb))
    print(f"generator {args.run_a} against {args.run_b}: {rel:.2e} relative ({len(names)} tensors, {va.size} values)")
    if not rel <= args.tolerance:
        sys.exit(f"error: {rel:.2e} is above --tolerance {args.tolerance:g}")


if __name__ == "__main__":
    main()
