"""Median time of one interactive click (network + clamping + CRF) on 854x480 DAVIS frames.

    python scripts/time_click.py [--frame PATH --mask PATH | --sequences a,b,...] [--clicks 6]
                                 [--no-crf] [--crf-max-side N] [--crf-iterations N]

--sequences times frame 0 of each named DAVIS-2016 480p sequence (robot clicks
on each), and reports the median over all clicks of all frames, the first
click of each frame (full-frame guess, new crop) included.
"""
import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from napari_vidseg.interactions.robot import next_click
from napari_vidseg.eval.interactive import crf_params_of
from napari_vidseg.segment.predictor import InteractivePredictor
from napari_vidseg.types import Interactions

DAVIS = "../shared/data/davis2016"
ap = argparse.ArgumentParser()
ap.add_argument("--frame", default=f"{DAVIS}/JPEGImages/480p/blackswan/00000.jpg")
ap.add_argument("--mask", default=f"{DAVIS}/Annotations/480p/blackswan/00000.png")
ap.add_argument("--sequences", default=None, help="comma list of DAVIS 480p sequences (frame 0 of each)")
ap.add_argument("--clicks", type=int, default=6)
ap.add_argument("--no-crf", action="store_true", help="the network and clamping only")
ap.add_argument("--crf-max-side", type=int, default=None, help="CRF crop scale (default: CRFParams' 320)")
ap.add_argument("--crf-iterations", type=int, default=None, help="CRF iterations (default: CRFParams' 5)")
ap.add_argument("--input-size", type=int, default=None, help="the network's input size (default: the predictor's)")
ap.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                help="average with the mirror image (default: the predictor's)")
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)
if args.sequences:
    frames = [(f"{DAVIS}/JPEGImages/480p/{s}/00000.jpg", f"{DAVIS}/Annotations/480p/{s}/00000.png")
              for s in args.sequences.split(",")]
else:
    frames = [(args.frame, args.mask)]
crf = crf_params_of(args)  # the same flags, checks and defaults as eval-interactive
pred = InteractivePredictor(use_crf=not args.no_crf, crf_params=crf, input_size=args.input_size,
                            mirror=bool(args.mirror))
times, ious = [], []
for frame, mask in frames:
    img = np.asarray(Image.open(frame).convert("RGB"))
    gt = np.asarray(Image.open(mask).convert("L")) > 127
    pred.set_image(img)
    inter, prev = Interactions(), None
    for i in range(args.clicks):
        c = next_click(prev if prev is not None else np.zeros_like(gt), gt)
        inter.clicks.append(c)
        t = time.perf_counter()
        out = pred.predict(inter, prev_mask=prev)
        times.append((time.perf_counter() - t) * 1000)
        prev = out.mask
    ious.append(round(float((prev & gt).sum() / (prev | gt).sum()), 3))
print({"frames": [f for f, _ in frames] if len(frames) > 1 else frames[0][0], "crf": not args.no_crf,
       "crf_max_side": crf.max_side, "crf_iterations": crf.iterations, "shape": img.shape[:2],
       "ms_per_click": [round(t) for t in times], "median_ms": round(statistics.median(times)),
       "quartiles_ms": [round(q) for q in statistics.quantiles(times, n=4)], "iou": ious if len(ious) > 1 else ious[0]})
