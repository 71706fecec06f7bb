"""Intensities of scientific images -> the 8-bit RGB the networks were trained on.

Microscopy and other scientific time-lapses come as 16-bit or float grey
images, often in a narrow band of the type's range (the Cell Tracking
Challenge's simulated nuclei span about 73..314 of 0..65535), or as several
channels. The networks see 8-bit RGB photographs. The rule, per channel:

    v8 = 255 * clip((v - low) / (high - low), 0, 1) ** gamma

with `low`/`high` chosen, in this order of precedence:

1. given contrast limits (in napari: the layer's contrast limits, so the
   network sees what the user sees), one pair for all channels or one per
   channel;
2. uint8 data: 0..255 (8-bit video and photographs pass through unchanged);
3. otherwise percentiles (default 0.5 and 99.8) of the pixel values of a few
   frames sampled evenly through the video (default 8; pixels subsampled to
   at most about a million per frame): the whole stack is never read.

A channel whose sampled pixels are all equal gets high = low + 1 (it maps to
black); a video where every channel is constant is refused (nothing to
segment), as is a rule whose high is not above its low.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..types import InputError

#: default percentiles of the sampled pixel values mapped to 0 and 255
DEFAULT_PERCENTILES = (0.5, 99.8)
#: frames sampled (evenly through the video) for the percentiles
DEFAULT_SAMPLE_FRAMES = 8
#: pixels per sampled frame at most (a regular sub-grid beyond that)
_SAMPLE_PIXELS = 1 << 20


@dataclass(frozen=True)
class IntensityMap:
    """Per-channel linear window (then gamma) onto 0..255; `low` and `high` have one value per channel."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    gamma: float = 1.0
    rule: str = "limits"  # how low/high were chosen: "limits", "uint8" or "percentiles p_lo,p_hi"

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high) or not self.low:
            raise InputError(f"intensity limits need one (low, high) per channel, got {self.low} / {self.high}")
        for lo, hi in zip(self.low, self.high):
            if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
                raise InputError(f"contrast limits ({lo}, {hi}): the upper limit must be above the lower one")
        if not (np.isfinite(self.gamma) and self.gamma > 0):
            raise InputError(f"gamma must be a positive number, got {self.gamma}")

    @property
    def n_channels(self) -> int:
        return len(self.low)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(C, H, W) or, with one channel, (H, W) values -> the same shape as uint8."""
        a = np.asarray(image)
        lead = a.ndim == 3
        if lead and a.shape[0] != self.n_channels:
            raise InputError(f"an image with {a.shape[0]} channels given to a map of {self.n_channels}")
        lo = np.asarray(self.low, np.float32).reshape((-1, 1, 1) if lead else ())
        hi = np.asarray(self.high, np.float32).reshape((-1, 1, 1) if lead else ())
        if not lead and self.n_channels != 1:
            raise InputError(f"a one-channel image given to a map of {self.n_channels} channels")
        v = (np.nan_to_num(a.astype(np.float32, copy=False)) - lo) / (hi - lo)
        np.clip(v, 0.0, 1.0, out=v)
        if self.gamma != 1.0:
            np.power(v, self.gamma, out=v)
        return (v * 255.0 + 0.5).astype(np.uint8)

    def to_json(self) -> dict:
        return {"low": list(self.low), "high": list(self.high), "gamma": self.gamma, "rule": self.rule}


def _limits_per_channel(limits, n_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    arr = np.asarray(limits, dtype=np.float64)
    if arr.shape == (2,):
        arr = np.repeat(arr[None], n_channels, axis=0)
    if arr.shape != (n_channels, 2):
        raise InputError(f"contrast limits must be (low, high) or one such pair per channel ({n_channels}), "
                         f"got {np.asarray(limits).tolist()}")
    return tuple(float(v) for v in arr[:, 0]), tuple(float(v) for v in arr[:, 1])


def sample_frame_indices(n_frames: int, k: int = DEFAULT_SAMPLE_FRAMES) -> list[int]:
    """k frame indices spread evenly over 0..n_frames-1 (first and last included)."""
    if n_frames < 1:
        raise InputError("the video has no frames")
    k = max(1, min(int(k), n_frames))
    return sorted({int(round(v)) for v in np.linspace(0, n_frames - 1, k)})


def _subsample(ch: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(np.sqrt(ch.size / _SAMPLE_PIXELS))))
    return ch[::step, ::step].ravel()


def sample_values(read_frame: Callable[[int], np.ndarray], n_frames: int,
                  sample_frames: int = DEFAULT_SAMPLE_FRAMES) -> list[np.ndarray]:
    """Finite pixel values of a few frames spread through the video, one float64 array per
    channel. `read_frame(t)` gives frame t as (C, H, W) (or (H, W) for one channel).
    Raises InputError for an empty frame or a channel with no finite value."""
    per_channel: list[list[np.ndarray]] = []
    for t in sample_frame_indices(n_frames, sample_frames):
        f = np.asarray(read_frame(t))
        if f.ndim == 2:
            f = f[None]
        if f.size == 0:
            raise InputError(f"frame {t} is empty (shape {f.shape})")
        if not per_channel:
            per_channel = [[] for _ in range(f.shape[0])]
        for c in range(f.shape[0]):
            per_channel[c].append(_subsample(f[c]))
    out = []
    for c, parts in enumerate(per_channel):
        v = np.concatenate(parts).astype(np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise InputError(f"channel {c} holds no finite values (all NaN or infinite) in the sampled frames")
        out.append(v)
    return out


def check_not_constant(values: Sequence[np.ndarray]) -> None:
    """InputError when every channel's sampled values are all equal: nothing to segment."""
    if all(v.min() == v.max() for v in values):
        vals = ", ".join(f"{v[0]:g}" for v in values)
        raise InputError(f"the image is constant (every sampled pixel is {vals}): there is nothing to segment")


def percentile_map(values: Sequence[np.ndarray], percentiles: Sequence[float] = DEFAULT_PERCENTILES,
                   gamma: float = 1.0) -> IntensityMap:
    """The window between two percentiles of each channel's sampled values (`sample_values`)."""
    p_lo, p_hi = (float(p) for p in percentiles)
    if not 0 <= p_lo < p_hi <= 100:
        raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {p_lo}, {p_hi}")
    check_not_constant(values)
    lows, highs = [], []
    for v in values:
        lo, hi = np.percentile(v, [p_lo, p_hi])
        if hi <= lo:  # a narrow distribution (mostly one value): the full range instead
            lo, hi = float(v.min()), float(v.max())
        if hi <= lo:  # a constant channel beside others that are not: it maps to black
            hi = lo + 1.0
        lows.append(float(lo))
        highs.append(float(hi))
    return IntensityMap(tuple(lows), tuple(highs), gamma, rule=f"percentiles {p_lo:g},{p_hi:g}")


def choose_map(read_frame: Callable[[int], np.ndarray], n_frames: int, n_channels: int, dtype,
               contrast_limits=None, percentiles: Sequence[float] = DEFAULT_PERCENTILES,
               sample_frames: int = DEFAULT_SAMPLE_FRAMES, gamma: float = 1.0) -> IntensityMap:
    """The module's rule: given limits, else uint8 as is, else sampled percentiles. The sampled
    frames are read in every case: a constant (or empty) video is refused whatever the rule."""
    values = sample_values(read_frame, n_frames, sample_frames)
    if len(values) != n_channels:
        raise InputError(f"expected {n_channels} channels, the frames have {len(values)}")
    if contrast_limits is not None:
        check_not_constant(values)
        lo, hi = _limits_per_channel(contrast_limits, n_channels)
        return IntensityMap(lo, hi, gamma, rule="limits")
    if np.dtype(dtype) == np.uint8:
        check_not_constant(values)
        return IntensityMap((0.0,) * n_channels, (255.0,) * n_channels, gamma, rule="uint8")
    return percentile_map(values, percentiles, gamma)


__all__ = ["IntensityMap", "choose_map", "percentile_map", "sample_values", "check_not_constant",
           "sample_frame_indices", "DEFAULT_PERCENTILES", "DEFAULT_SAMPLE_FRAMES"]
