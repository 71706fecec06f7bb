"""Worst-frame correction chart from `napari-vidseg eval-correction ... --json-out FILE`:
mean IoU of each sequence's worst frame before and after k robot clicks, next to the
paper's figures (Benard & Gygli 2017, Table 3).

    python scripts/plot_correction.py docs/results/davis_correction.json --out docs/img/davis_correction.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from figures import plt, save_figure

PAPER = {"0": 50.4, "1": 63.8, "4": 75.7, "10": 82.2}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/img/davis_correction.png"))
    args = ap.parse_args(argv)
    r = json.loads(args.result.read_text())
    keys = ["0"] + [str(k) for k in r["clicks"]]
    ours = [100 * r["before"]] + [100 * r["after"][k] for k in keys[1:]]
    paper = [PAPER.get(k, np.nan) for k in keys]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for dx, vals, label in ((-0.2, ours, "napari-vidseg"), (0.2, paper, "paper (Table 3)")):
        bars = ax.bar(x + dx, vals, 0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, ["propagated" if k == "0" else f"{k} click{'s' * (k != '1')}" for k in keys])
    ax.set_ylabel("mean IoU of the worst frames (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Worst-frame correction, DAVIS-2016 val (10 dev sequences)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, args.out)


if __name__ == "__main__":
    main()
