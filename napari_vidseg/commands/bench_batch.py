"""`napari-vidseg bench-batch`: batch throughput with 1 and 2 workers, and one long video split.

Generates synthetic mp4 clips (a disk moving over noise, one click on it on
frame 0) in a temporary folder, then times `batch` runs on a fresh LocalCluster
each: VIDEOS clips with 1 worker and with 2 workers, and one clip of LONG
frames on 1 worker whole against 2 workers with --split LONG/2. Cluster start
and network loading (once per worker) are timed apart; throughput is frames
(all videos) over the seconds from submitting the jobs to the last one done.
The LAST line printed is one JSON object with every figure.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def configure(parser) -> None:
    parser.add_argument("--videos", type=int, default=4, help="clips in the many-videos runs (default 4)")
    parser.add_argument("--frames", type=int, default=30, help="frames per clip (default 30)")
    parser.add_argument("--long", type=int, default=120, help="frames of the long clip (default 120)")
    parser.add_argument("--size", default="320x180", help="WxH of the clips (default 320x180)")
    parser.add_argument("--steps", type=int, default=20, help="fine-tuning steps (default 20)")
    parser.add_argument("--input-size", type=int, default=160, help="network input long side (default 160)")
    parser.add_argument("--preset", default="fast", help="OSVOS preset (default fast: one tuning, no second opinion)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")


def _clip(path: Path, T: int, W: int, H: int, seed: int) -> tuple[int, int]:
    """A red disk moving right over dark noise; returns its centre on frame 0."""
    import imageio_ffmpeg

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    bg = (rng.random((H, W, 3)) * 80).astype(np.uint8)
    r, x0, step = H // 6, W // 5, max(1, (W * 3 // 5) // max(T, 1))
    writer = imageio_ffmpeg.write_frames(str(path), (W, H), fps=25, quality=9, macro_block_size=1)
    writer.send(None)
    try:
        for t in range(T):
            f = bg.copy()
            f[(xx - (x0 + (step * t) % (W - 2 * x0))) ** 2 + (yy - H // 2) ** 2 <= r * r] = (220, 60, 40)
            writer.send(np.ascontiguousarray(f))
    finally:
        writer.close()
    return x0, H // 2


def _timed_run(manifest: Path, out: Path, workers: int, args, split: int | None = None) -> dict:
    from .. import batch
    from ..progress import drain

    t0 = time.perf_counter()
    client = batch.connect(workers=workers)
    try:
        t1 = time.perf_counter()
        client.run(batch.worker_networks)  # loaded once per worker, before the clock
        t2 = time.perf_counter()
        entries = batch.read_manifest(manifest)
        batch.build_jobs(entries, out, preset=args.preset, options={"steps": args.steps,
                                                                    "input_long_side": args.input_size})
        rows = drain(batch.run_manifest(entries, client, split=split), quiet=True)
        t3 = time.perf_counter()
    finally:
        batch.close(client)
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        raise RuntimeError(f"bench run failed: {failed[0]['error']}")
    frames = sum(int(r["frames"]) for r in rows)
    return {"workers": workers, "split": split, "videos": len(rows), "frames": frames,
            "cluster_start_s": round(t1 - t0, 2), "load_networks_s": round(t2 - t1, 2),
            "seconds": round(t3 - t2, 2), "fps": round(frames / (t3 - t2), 2),
            "per_video_s": [r["seconds"] for r in rows]}


def run(args) -> int:
    from .bench_memory import _parse_size

    W, H = _parse_size(args.size)
    counts = [int(c) for c in args.workers.split(",")]
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name'"], capture_output=True, text=True).stdout.strip()
    result = {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "size": f"{W}x{H}",
              "steps": args.steps, "input_size": args.input_size, "preset": args.preset,
              "load_average_before": os.getloadavg()[0], "runs": []}
    print(cpu, flush=True)
    with tempfile.TemporaryDirectory(prefix="vidseg-bench-batch-") as tmp:
        tmp = Path(tmp)
        lines = ["video,clicks"]
        for i in range(args.videos):
            x, y = _clip(tmp / f"v{i}.mp4", args.frames, W, H, seed=i)
            (tmp / f"v{i}.csv").write_text(f"frame,x,y,positive\n0,{x},{y},1\n")
            lines.append(f"v{i}.mp4,v{i}.csv")
        (tmp / "many.csv").write_text("\n".join(lines) + "\n")
        x, y = _clip(tmp / "long.mp4", args.long, W, H, seed=99)
        (tmp / "long.csv").write_text(f"frame,x,y,positive\n0,{x},{y},1\n")
        (tmp / "long_manifest.csv").write_text("video,clicks\nlong.mp4,long.csv\n")
        for n in counts:
            r = _timed_run(tmp / "many.csv", tmp / f"out-many-{n}", n, args)
            print(f"{r['videos']} videos x {args.frames} frames, {n} worker(s): {r['fps']} frames/s "
                  f"({r['seconds']} s; cluster start {r['cluster_start_s']} s, networks {r['load_networks_s']} s)",
                  flush=True)
            result["runs"].append({"case": "many", **r})
        r = _timed_run(tmp / "long_manifest.csv", tmp / "out-long-1", 1, args)
        print(f"long video ({args.long} frames), 1 worker, whole: {r['fps']} frames/s ({r['seconds']} s)", flush=True)
        result["runs"].append({"case": "long", **r})
        n = max(counts)
        half = (args.long + 1) // 2
        r = _timed_run(tmp / "long_manifest.csv", tmp / f"out-long-{n}", n, args, split=half)
        print(f"long video ({args.long} frames), {n} workers, --split {half}: {r['fps']} frames/s "
              f"({r['seconds']} s)", flush=True)
        result["runs"].append({"case": "long-split", **r})
    result["load_average_after"] = os.getloadavg()[0]
    text = json.dumps(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0
