"""Batch runs: many videos, each a headless job (jobs.py), on a dask.distributed cluster.

    entries = read_manifest("manifest.csv")              # video, clicks / session, name
    with connect(workers=2) as client:                   # a LocalCluster, or connect("tcp://host:8786")
        rows = drain(run_manifest(entries, "out/", client))
    write_summary("out/summary.csv", rows)

A manifest (CSV, or JSON: a list of rows or {"videos": [...]}) names per video
its `video`, its annotations (`clicks`: a clicks CSV as segment reads it, or
`session`: a session folder, continued in place) and optionally a `name` (the
output folder's name; default the video's stem). Relative paths are relative to
the manifest. Each video's results land in OUT/<name>/ as `segment --out`
writes them (one PNG per frame), its session (unless the manifest names one)
in OUT/<name>/session/, the job it ran in OUT/<name>/job.json and, once it
finished, OUT/<name>/done.json: the key of its inputs, so that a second run
with the same inputs and options skips it. A video stopped half-way (a killed
worker, a stopped run) continues where it stopped: its session's resume skips
the frames already propagated under the same inputs.

A failing video (missing, corrupt, bad clicks) becomes a "failed" row with one
line of error; the others run. A worker that dies mid-video is replaced by
dask and the video runs again from its session on another worker.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterable

from .types import InputError, Progress

COLUMNS = ("video", "clicks", "session", "reuse", "name")
CONNECT_TIMEOUT = 10.0  # seconds to reach a --scheduler before giving up
SUMMARY_COLUMNS = ("video", "name", "objects", "frames", "computed", "ranges", "seconds", "status", "error")
DONE_FILE = "done.json"
JOB_FILE = "job.json"


@dataclass
class Entry:
    """One manifest row: where its inputs are, where its results go, or why it cannot run."""

    line: int
    video: str
    name: str
    clicks: str | None = None
    session: str | None = None
    reuse: str | None = None  # a session whose fitted method segments this video (no annotation of its own)
    error: str | None = None  # set: the row is reported as failed and not run
    job: Any = None  # its jobs.Job, once built


# -- the manifest ------------------------------------------------------------------
def read_manifest(path) -> list[Entry]:
    """The manifest's rows. A problem with the file itself is an InputError; a
    problem with one row (a missing video or clicks file, a duplicate output
    name) is that row's `error`, so the other rows still run."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    if path.suffix.lower() == ".json":
        raw = _json_rows(path)
    else:
        raw = _csv_rows(path)
    if not raw:
        raise InputError(f"{path} lists no video")
    base = path.resolve().parent
    entries, seen = [], {}
    for line, row in raw:
        entries.append(_entry(base, line, row, seen))
    return entries


def _csv_rows(path: Path) -> list[tuple[int, dict]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "video" not in header or not ({"clicks", "session", "reuse"} & set(header)):
            raise InputError(f"{path}: the header must name video and clicks (or session, or reuse), "
                             f"got {','.join(header) or 'nothing'}")
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            raise InputError(f"{path}: unknown column(s) {', '.join(unknown)} (known: {', '.join(COLUMNS)})")
        reader.fieldnames = header
        return [(reader.line_num, row) for row in reader if any((v or "").strip() for v in row.values())]


def _json_rows(path: Path) -> list[tuple[int, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from e
    rows = data.get("videos") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path}: a JSON manifest is a list of objects (or {{\"videos\": [...]}})")
    for i, r in enumerate(rows):
        unknown = sorted(set(r) - set(COLUMNS))
        if unknown:
            raise InputError(f"{path}: video {i + 1} has unknown key(s) {', '.join(unknown)} "
                             f"(known: {', '.join(COLUMNS)})")
    return [(i + 1, {k: None if v is None else str(v) for k, v in r.items()}) for i, r in enumerate(rows)]


def _entry(base: Path, line: int, row: dict, seen: dict[str, int]) -> Entry:
    def path_of(key):
        v = (row.get(key) or "").strip()
        return str((base / v) if not Path(v).is_absolute() else Path(v)) if v else None

    where = f"line {line}" if line else "a row"
    video = path_of("video")
    name = (row.get("name") or "").strip() or (Path(video).stem if video else "")
    e = Entry(line, video or "", name, clicks=path_of("clicks"), session=path_of("session"), reuse=path_of("reuse"))
    if not video:
        e.error = f"{where}: no video given"
    elif not Path(video).exists():
        e.error = f"{where}: video not found: {video}"
    elif e.reuse and not (Path(e.reuse) / "session.json").is_file():
        e.error = f"{where}: the session to reuse is not a session folder (no session.json): {e.reuse}"
    elif e.reuse and (e.clicks or e.session):
        e.error = f"{where}: give either reuse or clicks/session for {video}, not both"
    elif not e.clicks and not e.session and not e.reuse:
        e.error = f"{where}: give a clicks file, a session folder or a session to reuse for {video}"
    elif e.clicks and not Path(e.clicks).is_file():
        e.error = f"{where}: clicks file not found: {e.clicks}"
    elif e.session and not e.clicks and not (Path(e.session) / "session.json").is_file():
        e.error = f"{where}: session folder not found (or without session.json): {e.session}"
    elif name in seen:
        e.error = (f"{where}: output folder {name!r} is already used by line {seen[name]}; "
                   f"give the rows different names (the name column)")
    if name and name not in seen:
        seen[name] = line
    return e


# -- jobs -----------------------------------------------------------------------
def build_jobs(entries: list[Entry], out, method: str | None = None, preset: str | None = None,
               options: dict | None = None, force: bool = False) -> None:
    """Give every runnable entry its Job (masks in out/<name>/); a row whose clicks
    do not parse gets the error instead."""
    from .commands.segment import read_clicks
    from .jobs import Job

    out = Path(out)
    for e in entries:
        if e.error:
            continue
        try:
            rows = read_clicks(Path(e.clicks)) if e.clicks else []
            folder = out / e.name
            e.job = Job(video=e.video, method=method, preset=preset,
                        options={k: v for k, v in (options or {}).items() if v is not None},
                        clicks=[{"frame": r.frame, "x": r.click.x, "y": r.click.y, "positive": r.click.positive,
                                 "object": r.obj, "line": r.line} for r in rows],
                        session=e.session or str(folder / "session"),
                        outputs={"masks": str(folder)}, resume=not force)
            if not e.reuse:  # a reused fit needs no annotation of the video's own
                e.job.check()
        except InputError as err:
            e.error, e.job = f"line {e.line}: {err}", None


def inputs_key(job, extra: str = "") -> str:
    """What a finished video's results depend on: the job (annotations, method,
    options, outputs), the video file's size and time, an input session's
    annotations file. Equal keys: the video is skipped on a re-run."""
    desc = json.loads(job.to_json())
    desc.pop("resume", None)
    v = Path(job.video)
    try:
        st = v.stat()
        desc["video_stat"] = [st.st_size, st.st_mtime_ns] if v.is_file() else _folder_stat(v)
    except OSError:
        desc["video_stat"] = None
    s = Path(job.session) / "session.json" if job.session and not job.clicks else None
    desc["session_file"] = hashlib.sha256(s.read_bytes()).hexdigest() if s and s.is_file() else None
    desc["extra"] = extra
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


def _folder_stat(folder: Path) -> list:
    return sorted([p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in folder.iterdir() if p.is_file())


def reuse_key(entry: Entry) -> str:
    """What a reuse row depends on besides its job: the reused session's annotations file."""
    if not entry.reuse:
        return ""
    f = Path(entry.reuse) / "session.json"
    return hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else ""


def finished(job, extra: str = "") -> bool:
    """True when out/<name>/done.json holds this job's inputs key."""
    done = Path(job.outputs["masks"]) / DONE_FILE
    try:
        return json.loads(done.read_text())["key"] == inputs_key(job, extra)
    except (OSError, ValueError, KeyError, TypeError):
        return False


# -- on a worker --------------------------------------------------------------------
#: loader -> its networks, loaded once per worker process (the parent network and the click segmenter)
_NETWORKS: dict[str, tuple] = {}


def shipped_networks():
    """The shipped parent network and interactive predictor (registry.MODELS)."""
    from .segment.predictor import InteractivePredictor
    from .video.finetune import load_parent

    return load_parent(), InteractivePredictor()


def _weights_key(loader: Callable) -> str:
    from .models.registry import MODELS

    name = f"{getattr(loader, '__module__', '')}.{getattr(loader, '__qualname__', repr(loader))}"
    return name + ":" + ",".join(m.sha256[:16] for m in MODELS.values())


def worker_networks(loader: Callable | None = None) -> tuple:
    """The networks `loader` gives, loaded on the first call in this process and
    kept (keyed by the loader and the shipped weights' checksums)."""
    loader = loader or shipped_networks
    key = _weights_key(loader)
    if key not in _NETWORKS:
        _NETWORKS[key] = tuple(loader())
    return _NETWORKS[key]


def run_entry(job_json: str, networks: Callable | None = None) -> dict:
    """Run one video's job (on a worker); a row of the summary. A video that fails
    is a "failed" row with its error in one line, never an exception: the other
    videos go on, and dask does not retry it on other workers."""
    from .jobs import Job, run_job

    job = Job.from_json(job_json)
    folder = Path(job.outputs["masks"])
    row = new_row(job)
    t0 = time.perf_counter()
    try:
        parent, predictor = worker_networks(networks)
        folder.mkdir(parents=True, exist_ok=True)
        from .video.mask_store import atomic_write_bytes

        atomic_write_bytes(folder / JOB_FILE, job.to_json().encode())
        result = run_job(job, quiet=True, parent=parent, predictor=predictor)
        prop = result.get("propagation") or {}
        row.update(objects=len(result.get("objects", {})), frames=int(result.get("frames", 0)),
                   computed=int(prop.get("computed", 0)), ranges=1, status="done")
        mark_finished(job, row)
    except Exception as e:  # noqa: BLE001  (any failure of one video is its row's error)
        row["error"] = one_line(e)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def new_row(job) -> dict:
    """A summary row for the job's video, failed until it is done."""
    return {"video": job.video, "name": Path(job.outputs["masks"]).name, "objects": 0, "frames": 0, "computed": 0,
            "ranges": 0, "seconds": 0.0, "status": "failed", "error": ""}


def mark_finished(job, row: dict, extra: str = "") -> None:
    """out/<name>/done.json, written last: the inputs key a re-run compares."""
    from .video.mask_store import atomic_write_bytes

    atomic_write_bytes(Path(job.outputs["masks"]) / DONE_FILE,
                       json.dumps({"key": inputs_key(job, extra), "row": row}).encode(), fsync=True)


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(e, InputError) else f"{type(e).__name__}: {msg}"


# -- the cluster ------------------------------------------------------------------
def default_workers() -> int:
    """One single-threaded worker per core (torch uses one thread in each), fewer
    where memory is short (about 2 GB a worker at 1080p: docs/reliability.md)."""
    cores = os.cpu_count() or 1
    try:
        import psutil

        by_memory = max(1, int(psutil.virtual_memory().total // (2 * 2**30)))
    except ImportError:
        by_memory = cores
    return max(1, min(cores, by_memory))


def connect(scheduler: str | None = None, workers: int | None = None, timeout: float | None = None):
    """A dask Client: to the scheduler at `scheduler`, or to a new LocalCluster of
    `workers` processes (default: default_workers()). An unreachable scheduler is
    an InputError."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT if timeout is None else timeout)
        except (OSError, TimeoutError, ValueError) as e:
            raise InputError(f"cannot reach the dask scheduler at {scheduler}: {one_line(e)}") from None
    n = workers or default_workers()
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    client._vidseg_cluster = cluster  # closed with the client (see close())
    return client


def close(client) -> None:
    cluster = getattr(client, "_vidseg_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def run_manifest(entries: list[Entry], client, networks: Callable | None = None, force: bool = False,
                 split: int | None = None) -> Generator[Progress, None, list[dict]]:
    """Run the entries' jobs on the cluster (build_jobs first); yields a Progress
    per finished video; returns the summary rows in manifest order. Finished
    videos are skipped (status "skipped") unless `force`. split: videos longer
    than this many frames are fitted once and propagated in ranges of that many
    frames on several workers (video/split.py)."""
    from distributed import as_completed

    from .video import split as sp

    rows: list[dict | None] = [None] * len(entries)
    futures = {}
    fits: dict[str, Any] = {}  # reused session -> the future of its one fit
    for i, e in enumerate(entries):
        if e.error or e.job is None:
            rows[i] = _row(e, "failed", e.error or "not run")
        elif not force and finished(e.job, reuse_key(e)):
            rows[i] = _row(e, "skipped", "", _done_row(e.job))
        elif e.reuse:
            if e.reuse not in fits:
                fits[e.reuse] = _submit(client, sp.fit_session, e, e.reuse, e.job.method, e.job.preset,
                                        e.job.options, networks, tag="fit")
            futures[_submit(client, sp.apply_fitted, e, fits[e.reuse], e.job.to_json(), reuse_key(e))] = ("video", i)
        elif split:
            futures[_submit(client, sp.prepare, e, e.job.to_json(), networks, split)] = ("prepare", i)
        else:
            futures[_submit(client, run_entry, e, e.job.to_json(), networks)] = ("video", i)
    total = len(futures)
    yield Progress("batch", 0, total)
    done = 0
    pending = as_completed(list(futures))
    for f in pending:
        kind, i = futures.pop(f)
        try:
            result = f.result()
        except Exception as err:  # noqa: BLE001  (e.g. the task's workers kept dying: KilledWorker)
            result = _row(entries[i], "failed", one_line(err))
        if kind == "prepare" and "row" not in result and result.get("status") != "failed":
            # fitted: the ranges on any workers (the state is sent once to each), then one finalize
            parts = [_submit(client, sp.propagate_range, entries[i], f, a, b, tag=f"range-{a}")
                     for a, b in result["ranges"]]
            fin = _submit(client, sp.finalize, entries[i], f, *parts, networks=networks, tag="finalize")
            futures[fin] = ("video", i)
            pending.add(fin)
            continue
        rows[i] = result.get("row", result)
        done += 1
        yield Progress("batch", done, total, message=f"{entries[i].name}: {rows[i]['status']}")
    return [r for r in rows if r is not None]


def _submit(client, fn, entry: Entry, *args, tag: str = "", **kwargs):
    # pure=False and a unique key: a re-run (after --force, or of changed inputs) is a new task
    key = f"vidseg-{entry.name}-{tag or fn.__name__}-{time.time_ns()}"
    return client.submit(fn, *args, pure=False, key=key, **kwargs)


def _done_row(job) -> dict:
    try:
        return json.loads((Path(job.outputs["masks"]) / DONE_FILE).read_text()).get("row", {})
    except (OSError, ValueError):
        return {}


def _row(e: Entry, status: str, error: str, before: dict | None = None) -> dict:
    before = before or {}
    return {"video": e.video, "name": e.name, "objects": before.get("objects", 0), "frames": before.get("frames", 0),
            "computed": 0, "ranges": 0, "seconds": 0.0, "status": status, "error": error}


def write_summary(path, rows: Iterable[dict]) -> Path:
    """The summary table: one row per video (SUMMARY_COLUMNS), written atomically."""
    import io

    from .video.mask_store import atomic_write_bytes

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in SUMMARY_COLUMNS})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


# -- for front ends (the napari widget) -------------------------------------------
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")


def write_manifest(videos, annotations, out) -> Path:
    """A manifest for every video in the folder `videos` (sorted by name):
    `annotations` is one clicks CSV for all of them, or a folder holding
    <video stem>.csv (clicks) or <video stem>.vidseg/ (a session) per video.
    Returns the manifest's path (`out`, a .csv)."""
    import io

    from .video.mask_store import atomic_write_bytes

    videos, annotations = Path(videos), Path(annotations)
    found = sorted(p for p in videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise InputError(f"no video ({', '.join(VIDEO_SUFFIXES)}) in {videos}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["video", "clicks", "session", "name"])
    for v in found:
        if annotations.is_file():
            w.writerow([v, annotations, "", v.stem])
        elif (annotations / f"{v.stem}.csv").is_file():
            w.writerow([v, annotations / f"{v.stem}.csv", "", v.stem])
        elif (annotations / f"{v.stem}.vidseg" / "session.json").is_file():
            w.writerow([v, "", annotations / f"{v.stem}.vidseg", v.stem])
        else:
            w.writerow([v, annotations / f"{v.stem}.csv", "", v.stem])  # reported as a missing clicks file
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue().encode())
    return out


def run_batch(manifest, out, scheduler: str | None = None, workers: int | None = None, force: bool = False,
              split: int | None = None, method: str | None = None, preset: str | None = None,
              options: dict | None = None, networks: Callable | None = None,
              say: Callable[[str], None] | None = None,
              warn: Callable[[str], None] | None = None) -> Generator[Progress, None, list[dict]]:
    """The whole batch run: the manifest read, the cluster connected, the videos
    run (a Progress per finished video), out/summary.csv written; returns its rows.
    say: what is going on (the cluster, its dashboard); warn: a row that cannot
    run (one line each; also in the summary)."""
    say = say or (lambda *a: None)
    warn = warn or say
    entries = read_manifest(manifest)
    build_jobs(entries, out, method=method, preset=preset, options=options, force=force)
    for e in entries:
        if e.error:
            warn(e.error)
    client = connect(scheduler, workers)
    try:
        say(f"dask: {len(client.nthreads())} worker(s) at {client.scheduler.address}; "
            f"dashboard: {client.dashboard_link}")
        rows = yield from run_manifest(entries, client, networks=networks, force=force, split=split)
    finally:
        close(client)
    write_summary(Path(out) / "summary.csv", rows)
    return rows
