"""Synthetic video clips for training a matching network (issue 29; docs/memory.md, "What training would add next").

A clip pastes a few cut-out objects (image + mask pairs, e.g. from `train_objects/`) on a background and moves
each by its own smooth affine motion (drift, rotation, scale) with a mild elastic warp, later objects occluding
earlier ones. With `lookalike`, one object is pasted twice as two objects: the same appearance, told apart only
by where each one is and how it moves, which is what the memory propagator's local matching must learn.

    frames, labels = make_clip(background, [(rgb, mask), ...], length=8, rng=np.random.default_rng(0))
    # frames (T, H, W, 3) uint8; labels (T, H, W) uint8: 0 background, k the k-th object (copies included)

Nothing here reads DAVIS or any benchmark; the caller decides where objects and backgrounds come from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class Track:
    """One object's motion: its centre, angle (radians) and scale at frame 0 and their change per frame."""
    y: float
    x: float
    angle: float
    scale: float
    vy: float
    vx: float
    vangle: float
    vscale: float

    def at(self, t: int) -> tuple[float, float, float, float]:
        return (self.y + self.vy * t, self.x + self.vx * t, self.angle + self.vangle * t,
                max(self.scale * (1 + self.vscale) ** t, 0.05))


def random_track(rng: np.random.Generator, height: int, width: int, obj_size: int) -> Track:
    """A track whose object starts inside the frame and moves up to ~3% of the frame's side per frame."""
    side = max(height, width)
    scale = rng.uniform(0.25, 0.5) * min(height, width) / max(obj_size, 1)
    return Track(y=rng.uniform(0.2, 0.8) * height, x=rng.uniform(0.2, 0.8) * width,
                 angle=rng.uniform(-0.3, 0.3), scale=scale,
                 vy=rng.normal(0, 0.015) * side, vx=rng.normal(0, 0.015) * side,
                 vangle=rng.normal(0, 0.03), vscale=rng.normal(0, 0.02))


def warp_object(rgb: np.ndarray, mask: np.ndarray, pose, size: tuple[int, int], elastic: np.ndarray | None = None):
    """The object (rgb (h, w, 3), mask (h, w)) placed at `pose` (cy, cx, angle, scale) in a frame of `size`:
    (rgb (H, W, 3) float, alpha (H, W) float in [0, 1]). `elastic`: (2, H, W) pixel offsets added to the
    sampling grid (None: none)."""
    cy, cx, angle, scale = pose
    H, W = size
    h, w = mask.shape
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    if elastic is not None:
        yy, xx = yy + elastic[0], xx + elastic[1]
    # Frame pixel -> object pixel: undo the translation, rotation and scale about the object's centre.
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    oy = (c * dy + s * dx) / scale + h / 2
    ox = (-s * dy + c * dx) / scale + w / 2
    coords = np.stack([oy, ox])
    alpha = ndimage.map_coordinates(mask.astype(np.float32), coords, order=1, cval=0.0)
    out = np.stack([ndimage.map_coordinates(rgb[..., k].astype(np.float32), coords, order=1, cval=0.0)
                    for k in range(3)], -1)
    return out, alpha


def smooth_field(rng: np.random.Generator, size: tuple[int, int], amplitude: float, sigma: float) -> np.ndarray:
    """(2, H, W) smooth random offsets of about `amplitude` pixels (Gaussian-filtered noise)."""
    field = np.stack([ndimage.gaussian_filter(rng.normal(size=size), sigma) for _ in range(2)])
    peak = np.abs(field).max() or 1.0
    return (field / peak * amplitude).astype(np.float32)


def make_clip(background: np.ndarray, objects: list, length: int, rng: np.random.Generator,
              lookalike: bool = True, elastic: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A clip of `length` frames: `objects` [(rgb, mask)] moving over `background` (H, W, 3) uint8, plus
    (with `lookalike`) a second copy of the first object with its own motion. Returns (frames, labels)."""
    if not objects:
        raise ValueError("make_clip needs at least one object")
    H, W = background.shape[:2]
    pasted = list(objects) + ([objects[0]] if lookalike else [])
    tracks = [random_track(rng, H, W, max(m.shape)) for _, m in pasted]
    frames = np.empty((length, H, W, 3), np.uint8)
    labels = np.zeros((length, H, W), np.uint8)
    for t in range(length):
        img = background.astype(np.float32)
        lab = np.zeros((H, W), np.uint8)
        for k, ((rgb, mask), track) in enumerate(zip(pasted, tracks), start=1):
            field = smooth_field(rng, (H, W), elastic, max(H, W) / 16) if elastic > 0 else None
            obj, alpha = warp_object(rgb, mask, track.at(t), (H, W), field)
            img = img * (1 - alpha[..., None]) + obj * alpha[..., None]
            lab[alpha > 0.5] = k  # later objects occlude earlier ones
        frames[t] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        labels[t] = lab
    return frames, labels
