"""One long video over several workers: fit once, then frame ranges propagated in parallel.

    prep = prepare(job_json, networks, size)            # one worker: clicks, the fit (OSVOS: tuning,
                                                        # self-training's sparse pass, the last tuning)
    parts = [propagate_range(prep, a, b) for a, b in prep["ranges"]]   # any workers; prep is sent
                                                        # once to each worker (a dask dependency)
    row = finalize(prep, *parts)                        # one worker: index, resume state, exports

The session folder is the one place results land. Range workers write each
mask PNG into the session's store atomically (mask_store.write_png) and note
the frame in their own journal, <session>/propagation-split/<key>/range-<a>.jsonl,
after its PNGs are in place; `finalize` alone indexes them (MaskStore.record),
so no two processes ever write the same file. A range stopped half-way (a
killed worker) continues from its journal; the fitted state is kept in
state.pt, so a re-run after a stop does not fit again. Everything is keyed by
the session's run key (resume.run_key): other inputs start afresh.

How a method may be split is its `split` attribute (propagators/base.py):
"frames" (OSVOS: ranges of `size` frames, each started `split_warmup` frames
early so that the clean-up has the mask before its first frame), "anchors"
(a method that goes frame by frame: pieces between annotated frames), None
(not split).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..types import Provenance

SPLIT_DIR = "propagation-split"


@dataclasses.dataclass
class Plan:
    """What session.propagate computes before it runs: the same objects, frames and key."""

    method: str
    config: Any
    objects: list[int]
    annotated: dict
    targets: list[int]
    key: str


def plan(session, objects, config, method: str | None) -> Plan:
    """session.propagate's choice of frames and its run key, for all frames of the video."""
    from . import propagators
    from .resume import run_key

    objs = session._objects_to_propagate(objects)
    entry = propagators.get(method)
    annotated = {o: session.masks.annotated(o) for o in objs}
    anchors = set().union(*(set(a) for a in annotated.values()))
    targets = [t for t in range(int(session.source.n_frames)) if any(t not in annotated[o] for o in objs)]
    if len(objs) == 1:
        targets = [t for t in targets if t not in anchors]
    key = run_key(entry.name, config, objs, None, annotated, session._weights_id())
    return Plan(entry.name, config, objs, annotated, targets, key)


def ranges(targets: list[int], anchors, size: int, mode: str | None) -> list[tuple[int, int]]:
    """[a, b) frame ranges covering `targets`: blocks of `size` frames ("frames"),
    pieces between annotated frames ("anchors"), or one range (None)."""
    if not targets:
        return []
    lo, hi = targets[0], targets[-1] + 1
    if mode == "frames":
        cuts = list(range(lo, hi, max(1, int(size))))[1:]
    elif mode == "anchors":
        cuts = sorted(t for t in set(anchors) if lo < t < hi)
    else:
        cuts = []
    bounds = [lo, *cuts, hi]
    have = set(targets)
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if any(t in have for t in range(a, b))]


def _job(job_json: str):
    from ..jobs import Job

    return Job.from_json(job_json)


def _config(job):
    from . import propagators

    return propagators.make_config(job.method, preset=job.preset, **job.options)


def prepare(job_json: str, networks=None, size: int = 2000) -> dict:
    """On a worker: the session with its clicks, the plan and, for a video of more
    than one range, the fitted state. A video of one range runs whole here
    (batch.run_entry) and comes back as {"row": ...}."""
    import torch

    from .. import batch
    from ..jobs import run_job
    from . import propagators
    from .session import VideoSession

    started = time.time()
    job = _job(job_json)
    parent, predictor = batch.worker_networks(networks)
    objs = run_job(dataclasses.replace(job, propagate=False, outputs={}), parent=parent,
                   predictor=predictor)["objects"]
    session = VideoSession.open(job.session)
    session.set_parent(parent)
    config = _config(job)
    p = plan(session, list(objs.values()), config, job.method)
    prop = propagators.get(p.method).cls(config, parent=parent)
    anchors = set().union(*(set(a) for a in p.annotated.values()))
    parts = ranges(p.targets, anchors, size, prop.split)
    if len(parts) <= 1:
        return {"row": batch.run_entry(job_json, networks)}
    root = Path(job.session) / SPLIT_DIR
    if not job.resume:
        shutil.rmtree(root, ignore_errors=True)
    folder = root / p.key[:16]
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / "state.pt"
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
    else:
        state = _fit(prop, session, p, folder)
        tmp = folder / f".state.{os.getpid()}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, state_file)
    return {"job": job_json, "key": p.key, "state": state, "objects": p.objects, "annotated": p.annotated,
            "targets": p.targets, "ranges": parts, "folder": str(folder), "warmup": prop.split_warmup,
            "started": started}


def _fit(prop, session, p: Plan, folder: Path):
    """prop.fit_for_split over the session's video; earlier passes' masks go to a
    store of their own (folder/first), which the method reads back as its sink."""
    from .mask_store import MaskStore
    from .propagators import ObjectsFrame

    src = session.source
    store = MaskStore(folder / "first", int(src.height), int(src.width), int(src.n_frames))
    sink = _Sink(store)
    job = prop.fit_for_split(src, p.annotated, p.targets, sink=sink)
    try:
        while True:
            item = next(job)
            if isinstance(item, ObjectsFrame):
                for o, m in item.masks.items():
                    store.set(o, item.t, m, Provenance.PROPAGATED, item.confidence.get(o))
    except StopIteration as stop:
        return stop.value
    finally:
        job.close()


class _Sink:
    """A bare MaskStore as a propagator's Sink (what session._StoreSink is for a session)."""

    def __init__(self, store):
        self.store = store

    def masks(self, obj, frames):
        return {t: self.store.get(obj, t) for t in frames if self.store.provenance(obj, t) is not None}

    def confidence(self, obj):
        return self.store.confidence(obj)


def _read_journal(path: Path) -> dict[int, dict]:
    done: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").split("\n")[:-1]:
            try:
                rec = json.loads(line)
                done[int(rec["t"])] = {int(o): c for o, c in rec["c"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut short by a kill
    return done


def propagate_range(prep: dict, a: int, b: int) -> dict:
    """On a worker: the frames of [a, b) the plan wants, from the fitted state
    (started split_warmup frames early); each frame's PNGs, then its journal line.
    Returns {"frames": {t: {obj: confidence}}, "computed": n}."""
    from . import propagators
    from .mask_store import write_png
    from .session import _open_source

    job = _job(prep["job"])
    prop = propagators.get(job.method).cls(_config(job))
    prop.load_state(prep["state"])
    journal = Path(prep["folder"]) / f"range-{a:06d}.jsonl"
    done = _read_journal(journal)
    targets = prep["targets"]
    todo = {t for t in targets if a <= t < b and t not in done}
    computed = 0
    if todo:
        annotated, w = prep["annotated"], int(prep["warmup"])
        frames = [t for t in targets if a - w <= t < b + w]
        source = _open_source(job.video)
        results = prop.predict(source, annotated, frames)
        with open(journal, "a", encoding="utf-8") as f:
            try:
                for item in results:
                    if not isinstance(item, propagators.ObjectsFrame) or item.t not in todo:
                        continue
                    for o, m in _claimed(item, annotated).items():
                        write_png(job.session, o, item.t, m)
                    confs = {int(o): item.confidence.get(o) for o in item.masks}
                    f.write(json.dumps({"t": int(item.t), "c": confs}) + "\n")
                    f.flush()
                    done[int(item.t)] = confs
                    computed += 1
                    todo.discard(item.t)
                    if not todo:
                        break
            finally:
                results.close()
    return {"frames": {t: c for t, c in done.items()}, "computed": computed}


def _claimed(frame, annotated: dict) -> dict:
    """The frame's masks less the pixels of objects annotated on it (theirs stay
    theirs, as session._store_propagated keeps them)."""
    out = {}
    for o, m in frame.masks.items():
        for o2, ann in annotated.items():
            if o2 != o and frame.t in ann:
                m = m & ~ann[frame.t]
        out[o] = m
    return out


def finalize(prep: dict, *parts: dict, networks=None) -> dict:
    """On a worker: the ranges' masks indexed in the session, its run state
    marked done for them (a later propagate with the same inputs skips them), then
    the job run as usual (nothing left to propagate: its exports and done.json)."""
    from .. import batch
    from .session import VideoSession

    job = _job(prep["job"])
    session = VideoSession.open(job.session)
    frames = set()
    for part in parts:
        for t, confs in part["frames"].items():
            for o, c in confs.items():
                session.masks.record(o, int(t), Provenance.PROPAGATED, c)
            frames.add(int(t))
    session.masks.compact()
    state = session._run_state()
    state.begin(prep["key"])
    for t in sorted(frames):
        state.mark_done(t)
    state.close()
    row = batch.run_entry(prep["job"], networks)
    row["computed"] = row.get("computed", 0) + sum(p["computed"] for p in parts)
    row["seconds"] = round(time.time() - prep["started"], 3)
    row["ranges"] = len(parts)
    if row["status"] == "done":
        shutil.rmtree(Path(prep["folder"]), ignore_errors=True)
    return row


# -- a session's fitted method reused on other videos (the manifest's reuse column) --------
def fit_session(session_folder: str, method: str | None, preset: str | None, options: dict,
                networks=None) -> dict:
    """On a worker: the method fitted once on a session's annotated frames (kept in
    <session>/propagation-split/<key>/state.pt, so a re-run does not fit again),
    with its objects' names in the order of the fitted state's outputs."""
    import torch

    from .. import batch
    from . import propagators
    from .session import VideoSession

    parent, _ = batch.worker_networks(networks)
    session = VideoSession.open(session_folder)
    session.set_parent(parent)
    config = propagators.make_config(method, preset=preset, **options)
    p = plan(session, None, config, method)
    folder = Path(session_folder) / SPLIT_DIR / p.key[:16]
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / "state.pt"
    if state_file.is_file():
        state = torch.load(state_file, weights_only=False)
    else:
        state = _fit(propagators.get(p.method).cls(config, parent=parent), session, p, folder)
        tmp = folder / f".state.{os.getpid()}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, state_file)
    return {"state": state, "names": [session.objects[o].name for o in p.objects]}


def apply_fitted(fitted: dict, job_json: str, key_extra: str = "") -> dict:
    """On a worker: every frame of the job's video segmented with a fitted state
    (fit_session) and no annotation of its own, into the job's session (objects
    named as in the fitted session), then its exports; a summary row."""
    from .. import batch
    from ..progress import drain
    from . import propagators
    from .session import VideoSession

    job = _job(job_json)
    folder = Path(job.outputs["masks"])
    row = batch.new_row(job)
    t0 = time.perf_counter()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        session = VideoSession.open_or_create(job.video, Path(job.session))
        by_name = {o.name: o.id for o in session.objects.values()}
        ids = [by_name.get(n) or session.add_object(n) for n in fitted["names"]]
        prop = propagators.get(job.method).cls(_config(job))
        prop.load_state(fitted["state"])
        n = int(session.source.n_frames)
        results = prop.predict(session.source, {o: {} for o in ids}, list(range(n)))
        computed = 0
        try:
            for item in results:
                if isinstance(item, propagators.ObjectsFrame):
                    for o, m in item.masks.items():
                        if not (session.masks.provenance(o, item.t) or Provenance.PROPAGATED).is_annotation:
                            session.masks.set(o, item.t, m, Provenance.PROPAGATED, item.confidence.get(o))
                    computed += 1
        finally:
            results.close()
        session.masks.compact()
        obj = ids[0] if len(ids) == 1 else None
        drain(session.export(folder, obj=obj), quiet=True)
        row.update(objects=len(ids), frames=n, computed=computed, ranges=1, status="done")
        batch.mark_finished(job, row, key_extra)
    except Exception as e:  # noqa: BLE001  (any failure of one video is its row's error)
        row["error"] = batch.one_line(e)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row
