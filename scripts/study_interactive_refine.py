"""Offline study: does the interactive segmenter, given a propagated mask as its
current mask and one positive click where that mask is deepest, complete the
masks propagation leaves short (DAVIS val's masks are recall-limited,
docs/video.md session 12)?

The interactive network never saw DAVIS (it trains on train_objects/), so the
cross-validated probabilities of the DAVIS-2016 training sequences are a fair
judge:

    python scripts/crossval.py eval --parents checkpoints/cv_a --out /tmp/ms/i448 -- \
        --input-long-side 448 --self-train 0 --no-refine --save-probs /tmp/ms/p448
    python scripts/study_interactive_refine.py --probs /tmp/ms/p448

Every frame's map is thresholded (0.3) at the network's size, as
study_multiscale.py scores, frame 0 left out; the refinements run on the
frame resized to that size. Prints J per variant and its paired difference
from the propagated masks alone (mean, standard error, sequences better).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from paired_stats import against_base
from study_multiscale import j_mean

from napari_vidseg.segment.predictor import InteractivePredictor
from napari_vidseg.types import Click, Interactions

VARIANTS = ("propagated", "click", "click+crf", "mean(propagated, click)", "mean(propagated, click+crf)",
            "logit mean(propagated, click)", "no click")


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def deepest_click(mask: np.ndarray) -> Click:
    d = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return Click(float(x), float(y), True)


def refine(preds: dict, frame: np.ndarray, prob: np.ndarray, threshold: float) -> dict:
    mask = prob > threshold
    out = {"propagated": mask}
    if not mask.any():
        return {v: mask for v in VARIANTS}
    click = Interactions([deepest_click(mask)])
    for name, crf in (("click", False), ("click+crf", True)):
        p = preds[crf]
        p.set_image(frame)
        r = p.predict(click, prev_mask=mask)
        out[name] = r.mask
        out[f"mean(propagated, {name})"] = (prob + r.prob) / 2 > threshold
        if not crf:
            out["logit mean(propagated, click)"] = (logit(prob) + logit(r.prob)) / 2 > logit(np.float32(threshold))
    p = preds[False]
    out["no click"] = p.predict(Interactions(), prev_mask=mask).mask
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probs", type=Path, required=True, help="folder of <sequence>.npz (eval-video --save-probs)")
    ap.add_argument("--davis", type=Path, default=Path("../shared/data/davis2016"))
    ap.add_argument("--resolution", default="240p")
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--sequences", default=None, help="comma list (default: every .npz)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    preds = {crf: InteractivePredictor(use_crf=crf) for crf in (False, True)}
    seqs = args.sequences.split(",") if args.sequences else sorted(p.stem for p in args.probs.glob("*.npz"))
    scores = {v: [] for v in VARIANTS}
    for seq in seqs:
        prob = np.load(args.probs / f"{seq}.npz")["prob"].astype(np.float32)
        h, w = prob.shape[1:]
        frames = sorted((args.davis / "JPEGImages" / args.resolution / seq).glob("*.jpg"))
        gt = np.stack([np.asarray(Image.open(p).convert("L").resize((w, h), Image.NEAREST)) > 127
                       for p in sorted((args.davis / "Annotations" / args.resolution / seq).glob("*.png"))])
        masks = {v: [gt[0]] for v in VARIANTS}
        for t in range(1, len(prob)):
            frame = np.asarray(Image.open(frames[t]).convert("RGB").resize((w, h), Image.BILINEAR))
            for v, m in refine(preds, frame, prob[t], args.threshold).items():
                masks[v].append(m)
        line = []
        for v in VARIANTS:
            scores[v].append(j_mean(np.stack(masks[v]), gt))
            line.append(f"{100 * scores[v][-1]:5.1f}")
        print(f"{seq:20s} " + " ".join(line), flush=True)
    print("\n".join(against_base(scores, "propagated", width=29)))


if __name__ == "__main__":
    main()
