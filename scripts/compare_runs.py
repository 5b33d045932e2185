#!/usr/bin/env python3
"""Compares training runs measured by `trainer eval --all` (their eval.csv files): a markdown
table at the steps asked for, and a plot of FD (or SWD) against the generator step.

    python3 scripts/compare_runs.py --run ours-s0=runs/ours-mnist-s0 --run torch-s0=runs/torch-mnist-s0 \\
        --steps 1000 2000 3000 --metric fd --plot docs/mnist-fd.png

`--metric` is a column of eval.csv (fd, swd, mmd2, kl_uniform, ...); the table also shows the
reference column (`<metric>_real`, what real training images score) of the first run. With
`--seconds-per-iter LABEL=S ...` (from scripts/bench_training.py on a quiet machine) it adds the
wall-clock each run needs to reach each step on this machine. The plot needs matplotlib.
"""
import argparse
import csv
import os
import sys


def read(path):
    """eval.csv of a run directory, or a CSV file written by `trainer eval --all`."""
    if os.path.isdir(path):
        path = os.path.join(path, "eval.csv")
    with open(path) as f:
        return {int(r["step"]): r for r in csv.DictReader(f)}


def value(row, col):
    v = row.get(col, "")
    return float(v) if v not in ("", None) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR or LABEL=EVAL_CSV (repeatable)")
    ap.add_argument("--steps", type=int, nargs="+", help="steps of the table (default: all)")
    ap.add_argument("--metric", default="fd")
    ap.add_argument("--also", nargs="*", default=[], help="more eval.csv columns for the table")
    ap.add_argument("--plot", help="write a PNG of --metric against the step")
    ap.add_argument("--title", default="")
    ap.add_argument("--seconds-per-iter", nargs="*", default=[], help="LABEL=S per iteration")
    args = ap.parse_args()

    runs = []
    for spec in args.run:
        label, _, path = spec.partition("=")
        if not path:
            sys.exit(f"--run {spec}: expected LABEL=RUN_DIR")
        runs.append((label, read(path)))
    spi = dict((k, float(v)) for k, _, v in (s.partition("=") for s in args.seconds_per_iter))
    steps = args.steps or sorted(set().union(*[r.keys() for _, r in runs]))
    cols = [args.metric] + args.also
    head = ["step"] + [f"{label} {c}" for c in cols for label, _ in runs] + [f"real {args.metric}"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in steps:
        cells = [str(s)]
        for c in cols:
            for label, rows in runs:
                v = value(rows[s], c) if s in rows else None
                cell = "–" if v is None else (f"{v:.3f}" if abs(v) >= 0.01 else f"{v:.5f}")
                if v is not None and label in spi and c == args.metric:
                    cell += f" ({s * spi[label] / 60:.0f} min)"
                cells.append(cell)
        real = next((value(r[s], args.metric + "_real") for _, r in runs if s in r), None)
        cells.append("–" if real is None else f"{real:.3f}")
        print("| " + " | ".join(cells) + " |")

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        for label, rows in runs:
            pts = sorted((s, value(r, args.metric)) for s, r in rows.items()
                         if value(r, args.metric) is not None)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=label)
        reals = sorted((s, value(r, args.metric + "_real")) for s, r in runs[0][1].items()
                       if value(r, args.metric + "_real") is not None)
        if reals:
            ax.axhline(reals[-1][1], color="k", ls="--", lw=1, label="real training images")
        ax.set_xlabel("generator step")
        ax.set_ylabel(args.metric)
        ax.set_yscale("log")
        ax.set_title(args.title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        tmp = args.plot + ".tmp.png"
        fig.savefig(tmp)
        os.replace(tmp, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
