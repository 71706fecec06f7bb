"""Shared fixtures: small synthetic videos whose pixels tell which frame they are.

Each frame of `synthetic_video` carries its index as bits, one bit per large
block (black = 0, white = 1), so a test can check that frame t really is frame
t after decoding, however the video was seeked or chunked.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Two cores shared with a training job: keep math libraries to one thread each.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _sessions_in_tmp(tmp_path, monkeypatch):
    """The widget keeps the work on a video file in a session folder beside it (or in the user's
    cache): each test gets its own place, so no test re-opens another's work."""
    monkeypatch.setenv("NAPARI_VIDSEG_SESSIONS", str(tmp_path / "vidseg-sessions"))

def moving_disk(T: int, H: int, W: int, r: int, x0: int, step: int, bg_max: int = 80, seed: int = 0):
    """A red disk of radius r moving right (centre x0 + step * t, half-way down) over a
    dark noisy background: (frames uint8 (T, H, W, 3), masks bool (T, H, W))."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    bg = (rng.random((H, W, 3)) * bg_max).astype(np.uint8)
    frames, masks = [], []
    for t in range(T):
        m = (xx - (x0 + step * t)) ** 2 + (yy - H // 2) ** 2 <= r * r
        f = bg.copy()
        f[m] = (220, 60, 40)
        frames.append(f)
        masks.append(m)
    return np.stack(frames), np.stack(masks)


def iou(a, b) -> float:
    u = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / u if u else 1.0


#: bit blocks: 4 columns x 2 rows -> up to 256 distinct frames
_BITS_COLS, _BITS_ROWS = 4, 2


def encode_index(t: int, height: int = 48, width: int = 64) -> np.ndarray:
    """An (H, W, 3) uint8 frame whose blocks spell the bits of t; odd sizes allowed."""
    frame = np.zeros((height, width, 3), np.uint8)
    bh, bw = height // _BITS_ROWS, width // _BITS_COLS
    for b in range(_BITS_ROWS * _BITS_COLS):
        if (t >> b) & 1:
            r, c = divmod(b, _BITS_COLS)
            frame[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = 255
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Inverse of encode_index; reads the centre of each block (robust to compression)."""
    frame = np.asarray(frame)
    h, w = frame.shape[:2]
    bh, bw = h // _BITS_ROWS, w // _BITS_COLS
    t = 0
    for b in range(_BITS_ROWS * _BITS_COLS):
        r, c = divmod(b, _BITS_COLS)
        block = frame[r * bh + bh // 4:(r + 1) * bh - bh // 4, c * bw + bw // 4:(c + 1) * bw - bw // 4]
        if block.mean() > 127:
            t |= 1 << b
    return t


def write_video(path: Path, frames, fps: float = 25.0, pix_fmt_out: str = "yuv420p",
                output_params: list[str] | None = None, codec: str | None = None) -> Path:
    """Write frames with imageio-ffmpeg (any size: macro_block_size=1)."""
    import imageio_ffmpeg

    frames = list(frames)
    h, w = frames[0].shape[:2]
    kw = {} if codec is None else {"codec": codec}
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, macro_block_size=1, quality=9, pix_fmt_out=pix_fmt_out,
        output_params=output_params or [], **kw)
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return Path(path)


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg shipped with imageio-ffmpeg; fail the test with its message."""
    import imageio_ffmpeg

    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
                       capture_output=True)
    assert r.returncode == 0, r.stderr.decode(errors="replace")


@pytest.fixture
def synthetic_video(tmp_path) -> Path:
    """40 frames of 64x48 at 25 fps, key frame every 8 frames, B-frames: frame t shows t in bits."""
    return write_video(tmp_path / "index.mp4", (encode_index(t) for t in range(40)),
                       output_params=["-g", "8"])


@pytest.fixture
def frame_folder(tmp_path) -> Path:
    """12 PNG frames named 0.png .. 11.png (not zero-padded: natural order matters)."""
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(12):
        Image.fromarray(encode_index(t)).save(folder / f"{t}.png")
    return folder


@pytest.fixture
def index_codec():
    """(encode_index, decode_index) for tests in other files."""
    return encode_index, decode_index


@pytest.fixture(autouse=True)
def _torch_one_thread():
    """Tests share two cores with training: one torch thread, if a test imported torch."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _triton_kept_out_after_a_viewer():
    """A test that opened a napari viewer under Xvfb leaves Mesa's LLVM in the process; a later test
    that reaches triton (torch's int8 quantization imports it) would then crash the whole run, as the
    viewer would (napari_vidseg/_napari/llvm_guard.py). The plugin guards itself; tests that make
    viewers without it are covered here, whatever order or subset of tests runs."""
    yield
    if "napari" in sys.modules:
        from napari_vidseg._napari.llvm_guard import keep_triton_out

        keep_triton_out()


def require_shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with a reason when it is absent."""
    p = DATA_DIR.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p
