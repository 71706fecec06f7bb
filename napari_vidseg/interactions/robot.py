"""The click robot: the next click from a prediction and the truth.

The standard protocol of interactive segmentation benchmarks (Xu et al. 2016,
as used by RITM): compare the prediction with the truth, take the larger
error region (false negatives or false positives, measured by the distance
to its border) and click at its interior-most point; a positive click for a
missed object region, a negative one for a false alarm. Pixels marked as
ignored in the truth never count.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

from ..types import Click


def _interior_distance(region: np.ndarray) -> np.ndarray:
    # Pad with background so that the frame border counts as a border of the region.
    return distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def _deepest(d: np.ndarray, positive: bool) -> Click:
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return Click(float(x), float(y), bool(positive))


def interior_click(region: np.ndarray, positive: bool = True) -> Click:
    """A click at the point of `region` farthest from its border (a robot's
    click on that region; also the click propagation's refinement places on
    a propagated mask). The distances are taken over the region's bounding
    box only: the background ring around the box is as near as anything
    outside it, so they are the same as over the frame, and cheaper."""
    region = np.asarray(region, bool)
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    if len(rows) == 0:
        raise ValueError("interior_click needs a non-empty region")
    y0, x0 = rows[0], cols[0]
    c = _deepest(_interior_distance(region[y0:rows[-1] + 1, x0:cols[-1] + 1]), positive)
    return Click(c.x + x0, c.y + y0, c.positive)


def next_click(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> Click | None:
    """The robot's next click, or None when the prediction is already perfect."""
    pred = pred.astype(bool)
    gt = gt.astype(bool)
    fn = gt & ~pred
    fp = ~gt & pred
    if ignore is not None:
        fn &= ~ignore
        fp &= ~ignore
    if not fn.any() and not fp.any():
        return None
    dfn = _interior_distance(fn)
    dfp = _interior_distance(fp)
    positive = dfn.max() >= dfp.max()
    return _deepest(dfn if positive else dfp, positive)


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union; two empty masks count as a perfect 1.0 (DAVIS)."""
    pred = pred.astype(bool)
    gt = gt.astype(bool)
    if ignore is not None:
        pred = pred & ~ignore
        gt = gt & ~ignore
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union
