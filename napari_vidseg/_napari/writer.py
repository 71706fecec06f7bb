"""npe2 writer for Labels layers, streaming frame by frame (the widget's masks layer
reads frames lazily from the session; the volume is never built in memory).

* a path ending in .npy / .tif / .tiff: the whole (T, H, W) label volume;
* any other path (napari's Save dialog, file type "folder of PNG masks"): a folder of
  PNG masks in DAVIS layout (00000.png, ...), 0/255 for a single object, palette
  labels otherwise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _frames(data):
    """(H, W) frames of a Labels layer's data, one at a time (a 2D layer is one frame)."""
    if len(data.shape) == 2:
        yield np.asarray(data)
        return
    for t in range(data.shape[0]):
        yield np.asarray(data[t])


def write_labels(path: str, data, attributes: dict) -> list[str]:
    p = Path(path)
    shape = tuple(data.shape) if len(data.shape) == 3 else (1, *data.shape)
    if p.suffix.lower() in (".npy", ".tif", ".tiff"):
        from ..io.export import write_label_volume

        write_label_volume(p, _frames(data), shape=shape)
        return [str(p)]
    from ..io.masks import write_mask_folder

    ids: set[int] = set()
    for frame in _frames(data):  # a first pass for the ids only: one object -> 0/255 masks
        ids |= {int(v) for v in np.unique(frame) if v}
        if len(ids) > 1:
            break
    single = len(ids) <= 1
    write_mask_folder(p, ((t, (f != 0) if single else f) for t, f in enumerate(_frames(data))))
    return [str(p)]
