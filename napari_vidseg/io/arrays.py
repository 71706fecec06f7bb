"""A frame source over any array with a time axis: numpy, dask, zarr, a lazy TIFF stack.

    src = ArraySource(stack)                         # (T, Y, X) uint16 grey: percentile window
    src = ArraySource(stack, axes="TCYX", channel=1) # one channel of a multichannel series
    src = ArraySource(stack, axes="TCYX", channel="composite", contrast_limits=[(100, 900), (0, 4000)])
    src.frame(0)                                     # (H, W, 3) uint8, what the networks see

It gives the reading interface of `VideoSource` (n_frames, height, width, fps,
frame, frames, frames_at, iter_chunks, to_dask) so the session, propagation
and export take it as they take a video. Frames are read on demand, one time
point (or one block) at a time, from the array as it is: a dask or zarr stack
stays lazy, and only the few frames that choose the intensity window
(`io.intensity`) are read up front.

Axes. `axes` names each array axis with one of T (time), C (channels), Y, X.
When it is not given it is inferred from the shape and `rgb` (napari's flag
for a trailing colour axis): (T, Y, X) grey; (T, Y, X, 3|4) RGB(A); (T, C, Y, X)
with C at most MAX_CHANNELS. A shape that fits none of these, or two of them,
is an InputError that asks for `axes`.

Channels. One channel: grey (copied to R, G and B). RGB(A) data: R, G, B
(alpha dropped). Several channels: `channel=k` shows channel k as grey;
`channel="composite"` (the default) adds the channels, each mapped by its own
window and tinted with a colour (default: channel 0 red, 1 green, 2 blue, then
cyan, magenta, yellow, ...; `colors` overrides, e.g. napari's channel colormaps).

Physical scale. `scale` (one number per axis, napari's layer.scale, or a
{axis: size} dict) and `units` are kept as `self.scale` / `self.units`
({"T": ..., "Y": ..., "X": ...}) so that exports can carry them.
"""
from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np

from ..types import InputError
from .intensity import DEFAULT_PERCENTILES, DEFAULT_SAMPLE_FRAMES, IntensityMap, choose_map
from .video import RGBFramesMixin

#: a (T, C, Y, X) array is recognised when C is at most this (else axes must be given)
MAX_CHANNELS = 8
_AXES = set("TCYX")
DEFAULT_COLORS = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 1, 1))


def infer_axes(shape: Sequence[int], rgb: bool | None = None, name: str = "the array") -> str:
    """The axes string of an array of `shape` (see the module's doc), or an InputError naming the problem."""
    shape = tuple(int(v) for v in shape)
    nd = len(shape)
    if nd < 3 or (nd == 3 and rgb):
        kind = "an RGB image" if nd == 3 else f"a {nd}-D array"
        raise InputError(f"{name} has shape {shape}: {kind} without a time axis; a time-lapse needs "
                         f"(T, Y, X), (T, Y, X, 3) or (T, C, Y, X)")
    if nd == 3:
        return "TYX"
    if nd > 4:
        raise InputError(f"{name} has shape {shape}: more than one axis besides Y, X and channels "
                         f"(a (T, Z, Y, X) volume series?); choose one time axis, e.g. a slice of Z")
    if rgb:
        return "TYXC"
    # RGB: 3 or 4 last and an image taller than MAX_CHANNELS; channels: few on axis 1 and not 3-4 last.
    as_rgb = rgb is None and shape[-1] in (3, 4) and shape[1] > MAX_CHANNELS
    as_channels = shape[1] <= MAX_CHANNELS and (shape[-1] not in (3, 4) or rgb is False)
    if as_rgb:
        return "TYXC"
    if as_channels:
        if shape[0] <= MAX_CHANNELS and rgb is not None:
            # napari says "not RGB" for every such layer: is axis 0 or axis 1 the channel axis?
            raise InputError(f"{name} has shape {shape}: the channel axis is ambiguous (axis 0 or axis 1, "
                             f"{shape[0]} or {shape[1]} long); say which with axes='TCYX' or 'CTYX'")
        return "TCYX"
    if shape[1] <= MAX_CHANNELS:
        raise InputError(f"{name} has shape {shape}: the channel axis is ambiguous (axis 1, {shape[1]} "
                         f"channels, or the last axis, {shape[-1]} colours?); say which with axes='TCYX' or "
                         f"'TYXC'")
    raise InputError(f"{name} has shape {shape}: no axis looks like channels (axis 1 has {shape[1]} > "
                     f"{MAX_CHANNELS}); a (T, Z, Y, X) volume series? Give axes, or slice one Z")


def _check_axes(axes: str, shape: Sequence[int], name: str) -> str:
    axes = str(axes).upper()
    if len(axes) != len(shape) or set(axes) - _AXES or len(set(axes)) != len(axes) or not set("TYX") <= set(axes):
        raise InputError(f"axes {axes!r} do not describe {name} of shape {tuple(shape)}: one letter per axis "
                         f"from T, C, Y, X, each once, T, Y and X required")
    return axes


def _scale_dict(scale, axes: str) -> dict[str, float]:
    if scale is None:
        return {}
    if isinstance(scale, Mapping):
        return {str(k).upper(): float(v) for k, v in scale.items() if str(k).upper() in axes}
    vals = [float(v) for v in scale]
    if len(vals) != len(axes):
        raise InputError(f"scale {vals} has {len(vals)} values for {len(axes)} axes ({axes})")
    return {a: v for a, v in zip(axes, vals) if a != "C"}


class ArraySource(RGBFramesMixin):
    """Frames of a (lazy) array as (H, W, 3) uint8 RGB; see the module's doc."""

    def __init__(self, array, fps: float = 25.0, rgb: bool | None = None, name: str = "array", *,
                 axes: str | None = None, channel: int | str | None = None, contrast_limits=None,
                 percentiles: Sequence[float] = DEFAULT_PERCENTILES, sample_frames: int = DEFAULT_SAMPLE_FRAMES,
                 gamma: float = 1.0, colors: Sequence[Sequence[float]] | None = None, scale=None,
                 units: Mapping[str, str] | None = None, path=None):
        if isinstance(array, (list, tuple)) and array and hasattr(array[0], "shape"):
            array = array[0]  # a multiscale pyramid (napari): the full resolution level
        if not hasattr(array, "shape"):
            array = np.asarray(array)
        shape = tuple(int(v) for v in array.shape)
        self.name = name
        self.axes = _check_axes(axes, shape, name) if axes else infer_axes(shape, rgb, name)
        if any(v == 0 for v in shape):
            raise InputError(f"{name} has shape {shape}: it is empty")
        self.array = array
        self.path = path
        self.fps = float(fps)
        self.n_frames = shape[self.axes.index("T")]
        self.height = shape[self.axes.index("Y")]
        self.width = shape[self.axes.index("X")]
        n_ch = shape[self.axes.index("C")] if "C" in self.axes else 1
        # Trailing 3 or 4 channels are colours unless the caller says otherwise or picks one channel.
        self.is_rgb = self.axes.endswith("C") and n_ch in (3, 4) and rgb is not False and channel is None
        if self.is_rgb:
            self._channels = [0, 1, 2]  # alpha is dropped
        elif channel is None or channel == "composite":
            self._channels = list(range(n_ch))
        else:
            try:
                k = int(channel)
            except (TypeError, ValueError):
                raise InputError(f"channel must be a channel number or 'composite', got {channel!r}") from None
            if not 0 <= k < n_ch:
                raise InputError(f"channel {k} does not exist: {name} has {n_ch} channel(s) (0..{n_ch - 1})")
            self._channels = [k]
        self.channel = "rgb" if self.is_rgb else ("composite" if len(self._channels) > 1 else self._channels[0])
        self.scale = _scale_dict(scale, self.axes)
        self.units = dict(units or {})
        self._colors = self._tints(colors)
        self.intensity: IntensityMap = choose_map(
            self.raw_frame, self.n_frames, len(self._channels), array.dtype, contrast_limits, percentiles,
            sample_frames, gamma)

    def _tints(self, colors) -> np.ndarray:
        n = len(self._channels)
        if self.is_rgb or n == 1:
            return np.eye(3, dtype=np.float32) if self.is_rgb else np.ones((1, 3), np.float32)
        cols = list(colors) if colors is not None else [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(n)]
        arr = np.asarray(cols, np.float32)
        if arr.shape != (n, 3):
            raise InputError(f"colors needs one (r, g, b) per channel ({n}), got shape {arr.shape}")
        return arr

    def __repr__(self) -> str:
        return (f"ArraySource({self.name!r}, axes={self.axes}, {self.n_frames} frames, {self.width}x{self.height}, "
                f"channel={self.channel}, intensity={self.intensity.rule})")

    # -- raw reading
    def _check(self, t) -> int:
        t = int(t)
        if t < 0:
            t += self.n_frames
        if not 0 <= t < self.n_frames:
            raise InputError(f"frame {t} does not exist ({self.name} has {self.n_frames} frames)")
        return t

    def _read(self, t_index) -> np.ndarray:
        """array[t_index] with the other axes whole, as (n, C', Y, X) (n = 1 for an int index)."""
        idx = tuple(t_index if a == "T" else slice(None) for a in self.axes)
        a = np.asarray(self.array[idx])
        rest = [ax for ax in self.axes if ax != "T"]
        if isinstance(t_index, (int, np.integer)):
            a = a[None]
        rest = ["T"] + rest
        if "C" not in rest:
            a = a[:, None]
            rest.insert(1, "C")
        a = np.transpose(a, [rest.index(ax) for ax in "TCYX"])
        return a[:, self._channels]

    def raw_frame(self, t: int) -> np.ndarray:
        """Frame t's values as (C, H, W) in the array's own type (only the channels shown)."""
        return self._read(self._check(t))[0]

    def _to_rgb(self, raw: np.ndarray) -> np.ndarray:
        """(n, C, H, W) raw -> (n, H, W, 3) uint8 by the intensity map and the channel tints."""
        out = np.empty(raw.shape[:1] + raw.shape[2:] + (3,), np.uint8)
        for i in range(raw.shape[0]):
            v = self.intensity.apply(raw[i] if raw.shape[1] > 1 else raw[i, 0])
            if v.ndim == 2:
                out[i] = v[:, :, None]
            else:
                rgb = np.tensordot(v.astype(np.float32), self._colors, axes=([0], [0]))
                out[i] = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
        return out

    # -- the VideoSource interface
    def frame(self, t: int) -> np.ndarray:
        return self._to_rgb(self._read(self._check(t)))[0]

    def frames(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(int(start), 0), min(int(stop), self.n_frames)
        if stop <= start:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        return self._to_rgb(self._read(slice(start, stop)))

    def iter_chunks(self, start: int = 0, stop: int | None = None,
                    chunk: int = 16) -> Iterator[tuple[int, np.ndarray]]:
        stop = self.n_frames if stop is None else min(int(stop), self.n_frames)
        for first in range(int(start), stop, chunk):
            yield first, self.frames(first, min(first + chunk, stop))

    def __getitem__(self, t):
        if isinstance(t, slice):
            start, stop, step = t.indices(self.n_frames)
            if step == 1:
                return self.frames(start, stop)
            return np.stack([self.frame(i) for i in range(start, stop, step)])
        return self.frame(t)

    def to_dask(self, chunk: int = 16):
        """The mapped (T, H, W, 3) uint8 frames as a lazy dask array (blocks of `chunk` frames)."""
        import dask.array as da

        sizes = tuple(min(chunk, self.n_frames - s) for s in range(0, self.n_frames, chunk))
        starts = np.cumsum((0,) + sizes[:-1])

        def block(block_id=None):
            s = int(starts[block_id[0]])
            return self.frames(s, s + sizes[block_id[0]])

        return da.map_blocks(block, chunks=(sizes, (self.height,), (self.width,), (3,)), dtype=np.uint8,
                             meta=np.empty((0, 0, 0, 0), np.uint8))

    def physical_metadata(self) -> dict:
        """{"axes": "TYX", "scale": {...}, "units": {...}}: what exports carry along."""
        return {"axes": "TYX", "scale": {a: self.scale[a] for a in "TYX" if a in self.scale},
                "units": {a: self.units[a] for a in "TYX" if a in self.units}}


__all__ = ["ArraySource", "infer_axes", "MAX_CHANNELS", "DEFAULT_COLORS"]
