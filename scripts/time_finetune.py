#!/usr/bin/env python
"""Time one-shot fine-tuning on one annotated DAVIS frame, in a fresh process
(as the first propagation of a session pays it): the cached-features stage,
the steps, and whether torch._dynamo was imported on the way.

    python scripts/time_finetune.py [--sequence blackswan] [--steps N] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "davis2016"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--davis", type=Path, default=DAVIS)
    p.add_argument("--sequence", default="blackswan")
    p.add_argument("--steps", type=int, default=None, help="default: FinetuneConfig's")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from napari_vidseg.eval.davis import open_sequence, read_mask
    from napari_vidseg.video.finetune import FinetuneConfig, finetune, load_parent

    torch.set_num_threads(args.threads)
    config = FinetuneConfig() if args.steps is None else FinetuneConfig(steps=args.steps)
    seq = open_sequence(args.davis, args.sequence)  # frame 0 and its mask, read as eval-video reads them
    frame, mask = seq.source().frame(0), read_mask(seq.mask_files()[0])
    parent = load_parent("cpu")
    t0 = time.perf_counter()
    first_step = None  # when the first step is done
    for prog in finetune(parent, [frame], [mask], config):
        if prog.stage == "finetune" and first_step is None:
            first_step = time.perf_counter()
    end = time.perf_counter()
    first_step = first_step or end
    print(f"{args.sequence} {frame.shape[1]}x{frame.shape[0]}, {config.steps} steps, input {config.input_long_side}, {args.threads} threads: "
          f"total {end - t0:.1f} s (features and first step {first_step - t0:.1f} s, "
          f"then {1e3 * (end - first_step) / max(config.steps - 1, 1):.0f} ms a step); "
          f"torch._dynamo imported: {'torch._dynamo' in sys.modules}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
