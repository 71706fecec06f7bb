"""A VideoSource look-alike over an array already in a napari layer.

Used when an image layer did not come from the plugin's reader (no
``metadata["vidseg_path"]``): a numpy or dask (T, H, W, 3) RGB or (T, H, W)
grey time series.  Only the part of the VideoSource interface the session,
propagation and export use is provided; frames are read on demand, so a dask
array stays lazy.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..io.video import RGBFramesMixin
from ..types import InputError


def _to_uint8_rgb(a: np.ndarray, rgb: bool) -> np.ndarray:
    """(..., H, W, C) if rgb else (..., H, W), of any numeric type -> (..., H, W, 3) uint8."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        # Float images in napari are usually 0..1; anything larger is taken as 0..255.
        scale = 255.0 if a.size and np.nanmax(a) <= 1.0 else 1.0
        a = np.clip(np.nan_to_num(a) * scale, 0, 255).astype(np.uint8)
    if rgb:
        return np.ascontiguousarray(a[..., :3])
    return np.repeat(a[..., None], 3, axis=-1)


class ArraySource(RGBFramesMixin):
    """Frames of an in-memory or dask array, with the VideoSource reading methods
    (shape, dtype, ndim and len as VideoSource's: RGBFramesMixin)."""

    def __init__(self, array, fps: float = 25.0, rgb: bool | None = None, name: str = "array"):
        shape = tuple(array.shape)
        if rgb is None:
            rgb = len(shape) == 4 and shape[-1] in (3, 4)
        if (rgb and len(shape) != 4) or (not rgb and len(shape) != 3):
            raise InputError(
                f"{name} has shape {shape}: expected (T, H, W, 3) RGB frames or a (T, H, W) time series")
        if shape[0] < 1:
            raise InputError(f"{name} has no frames")
        self.array = array
        self.rgb = rgb
        self.name = name
        self.path = None
        self.fps = float(fps)
        self.n_frames, self.height, self.width = int(shape[0]), int(shape[1]), int(shape[2])

    def __repr__(self) -> str:
        return f"ArraySource({self.name!r}, {self.n_frames} frames, {self.width}x{self.height})"

    def _check(self, t) -> int:
        t = int(t)
        if not 0 <= t < self.n_frames:
            raise InputError(f"frame {t} does not exist ({self.name} has {self.n_frames} frames)")
        return t

    def frame(self, t: int) -> np.ndarray:
        return _to_uint8_rgb(np.asarray(self.array[self._check(t)]), self.rgb)

    def frames(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(int(start), 0), min(int(stop), self.n_frames)
        if stop <= start:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        return _to_uint8_rgb(np.asarray(self.array[start:stop]), self.rgb)

    def iter_chunks(self, start: int = 0, stop: int | None = None,
                    chunk: int = 16) -> Iterator[tuple[int, np.ndarray]]:
        stop = self.n_frames if stop is None else min(int(stop), self.n_frames)
        for first in range(int(start), stop, chunk):
            yield first, self.frames(first, min(first + chunk, stop))

    def __getitem__(self, t):
        return self.frame(t)

    def to_dask(self):
        import dask.array as da

        return da.from_array(self.array, chunks=(16,) + tuple(self.array.shape[1:]))
