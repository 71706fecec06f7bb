"""DAVIS-2016 sequences and the J (region IoU) and F (boundary) measures.

A DAVIS root holds `JPEGImages/<res>/<seq>/00000.jpg ...`,
`Annotations/<res>/<seq>/00000.png ...` (0 = background, 255 = object) and
`ImageSets/*.txt`. Frames are read through the repository's VideoSource (a
frame folder is a video); masks with PIL.

Scoring follows the DAVIS convention: the first frame (given) and the last
frame are not scored; J and F are averaged over the remaining frames of a
sequence, and the benchmark figure is the mean over sequences.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from ..interactions.robot import iou
from ..types import InputError


def j_score(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J: IoU (two empty masks count as 1)."""
    return float(iou(pred, gt))


def f_score(pred: np.ndarray, gt: np.ndarray) -> float:
    """Boundary F-measure with DAVIS's tolerance (0.8 % of the diagonal)."""
    from .metrics import boundary_f  # engineer C's implementation

    return float(boundary_f(pred, gt))


def read_split(root: Path, split: str = "val_dev") -> list[str]:
    path = Path(root) / "ImageSets" / f"{split}.txt"
    if not path.is_file():
        raise InputError(f"{path} not found: is {root} a DAVIS root (JPEGImages/, Annotations/, ImageSets/)?")
    return [s.strip() for s in path.read_text().split() if s.strip()]


@dataclass
class Sequence:
    name: str
    frame_dir: Path
    mask_dir: Path

    def source(self):
        from ..io.video import VideoSource

        return VideoSource.open(self.frame_dir)

    def mask_files(self) -> list[Path]:
        return sorted(p for p in self.mask_dir.iterdir() if p.suffix.lower() == ".png")

    def masks(self) -> np.ndarray:
        """(T, H, W) bool: every annotation of the sequence."""
        return np.stack([read_mask(p) for p in self.mask_files()])


def read_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 127


def open_sequence(root: Path, name: str, resolution: str = "480p") -> Sequence:
    root = Path(root)
    frames = root / "JPEGImages" / resolution / name
    masks = root / "Annotations" / resolution / name
    for d in (frames, masks):
        if not d.is_dir():
            raise InputError(f"sequence {name!r}: folder {d} not found")
    return Sequence(name, frames, masks)


def scored_frames(n: int) -> range:
    """DAVIS scores neither the first (given) nor the last frame."""
    return range(1, n - 1) if n > 2 else range(1, n)


def score_sequence(pred: Mapping[int, np.ndarray], truth: np.ndarray,
                   frames: range | None = None) -> dict:
    """{"j", "f", "j_frames": {t: j}} over `frames` (default: DAVIS's)."""
    frames = scored_frames(len(truth)) if frames is None else frames
    js, fs, per = [], [], {}
    for t in frames:
        j = j_score(pred[t], truth[t])
        js.append(j)
        fs.append(f_score(pred[t], truth[t]))
        per[t] = j
    return {"j": float(np.mean(js)) if js else 1.0, "f": float(np.mean(fs)) if fs else 1.0, "j_frames": per}
