"""Frame quality without ground truth: which propagated frames to look at first.

Three cues, each in [0, 1] (higher = better), averaged with weights:

* confidence: the network's own certainty near the object (propagate's
  FrameResult.confidence: mean |2p - 1| around the predicted object);
* temporal IoU: the mean IoU of the frame's mask with its neighbours' masks
  (the paper found OSVOS failures show up as masks that flicker);
* area consistency: exp(-|log(area / local median area)|) over a window of
  frames, which flags frames where the object suddenly grows or shrinks,
  including failures that last a few frames.

    scores = frame_scores(masks, confidence)       # {t: score}
    worst_frames(scores, k=5, exclude=annotated)   # lowest scores first
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

#: (confidence, temporal IoU, area consistency)
DEFAULT_WEIGHTS = (0.4, 0.3, 0.3)
AREA_WINDOW = 5  # frames each side for the local median area
_STRIDE = 4  # masks are compared at 1/4 resolution: plenty for IoU and area


def _small(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask, bool)[::_STRIDE, ::_STRIDE]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _scan(masks: Mapping[int, np.ndarray]) -> tuple[list[int], list[float], dict[int, float]]:
    """One pass over the masks in frame order, each read once and only two
    held at a time (the store decodes on access; an hour of video would not
    fit): (frames, IoU of each consecutive pair present, area of each)."""
    ts = sorted(masks)
    pair, area, prev = [], {}, None
    for t in ts:
        small = _small(masks[t])
        area[t] = float(np.count_nonzero(small))
        if prev is not None:
            pair.append(_iou(prev, small))
        prev = small
    return ts, pair, area


def _temporal_iou(ts: list[int], pair: list[float]) -> dict[int, float]:
    out = {}
    for i, t in enumerate(ts):
        vals = pair[max(i - 1, 0):i + 1]  # pair[i] joins ts[i] and ts[i + 1]
        out[t] = float(np.mean(vals)) if vals else 1.0
    return out


def _area_consistency(area: dict[int, float], window: int) -> dict[int, float]:
    out = {}
    for t in area:
        nb = [area[u] for u in range(t - window, t + window + 1) if u in area and u != t]
        if not nb:
            out[t] = 1.0
            continue
        med = float(np.median(nb))
        out[t] = float(np.exp(-abs(np.log((area[t] + 1.0) / (med + 1.0)))))
    return out


def temporal_iou(masks: Mapping[int, np.ndarray]) -> dict[int, float]:
    """Mean IoU with the masks of the frames right before and after: the
    nearest frames present, so every 4th frame is compared with its
    neighbours 4 frames away."""
    ts, pair, _ = _scan(masks)
    return _temporal_iou(ts, pair)


def area_consistency(masks: Mapping[int, np.ndarray], window: int = AREA_WINDOW) -> dict[int, float]:
    """exp(-|log(area_t / median area of the frames within `window`)|)."""
    return _area_consistency(_scan(masks)[2], window)


def frame_scores(masks: Mapping[int, np.ndarray], confidence: Mapping[int, float],
                 weights: tuple[float, float, float] = DEFAULT_WEIGHTS) -> dict[int, float]:
    """Quality score per frame of `masks` in [0, 1]; higher = better. Frames
    without a confidence value use the temporal cues alone. Each mask is
    read once."""
    ts, pair, area_of = _scan(masks)
    tiou = _temporal_iou(ts, pair)
    area = _area_consistency(area_of, AREA_WINDOW)
    wc, wi, wa = weights
    out = {}
    for t in ts:
        c = confidence.get(t)
        if c is None:
            out[t] = (wi * tiou[t] + wa * area[t]) / (wi + wa)
        else:
            out[t] = (wc * float(c) + wi * tiou[t] + wa * area[t]) / (wc + wi + wa)
    return out


def worst_frames(scores: Mapping[int, float], k: int, exclude: Iterable[int] = ()) -> list[int]:
    """The k frames with the lowest score, worst first (ties: earlier frame first)."""
    ex = set(int(t) for t in exclude)
    ranked = sorted((s, t) for t, s in scores.items() if t not in ex)
    return [t for _, t in ranked[:max(int(k), 0)]]


def confident_frames(scores: Mapping[int, float], k: int, exclude: Iterable[int] = (),
                     gap: int = 1) -> list[int]:
    """Up to k frames to trust, best first: the highest scores, each at least
    `gap` frames from the excluded frames (the annotated ones) and from the
    frames already chosen, so that they add views of the object the network
    has not been shown (self-training on its own masks; OnAVOS, Voigtlaender
    and Leibe 2017, adapts the network online in the same spirit)."""
    taken = [int(t) for t in exclude]
    out: list[int] = []
    for s, t in sorted(((-s, t) for t, s in scores.items())):
        if len(out) >= k:
            break
        if all(abs(t - u) >= gap for u in taken):
            out.append(t)
            taken.append(t)
    return out


def first_pass_frames(targets: Iterable[int], stride: int) -> list[int]:
    """The frames a self-training run's first pass propagates: every
    `stride`-th frame of the video among `targets`."""
    return [int(t) for t in targets if int(t) % max(int(stride), 1) == 0]


def pseudo_annotations(masks: Mapping[int, np.ndarray], confidence: Mapping[int, float],
                       annotated: Iterable[int], k: int, n_frames: int) -> dict[int, np.ndarray]:
    """Self-training's extra annotated frames: the k propagated masks most
    trusted by frame_scores, each at least n_frames / (2k + 2) frames from
    the annotated frames and from the others chosen, so that they show the
    object as the annotated frames do not. `masks` holds the first pass's
    masks; annotated frames in it are never chosen."""
    annotated = [int(t) for t in annotated]
    scores = frame_scores(masks, confidence)
    gap = max(int(n_frames) // (2 * int(k) + 2), 1)
    return {t: np.asarray(masks[t], bool) for t in confident_frames(scores, k, annotated, gap)}
