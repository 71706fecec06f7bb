"""Exports: transparent animated stickers, composite videos, label volumes.

Everything streams: frames and masks come in as iterators and go out one frame
at a time (GIF through PIL's frame-level GIF helpers, the other formats through
an ffmpeg pipe), so memory does not grow with the clip's length. Outputs are
written to a temporary name next to the target and renamed when complete, so a
cancelled or failed export never leaves a half-written file under the real name.

The `*_writer` functions are generators that yield the index of each frame
written (the session turns that into Progress; closing one cancels cleanly); the
`write_*` functions run them to the end.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from ..types import InputError

STICKER_SUFFIXES = (".gif", ".webp", ".png", ".apng", ".webm")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


# -- boxes ------------------------------------------------------------------------
def union_box(masks: Iterable[np.ndarray]):
    """(y0, y1, x0, x1) around every set pixel of every mask, or None if all are empty."""
    box = None
    for m in masks:
        m = np.asarray(m)
        rows = np.flatnonzero(m.any(1))
        if len(rows) == 0:
            continue
        cols = np.flatnonzero(m.any(0))
        b = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
        box = b if box is None else (min(box[0], b[0]), max(box[1], b[1]), min(box[2], b[2]), max(box[3], b[3]))
    return None if box is None else tuple(int(v) for v in box)


def _even_box(box, height: int, width: int):
    """Grow a box by a pixel where needed so both sides are even (4:2:0 video needs that)."""
    y0, y1, x0, x1 = box
    if (y1 - y0) % 2:
        if y1 < height:
            y1 += 1
        elif y0 > 0:
            y0 -= 1
    if (x1 - x0) % 2:
        if x1 < width:
            x1 += 1
        elif x0 > 0:
            x0 -= 1
    return y0, y1, x0, x1


def _box_and_masks(masks, crop):
    """Resolve `crop` (True, False/None or a box) and give back masks to iterate once more.

    A one-shot iterator is buffered zlib-compressed (masks compress to a few KB)
    so the box can be found before the first frame is written.
    """
    if crop is None or crop is False:
        return None, masks
    if crop is not True:
        return tuple(int(v) for v in crop), masks
    if iter(masks) is not masks:  # re-iterable (a list, an array): scan it twice
        return union_box(masks), masks
    packed, shapes = [], []

    def keep(ms):
        for m in ms:
            m = np.asarray(m).astype(bool)
            shapes.append(m.shape)
            packed.append(zlib.compress(np.packbits(m).tobytes(), 1))
            yield m

    box = union_box(keep(masks))

    def replay():
        for data, shape in zip(packed, shapes):
            yield np.unpackbits(np.frombuffer(zlib.decompress(data), np.uint8),
                                count=shape[0] * shape[1]).reshape(shape).astype(bool)

    return box, replay()


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _check_pair(frame: np.ndarray, mask: np.ndarray, i: int):
    frame = np.asarray(frame)
    mask = np.asarray(mask)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] < 3:
        raise InputError(f"frame {i} has shape {frame.shape}, expected (H, W, 3)")
    if mask.shape != frame.shape[:2]:
        raise InputError(f"mask {i} has shape {mask.shape}, frame {i} is {frame.shape[:2]}")
    return frame[..., :3].astype(np.uint8, copy=False), mask.astype(bool, copy=False)


def rgba_cutout(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8: the frame's colours, alpha 255 on the object and 0 elsewhere."""
    out = np.zeros(frame.shape[:2] + (4,), np.uint8)
    out[..., :3] = frame[..., :3]
    out[..., 3] = mask.astype(np.uint8) * 255
    out[~mask, :3] = 0  # no stray colours under transparent pixels
    return out


# -- GIF, streamed frame by frame ---------------------------------------------------
_GIF_CLEAR = 255  # palette index reserved for transparent pixels


def _gif_frame(rgba: np.ndarray) -> Image.Image:
    """A palette image with up to 255 colours of the object and index 255 transparent."""
    alpha = rgba[..., 3] >= 128
    q = Image.fromarray(np.ascontiguousarray(rgba[..., :3])).quantize(
        colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    idx = np.array(q, dtype=np.uint8)
    idx[~alpha] = _GIF_CLEAR
    pal = (q.getpalette() or [])[: 3 * 255]
    pal += [0] * (3 * 256 - len(pal))
    im = Image.fromarray(idx, "P")
    im.putpalette(pal)
    return im


def _gif_writer(fp, rgba_frames: Iterator[np.ndarray], fps: float) -> Iterator[int]:
    from PIL import GifImagePlugin

    # GIF delays are in 1/100 s; browsers slow anything under 20 ms down to 100 ms.
    duration = max(20, int(round(100 / fps)) * 10)
    for i, rgba in enumerate(rgba_frames):
        im = _gif_frame(rgba)
        if i == 0:
            header, _ = GifImagePlugin.getheader(im, None, {"loop": 0, "transparency": _GIF_CLEAR,
                                                             "duration": duration,
                                                             "background": _GIF_CLEAR})
            fp.write(b"".join(header))
        # Each frame carries its own palette (include_color_table) and is cleared
        # to transparent before the next (disposal 2), so nothing ghosts.
        for chunk in GifImagePlugin.getdata(im, (0, 0), transparency=_GIF_CLEAR, duration=duration,
                                            disposal=2, include_color_table=True):
            fp.write(chunk)
        yield i
    fp.write(b";")


# -- ffmpeg pipe formats -------------------------------------------------------------
def _ffmpeg_args(suffix: str) -> dict:
    if suffix == ".webm":
        # VP9 is the codec that carries an alpha plane in WebM (yuva420p).
        return dict(codec="libvpx-vp9", pix_fmt_out="yuva420p",
                    output_params=["-b:v", "0", "-crf", "30", "-auto-alt-ref", "0", "-f", "webm"])
    if suffix == ".webp":
        return dict(codec="libwebp_anim", pix_fmt_out="bgra",
                    output_params=["-lossless", "1", "-loop", "0", "-f", "webp"])  # exact colours
    if suffix in (".png", ".apng"):
        return dict(codec="apng", pix_fmt_out="rgba", output_params=["-plays", "0", "-f", "apng"])
    raise InputError(f"unsupported sticker format {suffix!r}: use one of {', '.join(STICKER_SUFFIXES)}")


def _ffmpeg_writer(path: Path, frames: Iterator[np.ndarray], size, fps: float, pix_fmt_in: str,
                   **kwargs) -> Iterator[int]:
    import imageio_ffmpeg

    w = imageio_ffmpeg.write_frames(str(path), size, pix_fmt_in=pix_fmt_in, fps=fps, quality=None,
                                    macro_block_size=1, ffmpeg_log_level="error", **kwargs)
    w.send(None)
    try:
        for i, f in enumerate(frames):
            w.send(np.ascontiguousarray(f))
            yield i
    finally:
        w.close()  # on cancel this stops ffmpeg; the caller removes the partial file


def _finish(tmp: Path, path: Path, gen: Iterator[int]) -> Iterator[int]:
    """Run a writer into tmp; rename to path on success, remove tmp otherwise."""
    ok = False
    try:
        n = 0
        for i in gen:
            n = i + 1
            yield i
        if n == 0:
            raise InputError(f"nothing to write to {path}: no frames")
        ok = True
    finally:
        if hasattr(gen, "close"):
            gen.close()
        if ok:
            os.replace(tmp, path)
        else:
            tmp.unlink(missing_ok=True)


# -- stickers ------------------------------------------------------------------------
def sticker_writer(path, frames: Iterable[np.ndarray], masks: Iterable[np.ndarray], fps: float,
                   crop=True) -> Iterator[int]:
    """Write a transparent animated cut-out; yields each frame index as it is written.

    crop: True = the union box of the object over the clip, False/None = whole
    frame, or an explicit (y0, y1, x0, x1) box.
    Formats by suffix: .gif, .webp (animated), .png/.apng (APNG), .webm (VP9 + alpha).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in STICKER_SUFFIXES:
        raise InputError(f"unsupported sticker format {suffix or path.name!r}: use one of "
                         f"{', '.join(STICKER_SUFFIXES)}")
    if not fps or fps <= 0:
        raise InputError(f"frame rate must be positive, got {fps}")
    if not path.parent.is_dir():
        raise InputError(f"the folder {path.parent} does not exist")
    box, masks = _box_and_masks(masks, crop)
    frames_it = iter(frames)
    masks_it = iter(masks)
    try:
        first = next(frames_it)
    except StopIteration:
        raise InputError("nothing to export: no frames") from None
    H, W = np.asarray(first).shape[:2]
    if box is None:
        box = (0, H, 0, W)
    if suffix == ".webm":
        box = _even_box(box, H, W)
    y0, y1, x0, x1 = box

    def cutouts():
        for i, (f, m) in enumerate(zip(_chain(first, frames_it), masks_it)):
            f, m = _check_pair(f, m, i)
            yield np.ascontiguousarray(rgba_cutout(f, m)[y0:y1, x0:x1])

    tmp = _tmp_for(path)
    if suffix == ".gif":
        def gif():
            with open(tmp, "wb") as fp:
                yield from _gif_writer(fp, cutouts(), fps)
        inner = gif()
    else:
        inner = _ffmpeg_writer(tmp, cutouts(), (x1 - x0, y1 - y0), fps, "rgba", **_ffmpeg_args(suffix))
    yield from _finish(tmp, path, inner)


def _chain(first, rest):
    yield first
    yield from rest


def write_sticker(path, frames_iter, masks_iter, fps: float, crop=True) -> Path:
    for _ in sticker_writer(path, frames_iter, masks_iter, fps, crop=crop):
        pass
    return Path(path)


# -- composite video -------------------------------------------------------------------
def dim_desaturate(frame: np.ndarray, keep: float = 0.25, brightness: float = 0.45) -> np.ndarray:
    """The original frame, mostly grey and darker, so the cut-out object stands out."""
    f = frame.astype(np.float32)
    grey = f @ np.array([0.299, 0.587, 0.114], np.float32)
    out = (keep * f + (1 - keep) * grey[..., None]) * brightness
    return np.clip(out, 0, 255).astype(np.uint8)


def _resize_rgb(img: np.ndarray, height: int, width: int) -> np.ndarray:
    if img.shape[:2] == (height, width):
        return img
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def _backgrounds(background, height: int, width: int) -> Iterator[np.ndarray | None]:
    """One background per frame: None (dim the original), a colour, an image, or a video (looped)."""
    if background is None:
        while True:
            yield None
    if isinstance(background, (tuple, list)) and len(background) == 3 and all(
            isinstance(v, (int, float, np.integer, np.floating)) for v in background):
        if not all(0 <= v <= 255 for v in background):
            raise InputError(f"background colour must be three values 0..255, got {tuple(background)}")
        const = np.empty((height, width, 3), np.uint8)
        const[:] = np.asarray(background, np.uint8)
        while True:
            yield const
    if isinstance(background, np.ndarray) and background.ndim == 3:
        const = _resize_rgb(np.ascontiguousarray(background[..., :3]).astype(np.uint8), height, width)
        while True:
            yield const
    source = background
    if isinstance(background, (str, os.PathLike)):
        p = Path(background)
        if not p.exists():
            raise InputError(f"background {p} does not exist")
        if p.suffix.lower() in IMAGE_SUFFIXES:
            try:
                with Image.open(p) as im:
                    const = _resize_rgb(np.asarray(im.convert("RGB")), height, width)
            except OSError as e:
                raise InputError(f"background {p} is not a readable image: {e}") from e
            while True:
                yield const
        from .video import VideoSource

        source = VideoSource.open(p)
    if not hasattr(source, "n_frames"):
        raise InputError(f"background must be None, an (r, g, b) colour, an image or a video, got {background!r}")
    while True:  # loop a shorter background video
        if hasattr(source, "iter_chunks"):
            for _, block in source.iter_chunks(0, source.n_frames):
                for f in block:
                    yield _resize_rgb(np.asarray(f)[..., :3], height, width)
        else:
            for t in range(source.n_frames):
                yield _resize_rgb(np.asarray(source.frame(t))[..., :3], height, width)


def composite_frame(frame: np.ndarray, mask: np.ndarray, background: np.ndarray | None) -> np.ndarray:
    bg = dim_desaturate(frame) if background is None else background
    return np.where(mask[..., None], frame, bg)


def composite_writer(path, frames: Iterable[np.ndarray], masks: Iterable[np.ndarray], fps: float,
                     background=None, crf: int = 18) -> Iterator[int]:
    """Write an H.264 mp4 of the object over the dimmed original or over `background`.

    Odd frame sizes are padded by one replicated row/column (4:2:0 needs even sizes).
    """
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise InputError(f"composite video must be .mp4 (or .mov/.mkv), got {path.name!r}")
    if not fps or fps <= 0:
        raise InputError(f"frame rate must be positive, got {fps}")
    if not path.parent.is_dir():
        raise InputError(f"the folder {path.parent} does not exist")
    frames_it, masks_it = iter(frames), iter(masks)
    try:
        first = np.asarray(next(frames_it))
    except StopIteration:
        raise InputError("nothing to export: no frames") from None
    H, W = first.shape[:2]
    bgs = _backgrounds(background, H, W)
    ph, pw = H + H % 2, W + W % 2

    def composed():
        for i, (f, m) in enumerate(zip(_chain(first, frames_it), masks_it)):
            f, m = _check_pair(f, m, i)
            out = composite_frame(f, m, next(bgs))
            if (ph, pw) != (H, W):
                out = np.pad(out, ((0, ph - H), (0, pw - W), (0, 0)), mode="edge")
            yield out

    tmp = _tmp_for(path)
    inner = _ffmpeg_writer(tmp, composed(), (pw, ph), fps, "rgb24",
                           codec="libx264", pix_fmt_out="yuv420p",
                           output_params=["-crf", str(int(crf)), "-preset", "veryfast", "-movflags", "+faststart"])
    yield from _finish(tmp, path, inner)


def write_composite(path, frames_iter, masks_iter, fps: float, background=None, crf: int = 18) -> Path:
    for _ in composite_writer(path, frames_iter, masks_iter, fps, background=background, crf=crf):
        pass
    return Path(path)


# -- label volumes ----------------------------------------------------------------------
def label_volume_writer(path, labels, shape=None) -> Iterator[int]:
    """Write a (T, H, W) label volume to .npy (memory-mapped) or .tif (page per frame).

    `labels` is an array or an iterable of (H, W) label frames; an iterable needs `shape`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".tif", ".tiff"):
        raise InputError(f"label volume must be .npy or .tif, got {path.name!r}")
    if isinstance(labels, np.ndarray):
        if labels.ndim != 3:
            raise InputError(f"label volume must be (T, H, W), got shape {labels.shape}")
        shape = labels.shape
    elif shape is None:
        raise InputError("write_label_volume needs shape=(T, H, W) when labels is an iterator")
    T, H, W = (int(v) for v in shape)
    dtype = np.uint16
    tmp = _tmp_for(path)

    def frames_checked():
        for i, lab in enumerate(labels):
            lab = np.asarray(lab)
            if lab.shape != (H, W):
                raise InputError(f"label frame {i} has shape {lab.shape}, expected {(H, W)}")
            yield i, lab.astype(dtype, copy=False)

    def npy():
        vol = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(T, H, W))
        try:
            for i, lab in frames_checked():
                vol[i] = lab
                yield i
            vol.flush()
        finally:
            del vol

    def tif():
        try:
            import tifffile
        except ImportError:  # PIL fallback: collects the pages, fine for short clips
            pages = []
            for i, lab in frames_checked():
                pages.append(Image.fromarray(lab))
                yield i
            pages[0].save(tmp, format="TIFF", save_all=True, append_images=pages[1:])
            return
        with tifffile.TiffWriter(tmp) as tw:
            for i, lab in frames_checked():
                tw.write(lab, contiguous=True)
                yield i

    yield from _finish(tmp, path, npy() if suffix == ".npy" else tif())


def write_label_volume(path, labels, shape=None) -> Path:
    for _ in label_volume_writer(path, labels, shape=shape):
        pass
    return Path(path)
