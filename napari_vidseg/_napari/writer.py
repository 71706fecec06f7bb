"""npe2 writer for Labels layers.

* a path ending in .npy / .tif / .tiff: the whole (T, H, W) label volume;
* any other path: a folder of PNG masks in DAVIS layout (00000.png, ...), written
  with `io.masks.write_mask_folder` (0/255 for a single object, palette labels otherwise).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_labels(path: str, data, attributes: dict) -> list[str]:
    p = Path(path)
    labels = np.asarray(data)
    if labels.ndim == 2:
        labels = labels[None]
    if p.suffix.lower() in (".npy", ".tif", ".tiff"):
        from ..io.export import write_label_volume

        write_label_volume(p, labels)
        return [str(p)]
    from ..io.masks import write_mask_folder

    ids = np.unique(labels)
    single = len(ids[ids != 0]) <= 1
    frames = ((t, (labels[t] != 0) if single else labels[t]) for t in range(labels.shape[0]))
    write_mask_folder(p, frames)
    return [str(p)]
