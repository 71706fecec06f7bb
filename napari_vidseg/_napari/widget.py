"""The dock widget: clicks and strokes on a video layer -> masks, propagation, export.

The widget is an adapter: it reads the layers it manages (layers.py), hands
plain data to jobs (jobs.py) that run the library in worker threads, and draws
what comes back.  No model call ever runs on the GUI thread.

Flow of one click: the Points layer emits a data event -> the (object, frame)
is marked dirty -> after a short debounce (150 ms, so a burst of clicks costs
one segmentation) the frame's interactions are snapshotted and queued -> a
worker makes the session match them (one re-segmentation) -> the frame's label
image is written into the Labels layer with ``data_setitem`` (napari's undo
history then holds it).  Each (object, frame) has a request counter: a result
that a newer request has superseded is dropped (latest request wins).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, ProgressBar,
                              PushButton, RadioButtons, Select)
from qtpy.QtCore import QTimer
from superqt.utils import ensure_main_thread

from ..types import InputError, Interactions
from . import jobs
from . import layers as L
from .llvm_guard import keep_triton_out
from .runner import ActivityBar, JobQueue, guarded_gen
from .score_strip import ScoreStrip

log = logging.getLogger(__name__)

DEBOUNCE_MS = 150
PAINT_STORE_MS = 400
N_WORST = 10

SHORTCUTS = """Keyboard shortcuts (on the clicks and strokes layers):
  click (Points layer, add mode)  add a click to the selected object
  Shift+click                     add a negative click
  N                               toggle positive / negative
  Ctrl+Z / Ctrl+Shift+Z           undo / redo the last click or stroke on this frame
  Delete (select mode)            remove selected clicks (the frame is re-segmented)
On the masks (Labels) layer napari's own brush, eraser and Ctrl+Z work; painted
edits are stored in the session."""

# The Propagation choices -> FinetuneConfig fields.
# "quality" runs the network on frames 1.5x larger than the default (864 -> 1280 px on the long side), at about
# twice the time per frame: cross-validated on the 30 DAVIS-2016 training sequences J +1.26 (standard error
# 0.63, 24 of 30 better), with mirrored frames +2.00 (0.64) (session 12, docs/video.md). Tuning more layers
# ("full" mode, still in the library and CLI) was not better (-0.05, se 1.40), so it is no preset here.
PROPAGATION_MODES = {
    "fast": dict(mode="head"),
    "fast, int8 (CPU)": dict(mode="head", int8=True),
    # Mirrored frames at the default size: the one change that is better both cross-validated (J +0.91, se 0.17,
    # 25 of 30) and on DAVIS val (+0.70 from the true mask, se 0.24, 9 of 10; +0.73 from 8 clicks); the 1.5x
    # input was better cross-validated but not on val (quality preset from 8 clicks -1.7, se 1.0; session 12,
    # docs/video.md). 8 frames/s on the 2-core EPYC.
    "mirrored (2x network time)": dict(mode="head", flip=True),
    "quality (1.5x input)": dict(mode="head", input_long_side=1280),
    # Each frame and its mirror image, averaged: cross-validated J +0.9 on its own (25-26 of 30 better),
    # twice the network's time per frame.
    "quality (1.5x input, mirrored)": dict(mode="head", input_long_side=1280, flip=True),
}

def _library_defaults():
    """FinetuneConfig() (imported late: torch is not needed to build the widget module)."""
    from ..video.finetune import FinetuneConfig

    return FinetuneConfig()


#: Formats of io/formats offered by the export -> the writer's name.
EXPORT_FORMATS = {"Cell Tracking Challenge": "ctc", "OME-Zarr labels": "ome-zarr", "COCO JSON": "coco",
                  "label TIFF": "label-tiff"}

#: Export choices -> which object (None: all of them).
EXPORT_CHOICES = {"all objects": None, "selected object": "selected"}

WORST_TOOLTIP = ("Propagated frames most likely wrong, worst first; click one to go there, click on the object to "
                 "correct it, then 'Correct & re-propagate'. Quality (0-1, higher is better) averages three cues "
                 "computed without ground truth: the network's confidence near the object, the mask's agreement "
                 "with its neighbouring frames, and how steady its area is.")

BACKGROUNDS = {
    "original (dimmed)": None,
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "green screen": (0, 177, 64),
    "image file": "file",
}


def show_error(message: str) -> None:
    """A one-line error notification (never a traceback in the viewer)."""
    try:
        from napari.utils.notifications import show_error as _show

        _show(message)
    except Exception:  # no viewer (scripts): the log is enough
        log.error(message)


def show_info(message: str) -> None:
    try:
        from napari.utils.notifications import show_info as _show

        _show(message)
    except Exception:
        log.info(message)


def describe(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class VidSegWidget(Container):
    """Interactive video object segmentation, bound to one video layer at a time."""

    def __init__(self, napari_viewer, session_folder: str | Path | None = None):
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.session = None
        self.video_layer = None
        self.points_layer = None
        self.shapes_layer = None
        self.labels_layer = None
        self._session_folder = session_folder
        self._syncing = False  # True while the widget itself edits its layers
        self._dirty: set[tuple[int, int]] = set()
        self._requests: dict[tuple[int, int], int] = {}
        self._removing: set[tuple[int, int]] = set()
        self._long_worker = None  # propagation or export
        self._cancel = threading.Event()
        self._after_propagate: list[Callable[[], None]] = []
        self._activity: ActivityBar | None = None  # napari's progress bar of the long job
        self._long_id = 0  # which long job is the current one
        self.volume = None  # the masks layer's data (video/label_volume.LabelVolume)
        self.jobs = JobQueue(self._report)
        self._debounce = QTimer()
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.flush)
        self._paint_timer = QTimer()  # painted frames are stored after a pause (see _on_labels_written)
        self._paint_timer.setSingleShot(True)
        self._paint_timer.setInterval(PAINT_STORE_MS)
        self._paint_timer.timeout.connect(self._store_painted)
        self._build()
        self._connect_viewer()
        self.tooltip = SHORTCUTS

    # -- construction ------------------------------------------------------------
    def _build(self) -> None:
        self.video_combo = ComboBox(label="Video", choices=self._video_choices,
                                    tooltip="The video layer: RGB (T, H, W, 3) or a (T, H, W) time series")
        self.start_btn = PushButton(text="Start on this video",
                                    tooltip="Create the clicks, strokes and masks layers for this video")
        self.unusable = Label(value="", visible=False)
        self.channel = ComboBox(label="Channel", choices=["composite"], value="composite", visible=False,
                                tooltip="A (T, C, Y, X) stack: the channel to segment, or all channels as a "
                                        "colour composite (what the networks see appears as a new layer)")
        self.object_combo = ComboBox(label="Object", choices=self._object_choices,
                                     tooltip="Clicks and strokes go to the selected object (one label id each)")
        self.add_obj_btn = PushButton(text="Add object")
        self.del_obj_btn = PushButton(text="Delete")
        self.object_filter = LineEdit(label="Find", tooltip="Show only the objects whose number or name contains "
                                                            "this text (for videos with many objects)")
        self.first_frame_btn = PushButton(text="Go to its first frame",
                                          tooltip="Move the time slider to the selected object's first mask")
        self.new_per_click = CheckBox(text="New object per click", value=False,
                                      tooltip="Many alike objects (cells, animals): a positive click on a spot no "
                                              "object covers starts a new object; a click on an object selects "
                                              "it and refines it; negative clicks refine the selected one")
        self.name_edit = LineEdit(label="Name", tooltip="Type a name and press Rename")
        self.rename_btn = PushButton(text="Rename")
        self.polarity = RadioButtons(label="Clicks", choices=["positive", "negative"], value="positive",
                                     orientation="horizontal",
                                     tooltip="Polarity of the next click or stroke (N toggles, Shift+click = negative)")
        self.undo_btn = PushButton(text="Undo click", tooltip="Undo the last click or stroke on this frame (Ctrl+Z)")
        self.redo_btn = PushButton(text="Redo click", tooltip="Redo (Ctrl+Shift+Z)")
        self.status = Label(value="Pick a video layer and press Start.")
        self.quality = ComboBox(label="Propagation", choices=list(PROPAGATION_MODES), value="fast",
                                tooltip="fast: tune the decoder on cached features; mirrored: each frame also run "
                                        "mirrored and the two averaged (about +0.7-0.9 J, 2x the network's time); "
                                        "quality: frames 1.5x larger (finer boundaries, about 2x slower; better "
                                        "on the training sequences, not on DAVIS val); "
                                        "int8: fast, then an int8 network on the CPU (faster per frame after "
                                        "a set-up of 5-30 s, for long videos, on CPUs without native bfloat16; "
                                        "where the CPU has it, bfloat16 is used by default and is faster)")
        defaults = _library_defaults()
        self_train, stride = defaults.self_train, defaults.first_pass_stride
        self.self_train = CheckBox(text="Self-train", value=self_train > 0,
                                   tooltip=f"Two passes: a quick first propagation (every {stride}th frame), then "
                                           f"tune again with its {self_train} most trusted "
                                           "masks added and propagate every frame (better masks; about twice the "
                                           "tuning time)")
        self.refine = CheckBox(text="Second opinion", value=defaults.refine,
                               tooltip="Each propagated mask also gets the click segmenter's opinion (as if you "
                                       "clicked once in its middle); the two are averaged (better masks on most "
                                       "videos, at about two thirds of the speed)")
        self.propagate_btn = PushButton(text="Propagate",
                                        tooltip="Fine-tune on the annotated frames and segment every other frame")
        self.cancel_btn = PushButton(text="Cancel", enabled=False,
                                     tooltip="Stop propagation or export; frames done are kept")
        self.progress_bar = ProgressBar(value=0, min=0, max=1, visible=False)
        self.strip = ScoreStrip(on_pick=self.jump_to)
        self._strip_box = Container(labels=False)  # a magicgui slot for the plain Qt strip
        self._strip_box.native.layout().addWidget(self.strip)
        self._strip_box.native.layout().setContentsMargins(0, 0, 0, 0)
        self.worst_list = Select(label="Worst frames", choices=[], tooltip=WORST_TOOLTIP)
        self.correct_btn = PushButton(text="Correct && re-propagate",
                                      tooltip="After clicking on a worst frame: store the correction, re-tune and "
                                              "re-propagate in one go")
        self.export_dir = FileEdit(label="Export to", mode="d", tooltip="Folder for masks, stickers, composite")
        self.export_what = ComboBox(label="Export", choices=list(EXPORT_CHOICES), value="all objects",
                                    tooltip="all objects: label PNGs and a cut-out of every object; "
                                            "selected object: its 0/255 masks and its own cut-out")
        self.formats = Select(label="Also as", choices=list(EXPORT_FORMATS), value=[],
                              tooltip="Formats other tools read, written beside the masks (select several with "
                                      "Ctrl): Cell Tracking Challenge (ctc/maskTTT.tif + res_track.txt), OME-Zarr "
                                      "labels, COCO instance JSON (RLE), a label TIFF; with the video's physical "
                                      "scale where it has one")
        self.background = ComboBox(label="Composite over", choices=list(BACKGROUNDS), value="original (dimmed)")
        self.background_file = FileEdit(label="Background image", mode="r", visible=False)
        self.export_btn = PushButton(text="Export",
                                     tooltip="Mask PNGs (DAVIS layout), labels.npy, GIF + WebP sticker, MP4 composite")
        row = lambda *ws: Container(widgets=list(ws), layout="horizontal", labels=False)  # noqa: E731
        self.extend([
            self.video_combo, self.channel, self.start_btn, self.unusable,
            row(self.object_combo, self.add_obj_btn, self.del_obj_btn),
            row(self.object_filter, self.first_frame_btn),
            row(self.name_edit, self.rename_btn),
            self.new_per_click,
            self.polarity,
            row(self.undo_btn, self.redo_btn),
            self.status,
            self.quality,
            row(self.self_train, self.refine),
            row(self.propagate_btn, self.cancel_btn),
            self.progress_bar,
            Label(value="Frame quality (low = look here; click to go there):"),
            self._strip_box,
            self.worst_list, self.correct_btn,
            self.export_dir, self.export_what, self.formats, self.background, self.background_file, self.export_btn,
        ])
        self.status.native.setWordWrap(True)
        self.unusable.native.setWordWrap(True)
        self.worst_list.native.setMaximumHeight(140)
        self.formats.native.setMaximumHeight(72)
        self.object_filter.native.setPlaceholderText("find an object...")
        self.name_edit.native.setPlaceholderText("name")
        self.start_btn.changed.connect(self._start_clicked)
        self.video_combo.changed.connect(self._video_picked)
        self.add_obj_btn.changed.connect(lambda: self.add_object())
        self.object_filter.changed.connect(lambda _v: self._refresh_objects(select=self.current_object))
        self.first_frame_btn.changed.connect(lambda: self.go_to_first_frame())
        self.del_obj_btn.changed.connect(lambda: self.delete_object())
        self.rename_btn.changed.connect(lambda: self.rename_object(self.name_edit.value))
        self.object_combo.changed.connect(self._object_changed)
        self.polarity.changed.connect(self._polarity_changed)
        self.undo_btn.changed.connect(lambda: self.undo())
        self.redo_btn.changed.connect(lambda: self.redo())
        self.propagate_btn.changed.connect(lambda: self.propagate())
        self.cancel_btn.changed.connect(lambda: self.cancel())
        self.correct_btn.changed.connect(lambda: self.correct_and_propagate())
        self.worst_list.native.itemClicked.connect(self._worst_clicked)
        self.background.changed.connect(
            lambda v: setattr(self.background_file, "visible", BACKGROUNDS[v] == "file"))
        self.export_btn.changed.connect(lambda: self.export())
        self._set_enabled(False)
        self._layers_changed()

    def _connect_viewer(self) -> None:
        ev = self.viewer.layers.events
        ev.inserted.connect(self._layers_changed)
        ev.removed.connect(self._layers_changed)
        self.viewer.dims.events.current_step.connect(self._frame_changed)

    def _set_enabled(self, on: bool) -> None:
        for w in (self.object_combo, self.add_obj_btn, self.del_obj_btn, self.name_edit, self.rename_btn,
                  self.object_filter, self.first_frame_btn, self.new_per_click, self.formats,
                  self.polarity, self.undo_btn, self.redo_btn, self.quality, self.self_train, self.refine,
                  self.propagate_btn, self.worst_list, self.correct_btn, self.export_dir, self.export_what,
                  self.background, self.export_btn):
            w.enabled = on

    def _video_choices(self, _widget=None):
        return [(layer.name, layer) for layer in self.viewer.layers if L.video_layer_problem(layer) is None]

    def _object_choices(self, _widget=None):
        if self.session is None:
            return []
        text = (self.object_filter.value or "").strip().lower() if hasattr(self, "object_filter") else ""
        objects = sorted(self.session.objects.values(), key=lambda o: o.id)
        shown = [o for o in objects if not text or text in f"{o.id}: {o.name}".lower()]
        selected = self.object_combo.value if hasattr(self, "object_combo") else None
        if selected in self.session.objects and selected not in {o.id for o in shown}:
            shown.append(self.session.objects[selected])  # the selected object stays selectable
        return [(f"{o.id}: {o.name}", o.id) for o in shown]

    def _video_picked(self, layer=None) -> None:
        """Offer the channels of a (T, C, Y, X) stack."""
        layer = self.video_combo.value
        stack = layer is not None and L.channel_axes(layer) is not None
        if stack:
            n = int(layer.data.shape[1])
            self.channel.choices = ["composite"] + [f"channel {c}" for c in range(n)]
        self.channel.visible = bool(stack)

    def _layers_changed(self, event=None) -> None:
        """Offer every usable image layer (the first one picked when none is), and say why
        the other image layers are not offered rather than leave them silently missing."""
        self.video_combo.reset_choices()
        if self.video_combo.value is None and self.video_combo.choices:
            self.video_combo.value = self.video_combo.choices[0]
        self._video_picked()
        managed = [lay for lay in (self.points_layer, self.shapes_layer, self.labels_layer) if lay is not None]
        skipped = [f"{lay.name!r}: {L.video_layer_problem(lay)}" for lay in self.viewer.layers
                   if type(lay).__name__ == "Image" and L.video_layer_problem(lay) is not None]
        self.unusable.value = ("Not usable as a video: " + "; ".join(skipped)) if skipped else ""
        self.unusable.visible = bool(skipped)
        if self.video_layer is not None and self.video_layer not in self.viewer.layers:
            self.status.value = "The video layer was removed; pick another and press Start."
            self._set_enabled(False)
        elif managed and any(lay not in self.viewer.layers for lay in managed) and self.session is not None:
            self.status.value = ("A layer the widget made (clicks, strokes or masks) was removed; press Start "
                                 "to make it again (the session keeps everything).")

    # -- state ----------------------------------------------------------------------
    @property
    def current_object(self) -> int | None:
        return self.object_combo.value

    @property
    def current_frame(self) -> int:
        """The frame under the time slider (the axis before the last two)."""
        axis = max(self.viewer.dims.ndim - 3, 0)
        return int(self.viewer.dims.current_step[axis])

    def set_frame(self, t: int) -> None:
        self.viewer.dims.set_current_step(max(self.viewer.dims.ndim - 3, 0), int(t))

    @property
    def positive(self) -> bool:
        return self.polarity.value == "positive"

    @property
    def busy(self) -> bool:
        """True while anything is pending: a debounce, a queued job or propagation/export."""
        return (bool(self._dirty) or self._debounce.isActive() or self._paint_timer.isActive() or self.jobs.busy
                or self._long_worker is not None)

    def _report(self, exc: BaseException) -> None:
        message = describe(exc)
        self.status.value = f"Error: {message}"
        show_error(message)

    # -- binding to a video --------------------------------------------------------------
    def _start_clicked(self) -> None:
        layer = self.video_combo.value
        if layer is None:
            show_error("no video layer: open a video (File > Open) or the sample clip first")
            return
        try:
            if L.channel_axes(layer) is not None:
                layer = self._channel_layer(layer)
            self.bind(layer)
        except Exception as e:
            self._report(e)

    def bind(self, layer, session=None, folder=None):
        """Attach to `layer` (an Image layer): open or create a session and the managed layers.

        session: an existing VideoSession for this video (scripts); otherwise one is
        created for the layer's file (``metadata["vidseg_path"]``) or, without a file,
        over the layer's array in memory.  folder: where to keep the session (None: in
        memory, or the folder given to the widget).
        """
        L.check_video_layer(layer)
        if self.busy:
            raise InputError("wait for the running job to finish (or cancel it) before switching videos")
        if session is None:
            session = self._open_session(layer, folder if folder is not None else self._session_folder)
        shape = tuple(layer.data.shape)
        if (session.source.n_frames, session.source.height, session.source.width) != shape[:3]:
            raise InputError(f"the session's video is {session.source.n_frames}x{session.source.height}x"
                             f"{session.source.width} but layer {layer.name!r} has shape {shape}")
        self._unbind_layers()
        self._follow(None)
        if self.session is not None and self.session is not session:
            self.session.close()  # its folder's lock: another process (or widget) may open it now
        self.session = session
        self.video_layer = layer
        if self.video_combo.value != layer:
            self.video_combo.reset_choices()
            self.video_combo.value = layer
        if not session.objects:
            session.add_object()
        self._make_layers(layer)
        self._follow(session)
        self._refresh_objects()
        self._restore_layers()
        self._set_enabled(True)
        # The dock took part of the window after napari fitted the view: fit it again, so the
        # whole frame is on the canvas (clicks near its edges included), once Qt has laid the
        # window out (a resize still pending would leave napari fitting the old canvas size).
        QTimer.singleShot(50, self.viewer.reset_view)
        kept = f" Work kept in {session.folder}." if session.folder is not None else \
            " This session is in memory (the layer has no file): export before closing napari."
        self.status.value = ("Click on the object (Points layer, add mode); Shift+click or N for negative. "
                             f"{session.source.n_frames} frames, {session.source.width}x{session.source.height}."
                             + kept)
        return session

    def _channel_layer(self, layer):
        """A (T, C, Y, X) stack: the chosen channel (or the colour composite) as a lazy RGB video
        layer of what the networks see; the widget works on that layer."""
        from ..io.frame_array import FrameArray
        from .sources import source_from_layer

        choice = self.channel.value
        channel = None if choice == "composite" else int(choice.split()[-1])
        source = source_from_layer(layer, channel=channel, contrast_limits=None, axes="TCYX")
        name = f"{layer.name} ({choice})"
        for existing in self.viewer.layers:
            if existing.name == name and L.video_layer_problem(existing) is None:
                return existing
        scale = tuple(layer.scale)
        return self.viewer.add_image(FrameArray(source), rgb=True, name=name,
                                     scale=(scale[0], scale[-2], scale[-1]),
                                     metadata={"vidseg_source": source})

    def _open_session(self, layer, folder):
        from ..video.session import VideoSession

        path = (layer.metadata or {}).get("vidseg_path")
        source = (layer.metadata or {}).get("vidseg_source")
        if source is None and path is None:
            from .sources import source_from_layer

            # Intensities as the layer shows them (its contrast limits): what the user sees is what
            # the networks see (grey 16-bit or float time-lapses included).
            source = source_from_layer(layer)
        video = source if source is not None else path
        if folder is None and path is not None and source is None:
            folder = VideoSession.default_folder(path)  # a file: its work is kept (and re-opened) there
        if folder is not None:
            return VideoSession.open_or_create(video, folder)
        return VideoSession.create(video)  # an array in memory: no file to keep its work beside

    def _make_layers(self, layer) -> None:
        from ..video.label_volume import LabelVolume

        T, H, W = self.session.source.n_frames, self.session.source.height, self.session.source.width
        scale, translate = tuple(layer.scale)[:3], tuple(layer.translate)[:3]
        size = max(4.0, max(H, W) / 50)
        import pandas as pd

        # The masks layer reads the session's mask store frame by frame (memory does not grow
        # with the video), and every write napari makes to it (brush, fill, its own Ctrl+Z)
        # comes back through on_write: see video/label_volume.py.
        self.volume = LabelVolume(lambda t: self.session.masks.labels(t), (T, H, W), np.uint16,
                                  on_write=self._on_labels_written)
        self.labels_layer = self.viewer.add_labels(
            self.volume, name=f"{layer.name} masks", scale=scale, translate=translate, opacity=0.55)
        self.shapes_layer = self.viewer.add_shapes(
            None, ndim=3, name=f"{layer.name} strokes", scale=scale, translate=translate,
            edge_width=max(2.0, size / 2), edge_color=L.POSITIVE_COLOR, face_color=[0, 0, 0, 0])
        self.shapes_layer.features = pd.DataFrame({"positive": np.zeros(0, bool), "object": np.zeros(0, int)})
        self.points_layer = self.viewer.add_points(
            np.zeros((0, 3)), ndim=3, name=f"{layer.name} clicks", scale=scale, translate=translate,
            size=size, border_color="white", border_width=0.15, face_color=L.POSITIVE_COLOR,
            features=pd.DataFrame({"positive": np.zeros(0, bool), "object": np.zeros(0, int)}))
        for lay in (self.points_layer, self.shapes_layer):
            lay.events.data.connect(self._on_interaction_data)
            lay.bind_key("n", self._toggle_polarity_key, overwrite=True)
            lay.bind_key("Control-z", lambda _l: self.undo(), overwrite=True)
            lay.bind_key("Control-Shift-z", lambda _l: self.redo(), overwrite=True)
        # A brush stroke ends with a paint event: store it now rather than after the pause.
        self.labels_layer.events.paint.connect(self._store_painted_now)
        self._apply_defaults()
        self.points_layer.mode = "add"
        self.viewer.layers.selection.active = self.points_layer

    def _unbind_layers(self) -> None:
        for lay in (self.points_layer, self.shapes_layer):
            if lay is not None:
                try:
                    lay.events.data.disconnect(self._on_interaction_data)
                except Exception:
                    pass
        if self.labels_layer is not None:
            try:
                self.labels_layer.events.paint.disconnect(self._store_painted_now)
            except Exception:
                pass
            self.volume.on_write = None

    def _restore_layers(self) -> None:
        """Show a re-opened session's clicks and strokes (its masks the masks layer reads itself)."""
        if not self.session.interactions:
            return
        self._syncing = True
        try:
            L.restore_interactions(self.points_layer, self.shapes_layer, self.session.interactions)
        finally:
            self._syncing = False

    # -- following the session (its signals; a script may change it too) ---------------
    def _follow(self, session) -> None:
        """Listen to `session`'s signals (None: stop listening to the current one)."""
        if session is None:
            if self.session is not None:
                for signal, slot in self._session_slots():
                    signal.disconnect(slot)
            return
        for signal, slot in self._session_slots(session):
            signal.connect(slot)

    def _session_slots(self, session=None):
        s = session or self.session
        return ((s.mask_changed, self._on_mask_changed), (s.interactions_changed, self._on_interactions_changed),
                (s.objects_changed, self._on_objects_changed))

    @ensure_main_thread
    def _on_mask_changed(self, t: int, objects: tuple) -> None:
        self.show_frames([t])

    @ensure_main_thread
    def _on_interactions_changed(self, t: int, obj: int) -> None:
        """Show the session's clicks and strokes of (obj, t), unless the widget has work of its
        own queued for that frame (its result redraws them; the layers may hold newer clicks)."""
        if self.session is None or self.points_layer is None or self.busy:
            return
        inter = self.session.interactions.get((obj, t)) or Interactions()
        self._syncing = True
        try:
            if L.layers_to_interactions(self.points_layer, None, t, obj).clicks != inter.clicks:
                L.set_frame_clicks(self.points_layer, t, obj, inter.clicks)
            if L.shapes_to_strokes(self.shapes_layer, t, obj) != inter.strokes:
                L.set_frame_strokes(self.shapes_layer, t, obj, inter.strokes)
        finally:
            self._syncing = False

    @ensure_main_thread
    def _on_objects_changed(self) -> None:
        if self.session is None:
            return
        self._refresh_objects(select=self.current_object)
        shown = {o for _, o, _ in L.iter_clicks(self.points_layer)} | \
            {o for _, o, _ in L.iter_strokes(self.shapes_layer)}
        gone = shown - set(self.session.objects)
        self._syncing = True
        try:
            for obj in gone:
                self._drop_layer_entries(obj)
        finally:
            self._syncing = False
        self.show_frames()

    # -- objects -------------------------------------------------------------------------
    def _refresh_objects(self, select: int | None = None) -> None:
        self.object_combo.reset_choices()
        ids = [v for _, v in self._object_choices()]
        if select is not None and select in ids:
            self.object_combo.value = select
        elif self.object_combo.value not in ids and ids:
            self.object_combo.value = ids[0]
        self._object_changed(self.object_combo.value)

    def add_object(self, name: str | None = None) -> int:
        self._require_session()
        obj = self.session.add_object(name)
        if obj > 65535:  # the masks layer holds uint16 labels, as the library's label images
            self.session.remove_object(obj)
            raise InputError("the widget shows at most 65,535 objects")
        self._refresh_objects(select=obj)
        return obj

    def rename_object(self, name: str) -> None:
        self._require_session()
        if self.current_object is None:
            return
        try:
            self.session.rename_object(self.current_object, name)
        except InputError as e:
            self._report(e)
            return
        self._refresh_objects(select=self.current_object)

    def delete_object(self) -> None:
        self._require_session()
        obj = self.current_object
        if obj is None:
            return
        self._syncing = True
        try:
            self._drop_layer_entries(obj)
        finally:
            self._syncing = False
        self._dirty = {k for k in self._dirty if k[0] != obj}
        self.jobs.submit(jobs.remove_object, self.session, obj, on_done=self.show_frames)
        # The session drops the object in the job; the list updates when it is done.
        self.jobs.submit(lambda: None, on_done=lambda _: self._refresh_objects())

    def _drop_layer_entries(self, obj: int) -> None:
        for lay, items in ((self.points_layer, L.iter_clicks), (self.shapes_layer, L.iter_strokes)):
            frames = {t for t, o, _ in items(lay) if o == obj}
            for t in frames:
                if lay is self.points_layer:
                    L.set_frame_clicks(lay, t, obj, [])
                else:
                    L.set_frame_strokes(lay, t, obj, [])

    def _object_changed(self, obj=None) -> None:
        if obj is None or self.session is None:
            return
        info = self.session.objects.get(obj)
        if info is not None:
            self.name_edit.value = info.name
        if self.labels_layer is not None:
            self.labels_layer.selected_label = int(obj)  # painting edits the selected object
        self._apply_defaults()
        self.worst_list.choices = []
        self.strip.clear()

    # -- polarity ------------------------------------------------------------------------
    def _toggle_polarity_key(self, _layer=None) -> None:
        self.polarity.value = "negative" if self.positive else "positive"

    def _polarity_changed(self, _value=None) -> None:
        self._apply_defaults()

    def _apply_defaults(self) -> None:
        """What napari gives the next point/shape: the selected object and polarity."""
        obj = self.current_object or 1
        color = L.POSITIVE_COLOR if self.positive else L.NEGATIVE_COLOR
        for lay in (self.points_layer, self.shapes_layer):
            if lay is None:
                continue
            lay.feature_defaults = {"positive": self.positive, "object": int(obj)}
        if self.shapes_layer is not None:
            # current_* colours also recolour selected shapes: clear the selection first
            self.shapes_layer.selected_data = set()
            self.shapes_layer.current_edge_color = color

    # -- interactions -> segmentation ------------------------------------------------
    def _on_interaction_data(self, event) -> None:
        if self._syncing or self.session is None:
            return
        lay = event.source
        action = getattr(getattr(event, "action", None), "value", str(getattr(event, "action", "")))
        indices = [int(i) for i in np.atleast_1d(getattr(event, "data_indices", ()))]
        if action == "removing":
            self._removing |= self._keys_of(lay, indices)
            return
        if action in ("adding", "changing"):
            return
        if action == "added":
            n = len(lay.data)
            indices = [i + n if i < 0 else i for i in indices]
            if self.new_per_click.value and _is_points(lay) and self.positive and not _shift_held():
                self._pick_object_for_click(lay, indices[-1] if indices else -1)
            self._style_new_entries(lay, indices)
            outside = self._outside(lay, indices)
            keys = self._keys_of(lay, [i for i in indices if i not in outside])
            if outside:
                self._drop_entries(lay, outside)
        elif action == "removed":
            keys, self._removing = self._removing, set()
        else:  # "changed" (moved) or a whole-data replacement
            keys = self._keys_of(lay, indices) if indices else {(self.current_object, self.current_frame)}
        self._dirty |= {k for k in keys if k[0] in self.session.objects}
        self._debounce.start()

    def _entries(self, lay, indices):
        """(index, vertices (n, ndim), frame) of the layer's entries at `indices` (negative ones
        counted from the end; out-of-range ones skipped)."""
        n = len(lay.data)
        for i in indices:
            i = i + n if i < 0 else i
            if not 0 <= i < n:
                continue
            verts = np.asarray(lay.data[i], float).reshape(-1, lay.ndim)
            t = int(np.round(verts[:, -3].mean())) if lay.ndim >= 3 else self.current_frame
            yield i, verts, t

    def _keys_of(self, lay, indices) -> set[tuple[int, int]]:
        feats = lay.features
        keys = set()
        for i, _verts, t in self._entries(lay, indices):
            obj = int(feats["object"].iloc[i]) if "object" in feats else int(self.current_object or 1)
            keys.add((obj, t))
        return keys

    def _pick_object_for_click(self, lay, i: int) -> None:
        """New-object-per-click mode: the object a positive click goes to. On a spot no object
        covers: a new object; on an object: that object (selected, the click refines it)."""
        if not 0 <= i < len(lay.data):
            return
        t, row, col = (int(round(v)) for v in np.asarray(lay.data[i], float)[-3:])
        T, H, W = self.session.source.n_frames, self.session.source.height, self.session.source.width
        if not (0 <= t < T and 0 <= row < H and 0 <= col < W):
            return  # outside: _outside removes it
        under = int(self.volume[t, row, col])
        if under and under in self.session.objects:
            if under != self.current_object:
                self._refresh_objects(select=under)
            return
        cur = self.current_object
        # The selected object is free only if nothing is on it yet: no mask, and no click in the layer
        # (clicks waiting for their segmentation count: a quick burst on several cells makes several objects).
        others = np.delete(np.asarray(lay.features["object"]), i) if "object" in lay.features else []
        has_work = cur is not None and (bool(self.session.masks.frames(cur)) or bool(np.any(others == cur)))
        if has_work or cur is None:
            self.add_object()  # selects it

    def go_to_first_frame(self) -> None:
        obj = self.current_object
        if self.session is None or obj is None:
            return
        frames = self.session.masks.frames(obj)
        clicked = [t for (o, t) in self.session.interactions if o == obj]
        if not frames and not clicked:
            show_info(f"object {obj} has no mask and no click yet")
            return
        self.set_frame(min(list(frames) + clicked))

    def _outside(self, lay, indices) -> list[int]:
        """New entries off the video (a click beside the frame, past its last frame): they are
        removed at once with a one-line message, never kept to fail every later click."""
        T, H, W = self.session.source.n_frames, self.session.source.height, self.session.source.width
        bad, where = [], None
        for i, verts, t in self._entries(lay, indices):
            rows, cols = verts[:, -2], verts[:, -1]
            inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
            if not 0 <= t < T or not inside.any() or (_is_points(lay) and not inside.all()):
                bad.append(i)
                where = where or (t, cols.mean(), rows.mean())
        if bad:
            t, x, y = where
            what = "a click" if _is_points(lay) else "a stroke"
            self._report(InputError(f"{what} at (x={x:.0f}, y={y:.0f}) on frame {t} is outside the {W}x{H}, "
                                    f"{T}-frame video: removed"))
        return bad

    def _drop_entries(self, lay, indices) -> None:
        self._syncing = True
        try:
            lay.selected_data = set(indices)
            lay.remove_selected()
        finally:
            self._syncing = False

    def _style_new_entries(self, lay, indices) -> None:
        """Give new points/shapes the selected object, the polarity (Shift = negative) and its colour."""
        n = len(lay.data)
        idx = sorted({i + n if i < 0 else i for i in indices if -n <= i < n})
        if not idx:
            return
        positive = self.positive and not _shift_held()
        self._syncing = True
        try:
            feats = lay.features.copy()
            feats.loc[feats.index[idx], "positive"] = positive
            feats.loc[feats.index[idx], "object"] = int(self.current_object or 1)
            lay.features = feats.astype({"positive": bool, "object": int})
            color = L.POSITIVE_COLOR if positive else L.NEGATIVE_COLOR
            if _is_points(lay):  # (never `lay is self.points_layer`: napari hands plugins proxies)
                fc = np.array(lay.face_color, float)
                fc[idx] = color
                lay.face_color = fc
            else:
                ec = np.array(lay.edge_color, float)
                ec[idx] = color
                lay.edge_color = ec
        finally:
            self._syncing = False

    def flush(self) -> None:
        """Queue a segmentation for every dirty (object, frame) now (no more debounce)."""
        self._debounce.stop()
        dirty, self._dirty = self._dirty, set()
        for obj, t in sorted(dirty):
            try:
                wanted = L.layers_to_interactions(self.points_layer, self.shapes_layer, t, obj)
            except InputError as e:
                if "three vertices" in str(e):  # a polygon still being drawn: wait for more
                    continue
                self._report(e)
                continue
            if not 0 <= t < self.session.source.n_frames:
                self._report(InputError(f"frame {t} does not exist (the video has "
                                        f"{self.session.source.n_frames} frames)"))
                continue
            try:
                wanted.check_inside(self.session.source.height, self.session.source.width)
            except InputError as e:
                self._report(e)
                continue
            self.status.value = f"Segmenting frame {t} (object {obj})..."
            req = self._next_request((obj, t))
            self.jobs.submit(jobs.sync_interactions, self.session, t, obj, wanted, req,
                             on_done=self._draw_update, key=("sync", obj, t))

    def _next_request(self, key) -> int:
        self._requests[key] = self._requests.get(key, 0) + 1
        return self._requests[key]

    def _draw_update(self, up: jobs.FrameUpdate) -> None:
        if up.request != self._requests.get((up.obj, up.t), 0):
            return  # a newer request for this frame is on its way: latest wins
        self._syncing = True
        try:
            # The session is the truth: show exactly its interactions (e.g. after undo).
            if L.layers_to_interactions(self.points_layer, None, up.t, up.obj).clicks != up.interactions.clicks:
                L.set_frame_clicks(self.points_layer, up.t, up.obj, up.interactions.clicks)
            if L.shapes_to_strokes(self.shapes_layer, up.t, up.obj) != up.interactions.strokes:
                L.set_frame_strokes(self.shapes_layer, up.t, up.obj, up.interactions.strokes)
        finally:
            self._syncing = False
        # The masks layer reads the frame from the session. A click's result is not put in
        # napari's history of the masks layer: clicks are undone on the clicks layer (the
        # session's own undo gives back exactly the mask shown before).
        self.show_frames([up.t])
        area = int((up.labels == up.obj).sum())
        self.status.value = f"Frame {up.t}: object {up.obj} covers {area} px."

    # -- labels layer -------------------------------------------------------------------
    def show_frames(self, frames=None) -> None:
        """The session changed these frames (None: all): the masks layer reads them again."""
        if self.labels_layer is None:
            return
        frames = None if frames is None else [int(t) for t in frames]
        self.volume.invalidate(frames)
        if frames is None or self.current_frame in frames:
            self.labels_layer.refresh()

    def _on_labels_written(self, frames: list[int]) -> None:
        """napari wrote to the masks layer (brush, fill, eraser, its own undo/redo): store the
        frames after a short pause, so one brush stroke is stored once, not once per mouse move."""
        if self.session is None:
            return
        self._paint_timer.start()

    def _store_painted_now(self, event=None) -> None:
        self._paint_timer.stop()
        self._store_painted()

    def _store_painted(self) -> None:
        """Hand the edited frames (copies, with their edit counts) to a worker that stores them."""
        if self.session is None or self.labels_layer is None:
            return
        pending = self.volume.pending()
        if not pending:
            return
        snap = {t: labels for t, (labels, _) in pending.items()}
        counts = {t: n for t, (_, n) in pending.items()}
        self.jobs.submit(jobs.store_painted, self.session, snap, sorted(self.session.objects),
                         on_done=lambda stored: self._painted_stored(stored, counts))

    def _painted_stored(self, stored: jobs.PaintStored, counts: dict[int, int]) -> None:
        self.volume.settle(counts)  # frames edited again meanwhile stay pending
        self.show_frames(stored.painted)
        if stored.unknown:
            ids = ", ".join(str(i) for i in stored.unknown)
            self._report(InputError(f"label {ids} is not an object: pick an object (or add one) and paint "
                                    "with its label; those pixels were not stored"))
        elif stored.frames:
            self.status.value = f"Stored painted edits on frame(s) {', '.join(map(str, stored.frames))}."
        self.strip.clear()  # scores describe masks that changed

    # -- undo / redo ---------------------------------------------------------------------
    def undo(self) -> None:
        self._undo_redo(jobs.undo)

    def redo(self) -> None:
        self._undo_redo(jobs.redo)

    def _undo_redo(self, fn) -> None:
        if self.session is None or self.current_object is None:
            return
        self.flush()  # pending clicks first, so "last" means the last one the user made
        obj, t = self.current_object, self.current_frame
        req = self._next_request((obj, t))
        self.jobs.submit(fn, self.session, t, obj, req, on_done=self._draw_update)

    # -- propagation --------------------------------------------------------------------
    def _config(self):
        from ..video.finetune import FinetuneConfig

        config = FinetuneConfig(**PROPAGATION_MODES[self.quality.value])
        if not self.self_train.value:  # ticked: the library's default
            config.self_train = 0
        config.refine = bool(self.refine.value)
        return config

    def propagate(self, config=None, then: Callable[[], None] | None = None) -> None:
        """Fine-tune and propagate the selected object in a worker; masks appear as they come."""
        try:
            self._require_session()
            if self._long_worker is not None:
                raise InputError("propagation or export is already running")
            obj = self.current_object
            if obj is None:
                raise InputError("add an object first")
            config = config if config is not None else self._config()
        except Exception as e:
            self._report(e)
            return
        self.flush()
        # Start once the queued clicks are in the session (they are annotations to tune on).
        self.jobs.submit(lambda: None, on_done=lambda _: self._start_propagation(obj, config, then))

    def _start_propagation(self, obj, config, then) -> None:
        self.status.value = f"Propagating object {obj}..."
        self._after_propagate = [then] if then else []
        self._run_long(jobs.propagate, self.session, obj, config, self._cancel, kind="propagate")

    def correct_and_propagate(self) -> None:
        """The correction clicks on this frame are already in the session: re-tune and re-propagate."""
        t, obj = self.current_frame, self.current_object
        if self.session is not None and obj is not None and not self.session.interactions.get((obj, t)) \
                and not self._dirty:
            show_info(f"no correction on frame {t} yet: click on it first, then re-propagate")
        self.propagate()

    def cancel(self) -> None:
        self._cancel.set()
        self.status.value = "Cancelling..."

    def _run_long(self, gen_fn, *args, kind: str) -> None:
        from napari.qt.threading import create_worker

        self._cancel.clear()
        keep_triton_out()  # anything that imports torch._dynamo would import triton (see llvm_guard)
        worker = create_worker(guarded_gen, gen_fn, *args, _start_thread=False)
        self._long_id += 1
        job = self._long_id
        self._long_worker = worker
        self._long_kind = kind
        self.cancel_btn.enabled = True
        self.propagate_btn.enabled = self.correct_btn.enabled = self.export_btn.enabled = False
        self.progress_bar.visible = True
        self.progress_bar.value = 0
        self._activity = ActivityBar(kind)
        # Slots look the handlers up when called (tests spy on them) and drop what a job
        # sends after it finished or was replaced.
        worker.yielded.connect(lambda item: self._long_yielded(item) if self._is_current(job) else None)
        worker.returned.connect(lambda value: self._long_returned(value) if self._is_current(job) else None)
        worker.finished.connect(lambda: self._long_finished() if self._long_id == job else None)
        worker.start()

    def _is_current(self, job: int) -> bool:
        return self._long_id == job and self._long_worker is not None

    def _long_yielded(self, p) -> None:
        if self._long_kind == "propagate" and p.frame is not None and p.stage == "propagate":
            self.show_frames([p.frame])
        self.progress_bar.max = max(p.total, 1)
        self.progress_bar.value = min(p.done, max(p.total, 1))
        self.progress_bar.label = p.stage
        if self._activity is not None:
            self._activity.update(p)  # drawn later, from a timer: never re-enter this slot
        self.status.value = f"{p.stage}: {p.done}/{p.total} {p.message}".strip()

    def _long_returned(self, value) -> None:
        ok, result = value
        kind = self._long_kind
        if not ok:
            self._report(result)
            return
        if kind == "propagate":
            self.show_frames()
            self.status.value = "Propagation done." if result else "Propagation cancelled; frames done are kept."
            self.refresh_worst_frames()
        elif kind == "export":
            self.last_export = result
            names = ", ".join(Path(str(v)).name for k, v in (result or {}).items() if k != "frames")
            self.status.value = f"Exported: {names}"
            show_info(f"exported to {self.export_dir.value}")

    def _long_finished(self) -> None:
        self._long_worker = None
        if self._activity is not None:
            self._activity.close()
            self._activity = None
        self.progress_bar.visible = False
        self.cancel_btn.enabled = False
        self.propagate_btn.enabled = self.correct_btn.enabled = self.export_btn.enabled = True
        after, self._after_propagate = self._after_propagate, []
        for fn in after:
            fn()

    # -- worst frames --------------------------------------------------------------------
    def refresh_worst_frames(self) -> None:
        if self.session is None or self.current_object is None:
            return
        self.jobs.submit(jobs.frame_quality, self.session, self.current_object, N_WORST,
                         on_done=self._show_worst)

    def _show_worst(self, q: jobs.FrameQuality) -> None:
        self.worst_frames = [t for t, _ in q.worst]
        # Scores rank frames (their rank correlation with the true IoU is 0.3-0.5 on DAVIS,
        # docs/video.md); they are not calibrated, so the list says where a frame ranks.
        n = len(q.scores)
        self.worst_list.choices = [f"frame {t}: quality {s:.2f}, lowest {i + 1} of {n}"
                                   for i, (t, s) in enumerate(q.worst)]
        self.strip.set_scores(self.session.source.n_frames, q.scores, q.annotated, self.worst_frames)
        self.strip.set_current(self.current_frame)

    def _worst_clicked(self, item) -> None:
        row = self.worst_list.native.row(item)
        if 0 <= row < len(getattr(self, "worst_frames", [])):
            self.jump_to(self.worst_frames[row])

    def jump_to(self, t: int) -> None:
        self.set_frame(t)
        self.viewer.layers.selection.active = self.points_layer
        self.points_layer.mode = "add"
        self.status.value = f"Frame {t}: click to correct, then 'Correct & re-propagate'."

    # -- export -------------------------------------------------------------------------------
    def export(self, folder: str | Path | None = None) -> None:
        try:
            self._require_session()
            if self._long_worker is not None:
                raise InputError("propagation or export is already running")
            folder = Path(folder) if folder is not None else Path(self.export_dir.value)
            if not str(folder) or str(folder) == ".":
                raise InputError("choose an export folder first")
            background = BACKGROUNDS[self.background.value]
            if background == "file":
                background = Path(self.background_file.value)
                if not background.is_file():
                    raise InputError(f"background image {background} does not exist")
            obj = self.current_object if EXPORT_CHOICES[self.export_what.value] == "selected" else None
            if obj is not None:
                name = self.session.objects[obj].name if obj in self.session.objects else "object"
            else:
                name = "objects" if len(self.session.objects) > 1 else \
                    next(iter(self.session.objects.values())).name
        except Exception as e:
            self._report(e)
            return
        self.export_dir.value = folder
        formats = tuple(EXPORT_FORMATS[f] for f in (self.formats.value or []))
        plan = jobs.ExportPlan(folder, obj, name, background, formats=formats)
        self.flush()
        self.jobs.submit(lambda: None, on_done=lambda _: self._run_long(
            jobs.export, self.session, plan, self._cancel, kind="export"))

    # -- frame changes / refresh from outside --------------------------------------------------
    def _frame_changed(self, event=None) -> None:
        self.strip.set_current(self.current_frame)  # the layers follow the slider by themselves

    def sync_from_session(self, t: int | None = None, obj: int | None = None) -> None:
        """Redraw what the session holds (after a script changed it).

        t given: that frame's clicks, strokes and labels; t None: everything
        (objects were added, renamed or removed).
        """
        if self.session is None:
            return
        self._refresh_objects(select=self.current_object)
        objects = list(self.session.objects) if obj is None else [obj]
        self._syncing = True
        try:
            if t is None:
                L.clear_interactions(self.points_layer, self.shapes_layer)
                L.restore_interactions(self.points_layer, self.shapes_layer, self.session.interactions)
            else:
                for o in objects:
                    inter = self.session.interactions.get((o, t)) or Interactions()
                    L.set_frame_clicks(self.points_layer, t, o, inter.clicks)
                    L.set_frame_strokes(self.shapes_layer, t, o, inter.strokes)
        finally:
            self._syncing = False
        self.show_frames(None if t is None else [t])

    def _require_session(self) -> None:
        if self.session is None:
            raise InputError("pick a video layer and press Start first")


def _is_points(layer) -> bool:
    import napari.layers

    return isinstance(layer, napari.layers.Points)


def _shift_held() -> bool:
    try:
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QApplication

        return bool(QApplication.keyboardModifiers() & Qt.ShiftModifier)
    except Exception:
        return False
