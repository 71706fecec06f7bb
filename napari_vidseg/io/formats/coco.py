"""COCO instance segmentation JSON with RLE masks (pycocotools' compressed RLE).

One COCO image per frame (``file_name`` = ``<prefix><t:05d>.png``, plus ``frame_index``),
one category per object name (objects with the same name share it), one annotation per
object and frame where it is present, with ``track_id`` (the object's id) and
``parent_id`` as extra fields (the YouTube-VIS / TAO habit), ``area``, ``bbox`` from the
mask, ``iscrowd`` 0. The JSON is written as it goes: each frame's annotations are encoded
and written, nothing is kept but the categories.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ...types import InputError
from . import TrackedObject, checked_frames, object_table, tmp_path_for


def rle_of(mask: np.ndarray) -> dict:
    """pycocotools' compressed RLE of a 2-D bool mask, counts as a str (JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def coco_writer(path, labels: Iterable[np.ndarray], objects: Iterable[TrackedObject] | None = None,
                file_prefix: str = "", info: dict | None = None) -> Iterator[int]:
    """Write a COCO instance JSON to `path` frame by frame."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise InputError(f"a COCO file ends in .json, got {path.name!r}")
    table = object_table(list(objects or ()))
    categories: dict[str, int] = {}
    tmp = tmp_path_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ann_id = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fp:
            fp.write('{"info": ' + json.dumps(info or {"description": "napari-vidseg export"}))
            fp.write(', "licenses": [], "images": [')
            images = []
            # annotations go to a side file while frames stream, then are appended after the images list
            ann_tmp = tmp.with_name(tmp.name + ".ann")
            with open(ann_tmp, "w", encoding="utf-8") as af:
                for t, lab in checked_frames(labels):
                    H, W = lab.shape
                    images.append({"id": t + 1, "file_name": f"{file_prefix}{t:05d}.png", "width": int(W),
                                   "height": int(H), "frame_index": t})
                    for obj in np.unique(lab).tolist():
                        if obj == 0:
                            continue
                        o = table.get(obj, TrackedObject(obj))
                        cat = categories.setdefault(o.label(), len(categories) + 1)
                        m = lab == obj
                        rle = rle_of(m)
                        ys, xs = np.nonzero(m)
                        x0, y0 = int(xs.min()), int(ys.min())
                        ann = {"id": ann_id + 1, "image_id": t + 1, "category_id": cat, "segmentation": rle,
                               "area": float(len(ys)),
                               "bbox": [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)],
                               "iscrowd": 0, "track_id": int(obj), "parent_id": int(o.parent)}
                        af.write(("," if ann_id else "") + json.dumps(ann))
                        ann_id += 1
                    yield t
            fp.write(",".join(json.dumps(im) for im in images))
            fp.write('], "annotations": [')
            with open(ann_tmp, encoding="utf-8") as af:
                while True:
                    block = af.read(1 << 20)
                    if not block:
                        break
                    fp.write(block)
            os.remove(ann_tmp)
            cats = [{"id": i, "name": n, "supercategory": "object"} for n, i in categories.items()]
            fp.write('], "categories": ' + json.dumps(cats) + "}")
        os.replace(tmp, path)
    except BaseException:
        for p in (tmp, tmp.with_name(tmp.name + ".ann")):
            if p.exists():
                p.unlink()
        raise
    return path
