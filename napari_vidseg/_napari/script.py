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
propagation) shows up in the viewer: the widget listens to the session's
signals (VideoSession.mask_changed, interactions_changed, objects_changed) and
redraws what changed; signals from another thread are queued to the GUI thread.
Called on the GUI thread (a plain script or IPython with ``%gui qt``) the viewer
also repaints after each change and each propagated frame, so the user watches
the work happen.
"""
from __future__ import annotations

import threading
from pathlib import Path

from ..types import InputError
from .llvm_guard import keep_triton_out

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
    session._vidseg_widget = widget
    _repaint_after_changes(session)
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


def _repaint_after_changes(session) -> None:
    """A script on the GUI thread blocks Qt's event loop between its calls: let the viewer
    draw each change as it happens (the widget's own slots did the redrawing already)."""
    from qtpy.QtWidgets import QApplication

    gui = threading.current_thread()

    def repaint(*_):
        if threading.current_thread() is gui:
            QApplication.processEvents()

    for signal in (session.mask_changed, session.interactions_changed, session.objects_changed):
        signal.connect(repaint)
    session._vidseg_repaint = repaint  # psygnal holds slots weakly where it can: keep this one
