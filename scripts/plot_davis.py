"""Per-sequence J bar chart from `napari-vidseg eval-video ... --json-out FILE` results.

    python scripts/plot_davis.py docs/results/davis_mask.json docs/results/davis_clicks8.json \
        --out docs/img/davis_j_per_sequence.png [--labels "true mask,8 clicks"]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from figures import plt, save_figure


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="eval-video --json-out files")
    ap.add_argument("--out", type=Path, default=Path("docs/img/davis_j_per_sequence.png"))
    ap.add_argument("--labels", default=None, help="comma list, one per results file (default: its init)")
    args = ap.parse_args(argv)
    names = args.labels.split(",") if args.labels else [None] * len(args.results)
    if len(names) != len(args.results):
        ap.error(f"--labels names {len(names)} runs, {len(args.results)} results files given")
    runs = [json.loads(p.read_text()) for p in args.results]
    seqs = list(runs[0]["per_sequence"])
    x = np.arange(len(seqs) + 1)
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for i, (r, name) in enumerate(zip(runs, names)):
        vals = [100 * r["per_sequence"][s]["j"] for s in seqs] + [100 * r["j_mean"]]
        label = f"{name or 'init ' + r['init']} (J mean {100 * r['j_mean']:.1f})"
        bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, vals, width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    # The paper's means (Benard & Gygli 2017, DAVIS-2016 val): the bar to beat.
    for y, ls, text in ((83.8, "--", "paper, true mask: 83.8"), (80.6, ":", "paper, 8 clicks: 80.6")):
        ax.axhline(y, color="grey", lw=0.9, ls=ls, label=text)
    ax.set_xticks(x, seqs + ["mean"], rotation=30, ha="right")
    ax.set_ylabel("J (region IoU, %)")
    ax.set_ylim(0, 105)
    ax.set_title("DAVIS-2016 val (10 dev sequences, 480p): one-shot propagation")
    # Below the axes: inside, it covers the bars of the first sequences.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize=8, frameon=False)
    save_figure(fig, args.out)


if __name__ == "__main__":
    main()
