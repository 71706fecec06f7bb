"""Cell Tracking Challenge result format: ``maskTTT.tif`` (uint16 label images, one per
frame; TTTT beyond 1000 frames) and ``res_track.txt`` (``L B E P`` per track: label,
first frame, last frame, parent label or 0).

CTC tracks are continuous in time. An object that vanishes and comes back is written as
a new track (a fresh label) from its return on, whose parent is its track before the
gap: the format's own way of closing a gap, so every frame's masks stay as they were.
An object's `parent` (a division) becomes the parent of its first track.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ...types import InputError
from . import TrackedObject, checked_frames, object_table, tmp_path_for


def ctc_writer(out_dir, labels: Iterable[np.ndarray], objects: Iterable[TrackedObject] | None = None,
               n_frames: int | None = None) -> Iterator[int]:
    """Write out_dir/maskTTT.tif and out_dir/res_track.txt frame by frame. `n_frames` (when
    known) chooses 3 or 4 digits; else 3 digits, as the CTC writes sequences under 1000 frames."""
    import tifffile

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir} exists and is not empty: choose a new folder for the CTC result")
    table = object_table(list(objects or ()))
    digits = 4 if (n_frames or 0) > 1000 else 3
    tmp = tmp_path_for(out_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tracks: dict[int, list[int]] = {}  # CTC label -> [begin, end, parent]
    current: dict[int, int] = {}  # object id -> its CTC label in the frame before
    # Gap-closing labels count down from 65535, away from the objects' own (small) ids.
    next_label = 65535
    used: set[int] = set(table)
    try:
        prev_present: set[int] = set()
        for t, lab in checked_frames(labels):
            ids = set(np.unique(lab).tolist()) - {0}
            used |= ids
            out = lab
            remap: dict[int, int] = {}
            for obj in sorted(ids):
                if obj in current and obj in prev_present:
                    label = current[obj]
                    tracks[label][1] = t
                elif obj not in current:  # its first appearance: its own id; a division's parent track
                    label = obj
                    parent = int(table[obj].parent) if obj in table else 0
                    parent = current.get(parent, parent)
                    tracks[label] = [t, t, parent if parent in tracks else 0]
                else:  # back after a gap: a new track, parent = the track before the gap
                    while next_label in used or next_label in tracks:
                        next_label -= 1
                    if next_label <= 0:
                        raise InputError("too many tracks for 16-bit CTC labels")
                    label = next_label
                    tracks[label] = [t, t, current[obj]]
                current[obj] = label
                if label != obj:
                    remap[obj] = label
            if remap:
                out = lab.copy()
                for obj, label in remap.items():
                    out[lab == obj] = label
            tifffile.imwrite(tmp / f"mask{t:0{digits}d}.tif", out, compression="zlib")
            prev_present = ids
            yield t
        lines = [f"{k} {b} {e} {p}" for k, (b, e, p) in sorted(tracks.items())]
        (tmp / "res_track.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
