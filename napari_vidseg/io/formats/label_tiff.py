"""Label TIFF: one uint16 page per frame, ImageJ hyperstack metadata (axes TYX, pixel size,
frame interval, unit) so Fiji and tifffile see the physical scale, and the objects' names
and parents as JSON in the ImageJ ``Info`` field."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ...types import InputError
from . import TrackedObject, checked_frames, object_table, tmp_path_for


def label_tiff_writer(path, labels: Iterable[np.ndarray], objects: Iterable[TrackedObject] | None = None,
                      n_frames: int | None = None, scale: dict | None = None, units: dict | None = None
                      ) -> Iterator[int]:
    """Write `labels` to a multi-page TIFF. `n_frames` is needed for ImageJ's frame count
    (the header is written before the pages); `scale`/`units`: {"T", "Y", "X"}."""
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"a label TIFF ends in .tif or .tiff, got {path.name!r}")
    if not n_frames:
        raise InputError("label_tiff_writer needs n_frames (the ImageJ header comes before the pages)")
    table = object_table(list(objects or ()))
    scale, units = dict(scale or {}), dict(units or {})
    info = json.dumps({"objects": [{"id": o.id, "name": o.label(), "parent": o.parent} for o in table.values()]})
    meta: dict = {}
    if "T" in scale:
        meta["finterval"] = float(scale["T"])
        if units.get("T"):
            meta["tunit"] = units["T"]
    if units.get("X"):
        meta["unit"] = _imagej_unit(units["X"])
    resolution = (1.0 / float(scale["X"]), 1.0 / float(scale["Y"])) if "X" in scale and "Y" in scale else None
    tmp = tmp_path_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        count = 0
        with tifffile.TiffWriter(tmp) as tw:
            # The ImageJ header (a description on the first page, and the IJMetadata tag for Info) is
            # made by hand from the known frame count, so each page can be written as it comes.
            for t, lab in checked_frames(labels):
                first = {}
                if t == 0:
                    first = {"description": tifffile.imagej_description((int(n_frames),) + lab.shape, "TYX", **meta),
                             "extratags": tifffile.imagej_metadata_tag({"Info": info}, tw.tiff.byteorder),
                             "resolution": resolution}
                tw.write(lab, metadata=None, contiguous=False, **first)
                count += 1
                yield t
        if count != n_frames:
            raise InputError(f"label_tiff_writer was told {n_frames} frames and got {count}")
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def _imagej_unit(unit: str) -> str:
    """TIFF text is ASCII: ImageJ writes micrometres as "micron" and other symbols \\uXXXX-escaped."""
    if unit in ("µm", "μm", "um"):
        return "micron"
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04X}" for c in unit)
