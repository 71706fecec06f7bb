"""`napari-vidseg eval-correction DAVIS_ROOT [--clicks 1,4,10]`: worst-frame
correction, the protocol of Benard & Gygli 2017, Table 3.

Per sequence:
1. fine-tune on the TRUE first mask and propagate (as `eval-video --init mask`);
2. take the worst frame by true IoU (scored frames only: not the first, not the last);
3. correct it with k robot clicks, starting from the propagated mask: the
   interactive segmenter gets all clicks so far and the propagated mask as
   its starting point (what VideoSession.correct does); the IoU of the
   corrected frame is recorded for each k in --clicks;
4. re-tune on the first mask plus the frame corrected with max(k) clicks,
   re-propagate, and score the sequence again (J before / after);
5. ground-truth-free quality: the Spearman rank correlation between
   video.quality's frame scores and the true IoU (per sequence, averaged),
   and how often the truly worst frame is among the 3 lowest scores.

LAST line: one JSON object with before (mean IoU of the worst frames as
propagated), after ({k: mean IoU after k clicks}), j_before, j_after,
rank_correlation, worst_in_top3 (fractions in [0, 1]).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..types import InputError, Interactions
from .video import add_common_arguments, load_net, machine, make_config, run_sequence, sequences_of


def configure(parser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--clicks", default="1,4,10", help="comma list of click counts")
    parser.add_argument("--no-crf", action="store_true", help="no dense CRF in the corrections")
    parser.add_argument("--save-worst", metavar="DIR",
                        help="write DIR/<seq>.npz (the worst frame's index, propagated mask and true mask) "
                             "for offline click studies (scripts/study_correction.py)")


def parse_clicks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1:
        raise InputError(f"--clicks must be a comma list of positive integers, got {text!r}")
    return ks


def correct_frame(predictor, frame, propagated, truth, ks, chain: bool = False) -> dict[int, np.ndarray]:
    """Masks after k robot clicks for each k in ks, starting from `propagated`.

    Every prediction gets all clicks so far; its mask channel is the propagated
    mask, or with `chain` the mask the previous click made (the first click's
    is the propagated mask either way).
    """
    from ..interactions.robot import next_click

    predictor.set_image(frame)
    inter = Interactions()
    mask, out = propagated.copy(), {}
    for k in range(1, max(ks) + 1):
        c = next_click(mask, truth)
        if c is not None:  # a perfect mask gets no more clicks
            inter.clicks.append(c)
            mask = predictor.predict(inter, prev_mask=mask if chain else propagated).mask
        if k in ks:
            out[k] = mask.copy()
    return out


def spearman(a, b) -> float | None:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return float(spearmanr(a, b).statistic)


def summarize(rows: dict, ks) -> dict:
    """The means over sequences of run()'s per-sequence rows (also used by
    scripts/crossval.py, whose rows come back from JSON with string keys)."""
    rhos = [r["rank_correlation"] for r in rows.values() if r["rank_correlation"] is not None]
    after = [{str(k): v for k, v in r["after"].items()} for r in rows.values()]
    return {
        "before": round(float(np.mean([r["before"] for r in rows.values()])), 4),
        "after": {str(k): round(float(np.mean([a[str(k)] for a in after])), 4) for k in ks},
        "j_before": round(float(np.mean([r["j_before"] for r in rows.values()])), 4),
        "j_after": round(float(np.mean([r["j_after"] for r in rows.values()])), 4),
        "rank_correlation": round(float(np.mean(rhos)), 4) if rhos else None,
        "worst_in_top3": round(float(np.mean([r["worst_in_top3"] for r in rows.values()])), 4),
    }


def run(args) -> int:
    import torch

    from ..interactions.robot import iou
    from ..models.registry import select_device
    from ..segment.predictor import InteractivePredictor
    from ..video.quality import frame_scores, worst_frames
    from ..video.refine import refiner_for
    from .davis import open_sequence, score_sequence, scored_frames

    if args.threads:
        torch.set_num_threads(args.threads)
    ks = parse_clicks(args.clicks)
    cfg = make_config(args)
    device = select_device()
    parent = load_net("parent", args.weights_parent, device)
    interactive = load_net("interactive", args.weights_interactive, device)
    predictor = InteractivePredictor(net=interactive, use_crf=not args.no_crf)
    refiner = refiner_for(cfg, device, interactive)
    rows = {}
    t_start = time.perf_counter()
    for name in sequences_of(args):
        seq = open_sequence(Path(args.davis_root), name, args.resolution)
        truth = seq.masks()
        masks, conf, *_ = run_sequence(parent, seq, cfg, truth[0], refiner=refiner)
        before = score_sequence(masks, truth)
        scored = list(scored_frames(len(truth)))
        worst = min(scored, key=lambda t: (before["j_frames"][t], t))
        corrected = correct_frame(predictor, seq.source().frame(worst), masks[worst], truth[worst], ks)
        after_iou = {k: float(iou(m, truth[worst])) for k, m in corrected.items()}
        if args.save_worst:
            Path(args.save_worst).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(Path(args.save_worst) / f"{name}.npz", frame=worst,
                                propagated=masks[worst], truth=truth[worst])
        masks2, *_ = run_sequence(parent, seq, cfg, truth[0], {worst: corrected[max(ks)]}, refiner=refiner)
        after = score_sequence(masks2, truth)
        # Ground-truth-free ranking of the propagated frames.
        scores = frame_scores({t: masks[t] for t in scored}, {t: conf[t] for t in scored})
        rho = spearman([scores[t] for t in scored], [before["j_frames"][t] for t in scored])
        in_top3 = worst in worst_frames(scores, 3)
        rows[name] = {"worst_frame": worst, "before": round(before["j_frames"][worst], 4),
                      "after": {k: round(v, 4) for k, v in after_iou.items()},
                      "j_before": round(before["j"], 4), "j_after": round(after["j"], 4),
                      "rank_correlation": None if rho is None else round(rho, 4), "worst_in_top3": in_top3}
        print(f"{name:20s} worst frame {worst:3d}: IoU {100 * before['j_frames'][worst]:5.1f} -> "
              + " ".join(f"{k}c {100 * v:5.1f}" for k, v in after_iou.items())
              + f"  J {100 * before['j']:5.1f} -> {100 * after['j']:5.1f}"
              + f"  rank corr {rho if rho is None else round(rho, 2)}  worst in bottom-3: {in_top3}", flush=True)
    if not rows:
        raise InputError("no sequences to evaluate")
    summary = {**summarize(rows, ks), "clicks": ks,
               "seconds": round(time.perf_counter() - t_start, 1), "machine": machine()}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({**summary, "per_sequence": rows}, indent=1))
    print(json.dumps(summary))
    return 0
