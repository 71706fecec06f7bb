"""`napari-vidseg bench NAME ...`: benchmarks that print one JSON object (the last line).

    napari-vidseg bench objects DAVIS_ROOT [--sequence blackswan] [--counts 1,3,10,30]

objects: the cost of propagating many objects in one pass. The sequence's
true first-frame mask is cut into N parts of equal area (vertical strips, by
column quantiles of its pixels), each part one object annotated on frame 0;
`VideoSession.propagate` segments all N at once with the default method and
options. Every N runs in a fresh process (peak RSS is the process's
getrusage maximum), in the order given (largest first is the cautious order
on a shared machine: a load that eases later flatters the small counts less).
Reports wall time (tuning and propagation together), the seconds in each
stage, time to the first propagated frame, peak RSS, the J of the union of
the objects against the true masks, and each N's time over the fewest objects'.
"""
from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCHES = ("objects",)


def configure(parser) -> None:
    parser.add_argument("name", choices=BENCHES, help="which benchmark")
    parser.add_argument("davis_root", type=Path, help="DAVIS root (JPEGImages/, Annotations/)")
    parser.add_argument("--sequence", default="blackswan", help="the DAVIS sequence (default blackswan)")
    parser.add_argument("--resolution", default="480p")
    parser.add_argument("--counts", default="1,3,10,30", help="numbers of objects, comma-separated")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames (default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    parser.add_argument("--child", type=int, default=None, help=argparse_hidden())


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def split_mask(mask: np.ndarray, n: int) -> list[np.ndarray]:
    """`mask` cut into n vertical strips holding equal numbers of its pixels (empty ones dropped)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return []
    edges = np.quantile(xs, np.linspace(0, 1, n + 1))
    parts = []
    for k in range(n):
        lo, hi = edges[k], edges[k + 1]
        keep = (xs >= lo) & ((xs < hi) if k < n - 1 else (xs <= hi))
        part = np.zeros_like(mask, dtype=bool)
        part[ys[keep], xs[keep]] = True
        if part.any():
            parts.append(part)
    return parts


def _child(args) -> dict:
    import torch

    from ..eval.davis import j_score, open_sequence
    from ..progress import drain
    from ..video.session import VideoSession

    if args.threads:
        torch.set_num_threads(args.threads)
    seq = open_sequence(args.davis_root, args.sequence, args.resolution)
    truth = seq.masks()
    source = seq.source()
    if args.frames:
        from ..io.video import VideoSource

        source = VideoSource.open(seq.frame_dir)
        source = _FirstFrames(source, args.frames)
        truth = truth[:args.frames]
    session = VideoSession.create(source)
    parts = split_mask(truth[0], args.child)
    for part in parts:
        session.set_mask(0, session.add_object(), part)
    t0 = time.perf_counter()
    first = None
    job = session.propagate(None)
    stages: dict[str, float] = {}
    last = t0
    for p in job:
        now = time.perf_counter()
        stages[p.stage] = stages.get(p.stage, 0.0) + now - last
        last = now
        if first is None and p.stage == "propagate" and p.frame is not None:
            first = now - t0
    wall = time.perf_counter() - t0
    union = [np.any([session.masks.get_or_empty(o, t) for o in session.objects], 0) for t in range(len(truth))]
    j = float(np.mean([j_score(u, g) for u, g in list(zip(union, truth))[1:]]))
    return {"objects": len(parts), "seconds": round(wall, 2), "first_frame_s": round(first or 0.0, 2),
            "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "union_j": round(j, 4), "frames": len(truth)}


class _FirstFrames:
    """The first n frames of a VideoSource."""

    def __init__(self, source, n):
        self.source, self.n_frames = source, min(int(n), int(source.n_frames))
        self.height, self.width, self.fps = source.height, source.width, getattr(source, "fps", 25.0)

    def frame(self, t):
        return self.source.frame(t)

    def frames(self, start, stop):
        return self.source.frames(start, min(stop, self.n_frames))

    def __len__(self):
        return self.n_frames


def run(args) -> int:
    if args.child is not None:
        print(json.dumps(_child(args)), flush=True)
        return 0
    from ..eval.video import machine

    counts = [int(c) for c in str(args.counts).split(",") if c.strip()]
    runs = []
    for n in counts:
        cmd = [sys.executable, "-m", "napari_vidseg.cli", "bench", "objects", str(args.davis_root),
               "--sequence", args.sequence, "--resolution", args.resolution, "--child", str(n)]
        if args.frames:
            cmd += ["--frames", str(args.frames)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        result = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(result)
        print(f"{n:3d} objects: {result['seconds']:7.1f} s, peak RSS {result['peak_rss_mb']:7.1f} MB, "
              f"union J {result['union_j']:.3f}", file=sys.stderr, flush=True)
    base = min(runs, key=lambda r: r["objects"])["seconds"] if runs else 0
    for r in runs:
        r["time_over_one"] = round(r["seconds"] / base, 2) if base else None  # over the fewest objects' time
    print(json.dumps({"bench": "objects", "sequence": args.sequence, "resolution": args.resolution,
                      "runs": runs, "machine": {**machine(), "python": platform.python_version()},
                      "command": " ".join(["napari-vidseg", "bench", *sys.argv[2:]] if len(sys.argv) > 1 else [])}))
    return 0
