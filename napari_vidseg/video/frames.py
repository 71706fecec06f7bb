"""Frames prepared for the video network: sizes, resizing, tensors, batch and
precision choices. Shared by fine-tuning (video/finetune.py), propagation
(video/propagate.py) and the second opinion (video/refine.py), so none of
them imports another for these."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..models.registry import cpu_has_native_bf16


def wants_bf16(config, device: torch.device) -> bool:
    """Whether propagation on `device` runs in bf16 autocast: never with int8
    on a CPU (int8 is its own reduced precision; its float fallback is
    float32), else config.bf16 as asked (CPU and CUDA only), and where it is
    None, on a CPU that computes bfloat16 natively."""
    if device.type not in ("cpu", "cuda") or (config.int8 and device.type == "cpu"):
        return False
    if config.bf16 is None:
        return device.type == "cpu" and cpu_has_native_bf16()
    return bool(config.bf16)


def forward_batch(device: torch.device) -> int:
    """Frames (or augmented copies) per forward pass where nothing asks otherwise: 2 on a CPU, 8 on a GPU.
    On the 2-core CPU larger batches are slower per frame and far larger in memory: the activations
    of 8 frames at 864x480 no longer fit the caches (session 14, docs/video.md). Propagation,
    car-roundabout: 56.8 against 32.8 ms a frame for the network; caching the features of 48 tuning
    copies at 1080p: 8.2 against 5.3 s and a peak RSS of 1,840 against 1,480 MB."""
    return 8 if device.type == "cuda" else 2


def input_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) of the network input: long side about `long_side`, multiples of 32."""
    s = long_side / max(height, width)
    return (max(int(round(height * s / 32)) * 32, 32), max(int(round(width * s / 32)) * 32, 32))


def resize_rgb(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (h, w, 3). PIL's bilinear filter widens its
    support when shrinking, so downscaled frames do not alias (and match the
    PIL-resized crops the parent was trained on)."""
    h, w = size
    if img.shape[:2] == (h, w):
        return np.ascontiguousarray(img)
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool (H, W) -> float32 (h, w) soft mask (fraction of object in each pixel)."""
    h, w = size
    m = Image.fromarray(mask.astype(np.float32), mode="F")
    return np.asarray(m.resize((w, h), Image.BILINEAR), np.float32)


def to_tensor(imgs: Sequence[np.ndarray] | np.ndarray, device) -> torch.Tensor:
    """uint8 (N, h, w, 3) -> float (N, 3, h, w) in [0, 1], channels_last."""
    x = torch.from_numpy(np.ascontiguousarray(np.stack(imgs) if not isinstance(imgs, np.ndarray) else imgs))
    x = x.to(device).permute(0, 3, 1, 2).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last)
