"""The path every user takes, the way they take it: napari's own plugin machinery
opens the sample (File > Open Sample) and the dock widget (Plugins menu); buttons
are pressed and the canvas is clicked with real mouse events; the whole loop
(click, propagate, worst frame, correct, re-propagate, export) runs with the shipped
click segmenter.  napari hands plugin widgets proxies that refuse private access:
anything the widget reads that it should not shows up here as a warning.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_vidseg.models.registry import MODELS  # noqa: E402
from napari_vidseg.types import Provenance  # noqa: E402

TIMEOUT = 600_000  # ms: two CPU cores, shared
PLUGIN, WIDGET = "napari-vidseg", "Video object segmentation"
REAL_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / MODELS["interactive"].filename
needs_weights = pytest.mark.skipif(not REAL_WEIGHTS.exists(), reason=f"shipped weights {REAL_WEIGHTS} missing")


def wait_idle(qtbot, w, timeout=TIMEOUT):
    qtbot.waitUntil(lambda: not w.busy, timeout=timeout)


def press(qtbot, button):
    """A mouse click on a magicgui button's Qt widget."""
    from qtpy.QtCore import Qt

    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def click_canvas(viewer, qtbot, layer, t, row, col, shift=False):
    """Move to frame t and click the canvas over pixel (row, col) of `layer`, as the mouse does."""
    from qtpy.QtCore import QPoint, Qt

    viewer.dims.set_current_step(0, t)
    qtbot.wait(10)
    canvas = viewer.window._qt_viewer.canvas  # test-only: where napari draws
    world = layer.data_to_world([t, row, col])
    x, y = canvas.view.scene.transform.map([world[-1], world[-2], 0, 1])[:2]
    mods = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
    qtbot.mouseClick(canvas.native, Qt.MouseButton.LeftButton, mods, QPoint(int(round(x)), int(round(y))))


@pytest.fixture
def plugin_viewer(make_napari_viewer, qtbot):
    """A shown viewer with the sample and the dock widget, both opened through napari's plugin calls."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.open_sample(PLUGIN, "sample_clip")
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return viewer, w


def _private_access(records) -> list[str]:
    return [str(r.message) for r in records if "Private attribute access" in str(r.message)]


def test_sample_and_widget_open_from_the_menus_and_start_works(plugin_viewer, qtbot):
    viewer, w = plugin_viewer
    # the only video is picked; an image that is not a video is named with the reason
    assert w.video_combo.value is not None and w.video_combo.value.name == "sample clip"
    viewer.add_image(np.zeros((20, 30), np.uint8), name="flat")
    viewer.add_image(np.zeros((2, 30, 20, 30), np.uint8), name="volumes")  # (T, Z, Y, X): no channel axis
    viewer.add_image(np.zeros((2, 3, 20, 30), np.uint16), name="channels")  # (T, C, Y, X): offered
    assert w.unusable.visible and "'flat': a single image" in w.unusable.value and "'volumes'" in w.unusable.value
    assert "'channels'" not in w.unusable.value
    assert [layer.name for layer in w.video_combo.choices] == ["sample clip", "channels"]
    assert w.video_combo.value.name == "sample clip"
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        press(qtbot, w.start_btn)
        wait_idle(qtbot, w)
    assert not _private_access(records), _private_access(records)
    assert "Error" not in w.status.value, w.status.value
    names = {layer.name for layer in viewer.layers}
    assert {"sample clip masks", "sample clip clicks", "sample clip strokes"} <= names
    assert w.propagate_btn.enabled and w.add_obj_btn.enabled and w.export_btn.enabled
    # the masks layer holds no dense copy of the video: it reads the session frame by frame
    assert not isinstance(w.labels_layer.data, np.ndarray)
    assert w.labels_layer.data.shape == (60, 270, 480)


def test_a_click_outside_the_frame_is_removed_and_the_next_click_works(plugin_viewer, qtbot, monkeypatch):
    viewer, w = plugin_viewer
    shown = []
    monkeypatch.setattr("napari_vidseg._napari.widget.show_error", shown.append)
    press(qtbot, w.start_btn)
    w.session.set_predictor(_DiskPredictor())
    click_canvas(viewer, qtbot, w.points_layer, 0, 100, 520)  # 40 px right of the 480-px frame
    wait_idle(qtbot, w)
    assert shown and "outside the 480x270" in shown[-1]
    assert len(w.points_layer.data) == 0
    click_canvas(viewer, qtbot, w.points_layer, 0, 150, 130)
    wait_idle(qtbot, w)
    assert len(w.points_layer.data) == 1 and "Error" not in w.status.value
    assert w.labels_layer.data[0, 150, 130] == 1
    # the click is styled as the widget's positive click (the Points layer has no edge_color)
    np.testing.assert_allclose(w.points_layer.face_color[0], [0.1, 0.85, 0.2, 1.0])


def test_napari_undo_on_the_masks_layer_reaches_the_session(plugin_viewer, qtbot):
    from qtpy.QtCore import Qt

    viewer, w = plugin_viewer
    press(qtbot, w.start_btn)
    w.session.set_predictor(_DiskPredictor())
    click_canvas(viewer, qtbot, w.points_layer, 3, 120, 200)
    wait_idle(qtbot, w)
    before = w.session.masks.get(1, 3).copy()
    lab = w.labels_layer
    viewer.layers.selection.active = lab
    lab.mode = "paint"
    lab.brush_size = 9
    lab.selected_label = 1
    click_canvas(viewer, qtbot, lab, 3, 40, 40)  # a brush dab far from the disk
    wait_idle(qtbot, w)
    painted = w.session.masks.get(1, 3)
    assert painted[40, 40] and painted.sum() > before.sum()
    assert w.session.masks.provenance(1, 3) is Provenance.USER
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_idle(qtbot, w)
    np.testing.assert_array_equal(w.session.masks.get(1, 3), before)


@needs_weights
def test_the_whole_loop_through_the_gui(plugin_viewer, qtbot, tmp_path, monkeypatch):
    """Clicks (positive, Shift = negative) with the shipped segmenter, Propagate, the
    quality strip and the worst-frames list, a correction, Correct & re-propagate, Export."""
    from napari_vidseg._napari import runner, widget as widget_module
    from napari_vidseg.commands.segment import read_clicks, sample_clicks_path
    from napari_vidseg.interactions.robot import iou, next_click
    from napari_vidseg.sample import sample_truth

    viewer, w = plugin_viewer
    truth = sample_truth()
    # A small tuning budget, so the test checks the wiring on two shared cores; the choice
    # is still made the way a user makes it (the Propagation combo).
    monkeypatch.setitem(widget_module.PROPAGATION_MODES, "fast",
                        dict(mode="head", steps=8, n_aug=2, batch=2, input_long_side=320))
    bars = []
    real_show = runner.ActivityBar._show

    def show(self, p, progress):
        real_show(self, p, progress)
        bars.append((p.stage, self.bar.n, self.bar.total))

    monkeypatch.setattr(runner.ActivityBar, "_show", show)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        press(qtbot, w.start_btn)
        for row in read_clicks(sample_clicks_path()):  # the README's clicks, by mouse
            click_canvas(viewer, qtbot, w.points_layer, row.frame, row.click.y, row.click.x,
                         shift=not row.click.positive)
            wait_idle(qtbot, w)
        assert "Error" not in w.status.value, w.status.value
        clicks = w.session.interactions[(1, 0)].clicks
        assert [c.positive for c in clicks] == [r.click.positive for r in read_clicks(sample_clicks_path())]
        # then, as a user would, more clicks where the mask is wrong (the robot's choice)
        for _ in range(4):
            mask = np.asarray(w.labels_layer.data[0]) == 1
            if iou(mask, truth[0]) >= 0.97:
                break
            c = next_click(mask, truth[0])
            click_canvas(viewer, qtbot, w.points_layer, 0, c.y, c.x, shift=not c.positive)
            wait_idle(qtbot, w)
        assert iou(np.asarray(w.labels_layer.data[0]) == 1, truth[0]) >= 0.97

        w.self_train.value = False
        w.refine.value = False
        press(qtbot, w.propagate_btn)
        wait_idle(qtbot, w)
        assert w.status.value == "Propagation done.", w.status.value
        assert all(w.session.masks.provenance(1, t) is Provenance.PROPAGATED for t in range(1, 60))
        # napari's activity dock got real numbers: each stage counted towards its own total
        # (updates are coalesced from a timer, so the last one drawn may be a frame or two short)
        stages = {s for s, _, _ in bars}
        assert {"finetune", "propagate"} <= stages
        n, total = [(n, total) for s, n, total in bars if s == "propagate"][-1]
        assert total == 59 and 0.9 * total <= n <= total
        # the quality strip has every frame; the list says what its numbers are
        wait_idle(qtbot, w)
        assert np.count_nonzero(~np.isnan(w.strip.scores)) == 60
        assert w.worst_list.native.count() >= 1 and "quality" in w.worst_list.native.item(0).text()
        worst = w.worst_frames[0]
        w.worst_list.native.itemClicked.emit(w.worst_list.native.item(0))
        assert w.current_frame == worst
        # clicking the strip moves the time slider too
        from qtpy.QtCore import QPoint, Qt

        target = 45
        x = int((target + 0.5) / 60 * w.strip.width())
        qtbot.mouseClick(w.strip, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, 10))
        assert w.current_frame == target

        # a correction on the worst frame, then one button re-tunes and re-propagates
        from scipy.ndimage import distance_transform_edt

        d = distance_transform_edt(truth[worst])
        row, col = np.unravel_index(np.argmax(d), d.shape)
        click_canvas(viewer, qtbot, w.points_layer, worst, row, col)
        press(qtbot, w.correct_btn)
        wait_idle(qtbot, w)
        assert "Error" not in w.status.value, w.status.value
        assert w.session.masks.provenance(1, worst) is Provenance.CORRECTED
        assert worst in w.session.masks.annotated(1)

        w.export_dir.value = tmp_path / "out"
        press(qtbot, w.export_btn)
        wait_idle(qtbot, w)
        assert w.status.value.startswith("Exported"), w.status.value
    assert not _private_access(records), _private_access(records)
    out = tmp_path / "out"
    assert len(list((out / "masks").glob("*.png"))) == 60
    assert np.load(out / "labels.npy").shape == (60, 270, 480)
    assert next(out.glob("*.gif")).stat().st_size > 0 and next(out.glob("*.mp4")).stat().st_size > 0


def test_the_masks_writer_is_offered_by_napari_save_dialog(plugin_viewer, qtbot, tmp_path):
    """napari's Save dialog lists each writer as a file type and passes the chosen one on."""
    from napari.plugins import _npe2

    viewer, w = plugin_viewer
    press(qtbot, w.start_btn)
    w.session.set_predictor(_DiskPredictor())
    click_canvas(viewer, qtbot, w.points_layer, 2, 150, 130)
    wait_idle(qtbot, w)
    ext_str, writers = _npe2.file_extensions_string_for_layers([w.labels_layer])
    assert "napari-vidseg folder of PNG masks (DAVIS layout)" in ext_str
    folder_writer = next(wr for wr in writers if wr.display_name.startswith("folder of PNG masks"))
    viewer.layers.selection = {w.labels_layer}
    saved = viewer.layers.save(str(tmp_path / "masks"), selected=True, _writer=folder_writer)
    assert saved == [str(tmp_path / "masks")]
    pngs = sorted((tmp_path / "masks").glob("*.png"))
    assert len(pngs) == 60
    from PIL import Image

    assert np.asarray(Image.open(pngs[2])).astype(bool)[150, 130]
    saved = viewer.layers.save(str(tmp_path / "vol.tif"), selected=True, plugin=PLUGIN)
    assert saved == [str(tmp_path / "vol.tif")]


class _DiskPredictor:
    """A disk around each positive click (the wiring tests need no network)."""

    radius = 12

    def set_image(self, frame):
        self.shape = frame.shape[:2]

    def predict(self, interactions, prev_mask=None):
        from types import SimpleNamespace

        yy, xx = np.mgrid[:self.shape[0], :self.shape[1]]
        mask = np.zeros(self.shape, bool) if prev_mask is None else np.asarray(prev_mask, bool).copy()
        for c in interactions.clicks:
            disk = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= self.radius ** 2
            mask = mask | disk if c.positive else mask & ~disk
        return SimpleNamespace(mask=mask, prob=mask.astype(np.float32))


def test_work_on_a_video_file_is_kept_and_reopened(make_napari_viewer, qtbot):
    """napari closed (or crashed) after a click: opening the same video again brings it back."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "sample_clip")
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    press(qtbot, w.start_btn)
    folder = w.session.folder
    assert folder is not None and f"Work kept in {folder}" in w.status.value
    w.session.set_predictor(_DiskPredictor())
    click_canvas(viewer, qtbot, w.points_layer, 4, 150, 130)
    wait_idle(qtbot, w)
    mask = w.session.masks.get(1, 4).copy()
    w.session.close()  # what quitting napari amounts to for the folder

    viewer2 = make_napari_viewer(show=True)
    viewer2.open_sample(PLUGIN, "sample_clip")
    _, w2 = viewer2.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    press(qtbot, w2.start_btn)
    wait_idle(qtbot, w2)
    assert w2.session.folder == folder
    np.testing.assert_array_equal(w2.session.masks.get(1, 4), mask)
    points = np.asarray(w2.points_layer.data)  # where the mouse put it (within a pixel of the aim)
    assert points.shape == (1, 3) and np.abs(points[0] - (4, 150, 130)).max() <= 1.5
    assert np.asarray(w2.labels_layer.data[4])[150, 130] == 1
