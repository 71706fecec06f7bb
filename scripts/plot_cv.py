"""Per-sequence J differences of cross-validated runs against a base run.

    python scripts/plot_cv.py BASE/summary.json A/summary.json [B/summary.json ...] \
        --labels "base,A,B" --out docs/img/cv_differences.png

Inputs are `scripts/crossval.py eval` summaries (or eval-video --json-out
files): each run's J minus the base's on every sequence, sequences sorted by
the base's J, with the mean difference and its standard error in the legend.
A mean hides whether a change helps most sequences a little or a few a lot;
this shows which. The same figures are printed, one line per run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from figures import plt, save_figure
from paired_stats import paired_summary


def paired(base: dict, run: dict, seqs: list[str]) -> np.ndarray:
    """J differences in points, one per sequence."""
    return np.array([100 * (run["per_sequence"][s]["j"] - base["per_sequence"][s]["j"]) for s in seqs])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="the base run first, then the runs to compare with it")
    ap.add_argument("--labels", required=True, help="comma list, one per results file")
    ap.add_argument("--out", type=Path, default=Path("docs/img/cv_differences.png"))
    args = ap.parse_args(argv)
    labels = args.labels.split(",")
    if len(labels) != len(args.results) or len(labels) < 2:
        ap.error(f"need a base and at least one run, with one label each ({len(labels)} labels, "
                 f"{len(args.results)} files)")
    base, *runs = [json.loads(p.read_text()) for p in args.results]
    seqs = sorted(base["per_sequence"], key=lambda s: base["per_sequence"][s]["j"])
    for p, r in zip(args.results[1:], runs):
        missing = set(seqs) - set(r["per_sequence"])
        if missing:
            ap.error(f"{p} lacks {sorted(missing)}")
    x = np.arange(len(seqs))
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(11, 5.6))
    for i, (r, name) in enumerate(zip(runs, labels[1:])):
        d = paired(base, r, seqs)
        st = paired_summary(d)
        j = 100 * np.mean([r["per_sequence"][s]["j"] for s in seqs])
        print(f"{name:24s} J {j:5.2f}  difference {st.mean:+.2f} (se {st.se:.2f})  "
              f"better on {st.better}/{st.n}, worse on {st.worse}")
        ax.bar(x + (i - (len(runs) - 1) / 2) * width, d, width,
               label=f"{name}: mean {st.mean:+.2f} (se {st.se:.2f}), better on {st.better}/{st.n}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [f"{s} ({100 * base['per_sequence'][s]['j']:.0f})" for s in seqs], rotation=60, ha="right",
                  fontsize=8)
    ax.set_ylabel("J difference (points)")
    ax.set_title(f"Cross-validated J on the DAVIS-2016 training sequences, against {labels[0]} "
                 f"(J {100 * np.mean([base['per_sequence'][s]['j'] for s in seqs]):.1f}; per sequence in brackets)",
                 fontsize=10)
    # Below the axes: inside, it covers the tallest bars.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.42), ncol=2, fontsize=8, frameon=False)
    save_figure(fig, args.out)


if __name__ == "__main__":
    main()
