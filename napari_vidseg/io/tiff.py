"""Lazy TIFF time-lapses: a folder of one-frame TIFFs (the Cell Tracking Challenge's
``t000.tif`` ...) or one multi-page TIFF (ImageJ / OME hyperstacks), any
compression tifffile reads (LZW, deflate, zstd through imagecodecs).

`open_tiff(path)` reads headers only and returns a `TiffStack`: an array-like
(shape, dtype, ndim, ``stack[t]``, ``stack[a:b]``) that reads the pages of the
frames asked for and nothing else, with `axes` ("TYX", "TCYX", "TYXC") and the
physical `scale` / `units` found in the file (TIFF resolution tags, ImageJ
``spacing``/``unit``/``finterval``, OME PhysicalSize*/TimeIncrement). It goes
straight into `io.arrays.ArraySource` (which maps intensities to 8-bit RGB) and
into napari (`to_dask`).
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

from ..types import InputError

TIFF_SUFFIXES = (".tif", ".tiff")


def _tifffile():
    try:
        import tifffile
    except ImportError:  # pragma: no cover - a dependency in setup.cfg
        raise InputError("reading TIFF needs the tifffile package: pip install tifffile imagecodecs") from None
    return tifffile


def is_tiff(path) -> bool:
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def tiff_files(folder) -> list[Path]:
    """The TIFF files of a folder, naturally sorted, hidden files skipped."""
    from .video import natural_key

    files = [p for p in Path(folder).iterdir()
             if p.is_file() and is_tiff(p) and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def is_tiff_folder(folder) -> bool:
    """A folder whose images are all TIFFs (and at least one)."""
    from .video import list_frame_files

    try:
        images = list_frame_files(Path(folder))
    except OSError:
        return False
    return bool(images) and all(is_tiff(p) for p in images)


def _read_page_array(tifffile, path: Path, key=None) -> np.ndarray:
    try:
        return tifffile.imread(path, key=key) if key is not None else tifffile.imread(path)
    except ValueError as e:
        if "imagecodecs" in str(e):
            raise InputError(f"{path}: its compression needs the imagecodecs package: pip install imagecodecs") \
                from None
        raise InputError(f"{path}: not a readable TIFF: {e}") from None
    except Exception as e:  # noqa: BLE001 - any decoder error means a bad file
        raise InputError(f"{path}: not a readable TIFF: {e}") from None


def _physical(tif) -> tuple[dict, dict]:
    """(scale, units) by axis letter from a TIFF's metadata, where it holds any."""
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    page = tif.pages[0]
    ij = tif.imagej_metadata or {}
    try:
        tags = page.tags
        xr, yr = tags.get("XResolution"), tags.get("YResolution")
        unit_tag = tags.get("ResolutionUnit")
        unit_val = int(unit_tag.value) if unit_tag is not None else 1
        if xr is not None and yr is not None and (unit_val in (2, 3) or ij.get("unit")):
            px = xr.value[0] / xr.value[1] if xr.value[1] else 0
            py = yr.value[0] / yr.value[1] if yr.value[1] else 0
            if px > 0 and py > 0 and not (px == 1 and py == 1):
                scale["X"], scale["Y"] = 1.0 / px, 1.0 / py
                unit = ij.get("unit") or {2: "inch", 3: "cm"}.get(unit_val, "")
                unit = {"micron": "µm", "\\u00B5m": "µm"}.get(unit, unit)
                if unit:
                    units["X"] = units["Y"] = unit
    except (AttributeError, TypeError, ZeroDivisionError):
        pass
    if ij.get("finterval"):
        scale["T"] = float(ij["finterval"])
        units["T"] = ij.get("tunit", "s")
    ome = getattr(tif, "ome_metadata", None)
    if ome:
        for axis, attr in (("X", "PhysicalSizeX"), ("Y", "PhysicalSizeY"), ("T", "TimeIncrement")):
            m = re.search(rf'\b{attr}="([0-9.eE+-]+)"', ome)
            if m:
                scale[axis] = float(m.group(1))
                u = re.search(rf'\b{attr}Unit="([^"]+)"', ome)
                units[axis] = u.group(1) if u else ("µm" if axis != "T" else "s")
    return scale, units


def _axes_of(series_axes: str, shape: tuple[int, ...]) -> str:
    """tifffile's series axes -> T/C/Y/X: the one axis besides Y, X and channels (C, S) is time
    (T, Z, I or Q: one-frame-per-page stacks are often labelled Z or I)."""
    out = []
    for a in series_axes:
        if a in "YX":
            out.append(a)
        elif a in "CS":
            out.append("C")
        else:
            out.append("T")
    axes = "".join(out)
    if axes.count("C") > 1:
        raise InputError(f"a TIFF with two channel axes ({series_axes}) is not supported")
    if axes.count("T") > 1:
        raise InputError(f"the TIFF has axes {series_axes} (shape {shape}): more than one axis besides Y, X and "
                         f"channels; a time-lapse needs exactly one")
    if "T" not in axes:
        raise InputError(f"the TIFF has axes {series_axes} (shape {shape}): one image, no time axis; open the "
                         f"folder that holds the frames")
    return axes


class TiffStack:
    """Lazy (T, ...) array over TIFF pages or files; see the module's doc."""

    def __init__(self, path: Path, files: list[Path] | None, shape: tuple[int, ...], dtype, axes: str,
                 pages_per_frame: int = 1, scale: dict | None = None, units: dict | None = None):
        self.path = path
        self.files = files
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self.axes = axes
        self.pages_per_frame = pages_per_frame
        self.scale = dict(scale or {})
        self.units = dict(units or {})
        self._lock = threading.Lock()
        self._tif = None  # the multi-page file, opened once on first read

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"TiffStack({str(self.path)!r}, shape={self.shape}, dtype={self.dtype}, axes={self.axes})"

    def _frame(self, t: int) -> np.ndarray:
        tifffile = _tifffile()
        if self.files is not None:
            a = _read_page_array(tifffile, self.files[t])
        else:
            with self._lock:
                if self._tif is None:
                    self._tif = tifffile.TiffFile(self.path)
                pages = self._tif.series[0].pages
                k0 = t * self.pages_per_frame
                try:
                    a = np.stack([pages[k].asarray() for k in range(k0, k0 + self.pages_per_frame)])
                except ValueError as e:
                    raise InputError(f"{self.path}: frame {t} cannot be read: {e}") from None
        want = self.shape[1:]
        if a.size != int(np.prod(want)):
            raise InputError(f"{self.files[t] if self.files else self.path}: frame {t} has shape {a.shape}, "
                             f"expected {want} (all frames must match the first)")
        return a.reshape(want)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        t, rest = key[0], key[1:]
        if isinstance(t, (int, np.integer)):
            t = int(t) + (len(self) if int(t) < 0 else 0)
            if not 0 <= t < len(self):
                raise IndexError(f"frame {t} out of range ({len(self)} frames)")
            out = self._frame(t)
        elif isinstance(t, slice):
            idx = range(*t.indices(len(self)))
            out = np.stack([self._frame(i) for i in idx]) if len(idx) else np.zeros((0,) + self.shape[1:], self.dtype)
        else:
            raise TypeError("TiffStack supports an int or a slice on its first axis")
        return out[(slice(None),) * (out.ndim - len(self.shape) + 1) + rest] if rest else out

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a.astype(dtype) if dtype is not None else a

    def to_dask(self):
        """(T, ...) dask array, one chunk per frame: napari's slider reads one frame."""
        import dask.array as da
        from dask import delayed

        return da.stack([da.from_delayed(delayed(self._frame)(t), self.shape[1:], self.dtype)
                         for t in range(len(self))])

    def close(self) -> None:
        with self._lock:
            if self._tif is not None:
                self._tif.close()
                self._tif = None


def open_tiff(path) -> TiffStack:
    """A TIFF frame folder or multi-page TIFF as a lazy TiffStack (headers only are read)."""
    tifffile = _tifffile()
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        files = tiff_files(p)
        if not files:
            raise InputError(f"{p}: the folder holds no TIFF files")
        try:
            with tifffile.TiffFile(files[0]) as tif:
                series = tif.series[0]
                shape, dtype, s_axes = tuple(series.shape), series.dtype, series.axes
                scale, units = _physical(tif)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{files[0]}: not a readable TIFF: {e}") from None
        if len(shape) == 2:
            axes = "TYX"
        elif len(shape) == 3 and s_axes.endswith("S"):
            axes = "TYXC"
        elif len(shape) == 3 and s_axes[0] in "CS":
            axes = "TCYX"
        else:
            raise InputError(f"{files[0]}: each file of a frame folder must hold one 2-D image (grey, RGB or "
                             f"channels), this one has shape {shape} (axes {s_axes})")
        return TiffStack(p, files, (len(files),) + shape, dtype, axes, scale=scale, units=units)
    if not is_tiff(p):
        raise InputError(f"{p}: not a TIFF file ({', '.join(TIFF_SUFFIXES)})")
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            shape, dtype, s_axes = tuple(series.shape), series.dtype, series.axes
            n_pages = len(series.pages)
            scale, units = _physical(tif)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{p}: not a readable TIFF: {e}") from None
    axes = _axes_of(s_axes, shape)
    # Put time first; channels stay where they are relative to Y, X.
    if axes[0] != "T":
        raise InputError(f"{p}: axes {s_axes}: time is not the first axis, which is not supported yet")
    pages_per_frame = n_pages // shape[0] if shape[0] else 1
    if pages_per_frame < 1 or pages_per_frame * shape[0] != n_pages:
        raise InputError(f"{p}: {n_pages} pages do not divide into {shape[0]} frames")
    return TiffStack(p, None, shape, dtype, axes, pages_per_frame, scale, units)


__all__ = ["TiffStack", "open_tiff", "is_tiff", "is_tiff_folder", "tiff_files", "TIFF_SUFFIXES"]
