"""Time of propagation's second opinion (video/refine.py) per frame, for crop
sizes in float32 and in bfloat16 autocast, on DAVIS val frames at the network's
input size (864 px long side at 480p), each with its true mask as the seed.

    python scripts/time_second_opinion.py ../shared/data/davis2016 --sizes 320,448 --threads 2

Also prints how often the bf16 and float32 masks agree per pixel. Every
(size, precision) runs the frames twice; the second run is the one timed.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> None:
    from napari_vidseg.eval.davis import open_sequence
    from napari_vidseg.video.finetune import input_size, resize_mask, resize_rgb
    from napari_vidseg.video.refine import MaskRefiner

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("davis_root", type=Path)
    ap.add_argument("--sequences", default="car-roundabout,dance-twirl,bmx-trees,blackswan")
    ap.add_argument("--sizes", default="320,448")
    ap.add_argument("--long-side", type=int, default=864, help="the propagation network's input size")
    ap.add_argument("--frames", type=int, default=10, help="frames per sequence (every 4th from frame 1)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cases = []
    for name in args.sequences.split(","):
        seq = open_sequence(args.davis_root, name, "480p")
        src, masks = seq.source(), seq.masks()
        size = input_size(*masks.shape[1:], args.long_side)
        for t in range(1, min(len(masks), 1 + 4 * args.frames), 4):
            seed = resize_mask(masks[t], size) > 0.5
            prob = np.where(seed, 0.8, 0.1).astype(np.float32)  # a propagated frame's stand-in
            cases.append((resize_rgb(src.frame(t), size), prob, seed))
    ms, logits = {}, {}
    for size in (int(s) for s in args.sizes.split(",")):
        for bf16 in (False, True):
            refiner = MaskRefiner(input_size=size, bf16=bf16)
            for _ in range(2):
                t0 = time.perf_counter()
                out = [refiner(img, prob, seed) for img, prob, seed in cases]
                spent = time.perf_counter() - t0
            key = f"{size}_{'bf16' if bf16 else 'f32'}"
            ms[key], logits[key] = round(1000 * spent / len(cases), 1), out
            print(f"crop {size}, {'bf16   ' if bf16 else 'float32'}: {ms[key]:5.1f} ms a frame", flush=True)
    agree = {}
    for size in (int(s) for s in args.sizes.split(",")):
        a, b = logits[f"{size}_f32"], logits[f"{size}_bf16"]
        agree[size] = round(float(np.mean([((x > 0) == (y > 0)).mean() for x, y in zip(a, b)])), 6)
        print(f"crop {size}: bf16 and float32 masks agree on {100 * agree[size]:.3f} % of pixels")
    print(json.dumps({"frames": len(cases), "threads": torch.get_num_threads(), "ms_per_frame": ms,
                      "pixel_agreement": agree}))


if __name__ == "__main__":
    main()
