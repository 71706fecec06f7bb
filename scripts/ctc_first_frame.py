"""First-frame study on a CTC sequence: IoU per cell after 1 and K robot clicks under several
intensity mappings, and where the errors go (into neighbouring cells or into background).

    python scripts/ctc_first_frame.py ../shared/data/ctc/Fluo-N2DH-SIM+/01 --clicks 3 --out docs/results/ctc_first_frame.json

Measuring only (the CTC data is never trained or tuned on beyond choosing a default).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def mappings(raw: np.ndarray) -> dict:
    """(H, W) uint16 -> {name: (H, W, 3) uint8}: the rules this project has used or offers."""
    from napari_vidseg.io.intensity import IntensityMap

    def grey(a):
        return np.repeat(a[:, :, None], 3, axis=2)

    lo, hi = np.percentile(raw, [0.5, 99.8])
    return {
        # before session 19: a frame folder read through PIL keeps the top byte of 16 bits
        "top_byte (VideoSource folder, before)": grey((raw.astype(np.float64) * 255 / 65535).astype(np.uint8)),
        # before session 19: a napari uint16 layer clipped to 0..255 (_napari/sources.py)
        "clip_0_255 (napari layer, before)": grey(np.clip(raw, 0, 255).astype(np.uint8)),
        "min_max": grey(IntensityMap((float(raw.min()),), (float(raw.max()),)).apply(raw)),
        "percentiles_0.5_99.8 (default now)": grey(IntensityMap((float(lo),), (float(hi),)).apply(raw)),
    }


def limit_first_guess(pred) -> None:
    """Wrap the predictor's network call so that the first click's full-frame guess keeps only
    its connected part that holds the click: the zoom-in crop then frames that cell, not a
    cluster of look-alikes."""
    from scipy.ndimage import label

    inner = pred._net_prob

    def net_prob(box, inter, prev):
        prob = inner(box, inter, prev)
        H, W = pred.image.shape[:2]
        if box == (0, H, 0, W) and not prev.any() and inter.clicks:
            lab, _ = label(prob > 0.5)
            c = inter.clicks[0]
            k = lab[int(round(c.y)), int(round(c.x))]
            prob = np.where(lab == k, prob, 0.0).astype(prob.dtype) if k else np.zeros_like(prob)
        return prob

    pred._net_prob = net_prob


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sequence")
    ap.add_argument("--clicks", type=int, default=3)
    ap.add_argument("--mappings", default=None, help="comma list of mapping name prefixes (default: all)")
    ap.add_argument("--guess", choices=("full", "component"), default="full",
                    help="component: the first click's full-frame guess (which only chooses the zoom-in crop) "
                         "is cut to its connected part under the click (an experiment: segment/predictor.py "
                         "is not changed)")
    ap.add_argument("--no-crf", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from napari_vidseg.eval.ctc import open_ctc
    from napari_vidseg.interactions.robot import interior_click, iou, next_click
    from napari_vidseg.segment.predictor import InteractivePredictor
    from napari_vidseg.types import Interactions

    seq = open_ctc(args.sequence)
    import tifffile

    raw = tifffile.imread(seq.frame_files[0])
    truth = seq.truth_masks(0)
    tra0 = seq.tra(0)
    tracks = seq.first_tracks()
    pred = InteractivePredictor(use_crf=not args.no_crf)
    if args.guess == "component":
        limit_first_guess(pred)
    out = {"sequence": args.sequence, "clicks": args.clicks, "cells": len(tracks), "mappings": {}}
    wanted = [m.strip() for m in args.mappings.split(",")] if args.mappings else None
    for name, rgb in mappings(raw).items():
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        t0 = time.perf_counter()
        pred.set_image(rgb)
        per = {}
        for k in tracks:
            gt = truth[k]
            others = (tra0 > 0) & ~gt  # the other cells
            inter, mask, ious = Interactions(), np.zeros(gt.shape, bool), []
            for c_i in range(args.clicks):
                c = interior_click(gt) if c_i == 0 else next_click(mask, gt)
                if c is None:
                    ious.append(1.0)
                    continue
                inter.clicks.append(c)
                mask = pred.predict(inter, prev_mask=mask if c_i else None).mask
                ious.append(float(iou(mask, gt)))
                if c_i == 0:
                    fp = mask & ~gt
                    first = {"fp_px": int(fp.sum()), "fp_in_other_cells_px": int((fp & others).sum()),
                             "fn_px": int((gt & ~mask).sum()), "cell_px": int(gt.sum()),
                             "cells_touched": int(len(set(np.unique(tra0[fp & others]).tolist()) - {0}))}
            per[int(k)] = {"ious": [round(v, 4) for v in ious], **first}
        ious1 = np.array([v["ious"][0] for v in per.values()])
        iousk = np.array([v["ious"][-1] for v in per.values()])
        res = {"mean_iou_1": round(float(ious1.mean()), 4), "mean_iou_k": round(float(iousk.mean()), 4),
               "min_iou_1": round(float(ious1.min()), 4), "cells_below_0.5_at_1": int((ious1 < 0.5).sum()),
               "cells_that_took_a_neighbour_at_1": int(sum(v["cells_touched"] > 0 for v in per.values())),
               "seconds": round(time.perf_counter() - t0, 1), "per_cell": per}
        out["mappings"][name] = res
        print(f"{name:40s} IoU after 1 click {res['mean_iou_1']:.3f} (min {res['min_iou_1']:.3f}, "
              f"{res['cells_below_0.5_at_1']} below 0.5, {res['cells_that_took_a_neighbour_at_1']} took a "
              f"neighbour), after {args.clicks}: {res['mean_iou_k']:.3f}  [{res['seconds']} s]", flush=True)
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
