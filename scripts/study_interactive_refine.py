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
    python scripts/study_interactive_refine.py --probs /tmp/ms/p448 --base "logit mean(propagated, click)" \
        --weights checkpoints/interactive7/last.pt     # other interactive weights, against the default

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

from paired_stats import against_base
from study_multiscale import j_mean

from napari_vidseg.interactions.robot import interior_click
from napari_vidseg.models.registry import build
from napari_vidseg.segment.predictor import InteractivePredictor
from napari_vidseg.types import Interactions
from napari_vidseg.video.refine import logit

VARIANTS = ("propagated", "click", "click+crf", "mean(propagated, click)", "mean(propagated, click+crf)",
            "logit mean(propagated, click)", "no click",
            # session 16: the weight of the second opinion, a second round, a mirrored second opinion
            "logit mean, click weighted 0.65", "logit mean, click weighted 0.35", "logit mean, twice",
            "logit mean, click mirrored")


def second_opinion(p: InteractivePredictor, frame: np.ndarray, seed: np.ndarray) -> np.ndarray:
    p.set_image(frame)
    return p.predict(Interactions([interior_click(seed)]), prev_mask=seed).prob


def refine(preds: dict, frame: np.ndarray, prob: np.ndarray, threshold: float) -> dict:
    mask = prob > threshold
    out = {"propagated": mask}
    if not mask.any():
        return {v: mask for v in VARIANTS}
    click = Interactions([interior_click(mask)])
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
    cut, own, other = logit(np.float32(threshold)), logit(prob), logit(second_opinion(p, frame, mask))
    out["logit mean, click weighted 0.65"] = 0.35 * own + 0.65 * other > cut
    out["logit mean, click weighted 0.35"] = 0.65 * own + 0.35 * other > cut
    once = out["logit mean(propagated, click)"]
    out["logit mean, twice"] = (own + logit(second_opinion(p, frame, once))) / 2 > cut if once.any() else once
    out["logit mean, click mirrored"] = (own + logit(second_opinion(preds["mirror"], frame, mask))) / 2 > cut
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probs", type=Path, required=True, help="folder of <sequence>.npz (eval-video --save-probs)")
    ap.add_argument("--davis", type=Path, default=Path("../shared/data/davis2016"))
    ap.add_argument("--resolution", default="240p")
    ap.add_argument("--threshold", type=float, default=0.3)
    ap.add_argument("--sequences", default=None, help="comma list (default: every .npz)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", type=Path, default=None, help="interactive weights or checkpoint (default: shipped)")
    ap.add_argument("--base", default="propagated", help="the variant the others are compared with")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    net = None if args.weights is None else build("interactive", path=args.weights, check=False)
    preds = {crf: InteractivePredictor(net, use_crf=crf) for crf in (False, True)}
    preds["mirror"] = InteractivePredictor(net, use_crf=False, mirror=True)
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
    print("\n".join(against_base(scores, args.base, width=32)))


if __name__ == "__main__":
    main()
