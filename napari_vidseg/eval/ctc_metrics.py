"""Cell Tracking Challenge measures on label images (pure numpy).

* `seg_scores`: the CTC SEG measure's per-cell values on one frame: each true
  cell is matched with the predicted object that covers more than half of it
  (at most one can); its score is their Jaccard index, 0 when none matches.
  SEG is the mean over all true cells of all frames that have a SEG mask.
* `lineage`: a track and all its descendants (man_track.txt's parent links), so
  that an object started on a cell is judged against what the cell becomes.
* `track_masks`: full masks per track from a SEG frame, each SEG cell given to
  the track whose TRA marker covers most of it (TRA masks may be markers only).
* `track_iou`, `identity_hit`: the benchmark's track_j and identity terms for one
  object and frame (see eval/ctc.py).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np


def _overlaps(a: np.ndarray, b: np.ndarray) -> dict[tuple[int, int], int]:
    """{(label in a, label in b): pixel count} over pixels where a > 0."""
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    keep = a > 0
    pairs = a[keep].astype(np.int64) * (int(b.max(initial=0)) + 1) + b[keep].astype(np.int64)
    vals, counts = np.unique(pairs, return_counts=True)
    nb = int(b.max(initial=0)) + 1
    return {(int(v // nb), int(v % nb)): int(c) for v, c in zip(vals, counts)}


def seg_scores(pred: np.ndarray, gt: np.ndarray) -> dict[int, float]:
    """{true cell label: Jaccard with the predicted object covering more than half of it, else 0}."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and truth {gt.shape} differ in shape")
    gt_sizes = dict(zip(*[v.tolist() for v in np.unique(gt[gt > 0], return_counts=True)]))
    pred_sizes = dict(zip(*[v.tolist() for v in np.unique(pred[pred > 0], return_counts=True)]))
    scores = {int(g): 0.0 for g in gt_sizes}
    for (g, p), n in _overlaps(gt, pred).items():
        if p == 0 or 2 * n <= gt_sizes[g]:
            continue
        scores[g] = n / (gt_sizes[g] + pred_sizes[p] - n)
    return scores


def lineage(tracks: Mapping[int, tuple[int, int, int]]) -> dict[int, set[int]]:
    """{track: the track and all its descendants}; tracks maps id -> (begin, end, parent)."""
    children: dict[int, list[int]] = {}
    for k, (_, _, parent) in tracks.items():
        if parent:
            children.setdefault(int(parent), []).append(int(k))
    out = {}
    for k in tracks:
        seen, todo = set(), [int(k)]
        while todo:
            c = todo.pop()
            if c in seen:
                continue
            seen.add(c)
            todo.extend(children.get(c, []))
        out[int(k)] = seen
    return out


def track_masks(seg: np.ndarray, tra: np.ndarray) -> dict[int, np.ndarray]:
    """{track id: bool mask} from a SEG frame: each SEG cell goes to the TRA label that covers
    most of its pixels (cells that hold no TRA marker are left out)."""
    best: dict[int, tuple[int, int]] = {}
    for (s, k), n in _overlaps(seg, tra).items():
        if k and n > best.get(s, (0, 0))[1]:
            best[s] = (k, n)
    out: dict[int, np.ndarray] = {}
    for s, (k, _) in best.items():
        m = seg == s
        out[k] = out[k] | m if k in out else m
    return out


def union_of(masks: Mapping[int, np.ndarray], ids: Iterable[int], shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    for k in ids:
        if k in masks:
            out |= masks[k]
    return out


def track_iou(pred: np.ndarray, obj: int, truth: np.ndarray) -> float:
    """IoU of object `obj` of the label image `pred` with the bool mask `truth`; both empty -> 1."""
    p = np.asarray(pred) == obj
    union = np.count_nonzero(p | truth)
    return 1.0 if union == 0 else np.count_nonzero(p & truth) / union


def identity_hit(pred: np.ndarray, obj: int, marker: np.ndarray) -> bool:
    """Does object `obj` cover most (more than half) of the `marker` pixels?"""
    n = np.count_nonzero(marker)
    return n > 0 and 2 * np.count_nonzero(np.asarray(pred)[marker] == obj) > n


__all__ = ["seg_scores", "lineage", "track_masks", "union_of", "track_iou", "identity_hit"]
