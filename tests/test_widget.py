"""The dock widget end to end in a shown viewer (Xvfb): clicks -> mask, undo,
propagation fills every frame, the worst-frames list jumps, export writes a
transparent sticker.

The interactive model is a fake (a disk around each positive click) unless the
shipped weights exist; propagation is the real one with a random-init parent
and a tiny fine-tuning budget, so these tests check the wiring, not quality.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_vidseg.models.registry import MODELS  # noqa: E402
from napari_vidseg.types import InputError, Provenance  # noqa: E402

T, H, W = 8, 48, 64
TIMEOUT = 180_000  # ms; two CPU cores shared with training


class DiskPredictor:
    """Stand-in for InteractivePredictor: a disk around each positive click, minus negatives."""

    radius = 7

    def __init__(self):
        self.calls = 0

    def set_image(self, frame):
        self.shape = frame.shape[:2]

    def predict(self, interactions, prev_mask=None):
        self.calls += 1
        self.prev_mask = None if prev_mask is None else np.array(prev_mask)
        yy, xx = np.mgrid[:self.shape[0], :self.shape[1]]
        mask = np.zeros(self.shape, bool)
        for c in interactions.clicks:
            disk = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= self.radius ** 2
            mask = mask | disk if c.positive else mask & ~disk
        return SimpleNamespace(mask=mask, prob=mask.astype(np.float32))


def moving_disk_video(n=T, h=H, w=W) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    frames = np.full((n, h, w, 3), 40, np.uint8)
    for t in range(n):
        cx, cy = 20 + 2 * t, 24
        frames[t][(yy - cy) ** 2 + (xx - cx) ** 2 <= 10 ** 2] = (230, 200, 60)
    return frames


def tiny_config():
    from napari_vidseg.video.finetune import FinetuneConfig

    return FinetuneConfig(steps=2, n_aug=2, batch=2, input_long_side=64, batch_infer=4)


def random_parent():
    import torch

    from napari_vidseg.models.vidsegnet import VidSegNet

    torch.manual_seed(0)
    return VidSegNet(in_channels=3).eval()


@pytest.fixture
def widget_on_video(make_napari_viewer, qtbot):
    from napari_vidseg._napari.widget import VidSegWidget

    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(moving_disk_video(), rgb=True, name="disk")
    widget = VidSegWidget(viewer)
    viewer.window.add_dock_widget(widget, name="vidseg")
    widget.bind(layer)
    widget.session.set_predictor(DiskPredictor())
    return viewer, widget


def wait_idle(qtbot, widget, timeout=TIMEOUT):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def test_click_gives_mask_then_undo_redo(widget_on_video, qtbot):
    viewer, w = widget_on_video
    assert w.labels_layer.data.shape == (T, H, W)
    assert w.current_object == 1
    w.set_frame(3)
    w.points_layer.add([[3, 24, 26]])  # (t, row, col)
    wait_idle(qtbot, w)
    lab = w.labels_layer.data
    assert lab[3, 24, 26] == 1 and lab[3].sum() > 50
    assert not lab[[0, 1, 2, 4, 5, 6, 7]].any()
    assert w.session.masks.provenance(1, 3) is Provenance.USER

    # negative click (N toggles) cuts the disk
    w._toggle_polarity_key()
    assert not w.positive
    w.points_layer.add([[3, 24, 31]])
    wait_idle(qtbot, w)
    assert list(w.points_layer.features["positive"]) == [True, False]
    fc = np.asarray(w.points_layer.face_color)
    assert fc[1, 0] > fc[1, 1] and fc[0, 1] > fc[0, 0]  # red negative, green positive
    assert w.labels_layer.data[3, 24, 31] == 0 and w.labels_layer.data[3, 24, 22] == 1

    w.undo()
    wait_idle(qtbot, w)
    assert len(w.points_layer.data) == 1
    assert w.labels_layer.data[3, 24, 31] == 1  # the negative click is gone
    w.undo()
    wait_idle(qtbot, w)
    assert len(w.points_layer.data) == 0
    assert not w.labels_layer.data[3].any()
    w.redo()
    wait_idle(qtbot, w)
    assert len(w.points_layer.data) == 1 and w.labels_layer.data[3, 24, 26] == 1


def test_burst_of_clicks_is_debounced_and_latest_wins(widget_on_video, qtbot):
    viewer, w = widget_on_video
    pred = w.session.predictor()
    for x in (10, 20, 30, 40):
        w.points_layer.add([[0, 24, x]])
    wait_idle(qtbot, w)
    assert pred.calls == 1  # one segmentation for the whole burst
    assert all(w.labels_layer.data[0, 24, x] == 1 for x in (10, 20, 30, 40))


def test_objects_add_rename_delete(widget_on_video, qtbot):
    viewer, w = widget_on_video
    w.points_layer.add([[0, 24, 20]])
    wait_idle(qtbot, w)
    obj2 = w.add_object("ball")
    assert w.current_object == obj2 == 2
    w.points_layer.add([[0, 10, 50]])
    wait_idle(qtbot, w)
    assert w.labels_layer.data[0, 10, 50] == 2 and w.labels_layer.data[0, 24, 20] == 1
    assert w.session.interactions[(2, 0)].clicks[0].x == 50
    w.rename_object("big ball")
    assert w.session.objects[2].name == "big ball"
    assert "big ball" in w.object_combo.native.currentText()
    w.delete_object()
    wait_idle(qtbot, w)
    assert 2 not in w.session.objects
    assert not (np.asarray(w.labels_layer.data) == 2).any() and w.labels_layer.data[0, 24, 20] == 1
    assert len(w.points_layer.data) == 1


def test_propagation_choice_sets_the_tuning_config(widget_on_video):
    viewer, w = widget_on_video
    seen = {}
    for choice in w.quality.choices:
        w.quality.value = choice
        cfg = w._config()
        cfg.check()
        seen[choice] = (cfg.mode, cfg.int8, cfg.input_long_side, cfg.flip)
    from napari_vidseg.video.finetune import FinetuneConfig

    default = FinetuneConfig().input_long_side
    assert seen == {"fast": ("head", False, default, False), "fast, int8 (CPU)": ("head", True, default, False),
                    "mirrored (2x network time)": ("head", False, default, True),
                    "quality (1.5x input)": ("head", False, 1280, False),
                    "quality (1.5x input, mirrored)": ("head", False, 1280, True)}
    # The self-training box: on by default where the library's default is on; either way it decides.
    assert w.self_train.value == (FinetuneConfig().self_train > 0)
    w.self_train.value = True
    assert w._config().self_train >= 1
    w.self_train.value = False
    assert w._config().self_train == 0
    # The refine box: the library's default, and it decides.
    assert w.refine.value == FinetuneConfig().refine
    for on in (True, False):
        w.refine.value = on
        assert w._config().refine is on


def test_errors_are_reported_not_raised(widget_on_video, qtbot, monkeypatch):
    viewer, w = widget_on_video
    shown = []
    monkeypatch.setattr("napari_vidseg._napari.widget.show_error", shown.append)
    w.points_layer.add([[0, 24, 500]])  # outside the 64-pixel-wide frame
    wait_idle(qtbot, w)
    assert shown and "outside" in shown[-1]
    assert "Error" in w.status.value
    assert len(w.points_layer.data) == 0  # removed: it cannot break the next click
    w.points_layer.add([[0, 24, 20]])
    wait_idle(qtbot, w)
    assert w.labels_layer.data[0, 24, 20] == 1 and "Error" not in w.status.value
    with pytest.raises(InputError, match="Points"):
        w.bind(w.points_layer)


def test_propagate_fills_every_frame_worst_jumps_export_sticker(widget_on_video, qtbot, tmp_path):
    viewer, w = widget_on_video
    w.session.set_parent(random_parent())
    # a click on frame 0 gives its mask (and the annotation the tiny parent tunes on)
    w.points_layer.add([[0, 24, 20]])
    wait_idle(qtbot, w)
    assert w.labels_layer.data[0, 24, 20] == 1 and (w.labels_layer.data[0] == 1).sum() == 149
    assert w.session.masks.provenance(1, 0) is Provenance.USER
    seen = []
    w._long_yielded = _spy(w._long_yielded, seen)
    cfg = tiny_config()
    assert cfg.self_train  # the default: two passes
    w.propagate(config=cfg)
    wait_idle(qtbot, w, timeout=600_000)
    assert "Error" not in w.status.value, w.status.value
    assert w.status.value == "Propagation done."
    stages = {p.stage for p in seen}
    assert {"finetune", "propagate"} <= stages
    shown = sorted(p.frame for p in seen if p.stage == "propagate" and p.frame is not None)
    # Each propagated frame was drawn as it came: every first_pass_stride-th one in the first pass, then all.
    first = list(range(cfg.first_pass_stride, T, cfg.first_pass_stride))
    assert shown == sorted(first + list(range(1, T)))
    # the job is over: its progress bars are gone (napari's closed), the buttons back
    from napari.utils import progress

    assert w._activity is None and not w.progress_bar.visible
    assert not progress._all_instances
    assert w.propagate_btn.enabled and w.export_btn.enabled and not w.cancel_btn.enabled
    for t in range(1, T):
        assert w.session.masks.provenance(1, t) is Provenance.PROPAGATED
        stored = w.session.masks.get(1, t)
        np.testing.assert_array_equal(w.labels_layer.data[t] == 1, stored)
    # A random-init network may predict an empty frame, or one that fills a box (the whole frame,
    # or with FinetuneConfig.reach a box around the previous mask), and a box can be
    # the whole sticker crop. Give those frames a small L-shaped object, so that every sticker frame
    # has both content and background (what is tested below is the wiring, not the model).
    for t in range(1, T):
        m = w.session.masks.get(1, t)
        ys, xs = np.nonzero(m)
        if not m.any() or m.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1):
            m = np.zeros_like(m)
            m[20:28, 20:28] = True
            m[20:24, 28:32] = True
            w.session.masks.set(1, t, m, Provenance.PROPAGATED, 0.1)
    w.refresh_worst_frames()
    wait_idle(qtbot, w)
    assert w.worst_list.native.count() >= 1
    target = w.worst_frames[-1]
    item = w.worst_list.native.item(len(w.worst_frames) - 1)
    w.worst_list.native.itemClicked.emit(item)
    assert w.current_frame == target
    assert viewer.layers.selection.active is w.points_layer and w.points_layer.mode == "add"
    assert 0 not in w.worst_frames  # the annotated frame is never "worst"

    w.export(tmp_path / "out")
    wait_idle(qtbot, w, timeout=600_000)
    assert "Error" not in w.status.value, w.status.value
    out = tmp_path / "out"
    assert len(list((out / "masks").glob("*.png"))) == T
    from PIL import Image, ImageSequence

    for t in (0, target):
        png = np.asarray(Image.open(out / "masks" / f"{t:05d}.png")) > 0
        np.testing.assert_array_equal(png, w.session.masks.get(1, t))
    labels = np.load(out / "labels.npy")
    assert labels.shape == (T, H, W) and labels[0, 24, 20] == 1
    gif = next(out.glob("*.gif"))
    assert next(out.glob("*.webp")).stat().st_size > 0
    assert next(out.glob("*.mp4")).stat().st_size > 0
    with Image.open(gif) as im:
        frames = [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(im)]
    assert len(frames) == T
    for f in frames:
        assert (f[..., 3] == 0).any(), "every sticker frame has transparent background"
        assert (f[..., 3] == 255).any(), "and an opaque object"


def test_long_job_progress_never_reenters_its_slots(widget_on_video, qtbot):
    """napari's progress bar runs a nested event loop on each update: the job's later
    signals must still be handled in order, after the slot that is running."""
    from napari.utils import progress

    from napari_vidseg.types import Progress

    viewer, w = widget_on_video
    depth, calls = [0], []
    real = w._long_yielded

    def yielded(item):
        depth[0] += 1
        calls.append((depth[0], item.done))
        try:
            real(item)
        finally:
            depth[0] -= 1

    w._long_yielded = yielded

    def many_steps():
        for i in range(1, 41):
            yield Progress("export", i, 40, frame=i - 1)
        return {}

    w._run_long(many_steps, kind="export")
    wait_idle(qtbot, w)
    assert [d for d, _ in calls] == [1] * 40  # never nested
    assert [n for _, n in calls] == list(range(1, 41))
    assert w.status.value == "Exported: "  # not overwritten by a late frame count
    assert w._activity is None and not progress._all_instances


def test_correct_and_repropagate_is_one_action(widget_on_video, qtbot):
    viewer, w = widget_on_video
    w.session.set_parent(random_parent())
    w.quality.value = "fast"
    w.points_layer.add([[0, 24, 20]])
    wait_idle(qtbot, w)
    w.propagate(config=tiny_config())
    wait_idle(qtbot, w, timeout=600_000)
    w.set_frame(5)
    w.points_layer.add([[5, 24, 30]])
    w._config = tiny_config  # the button uses the widget's config
    w.correct_and_propagate()
    wait_idle(qtbot, w, timeout=600_000)
    assert w.session.masks.provenance(1, 5) is Provenance.CORRECTED
    assert set(w.session.masks.annotated(1)) == {0, 5}
    assert all(w.session.masks.provenance(1, t) is Provenance.PROPAGATED for t in (1, 2, 3, 4, 6, 7))


def test_painted_edit_is_stored(widget_on_video, qtbot, monkeypatch):
    from napari_vidseg._napari import jobs

    viewer, w = widget_on_video
    stores = []
    real_store = jobs.store_painted
    monkeypatch.setattr(jobs, "store_painted", lambda *a: stores.append(sorted(a[1])) or real_store(*a))
    shown = []
    monkeypatch.setattr("napari_vidseg._napari.widget.show_error", shown.append)
    w.points_layer.add([[2, 24, 20]])
    wait_idle(qtbot, w)
    assert not stores  # showing the click's result is no user edit: no echo
    lab = w.labels_layer
    assert lab.selected_label == 1  # the brush paints the selected object

    def stored_matches_layer(t):
        stored = w.session.masks.get(1, t)
        assert stored is not None
        np.testing.assert_array_equal(stored, lab.data[t] == 1)
        return stored

    # data_setitem (napari records it in its history; its event comes before the write)
    rows, cols = np.mgrid[2:6, 50:60]
    lab.data_setitem((np.full(rows.size, 2), rows.ravel(), cols.ravel()), 1)
    wait_idle(qtbot, w)
    assert stores == [[2]]
    stored = stored_matches_layer(2)
    assert stored[2:6, 50:60].all() and stored[24, 20] and stored.sum() == 149 + 40
    assert w.session.masks.provenance(1, 2) is Provenance.USER
    # a brush stroke (several dabs, one history item) and an eraser dab
    with lab.block_history():
        lab.paint((2, 40, 10), 1)
        lab.paint((2, 40, 16), 1)
    wait_idle(qtbot, w)
    stored = stored_matches_layer(2)
    assert stored[40, 10] and stored[40, 16] and stored[40, 13]
    lab.paint((2, 24, 20), 0)
    wait_idle(qtbot, w)
    stored = stored_matches_layer(2)
    assert not stored[24, 20] and stored[24, 14]  # a radius-5 dab in a radius-7 disk
    # napari's own undo / redo of the masks layer: the session follows
    lab.undo()
    wait_idle(qtbot, w)
    assert stored_matches_layer(2)[24, 20]
    lab.redo()
    wait_idle(qtbot, w)
    assert not stored_matches_layer(2)[24, 20]
    # the next click starts from the painted mask (the segmenter gets it to refine)
    painted = lab.data[2] == 1
    w.points_layer.add([[2, 10, 30]])
    wait_idle(qtbot, w)
    np.testing.assert_array_equal(w.session.predictor().prev_mask, painted)
    stored_matches_layer(2)
    # painting a propagated frame corrects it
    prop = np.zeros((H, W), bool)
    prop[20:28, 30:40] = True
    w.session.masks.set(1, 5, prop, Provenance.PROPAGATED, 0.5)
    lab.paint((5, 24, 45), 1)
    wait_idle(qtbot, w)
    stored = stored_matches_layer(5)
    assert w.session.masks.provenance(1, 5) is Provenance.CORRECTED
    assert stored[20:28, 30:40].all() and stored[24, 45]
    # a label that is no object: reported, and the layer shows what the session holds
    before = w.session.masks.get(1, 5).copy()
    lab.paint((5, 40, 5), 7)
    wait_idle(qtbot, w)
    assert shown and "label 7 is not an object" in shown[-1]
    assert not (lab.data[5] == 7).any()
    np.testing.assert_array_equal(w.session.masks.get(1, 5), before)


def test_session_folder_is_restored_into_layers(make_napari_viewer, qtbot, tmp_path):
    from napari_vidseg._napari.widget import VidSegWidget

    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(moving_disk_video(), rgb=True, name="disk")
    w = VidSegWidget(viewer)
    w.bind(layer, folder=tmp_path / "s")
    w.session.set_predictor(DiskPredictor())
    w.points_layer.add([[4, 24, 28]])
    wait_idle(qtbot, w)
    assert w.session.folder == tmp_path / "s"

    viewer2 = make_napari_viewer(show=True)
    layer2 = viewer2.add_image(moving_disk_video(), rgb=True, name="disk")
    w2 = VidSegWidget(viewer2)
    w2.bind(layer2, folder=tmp_path / "s")
    wait_idle(qtbot, w2)
    assert len(w2.points_layer.data) == 1 and tuple(w2.points_layer.data[0]) == (4, 24, 28)
    np.testing.assert_array_equal(w2.labels_layer.data, w.labels_layer.data)


def _spy(fn, seen):
    def wrapped(item):
        seen.append(item)
        return fn(item)
    return wrapped


REAL_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / MODELS["interactive"].filename


@pytest.mark.skipif(not REAL_WEIGHTS.exists(), reason=f"shipped weights {REAL_WEIGHTS} not built yet")
def test_real_predictor_segments_the_sample_clip(make_napari_viewer, qtbot):
    from napari_vidseg._napari.widget import VidSegWidget
    from napari_vidseg.interactions.robot import iou
    from napari_vidseg.sample import sample_clip_path, sample_truth

    truth = sample_truth()
    viewer = make_napari_viewer(show=True)
    (layer,) = viewer.open(str(sample_clip_path()), plugin="napari-vidseg")
    w = VidSegWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.bind(layer)
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(truth[0])
    row, col = np.unravel_index(np.argmax(d), d.shape)
    w.points_layer.add([[0, row, col]])
    wait_idle(qtbot, w, timeout=600_000)
    assert "Error" not in w.status.value, w.status.value
    assert iou(w.labels_layer.data[0] == 1, truth[0]) > 0.6


def test_new_object_per_click_many_objects_and_the_object_list(widget_on_video, qtbot):
    viewer, w = widget_on_video
    w.new_per_click.value = True
    w.points_layer.add([[0, 24, 20]])  # the first object takes the first click
    w.points_layer.add([[0, 6, 58]])  # a burst: a second spot, before the first is segmented
    wait_idle(qtbot, w)
    assert sorted(w.session.objects) == [1, 2]
    assert w.labels_layer.data[0, 24, 20] == 1 and w.labels_layer.data[0, 6, 58] == 2
    assert w.current_object == 2
    w.points_layer.add([[0, 22, 18]])  # on object 1: selects and refines it, no new object
    wait_idle(qtbot, w)
    assert sorted(w.session.objects) == [1, 2] and w.current_object == 1
    assert len(w.session.interactions[(1, 0)].clicks) == 2
    w._toggle_polarity_key()  # negative clicks refine the selected object
    w.points_layer.add([[0, 40, 5]])
    wait_idle(qtbot, w)
    assert sorted(w.session.objects) == [1, 2]
    assert [c.positive for c in w.session.interactions[(1, 0)].clicks] == [True, True, False]
    # finding objects by name, and going to an object's first frame
    w.rename_object("left cell")
    w.object_filter.value = "left"
    assert [v for _, v in w._object_choices()] == [1]
    w.object_filter.value = ""
    w.set_frame(5)
    w.go_to_first_frame()
    assert w.current_frame == 0


def test_scientific_layers_grey_16bit_and_channel_stacks(make_napari_viewer, qtbot):
    """A uint16 grey time-lapse is segmented as the layer shows it (its contrast limits); a
    (T, C, Y, X) stack is offered with a channel choice and segmented through a derived layer."""
    from napari_vidseg._napari.widget import VidSegWidget

    viewer = make_napari_viewer(show=True)
    yy, xx = np.mgrid[:H, :W]
    grey = np.full((T, H, W), 100, np.uint16)
    for t in range(T):
        grey[t][(yy - 24) ** 2 + (xx - 20 - 2 * t) ** 2 <= 100] = 300  # a dim 16-bit cell
    layer = viewer.add_image(grey, name="cells", contrast_limits=(100, 300))
    w = VidSegWidget(viewer)
    viewer.window.add_dock_widget(w)
    shown = lambda widget: widget.native.isVisibleTo(w.native)  # noqa: E731 (whatever the dock's state)
    assert w.video_combo.value.name == "cells" and not shown(w.channel)
    w.bind(layer)
    frame = w.session.source.frame(0)
    assert frame.dtype == np.uint8 and frame[24, 20].max() == 255 and frame[0, 0].max() == 0

    stack = np.zeros((T, 2, H, W), np.uint16)
    stack[:, 1] = grey
    viewer.add_image(stack, name="two channels", channel_axis=None)
    w.video_combo.value = next(lay for lay in viewer.layers if lay.name == "two channels")
    assert shown(w.channel) and w.channel.choices == ("composite", "channel 0", "channel 1")
    w.channel.value = "channel 1"
    w._start_clicked()
    assert "Error" not in w.status.value, w.status.value
    assert w.video_layer.name == "two channels (channel 1)"
    assert w.labels_layer.data.shape == (T, H, W)
    assert w.session.source.frame(3)[24, 26].max() == 255  # the cell, 2 px a frame to the right


def test_export_in_the_formats_other_tools_read(widget_on_video, qtbot, tmp_path):
    viewer, w = widget_on_video
    w.points_layer.add([[0, 24, 20]])
    w.add_object("second")
    w.points_layer.add([[2, 10, 50]])
    wait_idle(qtbot, w)
    w.formats.value = ["Cell Tracking Challenge", "OME-Zarr labels", "COCO JSON", "label TIFF"]
    w.export(tmp_path / "out")
    wait_idle(qtbot, w, timeout=600_000)
    assert "Error" not in w.status.value, w.status.value
    out = tmp_path / "out"
    import json

    import tifffile

    ctc = sorted((out / "ctc").glob("mask*.tif"))
    assert len(ctc) == T and tifffile.imread(ctc[0])[24, 20] == 1 and tifffile.imread(ctc[2])[10, 50] == 2
    assert (out / "ctc" / "res_track.txt").read_text().split()[:4] == ["1", "0", "0", "0"]
    volume = tifffile.imread(out / "labels.tif")
    assert volume.shape == (T, H, W) and volume[2, 10, 50] == 2
    coco = json.loads((out / "coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["object 1", "second"] and len(coco["images"]) == T
    assert sorted((a["image_id"], a["track_id"]) for a in coco["annotations"]) == [(1, 1), (3, 2)]
    assert (out / "labels.ome.zarr").is_dir()
