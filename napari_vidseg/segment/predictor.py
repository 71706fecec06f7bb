"""InteractivePredictor: one frame, a set of interactions, an optional current
mask in; a mask out.

    pred = InteractivePredictor()          # shipped weights, device chosen once
    pred.set_image(frame)                  # (H, W, 3) uint8
    out = pred.predict(interactions, prev_mask=None)
    out.mask, out.prob

Zoom-in: the network sees a crop around the object (the current mask, the
positive marks and, on a first click, its own full-frame guess), resized so its
long side is `input_size` (INPUT_SIZE, 448, by default); small objects get
magnified, large frames shrunk.
Marked pixels are clamped to their label, then a dense CRF refines the
boundary inside the crop.

Speed (a click should feel live on a 2-core CPU): the network runs as a
BatchNorm-folded channels_last copy; the crop is kept while the object stays
inside it, so the frozen RGB-only encoder features (VidSegNet.early_features)
of that crop are computed once and reused by every later click; the CRF runs
on the part of the crop where the boundary can be (see _crf_region), at the
scale that brings the crop to CRFParams.max_side, and its pairwise set-up is
kept for the next click on the same region (crf.PairwiseCache).

GPU out of memory: the click is computed again on the CPU, where the network
then stays (a GPUFallbackWarning says so once; see models/device.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..interactions.encoding import DEFAULT_SIGMA, encode, marked_pixels
from ..models.device import CPU, announce_cpu_fallback, bf16_autocast, is_gpu_oom
from ..types import Click, InputError, Interactions
from . import crf as crf_mod


# The zoom-in crop's long side at the network's input. 448 since session 17
# (weights v8, trained at 320 px): on the 30 DAVIS training first frames, 8
# robot clicks give 90.1 mean IoU against 89.0 at 320, thin parts (a bicycle's
# frame) are kept more often, and a click costs about 5 ms more (docs/interactive.md).
INPUT_SIZE = 448

# The CRF refines the bounding box of the marks and of the pixels the network
# gives more than this probability, grown by this fraction of its size.
CRF_REGION_PROB = 0.1
CRF_REGION_MARGIN = 0.15


@dataclass
class Prediction:
    mask: np.ndarray  # (H, W) bool
    prob: np.ndarray  # (H, W) float32, after clamping and CRF
    box: tuple[int, int, int, int]  # (y0, y1, x0, x1): the crop the network saw


def _bbox(mask: np.ndarray):
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if len(ys) == 0:
        return None
    return ys[0], ys[-1] + 1, xs[0], xs[-1] + 1


def expand_box(box, height, width, margin=0.4, min_size=48):
    """Grow a (y0, y1, x0, x1) box by `margin` of its size on each side, at least min_size."""
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    dy = max(h * margin, (min_size - h) / 2, 0)
    dx = max(w * margin, (min_size - w) / 2, 0)
    return (max(int(y0 - dy), 0), min(int(np.ceil(y1 + dy)), height),
            max(int(x0 - dx), 0), min(int(np.ceil(x1 + dx)), width))


def interaction_box(inter: Interactions, height: int, width: int):
    pts = [(c.x, c.y) for c in inter.clicks if c.positive]
    pts += [p for s in inter.strokes if s.positive for p in s.points]
    if not pts:
        return None
    a = np.asarray(pts)
    return (int(max(a[:, 1].min(), 0)), int(min(a[:, 1].max() + 1, height)),
            int(max(a[:, 0].min(), 0)), int(min(a[:, 0].max() + 1, width)))


def _inside(inner, outer) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1] and outer[2] <= inner[2] and inner[3] <= outer[3]


def _clip_box(box, outer):
    return (max(box[0], outer[0]), min(box[1], outer[1]), max(box[2], outer[2]), min(box[3], outer[3]))


def _area(box) -> int:
    return (box[1] - box[0]) * (box[3] - box[2])


def reuse_box(old, roi, box):
    """`old` while it still holds `roi` and `box` would be at least half its
    area, else `box`: a kept box keeps what was cached for it (encoder
    features, the CRF's set-up) without working on a much larger area."""
    if old is not None and _inside(roi, old) and _area(box) >= 0.5 * _area(old):
        return old
    return box


def union_box(*boxes):
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), max(b[1] for b in boxes),
            min(b[2] for b in boxes), max(b[3] for b in boxes))


def _has_positive(inter: Interactions) -> bool:
    return any(c.positive for c in inter.clicks) or any(s.positive for s in inter.strokes)


class InteractivePredictor:
    def __init__(self, net=None, device=None, use_crf: bool = True, input_size: int | None = None,
                 zoom_in: bool = True, crf_params: crf_mod.CRFParams = crf_mod.CRFParams(),
                 mirror: bool = False, bf16: bool = False):
        from ..models.fuse import fuse_bn

        if net is None:
            from ..models.registry import build

            net = build("interactive", device)
        # An inference copy: the caller's network is left as it is.
        self.net = fuse_bn(net).to(memory_format=torch.channels_last).eval()
        self.device = next(net.parameters()).device
        self.use_crf = use_crf
        self.input_size = INPUT_SIZE if input_size is None else input_size
        self.zoom_in = zoom_in
        self.crf_params = crf_params
        # Test-time mirroring: the crop and its left-right mirror image go
        # through the network as one batch of two and their logits are
        # averaged (the mirror's flipped back): twice the network's work per click.
        self.mirror = mirror
        # The network in bfloat16 autocast (CPU and CUDA). Off for clicks, whose figures are float32's;
        # propagation's second opinion follows propagation's own setting (video/refine.py).
        self.bf16 = bf16
        self.image: np.ndarray | None = None
        self._box = None  # the last crop, kept while the object stays inside it
        self._early_key = None  # (box, ih, iw) of the cached early features
        self._early = None
        self._crf_box = None  # the last CRF region, kept like the crop
        self._crf_cache = crf_mod.PairwiseCache()  # keyed by the CRF region on this frame

    def set_image(self, image: np.ndarray) -> None:
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise InputError(f"expected an (H, W, 3) RGB frame, got shape {image.shape}")
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        self.image = np.array(image[..., :3], order="C")  # own, writable copy
        self._box, self._early_key, self._early, self._crf_box = None, None, None, None
        self._crf_cache = crf_mod.PairwiseCache()

    # -- the network on one crop -------------------------------------------
    def _net_prob(self, box, inter: Interactions, prev: np.ndarray) -> np.ndarray:
        """The network's probability on the crop; on a GPU out-of-memory error
        the network moves to the CPU for good and the crop is computed again."""
        try:
            return self._net_prob_on_device(box, inter, prev)
        except Exception as e:
            if not is_gpu_oom(e, self.device):
                raise
        # Out of the except block: its traceback holds the failed attempt's GPU tensors.
        self._move_to_cpu()
        return self._net_prob_on_device(box, inter, prev)

    def _move_to_cpu(self) -> None:
        old, self.device = self.device, CPU
        self._early, self._early_key = None, None  # features on the old device
        self.net = self.net.to(CPU)  # the inference copy; the caller's network stays put
        announce_cpu_fallback("a click", "this click and the next ones run", old)

    def _net_prob_on_device(self, box, inter: Interactions, prev: np.ndarray) -> np.ndarray:
        y0, y1, x0, x1 = box
        ch, cw = y1 - y0, x1 - x0
        s = self.input_size / max(ch, cw)
        ih = max(int(round(ch * s / 32)) * 32, 32)
        iw = max(int(round(cw * s / 32)) * 32, 32)
        sy, sx = ih / ch, iw / cw
        # Interactions in network-input coordinates (pixel centres map to centres).
        shifted = Interactions(
            [Click((c.x - x0 + 0.5) * sx - 0.5, (c.y - y0 + 0.5) * sy - 0.5, c.positive) for c in inter.clicks],
            [type(st)(tuple(((x - x0 + 0.5) * sx - 0.5, (y - y0 + 0.5) * sy - 0.5) for x, y in st.points),
                      st.positive, st.kind, st.width * sx) for st in inter.strokes],
        )
        chans = torch.from_numpy(encode(shifted, ih, iw, DEFAULT_SIGMA))[None]
        m = torch.from_numpy(prev[y0:y1, x0:x1].astype(np.float32))[None, None]
        m = F.interpolate(m, size=(ih, iw), mode="bilinear", align_corners=False)
        with torch.inference_mode(), bf16_autocast(self.device, self.bf16):
            if self._early_key != (box, ih, iw):
                rgb = torch.from_numpy(self.image[y0:y1, x0:x1]).permute(2, 0, 1)[None].float() / 255
                rgb = F.interpolate(rgb, size=(ih, iw), mode="bilinear", align_corners=False)
                if self.mirror:
                    rgb = torch.cat([rgb, rgb.flip(3)])
                rgb = rgb.to(self.device).contiguous(memory_format=torch.channels_last)
                self._early, self._early_key = self.net.early_features(rgb), (box, ih, iw)
            # from_early reads only the size and the non-RGB channels of x.
            x = torch.cat([torch.zeros(1, 3, ih, iw), m, chans], 1)
            if self.mirror:
                # Flipping the encoded channels mirrors the marks exactly (pixel centres map to centres).
                x = torch.cat([x, x.flip(3)])
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            logits = self.net.from_early(self._early, x)
            if self.mirror:
                logits = (logits[:1] + logits[1:].flip(3)) / 2
            logits = F.interpolate(logits.float(), size=(ch, cw), mode="bilinear", align_corners=False)
            return torch.sigmoid(logits)[0, 0].cpu().numpy()

    def _crop_box(self, roi, height: int, width: int):
        """The expanded box around `roi`, or the previous crop while it may
        stand in (reusing it reuses its cached features)."""
        self._box = reuse_box(self._box, roi, expand_box(roi, height, width))
        return self._box

    def _crf_region(self, prob: np.ndarray, box, roi):
        """The part of the crop the CRF refines, and the CRF's settings for it.

        The crop's wide margin is context for the network; the CRF only has
        work where the object's boundary can be: around what the network does
        not call surely background, and the marks. Kept from click to click
        like the crop (its pairwise set-up is cached). The CRF keeps the
        crop's scale (max_side applies to the crop, not to the region), so a
        smaller region means fewer pixels, not a finer CRF."""
        y0, y1, x0, x1 = box
        maybe = _bbox(prob[y0:y1, x0:x1] > CRF_REGION_PROB)
        if maybe is not None:
            maybe = (maybe[0] + y0, maybe[1] + y0, maybe[2] + x0, maybe[3] + x0)
        need = union_box(maybe, roi)
        old = self._crf_box if self._crf_box is not None and _inside(self._crf_box, box) else None
        H, W = self.image.shape[:2]
        region = _clip_box(expand_box(need, H, W, margin=CRF_REGION_MARGIN, min_size=16), box)
        region = self._crf_box = reuse_box(old, need, region)
        params = self.crf_params
        crop_side = max(y1 - y0, x1 - x0)
        if params.max_side and crop_side > params.max_side:
            side = max(region[1] - region[0], region[3] - region[2])
            params = replace(params, max_side=max(int(round(side * params.max_side / crop_side)), 16))
        return region, params

    def predict(self, interactions: Interactions, prev_mask: np.ndarray | None = None) -> Prediction:
        if self.image is None:
            raise RuntimeError("call set_image(frame) before predict()")
        H, W = self.image.shape[:2]
        interactions.check_inside(H, W)
        prev = np.zeros((H, W), bool) if prev_mask is None else np.asarray(prev_mask).astype(bool)
        if prev.shape != (H, W):
            raise InputError(f"current mask has shape {prev.shape}, the frame is {H}x{W}")
        prob = prev.astype(np.float32)
        full = (0, H, 0, W)
        if not prev.any() and not _has_positive(interactions):
            # Only "not here" marks and nothing to remove them from: the object is not on this
            # frame as far as the user said, so the mask is empty (the network, asked anyway,
            # invents an object where no click put one; the CLI and the library agree on this).
            return Prediction(np.zeros((H, W), bool), np.zeros((H, W), np.float32), full)
        roi = union_box(_bbox(prev), interaction_box(interactions, H, W))
        if not self.zoom_in or roi is None:
            box = full
            prob = self._net_prob(box, interactions, prev)
        else:
            if not prev.any():
                # First interaction: the object's extent is unknown; a
                # full-frame guess tells where to zoom.
                guess = self._net_prob(full, interactions, prev) > 0.5
                roi = union_box(roi, _bbox(guess))
            box = self._crop_box(roi, H, W)
            prob = np.zeros((H, W), np.float32)
            y0, y1, x0, x1 = box
            prob[y0:y1, x0:x1] = self._net_prob(box, interactions, prev)
        pos, neg = marked_pixels(interactions, H, W)
        prob[pos], prob[neg] = 1.0, 0.0
        if self.use_crf:
            region, params = self._crf_region(prob, box, roi if roi is not None else box)
            y0, y1, x0, x1 = region
            prob[y0:y1, x0:x1] = crf_mod.refine(self.image[y0:y1, x0:x1], prob[y0:y1, x0:x1], params,
                                                cache=self._crf_cache, key=region)
            prob[pos], prob[neg] = 1.0, 0.0
        return Prediction(prob > 0.5, prob, box)
