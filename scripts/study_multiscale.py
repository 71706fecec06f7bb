"""Offline study: averaging the probabilities of propagations run at several input sizes.

Each input size is a separate cross-validated run that saved its probabilities
(so each has its own tuning, at its own size):

    for s in 320 448 640; do
        python scripts/crossval.py eval --parents checkpoints/cv_a --out /tmp/ms/i$s -- \
            --input-long-side $s --save-probs /tmp/ms/p$s
    done
    python scripts/study_multiscale.py --probs /tmp/ms/p{size} --sizes 320,448,640 --base 448
    # the control: a second tuning at 448 with another seed (eval-video --seed 1), saved to /tmp/ms/p448s1
    python scripts/study_multiscale.py --probs /tmp/ms/p{size} --sizes 448,448s1,640 --base 448

Every map is resized (bilinear) to the base size's, averaged, thresholded at
0.3 and scored against the true masks at that size, frame 0 left out. J at the
network's resolution is a little lower than eval-video's full-resolution J and
favours the larger inputs less; the comparison is between combinations scored
the same way. Prints J per combination and its paired difference from the base
size alone (mean, standard error, sequences better).
"""
from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from paired_stats import against_base


def resize_probs(p: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if p.shape[1:] == hw:
        return p
    return np.stack([np.asarray(Image.fromarray(f).resize((hw[1], hw[0]), Image.BILINEAR)) for f in p])


def j_mean(pred: np.ndarray, gt: np.ndarray) -> float:
    inter, union = (pred & gt).sum((1, 2))[1:], (pred | gt).sum((1, 2))[1:]
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probs", required=True, help="folder pattern with {size}, holding <sequence>.npz")
    ap.add_argument("--sizes", default="320,448,640",
                    help="run names substituted for {size} in --probs (e.g. 448,448s1 for a second seed)")
    ap.add_argument("--base", default="448")
    ap.add_argument("--annotations", type=Path, default=Path("../shared/data/davis2016/Annotations/240p"))
    ap.add_argument("--threshold", type=float, default=0.3)
    args = ap.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if args.base not in sizes:
        ap.error("--base must be one of --sizes")
    combos = [c for n in range(1, len(sizes) + 1) for c in combinations(sizes, n)]
    seqs = sorted(p.stem for p in Path(args.probs.format(size=args.base)).glob("*.npz"))
    scores = {c: [] for c in combos}
    for seq in seqs:
        probs = {s: np.load(Path(args.probs.format(size=s)) / f"{seq}.npz")["prob"].astype(np.float32) for s in sizes}
        hw = probs[args.base].shape[1:]
        probs = {s: resize_probs(p, hw) for s, p in probs.items()}
        gt = np.stack([np.asarray(Image.open(p).convert("L").resize((hw[1], hw[0]), Image.NEAREST)) > 127
                       for p in sorted((args.annotations / seq).glob("*.png"))])
        for c in combos:
            scores[c].append(j_mean(sum(probs[s] for s in c) / len(c) > args.threshold, gt))
    print("\n".join(against_base({"+".join(c): v for c, v in scores.items()}, args.base,
                                  base_label=f"{args.base} alone")))


if __name__ == "__main__":
    main()
