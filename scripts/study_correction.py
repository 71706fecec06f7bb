"""Worst-frame corrections replayed offline, for click-segmenter settings.

`eval-correction --save-worst DIR` (or `scripts/crossval.py eval --bench
correction -- --save-worst DIR`) stores each sequence's worst propagated frame;
this script corrects those frames again with robot clicks under several
settings, without fine-tuning or propagating anything:

    python scripts/study_correction.py ../shared/data/davis2016 --worst docs/results/cv/s17/worst \\
        --weights v8=weights/interactive_v8.pt --weights v7=/tmp/interactive_v7.pt

Settings: each --weights NAME=PATH, with the propagated mask as every click's
mask channel ("propagated", eval-correction's protocol until session 17) and
with the previous click's mask ("chained"). Prints the mean IoU after each
click count and each setting's paired difference from the first one.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from paired_stats import paired_summary


def paired(a: dict, b: dict) -> str:
    s = paired_summary([100 * (a[k] - b[k]) for k in a])
    return f"{s.mean:+5.2f} (se {s.se:4.2f}, better on {s.better}/{s.n})"


def main(argv=None) -> None:
    from napari_vidseg.eval.correction import correct_frame, parse_clicks
    from napari_vidseg.eval.davis import open_sequence
    from napari_vidseg.interactions.robot import iou
    from napari_vidseg.models.registry import build
    from napari_vidseg.segment.predictor import InteractivePredictor

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("davis_root", type=Path)
    ap.add_argument("--worst", type=Path, required=True, help="the folder --save-worst wrote")
    ap.add_argument("--resolution", default="240p")
    ap.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                    help="interactive weights to compare (default: the shipped ones)")
    ap.add_argument("--clicks", default="1,2,4,10")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--input-size", type=int, default=None, help="the predictor's input size (default: its own)")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None, help="also draw mean IoU against clicks per setting (PNG)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ks = parse_clicks(args.clicks)
    cases = sorted(args.worst.glob("*.npz"))
    if not cases:
        raise SystemExit(f"no <seq>.npz in {args.worst}")
    nets = {"shipped": None} if not args.weights else {
        w.split("=", 1)[0]: build("interactive", path=Path(w.split("=", 1)[1]), check=False) for w in args.weights}
    res: dict[str, dict[int, dict[str, float]]] = {}
    for wname, net in nets.items():
        predictor = InteractivePredictor(net, input_size=args.input_size)
        for chain in (False, True):
            name = f"{wname}, {'chained' if chain else 'propagated'}"
            res[name] = {k: {} for k in ks}
            for case in cases:
                z = np.load(case)
                seq = open_sequence(args.davis_root, case.stem, args.resolution)
                frame = seq.source().frame(int(z["frame"]))
                masks = correct_frame(predictor, frame, z["propagated"], z["truth"], ks, chain=chain)
                for k in ks:
                    res[name][k][case.stem] = float(iou(masks[k], z["truth"]))
            print(f"{name:24s} " + "  ".join(f"{k}c {100 * np.mean(list(res[name][k].values())):5.2f}" for k in ks),
                  flush=True)
    before = {c.stem: float(iou(np.load(c)["propagated"], np.load(c)["truth"])) for c in cases}
    print(f"before: {100 * np.mean(list(before.values())):5.2f} over {len(cases)} frames")
    first = next(iter(res))
    for name in list(res)[1:]:
        for k in ks:
            print(f"{name:24s} {k:2d}c against {first}: {paired(res[name][k], res[first][k])}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"before": before, "clicks": ks, "results": res}, indent=1))
    if args.plot:
        plot(res, ks, float(np.mean(list(before.values()))), len(cases), args.plot)


def plot(res: dict, ks, before: float, n: int, out: Path) -> None:
    from figures import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, per_k in res.items():
        ax.plot([0] + list(ks), [100 * before] + [100 * np.mean(list(per_k[k].values())) for k in ks],
                marker="o", label=name)
    ax.set_xlabel("robot clicks on the worst frame")
    ax.set_ylabel("mean IoU of the worst frames (%)")
    ax.set_title(f"Correcting the worst propagated frame of {n} sequences")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out)


if __name__ == "__main__":
    main()
