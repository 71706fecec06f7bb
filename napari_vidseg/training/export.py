"""Turn a training checkpoint into a shipped weights file and print its SHA-256.

    python -m napari_vidseg.training.export checkpoints/interactive/last.pt \
        --name interactive --out weights/interactive_v8.pt

Record the printed checksum in napari_vidseg/models/registry.py (MODELS) and
the figures in the model card; commit only a version that beats the shipped
one on the benchmark.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..models.registry import MODELS, save_weights
from ..models.vidsegnet import VidSegNet


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", choices=sorted(MODELS), required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    net = VidSegNet(in_channels=MODELS[args.name].in_channels)
    net.load_state_dict(state["model"] if "model" in state else state, strict=True)
    digest = save_weights(net, args.out)
    print(f"{args.out}  {args.out.stat().st_size / 1e6:.1f} MB  sha256 {digest}")


if __name__ == "__main__":
    main()
