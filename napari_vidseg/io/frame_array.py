"""A read-only (T, H, W, 3) uint8 array over a video source, for viewers.

napari caches the chunks of dask arrays it shows in an opportunistic cache of a
quarter of the machine's memory: scrubbing through a 10,000-frame 1080p video
held a dask-backed layer's process at 7.7 GB (`napari-vidseg bench-widget`,
docs/reliability.md). This array is no dask array: each frame napari asks for is
read through the source, whose own cache holds a couple of decoded chunks, so
memory stays flat however far the slider travels.
"""
from __future__ import annotations

import numpy as np


class FrameArray:
    def __init__(self, source):
        self.source = source
        self.shape = (int(source.n_frames), int(source.height), int(source.width), 3)
        self.dtype = np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"FrameArray({self.source!r}, shape={self.shape})"

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (4 - len(key) + 1) + key[i + 1:]
        t_key, rest = key[0], key[1:]
        if isinstance(t_key, (int, np.integer)):
            t = int(t_key) + (self.shape[0] if int(t_key) < 0 else 0)
            if not 0 <= t < self.shape[0]:
                raise IndexError(f"frame {int(t_key)} is outside the video (0-{self.shape[0] - 1})")
            return np.asarray(self.source.frame(t))[rest]
        frames = np.arange(self.shape[0])[t_key]
        return np.stack([np.asarray(self.source.frame(int(t)))[rest] for t in np.atleast_1d(frames)]) \
            if np.size(frames) else np.zeros((0,) + np.zeros(self.shape[1:], np.uint8)[rest].shape, np.uint8)

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)
