#!/usr/bin/env python3
"""Data at real sizes, side by side in one run: a CelebA-like folder of JPEGs decoded by PIL +
torchvision's ImageFolder (2 DataLoader workers) and by `trainer prepare`, then trained on at
128x128 as the folder is (`trainer train --data DIR`) and from the prepared file.

Prints one table: decoding throughput (images/s) of both, the trainer's peak resident memory
(wait4's ru_maxrss: every page the process touched, mapped file pages included) for the
whole `train --data DIR` run, the time from starting `train --data FILE` on the prepared
file to its first iteration, and the sizes of the data set as 8-bit pixels and as f32.

The images are made here (no download): N JPEGs of 178x218 pixels, CelebA's aligned size,
each a smooth random colour field with a few ellipses and grain, about the size of CelebA's
files. The same resize and crop on both sides: the shorter side to 128, the centre 128x128.

Needs torch and torchvision (`.venv-torch`, see scripts/README.md) and a release build of
the trainer (`cargo build --release -p wgan-trainer`).

    .venv-torch/bin/python scripts/bench_data.py --images 40000 --dir /tmp/celeba-like
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
W, H = 178, 218


def make_one(args):
    """Writes JPEG number i: deterministic for (i)."""
    import numpy as np
    from PIL import Image, ImageDraw

    i, path = args
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = rng.uniform(40, 215, size=3)
    slope = rng.uniform(-0.4, 0.4, size=(3, 2))
    img = base[:, None, None] + slope[:, 0, None, None] * (x - W / 2) + slope[:, 1, None, None] * (y - H / 2)
    img = np.clip(img.transpose(1, 2, 0) + rng.normal(0, 6, size=(H, W, 3)), 0, 255).astype(np.uint8)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    for _ in range(4):
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        rx, ry = rng.uniform(10, 60), rng.uniform(10, 70)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    pil.save(path, quality=90)


def make_images(folder, n):
    """The N JPEGs under folder/faces/ (kept between runs: a stamp file records N)."""
    from multiprocessing import Pool

    stamp = os.path.join(folder, f".made-{n}")
    if os.path.exists(stamp):
        return
    faces = os.path.join(folder, "faces")
    os.makedirs(faces, exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(i, os.path.join(faces, f"{i + 1:06d}.jpg")) for i in range(n)]
    with Pool(os.cpu_count()) as pool:
        for k, _ in enumerate(pool.imap_unordered(make_one, jobs, chunksize=256)):
            if (k + 1) % 10000 == 0:
                print(f"  made {k + 1}/{n} JPEGs", file=sys.stderr)
    open(stamp, "w").close()
    print(f"made {n} JPEGs of {W}x{H} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def torchvision_rate(folder, size, workers):
    """Images/s of ImageFolder + Resize + CenterCrop + ToTensor through a DataLoader."""
    import torch
    from torchvision import datasets, transforms

    t = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    ds = datasets.ImageFolder(folder, transform=t)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=workers, shuffle=False)
    t0 = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    return n, n / (time.perf_counter() - t0)


def run(cmd, marker=None):
    """Runs cmd; returns (seconds, peak RSS in MB, seconds until a stderr line containing
    `marker` appeared, stdout). The peak RSS is wait4's ru_maxrss of the child, which also
    counts the pages of this (small) process at the fork."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = {"t": None, "err": [], "out": ""}

    def read_err():
        for line in proc.stderr:
            seen["err"].append(line)
            if marker and seen["t"] is None and marker in line:
                seen["t"] = time.perf_counter() - t0

    def read_out():
        seen["out"] = proc.stdout.read()

    threads = [threading.Thread(target=read_err), threading.Thread(target=read_out)]
    for th in threads:
        th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for th in threads:
        th.join()
    secs = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{''.join(seen['err'])}")
    return secs, usage.ru_maxrss / 1024, seen["t"], seen["out"]


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--torchvision-child":
        print(json.dumps(torchvision_rate(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40000)
    ap.add_argument("--dir", default="/tmp/celeba-like")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="training iterations of the memory run")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers and decoding threads")
    ap.add_argument("--trainer", default=os.path.join(ROOT, "target", "release", "trainer"))
    a = ap.parse_args()
    if not os.path.exists(a.trainer):
        sys.exit(f"{a.trainer} not found: cargo build --release -p wgan-trainer")
    make_images(a.dir, a.images)
    work = a.dir.rstrip("/") + "-bench"
    subprocess.run(["rm", "-rf", work], check=True)
    os.makedirs(work)
    prepared = os.path.join(work, "faces.u8")

    # In a child process: wait4's peak RSS of a later child counts the pages of the process
    # that started it, so this process stays small (no torch in it).
    _, _, _, out = run([sys.executable, __file__, "--torchvision-child", a.dir, str(a.size), str(a.workers)])
    n_tv, tv_rate = json.loads(out)
    print(f"torchvision ImageFolder, {a.workers} workers: {n_tv} images, {tv_rate:.0f} images/s", file=sys.stderr)

    secs, prep_rss, _, _ = run([a.trainer, "prepare", "--data", a.dir, "--image-size", str(a.size),
                                "--channels", "3", "--out", prepared, "--threads", str(a.workers)])
    prep_rate = a.images / secs
    print(f"trainer prepare: {secs:.1f} s, {prep_rate:.0f} images/s, peak RSS {prep_rss:.0f} MB", file=sys.stderr)

    train = ["train", "--image-size", str(a.size), "--width", str(a.width), "--channels", "3",
             "--batch-size", str(a.batch_size), "--threads", str(a.workers), "--sample-every", "1000000"]
    secs_dir, rss_dir, ready_dir, _ = run([a.trainer] + train + [
        "--data", a.dir, "--steps", str(a.steps), "--out", os.path.join(work, "run-folder")], marker="steps 0→")
    print(f"train --data DIR: {secs_dir:.1f} s (first iteration after {ready_dir:.1f} s), peak RSS {rss_dir:.0f} MB",
          file=sys.stderr)
    secs_file, rss_file, ready_file, _ = run([a.trainer] + train + [
        "--data", prepared, "--steps", "1", "--out", os.path.join(work, "run-file")], marker="steps 0→")
    print(f"train --data FILE: first iteration after {ready_file:.2f} s, peak RSS {rss_file:.0f} MB", file=sys.stderr)

    u8 = os.path.getsize(prepared)
    f32 = a.images * 3 * a.size * a.size * 4
    rows = [
        ("decoding throughput, PIL + torchvision ImageFolder, 2 DataLoader workers", f"{tv_rate:.0f} images/s"),
        (f"decoding throughput, `trainer prepare --threads {a.workers}`", f"{prep_rate:.0f} images/s ({prep_rate / tv_rate:.2f}×)"),
        (f"`train --data DIR` ({a.steps} iterations, decoding included), peak RSS", f"{rss_dir:.0f} MB"),
        ("`train --data FILE` (prepared), time to the first iteration", f"{ready_file:.2f} s"),
        ("`train --data FILE` (prepared, 1 iteration), peak RSS", f"{rss_file:.0f} MB"),
        ("`trainer prepare`, peak RSS", f"{prep_rss:.0f} MB"),
        ("the data set as 8-bit pixels (the prepared file)", f"{u8 / 2**30:.2f} GiB"),
        ("the data set as f32", f"{f32 / 2**30:.2f} GiB"),
    ]
    print(f"\n{a.images} JPEGs of {W}x{H} → {a.size}x{a.size}x3, width {a.width}, batch {a.batch_size}, "
          f"{os.cpu_count()} cores\n")
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print(json.dumps({"torchvision_images_per_s": tv_rate, "prepare_images_per_s": prep_rate,
                      "train_dir_peak_rss_mb": rss_dir, "train_file_first_iteration_s": ready_file,
                      "train_file_peak_rss_mb": rss_file, "prepare_peak_rss_mb": prep_rss,
                      "u8_bytes": u8, "f32_bytes": f32}), file=sys.stderr)


if __name__ == "__main__":
    main()
