#!/usr/bin/env python
"""Time one-shot fine-tuning on one annotated DAVIS frame, in a fresh process
(as the first propagation of a session pays it): the cached-features stage,
the steps, and whether torch._dynamo was imported on the way.

    python scripts/time_finetune.py [--sequence blackswan] [--steps 150] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "davis2016"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--davis", type=Path, default=DAVIS)
    p.add_argument("--sequence", default="blackswan")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from napari_vidseg.video.finetune import FinetuneConfig, finetune, load_parent

    torch.set_num_threads(args.threads)
    frame = np.asarray(Image.open(args.davis / "JPEGImages/480p" / args.sequence / "00000.jpg").convert("RGB"))
    mask = np.asarray(Image.open(args.davis / "Annotations/480p" / args.sequence / "00000.png")) > 0
    parent = load_parent("cpu")
    t0 = time.perf_counter()
    first_step = None
    for prog in finetune(parent, [frame], [mask], FinetuneConfig(steps=args.steps)):
        if prog.stage == "finetune" and first_step is None:
            first_step = time.perf_counter()
    total = time.perf_counter() - t0
    steps_s = total - (first_step - t0) if first_step else 0.0
    print(f"{args.sequence} {frame.shape[1]}x{frame.shape[0]}, {args.steps} steps, {args.threads} threads: "
          f"total {total:.1f} s (features and first step {total - steps_s:.1f} s, "
          f"then {1e3 * steps_s / max(args.steps - 1, 1):.0f} ms a step); "
          f"torch._dynamo imported: {'torch._dynamo' in sys.modules}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
