"""The bundled sample clip: a real photographed object moving over a real photograph.

Nothing is downloaded. The object is the espresso cup and saucer of
scikit-image's `coffee` photograph, cut out with a mask drawn from ellipses
that follow the saucer, the cup and its handle; the background is the
`rocket` photograph. The cup slides across the frame and slowly grows and
shrinks. Because the clip is composed here, every frame's true mask is known
exactly (the pasted pixels), so it serves demos, tests and sanity checks of
propagation.

    sample_clip_path()  -> Path of an mp4, written once into the user cache folder
    sample_frames()     -> (T, H, W, 3) uint8, the exact (uncompressed) frames
    sample_truth()      -> (T, H, W) bool, the object's true masks

scikit-image comes with napari (it is imported only here, when a sample is asked for).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

N_FRAMES = 60
HEIGHT, WIDTH = 270, 480
FPS = 24.0
#: bump when the clip changes, so stale cached files are not reused
VERSION = 1


def cache_dir() -> Path:
    """$NAPARI_VIDSEG_CACHE, else the platform's user cache folder."""
    env = os.environ.get("NAPARI_VIDSEG_CACHE")
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("napari-vidseg"))
    except ImportError:
        return Path.home() / ".cache" / "napari-vidseg"


def _ellipse(h: int, w: int, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0


@lru_cache(maxsize=1)
def _object() -> tuple[np.ndarray, np.ndarray]:
    """(RGB crop, mask) of the cup and saucer from skimage's coffee photo (600x400)."""
    from skimage import data

    img = data.coffee()
    h, w = img.shape[:2]
    # hand-fitted to the photo: saucer, cup rim, cup body, handle
    mask = _ellipse(h, w, 278, 228, 201, 157)
    mask |= _ellipse(h, w, 290, 112, 119, 95)
    mask |= _ellipse(h, w, 229, 265, 33, 40)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return img[y0:y1, x0:x1], mask[y0:y1, x0:x1]


@lru_cache(maxsize=1)
def _background() -> np.ndarray:
    """skimage's rocket photo (640x427), cropped to 16:9 and resized to the clip size."""
    from PIL import Image
    from skimage import data

    img = data.rocket()
    h, w = img.shape[:2]
    ch = int(round(w * HEIGHT / WIDTH))
    top = (h - ch) // 2
    return np.asarray(Image.fromarray(img[top:top + ch]).resize((WIDTH, HEIGHT), Image.BILINEAR))


def _pose(t: int) -> tuple[float, float, float]:
    """Centre (x, y) and scale of the object at frame t: a smooth left-to-right arc."""
    s = t / (N_FRAMES - 1)
    cx = WIDTH * (0.28 + 0.44 * s)
    cy = HEIGHT * (0.55 - 0.12 * np.sin(np.pi * s))
    scale = 0.36 + 0.06 * np.sin(2 * np.pi * s)
    return cx, cy, scale


def _compose(t: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    obj, mask = _object()
    cx, cy, scale = _pose(t)
    ow, oh = max(1, int(round(obj.shape[1] * scale))), max(1, int(round(obj.shape[0] * scale)))
    o = np.asarray(Image.fromarray(obj).resize((ow, oh), Image.BILINEAR))
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((ow, oh), Image.BILINEAR)) >= 128
    frame = _background().copy()
    truth = np.zeros((HEIGHT, WIDTH), bool)
    x0, y0 = int(round(cx - ow / 2)), int(round(cy - oh / 2))
    # clip the paste rectangle to the frame
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + ow, WIDTH), min(y0 + oh, HEIGHT)
    sub_m = m[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    sub_o = o[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    region = frame[fy0:fy1, fx0:fx1]
    region[sub_m] = sub_o[sub_m]
    truth[fy0:fy1, fx0:fx1] = sub_m
    return frame, truth


@lru_cache(maxsize=1)
def _clip() -> tuple[np.ndarray, np.ndarray]:
    pairs = [_compose(t) for t in range(N_FRAMES)]
    frames = np.stack([p[0] for p in pairs])
    truth = np.stack([p[1] for p in pairs])
    frames.setflags(write=False)
    truth.setflags(write=False)
    return frames, truth


def sample_frames() -> np.ndarray:
    """(T, H, W, 3) uint8: the exact frames (the mp4 holds their high-quality encoding)."""
    return _clip()[0]


def sample_truth() -> np.ndarray:
    """(T, H, W) bool: the object's true mask on every frame."""
    return _clip()[1]


def write_sample(path: Path | str) -> Path:
    """Encode the clip as H.264 mp4 at `path` (atomically: temp file, then rename)."""
    import imageio_ffmpeg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    writer = imageio_ffmpeg.write_frames(str(tmp), (WIDTH, HEIGHT), fps=FPS, quality=9, macro_block_size=1,
                                         output_params=["-g", "12"])
    try:
        writer.send(None)
        for f in sample_frames():
            writer.send(np.ascontiguousarray(f))
    finally:
        writer.close()
    os.replace(tmp, path)
    return path


def sample_clip_path() -> Path:
    """The sample mp4 in the cache folder, written on first use."""
    path = cache_dir() / f"sample-v{VERSION}.mp4"
    if not path.exists():
        write_sample(path)
    return path
