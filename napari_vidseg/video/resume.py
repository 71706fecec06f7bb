"""What lets a stopped propagation continue: the run's key and the frames it finished.

A run's key hashes everything its masks depend on: the method, its options,
the objects and frames asked for, every annotated mask of those objects and
the weights. Frames finished under the same key are not computed again;
any change (a click, another option, other weights) starts the run afresh.

On disk (a session folder): propagation/run.json (the key and the method's
checkpoint values, rewritten atomically), propagation/done.txt (one finished
frame per line, appended after its masks are stored, so a killed process
loses at most the frame in flight) and propagation/<name>/ (masks a method
keeps, e.g. OSVOS's trusted frames). In memory without a folder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..types import Provenance
from .mask_store import MaskStore, atomic_write_bytes

FOLDER = "propagation"


def mask_digest(mask: np.ndarray) -> str:
    m = np.asarray(mask, bool)
    return hashlib.sha256(np.packbits(m).tobytes() + str(m.shape).encode()).hexdigest()[:16]


def weights_digest(net) -> str:
    """A network's weights as a short hash (its state_dict's bytes)."""
    h = hashlib.sha256()
    for name, value in net.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_key(method: str, config, objects, frames, annotated: Mapping, weights: str) -> str:
    """The hash of a run's inputs (see the module docstring)."""
    options = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else repr(config)
    desc = {"method": method, "options": options, "objects": [int(o) for o in objects],
            "frames": None if frames is None else sorted(int(t) for t in frames),
            "annotated": {str(o): {str(t): mask_digest(m) for t, m in sorted(annotated[o].items())} for o in objects},
            "weights": weights}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=repr).encode()).hexdigest()


class RunState:
    """The current run's key, checkpoint values and masks, and finished frames (a Checkpoint)."""

    def __init__(self, folder: Path | None, height: int, width: int, n_frames: int):
        self.root = None if folder is None else Path(folder) / FOLDER
        self.shape = (height, width, n_frames)
        self.key: str | None = None
        self.values: dict[str, Any] = {}
        self.done: set[int] = set()
        self._masks: dict[str, Any] = {}
        self._journal = None
        if self.root is not None and (self.root / "run.json").is_file():
            try:
                meta = json.loads((self.root / "run.json").read_text(encoding="utf-8"))
                self.key, self.values = meta.get("key"), dict(meta.get("values", {}))
                text = (self.root / "done.txt").read_text() if (self.root / "done.txt").is_file() else ""
                # a line cut short by a kill is not a frame
                self.done = {int(x) for x in text.split("\n")[:-1] if x.strip().isdigit()}
            except (OSError, ValueError):
                self.key, self.values, self.done = None, {}, set()

    def begin(self, key: str) -> set[int]:
        """Start (or continue) the run with this key; returns the frames it already finished."""
        self.close()
        if key != self.key:
            self.key, self.values, self.done, self._masks = key, {}, set(), {}
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root.mkdir(parents=True)
                self._write()
        if self.root is not None:
            self._journal = open(self.root / "done.txt", "a", encoding="utf-8")
        return set(self.done)

    def forget(self) -> None:
        """The next begin() starts afresh whatever its key."""
        self.key = None

    def mark_done(self, t: int) -> None:
        self.done.add(int(t))
        if self._journal is not None:
            self._journal.write(f"{int(t)}\n")
            self._journal.flush()

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # -- Checkpoint -----------------------------------------------------------
    def get(self, key: str, default=None):
        return self.values.get(key, default)

    def put(self, key: str, value) -> None:
        self.values[key] = value
        self._write()

    def _store(self, name: str) -> MaskStore:
        if name not in self._masks:
            H, W, T = self.shape
            self._masks[name] = MaskStore(None if self.root is None else self.root / name, H, W, T)
        return self._masks[name]

    def put_masks(self, name: str, masks: Mapping) -> None:
        store = self._store(name)
        for o, frames in masks.items():
            for t, m in frames.items():
                store.set(int(o), int(t), np.asarray(m, bool), Provenance.PROPAGATED)
        if self.root is not None:
            store.compact()
        self.put(f"masks:{name}", True)

    def get_masks(self, name: str) -> dict | None:
        if not self.values.get(f"masks:{name}"):
            return None
        store = self._store(name)
        return {o: {t: store.get(o, t) for t in store.frames(o)} for o in store.objects()}

    def _write(self) -> None:
        if self.root is not None:
            data = json.dumps({"key": self.key, "values": self.values}).encode()
            atomic_write_bytes(self.root / "run.json", data, fsync=True)
