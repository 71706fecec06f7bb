"""OME-Zarr labels (NGFF): ``PATH/labels/<name>/0`` holds the (T, Y, X) uint16 label volume,
one zarr chunk per frame written as it comes, with the multiscales metadata (axes t, y, x
with their units and the physical scale as a coordinate transformation) and the
``image-label`` metadata (a colour and properties, name and parent, per object). ``PATH``
is an OME-Zarr image group: pass `image` (frames as (H, W, 3) uint8 or (H, W) arrays) to
store the image there as well; else only the labels group is written under it, which
napari-ome-zarr and ome-zarr's Reader read on their own (open ``PATH/labels/<name>``)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ...types import InputError
from . import TrackedObject, checked_frames, object_table, tmp_path_for

_UNIT = {"µm": "micrometer", "um": "micrometer", "micron": "micrometer", "nm": "nanometer", "mm": "millimeter",
         "s": "second", "sec": "second", "min": "minute", "ms": "millisecond", "h": "hour"}


def _axes(units: dict) -> list[dict]:
    out = []
    for a, kind in (("t", "time"), ("y", "space"), ("x", "space")):
        d = {"name": a, "type": kind}
        u = _UNIT.get(units.get(a.upper(), ""), units.get(a.upper()))
        if u:
            d["unit"] = u
        out.append(d)
    return out


def ome_zarr_labels_writer(path, labels: Iterable[np.ndarray], objects: Iterable[TrackedObject] | None = None,
                           shape: tuple[int, int, int] | None = None, name: str = "vidseg",
                           scale: dict | None = None, units: dict | None = None) -> Iterator[int]:
    """Write the label volume of `shape` (T, H, W) frame by frame (see the module's doc)."""
    import zarr
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    if shape is None or len(shape) != 3:
        raise InputError("the OME-Zarr writer needs shape=(T, H, W): the array is created before the frames come")
    path = Path(path)
    if path.exists():
        raise InputError(f"{path} exists: choose a new path for the OME-Zarr")
    table = object_table(list(objects or ()))
    scale = dict(scale or {})
    T, H, W = (int(v) for v in shape)
    tmp = tmp_path_for(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    fmt = CurrentFormat()
    try:
        root = zarr.open_group(str(tmp), mode="w")
        labels_grp = root.require_group("labels")
        labels_grp.attrs["labels"] = [name]
        grp = labels_grp.require_group(name)
        arr = grp.create_array("0", shape=(T, H, W), chunks=(1, H, W), dtype=np.uint16, fill_value=0)
        seen: set[int] = set()
        count = 0
        for t, lab in checked_frames(labels, (H, W)):
            if t >= T:
                raise InputError(f"more label frames than shape's {T}")
            arr[t] = lab
            seen.update(np.unique(lab).tolist())
            count += 1
            yield t
        if count != T:
            raise InputError(f"the OME-Zarr writer was told {T} frames and got {count}")
        transform = [{"type": "scale", "scale": [float(scale.get("T", 1.0)), float(scale.get("Y", 1.0)),
                                                 float(scale.get("X", 1.0))]}]
        write_multiscales_metadata(grp, [{"path": "0", "coordinateTransformations": transform}], fmt=fmt,
                                   axes=_axes(dict(units or {})), name=name)
        ids = sorted((seen - {0}) | set(table))
        colors, props = [], []
        for i in ids:
            o = table.get(i, TrackedObject(i))
            rgb = _color(i)
            colors.append({"label-value": int(i), "rgba": [*rgb, 255]})
            props.append({"label-value": int(i), "name": o.label(), "parent": int(o.parent)})
        write_label_metadata(labels_grp, name, colors=colors, properties=props, fmt=fmt)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _color(i: int) -> list[int]:
    """A stable, distinct-looking colour per id (golden-ratio hues)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
    return [int(255 * r), int(255 * g), int(255 * b)]
