"""Where propagation's time goes, stage by stage, on this machine (CPU or GPU).

    python scripts/bench_propagation.py ../shared/data/davis2016 --sequence car-roundabout [--device cuda]

Tunes the shipped parent on the sequence's true first mask, then times
`propagate()` end to end `--repeat` times (each on a fresh source, so frames
are decoded again; the first run also pays for a GPU's lazily loaded kernels).
Each run also reports, through propagate's `timings`, where its time went:

  read     the lazy source's frames (JPEG or video decoding)
  resize   to the network's input size
  network  to the device, the forward pass, logits upsampled and thresholded, back to the host
  cleanup  clean_frame (blobs far from the previous mask), the float16 copy and the confidence

The stages printed are the last run's.

The last line is one JSON object (milliseconds per frame for each stage,
frames per second end to end, seconds of tuning). To compare input sizes and
inference options (bf16, int8, BatchNorm folding) on frames held in memory,
use scripts/bench_propagate_speed.py.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("davis_root", type=Path)
    ap.add_argument("--sequence", default="car-roundabout")
    ap.add_argument("--resolution", default="480p")
    ap.add_argument("--device", default=None, help="cuda, cpu (default: the GPU when there is one)")
    ap.add_argument("--repeat", type=int, default=2, help="end-to-end propagation runs")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--input-long-side", type=int, default=None)
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                    help="the interactive segmenter's second opinion per frame (default: the library's)")
    ap.add_argument("--batch-infer", type=int, default=None, help="frames per forward pass (default: the library's)")
    ap.add_argument("--scales", default=None, help="comma list of multiples of the input size, e.g. 1,1.5")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_vidseg.eval.davis import Sequence
    from napari_vidseg.eval.video import parse_scales
    from napari_vidseg.models.registry import build, select_device
    from napari_vidseg.progress import drain
    from napari_vidseg.video.finetune import FinetuneConfig, finetune
    from napari_vidseg.video.propagate import propagate

    device = torch.device(args.device) if args.device else select_device()
    cfg = FinetuneConfig(flip=args.flip, bf16=args.bf16, batch_infer=args.batch_infer)
    if args.refine is not None:
        cfg.refine = args.refine
    if args.input_long_side:
        cfg.input_long_side = args.input_long_side
    if args.scales:
        cfg.scales = parse_scales(args.scales)
    seq = Sequence(args.sequence, args.davis_root / "JPEGImages" / args.resolution / args.sequence,
                   args.davis_root / "Annotations" / args.resolution / args.sequence)
    first_mask = seq.masks()[0]
    parent = build("parent", device)

    tune_s = []
    for _ in range(2):  # the first also loads a GPU's kernels
        source = seq.source()
        sync(device)
        t0 = time.perf_counter()
        tuned = drain(finetune(parent, [source.frame(0)], [first_mask], cfg), quiet=True)
        sync(device)
        tune_s.append(round(time.perf_counter() - t0, 2))
    fps = []
    for _ in range(args.repeat):
        source, spent = seq.source(), {}
        t0 = time.perf_counter()
        n = sum(not r.annotated for r in propagate(tuned, source, {0: first_mask}, cfg, timings=spent))
        fps.append(round(n / (time.perf_counter() - t0), 2))
    stages = {k: round(1000 * v / max(n, 1), 1) for k, v in spent.items()}
    for k, v in stages.items():
        print(f"{k:8s} {v:7.1f} ms/frame")
    print(f"sum      {sum(stages.values()):7.1f} ms/frame; end to end {fps} frames/s; tuning {tune_s} s")
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    print(json.dumps({"sequence": args.sequence, "device": str(device), "device_name": name,
                      "torch_threads": torch.get_num_threads(), "input_long_side": cfg.input_long_side,
                      "flip": cfg.flip, "refine": cfg.refine, "scales": list(cfg.scales), "bf16": cfg.bf16, "batch_infer": cfg.batch_infer, "stages_ms": stages, "propagate_fps": fps,
                      "finetune_seconds": tune_s}))


if __name__ == "__main__":
    main()
