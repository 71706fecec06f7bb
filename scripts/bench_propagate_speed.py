"""Propagation speed (ms/frame) for several network input sizes and inference
options, on a DAVIS sequence's frames held in memory (no decoding: this times
propagation itself). The frames play forward then backward to make the clip
long enough; --frame-size resizes them (e.g. 1920x1080 to time large frames).

    python scripts/bench_propagate_speed.py --sizes 864,448
    python scripts/bench_propagate_speed.py --sizes 128 --frame-size 1920x1080 --frames 40

Prints one JSON line per (size, option) and a JSON list last. To see where one
setting's time goes (decoding, resizing, network, clean-up), on a CPU or a GPU,
use scripts/bench_propagation.py.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


def load_clip(root: Path, resolution: str, sequence: str, n: int, frame_size: str | None):
    files = sorted((root / "JPEGImages" / resolution / sequence).glob("*.jpg"))
    if not files:
        raise SystemExit(f"no frames in {root / 'JPEGImages' / resolution / sequence}")
    frames = [Image.open(f).convert("RGB") for f in files]
    mask = Image.open(root / "Annotations" / resolution / sequence / (files[0].stem + ".png")).convert("L")
    if frame_size:
        w, h = (int(v) for v in frame_size.lower().split("x"))
        frames = [f.resize((w, h), Image.BILINEAR) for f in frames]
        mask = mask.resize((w, h), Image.NEAREST)
    video = np.stack([np.asarray(f) for f in frames])
    while len(video) < n:  # ping-pong
        video = np.concatenate([video, video[::-1]])
    return video[:n], np.asarray(mask) > 0


def main(argv=None) -> None:
    import torch

    from napari_vidseg.models.registry import build
    from napari_vidseg.video.finetune import FinetuneConfig
    from napari_vidseg.video.propagate import propagate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/davis2016"))
    ap.add_argument("--resolution", default="480p")
    ap.add_argument("--sequence", default="blackswan")
    ap.add_argument("--frame-size", default=None, help="WxH to resize the frames to")
    ap.add_argument("--weights", type=Path, default=None, help="parent weights (default: shipped)")
    ap.add_argument("--sizes", default="864,448")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--options", default="fused", help="comma list: fused, unfused, bf16, int8")
    args = ap.parse_args(argv)
    video, mask0 = load_clip(args.data, args.resolution, args.sequence, args.frames, args.frame_size)
    net = build("parent", path=args.weights, check=False) if args.weights else build("parent")
    out = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for opt in args.options.split(","):
            cfg = FinetuneConfig(input_long_side=size, fuse=opt != "unfused", bf16=opt == "bf16", int8=opt == "int8")
            list(propagate(net, video[:9], {0: mask0}, cfg))  # warm-up (oneDNN kernels)
            t0 = time.perf_counter()
            n = sum(1 for r in propagate(net, video, {0: mask0}, cfg) if not r.annotated)
            ms = 1000 * (time.perf_counter() - t0) / n
            row = {"frame_size": f"{video.shape[2]}x{video.shape[1]}", "input_long_side": size, "option": opt,
                   "ms_per_frame": round(ms, 1), "fps": round(1000 / ms, 2), "frames": n,
                   "threads": torch.get_num_threads()}
            print(json.dumps(row), flush=True)
            out.append(row)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
