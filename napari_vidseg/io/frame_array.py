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


def expand_key(key, ndim: int) -> tuple:
    """An index as a tuple of exactly `ndim` entries (Ellipsis expanded, missing axes as `:`)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1:]
    if len(key) > ndim:
        raise IndexError(f"too many indices for a {ndim}-d array: {len(key)}")
    return key + (slice(None),) * (ndim - len(key))


def frame_index(t, n: int) -> int:
    """Frame t of n (negative counts from the end); IndexError outside the video."""
    t = int(t)
    if t < 0:
        t += n
    if not 0 <= t < n:
        raise IndexError(f"frame {t} is outside the video (0-{n - 1})")
    return t


class FrameStack:
    """The read-only array protocol napari needs over `frame(t)`: an int, a slice or a list of
    frames on the first axis, anything numpy takes on the others. Subclasses set `shape` and
    `dtype` and define `frame`."""

    shape: tuple
    dtype: np.dtype

    def frame(self, t: int) -> np.ndarray:
        raise NotImplementedError

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        key = expand_key(key, self.ndim)
        t_key, rest = key[0], key[1:]
        if isinstance(t_key, (int, np.integer)):
            return np.asarray(self.frame(frame_index(t_key, self.shape[0])))[rest]
        ts = np.arange(self.shape[0])[t_key] if isinstance(t_key, slice) else \
            [frame_index(t, self.shape[0]) for t in np.ravel(t_key)]
        if len(ts) == 0:
            return np.zeros((0,) + np.zeros(self.shape[1:], self.dtype)[rest].shape, self.dtype)
        return np.stack([np.asarray(self.frame(int(t)))[rest] for t in ts])

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class FrameArray(FrameStack):
    def __init__(self, source):
        self.source = source
        self.shape = (int(source.n_frames), int(source.height), int(source.width), 3)
        self.dtype = np.dtype(np.uint8)

    def __repr__(self) -> str:
        return f"FrameArray({self.source!r}, shape={self.shape})"

    def frame(self, t: int) -> np.ndarray:
        return np.asarray(self.source.frame(t))
