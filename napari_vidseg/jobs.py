"""A headless job: one serialisable description of a segmentation run, and one function that runs it.

    job = Job(video="clip.mp4", clicks=[{"frame": 0, "x": 120, "y": 80, "positive": True, "object": "dog"}],
              method="osvos", options={"steps": 150}, outputs={"masks": "out/"})
    Path("job.json").write_text(job.to_json())          # e.g. for a batch queue
    result = run_job(Job.from_json(Path("job.json").read_text()))

The job is plain data (JSON round-trip): the video, the annotations (clicks,
and/or mask files per object and frame), the propagation method with its
preset and options (validated against video.propagators), the session folder
(optional: re-opened and continued when it exists) and the outputs. `segment`
builds one from its flags and runs it; the batch issue builds on it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from .types import Click, InputError

JOB_VERSION = 1
OUTPUTS = ("masks", "labels", "sticker", "composite", "background")


@dataclass
class Job:
    video: str
    #: {"frame", "x", "y", "positive", "object" (optional name, default "1"), "line" (optional: for messages)}
    clicks: list[dict] = field(default_factory=list)
    #: object name -> frame (as text in JSON) -> a mask image (non-zero: the object)
    masks: dict[str, dict[str, str]] = field(default_factory=dict)
    method: str | None = None  # None: the default method (video.propagators.DEFAULT)
    preset: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    propagate: bool = True
    session: str | None = None  # a session folder: kept there, and re-opened and continued when it exists
    #: masks (folder), labels (.npy/.tif), sticker, composite (files), background (r,g,b or an image)
    outputs: dict[str, str] = field(default_factory=dict)
    resume: bool = True  # False: propagate every frame again, even those an earlier run finished
    version: int = JOB_VERSION

    def check(self) -> None:
        from .video import propagators

        if not self.video:
            raise InputError("a job needs a video")
        if not self.clicks and not self.masks and not self._has_session():
            raise InputError("a job needs clicks, masks or an existing session folder to start from")
        unknown = sorted(set(self.outputs) - set(OUTPUTS))
        if unknown:
            raise InputError(f"unknown job output(s) {', '.join(unknown)} (known: {', '.join(OUTPUTS)})")
        if not any(self.outputs.get(k) for k in OUTPUTS[:-1]) and not self.session:
            raise InputError("a job without outputs or a session folder would keep nothing")
        if self.propagate:
            propagators.make_config(self.method, preset=self.preset, **self.options)

    def _has_session(self) -> bool:
        return bool(self.session) and (Path(self.session) / "session.json").is_file()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Job":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InputError(f"the job is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise InputError("a job is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown job field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if int(data.get("version", JOB_VERSION)) > JOB_VERSION:
            raise InputError(f"the job is version {data['version']}; this napari-vidseg reads up to {JOB_VERSION}")
        return cls(**data)


def click_rows(job: Job):
    """The job's clicks as segment's ClickRow (line numbers for messages)."""
    from .commands.segment import ClickRow

    rows = []
    for i, c in enumerate(job.clicks):
        try:
            rows.append(ClickRow(int(c.get("line", i + 1)), int(c["frame"]), str(c.get("object", "1")),
                                 Click(float(c["x"]), float(c["y"]), bool(c["positive"]))))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"click {i + 1} of the job is not frame, x, y, positive[, object]: {c!r}") from e
    return rows


def run_job(job: Job, quiet: bool = True, say: Callable[..., None] | None = None, parent=None,
            predictor=None) -> dict:
    """Run the job: the session (created, or re-opened), the annotations, the
    propagation of every object in one pass, the outputs. Returns what it wrote
    and the propagation's {"computed", "skipped"} frames. parent, predictor: the
    networks to use instead of loading the shipped ones (a batch worker keeps
    them loaded across jobs)."""
    from .commands.segment import _background, apply_clicks, build_session
    from .io.masks import read_mask_png
    from .progress import drain

    job.check()
    say = say or (lambda *a: None)
    background = _background(job.outputs.get("background"))
    for key in ("sticker", "composite", "labels"):
        p = job.outputs.get(key)
        if p:
            Path(p).parent.mkdir(parents=True, exist_ok=True)
    rows = click_rows(job)
    session, ids = build_session(job.video, rows, None if job.session is None else Path(job.session))
    if parent is not None:
        session.set_parent(parent)
    if predictor is not None:
        session.set_predictor(predictor)
    if not rows and not job.masks:  # a session folder's own annotations: every object annotated in it
        ids = {o.name: o.id for o in session.objects.values() if session.masks.annotated(o.id)}
        if not ids:
            raise InputError(f"the session {job.session} has no annotated frame to start from")
    for name in job.masks:
        if name not in ids:
            by_name = {o.name: o.id for o in session.objects.values()}
            ids[name] = by_name.get(name) or session.add_object(name)
    say(f"video: {session.source.n_frames} frames, {session.source.width}x{session.source.height}; "
        f"{len(rows)} clicks, {sum(len(m) for m in job.masks.values())} masks on {len(ids)} object(s)")
    drain(apply_clicks(session, rows, ids), quiet=quiet)
    for name, per_frame in job.masks.items():
        for t, path in per_frame.items():
            session.set_mask(int(t), ids[name], read_mask_png(Path(path)) > 0)
    result: dict[str, Any] = {"objects": {name: int(o) for name, o in ids.items()},
                              "frames": int(session.source.n_frames)}
    if job.propagate:
        from .video import propagators

        config = propagators.make_config(job.method, preset=job.preset, **job.options)
        say(f"propagating {len(ids)} object(s)")
        summary = drain(session.propagate(list(ids.values()), config, method=job.method, resume=job.resume),
                        quiet=quiet) or {}
        say(f"propagation: computed {summary.get('computed', 0)} frames, "
            f"skipped {summary.get('skipped', 0)} already done")
        result["propagation"] = summary
    out = job.outputs
    obj = next(iter(ids.values())) if len(ids) == 1 else None
    to = {k: (Path(out[k]) if out.get(k) else None) for k in ("masks", "labels", "sticker", "composite")}
    # Masks (and labels, composite) once for all objects; a sticker shows the first object.
    if to["masks"] or to["labels"] or to["composite"] or (to["sticker"] and obj is not None):
        result.update(drain(session.export(to["masks"], obj=obj, sticker=to["sticker"] if obj is not None else None,
                                           composite=to["composite"], background=background, labels=to["labels"]),
                            quiet=quiet) or {})
    if obj is None and to["sticker"] is not None:
        first_obj = next(iter(ids.values()))
        result.update(drain(session.export(None, obj=first_obj, sticker=to["sticker"]), quiet=quiet) or {})
    for key in ("masks", "labels", "sticker", "composite"):
        if key in result:
            say(f"{key}: {result[key]}")
    if job.session:
        say(f"session: {job.session} (open it in napari with the vidseg widget)")
    return result
