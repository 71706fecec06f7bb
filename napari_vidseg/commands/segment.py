"""`napari-vidseg segment`: clicks from a CSV -> masks of every frame -> exports, headless.

    napari-vidseg segment VIDEO --clicks CLICKS.csv --out DIR [--sticker FILE] [--composite FILE]
    napari-vidseg segment --sample --out DIR        # the bundled clip with its bundled clicks

CLICKS.csv has a header with columns frame,x,y,positive and optionally object
(separated by commas, or semicolons or tabs as spreadsheets in some locales write):
frame is a 0-based frame index, (x, y) = (column, row) in frame pixels, positive
is 1/0 (or true/false, yes/no, +/-), object is any name or number (one object
per distinct value; all clicks belong to one object without the column).
"""
from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

from ..types import Click, InputError, Interactions

REQUIRED = ("frame", "x", "y", "positive")
_TRUE = {"1", "true", "yes", "y", "+", "pos", "positive", "t"}
_FALSE = {"0", "false", "no", "n", "-", "neg", "negative", "f"}


def sample_clicks_path() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "sample_clicks.csv"


def configure(parser) -> None:
    parser.add_argument("video", nargs="?", help="video file or folder of frames (omit with --sample)")
    parser.add_argument("--clicks", type=Path,
                        help="CSV with columns frame,x,y,positive[,object] (required unless --sample)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the mask PNGs")
    parser.add_argument("--sample", action="store_true",
                        help="use the bundled sample clip and its clicks (napari_vidseg/data/sample_clicks.csv)")
    parser.add_argument("--sticker", type=Path, help="transparent cut-out: .gif, .webp, .png (APNG) or .webm")
    parser.add_argument("--composite", type=Path, help="the object over the dimmed original, .mp4")
    parser.add_argument("--background", help="composite background: a colour r,g,b or an image file")
    parser.add_argument("--labels", type=Path, help="also write the (T, H, W) label volume (.npy or .tif)")
    parser.add_argument("--session", type=Path,
                        help="keep the work in this session folder (default: OUT.session beside the output); "
                             "running the same command again resumes it; re-open it in napari")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty output folder that another job made (its masks are replaced)")
    parser.add_argument("--no-propagate", action="store_true",
                        help="only segment the clicked frames (no propagation)")
    parser.add_argument("--mode", choices=("head", "full"), default="head",
                        help="fine-tuning: head (the decoder on cached features; default) or full (the late "
                             "encoder too: slower and, cross-validated on DAVIS, not better: J -0.05, se 1.40)")
    parser.add_argument("--steps", type=int, help="fine-tuning steps (default: the library's)")
    parser.add_argument("--input-size", type=int,
                        help="long side, in pixels, frames are resized to for fine-tuning and propagation")
    parser.add_argument("--int8", action="store_true",
                        help="propagate with an int8 copy of the tuned network (CPU only; about 2x faster "
                             "network on CPUs without native bfloat16, worth it from a few hundred frames; "
                             "where the CPU has bfloat16, the default bf16 propagation is faster)")
    parser.add_argument("--flip", action="store_true",
                        help="propagation: average each frame with its mirror image (about +1 J, twice the time)")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                        help="propagation: average each mask with the click segmenter's opinion of it (a click at "
                             "its middle; default: the library's)")
    parser.add_argument("--self-train", type=int, default=None, metavar="K",
                        help="two passes: tune again with the K most trusted masks of a quick first propagation "
                             "(0: one pass; default: the library's)")
    parser.add_argument("--method", default=None,
                        help="propagation method (napari_vidseg.video.propagators; default: osvos)")
    parser.add_argument("--preset", default=None, help="the method's preset (osvos: default, fast, quality)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(_parser=parser)  # the resume command is rebuilt from the parsed options


@dataclass(frozen=True)
class ClickRow:
    line: int
    frame: int
    obj: str
    click: Click


def _parse_bool(value: str, line: int) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InputError(f"line {line}: positive must be 1/0, true/false, yes/no or +/-, got {value!r}")


def _parse_number(value: str, name: str, line: int) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"line {line}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"line {line}: {name} must be a finite number, got {value!r}")
    return v


def _delimiter(header: str) -> str:
    """',' unless the header line is only split by ';' or a tab (spreadsheets in locales whose
    decimal mark is a comma write ';')."""
    for sep in (";", "\t"):
        if "," not in header and sep in header:
            return sep
    return ","


def read_clicks(path: Path) -> list[ClickRow]:
    """Parse a clicks CSV; every problem is an InputError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"clicks file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=_delimiter(f.readline()))
        f.seek(0)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                             f"frame,x,y,positive (and optionally object), got {','.join(header) or 'nothing'}")
        reader.fieldnames = header
        rows = []
        for row in reader:
            line = reader.line_num
            if not any((v or "").strip() for v in row.values()):
                continue  # blank line
            frame = _parse_number(row["frame"], "frame", line)
            if frame != int(frame):
                raise InputError(f"line {line}: frame must be a whole number, got {row['frame']!r}")
            x = _parse_number(row["x"], "x", line)
            y = _parse_number(row["y"], "y", line)
            positive = _parse_bool(row["positive"] or "", line)
            obj = (row.get("object") or "").strip() or "1"
            rows.append(ClickRow(line, int(frame), obj, Click(x, y, positive)))
    if not rows:
        raise InputError(f"{path} holds no clicks")
    return rows


def check_clicks(rows: list[ClickRow], n_frames: int, height: int, width: int) -> None:
    for r in rows:
        if not 0 <= r.frame < n_frames:
            raise InputError(f"line {r.line}: frame {r.frame} does not exist "
                             f"(the video has {n_frames} frames: 0..{n_frames - 1})")
        if not r.click.inside(height, width):
            raise InputError(f"line {r.line}: click at (x={r.click.x:g}, y={r.click.y:g}) is outside the "
                             f"{width}x{height} frame")


def group_clicks(rows: list[ClickRow]) -> dict[str, dict[int, Interactions]]:
    """object name -> frame -> Interactions, objects and clicks in file order."""
    out: dict[str, dict[int, Interactions]] = {}
    for r in rows:
        out.setdefault(r.obj, {}).setdefault(r.frame, Interactions()).clicks.append(r.click)
    return out


def _background(text: str | None):
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) == 3:
        try:
            rgb = tuple(int(p) for p in parts)
        except ValueError:
            rgb = None
        if rgb is not None and all(0 <= v <= 255 for v in rgb):
            return rgb
    p = Path(text)
    if not p.is_file():
        raise InputError(f"--background must be r,g,b (0-255) or an existing image file, got {text!r}")
    return p


def build_session(video, rows: list[ClickRow], folder: Path | None = None):
    """A session with one object per distinct `object` value and the clicks applied frame by frame."""
    from ..video.session import SESSION_FILE, VideoSession

    # An existing session folder is re-opened (its objects found by name), so a stopped run continues,
    # unless it holds the work on another video.
    if folder is not None and (Path(folder) / SESSION_FILE).exists():
        stored = VideoSession._read_meta(Path(folder)).get("video")
        if stored and Path(stored).exists() and Path(stored).resolve() != Path(video).expanduser().resolve():
            raise InputError(f"the session folder {folder} holds the work on another video ({stored}), not "
                             f"{video}: give another --session (or --out) for this video")
    session = VideoSession.open_or_create(video, folder) if folder is not None else VideoSession.create(video)
    src = session.source
    check_clicks(rows, int(src.n_frames), int(src.height), int(src.width))
    by_name = {o.name: o.id for o in session.objects.values()}
    ids = {name: by_name.get(f"object {name}" if name == "1" else name) or
           session.add_object(None if name == "1" else name) for name in group_clicks(rows)}
    return session, ids


def apply_clicks(session, rows: list[ClickRow], ids: dict[str, int]):
    """Segment every clicked frame; yields Progress (one step per frame and object)."""
    from ..types import Progress

    groups = group_clicks(rows)
    total = sum(len(v) for v in groups.values())
    done = 0
    for name, per_frame in groups.items():
        for t, inter in sorted(per_frame.items()):
            have = session.interactions.get((ids[name], t))
            if have and have != inter:
                # Never replace what a session holds (it may be the user's work in napari).
                raise InputError(f"the session {session.folder} already holds other clicks on frame {t} of object "
                                 f"{name} than the clicks file: give a new --session (or --out) to start over")
            if not have:  # a re-opened session holds them already: the frame keeps its mask
                session.add_interactions(t, ids[name], inter)
            done += 1
            yield Progress("clicks", done, total, frame=t, message=f"object {name}")


def resume_command(args, session_dir: Path) -> str:
    """The command that continues this run: the same options, paths made absolute, and
    --session naming the folder that holds the work."""
    import shlex

    parser = getattr(args, "_parser", None)
    words = ["napari-vidseg", "segment"]
    if parser is None:
        return " ".join(words + ["...", "--session", shlex.quote(str(Path(session_dir).absolute()))])

    def text(v):
        return str(Path(v).absolute()) if isinstance(v, Path) else str(v)

    for a in parser._actions:
        if a.dest in ("help", "_parser") or not hasattr(args, a.dest):
            continue
        v = getattr(args, a.dest)
        if a.dest == "session":
            v = Path(session_dir)
        if not a.option_strings:  # the video
            if v is not None:
                words.append(shlex.quote(text(Path(v))))
            continue
        if v is None or v == a.default:
            continue
        flag = a.option_strings[-1] if a.nargs == 0 or isinstance(v, bool) else a.option_strings[0]
        if isinstance(v, bool):  # store_true, or --refine/--no-refine
            flag = next((o for o in a.option_strings if o.startswith("--no-") != v), flag)
            words.append(flag)
        else:
            words += [flag, shlex.quote(text(v))]
    return " ".join(words)


def osvos_options(args) -> dict:
    """The OSVOS options given by segment's flags (None: the library's)."""
    return dict(mode=args.mode, int8=args.int8 or None, flip=args.flip or None, steps=args.steps,
                input_long_side=args.input_size, self_train=args.self_train, refine=args.refine)


def video_and_clicks(args) -> tuple:
    if args.sample:
        from ..sample import sample_clip_path

        return args.video or sample_clip_path(), args.clicks or sample_clicks_path()
    if not args.video:
        raise InputError("give a VIDEO (or --sample for the bundled clip)")
    if not args.clicks:
        raise InputError("give --clicks CLICKS.csv (columns frame,x,y,positive[,object])")
    return args.video, args.clicks


def job_from_args(args, session: Path | None = None):
    """segment's flags as a headless job (napari_vidseg/jobs.py); session: the folder the run keeps
    its work in (default: --session)."""
    from ..jobs import Job
    from ..video import propagators

    video, clicks = video_and_clicks(args)
    _background(args.background)  # checked before any work
    rows = read_clicks(clicks)
    if args.steps is not None and args.steps < 0:
        raise InputError("--steps must be >= 0")
    method = propagators.get(args.method).name
    options = osvos_options(args) if method == "osvos" else {}  # the flags above are OSVOS's options
    outputs = {"masks": args.out, "sticker": args.sticker, "composite": args.composite, "labels": args.labels,
               "background": args.background}
    return Job(video=str(video), method=method, preset=args.preset, propagate=not args.no_propagate,
               options={k: v for k, v in options.items() if v is not None},
               clicks=[{"frame": r.frame, "x": r.click.x, "y": r.click.y, "positive": r.click.positive,
                        "object": r.obj, "line": r.line} for r in rows],
               session=str(session) if session is not None else (None if args.session is None else str(args.session)),
               outputs={k: str(v) for k, v in outputs.items() if v is not None})


def run(args) -> int:
    from ..jobs import run_job
    from .guard import OutputPlan, RunGuard

    video, _ = video_and_clicks(args)
    # Every check on the output paths before any work (and before the video is decoded).
    plan = OutputPlan.check(video, args.out, args.session, [args.sticker, args.composite, args.labels])
    job = job_from_args(args, session=plan.session)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    with RunGuard(plan, resume_command(args, plan.session), overwrite=args.overwrite) as guard:
        run_job(job, quiet=args.quiet, say=say, on_session=guard.attach)
    return guard.exit_code
