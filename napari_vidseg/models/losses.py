"""Segmentation losses shared by training (training/) and one-shot fine-tuning
(video/finetune.py): fine-tuning must not import the training package."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def seg_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy plus soft-IoU: the first gets the pixels right, the
    second keeps small objects from being drowned by the background."""
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    union = (p + target - p * target).sum((1, 2, 3))
    soft_iou = 1 - (inter + 1) / (union + 1)
    return bce + soft_iou.mean()


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OSVOS's class-balanced cross-entropy: per image, foreground pixels weigh
    |background| / |all| and background pixels |foreground| / |all|."""
    n = target[0].numel()
    pos = target.sum((1, 2, 3), keepdim=True)
    beta = (n - pos) / n  # weight of the foreground
    w = beta * target + (1 - beta) * (1 - target)
    return 2 * F.binary_cross_entropy_with_logits(logits, target, weight=w)


def loss_fn(name: str):
    if name == "balanced":
        return balanced_bce
    return seg_loss  # BCE + soft IoU, as the parent was trained
