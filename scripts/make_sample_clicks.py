"""Compute napari_vidseg/data/sample_clicks.csv from the sample clip's known truth.

The clicks a careful user would give on frame 0: the interior-most point of
the object (largest distance to its boundary), then the interior-most point of
what is left once a disk around that first click is removed (the object's
second part, e.g. the saucer under the cup), then, while the mask that
`segment` makes from all of them is below TARGET IoU, the click robot's next
click on its largest error (a negative one where the mask takes part of the
background).  Re-run it when the shipped interactive weights change: with
weights v8 the two positive clicks alone took part of the rocket behind the cup
(frame 0 IoU 0.948, the main job's mean 0.94).

    python scripts/make_sample_clicks.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt

from napari_vidseg.interactions.robot import iou, next_click
from napari_vidseg.sample import sample_clip_path, sample_truth
from napari_vidseg.types import Click, Interactions

OUT = Path(__file__).resolve().parents[1] / "napari_vidseg" / "data" / "sample_clicks.csv"
TARGET = 0.99
MAX_CLICKS = 6


def interior_point(mask: np.ndarray) -> tuple[int, int, float]:
    d = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(x), int(y), float(d[y, x])


def segment_frame0(rows) -> np.ndarray:
    """Frame 0's mask from all the clicks at once, as `segment` makes it."""
    from napari_vidseg.video.session import VideoSession

    session = VideoSession.create(sample_clip_path())
    obj = session.add_object()
    clicks = [Click(float(x), float(y), bool(p)) for _, x, y, p in rows]
    return np.asarray(session.add_interactions(0, obj, Interactions(clicks)), bool)


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
    while len(rows) < MAX_CLICKS:
        mask = segment_frame0(rows)
        score = iou(mask, m)
        print(f"{len(rows)} clicks: frame 0 IoU {score:.4f}")
        if score >= TARGET:
            break
        c = next_click(mask, m)
        rows.append((0, int(round(c.x)), int(round(c.y)), int(c.positive)))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("frame,x,y,positive\n" + "".join(f"{t},{x},{y},{p}\n" for t, x, y, p in rows))
    print(OUT.read_text(), f"object area {int(m.sum())} px, frame {m.shape[1]}x{m.shape[0]}")


if __name__ == "__main__":
    main()
