"""Lazy, chunked access to the frames of a video file or a folder of frames.

`VideoSource.open(path)` reads metadata only: frame size, frame rate and the
presentation time of every frame (from the container's packet index, without
decoding anything). Frames are decoded on demand in chunks of
``chunk_frames`` consecutive frames and kept in a small LRU cache bounded in
bytes, so scrubbing back and forth in napari is cheap and memory stays bounded
whatever the video's length. A cache miss right after the previous read
continues the same ffmpeg process (one open decode per source) instead of
starting one that seeks again; `frames_at` reads sparse frames (every 4th)
from one decode without caching them.

Decisions worth knowing (see also docs/benchmarks.md, "Lazy video"):

* **Frame count.** The count is the number of video packets in the file, read
  with ``ffmpeg -c copy -f framecrc`` (a demux pass: no decoding, tens of
  milliseconds per minute of 1080p video). Container metadata (duration x fps)
  is not trusted: it is wrong for many files. The same pass gives each frame's
  presentation timestamp, so seeking is frame-exact also when the frame rate
  varies (the seek goes half-way between frame n-1 and frame n, as in
  ENVIRONMENT.md, but with the real timestamps instead of ``n / fps``).
* **Frames that cannot be decoded** (a truncated file whose index lists more
  packets than its data holds, garbage in the middle): a chunk that comes back
  short is padded with the last frame that did decode, and a `RuntimeWarning`
  names the first frame index that was filled. Raising instead would break
  napari's slider and a propagation run in the middle of a long video; a
  warning keeps the tool usable and tells the user. Only when nothing at all
  decodes before the requested frame is an `InputError` raised.
* Frames come out as (H, W, 3) uint8 RGB whatever the source (grayscale, RGBA,
  palette images and 10-bit video are converted). Arrays served from the cache
  are read-only views: copy before editing.
"""
from __future__ import annotations

import bisect
import math
import queue
import re
import subprocess
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..types import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: frame rate assumed for a folder of frames (DAVIS is 24 fps) unless given.
DEFAULT_FOLDER_FPS = 24.0
#: frames a chunk holds by default; fewer where that would exceed DEFAULT_CHUNK_BYTES
DEFAULT_CHUNK_FRAMES = 16
#: a default chunk's size limit: at 4K, 16 frames are 398 MB and the cache's two chunks 796 MB,
#: which put propagation's peak at 2.4 GB (docs/reliability.md, "Memory per resolution");
#: 128 MB leaves 1080p (16 frames = 100 MB) as it was
DEFAULT_CHUNK_BYTES = 128 * 1024**2
#: the chunk cache holds at most this many bytes (but always at least 2 chunks).
DEFAULT_CACHE_BYTES = 512 * 1024**2
#: and at most this many chunks.
DEFAULT_CACHE_CHUNKS = 8
#: an open decode is continued by a read that starts at most this many frames past where it stands:
#: decoding and dropping them (about 4.6 ms a 1080p frame) costs less than a new process, whose seek
#: decodes again from the last key frame (docs/benchmarks.md, "Propagation's reads").
SKIP_AHEAD = 32


def default_chunk_frames(frame_bytes: int) -> int:
    """DEFAULT_CHUNK_FRAMES, or fewer for frames so large that a chunk would pass DEFAULT_CHUNK_BYTES.
    A read in order continues one decode whatever the chunk size (_OpenStream), so smaller
    chunks cost no ffmpeg starts there."""
    return max(1, min(DEFAULT_CHUNK_FRAMES, DEFAULT_CHUNK_BYTES // max(int(frame_bytes), 1)))


def natural_key(name: str) -> list:
    """Sort key putting 'frame2' before 'frame10'."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name.lower())]


def is_video_file(path: Path | str) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_frame_files(folder: Path) -> list[Path]:
    """Image files of a frame folder, naturally sorted; hidden files skipped."""
    files = [
        p for p in Path(folder).iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def _to_rgb(a: np.ndarray) -> np.ndarray:
    """Any 2D/3D image array -> (H, W, 3) uint8."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(a * (255.0 if a.max(initial=0) <= 1.0 else 1.0), 0, 255)
        elif a.dtype.itemsize > 1:  # 16-bit images: keep the top byte
            a = a.astype(np.float64) * 255.0 / max(np.iinfo(a.dtype).max, 1)
        a = a.astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"cannot turn an array of shape {a.shape} into an RGB frame")
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- backends
class _FfmpegBackend:
    """Decodes a video file with the ffmpeg binary shipped by imageio-ffmpeg."""

    def __init__(self, path: Path):
        import imageio_ffmpeg

        self.path = path
        self._exe = imageio_ffmpeg.get_ffmpeg_exe()
        self.times, header = self._probe_timestamps()
        meta = self._parse_header(header) or self._read_meta()
        if not meta.get("size"):
            raise InputError(f"{path}: the file has no video stream")
        self.width, self.height = (int(v) for v in meta["size"])
        # ffmpeg applies a display rotation when it decodes (phones store portrait video as
        # landscape plus a rotation): frames come out upright, so a quarter turn swaps the size
        self.rotation = _display_rotation(header, meta)
        if self.rotation % 180 == 90:
            self.width, self.height = self.height, self.width
        elif self.rotation % 90:
            raise InputError(f"{path}: the video asks to be shown rotated by {self.rotation} degrees; only quarter "
                             f"turns are supported (re-encode it upright, e.g. with ffmpeg's -vf rotate)")
        self.n_frames = len(self.times)
        if self.n_frames == 0:
            raise InputError(f"{path}: the video has no frames (empty, or truncated before its first frame?)")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"{path}: the video has no valid frame size ({self.width}x{self.height})")
        # Without a single presentation time in the packet index (H.264 in AVI: the decoder's
        # guessed times are shifted by the B-frame reorder delay, so none matches) frames are
        # counted in decode order instead of matched by time, and a read decodes from the start
        # instead of seeking. Files with some times (MPEG-PS) are matched as before.
        self.ordinal = self._no_pts
        # The probe's times count from the container's start time, as -ss does; decoded frames
        # keep their own times (-copyts, see stream) and are matched after taking it off.
        m = re.search(r"\bstart:\s*(-?[\d.]+)", header)
        self.start_time = float(m.group(1)) if m else 0.0
        self.fps, self.variable_frame_rate = self._frame_rate(float(meta.get("fps") or 0.0))

    # -- metadata
    def _read_meta(self) -> dict:
        import imageio_ffmpeg

        gen = imageio_ffmpeg.read_frames(str(self.path), output_params=["-map", "0:v:0"])
        try:
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration) as e:
            raise InputError(f"{self.path}: not a video file ffmpeg can read "
                             f"(corrupt, truncated or not a video?): {_last_line(str(e))}") from None
        finally:
            gen.close()
        if not meta.get("size"):
            raise InputError(f"{self.path}: the file has no video stream")
        return meta

    @staticmethod
    def _parse_header(header: str) -> dict | None:
        """Size and fps from the probe's own stderr (saves a second ffmpeg start at open time)."""
        try:
            from imageio_ffmpeg._parsing import parse_ffmpeg_header  # private helper: fall back if it moves

            return parse_ffmpeg_header(header)
        except Exception:  # noqa: BLE001
            return None

    def _probe_timestamps(self) -> tuple[np.ndarray, str]:
        """Presentation time (s, from the file's start) of every video packet, sorted.

        A demux-only pass (`-c copy`), so it costs file reading, not decoding.
        Packets flagged as discarded (edit lists) are skipped, like the decoder does.
        """
        self._no_pts = False  # no packet has a presentation time (set below)
        cmd = [self._exe, "-hide_banner", "-nostdin", "-i", str(self.path), "-map", "0:v:0",
               "-c", "copy", "-f", "framecrc", "-"]
        r = subprocess.run(cmd, capture_output=True)
        out = r.stdout.decode(errors="replace")
        err = r.stderr.decode(errors="replace")
        if r.returncode != 0 and not out.strip():
            if "matches no streams" in err:
                raise InputError(f"{self.path}: the file has no video stream")
            raise InputError(f"{self.path}: not a readable video (corrupt or truncated?): {_last_line(err)}")
        tb = None
        pts: list[int] = []
        for line in out.splitlines():
            if line.startswith("#tb 0:"):
                num, den = line.split(":", 1)[1].strip().split("/")
                tb = int(num) / int(den)
            elif line and not line.startswith("#"):
                parts = [s.strip() for s in line.split(",")]
                if len(parts) < 5 or parts[0] != "0":
                    continue
                flags = 0
                for extra in parts[6:]:
                    if extra.startswith("F="):
                        flags = int(extra[2:], 16)
                if flags & 0x4:  # AV_PKT_FLAG_DISCARD
                    continue
                pts.append(int(parts[2]))
        if not pts:
            return np.zeros(0), err
        self._no_pts = tb is None or max(pts) < -(2**62)
        if tb is None or min(pts) < -(2**62):  # no timestamps (e.g. raw streams): fall back to n / fps
            return np.full(len(pts), np.nan), err
        return np.sort(np.asarray(pts, dtype=np.float64)) * tb, err

    def _frame_rate(self, meta_fps: float) -> tuple[float, bool]:
        t = self.times
        if len(t) >= 2 and np.all(np.isfinite(t)):
            d = np.diff(t)
            vfr = bool(d.max() - d.min() > 0.25 * np.median(d)) if len(d) > 2 else False
            span = t[-1] - t[0]
            avg = (len(t) - 1) / span if span > 0 else 0.0
            # the container's nominal rate is exact for constant-rate video; the mean otherwise
            fps = meta_fps if (meta_fps > 0 and not vfr and abs(meta_fps - avg) < 0.02 * avg) else avg
            return (fps or meta_fps or 25.0), vfr
        if not np.all(np.isfinite(t)):
            self.times = np.arange(len(t)) / (meta_fps or 25.0)
        return meta_fps or 25.0, False

    # -- decoding
    #: a video decodes sequentially: continuing an open decode is far cheaper than a new one (_OpenStream)
    continues = True

    def stream(self, start: int, stop: int, keep: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(index, frame) for frames start..stop-1 from ONE ffmpeg process.

        `keep` is ignored: every frame of the range is decoded anyway, and the
        caller drops those it did not ask for.

        Each decoded frame's presentation time (from ffmpeg's showinfo filter on stderr) is
        matched to the packet index, so a frame the decoder drops (corrupt data) shows up as
        a gap instead of shifting every later frame. The seek goes half-way between frame
        start-1 and frame start (ffmpeg's accurate seeking then starts exactly at `start`);
        frames before `start` are skipped anyway.
        """
        seek = 0.5 * (self.times[start - 1] + self.times[start]) if start > 0 and not self.ordinal else 0.0
        # -copyts: frames keep the times of the file. Without it ffmpeg shifts them by the seek
        # point in MP4/MKV but by the key frame it landed on in AVI, which put every frame of
        # a seeked AVI read one index off.
        cmd = [self._exe, "-hide_banner", "-nostdin", "-loglevel", "info", "-copyts"]
        if seek > 0:
            cmd += ["-ss", f"{seek:.6f}"]
        cmd += ["-i", str(self.path), "-map", "0:v:0", "-an", "-sn", "-dn",
                "-fps_mode", "passthrough", "-frames:v", str(stop if self.ordinal else stop - start),
                "-vf", "showinfo=checksum=0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                bufsize=0)
        times: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_read_showinfo, args=(proc.stderr, times), daemon=True)
        reader.start()
        _grow_pipe(proc.stdout)
        nbytes = self.height * self.width * 3
        fallback = 0 if self.ordinal else start  # index by order if a frame has no (usable) timestamp
        try:
            while True:
                # read straight into the frame's own array: no intermediate bytes copies
                frame = np.empty((self.height, self.width, 3), np.uint8)
                if not _read_into(proc.stdout, memoryview(frame).cast("B"), nbytes):
                    return  # end of stream (or undecodable tail): the caller fills gaps
                try:
                    t = times.get(timeout=30)
                except queue.Empty:
                    t = None
                idx = self._index_of(t - self.start_time) if t is not None and not self.ordinal else fallback
                fallback = idx + 1
                if idx < start:
                    continue
                if idx >= stop:
                    return
                yield idx, frame
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()
            reader.join(timeout=5)
            proc.stderr.close()

    def _index_of(self, t: float) -> int:
        """The frame whose presentation time is nearest to t seconds."""
        times = self.times
        i = int(np.searchsorted(times, t))
        if i >= len(times):
            return len(times) - 1 if t - times[-1] < 0.5 * self._min_step else len(times)
        if i > 0 and t - times[i - 1] < times[i] - t:
            i -= 1
        return i

    @property
    def _min_step(self) -> float:
        d = np.diff(self.times)
        return float(d.min()) if len(d) else 1.0


_ROTATION = re.compile(r"(?:displaymatrix: rotation of|Display Matrix: rotation of)\s*(-?[\d.]+)\s*degrees",
                       re.IGNORECASE)
_ROTATE_TAG = re.compile(r"^\s*rotate\s*:\s*(-?\d+)\s*$", re.MULTILINE)


def _display_rotation(header: str, meta: dict) -> int:
    """The display rotation (degrees, 0..359) ffmpeg applies when decoding, from the probe's header."""
    m = _ROTATION.search(header) or _ROTATE_TAG.search(header)
    angle = float(m.group(1)) if m else float(meta.get("rotate") or 0)
    return int(round(angle)) % 360


_SHOWINFO = re.compile(r"Parsed_showinfo.*\bn:\s*\d+\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:\s*(\S+)")


def _read_showinfo(pipe, out: "queue.Queue") -> None:
    """Put each filtered frame's pts_time (or None) into `out`, in order; runs in a thread."""
    try:
        for line in iter(pipe.readline, b""):
            m = _SHOWINFO.search(line.decode(errors="replace"))
            if m:
                try:
                    out.put(float(m.group(2)))
                except ValueError:
                    out.put(None)
    except (OSError, ValueError):
        pass


def _read_into(pipe, view: memoryview, n: int) -> bool:
    """Fill view[:n] from the pipe; False when the stream ends first."""
    got = 0
    while got < n:
        k = pipe.readinto(view[got:n])
        if not k:
            return False
        got += k
    return True


def _grow_pipe(pipe) -> None:
    """Ask Linux for a 1 MiB pipe (default 64 KiB): fewer wake-ups per 6 MB 1080p frame."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError, ValueError):
        pass


class _FolderBackend:
    """Frames stored as image files (DAVIS layout: 00000.jpg, 00001.jpg, ...)."""

    def __init__(self, path: Path, fps: float | None):
        from PIL import Image

        self.path = path
        self.files = list_frame_files(path)
        if not self.files:
            raise InputError(f"{path}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        first = None  # (file, size) of the first readable frame
        #: frames whose file cannot be read: served like a video's undecodable frames (padded, reported)
        self.unreadable: set[int] = set()
        for i, f in enumerate(self.files):  # headers only: PIL reads pixel data lazily
            try:
                with Image.open(f) as im:
                    size = im.size
            except Exception:  # noqa: BLE001 - any decoder error means a bad file
                self.unreadable.add(i)
                continue
            if first is None:
                first = (f, size)
            elif size != first[1]:
                raise InputError(
                    f"{f}: frame size {size[0]}x{size[1]} differs from the first frame "
                    f"{first[0].name} ({first[1][0]}x{first[1][1]}); all frames of a folder must match")
        if first is None:
            raise InputError(f"{path}: none of its {len(self.files)} image files can be read (corrupt?)")
        self.width, self.height = first[1]
        self.n_frames = len(self.files)
        self.fps = float(fps or DEFAULT_FOLDER_FPS)
        self.variable_frame_rate = False
        self.times = np.arange(self.n_frames) / self.fps

    def load(self, i: int) -> np.ndarray:
        from PIL import Image

        f = self.files[i]
        try:
            with Image.open(f) as im:
                im = im.convert("RGB") if im.mode not in ("RGB",) else im
                a = np.asarray(im)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{f}: frame {i} cannot be read: {e}") from None
        if a.shape[:2] != (self.height, self.width):
            raise InputError(f"{f}: frame {i} has size {a.shape[1]}x{a.shape[0]}, expected {self.width}x{self.height}")
        return _to_rgb(a)

    #: images are read one by one: nothing is gained by keeping a read open (see _OpenStream)
    continues = False

    def stream(self, start: int, stop: int, keep: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(index, frame) for frames start..stop-1, or for the indices in `keep` only.

        A frame whose file cannot be read is left out, as a video decoder drops a corrupt
        frame: the reader pads the gap and reports the frame (VideoSource.filled_frames)."""
        for i in (range(start, stop) if keep is None else keep):
            if i in self.unreadable:
                continue
            try:
                frame = self.load(i)
            except InputError:
                self.unreadable.add(i)
                continue
            yield i, frame


class _OpenStream:
    """One decode from frame `start` to the end of the video, read piece by piece.

    Consecutive reads (propagation going forward, the viewer stepping through the
    video) continue it instead of starting an ffmpeg process per chunk: at 1080p
    reading in order costs 6.6 instead of 17.7 ms a frame, because every new
    process seeks and decodes again from the last key frame (docs/benchmarks.md, "Propagation's reads")."""

    def __init__(self, backend, start: int, stop: int):
        self._pairs = backend.stream(start, stop)
        self.next = start  # the first frame index not handed out yet
        self.ended = False  # the decoder stopped (end of the video, or an undecodable tail)
        self._pending: tuple[int, np.ndarray] | None = None

    def take(self, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
        """(index, frame) pairs with start <= index < stop; frames before `start` are dropped."""
        while not self.ended:
            if self._pending is None:
                try:
                    self._pending = next(self._pairs)
                except StopIteration:
                    self.ended = True
                    return
            idx, frame = self._pending
            if idx >= stop:
                break
            self._pending = None
            self.next = idx + 1
            if idx >= start:
                yield idx, frame
        self.next = max(self.next, stop)

    def close(self) -> None:
        self._pairs.close()
        self.ended = True


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("===")]
    return lines[-1] if lines else "unknown error"


# --------------------------------------------------------------------------- public
class RGBFramesMixin:
    """The array look of a frame source: (T, H, W, 3) uint8, len() = T.

    Shared by VideoSource and the napari plugin's ArraySource; the class sets
    `n_frames`, `height` and `width`."""

    n_frames: int
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n_frames, self.height, self.width, 3)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return self.n_frames

    def frames_at(self, indices: Sequence[int]) -> np.ndarray:
        """The frames at `indices` as a new (n, H, W, 3) uint8 array, one `frame` read each
        (VideoSource reads them in one decode)."""
        out = np.empty((len(indices), self.height, self.width, 3), np.uint8)
        for k, t in enumerate(indices):
            out[k] = self.frame(t)
        return out


class VideoSource(RGBFramesMixin):
    """A video file or frame folder, exposed as lazily decoded (T, H, W, 3) uint8 frames."""

    def __init__(self, backend, path: Path, chunk_frames: int, cache_bytes: int, cache_chunks: int):
        self._backend = backend
        self.path = path
        frame_bytes = int(backend.height) * int(backend.width) * 3
        self.chunk_frames = int(chunk_frames) if chunk_frames is not None else default_chunk_frames(frame_bytes)
        self.fps = float(backend.fps)
        self.n_frames = int(backend.n_frames)
        self.height = int(backend.height)
        self.width = int(backend.width)
        #: presentation time of each frame in seconds (from the packet index for video files)
        self.timestamps: np.ndarray = np.asarray(backend.times, dtype=np.float64)
        self.variable_frame_rate: bool = bool(backend.variable_frame_rate)
        chunk_bytes = self.chunk_frames * self.height * self.width * 3
        self.cache_chunks = max(2, min(int(cache_chunks), int(cache_bytes // max(chunk_bytes, 1))))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._chunk_locks: dict[int, threading.Lock] = {}
        self._last_good: np.ndarray | None = None
        #: how many chunks were decoded (each one ffmpeg process); tests and benchmarks read it
        self.decoded_chunks = 0
        #: frame indices that could not be decoded and were filled with the last good frame
        self.filled_frames: set[int] = set()
        self._open: _OpenStream | None = None  # the decode that consecutive reads continue
        self._open_lock = threading.Lock()

    # -- construction
    @classmethod
    def open(cls, path, chunk_frames: int | None = None, *, fps: float | None = None,
             cache_bytes: int = DEFAULT_CACHE_BYTES, cache_chunks: int = DEFAULT_CACHE_CHUNKS) -> "VideoSource":
        """Open a video file or a folder of frames; reads metadata only.

        `fps` sets the frame rate of a frame folder (default 24); it is ignored for video files.
        Raises InputError on a missing path, a file that is not a video, a video with no frames,
        a folder with no images or with frames of different sizes.
        """
        if isinstance(path, VideoSource):
            return path
        if path is None or str(path) == "":
            raise InputError("no video path given")
        p = Path(path).expanduser()
        if chunk_frames is not None and chunk_frames < 1:
            raise InputError(f"chunk_frames must be at least 1, got {chunk_frames}")
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
        if p.is_dir():
            backend = _FolderBackend(p, fps)
        else:
            if p.suffix.lower() in IMAGE_SUFFIXES:
                raise InputError(f"{p}: a single image, not a video; open the folder that holds the frames")
            if p.stat().st_size == 0:
                raise InputError(f"{p}: the file is empty")
            backend = _FfmpegBackend(p)
        return cls(backend, p, chunk_frames, cache_bytes, cache_chunks)

    # -- array-like (shape, dtype, ndim, len: RGBFramesMixin)
    def __repr__(self) -> str:
        return (f"VideoSource({str(self.path)!r}, frames={self.n_frames}, size={self.width}x{self.height}, "
                f"fps={self.fps:.3f})")

    def __getitem__(self, t):
        if isinstance(t, (int, np.integer)):
            return self.frame(int(t))
        if isinstance(t, slice):
            start, stop, step = t.indices(self.n_frames)
            if step == 1:
                return self.frames(start, stop)
            return np.stack([self.frame(i) for i in range(start, stop, step)]) if range(start, stop, step) \
                else np.zeros((0, self.height, self.width, 3), np.uint8)
        raise TypeError("VideoSource supports an int or a slice; use to_dask() for general indexing")

    # -- reading
    def _check_index(self, t: int) -> int:
        if not isinstance(t, (int, np.integer)):
            raise InputError(f"frame index must be an integer, got {t!r}")
        t = int(t)
        if t < 0:
            t += self.n_frames
        if not 0 <= t < self.n_frames:
            raise InputError(f"frame {t} does not exist: the video has {self.n_frames} frames (0..{self.n_frames - 1})")
        return t

    def _chunk_range(self, c: int) -> tuple[int, int]:
        start = c * self.chunk_frames
        return start, min(start + self.chunk_frames, self.n_frames)

    def _aligned(self, start: int, stop: int, keep: Sequence[int] | None = None,
                 own: bool = False) -> Iterator[np.ndarray]:
        """Every frame start..stop-1 in order (or only those in `keep`, ascending, within the
        range); frames that did not decode repeat the last good one. `own`: a decode of its
        own, which neither uses nor moves the open one (a long scan).

        The warning is given (and `filled_frames` updated) as soon as a gap is known, before
        the padding is yielded, so a consumer that stops early still hears about it.
        """
        wanted = range(start, stop) if keep is None else list(keep)
        last: np.ndarray | None = None
        pos = 0  # wanted[pos] is the next frame to hand out
        pairs = self._backend.stream(start, stop, keep) if own else self._pairs(start, stop, keep)
        try:
            for idx, f in pairs:
                if pos == len(wanted):
                    break
                gap_end = bisect.bisect_left(wanted, idx, pos)
                if gap_end > pos:  # wanted frames before idx never came: the decoder dropped them
                    yield from self._fill_gap(wanted[pos:gap_end], last)
                    pos = gap_end
                if pos < len(wanted) and wanted[pos] == idx:
                    yield f
                    pos += 1
                # else: a frame not asked for, or a repeated timestamp (the first one was kept)
                last = f
        finally:
            pairs.close()
        if pos < len(wanted):  # the stream ended early: an undecodable tail
            yield from self._fill_gap(wanted[pos:], last)

    def _pairs(self, start: int, stop: int, keep: Sequence[int] | None) -> Iterator[tuple[int, np.ndarray]]:
        """The backend's (index, frame) pairs over start..stop-1. A video file's come from the
        open decode when it stands at most SKIP_AHEAD frames before `start`; otherwise a new
        one is opened there (to the end of the video) for the reads that follow. A second
        thread reading meanwhile gets a decode of its own range."""
        backend = self._backend
        if not backend.continues or not self._open_lock.acquire(blocking=False):
            yield from backend.stream(start, stop, keep)
            return
        try:
            s = self._open
            if s is None or s.ended or not 0 <= start - s.next <= SKIP_AHEAD:
                if s is not None:
                    s.close()
                s = self._open = _OpenStream(backend, start, self.n_frames)
            yield from s.take(start, stop)
        finally:
            self._open_lock.release()

    def _fill_gap(self, missing: Sequence[int], last: np.ndarray | None) -> Iterator[np.ndarray]:
        """Yield a stand-in for each frame in `missing` (ascending) the decoder did not return:
        `last`, the last good frame (or the one before the first missing frame when there is
        none yet), after reporting the gap."""
        if last is None:
            last = self._fill_before(missing[0])
        self._report_missing(missing)
        for _ in missing:
            yield last

    def _report_missing(self, missing: Sequence[int]) -> None:
        with self._lock:
            self.filled_frames.update(missing)
        span = f"frame {missing[0]}" if len(missing) == 1 else f"frames {missing[0]}..{missing[-1]}"
        warnings.warn(
            f"{self.path}: {span} could not be decoded (corrupt or truncated video?); "
            f"showing the last frame that decoded instead", RuntimeWarning, stacklevel=5)

    def _decode(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.height, self.width, 3), np.uint8)
        for k, f in enumerate(self._aligned(start, stop)):
            out[k] = f
        return out

    def _fill_before(self, start: int) -> np.ndarray:
        """The last decodable frame before `start`, for padding a chunk where nothing decoded."""
        c = start // self.chunk_frames - 1
        while c >= 0:
            try:
                block = self._chunk(c)
            except InputError:
                block = None
            if block is not None and len(block):
                return block[-1]
            c -= 1
        if not self._backend.continues:  # a frame folder: its size is known, pad with black
            return np.zeros((self.height, self.width, 3), np.uint8)
        raise InputError(f"{self.path}: frame {start} cannot be decoded, and no frame before it can either "
                         f"(corrupt video?)")

    def _chunk(self, c: int) -> np.ndarray:
        """Chunk c, from the LRU cache or decoded by one ffmpeg process; read-only."""
        with self._lock:
            block = self._cache.get(c)
            if block is not None:
                self._cache.move_to_end(c)
                return block
            lock = self._chunk_locks.setdefault(c, threading.Lock())
        with lock:  # two threads asking for the same chunk decode it once
            with self._lock:
                block = self._cache.get(c)
                if block is not None:
                    self._cache.move_to_end(c)
                    return block
            start, stop = self._chunk_range(c)
            block = self._decode(start, stop)
            block.setflags(write=False)
            with self._lock:
                self.decoded_chunks += 1
                self._cache[c] = block
                self._cache.move_to_end(c)
                while len(self._cache) > self.cache_chunks:
                    self._cache.popitem(last=False)
                self._chunk_locks.pop(c, None)
            return block

    def cached_chunks(self) -> list[int]:
        """Chunk indices in the cache, least recently used first."""
        with self._lock:
            return list(self._cache)

    def clear_cache(self) -> None:
        """Empty the chunk cache and stop the open decode (its ffmpeg process) unless a
        read is using it: then it stays for that read (never wait on a reader that may be
        stuck, e.g. one kept alive by an interrupted traceback)."""
        with self._lock:
            self._cache.clear()
        if self._open_lock.acquire(timeout=1.0):
            try:
                if self._open is not None:
                    self._open.close()
                    self._open = None
            finally:
                self._open_lock.release()

    def frame(self, t: int) -> np.ndarray:
        """Frame t as a read-only (H, W, 3) uint8 array (negative t counts from the end)."""
        t = self._check_index(t)
        c, i = divmod(t, self.chunk_frames)
        return self._chunk(c)[i]

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames start..stop-1 as a new (n, H, W, 3) uint8 array, read chunk by chunk through the cache."""
        start, stop = int(start), int(stop)
        if not (0 <= start <= stop <= self.n_frames):
            raise InputError(f"frames {start}..{stop - 1} are out of range for a video of {self.n_frames} frames")
        out = np.empty((stop - start, self.height, self.width, 3), np.uint8)
        t = start
        while t < stop:
            c, i = divmod(t, self.chunk_frames)
            block = self._chunk(c)
            n = min(len(block) - i, stop - t)
            out[t - start:t - start + n] = block[i:i + n]
            t += n
        return out

    def frames_at(self, indices: Sequence[int]) -> np.ndarray:
        """The frames at `indices` (ascending, no repeats) as a new (n, H, W, 3) uint8 array.

        Frames whose chunk is cached come from the cache; the others come from one
        decode over their span and do not enter the cache: a sparse read (every 4th
        frame, self-training's first pass) neither fills the cache with the frames it
        skips nor pays a new ffmpeg process per chunk. The decode covers every frame
        between the first and the last index, so frames far apart are cheaper read
        one by one (the session's tuning frames are; propagation keeps a block's
        frames at most MAX_BLOCK_GAP apart)."""
        idx = [self._check_index(t) for t in indices]
        if any(b <= a for a, b in zip(idx, idx[1:])):
            raise InputError(f"frames_at needs ascending frame indices without repeats, got {list(indices)[:8]}...")
        out = np.empty((len(idx), self.height, self.width, 3), np.uint8)
        with self._lock:
            cached = dict(self._cache)
        todo = []
        for k, t in enumerate(idx):
            c, i = divmod(t, self.chunk_frames)
            if c in cached:
                out[k] = cached[c][i]
            else:
                todo.append(k)
        if todo:
            keep = [idx[k] for k in todo]
            for k, f in zip(todo, self._aligned(keep[0], keep[-1] + 1, keep)):
                out[k] = f
        return out

    def iter_chunks(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first_index, block) over start..stop-1 in order, from ONE sequential decode.

        Blocks hold `chunk_frames` frames (the last may hold fewer), are fresh writable arrays,
        and do not enter the cache, so a full scan neither evicts what the viewer shows nor
        grows memory.
        """
        stop = self.n_frames if stop is None else int(stop)
        start = int(start)
        if not (0 <= start <= stop <= self.n_frames):
            raise InputError(f"frames {start}..{stop - 1} are out of range for a video of {self.n_frames} frames")
        if start == stop:
            return
        frames = self._aligned(start, stop, own=True)
        try:
            t = start
            while t < stop:
                n = min(self.chunk_frames, stop - t)
                block = np.empty((n, self.height, self.width, 3), np.uint8)
                for k in range(n):
                    block[k] = next(frames)
                yield t, block
                t += n
        finally:
            frames.close()

    def to_dask(self):
        """(T, H, W, 3) uint8 dask array; each dask chunk is one decode chunk served by the LRU cache."""
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph

        n_chunks = math.ceil(self.n_frames / self.chunk_frames)
        sizes = tuple(self._chunk_range(c)[1] - self._chunk_range(c)[0] for c in range(n_chunks))
        name = f"vidseg-video-{id(self):x}-{abs(hash((str(self.path), self.chunk_frames))):x}"
        dsk = {(name, c, 0, 0, 0): (self._chunk, c) for c in range(n_chunks)}
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
        return da.Array(graph, name, chunks=(sizes, (self.height,), (self.width,), (3,)), dtype=np.uint8)

    def __array__(self, dtype=None, copy=None):
        # np.asarray(source) decodes everything: allowed, but only for short clips.
        a = self.frames(0, self.n_frames)
        return a.astype(dtype) if dtype is not None else a


def open_video(path, chunk_frames: int | None = None, **kw) -> VideoSource:
    """Shorthand for VideoSource.open."""
    return VideoSource.open(path, chunk_frames, **kw)


__all__: Sequence[str] = ("VideoSource", "open_video", "VIDEO_SUFFIXES", "IMAGE_SUFFIXES", "list_frame_files",
                          "natural_key", "is_video_file")
