"""First-frame masks from N robot clicks on the DAVIS-2016 *training* sequences
(240p), for interactive-segmenter settings: which start `eval-video --init
clicks:N` gets, measured where nothing is chosen on the validation frames.

    python scripts/study_click_init.py ../shared/data/davis2016 --clicks 8 --json-out docs/results/x.json

Prints the mean IoU of each setting over the 30 first frames (the interactive
network never trained on DAVIS, so no cross-validation is needed).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

VARIANTS = {
    "crf (default)": dict(use_crf=True),
    "no crf": dict(use_crf=False),
    "crf, no zoom-in": dict(use_crf=True, zoom_in=False),
    "crf, input 320": dict(use_crf=True, input_size=320),  # the default until session 17
    "crf, input 448": dict(use_crf=True, input_size=448),
    "crf, mirror": dict(use_crf=True, mirror=True),
    "crf, mirror, input 448": dict(use_crf=True, mirror=True, input_size=448),
}


def main(argv=None) -> None:
    from napari_vidseg.eval.davis import open_sequence
    from napari_vidseg.eval.video import clicks_init
    from napari_vidseg.models.registry import build
    from napari_vidseg.segment.predictor import InteractivePredictor
    from napari_vidseg.training.train_parent import read_split

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("davis_root", type=Path)
    ap.add_argument("--clicks", type=int, default=8)
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--variants", default=None, help="variant names separated by ; (default: all)")
    ap.add_argument("--resolution", default="240p")
    ap.add_argument("--split", default="train.txt")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--weights", type=Path, default=None, help="interactive weights or checkpoint (default: shipped)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.variants.split(";") if args.variants else list(VARIANTS)
    net = None if args.weights is None else build("interactive", path=args.weights, check=False)
    seqs = read_split(args.davis_root, args.split)
    res: dict[str, dict[str, float]] = {}
    for name in names:
        predictor = InteractivePredictor(net, **VARIANTS[name])
        res[name] = {}
        for s in seqs:
            seq = open_sequence(args.davis_root, s, args.resolution)
            truth = seq.masks()[0]
            m = clicks_init(predictor, seq.source().frame(0), truth, args.clicks)
            res[name][s] = float((m & truth).sum() / max((m | truth).sum(), 1))
        print(f"{name:18s} mean IoU after {args.clicks} clicks {100 * np.mean(list(res[name].values())):5.2f}",
              flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
