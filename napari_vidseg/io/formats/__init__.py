"""Writers for the formats downstream tools read: Cell Tracking Challenge, OME-Zarr labels,
COCO instance JSON (RLE masks), label TIFF.

Every writer takes the same two things and nothing from the session, so any caller can
use it:

* `labels`: an iterable of (H, W) integer label images, one per frame in order
  (frame t -> object ids, 0 = background); it is consumed once, frame by frame,
  and never held whole;
* `objects`: `TrackedObject(id, name, parent)` for the ids that occur (optional;
  an id without an entry is named "object <id>" with no parent).

Each writer is a generator that yields the index of each frame written (progress,
and a cancellation point) and returns the path written; `write(fmt, ...)` drains one.
Files are written under a temporary name and moved into place at the end: a
cancelled or failed export leaves no half-written output behind.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ...types import InputError


@dataclass(frozen=True)
class TrackedObject:
    id: int
    name: str = ""
    parent: int = 0  # the id of the object this one divided from; 0: none

    def label(self) -> str:
        return self.name or f"object {self.id}"


def object_table(objects: Sequence[TrackedObject] | None) -> dict[int, TrackedObject]:
    """{id: TrackedObject}; InputError on an id below 1 or above 65535, or one given twice."""
    table: dict[int, TrackedObject] = {}
    for o in objects or ():
        if not 1 <= int(o.id) <= 65535:
            raise InputError(f"object id {o.id} is out of range: ids are 1..65535")
        if int(o.id) in table:
            raise InputError(f"object id {o.id} is given twice")
        table[int(o.id)] = o
    return table


def checked_frames(labels: Iterable[np.ndarray], shape: tuple[int, int] | None = None
                   ) -> Iterator[tuple[int, np.ndarray]]:
    """(t, uint16 label image) with every frame the same 2-D shape and ids in 0..65535."""
    for t, lab in enumerate(labels):
        lab = np.asarray(lab)
        if lab.ndim != 2:
            raise InputError(f"label frame {t} has shape {lab.shape}: expected a 2-D (H, W) label image")
        if shape is None:
            shape = lab.shape
        elif lab.shape != tuple(shape):
            raise InputError(f"label frame {t} has shape {lab.shape}, expected {tuple(shape)}")
        if lab.dtype == bool:
            lab = lab.astype(np.uint16)
        if lab.size and (lab.min() < 0 or lab.max() > 65535):
            raise InputError(f"label frame {t} holds ids outside 0..65535")
        yield t, lab.astype(np.uint16, copy=False)


def masks_to_labels(masks, shape: tuple[int, int]) -> np.ndarray:
    """{object id: (H, W) bool mask} -> one (H, W) uint16 label image. Where masks overlap
    (objects propagated one by one may claim the same pixels) the pixel goes to the object
    it lies deepest inside (largest distance to that mask's edge), so that a mask that
    spills over a neighbour loses the neighbour's core to it."""
    from scipy.ndimage import distance_transform_edt

    labels = np.zeros(shape, np.uint16)
    depth = np.zeros(shape, np.float32)
    for obj, m in masks.items():
        m = np.asarray(m, bool)
        if m.shape != tuple(shape):
            raise InputError(f"object {obj}'s mask has shape {m.shape}, expected {tuple(shape)}")
        if not m.any():
            continue
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        d = distance_transform_edt(np.pad(m[y0:y1, x0:x1], 1))[1:-1, 1:-1].astype(np.float32)
        win_l, win_d = labels[y0:y1, x0:x1], depth[y0:y1, x0:x1]
        take = d > win_d
        win_l[take] = int(obj)
        win_d[take] = d[take]
    return labels


def tmp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def write(fmt: str, path, labels, objects=None, **kw) -> Path:
    """Drain one writer: fmt is "ctc", "ome-zarr", "coco" or "label-tiff"."""
    from . import coco, ctc, label_tiff, ome_zarr

    writers = {"ctc": ctc.ctc_writer, "ome-zarr": ome_zarr.ome_zarr_labels_writer,
               "coco": coco.coco_writer, "label-tiff": label_tiff.label_tiff_writer}
    if fmt not in writers:
        raise InputError(f"unknown export format {fmt!r}: one of {', '.join(writers)}")
    gen = writers[fmt](path, labels, objects, **kw)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


__all__ = ["TrackedObject", "object_table", "checked_frames", "masks_to_labels", "write"]
