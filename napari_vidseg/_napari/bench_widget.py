"""`napari-vidseg bench-widget [--frames 10000] [--size 1920x1080] [--video PATH]`.

Peak memory of the napari process with the widget docked on a long video: the
video opened through the plugin's reader, the dock widget through napari's plugin
machinery, Start pressed, one object clicked on frame 0, then the time slider
moved across the whole video (each step makes napari read that frame of the video
and of the masks layer).  The masks layer reads the session frame by frame and the
video layer decodes lazily, so the peak must not grow with the length.

Needs a display (run it under `xvfb-run -a` on a headless machine).  The LAST line
printed is one JSON object {frames, size, peak_rss_mb, ...}.
"""
from __future__ import annotations

import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def configure(parser) -> None:
    parser.add_argument("--frames", type=int, default=10000, help="length of the generated video (default 10000)")
    parser.add_argument("--size", default="1920x1080", help="WxH of the generated video (default 1920x1080)")
    parser.add_argument("--video", type=Path, default=None, help="use this video instead of generating one")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the generated video goes (default: a temporary folder, removed after)")
    parser.add_argument("--visits", type=int, default=200, help="frames the time slider visits, spread evenly")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _wait(app, cond, timeout: float) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.01)
    return False


def run(args) -> int:
    from ..commands.bench_memory import _parse_size, make_video
    from ..types import InputError

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        video = args.video
        if video is None:
            w, h = _parse_size(args.size)
            video = work / f"bench_{args.frames}x{w}x{h}.mp4"
            if not video.exists():
                print(f"writing {video} ...", flush=True)
                make_video(video, args.frames, w, h, 30.0)
        import napari
        from qtpy.QtWidgets import QApplication

        t0 = time.time()
        viewer = napari.Viewer(show=True)
        app = QApplication.instance()
        layers = viewer.open(str(video), plugin="napari-vidseg")
        _, widget = viewer.window.add_plugin_dock_widget("napari-vidseg", "Video object segmentation")
        widget.start_btn.native.click()
        if not _wait(app, lambda: widget.session is not None, 120):
            raise InputError(f"Start did not open a session: {widget.status.value}")
        T, H, W = widget.session.source.n_frames, widget.session.source.height, widget.session.source.width
        after_start = _peak_mb()
        widget.points_layer.add([[0, H // 2, W // 2]])
        if not _wait(app, lambda: not widget.busy, 600):
            raise InputError("the click was not segmented in 10 minutes")
        area = int((np.asarray(widget.labels_layer.data[0]) > 0).sum())
        after_click = _peak_mb()
        visits = np.linspace(0, T - 1, min(args.visits, T)).astype(int)
        t1 = time.time()
        for t in visits:
            widget.set_frame(int(t))
            app.processEvents()
        scrub_s = time.time() - t1
        result = dict(frames=int(T), size=f"{W}x{H}", layers=[layer.name for layer in layers],
                      mask_area_frame0=area, peak_rss_mb_after_start=round(after_start),
                      peak_rss_mb_after_click=round(after_click), visited=len(visits),
                      ms_per_visit=round(1000 * scrub_s / len(visits), 1), peak_rss_mb=round(_peak_mb()),
                      seconds=round(time.time() - t0, 1), cpu=platform.processor() or platform.machine(),
                      python=sys.version.split()[0], napari=napari.__version__)
        viewer.close()
    print(json.dumps(result))
    return 0
