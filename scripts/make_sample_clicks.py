"""Compute napari_vidseg/data/sample_clicks.csv from the sample clip's known truth.

The clicks a careful user would give on frame 0: the interior-most point of
the object (largest distance to its boundary), then the interior-most point of
what is left once a disk around that first click is removed (the object's
second part, e.g. the saucer under the cup).

    python scripts/make_sample_clicks.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt

from napari_vidseg.sample import sample_truth

OUT = Path(__file__).resolve().parents[1] / "napari_vidseg" / "data" / "sample_clicks.csv"


def interior_point(mask: np.ndarray) -> tuple[int, int, float]:
    d = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(x), int(y), float(d[y, x])


def main() -> None:
    truth = sample_truth()
    m = truth[0]
    x1, y1, r1 = interior_point(m)
    yy, xx = np.mgrid[:m.shape[0], :m.shape[1]]
    rest = m & ((yy - y1) ** 2 + (xx - x1) ** 2 > r1 ** 2)
    rows = [(0, x1, y1, 1)]
    if rest.any():
        x2, y2, _ = interior_point(rest)
        rows.append((0, x2, y2, 1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("frame,x,y,positive\n" + "".join(f"{t},{x},{y},{p}\n" for t, x, y, p in rows))
    print(OUT.read_text(), f"object area {int(m.sum())} px, frame {m.shape[1]}x{m.shape[0]}")


if __name__ == "__main__":
    main()
