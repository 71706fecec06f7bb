"""A (T, H, W) label volume that is never held in memory: frames are built from
a session's mask store when asked for, and edits are reported to the caller.

napari's Labels layer accepts any array-like with ``shape``, ``dtype``,
``__getitem__`` and ``__setitem__`` (zarr, tensorstore...).  Handing it this
view instead of a dense array keeps the GUI's memory flat however long the video
(10,000 frames of 1080p would be 20 GB as uint16), and every write napari makes
(brush, fill, eraser, ``data_setitem``, its own undo and redo) passes through
``__setitem__``: the owner learns which frames the user changed without
reading napari's private history or patching its methods.

Edited frames are pinned in memory until the owner has stored them
(``pending`` / ``settle``); other frames live in a small LRU cache.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Iterable

import numpy as np

from ..io.frame_array import FrameStack, expand_key, frame_index

Index = object  # an int, slice, Ellipsis, array or a tuple of them (numpy's rules)


class LabelVolume(FrameStack):
    """Lazy (T, H, W) label images.

    frame_labels(t) -> (H, W) label image of frame t (what the session holds).
    on_write(frames) is called after each write with the sorted frames it touched
    (napari writes only what the user does: the owner shows the session's changes by
    ``invalidate``-ing frames, which napari then reads again).
    """

    def __init__(self, frame_labels: Callable[[int], np.ndarray], shape: tuple[int, int, int],
                 dtype=np.uint16, on_write: Callable[[list[int]], None] | None = None, cache_frames: int = 16):
        self._frame_labels = frame_labels
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.on_write = on_write
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = max(1, int(cache_frames))
        self._edited: dict[int, int] = {}  # frame -> edit count, pinned until settled
        self._lock = threading.RLock()  # reads may come from a worker (export of the layer)

    # -- the array protocol napari needs (reads: FrameStack over frame()) -------------------
    def __repr__(self) -> str:
        return f"LabelVolume(shape={self.shape}, dtype={self.dtype}, cached={len(self._cache)}, " \
               f"edited={sorted(self._edited)})"

    def __getitem__(self, key: Index) -> np.ndarray:
        key = expand_key(key, self.ndim)
        if not (_is_fancy(key[:1]) and _is_fancy(key[1:])):  # frames, then numpy's indexing
            return super().__getitem__(key)
        # points: one (t, row, col) per element (napari's data_setitem reads these)
        ts, rows, cols = np.broadcast_arrays(*(_fancy_axis(k, n) for k, n in zip(key, self.shape)))
        out = np.zeros(ts.shape, self.dtype)
        for t in np.unique(ts):
            sel = ts == t
            out[sel] = self.frame(int(t))[rows[sel], cols[sel]]
        return out

    def __setitem__(self, key: Index, value) -> None:
        key = expand_key(key, self.ndim)
        t_key, rest = key[0], key[1:]
        value = np.asarray(value)
        touched: list[int] = []
        with self._lock:
            if _is_fancy(key[:1]) and _is_fancy(rest):  # points: one (t, row, col) per element
                ts, rows, cols = np.broadcast_arrays(*(_fancy_axis(k, n) for k, n in zip(key, self.shape)))
                values = np.broadcast_to(value, ts.shape)
                for t in np.unique(ts):
                    sel = ts == t
                    self._writable(int(t))[rows[sel], cols[sel]] = values[sel]
                    touched.append(int(t))
            elif isinstance(t_key, (int, np.integer)):
                t = frame_index(t_key, self.shape[0])
                self._writable(t)[rest] = value
                touched = [t]
            else:  # a slice or a list of frames
                touched = list(range(*t_key.indices(self.shape[0]))) if isinstance(t_key, slice) else \
                    [frame_index(t, self.shape[0]) for t in np.ravel(t_key)]
                for i, t in enumerate(touched):
                    self._writable(t)[rest] = value[i] if value.ndim == 3 else value
            for t in touched:
                self._edited[t] = self._edited.get(t, 0) + 1
        if touched and self.on_write is not None:
            self.on_write(sorted(set(touched)))

    # -- frames ----------------------------------------------------------------------------
    def frame(self, t: int) -> np.ndarray:
        """Frame t's label image (the cached array: do not modify it)."""
        with self._lock:
            cached = self._cache.get(t)
            if cached is not None:
                self._cache.move_to_end(t)
                return cached
        labels = np.asarray(self._frame_labels(t)).astype(self.dtype, copy=False)
        if labels.shape != self.shape[1:]:
            raise ValueError(f"frame {t}'s labels have shape {labels.shape}, expected {self.shape[1:]}")
        with self._lock:
            if t in self._cache:  # written meanwhile: the newer content wins
                return self._cache[t]
            self._cache[t] = labels
            self._evict()
            return labels

    def _writable(self, t: int) -> np.ndarray:
        frame = self.frame(t)
        if not frame.flags.writeable or frame.base is not None:
            frame = frame.copy()
        with self._lock:
            self._cache[t] = frame
            self._cache.move_to_end(t)
        return frame

    def _evict(self) -> None:
        # Edited frames stay until stored: dropping them would lose the user's paint.
        while len(self._cache) > self._cache_frames:
            victim = next((t for t in self._cache if t not in self._edited), None)
            if victim is None:
                return
            del self._cache[victim]

    def invalidate(self, frames: Iterable[int] | None = None) -> None:
        """The session changed these frames (None: all): read them again when asked.
        Frames with edits not yet stored are kept."""
        with self._lock:
            drop = list(self._cache) if frames is None else [int(t) for t in frames]
            for t in drop:
                if t not in self._edited:
                    self._cache.pop(t, None)

    # -- edits waiting to be stored ------------------------------------------------------
    def pending(self, frames: Iterable[int] | None = None) -> dict[int, tuple[np.ndarray, int]]:
        """Edited frames: t -> (a copy of its label image, its edit count) for the owner to store."""
        with self._lock:
            ts = list(self._edited) if frames is None else [t for t in frames if t in self._edited]
            return {t: (self._cache[t].copy(), self._edited[t]) for t in ts}

    def settle(self, stored: dict[int, int]) -> None:
        """The owner stored frames t at edit count n: unpin those not edited since."""
        with self._lock:
            for t, n in stored.items():
                if self._edited.get(t) == n:
                    del self._edited[t]
                    self._cache.pop(t, None)  # re-read what the session now holds
            self._evict()

    @property
    def edited(self) -> list[int]:
        return sorted(self._edited)


def _is_fancy(key: tuple) -> bool:
    return any(isinstance(k, (np.ndarray, list)) for k in key)


def _fancy_axis(k, n: int) -> np.ndarray:
    if isinstance(k, slice):
        return np.arange(n)[k]
    a = np.asarray(k)
    if a.dtype == bool:
        raise IndexError("boolean masks are not supported by LabelVolume; index with integer arrays")
    return np.where(a < 0, a + n, a).astype(np.intp)
