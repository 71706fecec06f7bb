"""npe2 reader: a video file, a folder of frames or a TIFF time-lapse -> a lazy Image layer.

Videos and frame folders (JPEG, PNG...) come as an io.frame_array.FrameArray
over the VideoSource: moving the time slider decodes only the chunk that holds
the frame (one ffmpeg process per chunk; the source keeps a couple of chunks).
It is not a dask array, so napari's dask cache (a quarter of the machine's
memory) does not fill up with frames as the slider travels. TIFF time-lapses (a
folder of TIFFs such as the Cell Tracking Challenge's ``t000.tif`` ..., or one
multi-page TIFF; LZW and other compressions through imagecodecs) come as their
own values, grey 16-bit included, one frame read per slider step, with the
file's physical scale and axes in the layer (``scale``, ``metadata["axes"]``,
``metadata["units"]``) and contrast limits from percentiles of a few sampled
frames (the rule the library maps intensities by: io/intensity.py).
"""
from __future__ import annotations

from pathlib import Path

from ..io.tiff import is_tiff, is_tiff_folder
from ..io.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_frame_files


def _claims(path: Path) -> bool:
    if path.is_dir():
        try:
            return bool(list_frame_files(path))
        except OSError:
            return False
    return path.suffix.lower() in VIDEO_SUFFIXES or is_tiff(path)


def get_reader(path):
    """Return a reader function when napari hands us a single video, TIFF or frame folder, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if not p.exists() or not _claims(p):
        return None
    if is_tiff(p):
        # only time-lapses: a single image is left to napari's own TIFF reader
        from ..io.tiff import open_tiff
        from ..types import InputError

        try:
            open_tiff(p)
        except InputError:
            return None
        return read_tiff
    if p.is_dir() and is_tiff_folder(p):
        return read_tiff
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


def read_tiff(path):
    """[(dask_array, {name, rgb, scale, contrast_limits, metadata}, "image")] for a TIFF time-lapse."""
    from ..io.intensity import choose_map
    from ..io.tiff import open_tiff

    if isinstance(path, (list, tuple)):
        path = path[0]
    stack = open_tiff(path)
    p = Path(path)
    rgb = stack.axes == "TYXC" and stack.shape[-1] in (3, 4)
    meta = {
        "name": p.stem if p.is_file() else p.name,
        "rgb": rgb,
        "metadata": {"vidseg_tiff_path": str(stack.path), "axes": stack.axes, "units": stack.units,
                     "physical_scale": stack.scale, "n_frames": len(stack)},
    }
    layer_axes = stack.axes[:-1] if rgb else stack.axes  # an RGB layer's colour axis is no dimension
    spatial = [stack.scale.get(a, 1.0) for a in layer_axes]
    if any(v != 1.0 for v in spatial):
        meta["scale"] = spatial
    if not rgb and "C" not in stack.axes:
        def grey(t):
            return stack[t][None]

        imap = choose_map(grey, len(stack), 1, stack.dtype)
        meta["contrast_limits"] = [imap.low[0], imap.high[0]]
    return [(stack.to_dask(), meta, "image")]


__all__ = ["get_reader", "read_video", "read_tiff", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES"]
