"""npe2 reader: a video file or a folder of frames -> a lazy RGB Image layer.

The layer's data is an io.frame_array.FrameArray over the VideoSource: moving
the time slider decodes only the chunk that holds the frame (one ffmpeg process
per chunk; the source keeps a couple of chunks). It is not a dask array, so
napari's dask cache (a quarter of the machine's memory) does not fill up with
frames as the slider travels.
"""
from __future__ import annotations

from pathlib import Path

from ..io.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_frame_files


def _claims(path: Path) -> bool:
    if path.is_dir():
        try:
            return bool(list_frame_files(path))
        except OSError:
            return False
    return path.suffix.lower() in VIDEO_SUFFIXES


def get_reader(path):
    """Return a reader function when napari hands us a single video or frame folder, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if not p.exists() or not _claims(p):
        return None
    return read_video


def read_video(path):
    """[(frames, {name, rgb, metadata}, "image")] for one video or frame folder."""
    from ..io.frame_array import FrameArray
    from ..io.video import VideoSource

    if isinstance(path, (list, tuple)):
        path = path[0]
    source = VideoSource.open(path)
    name = source.path.stem if source.path.is_file() else source.path.name
    meta = {
        "name": name,
        "rgb": True,
        "metadata": {"vidseg_path": str(source.path), "fps": source.fps, "n_frames": source.n_frames},
    }
    return [(FrameArray(source), meta, "image")]


__all__ = ["get_reader", "read_video", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES"]
