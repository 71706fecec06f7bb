"""`napari-vidseg sample [OUT.mp4] [--print-path]`: write (or locate) the bundled sample clip."""
from __future__ import annotations

import shutil
from pathlib import Path


def configure(parser) -> None:
    parser.add_argument("out", nargs="?", type=Path, help="where to write the clip (mp4); default: print the cached copy")
    parser.add_argument("--print-path", action="store_true",
                        help="print the path of the cached sample clip (written on first use) and exit")
    parser.add_argument("--truth", type=Path, default=None,
                        help="also write the true masks as a folder of PNGs (DAVIS layout)")


def run(args) -> int:
    from ..sample import sample_clip_path, sample_truth

    cached = sample_clip_path()
    if args.print_path or args.out is None:
        print(cached)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, args.out)
        print(f"wrote {args.out}")
    if args.truth is not None:
        from ..io.masks import write_mask_folder

        truth = sample_truth()
        write_mask_folder(args.truth, ((t, truth[t]) for t in range(len(truth))))
        print(f"wrote {len(truth)} true masks to {args.truth}")
    return 0
