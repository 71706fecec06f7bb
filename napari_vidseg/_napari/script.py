"""Scripted napari sessions: attach the tool to a viewer and a video, get the session.

    import napari
    from napari_vidseg import attach, Click, Interactions
    from napari_vidseg.progress import drain

    viewer = napari.Viewer()
    session = attach(viewer, "clip.mp4")               # video layer + dock widget + layers
    obj = next(iter(session.objects))
    session.add_interactions(0, obj, Interactions([Click(120, 80)]))   # the mask appears
    drain(session.propagate(obj))                      # frames fill in as they are computed
    drain(session.export("out/", obj, sticker="out/cutout.gif"))
    napari.run()

Whatever the script does to the session (clicks, undo, objects, painted masks,
propagation) shows up in the viewer: attach() hooks the session's verbs so that
each change redraws the widget's layers.  Called on the GUI thread (a plain
script or IPython with ``%gui qt``) the viewer repaints after each change and
after each propagated frame, so the user watches the work happen; called from
another thread, the redraw is queued to the GUI thread.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

from ..types import InputError
from . import jobs
from .llvm_guard import keep_triton_out

#: session verbs that change what the layers show: name -> where (frame, object) sit in the args
_FRAME_VERBS = ("add_interactions", "correct", "undo_interaction", "redo_interaction", "set_mask")
_OBJECT_VERBS = ("add_object", "remove_object", "rename_object")


def attach(viewer, video, session_folder=None):
    """Open `video` in `viewer`, dock the vidseg widget on it and return its VideoSession.

    video: a video file or frame folder (opened through the plugin's reader), a
    VideoSource, or an Image layer already in the viewer.  session_folder: keep the
    session there (created, or re-opened with everything in it); None keeps it in
    memory.  The widget is ``widget_of(session)``.
    """
    from .widget import VidSegWidget

    keep_triton_out()  # the viewer's OpenGL is up: see llvm_guard (scripts load models next)
    layer = _video_layer(viewer, video)
    widget = VidSegWidget(viewer, session_folder=session_folder)
    viewer.window.add_dock_widget(widget, name="Video object segmentation", area="right")
    session = widget.bind(layer, folder=session_folder)
    _hook(session, widget)
    return session


def widget_of(session):
    """The dock widget attach() made for this session."""
    w = getattr(session, "_vidseg_widget", None)
    if w is None:
        raise InputError("this session was not made by napari_vidseg.attach()")
    return w


def _video_layer(viewer, video):
    import napari.layers

    if isinstance(video, napari.layers.Image):
        if video not in viewer.layers:
            viewer.add_layer(video)
        return video
    if isinstance(video, (str, Path)):
        path = Path(video)
        if not path.exists():
            raise InputError(f"video not found: {path}")
        try:
            layers = viewer.open(str(path), plugin="napari-vidseg")
        except Exception as e:  # the plugin not registered (source checkout without install)
            if not _reader_missing(e):
                raise
            from ..io.video import VideoSource

            return _video_layer(viewer, VideoSource.open(path))
        images = [lay for lay in layers if isinstance(lay, napari.layers.Image)]
        if not images:
            raise InputError(f"the napari-vidseg reader made no image layer from {path}")
        return images[0]
    if hasattr(video, "to_dask") and hasattr(video, "n_frames"):  # a VideoSource
        path = getattr(video, "path", None)
        meta = {"vidseg_source": video}
        if path is not None:
            meta["vidseg_path"] = str(path)
        name = Path(path).stem if path is not None else "video"
        return viewer.add_image(video.to_dask(), rgb=True, name=name, metadata=meta)
    raise InputError(f"expected a video path, a VideoSource or an Image layer, got {type(video).__name__}")


def _reader_missing(exc: Exception) -> bool:
    text = str(exc).lower()
    return "napari-vidseg" in text and ("plugin" in text or "reader" in text)


class _Redraw:
    """Carries 'frame t of object obj changed' to the GUI thread."""

    def __init__(self, widget):
        from qtpy.QtCore import QObject, Signal

        class Notifier(QObject):
            changed = Signal(int, int)

        self.widget = widget
        self.notifier = Notifier()
        self.notifier.changed.connect(self._redraw)
        self._gui_thread = threading.current_thread()

    def _redraw(self, t: int, obj: int) -> None:
        self.widget.sync_from_session(None if t < 0 else t, None if obj < 0 else obj)

    def __call__(self, t: int | None, obj: int | None) -> None:
        self.notifier.changed.emit(-1 if t is None else int(t), -1 if obj is None else int(obj))
        if threading.current_thread() is self._gui_thread:
            # a script on the GUI thread: let the viewer repaint before the next call
            from qtpy.QtWidgets import QApplication

            QApplication.processEvents()


def _frame_and_obj(args, kwargs):
    t = kwargs.get("t", args[0] if args else None)
    obj = kwargs.get("obj", args[1] if len(args) > 1 else None)
    return t, obj


def _hook(session, widget) -> None:
    """Make the session's verbs redraw the widget when a script (not the widget) calls them."""
    redraw = _Redraw(widget)
    session._vidseg_widget = widget
    session._vidseg_redraw = redraw  # keeps the Qt notifier alive with the session

    def frame_verb(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            keep_triton_out()  # a script's torch work runs in the viewer's process too
            result = fn(*args, **kwargs)
            if not jobs.in_widget_call():
                redraw(*_frame_and_obj(args, kwargs))
            return result
        return wrapper

    def object_verb(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            result = fn(*args, **kwargs)
            if not jobs.in_widget_call():
                redraw(None, None)
            return result
        return wrapper

    def propagate_verb(fn):
        @functools.wraps(fn)
        def wrapper(obj, *args, **kwargs):
            keep_triton_out()  # anything that imports torch._dynamo would import triton (see llvm_guard)
            gen = fn(obj, *args, **kwargs)
            if jobs.in_widget_call():
                return gen
            return _watched(gen, obj, redraw)
        return wrapper

    for name in _FRAME_VERBS:
        setattr(session, name, frame_verb(getattr(session, name)))
    for name in _OBJECT_VERBS:
        setattr(session, name, object_verb(getattr(session, name)))
    session.propagate = propagate_verb(session.propagate)


def _watched(gen, obj, redraw):
    """Pass a propagation's progress through, redrawing each finished frame."""
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value
            if getattr(p, "frame", None) is not None and p.stage == "propagate":
                redraw(p.frame, obj)
            yield p
    finally:
        gen.close()
