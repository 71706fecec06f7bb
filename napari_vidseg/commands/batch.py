"""`napari-vidseg batch`: the videos of a manifest segmented on a dask.distributed cluster.

    napari-vidseg batch MANIFEST --out DIR [--workers N | --scheduler ADDRESS] [--force]

MANIFEST: a CSV with columns video,clicks (optionally session, name) or a JSON
list of the same (napari_vidseg/batch.py; an example: napari_vidseg/data/
batch_manifest.csv; docs/batch.md). Each video's masks go to DIR/<name>/ as
`segment --out` writes them; DIR/summary.csv has one row per video.
"""
from __future__ import annotations

import sys
from pathlib import Path


def example_manifest_path() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "batch_manifest.csv"


def configure(parser) -> None:
    parser.add_argument("manifest", type=Path, help="CSV (video,clicks[,session,name]) or JSON manifest")
    parser.add_argument("--out", type=Path, required=True, help="output folder: DIR/<name>/ per video, DIR/summary.csv")
    parser.add_argument("--scheduler", help="address of a running dask scheduler (default: a LocalCluster here)")
    parser.add_argument("--workers", type=int, help="LocalCluster worker processes (default: one per core, "
                                                    "fewer where memory is short)")
    parser.add_argument("--force", action="store_true", help="redo finished videos and frames")
    parser.add_argument("--method", default=None, help="propagation method (default: osvos)")
    parser.add_argument("--preset", default=None, help="the method's preset (osvos: default, fast, quality)")
    parser.add_argument("--steps", type=int, help="fine-tuning steps (default: the library's)")
    parser.add_argument("--input-size", type=int, help="long side frames are resized to for tuning and propagation")
    parser.add_argument("--split", type=int, metavar="FRAMES",
                        help="videos longer than FRAMES frames: tune once, then propagate ranges of FRAMES frames "
                             "on several workers (methods that go frame by frame: split at annotated frames)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def options_of(args) -> dict:
    """The method options the flags give (osvos's; None: the library's)."""
    from ..video import propagators

    if propagators.get(args.method).name != "osvos":
        return {}
    return {"steps": args.steps, "input_long_side": args.input_size}


def run(args, networks=None) -> int:
    from .. import batch
    from ..progress import drain
    from ..types import InputError

    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be >= 1")
    if args.split is not None and args.split < 1:
        raise InputError("--split must be >= 1 frame")
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    problems = []

    def warn(line):  # a row that cannot run: on stderr, even with --quiet
        problems.append(line)
        print(f"napari-vidseg batch: {line}", file=sys.stderr)

    rows = drain(batch.run_batch(args.manifest, args.out, args.scheduler, args.workers, args.force, args.split,
                                 args.method, args.preset, options_of(args), networks=networks, say=say, warn=warn),
                 quiet=args.quiet)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "skipped", "failed")}
    say(f"{counts['done']} done, {counts['skipped']} skipped (finished before), {counts['failed']} failed; "
        f"summary: {args.out / 'summary.csv'}")
    for r in rows:
        if r["status"] == "failed" and r["error"] not in problems:
            print(f"napari-vidseg batch: {r['name']}: {r['error']}", file=sys.stderr)
    return 1 if counts["failed"] else 0
