"""MaskStore: every frame's mask of every object, with where it came from.

On disk (when given a folder) the layout is

    <root>/masks/<obj>/<t:05d>.png   1-bit PNG per (object, frame)
    <root>/index.json                snapshot: provenance and confidence per (obj, t)
    <root>/index.journal             JSON lines appended after the snapshot

Why a journal: propagation writes thousands of frames; rewriting a complete
index after each would cost O(n^2). Each change instead appends one line (the
PNG is put in place with os.replace *before* its line is written), and the
snapshot is rewritten atomically (tmp file + os.replace) every few thousand
lines. A process killed at any point leaves at worst a torn last journal line,
which is ignored; on open, an entry whose PNG is missing is dropped and a PNG
with no entry is taken as PROPAGATED. So the store is always consistent and a
kill loses at most the write in flight.

Memory stays bounded: decoded masks live in a small LRU; in-memory stores
(root=None) keep masks zlib-compressed as packed bits (a few KB a frame).
Thread-safe: the GUI reads while a worker propagates.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import warnings
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..types import InputError, Provenance

INDEX_VERSION = 1
_COMPACT_EVERY = 2000  # journal lines before the snapshot is rewritten
_CACHE_BYTES = 64 * 2**20  # decoded masks kept in the LRU
_CORRUPT = ".corrupt"  # per-object folder where unreadable mask PNGs are kept


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = False) -> None:
    """Write `data` to `path` so that readers see the old or the new file, never half of one."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)  # a full disk must not leave half files behind
        raise


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass  # swept when the store is opened next


def _save_png_atomic(path: Path, mask: np.ndarray) -> None:
    tmp = _tmp_name(path)
    try:
        Image.fromarray(mask).save(tmp, format="PNG")  # bool array -> mode "1": 1 bit a pixel
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def write_png(root: Path, obj: int, t: int, mask: np.ndarray) -> None:
    """Put (obj, t)'s mask PNG in place in the store at `root`, atomically, without
    indexing it (MaskStore.record does, in the one process that owns the index)."""
    path = Path(root) / "masks" / str(int(obj)) / f"{int(t):05d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_png_atomic(path, np.asarray(mask, bool))


def _load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        a = np.asarray(im)
    if a.dtype == bool:
        return a
    if a.ndim == 3:  # an RGB(A) PNG someone dropped in: any non-black pixel is the object
        a = a[..., :3].max(axis=2)
    return a > (127 if a.dtype == np.uint8 and a.max() > 1 else 0)


class MaskStore:
    def __init__(self, root: Path | None, height: int, width: int, n_frames: int,
                 cache_bytes: int = _CACHE_BYTES, guard=None):
        self.root = None if root is None else Path(root)
        #: called before every write; raises when this store may no longer write (FolderLock.check)
        self._guard = guard or (lambda: None)
        #: (obj, t) whose PNG could not be read: moved to masks/<obj>/.corrupt/, entry dropped
        self.damaged: set[tuple[int, int]] = set()
        self.height, self.width, self.n_frames = int(height), int(width), int(n_frames)
        self._lock = threading.RLock()
        # (obj, t) -> (provenance, confidence or None)
        self._index: dict[tuple[int, int], tuple[Provenance, float | None]] = {}
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_max = max(4, cache_bytes // max(self.height * self.width, 1))
        self._memory: dict[tuple[int, int], bytes] = {}  # in-memory mode only
        self._journal_lines = 0
        if self.root is not None:
            (self.root / "masks").mkdir(parents=True, exist_ok=True)
            self._load()

    # -- paths --------------------------------------------------------------
    def _png(self, obj: int, t: int) -> Path:
        return self.root / "masks" / str(obj) / f"{t:05d}.png"

    @property
    def _index_path(self) -> Path:
        return self.root / "index.json"

    @property
    def _journal_path(self) -> Path:
        return self.root / "index.journal"

    # -- validation ---------------------------------------------------------
    def _check_t(self, t) -> int:
        if not isinstance(t, (int, np.integer)) or isinstance(t, bool):
            raise InputError(f"frame index must be an integer, got {t!r}")
        if not 0 <= t < self.n_frames:
            raise InputError(f"frame {t} does not exist (the video has {self.n_frames} frames: 0..{self.n_frames - 1})")
        return int(t)

    def _check_mask(self, mask) -> np.ndarray:
        m = np.asarray(mask)
        if m.shape != (self.height, self.width):
            raise InputError(f"mask has shape {m.shape}, expected ({self.height}, {self.width})")
        return m.astype(bool, copy=False) if m.dtype == bool else m > 0

    # -- loading and recovery ------------------------------------------------
    def _load(self) -> None:
        if self._index_path.exists():
            try:
                snap = json.loads(self._index_path.read_text())
            except (OSError, ValueError) as e:
                raise InputError(f"the mask index {self._index_path} is unreadable: {e}") from e
            for obj, t, prov, conf in snap.get("entries", []):
                self._index[(int(obj), int(t))] = (Provenance(prov), conf)
        if self._journal_path.exists():
            with open(self._journal_path, "r", encoding="utf-8", errors="replace") as f:
                for line in f:
                    self._journal_lines += 1
                    try:
                        self._replay(json.loads(line))
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line from a killed process
        # Leftovers of interrupted writes and removals (a kill, a full disk): here, in masks/
        # and in each object's folder; the caller holds the folder's lock, so none is in use.
        masks_dir = self.root / "masks"
        for p in [*self.root.glob(".*.tmp"), *masks_dir.glob(".*.tmp")]:
            p.unlink(missing_ok=True)
        on_disk: set[tuple[int, int]] = set()
        for d in masks_dir.iterdir():
            if d.name.startswith(".trash"):
                shutil.rmtree(d, ignore_errors=True)
                continue
            if not (d.is_dir() and d.name.isdigit()):
                continue
            obj = int(d.name)
            for bad in (d / _CORRUPT).glob("*.png"):  # quarantined earlier: still damaged
                if bad.stem.isdigit():
                    self.damaged.add((obj, int(bad.stem)))
            for e in os.scandir(d):
                name = e.name
                if name.startswith("."):
                    if name.endswith(".tmp"):
                        os.unlink(e.path)
                    continue
                if name.endswith(".png") and name[:-4].isdigit():
                    t = int(name[:-4])
                    if 0 <= t < self.n_frames:
                        on_disk.add((obj, t))
        self.damaged -= on_disk  # a damaged frame that got a new mask since
        changed = False
        for key in list(self._index):
            if key not in on_disk:  # index written, PNG lost: drop the entry
                del self._index[key]
                changed = True
        for key in on_disk - self._index.keys():  # PNG in place, index line lost
            self._index[key] = (Provenance.PROPAGATED, None)
            changed = True
        if changed or self._journal_lines > _COMPACT_EVERY:
            self.compact()

    def _replay(self, rec: dict) -> None:
        op = rec["op"]
        if op == "set":
            self._index[(int(rec["obj"]), int(rec["t"]))] = (Provenance(rec["p"]), rec.get("c"))
        elif op == "del":
            self._index.pop((int(rec["obj"]), int(rec["t"])), None)
        elif op == "rmobj":
            for key in [k for k in self._index if k[0] == int(rec["obj"])]:
                del self._index[key]

    def _log(self, rec: dict) -> None:
        if self.root is None:
            return
        self._guard()
        with open(self._journal_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        self._journal_lines += 1
        if self._journal_lines >= _COMPACT_EVERY:
            self.compact()

    def compact(self) -> None:
        """Rewrite the snapshot atomically and empty the journal.

        Replaying an old journal over a newer snapshot gives the same state (every
        record assigns), so a kill between the two steps is harmless.
        """
        if self.root is None:
            return
        self._guard()
        with self._lock:
            entries = [[o, t, p.value, c] for (o, t), (p, c) in sorted(self._index.items())]
            snap = {"version": INDEX_VERSION, "height": self.height, "width": self.width,
                    "n_frames": self.n_frames, "entries": entries}
            atomic_write_bytes(self._index_path, json.dumps(snap).encode(), fsync=True)
            atomic_write_bytes(self._journal_path, b"")
            self._journal_lines = 0

    # -- cache --------------------------------------------------------------
    def _cache_put(self, key, mask: np.ndarray) -> None:
        self._cache[key] = mask
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    # -- the interface -------------------------------------------------------
    def get(self, obj: int, t: int) -> np.ndarray | None:
        """(H, W) bool mask of object `obj` on frame `t`, or None if there is none.

        Returns a copy: editing it does not change the store.
        """
        key = (int(obj), int(t))
        with self._lock:
            if key not in self._index:
                return None
            m = self._cache.get(key)
            if m is None:
                if self.root is None:
                    bits = np.frombuffer(zlib.decompress(self._memory[key]), np.uint8)
                    m = np.unpackbits(bits, count=self.height * self.width).reshape(
                        self.height, self.width).astype(bool)
                else:
                    m = self._read_png(key)
                    if m is None:
                        return None
                self._cache_put(key, m)
            else:
                self._cache.move_to_end(key)
            return m.copy()

    def _read_png(self, key: tuple[int, int]) -> np.ndarray | None:
        """The PNG of `key`, or None when it is damaged (unreadable, wrong size): then the file
        is moved to masks/<obj>/.corrupt/ (kept, never deleted), the entry dropped, the frame
        listed in `damaged` and a RuntimeWarning names it. Propagation fills such a frame
        again; the worst-frames list and `segment`'s summary show it."""
        path = self._png(*key)
        try:
            m = _load_png(path)
            if m.shape == (self.height, self.width):
                return m
            problem = f"has shape {m.shape}, expected ({self.height}, {self.width})"
        except Exception as e:  # noqa: BLE001 - any decoder error means a damaged file
            problem = f"cannot be read ({type(e).__name__}: {e})"
        self.damaged.add(key)
        keep = path.parent / _CORRUPT / path.name
        try:
            keep.parent.mkdir(exist_ok=True)
            os.replace(path, keep)
            where = f"moved to {keep}"
        except OSError:
            where = "left in place"
        self._index.pop(key, None)
        self._cache.pop(key, None)
        try:
            self._log({"op": "del", "obj": key[0], "t": key[1]})
        except (OSError, InputError):
            pass  # read-only use: the entry is dropped again on the next open
        warnings.warn(f"the mask {path} {problem}: frame {key[1]} of object {key[0]} has no mask now "
                      f"(the file is {where})", RuntimeWarning, stacklevel=4)
        return None

    def get_or_empty(self, obj: int, t: int) -> np.ndarray:
        m = self.get(obj, t)
        return np.zeros((self.height, self.width), bool) if m is None else m

    def set(self, obj: int, t: int, mask, provenance: Provenance, confidence: float | None = None) -> None:
        t = self._check_t(t)
        obj = int(obj)
        m = self._check_mask(mask).copy()
        provenance = Provenance(provenance)
        conf = None if confidence is None else float(confidence)
        key = (obj, t)
        with self._lock:
            self._guard()
            if self.root is None:
                self._memory[key] = zlib.compress(np.packbits(m).tobytes(), 1)
            else:
                path = self._png(obj, t)
                path.parent.mkdir(parents=True, exist_ok=True)
                _save_png_atomic(path, m)  # the PNG first, then its index line
            self._index[key] = (provenance, conf)
            self.damaged.discard(key)
            self._log({"op": "set", "obj": obj, "t": t, "p": provenance.value, "c": conf})
            self._cache_put(key, m)

    def record(self, obj: int, t: int, provenance: Provenance, confidence: float | None = None) -> None:
        """Index the PNG another process put in place (write_png) for (obj, t); a
        missing PNG is an error. Split runs: workers write PNGs, one process indexes them."""
        t, obj = self._check_t(t), int(obj)
        if self.root is None or not self._png(obj, t).is_file():
            raise InputError(f"no mask file for object {obj} on frame {t} to record")
        with self._lock:
            self._index[(obj, t)] = (Provenance(provenance), None if confidence is None else float(confidence))
            self._log({"op": "set", "obj": obj, "t": t, "p": Provenance(provenance).value,
                       "c": None if confidence is None else float(confidence)})
            self._cache.pop((obj, t), None)

    def delete(self, obj: int, t: int) -> None:
        """Forget the mask of (obj, t), if any."""
        key = (int(obj), int(t))
        with self._lock:
            if key not in self._index:
                return
            self._guard()
            if self.root is None:
                self._memory.pop(key, None)
            else:
                self._png(*key).unlink(missing_ok=True)  # file first: a missing PNG drops the entry
            del self._index[key]
            self._cache.pop(key, None)
            self._log({"op": "del", "obj": key[0], "t": key[1]})

    def provenance(self, obj: int, t: int) -> Provenance | None:
        with self._lock:
            entry = self._index.get((int(obj), int(t)))
        return None if entry is None else entry[0]

    def frames(self, obj: int, provenance: Provenance | None = None) -> list[int]:
        obj = int(obj)
        with self._lock:
            return sorted(t for (o, t), (p, _) in self._index.items()
                          if o == obj and (provenance is None or p is Provenance(provenance)))

    def annotated(self, obj: int) -> dict[int, np.ndarray]:
        """USER and CORRECTED masks: what the video network tunes on (few frames)."""
        with self._lock:
            ts = sorted(t for (o, t), (p, _) in self._index.items() if o == int(obj) and p.is_annotation)
        return {t: self.get(obj, t) for t in ts}

    def confidence(self, obj: int) -> dict[int, float]:
        with self._lock:
            return {t: c for (o, t), (_, c) in sorted(self._index.items()) if o == int(obj) and c is not None}

    def objects(self) -> list[int]:
        with self._lock:
            return sorted({o for o, _ in self._index})

    def remove_object(self, obj: int) -> None:
        obj = int(obj)
        with self._lock:
            self._guard()
            if self.root is not None:
                d = self.root / "masks" / str(obj)
                if d.exists():
                    # Rename first (atomic), so a kill mid-delete cannot resurrect
                    # half the object as orphan PNGs; leftovers are swept on open.
                    trash = d.with_name(f".trash-{obj}-{os.getpid()}")
                    os.replace(d, trash)
                    self._log({"op": "rmobj", "obj": obj})
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    self._log({"op": "rmobj", "obj": obj})
            for key in [k for k in self._index if k[0] == obj]:
                del self._index[key]
                self._memory.pop(key, None)
                self._cache.pop(key, None)

    def labels(self, t: int) -> np.ndarray:
        """(H, W) uint16 label image of every object on frame t (higher id wins overlaps)."""
        t = self._check_t(t)
        out = np.zeros((self.height, self.width), np.uint16)
        for obj in self.objects():
            m = self.get(obj, t)
            if m is not None:
                out[m] = obj
        return out

    def iter_masks(self, obj: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Every frame's mask in order (empty where there is none), one at a time."""
        stop = self.n_frames if stop is None else stop
        for t in range(start, stop):
            yield self.get_or_empty(obj, t)

    def __len__(self) -> int:
        return len(self._index)
