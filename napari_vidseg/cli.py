"""`napari-vidseg` command line: one subcommand per job.

Each subcommand lives in its own module with `configure(parser)` and
`run(args) -> int`; modules are imported only when their command runs, so
`napari-vidseg --help` is instant (no torch import).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .types import InputError

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("napari_vidseg.commands.segment", "segment a video from a CSV of clicks and export masks, sticker, composite"),
    "batch": ("napari_vidseg.commands.batch", "segment the videos of a manifest on a dask.distributed cluster"),
    "sample": ("napari_vidseg.commands.sample", "write the bundled sample clip to a video file"),
    "eval-interactive": ("napari_vidseg.eval.interactive", "NoC benchmark of the interactive segmenter (or GrabCut) on an image set"),
    "eval-video": ("napari_vidseg.eval.video", "DAVIS J/F benchmark of one-shot video propagation"),
    "eval-ctc": ("napari_vidseg.eval.ctc", "Cell Tracking Challenge benchmark: many look-alike objects tracked (SEG, track J, identity)"),
    "eval-correction": ("napari_vidseg.eval.correction", "worst-frame correction benchmark (the paper's Table 3)"),
    "bench-video": ("napari_vidseg.commands.bench_video", "lazy video reading benchmark against raw ffmpeg"),
    "bench-batch": ("napari_vidseg.commands.bench_batch", "batch throughput with 1 and 2 workers, and one long video split"),
    "bench-memory": ("napari_vidseg.commands.bench_memory", "peak memory of propagation through a long synthetic video"),
    "bench-widget": ("napari_vidseg._napari.bench_widget", "peak memory of napari with the widget docked on a long video (needs a display)"),
    "bench": ("napari_vidseg.commands.bench", "benchmarks that print JSON: objects (many objects in one pass)"),
}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="napari-vidseg",
        description="Interactive video object segmentation: clicks, propagation, correction, export.",
        epilog="Run `napari-vidseg COMMAND --help` for a command's options.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        if not argv:
            parser.print_help()
            return 2
        parser.parse_args(argv)  # prints help or a clear "invalid choice" error
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"napari-vidseg {name}", description=COMMANDS[name][1])
    module.configure(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except InputError as e:
        print(f"napari-vidseg {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-vidseg {name}: interrupted; work saved so far is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
