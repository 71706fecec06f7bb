"""Benchmark metrics: region IoU (DAVIS J), boundary F-measure (DAVIS F),
number of clicks (NoC, the RITM convention) and mean per-click curves.

Plain numpy/scipy: the benchmarks import this, the library never does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt

from ..interactions.robot import iou

__all__ = ["iou", "boundary", "boundary_f", "boundary_tolerance", "noc", "noc_from_curve",
           "pad_curve", "mean_curve"]

#: DAVIS's boundary tolerance: a fraction of the image diagonal.
BOUNDARY_TOLERANCE = 0.008


def boundary(mask: np.ndarray) -> np.ndarray:
    """The boundary map of the official DAVIS code (``seg2bmap``): every pixel,
    object or background, whose value differs from its east, south or
    south-east neighbour. On the last row only the east neighbour counts, on
    the last column only the south one, and the bottom-right corner is never a
    boundary pixel (there is nothing beyond the frame to differ from).

    So the line runs on both sides of an edge that faces east or south (the
    object's last pixel and the first background pixel before a west or north
    edge): on thin structures this differs from "object pixels with a
    background 4-neighbour" by up to a few points of F (issue 29)."""
    seg = np.asarray(mask, bool)
    if seg.ndim != 2:
        raise ValueError(f"boundary needs a 2-D mask, got shape {seg.shape}")
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def boundary_tolerance(shape: tuple[int, int], fraction: float = BOUNDARY_TOLERANCE) -> float:
    """Matching distance in pixels: at least one pixel, `fraction` of the diagonal."""
    h, w = shape[:2]
    return max(float(np.ceil(fraction * np.hypot(h, w))), 1.0)


def _matched(points: np.ndarray, target: np.ndarray, tol: float) -> int:
    """How many `points` pixels lie within `tol` (Euclidean) of a `target` pixel."""
    if not points.any():
        return 0
    if not target.any():
        return 0
    dist = distance_transform_edt(~target)  # distance to the nearest target pixel
    return int(np.count_nonzero(points & (dist <= tol)))


def boundary_f(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None,
               tolerance: float | None = None) -> float:
    """DAVIS boundary F-measure (the official ``db_eval_boundary``): boundaries
    as `boundary` (``seg2bmap``); precision = share of the prediction's boundary
    pixels within `tolerance` (Euclidean: a dilation by a disk of that radius)
    of the truth's boundary, recall = the converse;
    F = 2PR/(P+R). Both boundaries empty -> 1.0; one empty -> 0.0. Boundary
    pixels inside `ignore` are not counted (but may be matched against)."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and truth {gt.shape} differ in shape")
    tol = boundary_tolerance(gt.shape) if tolerance is None else float(tolerance)
    bp, bg = boundary(pred), boundary(gt)
    cp, cg = bp, bg
    if ignore is not None:
        keep = ~np.asarray(ignore, bool)
        cp, cg = bp & keep, bg & keep
    n_p, n_g = np.count_nonzero(cp), np.count_nonzero(cg)
    # The official code's conventions: no boundary on either side is perfect;
    # on one side only, precision or recall is 1 and the other 0, so F = 0.
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    precision = _matched(cp, bg, tol) / n_p
    recall = _matched(cg, bp, tol) / n_g
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def noc(ious_per_click: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks to reach `threshold` IoU, RITM's convention:
    `ious_per_click[i]` is the IoU after click i+1; the answer is the number of
    the first click whose IoU reaches the threshold, or `max_clicks` when none
    of the first `max_clicks` does (a failure)."""
    for i, v in enumerate(list(ious_per_click)[:max_clicks]):
        if v >= threshold:
            return i + 1
    return max_clicks


def noc_from_curve(curve: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """NoC from a curve whose index is the number of clicks (index 0 = before
    any click, e.g. a start mask in refinement mode): 0 when the start already
    reaches the threshold, else `noc(curve[1:])`."""
    curve = list(curve)
    if curve and curve[0] >= threshold:
        return 0
    return noc(curve[1:], threshold, max_clicks)


def pad_curve(curve: Sequence[float], length: int) -> list[float]:
    """Extend a per-click curve to `length` with its last value: the robot
    stops early only when the prediction is perfect, and then it stays so."""
    curve = [float(v) for v in curve]
    if not curve:
        raise ValueError("empty curve")
    return (curve + [curve[-1]] * length)[:length]


def mean_curve(curves: Sequence[Sequence[float]], length: int | None = None) -> list[float]:
    """Mean over images of per-click curves, each padded to the longest (or `length`)."""
    if not curves:
        return []
    n = length or max(len(c) for c in curves)
    return np.mean([pad_curve(c, n) for c in curves], axis=0).tolist()
