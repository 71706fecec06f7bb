"""What the widget runs off the GUI thread: plain functions of a session.

No Qt here: each job takes the session and plain data snapshotted from the
layers on the GUI thread, calls the library, and returns (or yields) plain
data the GUI thread draws.  Keeping them Qt-free makes them testable without a
viewer and keeps the widget a thin adapter.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..types import Interactions, Progress, Provenance

def _lock(session):
    # The session serialises its verbs with its own lock; reads of the mask
    # store from a second thread take it too so they never see a half-written frame.
    return getattr(session, "_lock", None) or contextlib.nullcontext()


def frame_labels(session, t: int) -> np.ndarray:
    """The (H, W) label image of frame t (all objects)."""
    with _lock(session):
        return np.asarray(session.masks.labels(t))


@dataclass
class FrameUpdate:
    """The result of a job on one frame: what the layers should now show."""

    obj: int
    t: int
    labels: np.ndarray  # (H, W) label image of all objects on frame t
    interactions: Interactions = field(default_factory=Interactions)
    request: int = 0


def _is_prefix(short: list, long: list) -> bool:
    return len(short) <= len(long) and long[:len(short)] == short


def sync_interactions(session, t: int, obj: int, wanted: Interactions, request: int = 0) -> FrameUpdate:
    """Make the session's interactions of (obj, t) equal `wanted`, re-segmenting once.

    New clicks/strokes appended after the stored ones are added incrementally
    (the current mask is the segmenter's starting point, as in the paper's
    correction loop); anything else (a moved or deleted point) re-segments the
    frame from its starting point with the full list.
    """
    have = session.interactions.get((obj, t)) or Interactions()
    if wanted.clicks == have.clicks and wanted.strokes == have.strokes:
        pass
    elif not wanted:
        while session.interactions.get((obj, t)):
            session.undo_interaction(t, obj)
    elif _is_prefix(have.clicks, wanted.clicks) and _is_prefix(have.strokes, wanted.strokes):
        extra = Interactions(wanted.clicks[len(have.clicks):], wanted.strokes[len(have.strokes):])
        session.add_interactions(t, obj, extra)
    else:
        session.add_interactions(t, obj, wanted.copy(), replace=True)
    return _update(session, obj, t, request)


def _update(session, obj: int, t: int, request: int) -> FrameUpdate:
    inter = session.interactions.get((obj, t)) or Interactions()
    return FrameUpdate(obj, t, frame_labels(session, t), inter.copy(), request)


def undo(session, t: int, obj: int, request: int = 0) -> FrameUpdate:
    session.undo_interaction(t, obj)
    return _update(session, obj, t, request)


def redo(session, t: int, obj: int, request: int = 0) -> FrameUpdate:
    session.redo_interaction(t, obj)
    return _update(session, obj, t, request)


@dataclass
class PaintStored:
    """What store_painted did: the frames whose masks changed, every painted frame (the masks
    layer reads them again from the session), and painted labels that are no object."""

    frames: list[int]
    painted: list[int]
    unknown: list[int] = field(default_factory=list)


def store_painted(session, frames: dict[int, np.ndarray], objects: list[int]) -> PaintStored:
    """Painted label edits -> the session: each object's mask on each painted frame.

    frames: t -> the (H, W) label image as painted.  A painted propagated (or
    corrected) frame becomes CORRECTED (it then joins the annotated frames the
    video network tunes on); any other painted frame is USER.  Pixels painted
    with a label that is no object belong to no object.
    """
    changed, unknown = set(), set()
    for t, label_image in frames.items():
        unknown |= {int(v) for v in np.unique(label_image) if v and int(v) not in session.objects}
        for obj in objects:
            if obj not in session.objects:
                continue
            new = label_image == obj
            with _lock(session):
                old = session.masks.get(obj, t)
                if old is None and not new.any():
                    continue
                if old is not None and np.array_equal(old, new):
                    continue
                prov = session.masks.provenance(obj, t)
                keep = Provenance.CORRECTED if prov in (Provenance.PROPAGATED, Provenance.CORRECTED) \
                    else Provenance.USER
                session.set_mask(t, obj, new, keep)
            changed.add(int(t))
    return PaintStored(sorted(changed), sorted(int(t) for t in frames), sorted(unknown))


def remove_object(session, obj: int) -> list[int]:
    """Delete an object; returns the frames it was on (the masks layer reads them again:
    building their label images here cost one per frame of a propagated object)."""
    frames = [int(t) for t in session.masks.frames(obj)]
    session.remove_object(obj)
    return frames


def propagate(session, obj: int, config=None, cancel: threading.Event | None = None):
    """session.propagate, yielding its Progress (the masks layer reads finished frames itself).

    Stops (closing the library generator, which keeps the frames done) as soon as
    `cancel` is set.  Returns True when it ran to the end.
    """
    job = session.propagate(obj, config)
    try:
        while True:
            try:
                p = next(job)
            except StopIteration:
                return True
            yield p
            if cancel is not None and cancel.is_set():
                return False
    finally:
        job.close()


@dataclass
class FrameQuality:
    """What the worst-frames list and the quality strip show for one object."""

    worst: list[tuple[int, float]]  # (frame, quality), worst first
    scores: dict[int, float]  # every frame with a mask
    annotated: list[int]  # frames the user made (not propagated)


def frame_quality(session, obj: int, k: int = 10) -> FrameQuality:
    worst = session.worst_frames(obj, k)
    scores = session.frame_scores(obj)
    annotated = sorted(session.masks.annotated(obj))
    return FrameQuality([(int(t), float(scores.get(t, float("nan")))) for t in worst],
                        {int(t): float(v) for t, v in scores.items()}, [int(t) for t in annotated])


@dataclass
class ExportPlan:
    folder: Path
    obj: int | None
    name: str = "object"
    background: object = None
    stickers: tuple[str, ...] = (".gif", ".webp")
    formats: tuple[str, ...] = ()  # also: "ctc", "ome-zarr", "coco", "label-tiff" (io/formats)


#: io/formats writers -> where they write in the export folder
FORMAT_PATHS = {"ctc": "ctc", "ome-zarr": "labels.ome.zarr", "coco": "coco.json", "label-tiff": "labels.tif"}


def _format_writer(session, fmt: str, path: Path):
    """One io/formats writer over the session's label images, streamed, with the video's
    physical scale and units where its source knows them (TIFF time-lapses, napari layers)."""
    from ..io.formats import TrackedObject, ctc, coco, label_tiff, ome_zarr

    T, H, W = int(session.source.n_frames), int(session.source.height), int(session.source.width)
    labels = (session.masks.labels(t) for t in range(T))
    objects = [TrackedObject(o.id, o.name) for o in session.objects.values()]
    meta = session.source.physical_metadata() if hasattr(session.source, "physical_metadata") else {}
    scale, units = meta.get("scale") or None, meta.get("units") or None
    if fmt == "ctc":
        return ctc.ctc_writer(path, labels, objects, n_frames=T)
    if fmt == "coco":
        return coco.coco_writer(path, labels, objects)
    if fmt == "label-tiff":
        return label_tiff.label_tiff_writer(path, labels, objects, n_frames=T, scale=scale, units=units)
    return ome_zarr.ome_zarr_labels_writer(path, labels, objects, shape=(T, H, W), scale=scale, units=units)


def export(session, plan: ExportPlan, cancel: threading.Event | None = None):
    """Mask PNGs, label volume, stickers (GIF + WebP) and composite video into one folder.

    Yields Progress; returns {what: path}.
    """
    folder = Path(plan.folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in plan.name) or "object"
    written: dict = {}
    first, *more = plan.stickers
    jobs = [dict(out_dir=folder / "masks", labels=folder / "labels.npy",
                 sticker=folder / f"{stem}{first}", composite=folder / f"{stem}.mp4",
                 background=plan.background)]
    jobs += [dict(sticker=folder / f"{stem}{suffix}") for suffix in more]
    for kwargs in jobs:
        gen = session.export(obj=plan.obj, **kwargs)
        try:
            while True:
                try:
                    p = next(gen)
                except StopIteration as stop:
                    result = stop.value or {}
                    break
                yield p
                if cancel is not None and cancel.is_set():
                    return written
        finally:
            gen.close()
        for key, value in result.items():
            if key == "sticker" and "sticker" in written:
                key = f"sticker{Path(value).suffix}"
            written[key] = value
    T = int(session.source.n_frames)
    for fmt in plan.formats:
        path = folder / FORMAT_PATHS[fmt]
        gen = _format_writer(session, fmt, path)
        try:
            while True:
                try:
                    i = next(gen)
                except StopIteration:
                    break
                yield Progress(fmt, int(i) + 1, T)
                if cancel is not None and cancel.is_set():
                    return written
        finally:
            gen.close()
        written[fmt] = path
    yield Progress("export", 1, 1, message="done")
    return written
