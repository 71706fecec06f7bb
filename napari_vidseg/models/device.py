"""GPU out of memory: recognise it and fall back to the CPU with a message.

The interactive predictor, fine-tuning and propagation run on the device that
`registry.select_device()` picked (CUDA, then Apple MPS). A frame or a batch
that does not fit in the GPU's memory must not end the user's work: each of
them catches the error with `is_gpu_oom`, announces the switch with
`announce_cpu_fallback` (a `GPUFallbackWarning`, which napari shows as a
notification, plus a log line) and carries on on the CPU. The pattern:

    try:
        out = run(device)
    except Exception as e:
        if not is_gpu_oom(e, device):
            raise
        failed = True   # retry outside the except block: its traceback holds GPU tensors
    if failed:
        announce_cpu_fallback("propagation", "continuing from frame 12", device)
        device = CPU
        out = run(device)
"""
from __future__ import annotations

import contextlib
import logging
import warnings

import torch

log = logging.getLogger(__name__)

CPU = torch.device("cpu")

#: Substrings of the messages of out-of-memory errors that do not come as
#: torch.OutOfMemoryError (older CUDA paths, MPS, cuDNN/cuBLAS allocations).
_OOM_TEXT = ("out of memory", "cudnn_status_alloc_failed", "cublas_status_alloc_failed")


class GPUFallbackWarning(RuntimeWarning):
    """The GPU ran out of memory; the work goes on on the CPU (slower)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` says that a device ran out of memory."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(s in text for s in _OOM_TEXT)
    return False


def is_gpu_oom(exc: BaseException, device) -> bool:
    """An out-of-memory error on a device that is not the CPU (one the CPU can stand in for).
    On the CPU itself there is nothing to fall back to, so that is never one."""
    return torch.device(device).type != "cpu" and is_out_of_memory(exc)


def release(device) -> None:
    """Hand the GPU's cached blocks back once the failed attempt's tensors are gone."""
    device = torch.device(device)
    try:
        if device.type == "cuda" and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        elif device.type == "mps":
            torch.mps.empty_cache()
    except Exception:  # best effort: a broken driver must not hide the fall-back
        pass


def fallback_message(what: str, detail: str = "") -> str:
    """'GPU out of memory during <what>: <detail or continuing> on the CPU (slower)'."""
    return f"GPU out of memory during {what}: {detail or 'continuing'} on the CPU (slower)"


def announce_cpu_fallback(what: str, detail: str = "", device=None) -> str:
    """Free the GPU cache, warn (GPUFallbackWarning) and log; returns the message."""
    if device is not None:
        release(device)
    msg = fallback_message(what, detail)
    log.warning(msg)
    warnings.warn(msg, GPUFallbackWarning, stacklevel=3)
    return msg


def bf16_autocast(device, enabled: bool):
    """bfloat16 autocast on `device` where `enabled` (CPU and CUDA), else a no-op context."""
    device = torch.device(device)
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
