"""Propagation speed (ms/frame) at DAVIS 480p for several network input sizes
and inference options, on frames of a DAVIS TRAINING sequence (240p) upscaled
to 854x480 (the speed depends on the frame size, not on its content).

    python scripts/bench_propagate_speed.py --weights checkpoints/parent/last.pt --sizes 320,384,448,512
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main(argv=None) -> None:
    import torch

    from napari_vidseg.models.registry import build
    from napari_vidseg.video.finetune import FinetuneConfig
    from napari_vidseg.video.propagate import propagate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/davis2016"))
    ap.add_argument("--sequence", default="bear")
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--sizes", default="320,384,448,512")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--options", default="fused,unfused,bf16", help="comma list: fused, unfused, bf16")
    args = ap.parse_args(argv)
    d = args.data / "JPEGImages" / "240p" / args.sequence
    files = sorted(d.glob("*.jpg"))[: args.frames]
    video = np.stack([np.asarray(Image.open(f).convert("RGB").resize((854, 480), Image.BILINEAR)) for f in files])
    net = build("parent", path=args.weights, check=False) if args.weights else build("parent")
    mask0 = np.zeros(video.shape[1:3], bool)
    mask0[100:300, 300:500] = True
    out = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for opt in args.options.split(","):
            cfg = FinetuneConfig(input_long_side=size, fuse=opt != "unfused", bf16=opt == "bf16")
            list(propagate(net, video[:9], {0: mask0}, cfg))  # warm-up (oneDNN kernels)
            t0 = time.perf_counter()
            n = sum(1 for r in propagate(net, video, {0: mask0}, cfg) if not r.annotated)
            ms = 1000 * (time.perf_counter() - t0) / n
            row = {"input_long_side": size, "option": opt, "ms_per_frame": round(ms, 1),
                   "fps": round(1000 / ms, 1), "threads": torch.get_num_threads()}
            print(json.dumps(row), flush=True)
            out.append(row)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
