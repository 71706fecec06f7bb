"""Median time of one interactive click (network + clamping + CRF) on an 854x480 DAVIS frame.

    python scripts/time_click.py [--frame PATH] [--clicks 6] [--no-crf] [--crf-max-side N] [--crf-iterations N]
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

ap = argparse.ArgumentParser()
ap.add_argument("--frame", default="../shared/data/davis2016/JPEGImages/480p/blackswan/00000.jpg")
ap.add_argument("--mask", default="../shared/data/davis2016/Annotations/480p/blackswan/00000.png")
ap.add_argument("--clicks", type=int, default=6)
ap.add_argument("--no-crf", action="store_true", help="the network and clamping only")
ap.add_argument("--crf-max-side", type=int, default=None, help="CRF crop scale (default: CRFParams' 320)")
ap.add_argument("--crf-iterations", type=int, default=None, help="CRF iterations (default: CRFParams' 5)")
args = ap.parse_args()
torch.set_num_threads(2)
img = np.asarray(Image.open(args.frame).convert("RGB"))
gt = np.asarray(Image.open(args.mask).convert("L")) > 127
crf = crf_params_of(args)  # the same flags, checks and defaults as eval-interactive
pred = InteractivePredictor(use_crf=not args.no_crf, crf_params=crf)
pred.set_image(img)
inter, prev, times = Interactions(), None, []
for i in range(args.clicks):
    c = next_click(prev if prev is not None else np.zeros_like(gt), gt)
    inter.clicks.append(c)
    t = time.perf_counter()
    out = pred.predict(inter, prev_mask=prev)
    times.append((time.perf_counter() - t) * 1000)
    prev = out.mask
print({"frame": args.frame, "crf": not args.no_crf, "crf_max_side": crf.max_side, "crf_iterations": crf.iterations, "shape": img.shape[:2], "ms_per_click": [round(t) for t in times],
       "median_ms": round(statistics.median(times)), "iou": round(float((prev & gt).sum() / (prev | gt).sum()), 3)})
