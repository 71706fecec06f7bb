"""Clicks and strokes to network input channels (signed Gaussians).

The paper's encoding: a Gaussian is added at each positive click and subtracted
at each negative one; strokes are encoded the same way along their drawn pixels
and highlighted regions are filled. Everything works on plain (x, y)
coordinates in the frame (or crop) the channels are made for, so the napari
adapters, the click robot and training all share one piece of code.
"""
from __future__ import annotations

import numpy as np

from ..types import Click, Interactions, Stroke, StrokeKind

#: Gaussian sigma at the network's input resolution, in pixels.
DEFAULT_SIGMA = 5.0


def _gaussian_max(points: np.ndarray, height: int, width: int, sigma: float) -> np.ndarray:
    """max over points of exp(-d^2 / 2 sigma^2), evaluated only near each point."""
    out = np.zeros((height, width), np.float32)
    if len(points) == 0:
        return out
    r = int(np.ceil(3 * sigma))
    inv = 1.0 / (2.0 * sigma * sigma)
    for x, y in points:
        if not (-r <= x <= width + r and -r <= y <= height + r):
            continue  # no effect inside the frame (and keeps huge values from overflowing)
        x0, x1 = max(int(np.floor(x)) - r, 0), min(int(np.ceil(x)) + r + 1, width)
        y0, y1 = max(int(np.floor(y)) - r, 0), min(int(np.ceil(y)) + r + 1, height)
        if x0 >= x1 or y0 >= y1:
            continue
        gx = np.exp(-((np.arange(x0, x1, dtype=np.float32) - x) ** 2) * inv)
        gy = np.exp(-((np.arange(y0, y1, dtype=np.float32) - y) ** 2) * inv)
        np.maximum(out[y0:y1, x0:x1], gy[:, None] * gx[None, :], out=out[y0:y1, x0:x1])
    return out


def click_channel(clicks: list[Click], height: int, width: int, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Sum of +Gaussians at positive and -Gaussians at negative clicks, clipped to [-1, 1]."""
    out = np.zeros((height, width), np.float32)
    for c in clicks:
        g = _gaussian_max(np.array([[c.x, c.y]], np.float32), height, width, sigma)
        out += g if c.positive else -g
    return np.clip(out, -1.0, 1.0)


def _densify(points: tuple[tuple[float, float], ...], step: float, closed: bool) -> np.ndarray:
    """Points along a polyline spaced at most `step` apart."""
    pts = np.asarray(points, np.float32)
    if closed:
        pts = np.vstack([pts, pts[:1]])
    if len(pts) == 1:
        return pts
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(int(np.ceil(np.hypot(*(b - a)) / step)), 1)
        t = np.arange(1, n + 1, dtype=np.float32)[:, None] / n
        out.append(a + t * (b - a))
    return np.vstack(out)


def polygon_mask(points: tuple[tuple[float, float], ...], height: int, width: int) -> np.ndarray:
    """Filled polygon (even-odd rule), evaluated at pixel centres, without extra deps."""
    pts = np.asarray(points, np.float64)
    xs = np.arange(width, dtype=np.float64)[None, :]
    ys = np.arange(height, dtype=np.float64)[:, None]
    inside = np.zeros((height, width), bool)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    # Only rows inside the polygon's bounding box can be inside.
    r0, r1 = max(int(np.floor(y0.min())), 0), min(int(np.ceil(y0.max())) + 1, height)
    if r0 >= r1:
        return inside
    ys = ys[r0:r1]
    for ax, ay, bx, by in zip(x0, y0, x1, y1):
        if ay == by:
            continue
        crosses = (ay > ys) != (by > ys)  # (rows, 1)
        xint = ax + (ys - ay) * (bx - ax) / (by - ay)
        inside[r0:r1] ^= crosses & (xs < xint)
    return inside


def _bounded(points, height: int, width: int):
    """Vertices clamped to one frame size around the frame, so a stray vertex far
    away cannot make densification allocate without bound."""
    return tuple((min(max(x, -width), 2 * width), min(max(y, -height), 2 * height)) for x, y in points)


def stroke_mask(stroke: Stroke, height: int, width: int) -> np.ndarray:
    """The pixels a stroke marks: the drawn line (paths) or the filled inside (regions)."""
    pts = _bounded(stroke.points, height, width)
    if stroke.kind is StrokeKind.REGION:
        m = polygon_mask(pts, height, width)
        line = _densify(pts, 0.5, closed=True)
        width_px = 1.0
    else:
        m = np.zeros((height, width), bool)
        line = _densify(pts, 0.5, closed=False)
        width_px = max(stroke.width, 1.0)
    xi = np.clip(np.round(line[:, 0]).astype(int), 0, width - 1)
    yi = np.clip(np.round(line[:, 1]).astype(int), 0, height - 1)
    ok = (line[:, 0] > -0.5) & (line[:, 0] < width - 0.5) & (line[:, 1] > -0.5) & (line[:, 1] < height - 0.5)
    r = int(width_px // 2)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy <= r * r:
                m[np.clip(yi[ok] + dy, 0, height - 1), np.clip(xi[ok] + dx, 0, width - 1)] = True
    return m


def stroke_channel(strokes: list[Stroke], height: int, width: int, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Signed Gaussians along drawn pixels: +1 on positive, -1 on negative marks,
    falling off like a click's Gaussian around them."""
    out = np.zeros((height, width), np.float32)
    for s in strokes:
        pts = _bounded(s.points, height, width)
        closed = s.kind is StrokeKind.REGION
        g = _gaussian_max(_densify(pts, sigma / 2, closed=closed), height, width, sigma)
        # Exactly 1 on the marked pixels themselves (the drawn line or the
        # region's inside), falling off like a click's Gaussian around them.
        g = np.maximum(g, stroke_mask(s, height, width).astype(np.float32))
        out += g if s.positive else -g
    return np.clip(out, -1.0, 1.0)


def encode(interactions: Interactions, height: int, width: int, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """(2, H, W) float32: the click channel and the stroke channel."""
    return np.stack([
        click_channel(interactions.clicks, height, width, sigma),
        stroke_channel(interactions.strokes, height, width, sigma),
    ])


def marked_pixels(interactions: Interactions, height: int, width: int, radius: float = 2.0):
    """Boolean masks (positive, negative) of the pixels the user marked for sure:
    a small disk at each click and the drawn pixels of each stroke. The
    predictor clamps these to their label."""
    pos = np.zeros((height, width), bool)
    neg = np.zeros((height, width), bool)
    r = int(np.ceil(radius))
    for c in interactions.clicks:
        if not c.inside(height, width):
            continue
        # Only the disk's own window: a full-frame test per click cost ~5 ms at 854x480.
        y0, x0 = max(int(np.floor(c.y)) - r, 0), max(int(np.floor(c.x)) - r, 0)
        y1, x1 = min(int(np.ceil(c.y)) + r + 1, height), min(int(np.ceil(c.x)) + r + 1, width)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d = (xx - c.x) ** 2 + (yy - c.y) ** 2 <= radius * radius
        (pos if c.positive else neg)[y0:y1, x0:x1] |= d
    for s in interactions.strokes:
        m = stroke_mask(s, height, width)
        (pos if s.positive else neg)[m] = True
    # The later mark wins where they overlap is unknowable here; be conservative.
    both = pos & neg
    pos[both] = False
    neg[both] = False
    return pos, neg
