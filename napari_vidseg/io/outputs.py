"""Checks on where a job writes, made before any work starts, so that nothing the user
made is overwritten and a full or read-only disk is found in a second, not after an hour.

    check_not_input(video, out, "--out")              # not the input, not inside it, not a file
    check_output_folder(out, owned=..., overwrite=...)  # empty, ours, or --overwrite
    check_space({out: bytes, session: bytes})         # writable, and enough free space
    describe_os_error(e)                              # one line naming the path

Nothing here imports torch; the CLI and the widget can use it alike.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from ..types import InputError

#: names `export` writes into a mask folder; the only files --overwrite may remove
MASK_NAME = re.compile(r"^\d{5,}\.png$")
#: a mask file's temporary name while it is written (io/masks.py write_mask_png)
MASK_TMP = re.compile(r"^\.\d{5,}\.png\.\d+\.tmp$")
#: the output folder's lock file (io/folder_lock.py): not counted as content
OUTPUT_LOCK = ".vidseg-output.lock"


def _resolved(p) -> Path:
    return Path(p).expanduser().resolve()


def check_not_input(video, path, what: str, folder: bool) -> None:
    """Refuse an output path that is the input, lies inside an input folder, or (for a folder
    output) is an existing file / (for a file output) an existing folder."""
    if path is None:
        return
    p = Path(path).expanduser()
    if video is not None and isinstance(video, (str, os.PathLike)):
        src, dst = _resolved(video), _resolved(p)
        if dst == src:
            raise InputError(f"{what} {p} is the input video itself: it would be overwritten; "
                             f"choose another path")
        if src.is_dir() and src in dst.parents:
            raise InputError(f"{what} {p} lies inside the input frame folder {video}: the outputs would "
                             f"mix with (or overwrite) the frames; choose a path outside it")
    if folder and p.exists() and not p.is_dir():
        raise InputError(f"{what} {p} is a file, not a folder; give a folder (it is made if missing)")
    if not folder and p.is_dir():
        raise InputError(f"{what} {p} is a folder; give a file name (e.g. {p / 'out'}{p.suffix or ''})")


def foreign_entries(folder: Path) -> list[str]:
    """What a folder holds besides our lock file and our temporary mask files (names, sorted)."""
    if not folder.is_dir():
        return []
    return sorted(e.name for e in os.scandir(folder) if e.name != OUTPUT_LOCK and not MASK_TMP.match(e.name))


def check_output_folder(out: Path, owned: bool, overwrite: bool) -> None:
    """An existing, non-empty output folder is refused unless it is this session's own output
    (a re-run) or the user said --overwrite."""
    if owned or overwrite:
        return
    entries = foreign_entries(out)
    if entries:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise InputError(f"the output folder {out} is not empty ({shown}) and was not written by this "
                         f"session: give an empty or new folder, or --overwrite to replace its masks")


def remove_stale_masks(out: Path, n_frames: int) -> list[str]:
    """Delete mask files (00000.png, ...) numbered past the video's last frame: left by an
    older, longer job, they would mix with this one's. Also the temporary files of a run
    killed mid-write (the caller holds the folder's lock: none is being written). Other
    files are never touched. Returns the mask files removed."""
    removed = []
    for e in os.scandir(out):
        if MASK_NAME.match(e.name) and int(e.name[:-4]) >= n_frames:
            os.unlink(e.path)
            removed.append(e.name)
        elif MASK_TMP.match(e.name):
            os.unlink(e.path)
    return sorted(removed)


def _existing_ancestor(p: Path) -> Path:
    p = Path(p).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(folder: Path) -> None:
    """Make `folder` (and its parents) and write and remove a probe file in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".vidseg-probe-{os.getpid()}"
        with open(probe, "wb") as f:
            f.write(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise InputError(f"cannot write in {folder}: {e.strerror or e} (read-only or no permission?)") from None


def check_space(needs: dict[Path, int], margin: float = 1.2) -> None:
    """Enough free space for `needs` (path -> bytes it will take), summed per file system."""
    per_device: dict[int, tuple[Path, int]] = {}
    for path, n in needs.items():
        base = _existing_ancestor(path)
        dev = os.stat(base).st_dev
        prev = per_device.get(dev, (base, 0))
        per_device[dev] = (prev[0], prev[1] + int(n))
    for base, n in per_device.values():
        free = shutil.disk_usage(base).free
        if free < n * margin:
            raise InputError(f"not enough free space on the disk of {base}: the outputs need about "
                             f"{_mb(n * margin)}, {_mb(free)} is free; free some space or write elsewhere")


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


def describe_os_error(e: OSError) -> str:
    """One line: the path and the problem (no traceback)."""
    path = e.filename if e.filename is not None else "a file"
    why = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        why = "the disk is full"
    elif e.errno == errno.EROFS:
        why = "the file system is read-only"
    elif e.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
    return f"cannot write {path}: {why}"
