"""Screenshot of the widget in use on the sample clip -> docs/img/widget.png.

    python scripts/screenshot.py [--out docs/img/widget.png] [--checkpoint checkpoints/interactive/last.pt]
                                 [--propagate] [--steps N] [--robot-clicks N] [--colors N]

Opens the sample clip in a shown viewer (starting a virtual X display when
there is no screen) and the dock widget the way a user does (File > Open Sample,
Plugins > napari-vidseg: napari's own plugin calls), presses Start, clicks on
the object as a user would (points added to the widget's Points layer, so the
widget's own debounce -> worker -> Labels path runs): first the clicks of
napari_vidseg/data/sample_clicks.csv, then --robot-clicks corrections from the
click robot (positive on a missed part, negative on a false alarm, against the
clip's ground truth), waits for the masks and saves the whole window.
--propagate also propagates (the shipped parent network, --steps fine-tuning
steps) so the worst-frames list is filled.  --colors N stores the PNG with an
N-colour palette (0: full colour) to keep it small.
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
    from napari_vidseg.models.registry import MODELS, build, weights_dir
    from napari_vidseg.segment.predictor import InteractivePredictor

    shipped = weights_dir() / MODELS["interactive"].filename
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
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the widget's)")
    ap.add_argument("--one-pass", action="store_true",
                    help="untick Self-train and Second opinion (a quick propagation for the picture)")
    ap.add_argument("--robot-clicks", type=int, default=2, help="correction clicks after the sample clicks")
    ap.add_argument("--colors", type=int, default=256, help="palette size of the PNG (0: full colour)")
    ap.add_argument("--frame", type=int, default=0, help="frame shown in the screenshot")
    args = ap.parse_args()

    import tempfile

    # A fresh session folder: the widget re-opens earlier work on the same video otherwise.
    os.environ["NAPARI_VIDSEG_SESSIONS"] = tempfile.mkdtemp(prefix="vidseg-screenshot-")
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000), color_depth=24)
        display.start()
    try:
        import napari
        import numpy as np
        from qtpy.QtWidgets import QApplication

        from napari_vidseg.commands.segment import read_clicks, sample_clicks_path
        from napari_vidseg.interactions.robot import iou, next_click
        from napari_vidseg.sample import sample_truth

        viewer = napari.Viewer(show=True, title="napari-vidseg")
        viewer.window.resize(1500, 900)
        viewer.open_sample("napari-vidseg", "sample_clip")
        _, w = viewer.window.add_plugin_dock_widget("napari-vidseg", "Video object segmentation")
        w.start_btn.native.click()
        app = QApplication.instance()
        if not wait_until(lambda: w.session is not None, app, 60):
            raise SystemExit(f"Start did not open a session: {w.status.value}")
        if args.checkpoint is not None:
            w.session.set_predictor(interactive_predictor(args.checkpoint))
        def click(t, c):  # one at a time, as a user clicks (each re-segments the frame)
            if c.positive != w.positive:
                w._toggle_polarity_key()  # what the N key does
            w.points_layer.add([[t, c.y, c.x]])
            if not wait_until(lambda: not w.busy, app, 600):
                raise SystemExit("the click was not segmented in 10 minutes")

        rows = [r for r in read_clicks(sample_clicks_path()) if r.frame == 0]
        for r in rows:
            click(0, r.click)
        truth = sample_truth()[0]
        for _ in range(args.robot_clicks):
            c = next_click(np.asarray(w.labels_layer.data[0]) == 1, truth)
            if c is None:
                break
            click(0, c)
            print(f"robot click ({c.x:.0f}, {c.y:.0f}) {'+' if c.positive else '-'}: "
                  f"IoU {iou(np.asarray(w.labels_layer.data[0]) == 1, truth):.3f}")
        if not w.positive:
            w._toggle_polarity_key()
        if args.propagate:
            if args.one_pass:
                w.self_train.value = w.refine.value = False
            config = w._config()
            if args.steps is not None:
                config.steps = args.steps
            t0 = time.time()
            w.propagate(config=config)
            if not wait_until(lambda: not w.busy, app, 3600):
                raise SystemExit("propagation did not finish in an hour")
            print(f"propagated in {time.time() - t0:.0f} s; worst frames {getattr(w, 'worst_frames', [])}")
        w.set_frame(args.frame)
        viewer.layers.selection.active = w.points_layer
        wait_until(lambda: False, app, 1.5)  # let the canvas draw
        print(w.status.value)
        area = int((np.asarray(w.labels_layer.data[0]) > 0).sum())
        print(f"mask on frame 0: {area} px")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        img = np.asarray(viewer.screenshot(canvas_only=False))
        from PIL import Image

        pil = Image.fromarray(img[..., :3])
        if args.colors:
            pil = pil.quantize(colors=args.colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        pil.save(args.out, optimize=True)
        print(f"wrote {args.out} {img.shape} {args.out.stat().st_size // 1024} KiB")
        viewer.close()
    finally:
        if display is not None:
            display.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
