"""Screenshot of the widget in use on the sample clip -> docs/img/widget.png.

    python scripts/screenshot.py [--out docs/img/widget.png] [--checkpoint checkpoints/interactive/last.pt]
                                 [--propagate]

Opens the sample clip in a shown viewer (starting a virtual X display when
there is no screen), docks the widget through napari_vidseg.attach, clicks on
the object as a user would (points added to the widget's Points layer, so the
widget's own debounce -> worker -> Labels path runs), waits for the masks and
saves the whole window.  --propagate also propagates (needs the parent
network's weights) so the worst-frames list is filled.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait_until(cond, app, timeout: float) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.05)
    return False


def interactive_predictor(checkpoint: Path | None):
    from napari_vidseg.models.registry import build, weights_dir
    from napari_vidseg.segment.predictor import InteractivePredictor

    shipped = weights_dir() / "interactive_v1.pt"
    if checkpoint is None and shipped.exists():
        return InteractivePredictor()
    path = checkpoint or ROOT / "checkpoints" / "interactive" / "last.pt"
    print(f"using {path} (shipped weights not found)" if checkpoint is None else f"using {path}")
    return InteractivePredictor(build("interactive", path=path, check=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "widget.png")
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--propagate", action="store_true")
    ap.add_argument("--frame", type=int, default=0, help="frame shown in the screenshot")
    args = ap.parse_args()

    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000), color_depth=24)
        display.start()
    try:
        import napari
        import numpy as np
        from qtpy.QtWidgets import QApplication

        from napari_vidseg import attach
        from napari_vidseg._napari.script import widget_of
        from napari_vidseg.commands.segment import read_clicks, sample_clicks_path
        from napari_vidseg.sample import sample_clip_path

        viewer = napari.Viewer(show=True, title="napari-vidseg")
        viewer.window.resize(1500, 900)
        session = attach(viewer, sample_clip_path())
        session.set_predictor(interactive_predictor(args.checkpoint))
        w = widget_of(session)
        app = QApplication.instance()
        rows = [r for r in read_clicks(sample_clicks_path()) if r.frame == 0]
        for r in rows:  # one at a time, as a user clicks (each re-segments the frame)
            if not r.click.positive and w.positive:
                w._toggle_polarity_key()
            if r.click.positive and not w.positive:
                w._toggle_polarity_key()
            w.points_layer.add([[r.frame, r.click.y, r.click.x]])
            wait_until(lambda: not w.busy, app, 300)
        if w.positive is False:
            w._toggle_polarity_key()
        if args.propagate:
            w.propagate()
            wait_until(lambda: not w.busy, app, 1800)
        w.set_frame(args.frame)
        viewer.layers.selection.active = w.points_layer
        wait_until(lambda: False, app, 1.5)  # let the canvas draw
        print(w.status.value)
        area = int((w.labels_layer.data[0] > 0).sum())
        print(f"mask on frame 0: {area} px")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        img = viewer.screenshot(str(args.out), canvas_only=False)
        print(f"wrote {args.out} {np.asarray(img).shape}")
        viewer.close()
    finally:
        if display is not None:
            display.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
