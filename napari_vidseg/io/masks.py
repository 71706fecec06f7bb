"""Mask folders in the DAVIS layout: one PNG per frame, named 00000.png, 00001.png, ...

One object: 8-bit grey PNGs, 0 = background, 255 = object.
Several objects: label PNGs, palette ("P") PNGs whose index is the object id (as
DAVIS ships its multi-object annotations), or 16-bit grey PNGs for ids above 255.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..types import InputError

_NAME = re.compile(r"^(\d+)\.png$", re.IGNORECASE)


def label_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC / DAVIS colour map: well-separated colours for ids 1, 2, 3, ..."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _mask_image(mask: np.ndarray) -> Image.Image:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    if m.dtype == bool:
        return Image.fromarray(m.astype(np.uint8) * 255, "L")
    if m.min(initial=0) < 0:
        raise InputError("label images cannot hold negative ids")
    if m.max(initial=0) < 256:
        im = Image.fromarray(m.astype(np.uint8), "P")
        im.putpalette(label_palette())
        return im
    if m.max() > 65535:
        raise InputError("label ids above 65535 cannot be written as PNG")
    return Image.fromarray(m.astype(np.uint16))  # 16-bit grey


def write_mask_png(path, mask: np.ndarray) -> Path:
    """Write one mask (bool -> 0/255) or label image (int -> palette/16-bit) atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image = _mask_image(mask)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half files in the user's folder
        raise
    return path


def write_mask_folder(out_dir, masks: Iterable[tuple[int, np.ndarray]], obj: int | None = None) -> list[Path]:
    """Write (t, mask) pairs as out_dir/<t:05d>.png.

    With `obj`, label images are reduced to that object's 0/255 mask.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for t, m in masks:
        m = np.asarray(m)
        if obj is not None and m.dtype != bool:
            m = m == obj
        written.append(write_mask_png(out_dir / f"{int(t):05d}.png", m))
    return written


def read_mask_png(path) -> np.ndarray:
    """bool for 0/255 (or 1-bit) masks; integer labels for palette and 16-bit PNGs."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            a = np.asarray(im)
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is not a readable PNG: {e}") from e
    if mode == "P" or mode.startswith("I"):
        return a.astype(np.uint16) if a.dtype != np.uint8 else a
    if a.ndim == 3:
        a = a[..., :3].max(axis=2)
    if a.dtype == bool:
        return a
    return a > 127


def read_mask_folder(path) -> dict[int, np.ndarray]:
    """{t: mask} from a folder of <digits>.png files (see read_mask_png for the dtype)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"mask folder {path} does not exist")
    out = {}
    for p in sorted(path.iterdir()):
        m = _NAME.match(p.name)
        if m:
            out[int(m.group(1))] = read_mask_png(p)
    if not out:
        raise InputError(f"no mask PNGs (00000.png, 00001.png, ...) in {path}")
    return dict(sorted(out.items()))
