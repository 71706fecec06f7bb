"""VideoSession: the state of one video and the verbs a user applies to it.

    s = VideoSession.create("clip.mp4", folder="clip.vidseg")   # or folder=None: in memory
    obj = s.add_object("dog")
    s.add_interactions(0, obj, Interactions([Click(120, 80)]))
    drain(s.propagate(obj))                  # long jobs are generators of Progress
    drain(s.propagate())                     # every object at once (method, options: video/propagators)
    s.mask_changed.connect(on_mask)          # listeners: psygnal signals (mask, objects, interactions, progress)
    for t in s.worst_frames(obj, k=3):
        s.correct(t, obj, Interactions([Click(...)]))
    drain(s.export("out/", obj, sticker=Path("dog.gif")))
    ...
    s = VideoSession.open("clip.vidseg")     # later: everything restored

Session folder layout:
    session.json      video path, objects, every frame's clicks/strokes (atomic rewrite on change)
    masks/, index.*   the MaskStore (one 1-bit PNG per object and frame, provenance, confidence)
    base/             propagated masks that the user then corrected, kept so that undoing
                      every correction click restores the propagated mask
    session.lock      while open: one writer per folder (a second process gets a clear error;
                      a killed holder's lock is taken over; io/folder_lock.py). close() lets go
    outputs.json      output folders `segment` wrote from this session (a re-run may write there)
    propagation/      the last propagation's key, checkpoint and finished frames (video/resume.py)

Crash safety: every change is written before the call returns (masks first, then
session.json), each write atomic, so a killed process loses at most the action in
flight. Thread-safe enough for a GUI: one lock serialises the verbs.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Iterator

import numpy as np

from psygnal import Signal

from ..types import InputError, Interactions, Progress, Provenance
from .mask_store import MaskStore, atomic_write_bytes

SESSION_VERSION = 1
SESSION_FILE = "session.json"
OUTPUTS_FILE = "outputs.json"  # output folders written from this session (segment's re-runs)
LOCK_FILE = "session.lock"  # one writer per session folder (io/folder_lock.py)
_HISTORY = 50  # masks remembered per frame for undo


@dataclass
class ObjectInfo:
    id: int
    name: str


class _StoreSink:
    """What a propagator reads back between passes: the session's stored masks (propagators/base.Sink)."""

    def __init__(self, session: "VideoSession"):
        self.session = session

    def masks(self, obj, frames):
        return _LazyMasks(self.session.masks, obj, list(frames))

    def confidence(self, obj):
        return self.session.masks.confidence(obj)


class _LazyMasks(Mapping):
    """A read-only t -> mask mapping over the store that decodes on access (bounded memory)."""

    def __init__(self, store: MaskStore, obj: int, frames: list[int]):
        self._store, self._obj, self._frames = store, obj, frames
        self._set = set(frames)

    def __getitem__(self, t):
        if t not in self._set:
            raise KeyError(t)
        return self._store.get_or_empty(self._obj, t)  # empty if its PNG turned out damaged

    def __iter__(self):
        return iter(self._frames)

    def __len__(self):
        return len(self._frames)


def _open_source(video):
    """A path becomes a VideoSource; anything with frame() and n_frames is used as is."""
    if isinstance(video, (str, os.PathLike)):
        from ..io.video import VideoSource

        return VideoSource.open(video)
    for attr in ("n_frames", "height", "width", "frame"):
        if not hasattr(video, attr):
            raise InputError(f"expected a video path or a VideoSource, got {type(video).__name__}")
    return video


def _lock_folder(folder: Path | None):
    """The session folder's writer lock (None for an in-memory session)."""
    if folder is None:
        return None
    from ..io.folder_lock import FolderLock

    return FolderLock.acquire(Path(folder) / LOCK_FILE, what="the session folder")


def _iter_frames(source, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Frames one at a time through sequential chunked reads."""
    stop = source.n_frames if stop is None else stop
    if hasattr(source, "iter_chunks"):
        for _, block in source.iter_chunks(start, stop):
            yield from block
    else:
        for t in range(start, stop):
            yield source.frame(t)


@dataclass
class VideoSession:
    """Listeners connect to the signals below (psygnal; e.g. the napari layer):
    they are emitted after the change is stored, from the thread that made it."""

    #: (frame, object ids): the masks of these objects on this frame changed
    mask_changed = Signal(int, tuple)
    #: an object was added, removed or renamed
    objects_changed = Signal()
    #: (frame, object id): the clicks/strokes of this object on this frame changed
    interactions_changed = Signal(int, int)
    #: a long job's Progress (propagate, export), as it is yielded
    progress = Signal(object)

    source: Any  # VideoSource
    folder: Path | None
    objects: dict[int, ObjectInfo]
    masks: MaskStore
    interactions: dict[tuple[int, int], Interactions]
    # kinds of the interactions of (obj, t) in the order they were given: "c" click, "s" stroke
    _order: dict[tuple[int, int], str] = field(default_factory=dict, repr=False)
    _bases: MaskStore | None = field(default=None, repr=False)
    _redo: dict[tuple[int, int], list[Interactions]] = field(default_factory=dict, repr=False)
    # (interactions, mask) of (obj, t) before each interaction added this run, so that
    # undo gives back exactly the mask shown before (each click's result depends on the
    # mask the one before made); in memory only, bit-packed, the last _HISTORY per
    # frame: beyond that, or after a reopen, undo re-segments
    _history: dict[tuple[int, int], list[tuple[Interactions, np.ndarray]]] = field(default_factory=dict, repr=False)
    _predictor: Any = field(default=None, repr=False)
    _predictor_state: tuple | None = field(default=None, repr=False)
    _parent: Any = field(default=None, repr=False)
    _next_id: int = field(default=1, repr=False)
    _run: Any = field(default=None, repr=False)  # resume.RunState of the last propagation
    _lock: Any = field(default_factory=threading.RLock, repr=False)
    _folder_lock: Any = field(default=None, repr=False)  # FolderLock of `folder`; None in memory

    # -- construction -------------------------------------------------------
    @classmethod
    def create(cls, video, folder=None) -> "VideoSession":
        source = _open_source(video)
        if source.n_frames < 1:
            raise InputError(f"the video {getattr(source, 'path', '')} has no frames")
        H, W, T = int(source.height), int(source.width), int(source.n_frames)
        if folder is not None:
            folder = Path(folder)
            if (folder / SESSION_FILE).exists():
                raise InputError(f"{folder} already holds a session: open it with VideoSession.open({str(folder)!r})")
            if folder.exists() and not folder.is_dir():
                raise InputError(f"the session folder {folder} is a file, not a folder")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InputError(f"cannot make the session folder {folder}: {e.strerror or e}") from None
        lock = _lock_folder(folder)
        guard = lock.check if lock is not None else None
        s = cls(source=source, folder=folder, objects={},
                masks=MaskStore(folder, H, W, T, guard=guard),
                interactions={},
                _bases=MaskStore(None if folder is None else folder / "base", H, W, T, guard=guard),
                _folder_lock=lock)
        s.save()
        return s

    @classmethod
    def open(cls, folder, video=None) -> "VideoSession":
        """Re-open a session folder. `video` overrides the stored path (a moved video)."""
        folder = Path(folder)
        meta = cls._read_meta(folder)
        if video is None:
            video = cls._find_video(folder, meta)
        source = _open_source(video)
        H, W, T = int(source.height), int(source.width), int(source.n_frames)
        want = (meta.get("height"), meta.get("width"), meta.get("n_frames"))
        if want != (H, W, T):
            raise InputError(
                f"the video {getattr(source, 'path', video)} is {W}x{H} with {T} frames but the session in "
                f"{folder} was made on a {want[1]}x{want[0]} video with {want[2]} frames")
        objects = {int(o["id"]): ObjectInfo(int(o["id"]), str(o["name"])) for o in meta.get("objects", [])}
        interactions, order = {}, {}
        for e in meta.get("interactions", []):
            key = (int(e["obj"]), int(e["frame"]))
            inter = Interactions.from_json(e)
            if inter:
                interactions[key] = inter
                order[key] = e.get("order") or "c" * len(inter.clicks) + "s" * len(inter.strokes)
        lock = _lock_folder(folder)  # before the stores sweep leftovers: nobody else writes here now
        s = cls(source=source, folder=folder, objects=objects, masks=MaskStore(folder, H, W, T, guard=lock.check),
                interactions=interactions, _order=order,
                _bases=MaskStore(folder / "base", H, W, T, guard=lock.check),
                _next_id=int(meta.get("next_id", 1)), _folder_lock=lock)
        # Masks of an object whose entry was lost (killed mid-change): keep them, never drop work.
        for obj in s.masks.objects():
            if obj not in s.objects:
                s.objects[obj] = ObjectInfo(obj, f"object {obj} (recovered)")
        s._next_id = max([s._next_id] + [o + 1 for o in s.objects])
        return s

    @staticmethod
    def _read_meta(folder: Path) -> dict:
        """session.json of `folder`, as stored."""
        meta_path = Path(folder) / SESSION_FILE
        if not meta_path.is_file():
            raise InputError(f"no session in {folder} (missing {SESSION_FILE})")
        try:
            return json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"the session file {meta_path} is unreadable: {e}") from e

    # -- output folders this session wrote (so a re-run may write there again) ----
    def outputs(self) -> set[str]:
        """Resolved paths of the output folders this session has written."""
        if self.folder is None:
            return set()
        try:
            return set(json.loads((Path(self.folder) / OUTPUTS_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return set()

    def add_output(self, path) -> None:
        if self.folder is None:
            return
        if self._folder_lock is not None:
            self._folder_lock.check()
        known = sorted(self.outputs() | {str(Path(path).resolve())})
        atomic_write_bytes(Path(self.folder) / OUTPUTS_FILE, json.dumps(known, indent=1).encode(), fsync=True)

    @staticmethod
    def default_folder(video) -> Path:
        """Where the napari widget keeps the work on a video file or frame folder when no
        folder is given: `<video>.vidseg` beside it when that folder can be written, else one
        per video under the user's cache (NAPARI_VIDSEG_SESSIONS overrides the place). Opening
        the same video again re-opens the work: nothing is lost when napari closes or crashes."""
        import hashlib
        import os

        video = Path(video).expanduser().absolute()
        tag = f"{video.name}-{hashlib.sha1(str(video).encode()).hexdigest()[:8]}.vidseg"
        root = os.environ.get("NAPARI_VIDSEG_SESSIONS")
        if root:
            return Path(root) / tag
        beside = video.with_name(video.name + ".vidseg")
        if beside.is_dir() or os.access(video.parent, os.W_OK):
            return beside
        from ..sample import cache_dir

        return cache_dir() / "sessions" / tag

    @classmethod
    def open_or_create(cls, video, folder) -> "VideoSession":
        if (Path(folder) / SESSION_FILE).exists():
            return cls.open(folder, video=video)
        return cls.create(video, folder)

    @staticmethod
    def _find_video(folder: Path, meta: dict) -> Path:
        stored = meta.get("video")
        if not stored:
            raise InputError(f"the session file in {folder} names no video")
        candidates = [Path(stored)]
        if meta.get("video_relative"):
            candidates.append(folder / meta["video_relative"])
        for c in candidates:
            if c.exists():
                return c
        raise InputError(f"the session's video {stored} is missing (moved or deleted); re-open with "
                         f"VideoSession.open({str(folder)!r}, video=NEW_PATH)")

    # -- persistence ----------------------------------------------------------
    def _meta(self) -> dict:
        path = getattr(self.source, "path", None)
        meta: dict[str, Any] = {"version": SESSION_VERSION, "video": None, "video_relative": None,
                                "fps": float(getattr(self.source, "fps", 0) or 0),
                                "n_frames": int(self.source.n_frames), "height": int(self.source.height),
                                "width": int(self.source.width), "next_id": self._next_id}
        if path is not None:
            p = Path(path).absolute()
            meta["video"] = str(p)
            if self.folder is not None:
                try:
                    meta["video_relative"] = os.path.relpath(p, Path(self.folder).absolute())
                except ValueError:  # another drive on Windows
                    pass
        meta["objects"] = [{"id": o.id, "name": o.name} for o in sorted(self.objects.values(), key=lambda o: o.id)]
        meta["interactions"] = [
            {"obj": obj, "frame": t, "order": self._order.get((obj, t), ""), **inter.to_json()}
            for (obj, t), inter in sorted(self.interactions.items()) if inter]
        return meta

    def close(self) -> None:
        """Let the session folder go (its lock): another process may open it now. The object
        stays readable; writing through it raises."""
        if self._folder_lock is not None:
            self._folder_lock.release()

    def __enter__(self) -> "VideoSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def save(self) -> None:
        """Write session.json atomically (no-op for an in-memory session)."""
        if self.folder is None:
            return
        if self._folder_lock is not None:
            self._folder_lock.check()
        with self._lock:
            data = json.dumps(self._meta(), indent=1).encode()
            atomic_write_bytes(Path(self.folder) / SESSION_FILE, data, fsync=True)

    # -- validation -----------------------------------------------------------
    def _check_obj(self, obj) -> int:
        try:
            key = int(obj)
        except (TypeError, ValueError):
            raise InputError(f"object id must be an integer, got {obj!r}") from None
        if key not in self.objects:
            known = ", ".join(str(o) for o in sorted(self.objects)) or "none yet: add one first"
            raise InputError(f"unknown object {obj!r} (objects: {known})")
        return key

    def _check_t(self, t) -> int:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise InputError(f"frame index must be an integer, got {t!r}")
        n = int(self.source.n_frames)
        if not 0 <= int(t) < n:
            raise InputError(f"frame {t} does not exist (the video has {n} frames: 0..{n - 1})")
        return int(t)

    # -- objects --------------------------------------------------------------
    def add_object(self, name: str | None = None) -> int:
        with self._lock:
            obj = self._next_id
            if obj > np.iinfo(np.uint16).max:
                raise InputError("too many objects (label ids are 16-bit)")
            self._next_id += 1
            self.objects[obj] = ObjectInfo(obj, name if name else f"object {obj}")
            self.save()
        self.objects_changed.emit()
        return obj

    def remove_object(self, obj) -> None:
        with self._lock:
            obj = self._check_obj(obj)
            frames = self.masks.frames(obj)
            self.masks.remove_object(obj)
            self._bases.remove_object(obj)
            for key in [k for k in self.interactions if k[0] == obj]:
                del self.interactions[key]
                self._order.pop(key, None)
                self._redo.pop(key, None)
                self._history.pop(key, None)
            del self.objects[obj]
            self.save()
        self.objects_changed.emit()
        for t in frames:
            self.mask_changed.emit(int(t), (obj,))

    def rename_object(self, obj, name: str) -> None:
        with self._lock:
            obj = self._check_obj(obj)
            if not str(name).strip():
                raise InputError("an object's name cannot be empty")
            self.objects[obj].name = str(name)
            self.save()
        self.objects_changed.emit()

    # -- interactive segmentation --------------------------------------------
    def predictor(self):
        """The interactive predictor, built once on first use (shipped weights)."""
        if self._predictor is None:
            from ..segment.predictor import InteractivePredictor

            self._predictor = InteractivePredictor()
        return self._predictor

    def set_predictor(self, predictor) -> None:
        self._predictor = predictor
        self._predictor_state = None

    def set_parent(self, net) -> None:
        """Replace the video network that propagate() fine-tunes (default: shipped parent)."""
        self._parent = net

    def _segment(self, t: int, inter: Interactions, prev: np.ndarray | None) -> np.ndarray:
        p = self.predictor()
        st = self._predictor_state
        # set_image only when the predictor does not already hold this frame
        if st is None or st[0] is not p or st[1] != t or getattr(p, "image", None) is not st[2]:
            p.set_image(self.source.frame(t))
            self._predictor_state = (p, t, getattr(p, "image", None))
        out = p.predict(inter, prev_mask=prev)
        mask = np.asarray(getattr(out, "mask", out)).astype(bool)
        if mask.shape != (self.source.height, self.source.width):
            raise RuntimeError(f"the predictor returned a mask of shape {mask.shape}")
        return mask

    def add_interactions(self, t, obj, interactions: Interactions, replace: bool = False) -> np.ndarray:
        """Add clicks/strokes to frame t of object obj and re-segment the frame with all of them.

        A PROPAGATED frame is refined from its propagated mask (the result is CORRECTED),
        and so are its later clicks; a painted frame likewise from the painting; any
        other frame from its current mask (what its previous clicks made).
        """
        with self._lock:
            t, obj = self._check_t(t), self._check_obj(obj)
            if not isinstance(interactions, Interactions):
                raise InputError(f"expected Interactions, got {type(interactions).__name__}")
            if not interactions:
                raise InputError("no clicks or strokes given")
            interactions.check_inside(int(self.source.height), int(self.source.width))
            key = (obj, t)
            old = self.interactions.get(key, Interactions())
            if replace:
                new, order = interactions.copy(), ""
            else:
                new, order = Interactions(old.clicks + interactions.clicks, old.strokes + interactions.strokes), \
                    self._order.get(key, "")
            order += "c" * len(interactions.clicks) + "s" * len(interactions.strokes)
            shown = self.masks.get(obj, t) if old and not replace else None  # for undo
            mask = self._resegment(t, obj, new, keep_current=not replace)
            if shown is None:
                self._history.pop(key, None)
            else:
                history = self._history.setdefault(key, [])
                history.append((old.copy(), np.packbits(shown)))
                del history[:-_HISTORY]
            self.interactions[key] = new
            self._order[key] = order
            self._redo.pop(key, None)
            self.save()
        self._changed(t, obj, interactions=True)
        return mask

    def _resegment(self, t: int, obj: int, inter: Interactions, keep_current: bool) -> np.ndarray:
        """Run the predictor and store the result with the right provenance."""
        key = (obj, t)
        prov = self.masks.provenance(obj, t)
        if prov is Provenance.PROPAGATED:
            # Keep the propagated mask: undoing every correction click restores it.
            base = self.masks.get(obj, t)
            self._bases.set(obj, t, base, Provenance.PROPAGATED, self.masks.confidence(obj).get(t))
            prev, result = base, Provenance.CORRECTED
        else:
            # A frame that started from a mask (propagated, or painted) is refined from
            # that mask with all its clicks: what eval-correction measures, and on the 30
            # DAVIS training worst frames no worse than starting each click from the
            # previous click's result (docs/video.md, session 17). A frame that started
            # from nothing goes on from its current mask, as the click segmenter was
            # trained and as eval-video's first-frame clicks do.
            prev = self._bases.get(obj, t)
            if prev is None and keep_current:
                prev = self.masks.get(obj, t)
            result = Provenance.CORRECTED if prov is Provenance.CORRECTED else Provenance.USER
        mask = self._segment(t, inter, prev)
        self.masks.set(obj, t, mask, result)
        return mask

    def undo_interaction(self, t, obj) -> np.ndarray | None:
        """Drop the last click or stroke of (obj, t): the frame gets back the mask it
        showed before it (remembered in memory; else the rest are re-segmented).

        With none left, the frame gets back the mask it had before its first click
        (propagated, or painted with set_mask) or, without one, loses its mask;
        returns None then (and when there was nothing to undo).
        """
        with self._lock:
            t, obj = self._check_t(t), self._check_obj(obj)
            key = (obj, t)
            inter = self.interactions.get(key)
            if not inter:
                return None
            order = self._order.get(key) or "c" * len(inter.clicks) + "s" * len(inter.strokes)
            last = order[-1]
            if last == "c" and inter.clicks:
                dropped = Interactions([inter.clicks[-1]], [])
                rest = Interactions(inter.clicks[:-1], list(inter.strokes))
            else:
                dropped = Interactions([], [inter.strokes[-1]])
                rest = Interactions(list(inter.clicks), inter.strokes[:-1])
            self._redo.setdefault(key, []).append(dropped)
            history = self._history.get(key)
            if history and history[-1][0] == rest:
                # the mask shown before the dropped interaction
                H, W = int(self.source.height), int(self.source.width)
                mask = np.unpackbits(history.pop()[1], count=H * W).reshape(H, W).astype(bool)
                self.masks.set(obj, t, mask, self.masks.provenance(obj, t))
                self.interactions[key], self._order[key] = rest, order[:-1]
            elif rest:
                # Not remembered (e.g. the session was reopened): re-segment from the
                # frame's starting point, the propagated mask of a corrected frame,
                # nothing for a user frame.
                self._history.pop(key, None)
                mask = self._resegment(t, obj, rest, keep_current=False)
                self.interactions[key], self._order[key] = rest, order[:-1]
            else:
                base = self._bases.get(obj, t)
                if base is not None:  # the propagated or painted mask the clicks started from
                    base_prov = self._bases.provenance(obj, t) or Provenance.PROPAGATED
                    self.masks.set(obj, t, base, base_prov, self._bases.confidence(obj).get(t))
                    if base_prov is Provenance.PROPAGATED:
                        self._bases.delete(obj, t)
                else:
                    self.masks.delete(obj, t)
                self.interactions.pop(key, None)
                self._order.pop(key, None)
                self._history.pop(key, None)
                mask = None
            self.save()
        self._changed(t, obj, interactions=True)
        return mask

    def redo_interaction(self, t, obj) -> np.ndarray | None:
        """Give back the last undone click or stroke (None if there is none to redo)."""
        with self._lock:
            t, obj = self._check_t(t), self._check_obj(obj)
            stack = self._redo.get((obj, t))
            if not stack:
                return None
            item = stack.pop()
            mask = self.add_interactions(t, obj, item)
            self._redo[(obj, t)] = stack  # add_interactions clears redo; keep the rest
            return mask

    def set_mask(self, t, obj, mask, provenance: Provenance = Provenance.USER) -> None:
        """Store a mask made elsewhere (e.g. painted in napari) for (obj, t).

        On a frame without clicks the mask is also the frame's starting point: later
        clicks refine it and undoing all of them gives it back.
        """
        with self._lock:
            t, obj = self._check_t(t), self._check_obj(obj)
            m = np.asarray(mask)
            shape = (int(self.source.height), int(self.source.width))
            if m.shape != shape:
                raise InputError(f"mask has shape {m.shape}, the frame is {shape}")
            provenance = Provenance(provenance)
            m = m > 0 if m.dtype != bool else m
            self._history.pop((obj, t), None)  # undo must not bring back a mask from before the painting
            if not self.interactions.get((obj, t)) and provenance.is_annotation:
                # No click on this frame yet: the painted mask is where clicks start
                # from, and what undoing every later click gives back.
                self._bases.set(obj, t, m, provenance)
            self.masks.set(obj, t, m, provenance)
        self._changed(t, obj)

    def _changed(self, t: int, obj: int, interactions: bool = False) -> None:
        self.mask_changed.emit(int(t), (int(obj),))
        if interactions:
            self.interactions_changed.emit(int(t), int(obj))

    def correct(self, t, obj, interactions: Interactions) -> np.ndarray:
        """Refine a propagated frame with a click or two (= add_interactions)."""
        return self.add_interactions(t, obj, interactions)

    # -- video ------------------------------------------------------------------
    def _parent_net(self):
        if self._parent is None:
            from . import finetune as ft

            loader = getattr(ft, "load_parent", None)
            if loader is None:
                from . import propagate as pr

                loader = pr.load_parent
            self._parent = loader()
        return self._parent

    def propagate(self, objects=None, config=None, frames=None, *, method: str | None = None,
                  options: Mapping | None = None, resume: bool = True) -> Generator[Progress, None, dict]:
        """Segment the frames of the objects from their annotated frames, all in one pass.

        objects: one object id, a list of them, or None (every object with an annotated frame).
        method: a name in video.propagators (default: the method `config` belongs to, else
        "osvos"); config: that method's config (default: its defaults); options: fields to
        change in it (e.g. {"steps": 150}). frames: the frames to segment (default all).

        Writes PROPAGATED masks and their confidence frame by frame (never over a
        USER or CORRECTED one). Cancel by closing the generator: frames already
        written stay, the others keep what they had. With `resume` (and a session
        folder, or the same session object), frames finished by an earlier run with
        the same inputs (annotations, method, options, weights; resume.run_key) are
        not computed again. Returns {"computed": frames computed, "skipped": frames
        skipped}; the last Progress says the same.

        OSVOS with config.self_train = k > 0 runs two passes: the first propagates every
        config.first_pass_stride-th frame, each object's k most trusted masks join its
        annotated frames for a second tuning (they are not stored as annotations), and
        the second pass propagates every frame.
        """
        from . import propagators
        from .resume import run_key

        objs = self._objects_to_propagate(objects)
        if method is None:
            method = propagators.method_of(config) if config is not None else propagators.DEFAULT
        entry = propagators.get(method)
        if config is None or options:
            config = propagators.make_config(entry.name, config, **dict(options or {}))
        annotated = {o: self.masks.annotated(o) for o in objs}
        n_frames = int(self.source.n_frames)
        wanted = range(n_frames) if frames is None else sorted({self._check_t(t) for t in frames})
        anchors = set().union(*(set(a) for a in annotated.values()))
        targets = [t for t in wanted if any(t not in annotated[o] for o in objs)]
        # One object: exactly the frames it always propagated (the others' annotated frames are its too).
        if len(objs) == 1:
            targets = [t for t in targets if t not in anchors]
        key = run_key(entry.name, config, objs, None if frames is None else wanted, annotated, self._weights_id())
        state = self._run_state()
        if not resume:
            state.forget()
        done = state.begin(key)
        skipped = [t for t in targets if t in done]
        computed = 0
        prop = entry.cls(config, parent=self._parent_net)
        job = prop.run(self.source, annotated, targets, sink=_StoreSink(self), checkpoint=state, skip=done)
        try:
            for item in job:
                if isinstance(item, Progress):
                    self.progress.emit(item)
                    yield item
                    continue
                self._store_propagated(item)
                self.mask_changed.emit(int(item.t), tuple(item.masks))
                if item.final:
                    state.mark_done(item.t)
                    computed += 1
        finally:
            job.close()
            state.close()
            if self.masks.root is not None:
                self.masks.compact()
        summary = {"computed": computed, "skipped": len(skipped)}
        last = Progress("propagate", len(targets), len(targets),
                        message=f"computed {computed} frames, skipped {len(skipped)} already done")
        self.progress.emit(last)
        yield last
        return summary

    def _objects_to_propagate(self, objects) -> list[int]:
        if objects is None:
            objs = [o for o in sorted(self.objects) if self.masks.annotated(o)]
            if not objs:
                raise InputError("no object has an annotated frame yet: click on one in a frame first")
            return objs
        if isinstance(objects, (int, np.integer, str)):
            objects = [objects]
        objs = list(dict.fromkeys(self._check_obj(o) for o in objects))
        for o in objs:
            if not self.masks.annotated(o):
                raise InputError(f"object {o} has no annotated frame yet: click on it in a frame first")
        return objs

    def _weights_id(self) -> str:
        """What the propagation's weights are, for the run key: a given parent's hash, else the shipped file's."""
        if self._parent is not None and hasattr(self._parent, "state_dict"):
            from .resume import weights_digest

            return weights_digest(self._parent)
        from ..models.registry import MODELS

        return "shipped:" + ",".join(f"{m.filename}:{m.sha256[:16]}" for m in MODELS.values())

    def _run_state(self):
        if self._run is None:
            from .resume import RunState

            self._run = RunState(self.folder, int(self.source.height), int(self.source.width),
                                 int(self.source.n_frames))
        return self._run

    def _store_propagated(self, frame) -> None:
        """Write one propagated frame's masks, never over a USER or CORRECTED one; pixels
        another object is annotated with on this frame stay that object's."""
        with self._lock:
            others = [o for o in self.objects if o not in frame.masks
                      and (self.masks.provenance(o, frame.t) or Provenance.PROPAGATED).is_annotation]
            claimed = None
            for o in others:
                m = self.masks.get(o, frame.t)
                claimed = m if claimed is None else claimed | m
            for obj, mask in frame.masks.items():
                if claimed is not None:
                    mask = mask & ~claimed
                prov = self.masks.provenance(obj, frame.t)
                if prov is None or prov is Provenance.PROPAGATED:  # the user may have clicked meanwhile
                    conf = frame.confidence.get(obj)
                    self.masks.set(obj, frame.t, mask, Provenance.PROPAGATED, None if conf is None else float(conf))
                    self._bases.delete(obj, frame.t)

    def _tune(self, frames: Mapping[int, np.ndarray], config) -> Generator[Progress, None, Any]:
        """One object's tuning on {t: mask} (OSVOS), each frame decoded alone."""
        from .propagators.osvos import OSVOS

        return (yield from OSVOS(config, parent=self._parent_net).tune(self.source, {0: frames}))

    def frame_scores(self, obj) -> dict[int, float]:
        """Quality score of every frame that has a mask (higher = better)."""
        obj = self._check_obj(obj)
        from . import quality

        frames = self.masks.frames(obj)
        masks = _LazyMasks(self.masks, obj, frames)
        scores = quality.frame_scores(masks, self.masks.confidence(obj))
        # An empty propagated mask scores 0 whatever the network's confidence: a network that
        # lost the object (or a failed tuning) is most sure of "nothing here", and the frame
        # must reach the worst-frames list (if the object did leave the view, one look says so).
        # The masks just went through the LRU cache, so this reads them from memory.
        for t in self.masks.frames(obj, Provenance.PROPAGATED):
            if t in scores and not masks[t].any():
                scores[t] = 0.0
        return scores

    def damaged_frames(self, obj=None) -> list[int]:
        """Frames to look at whatever their score: video frames that could not be decoded (they
        show the last frame that did; VideoSource.filled_frames, known once decoded) and frames
        whose stored mask was unreadable (MaskStore.damaged; of `obj`, or of any object)."""
        bad = set(getattr(self.source, "filled_frames", ()) or ())
        bad |= {t for o, t in self.masks.damaged if obj is None or o == int(obj)}
        return sorted(int(t) for t in bad)

    def worst_frames(self, obj, k: int = 5) -> list[int]:
        """The k frames most likely wrong, worst first: damaged frames (damaged_frames) first,
        then the propagated frames by score (annotated frames never appear)."""
        obj = self._check_obj(obj)
        from . import quality

        propagated = set(self.masks.frames(obj, Provenance.PROPAGATED))
        scores = {t: s for t, s in self.frame_scores(obj).items() if t in propagated}
        annotated = [t for t in self.masks.frames(obj) if t not in propagated]
        damaged = [t for t in self.damaged_frames(obj) if t not in annotated]
        worst = quality.worst_frames(scores, k + len(damaged), exclude=annotated)
        return (damaged + [int(t) for t in worst if t in propagated and t not in damaged])[:k]

    # -- export -----------------------------------------------------------------
    def _object_masks(self, obj: int | None) -> Iterator[np.ndarray]:
        """Per-frame masks of one object, or of all objects together when obj is None."""
        for t in range(int(self.source.n_frames)):
            if obj is None:
                yield self.masks.labels(t) > 0
            else:
                yield self.masks.get_or_empty(obj, t)

    def export(self, out_dir=None, obj=None, sticker: Path | None = None, composite: Path | None = None,
               background=None, labels: Path | None = None, crop: bool = True,
               fps: float | None = None) -> Generator[Progress, None, dict]:
        """Write what was asked for; returns {"masks": dir, "sticker": path, ...}.

        out_dir: mask PNGs, 00000.png..., 0/255 for one object (obj, or the only
        object), palette label PNGs for several. sticker: .gif/.webp/.png/.webm
        transparent cut-out. composite: .mp4 of the object over the dimmed original
        (or `background`: an (r, g, b) colour, an image path or a video). labels:
        the (T, H, W) label volume as .npy or .tif.
        """
        from ..io import export as ex
        from ..io import masks as mio

        if out_dir is None and sticker is None and composite is None and labels is None:
            raise InputError("nothing to export: give an output folder, a sticker, a composite or a label file")
        if obj is not None:
            obj = self._check_obj(obj)
        elif len(self.objects) == 1:
            obj = next(iter(self.objects))
        if not self.objects:
            raise InputError("nothing to export: add an object and segment it first")
        if obj is not None and not self.masks.frames(obj):
            raise InputError(f"object {obj} has no mask on any frame yet")
        T = int(self.source.n_frames)
        fps = float(fps or getattr(self.source, "fps", 0) or 25.0)
        result: dict[str, Any] = {"frames": T}
        if out_dir is not None:
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            for t in range(T):
                m = self.masks.get_or_empty(obj, t) if obj is not None else self.masks.labels(t)
                mio.write_mask_png(out_dir / f"{t:05d}.png", m)
                yield Progress("masks", t + 1, T, frame=t)
            result["masks"] = out_dir
        if labels is not None:
            it = (self.masks.labels(t) for t in range(T))
            for i in ex.label_volume_writer(labels, it, shape=(T, int(self.source.height), int(self.source.width))):
                yield Progress("labels", i + 1, T, frame=i)
            result["labels"] = Path(labels)
        if sticker is not None:
            box = ex.union_box(self._object_masks(obj)) if crop else None
            for i in ex.sticker_writer(sticker, _iter_frames(self.source), self._object_masks(obj), fps,
                                       crop=box if crop else False):
                yield Progress("sticker", i + 1, T, frame=i)
            result["sticker"] = Path(sticker)
        if composite is not None:
            for i in ex.composite_writer(composite, _iter_frames(self.source), self._object_masks(obj), fps,
                                         background=background):
                yield Progress("composite", i + 1, T, frame=i)
            result["composite"] = Path(composite)
        return result
