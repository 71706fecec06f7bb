#!/usr/bin/env python
"""Plot mIoU against the number of clicks from `napari-vidseg eval-interactive
--json-out` files: one line per method per file.

    python scripts/plot_noc.py runs/grabcut.json [more.json ...] [-o docs/img/miou_per_click.png]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from figures import plt, save_figure

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "miou_per_click.png"
NAMES = {"ours": "ours (VidSegNet + CRF)", "grabcut": "GrabCut (OpenCV)"}


def curves(data: dict) -> dict[str, dict]:
    """method -> its summary (a single-method file has no "methods" dict in old runs)."""
    return data.get("methods") or {data["method"]: data}


def label(method: str, summary: dict, source: str | None) -> str:
    s = NAMES.get(method, method)
    if method == "ours" and summary.get("crf") is False:
        s = "ours (no CRF)"
    s += f"  NoC@90={summary['noc90']:.2f}"
    return f"{s} [{source}]" if source else s


def plot(files: list[Path], out: Path, title: str | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    refine = False
    for f in files:
        data = json.loads(Path(f).read_text())
        refine |= data.get("mode") == "refine"
        for method, summ in curves(data).items():
            if data.get("crf") is False:
                summ = {**summ, "crf": False}
            y = summ["miou_at_clicks"]
            ax.plot(range(len(y)), y, marker="o", ms=3,
                    label=label(method, summ, Path(f).stem if len(files) > 1 else None))
    for thr in (0.85, 0.90):
        ax.axhline(thr, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("number of clicks" + (" (0 = start mask)" if refine else ""))
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title or ("refinement from an imperfect mask" if refine else "mIoU per click"))
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, out)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", nargs="+", type=Path, help="--json-out files of eval-interactive")
    p.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    plot(args.json, args.out, args.title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
