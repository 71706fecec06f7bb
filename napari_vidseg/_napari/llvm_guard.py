"""Keep torch from loading triton into a viewer whose OpenGL driver already loaded LLVM.

Mesa's software OpenGL (llvmpipe: Xvfb, virtual machines, remote desktops,
WSL) maps the system's libLLVM into the process when napari creates its
canvas.  triton's ``libtriton.so`` carries its own copy of LLVM, and loading it
next to the system one crashes the process (a segmentation fault in LLVM's
start-up code), on any thread.  torch imports triton lazily: the first optimizer
made in a process imports ``torch._dynamo``, which asks whether triton is
installed by importing it.  So the first propagation (the fine-tuning made a
torch.optim.Adam) took the whole viewer down.  Fine-tuning now uses its own
Adam (video/finetune.py LeanAdam) and imports neither, but any other torch
path that reaches torch._dynamo would, so the guard stays.

This package never uses ``torch.compile`` (the only user of triton), and a
process that has the system LLVM loaded cannot load triton anyway, so in that
case triton is marked as absent (``sys.modules["triton"] = None``): the import
then fails cleanly and torch runs without it.  Nothing changes where triton is
already imported, or where no system LLVM is loaded (hardware OpenGL drivers,
scripts without a viewer).
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)


def system_llvm_loaded(maps_text: str | None = None) -> bool:
    """True if a shared libLLVM other than triton's is mapped into this process (Linux).

    maps_text: the text of /proc/self/maps (read when None; False where there is none).
    """
    if maps_text is None:
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
                maps_text = f.read()
        except OSError:
            return False
    for line in maps_text.splitlines():
        fields = line.split(None, 5)  # address perms offset device inode path
        if len(fields) < 6:
            continue
        path = fields[5].strip()
        name = path.rsplit("/", 1)[-1]
        if name.startswith("libLLVM") and "triton" not in path.lower():
            return True
    return False


def keep_triton_out(maps_text: str | None = None) -> bool:
    """Mark triton absent if importing it now would crash; True when it is kept out."""
    if "triton" in sys.modules:
        return sys.modules["triton"] is None  # kept out already, or loaded safely before
    if not system_llvm_loaded(maps_text):
        return False
    sys.modules["triton"] = None
    log.info("the OpenGL driver loaded the system LLVM: triton is kept out of this process "
             "(loading its own LLVM next to it would crash; napari-vidseg does not need it)")
    return True
