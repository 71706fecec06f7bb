"""Compare ways of turning propagated probabilities into masks, without
running the network again.

    napari-vidseg eval-video DAVIS_ROOT ... --save-probs DIR
    python scripts/study_postprocess.py DAVIS_ROOT DIR [--resolution 480p]

For every sequence saved in DIR (DIR/<seq>.npz from `eval-video
--save-probs`: frame 0 is the annotated mask, the others the tuned network's
probabilities at its input size) each variant below makes the full-size masks
frame by frame, forward from frame 0, as propagation does (logits upsampled
bilinearly, then thresholded, then `clean_frame`); J is scored DAVIS's way.
The variant marked "(default)" is what `propagate` does by default, so its J
should match eval-video's own figure for the same run (up to float16 rounding
of the saved probabilities); "before" is the default until session 7, "reach
0.08" the one of sessions 7-10. Prints a table of J per sequence and the
mean, best first, each against `--base` (default: the default): the mean
paired difference, its standard error and on how many sequences it is better.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_vidseg.eval.davis import j_score, open_sequence, scored_frames
from napari_vidseg.video.propagate import BLOB_REACH, clean_frame, cleanup_radii, near_mask
from napari_vidseg.video.refine import logit, upsample_logits
from paired_stats import paired_summary


def run_variant(probs: np.ndarray, size: tuple[int, int], threshold=0.5, reach=0.0, blobs=BLOB_REACH,
                ema=0.0, crf=None, frame=None) -> dict[int, np.ndarray]:
    """Full-size masks {t: bool} for frames 1.. of one sequence, through the
    library's clean_frame as in propagate.

    threshold: on the probability; reach: FinetuneConfig.reach (fraction of
    the long side; 0 off); blobs: drop_distant_blobs' radius as a fraction of
    the long side (None: off); ema: weight of the previous frame's (smoothed)
    probability (not in the library: a candidate); crf: CRFParams for a dense
    CRF on a crop around each cleaned mask (`frame(t)` gives the RGB frame; not
    in the library: a candidate)."""
    reach_px, blob_radius = cleanup_radii(probs.shape[1:], reach, blobs)
    prev = probs[0] > 0.5
    smooth = probs[0].astype(np.float32)
    out = {}
    cut = float(np.log(threshold / (1 - threshold)))
    for t in range(1, len(probs)):
        p = probs[t].astype(np.float32)
        if ema > 0:
            p = (1 - ema) * p + ema * smooth
            smooth = p
        logits = upsample_logits(logit(p), size)
        out[t], prev = clean_frame(p > threshold, logits > cut, prev, reach_px, blob_radius)
        if crf is not None:
            out[t] = crf_refined(frame(t), logits, out[t], crf)
    return out


def crf_refined(image: np.ndarray, logits: np.ndarray, mask: np.ndarray, params) -> np.ndarray:
    """The mask after a dense CRF on the probabilities in a box around it
    (grown by a quarter of its size); the CRF may move the edge by up to 2 % of
    the long side, not add blobs elsewhere."""
    from napari_vidseg.segment.crf import refine

    if not mask.any():
        return mask
    H, W = mask.shape
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    my, mx = (ys[-1] - ys[0]) // 4 + 8, (xs[-1] - xs[0]) // 4 + 8
    y0, y1, x0, x1 = max(ys[0] - my, 0), min(ys[-1] + 1 + my, H), max(xs[0] - mx, 0), min(xs[-1] + 1 + mx, W)
    q = refine(np.ascontiguousarray(image[y0:y1, x0:x1, :3]), 1 / (1 + np.exp(-logits[y0:y1, x0:x1])), params)
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = q > 0.5
    return out & near_mask(mask, max(4, int(0.02 * max(H, W))))


VARIANTS = {
    "before (t 0.5, blobs 0.04)": {},
    "no clean-up (t 0.5)": {"blobs": None},
    "t 0.2": {"threshold": 0.2},
    "t 0.3 (default)": {"threshold": 0.3},  # no reach: the default since session 11
    "t 0.4": {"threshold": 0.4},
    "t 0.6": {"threshold": 0.6},
    "blobs 0.02": {"blobs": 0.02},
    "blobs 0.08": {"blobs": 0.08},
    "ema 0.3": {"ema": 0.3},
    "ema 0.5": {"ema": 0.5},
    "reach 0.05": {"reach": 0.05},
    "reach 0.08": {"reach": 0.08},
    "reach 0.15": {"reach": 0.15},
    "t 0.3 + reach 0.05": {"threshold": 0.3, "reach": 0.05},
    "t 0.3 + reach 0.08 (sessions 7-10)": {"threshold": 0.3, "reach": 0.08},
    "t 0.3 + reach 0.12": {"threshold": 0.3, "reach": 0.12},
    "t 0.4 + reach 0.08": {"threshold": 0.4, "reach": 0.08},
    "t 0.3 + reach 0.08, no blobs": {"threshold": 0.3, "reach": 0.08, "blobs": None},
    # Session 11, on the cross-validated training sequences (scripts/crossval.py).
    "t 0.3 + reach 0.16": {"threshold": 0.3, "reach": 0.16},
    "t 0.3 + reach 0.25": {"threshold": 0.3, "reach": 0.25},
    "t 0.3, no reach, no blobs": {"threshold": 0.3, "blobs": None},
    "t 0.3 + reach 0.08 + CRF": {"threshold": 0.3, "reach": 0.08, "crf": "default"},
    "t 0.3 + reach 0.08 + CRF soft": {"threshold": 0.3, "reach": 0.08, "crf": "soft"},
}
DEFAULT = "t 0.3 (default)"


def crf_params(name: str):
    """The CRFs compared: the interactive segmenter's (at full resolution), and one with half its pairwise weights."""
    from napari_vidseg.segment.crf import CRFParams

    base = CRFParams(max_side=None)
    return base if name == "default" else CRFParams(max_side=None, gauss_compat=2.0, bilateral_compat=2.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("davis_root", type=Path)
    ap.add_argument("probs_dir", type=Path)
    ap.add_argument("--resolution", default="480p")
    ap.add_argument("--only", default=None, help="variant names separated by ';' (default: all)")
    ap.add_argument("--base", default=DEFAULT, help="the variant the others are compared with")
    args = ap.parse_args(argv)
    files = sorted(args.probs_dir.glob("*.npz"))
    if not files:
        sys.exit(f"no <seq>.npz in {args.probs_dir}: run eval-video with --save-probs first")
    names = list(VARIANTS) if not args.only else [k.strip() for k in args.only.split(";")]
    unknown = [k for k in names + [args.base] if k not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    variants = {k: VARIANTS[k] for k in names}
    table: dict[str, dict[str, float]] = {v: {} for v in variants}
    for f in files:
        seq = open_sequence(args.davis_root, f.stem, args.resolution)
        truth = seq.masks()
        probs = np.load(f)["prob"]
        if len(probs) != len(truth):
            sys.exit(f"{f}: {len(probs)} frames saved, {len(truth)} annotations")
        source = seq.source()
        for name, kw in variants.items():
            if "crf" in kw:
                kw = {**kw, "crf": crf_params(kw["crf"]), "frame": source.frame}
            masks = run_variant(probs, truth.shape[1:], **kw)
            table[name][f.stem] = float(np.mean([j_score(masks[t], truth[t]) for t in scored_frames(len(truth))]))
        print(f"{f.stem} done", file=sys.stderr, flush=True)
    seqs = [f.stem for f in files]
    ref = table.get(args.base)
    print(f"{'variant':32s} {'J mean':>7s} {'vs base (se, better)':>24s}  " + " ".join(f"{s[:10]:>10s}" for s in seqs))
    for name in sorted(table, key=lambda v: -np.mean(list(table[v].values()))):
        row = table[name]
        paired = ""
        if ref is not None and name != args.base and len(seqs) > 1:
            st = paired_summary(100 * np.array([row[s] - ref[s] for s in seqs]))
            paired = f"{st.mean:+.2f} ({st.se:.2f}, {st.better}/{st.n})"
        print(f"{name:32s} {100 * np.mean(list(row.values())):7.1f} {paired:>24s}  "
              + " ".join(f"{100 * row[s]:10.1f}" for s in seqs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
