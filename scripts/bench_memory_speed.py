"""Time from the last click to every frame segmented, with the memory propagator, on one DAVIS sequence.

    python scripts/bench_memory_speed.py ../shared/data/davis2016 bmx-trees --resolution 480p [--preset fast]

Opens the sequence's frames as a video, sets the true first mask (what the last click gives), and times
VideoSession.propagate over every other frame: wall seconds and this process's CPU seconds (on a machine
shared with other work the CPU seconds are the steadier figure), frames/s, and the CPU model and load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("sequence")
    ap.add_argument("--resolution", default="480p")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from napari_vidseg.eval.davis import open_sequence
    from napari_vidseg.eval.video import machine
    from napari_vidseg.models.registry import build
    from napari_vidseg.progress import drain
    from napari_vidseg.video.session import VideoSession

    seq = open_sequence(args.root, args.sequence, args.resolution)
    truth = seq.masks()
    s = VideoSession.create(seq.source())
    s.set_parent(build("parent", torch.device("cpu")))
    o = s.add_object("object")
    s.set_mask(0, o, truth[0])
    load0 = os.getloadavg()
    w0, c0 = time.perf_counter(), time.process_time()
    summary = drain(s.propagate(method="memory", config=_config(args.preset)), quiet=True)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = summary["computed"]
    print(json.dumps({"sequence": args.sequence, "resolution": args.resolution, "preset": args.preset,
                      "frames": n, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "fps_wall": round(n / wall, 2), "fps_cpu": round(n / cpu, 2),
                      "load_before": load0, "load_after": os.getloadavg(), "machine": machine(),
                      "python": platform.python_version()}))


def _config(preset):
    from napari_vidseg.video import propagators

    return propagators.make_config("memory", preset=preset)


if __name__ == "__main__":
    main()
