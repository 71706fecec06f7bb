"""Pieces shared by the training entry points."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

# The loss lives in models/losses.py (fine-tuning in video/ uses it too); re-exported for the trainers.
from ..models.losses import seg_loss  # noqa: F401


def load_pairs(image_dir: Path, mask_dir: Path, max_side: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB uint8, bool mask) pairs matched by file stem, all in memory."""
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in {".png", ".jpg", ".bmp"}}
    out = []
    for p in sorted(image_dir.iterdir()):
        if p.stem not in masks:
            continue
        img = Image.open(p).convert("RGB")
        m = Image.open(masks[p.stem]).convert("L")
        if max_side and max(img.size) > max_side:
            s = max_side / max(img.size)
            size = (round(img.width * s), round(img.height * s))
            img, m = img.resize(size, Image.BILINEAR), m.resize(size, Image.NEAREST)
        out.append((np.asarray(img), np.asarray(m) > 127))
    return out


def random_crop(img: np.ndarray, gt: np.ndarray, size: int, rng: np.random.Generator,
                scale=(0.75, 1.4)) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, flip and a size x size crop that keeps part of the object."""
    s = rng.uniform(*scale) * size / max(img.shape[:2])
    h, w = max(int(img.shape[0] * s), 8), max(int(img.shape[1] * s), 8)
    im = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
    m = np.asarray(Image.fromarray(gt.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
    if rng.random() < 0.5:
        im, m = im[:, ::-1], m[:, ::-1]
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        im = np.pad(im, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="reflect")
        m = np.pad(m, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    H, W = m.shape
    ys, xs = np.nonzero(m)
    for _ in range(10):
        y0, x0 = rng.integers(0, H - size + 1), rng.integers(0, W - size + 1)
        if len(ys) == 0 or m[y0:y0 + size, x0:x0 + size].sum() > 0.3 * min(m.sum(), size * size * 0.5):
            break
    im, m = im[y0:y0 + size, x0:x0 + size], m[y0:y0 + size, x0:x0 + size]
    # Mild colour jitter: brightness and contrast.
    a, b = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    im = np.clip(im.astype(np.float32) * a + b, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(im), np.ascontiguousarray(m)


def freeze_bn_stats(module: nn.Module) -> None:
    """Keep ImageNet BatchNorm statistics: batches of a few images on a CPU are
    too small to estimate them."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def set_cosine_lr(opt: torch.optim.Optimizer, base_lrs, frac: float) -> None:
    """Cosine decay to 5% of each group's base rate; `frac` is the fraction of
    the budget used (wall-clock time, or steps where a step count is fixed)."""
    for g, base in zip(opt.param_groups, base_lrs):
        g["lr"] = base * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))


def save_checkpoint(model: nn.Module, args, step: int, path: Path) -> None:
    """{"model", "step", "args"} written atomically (a killed run keeps the last whole file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    torch.save({"model": model.state_dict(), "step": step, "args": meta}, tmp)
    tmp.replace(path)


class Logger:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a")
        self.t0 = time.time()

    def log(self, **kw) -> None:
        kw["t"] = round(time.time() - self.t0, 1)
        self.f.write(json.dumps(kw) + "\n")
        self.f.flush()
        print(json.dumps(kw), flush=True)
