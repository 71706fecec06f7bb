"""A second opinion on each propagated mask from the interactive segmenter.

The tuned parent knows this one object from a frame or two; the interactive
segmenter knows what objects look like (it trains on thousands of them). Given
a propagated mask as its current mask and one positive click where that mask
is deepest (`robot.interior_click`: what a user's first click would be), it
returns the whole object the mask points at, which completes masks that
propagation leaves short (DAVIS val's are recall-limited, docs/video.md
session 12). The two opinions are averaged in logits, so neither overrules a
confident other; outside the interactive segmenter's crop (the mask's box
with a margin) its opinion is a firm "background".

Cross-validated on the DAVIS-2016 training sequences, which the interactive
segmenter never saw (docs/video.md, session 15).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..interactions.robot import interior_click
from ..types import Interactions

#: probabilities are clipped to [EPS, 1 - EPS] before their logits are taken
EPS = 1e-4


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float32), EPS, 1 - EPS)
    return np.log(p / (1 - p))


class MaskRefiner:
    """refiner(image, prob, seed) -> the averaged logits, all at the network's
    size: `image` (h, w, 3) uint8, `prob` the tuned network's foreground
    probability, `seed` the propagated mask the click and the crop come from
    (cleaned of distant blobs). An empty seed returns the network's logits.
    `weight` is the second opinion's share of the average; `input_size` the long side of its crop (None: the
    predictor's INPUT_SIZE); `bf16` runs it in bfloat16 autocast."""

    def __init__(self, net=None, device=None, crf: bool = False, input_size: int | None = None, weight: float = 0.5,
                 bf16: bool = False):
        from ..segment.predictor import InteractivePredictor

        # By default no CRF: a frame of propagation must stay cheap; the averaging smooths.
        # With the CRF the probabilities are averaged (the CRF's are near 0 and 1, whose logits would rule).
        self.crf = crf
        self.weight = weight  # the second opinion's share
        self.predictor = InteractivePredictor(net, device, use_crf=crf, input_size=input_size, bf16=bf16)

    def __call__(self, image: np.ndarray, prob: np.ndarray, seed: np.ndarray) -> np.ndarray:
        own = logit(prob)
        if not seed.any():
            return own
        self.predictor.set_image(image)
        other = self.predictor.predict(Interactions([interior_click(seed)]), prev_mask=seed).prob
        w = self.weight
        if self.crf:
            return logit((1 - w) * prob + w * other)
        return (1 - w) * own + w * logit(other)


def refiner_for(config, device=None, net=None) -> MaskRefiner | None:
    """The second opinion a FinetuneConfig asks for (None with refine off), on
    `net` (default: the shipped interactive weights)."""
    if not config.refine:
        return None
    from ..models.registry import select_device
    from .finetune import wants_bf16

    # The device the predictor will run on: a given network's own (InteractivePredictor keeps it there),
    # else the one asked for, else the registry's choice.
    if net is not None:
        device = next(net.parameters()).device
    elif device is None:
        device = select_device()
    # At propagation's precision: bf16 where the CPU computes it natively. At input 448 that makes the second
    # opinion as fast as float32's at 320 (27 against 26 ms a frame; docs/video.md, session 18).
    return MaskRefiner(net, device, crf=config.refine_crf, input_size=config.refine_size, weight=config.refine_weight,
                       bf16=wants_bf16(config, torch.device(device)))


def upsample_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) logits -> (H, W), bilinear, as propagation upsamples the network's."""
    x = torch.from_numpy(np.ascontiguousarray(logits, np.float32))[None, None]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
