"""Simulated users for training: clicks, strokes, highlights and imperfect masks.

Follows the paper (and Xu et al. 2016 before it): positive clicks at least
3 px from the object's boundary and 5 px from each other; negative clicks by
three strategies: random in a 40 px band around the object, on other objects
(where another object's mask is given), and spread around the object by
farthest-point sampling. Masks to refine are the truth eroded, dilated,
shifted, or with a part cut away, so the network learns to keep what is right
and fix what is wrong.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion, distance_transform_edt, shift as nd_shift

from ..types import Click, Interactions, Stroke, StrokeKind

POS_MARGIN = 3.0
MIN_SPACING = 5.0
NEG_BAND = 40.0


def _pick_spaced(cands: np.ndarray, n: int, rng: np.random.Generator, spacing: float) -> list[tuple[float, float]]:
    """Up to n random candidates (y, x) at least `spacing` apart."""
    out: list[tuple[float, float]] = []
    if len(cands) == 0:
        return out
    order = rng.permutation(len(cands))[: max(50 * n, 50)]
    for i in order:
        y, x = cands[i]
        if all((y - py) ** 2 + (x - px) ** 2 >= spacing**2 for py, px in out):
            out.append((float(y), float(x)))
            if len(out) == n:
                break
    return out


def _farthest_points(cands: np.ndarray, n: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    if len(cands) == 0:
        return []
    sub = cands[rng.permutation(len(cands))[:2000]].astype(np.float32)
    chosen = [sub[rng.integers(len(sub))]]
    d = np.full(len(sub), np.inf, np.float32)
    for _ in range(n - 1):
        d = np.minimum(d, ((sub - chosen[-1]) ** 2).sum(1))
        chosen.append(sub[int(np.argmax(d))])
    return [(float(y), float(x)) for y, x in chosen]


def positive_clicks(gt: np.ndarray, n: int, rng: np.random.Generator) -> list[Click]:
    inner = distance_transform_edt(np.pad(gt, 1))[1:-1, 1:-1]
    cands = np.argwhere(inner >= POS_MARGIN)
    if len(cands) == 0:
        cands = np.argwhere(gt)
    return [Click(x, y, True) for y, x in _pick_spaced(cands, n, rng, MIN_SPACING)]


def negative_clicks(gt: np.ndarray, n: int, rng: np.random.Generator,
                    others: np.ndarray | None = None) -> list[Click]:
    if n <= 0:
        return []
    outer = distance_transform_edt(~gt)
    strategy = rng.integers(3 if others is not None and others.any() else 2)
    if strategy == 0:  # random in a band around the object
        cands = np.argwhere((outer > POS_MARGIN) & (outer <= NEG_BAND))
        pts = _pick_spaced(cands, n, rng, MIN_SPACING)
    elif strategy == 1:  # spread around the object
        cands = np.argwhere((outer > POS_MARGIN) & (outer <= 2 * NEG_BAND))
        pts = _farthest_points(cands, n, rng)
    else:  # on other objects
        cands = np.argwhere(others & (outer > POS_MARGIN))
        pts = _pick_spaced(cands, n, rng, MIN_SPACING)
    return [Click(x, y, False) for y, x in pts]


def _random_walk(region: np.ndarray, rng: np.random.Generator, length: int) -> list[tuple[float, float]]:
    cands = np.argwhere(region)
    if len(cands) == 0:
        return []
    y, x = cands[rng.integers(len(cands))].astype(float)
    pts = [(x, y)]
    angle = rng.uniform(0, 2 * np.pi)
    h, w = region.shape
    for _ in range(length):
        angle += rng.normal(0, 0.5)
        nx, ny = x + 4 * np.cos(angle), y + 4 * np.sin(angle)
        if not (0 <= nx < w and 0 <= ny < h) or not region[int(ny), int(nx)]:
            angle += np.pi
            continue
        x, y = nx, ny
        pts.append((x, y))
    return pts


def strokes(gt: np.ndarray, rng: np.random.Generator) -> list[Stroke]:
    """One or two scribbles or a highlighted region, inside or just outside the object."""
    out: list[Stroke] = []
    inner = distance_transform_edt(np.pad(gt, 1))[1:-1, 1:-1] >= 2 * POS_MARGIN
    outer_d = distance_transform_edt(~gt)
    outer = (outer_d > 2 * POS_MARGIN) & (outer_d <= NEG_BAND)
    for _ in range(rng.integers(1, 3)):
        positive = bool(rng.random() < 0.6)
        region = inner if positive else outer
        if rng.random() < 0.25 and positive:  # a highlighted polygon inside the object
            pts = _random_walk(region, rng, 12)
            if len(pts) >= 3:
                out.append(Stroke(tuple(pts[::3] if len(pts) > 8 else pts), True, StrokeKind.REGION))
                continue
        pts = _random_walk(region, rng, int(rng.integers(5, 30)))
        if len(pts) >= 2:
            out.append(Stroke(tuple(pts), positive, StrokeKind.PATH, float(rng.choice([3.0, 5.0]))))
    return out


def perturbed_mask(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An imperfect copy of the truth, as a propagated or earlier mask would be."""
    kind = rng.integers(5)
    m = gt.copy()
    if kind == 0:
        m = binary_erosion(m, iterations=int(rng.integers(2, 12)))
    elif kind == 1:
        m = binary_dilation(m, iterations=int(rng.integers(2, 12)))
    elif kind == 2:
        m = nd_shift(m.astype(np.uint8), (rng.integers(-15, 16), rng.integers(-15, 16)), order=0) > 0
    elif kind == 3:  # a part missing: cut by a random half-plane through the object
        ys, xs = np.nonzero(m)
        if len(ys):
            i = rng.integers(len(ys))
            a = rng.uniform(0, 2 * np.pi)
            yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
            m &= (np.cos(a) * (xx - xs[i]) + np.sin(a) * (yy - ys[i])) < 0
    else:  # a blob of false positive next to the object
        yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
        outer = np.argwhere(binary_dilation(m, iterations=20) & ~m)
        if len(outer):
            cy, cx = outer[rng.integers(len(outer))]
            r = rng.uniform(5, 25)
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return m


def initial_interactions(gt: np.ndarray, rng: np.random.Generator,
                         others: np.ndarray | None = None) -> Interactions:
    """What a user does first: a few clicks, or strokes, or both."""
    mode = rng.random()
    inter = Interactions()
    if mode < 0.7 or not gt.any():
        n_pos = int(rng.choice([1, 1, 1, 2, 2, 3, 4, 5]))
        n_neg = int(rng.choice([0, 0, 0, 1, 1, 2, 3, 5]))
        inter.clicks = positive_clicks(gt, n_pos, rng) + negative_clicks(gt, n_neg, rng, others)
    else:
        inter.strokes = strokes(gt, rng)
        if mode > 0.9:
            inter.clicks = positive_clicks(gt, 1, rng)
    return inter


def error_click(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> Click | None:
    """A correction click sampled inside the larger error region (random point
    among the interior half, so training sees more than the robot's one point)."""
    fn, fp = gt & ~pred, ~gt & pred
    dfn = distance_transform_edt(np.pad(fn, 1))[1:-1, 1:-1]
    dfp = distance_transform_edt(np.pad(fp, 1))[1:-1, 1:-1]
    if max(dfn.max(), dfp.max()) < 1:
        return None
    positive = dfn.max() >= dfp.max()
    d = dfn if positive else dfp
    cands = np.argwhere(d >= max(d.max() / 2, 1))
    y, x = cands[rng.integers(len(cands))]
    return Click(float(x), float(y), bool(positive))
