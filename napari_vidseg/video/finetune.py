"""One-shot fine-tuning (OSVOS) of the video parent network on annotated frames.

    net = drain(finetune(parent, [frame0], [mask0], FinetuneConfig()))

Made for a CPU: the network runs at a reduced input size (frames resized so
their long side is `input_long_side`, both sides multiples of 32), and the
features that are not tuned are computed once:

1. every annotated frame becomes `n_aug` augmented copies (the frame itself,
   its mirror image, then random zoom / shift / mirror / brightness);
2. the frozen early encoder (VidSegNet.early_features) runs once over all
   copies; in "head" mode the late encoder too, so each step is the decoder
   alone; the stride-2 map, which the decoder does not read, is not kept;
3. `steps` Adam steps on random windows of random batches of cached copies
   with OSVOS's class-balanced cross-entropy ("balanced") or the repository's
   BCE + soft-IoU ("seg"). "full" mode tunes the late encoder as well
   (slower, the quality option).

The optimizer is `LeanAdam`, not torch.optim.Adam: the first torch.optim
optimizer made in a process imports torch._dynamo, which took 15-25 s on the
2-core CPU (up to a quarter of the whole tuning) and pulls in triton (see
_napari/llvm_guard.py).

BatchNorm statistics stay frozen (batches are copies of one frame). The
parent is never modified: the tuned network is a copy.

GPU out of memory: fine-tuning starts again on the CPU (same seed, so the
same augmented copies and batches) and the tuned network is returned on the CPU; a Progress message
and a GPUFallbackWarning say so (models/device.py).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields
from typing import Any, Generator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..models.device import CPU, announce_cpu_fallback, is_gpu_oom
from ..models.vidsegnet import VidSegNet
from ..types import InputError, Progress
# Image preparation lives in frames.py (propagation uses it too); re-exported for callers of this module.
from ..models.losses import balanced_bce, loss_fn  # noqa: F401  (re-exported)
from .frames import forward_batch, input_size, resize_mask, resize_rgb, to_tensor, wants_bf16  # noqa: F401

MODES = ("head", "full")
LOSSES = ("balanced", "seg")


@dataclass
class TuneConfig:
    """What the one-shot tuning does (finetune)."""
    mode: str = "head"  # "head": decoder on cached early+late features; "full": late encoder + decoder
    # Held out (240p at input 448, session 9): head 150 / 300 / 600 steps J 69.6 / 70.6 / 69.8, full 150: 69.8.
    steps: int = 300
    lr: float = 1e-3
    # The frame is resized so its long side is this (multiple of 32 after rounding). The parent is trained on
    # frames whose long side is about 448 px (240p upsampled 1.05x); at 480p, 864 shows objects at that scale.
    # Held out (240p, input 224 / 448 / 640, i.e. scale 0.52 / 1.05 / 1.5): J 60.1 / 69.6 / 71.7; on DAVIS val
    # 448 -> 864 gave J 74.3 -> 76.1 (docs/video.md, session 9).
    input_long_side: int = 864
    n_aug: int = 16  # augmented copies per annotated frame, features cached once
    batch: int = 4  # training batch (copies per step)
    crop: float = 0.5  # each step sees a random window of this fraction of each side (aligned to stride 32)
    loss: str = "seg"
    seed: int = 0
    device: str | None = None  # None: the parent's device

    def check(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"fine-tuning mode must be one of {MODES}, got {self.mode!r}")
        if self.loss not in LOSSES:
            raise InputError(f"fine-tuning loss must be one of {LOSSES}, got {self.loss!r}")
        if self.steps < 0 or self.n_aug < 1 or self.batch < 1 or self.input_long_side < 32:
            raise InputError("steps >= 0, n_aug >= 1, batch >= 1 and input_long_side >= 32 are required")


@dataclass
class InferenceConfig:
    """How the tuned network segments each frame (propagate)."""
    # Frames per forward pass in propagation; None: forward_batch's choice, 2 on a CPU and 8 on a GPU. On the
    # 2-core CPU a batch of 8 is the slowest (car-roundabout, 480p, input 864: 60-64 ms a frame end to end
    # against 38-39 with 1 or 2; 1080p: 98-101 against 65; session 14, docs/video.md).
    batch_infer: int | None = None
    keep_components: bool = True  # propagation: drop blobs that do not touch the previous frame's object
    # propagation: pixels farther than this fraction of the long side from the previous frame's object are
    # background (0: off). Off since session 11: chosen as 0.08 on three held-out sequences (session 7), it
    # cost J -0.72 (standard error 0.39) cross-validated on all 30 DAVIS-2016 training sequences, cutting
    # fast objects (mallard-fly, soccerball) that move farther than that between frames (docs/video.md).
    reach: float = 0.0
    # Propagation in bfloat16 autocast. None: on where it is native and fast, a CPU with AVX512-BF16 / AMX
    # (held out: J 70.65 against 70.63 in float32; 864x480 at 65 against 163 ms a frame, docs/video.md).
    bf16: bool | None = None
    int8: bool = False  # propagation on a CPU: an int8 copy of the tuned network (models/quantize.py)
    fuse: bool = True  # propagation: fold BatchNorm into convs
    # propagation: average the logits of each frame and of its mirror image. Twice the network's time per
    # frame; cross-validated on the 30 DAVIS-2016 training sequences (scripts/crossval.py, session 10):
    # J +0.95 (standard error 0.17), better on 26 of 30. Off by default to keep 10 frames/s on a 2-core CPU.
    flip: bool = False
    # propagation: average the logits of the frame seen at these multiples of input_long_side (each resized
    # back to the main size), e.g. (1.0, 1.5). One tuning, at input_long_side, serves every scale.
    # Cross-validated (session 13): (1.0, 1.5) J -0.57 (standard error 0.89), so off; averaging two runs each
    # tuned at its own scale was +1.44 (session 12): the gain needs the tuning at each scale.
    scales: tuple[float, ...] = (1.0,)
    # The tuned network is conservative (the object is the rarer class): 0.3 beat 0.5 by 1.3 J held out
    # (3 sequences); cross-validated (30): 0.2 / 0.3 / 0.4 / 0.5 within 0.4 J of each other.
    threshold: float = 0.3

    def check(self) -> None:
        if not 0 < self.threshold < 1:
            raise InputError(f"the mask threshold must be between 0 and 1 (exclusive), got {self.threshold}")
        if not 0 <= self.reach < 1:
            raise InputError(f"reach must be a fraction of the frame's long side in [0, 1), got {self.reach}")
        if not self.scales or any(not 0.25 <= float(x) <= 4 for x in self.scales):
            raise InputError(f"scales must be multiples of the input size between 0.25 and 4, got {self.scales}")
        if self.batch_infer is not None and self.batch_infer < 1:
            raise InputError(f"batch_infer must be at least 1 (or None: chosen for the device), got {self.batch_infer}")


@dataclass
class SecondOpinionConfig:
    """The interactive segmenter's opinion of each propagated mask (refine.refiner_for)."""
    # propagation: average each frame's logits with the interactive segmenter's, given the propagated mask and
    # a click at its deepest point (video/refine.py). Cross-validated on the 30 DAVIS-2016 training sequences
    # (which the interactive segmenter never saw), on top of self-training: J +2.00 (standard error 0.86),
    # better on 24 of 30; it costs 25-33 ms a frame on the 2-core CPU (session 15, docs/video.md).
    refine: bool = True
    # The second opinion through the dense CRF, probabilities averaged: cross-validated against `refine` alone
    # +0.76 (standard error 0.73), all of it drift-turn (+20; the other 29 sequences +0.1), for a CRF per frame.
    refine_crf: bool = False
    # Long side of the second opinion's crop: the interactive segmenter's own input size for clicks
    # (segment/predictor.INPUT_SIZE). Cross-validated (session 18), 448 against 320: J +0.47 (standard error 0.26,
    # better on 24 of 30) from 8 clicks, +0.45 (0.26, 21 of 30) from the true mask; 512 no better than 448 (-0.02).
    # In bf16 (wants_bf16) it costs what 320 did in float32, 27 against 26 ms a frame. 256: J -0.32 (0.13).
    refine_size: int = 448
    # The second opinion's share of the averaged logits (0.5: an even mean). At a 320 crop 0.65 cross-validated
    # J +0.35 (standard error 0.50), better on only 13 of 30 (session 16). At 448 (session 18) 0.6 against 0.5:
    # J +0.44 (0.20, better on 26 of 30) from 8 clicks, +0.30 (0.25, 21 of 30) from the true mask; 0.7 against
    # 0.6: +0.27 (0.19, 20 of 30) and +0.08 (0.14, 17 of 30) with F 0.4 lower: not clear, so 0.6.
    refine_weight: float = 0.6

    def check(self) -> None:
        if self.refine_size < 32:
            raise InputError(f"refine_size must be at least 32 pixels, got {self.refine_size}")
        if not 0 < self.refine_weight <= 1:
            raise InputError(f"refine_weight must be in (0, 1], got {self.refine_weight}")


@dataclass
class SelfTrainConfig:
    """Tuning again on trusted propagated masks (self_train.propagate_self_trained)."""
    # Self-training (session 13): propagate a first time, then tune again with this many of the most trusted
    # propagated masks (quality.pseudo_annotations) as extra annotated frames and propagate again. 0: off.
    # Cross-validated on the 30 DAVIS-2016 training sequences (240p, every 2nd frame of the original): J +1.91
    # (standard error 0.47, better on 27 of 30) with a dense first pass, +1.58 (0.42, 24/30) with every 2nd
    # frame, +1.24 (0.57, 17/30) with every 4th (docs/video.md).
    self_train: int = 2
    # The first of the two passes propagates every this-many-th frame only: it only has to find trusted frames.
    # 4 at a video's own frame rate is the 240p cross-validation's 2 (those frames are every 2nd of the
    # original); it keeps propagation at 1.25 passes, so above 10 frames/s on the 2-core CPU.
    first_pass_stride: int = 4
    # Rounds of self-training (sparse pass, k more trusted frames, tuning) before the last pass. Two rounds,
    # cross-validated: J +0.23 (standard error 0.19, better on 15 of 30) for a third tuning, so one.
    self_train_rounds: int = 1

    def check(self) -> None:
        if self.self_train < 0 or self.first_pass_stride < 1 or self.self_train_rounds < 1:
            raise InputError(f"self_train >= 0, first_pass_stride >= 1 and self_train_rounds >= 1 are required, "
                             f"got {self.self_train}, {self.first_pass_stride} and {self.self_train_rounds}")


@dataclass
class FinetuneConfig(TuneConfig, InferenceConfig, SecondOpinionConfig, SelfTrainConfig):
    """OSVOS's options, all four jobs in one flat object (the registry's config for "osvos"):
    every function takes the part it needs, and a FinetuneConfig is each of them."""

    def check(self) -> None:
        for part in PARTS.values():
            part.check(self)

    def parts(self) -> dict[str, Any]:
        """Each job's options as its own config: {"tune": TuneConfig, "inference": ..., ...}."""
        return {key: part(**{f.name: getattr(self, f.name) for f in fields(part)}) for key, part in PARTS.items()}

    @classmethod
    def from_parts(cls, **parts) -> "FinetuneConfig":
        """The flat config from parts given by job name (missing ones: defaults)."""
        values = {}
        for key, part in parts.items():
            if key not in PARTS or not isinstance(part, PARTS[key]):
                raise InputError(f"unknown config part {key!r} (expected {', '.join(PARTS)})")
            values.update({f.name: getattr(part, f.name) for f in fields(PARTS[key])})
        return cls(**values)


#: job name -> its part of FinetuneConfig
PARTS: dict[str, type] = {"tune": TuneConfig, "inference": InferenceConfig, "second_opinion": SecondOpinionConfig,
                          "self_training": SelfTrainConfig}



def _check_pair(frame: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 (H, W, 3) frame and its bool mask: (H, W), or (H, W, K) for K objects."""
    frame = np.asarray(frame)
    mask = np.asarray(mask).astype(bool)
    if frame.ndim != 3 or frame.shape[2] < 3:
        raise InputError(f"expected an (H, W, 3) frame, got shape {frame.shape}")
    if mask.shape[:2] != frame.shape[:2] or mask.ndim not in (2, 3):
        raise InputError(f"mask shape {mask.shape} does not match the frame {frame.shape[:2]}")
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame[..., :3]), mask


# -- augmentation --------------------------------------------------------------
def augment(frame: np.ndarray, mask: np.ndarray, size: tuple[int, int], n: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` copies at the network input size: the frame, its mirror, then random
    zoom (0.8-1.25, about the object), shift (up to 10 %), mirror and
    brightness/contrast. Returns uint8 (n, h, w, 3) and float32 (n, h, w);
    a (H, W, K) mask (K objects, one warp for all) gives (n, K, h, w)."""
    h, w = size
    img = resize_rgb(frame, size)
    several = np.ndim(mask) == 3
    m = np.stack([resize_mask(mask[..., k], size) for k in range(mask.shape[2])], 2) if several \
        else resize_mask(mask, size)[..., None]
    n_rand = max(n - 2, 0)
    base = torch.from_numpy(np.concatenate([img.astype(np.float32), m], 2)).permute(2, 0, 1)[None]
    out = [base[0], base[0].flip(-1)]
    if n_rand:
        ys, xs = np.nonzero(m.max(2) > 0.5)  # all the objects' centre
        # Object centre in normalised [-1, 1] coordinates (zoom keeps it in view).
        cx = (xs.mean() + 0.5) / w * 2 - 1 if len(xs) else 0.0
        cy = (ys.mean() + 0.5) / h * 2 - 1 if len(ys) else 0.0
        theta = np.zeros((n_rand, 2, 3), np.float32)
        for i in range(n_rand):
            s = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
            tx, ty = rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)  # 10 % of the side
            # output p -> input (p - c - t) / s + c
            theta[i] = [[1 / s, 0, cx - (cx + tx) / s], [0, 1 / s, cy - (cy + ty) / s]]
        grid = F.affine_grid(torch.from_numpy(theta), (n_rand, 4, h, w), align_corners=False)
        warped = F.grid_sample(base.expand(n_rand, -1, -1, -1), grid, mode="bilinear",
                               padding_mode="reflection", align_corners=False)
        for i in range(n_rand):
            x = warped[i]
            if rng.random() < 0.5:
                x = x.flip(-1)
            a, b = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
            x = torch.cat([(x[:3] * a + b).clamp(0, 255), x[3:]])
            out.append(x)
    out = torch.stack(out[:max(n, 1)])
    imgs = out[:, :3].round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return imgs, (out[:, 3:] if several else out[:, 3]).contiguous().numpy()


# -- optimizer ---------------------------------------------------------------------
class LeanAdam:
    """Adam (Kingma and Ba 2015; torch.optim.Adam's update without weight decay
    or amsgrad) over parameter groups [{"params": [...], "lr": float}].

    Kept here because torch.optim's first use in a process imports torch._dynamo
    (see the module docstring); the tests check it against torch.optim.Adam."""

    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param_groups = [dict(g, params=list(g["params"])) for g in groups]
        self.betas, self.eps = betas, eps
        self.state: dict[torch.Tensor, dict] = {}  # per parameter: step, m, v (as torch's)

    def zero_grad(self) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue  # as torch: no step, and its step count stays
                st = self.state.setdefault(p, {"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)})
                st["step"] += 1
                st["m"].lerp_(p.grad, 1 - b1)  # m <- b1 m + (1 - b1) g
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)  # v <- b2 v + (1 - b2) g^2
                c1, c2 = 1 - b1 ** st["step"], math.sqrt(1 - b2 ** st["step"])  # bias corrections
                denom = (st["v"].sqrt() / c2).add_(self.eps)
                p.addcdiv_(st["m"], denom, value=-g["lr"] / c1)


# -- fine-tuning ------------------------------------------------------------------
def _logits_from_features(net: VidSegNet, early, late, size) -> torch.Tensor:
    """early: the cached [f4, f8, f16] (no stride-2 map: the decoder does not read it)."""
    logits = net.decoder([None, *early, *late], None)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def finetune(parent: VidSegNet, frames: list[np.ndarray], masks: list[np.ndarray],
             config: TuneConfig | None = None) -> Generator[Progress, None, VidSegNet]:
    """Tune a copy of `parent` on the annotated (frame, mask) pairs of one object;
    yields Progress ("features", then "finetune"); returns the tuned net in eval mode."""
    if len(frames) != len(masks) or not frames:
        raise InputError("fine-tuning needs at least one annotated frame and one mask per frame")
    return (yield from finetune_objects(parent, frames, [{0: m} for m in masks], [0], config))


def finetune_objects(parent: VidSegNet, frames: list[np.ndarray], targets: Sequence[Mapping[Any, np.ndarray]],
                     objects: Sequence, config: TuneConfig | None = None) -> Generator[Progress, None, VidSegNet]:
    """Tune one copy of `parent` for several objects at once: its output has one
    channel per object of `objects` (in that order; each starts as the parent's
    single output), and targets[i] maps the objects annotated on frames[i] to
    their masks. A channel is trained only on the frames its object is
    annotated on (elsewhere the object is unknown, not absent). With one object
    this is the single-object tuning exactly (the same copies, batches and steps).
    Why one shared tuned decoder rather than one per object: docs/video.md (session 19)."""
    config = config or FinetuneConfig()
    config.check()
    objects = list(objects)
    if len(frames) != len(targets) or not frames or not objects:
        raise InputError("fine-tuning needs at least one annotated frame, one object and its masks per frame")
    if getattr(parent, "in_channels", 3) != 3:
        raise InputError("fine-tuning needs the 3-channel video parent network")
    pairs, valid = [], []
    for f, target in zip(frames, targets):
        unknown = [o for o in target if o not in objects]
        if unknown or not target:
            raise InputError(f"annotated masks of objects {unknown} that are not being tuned" if unknown
                             else "a tuning frame without any annotated object")
        frame, first = _check_pair(f, next(iter(target.values())))
        stack = np.zeros((*frame.shape[:2], len(objects)), bool)
        for k, o in enumerate(objects):
            if o in target:
                stack[..., k] = _check_pair(frame, target[o])[1]
        pairs.append((frame, stack))
        valid.append([o in target for o in objects])
    device = torch.device(config.device) if config.device else next(parent.parameters()).device
    try:
        return (yield from _finetune_on(parent, pairs, valid, config, device))
    except Exception as e:
        if not is_gpu_oom(e, device):
            raise
    # Out of the except block, whose traceback holds the failed attempt's GPU tensors.
    # Same seed: the same augmented copies and batches as the failed attempt.
    msg = announce_cpu_fallback("fine-tuning", "starting again", device)
    yield Progress("features", 0, len(pairs) * config.n_aug, message=msg)
    return (yield from _finetune_on(parent, pairs, valid, config, CPU))


def widen_output(net: VidSegNet, n_objects: int) -> VidSegNet:
    """`net` (modified) with n_objects output channels, each a copy of its one."""
    out = net.decoder.out
    if n_objects != out.out_channels:
        wide = torch.nn.Conv2d(out.in_channels, n_objects, 1).to(out.weight.device)
        with torch.no_grad():
            wide.weight.copy_(out.weight[:1].expand_as(wide.weight))
            wide.bias.copy_(out.bias[:1].expand_as(wide.bias))
        net.decoder.out = wide
    return net


def objects_loss(criterion, logits: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The mean over objects of each one's loss on the copies it is annotated on
    (logits, y: (N, K, h, w); valid: (N, K) bool); one object: criterion itself."""
    if logits.shape[1] == 1 and bool(valid.all()):
        return criterion(logits, y)
    losses = []
    for k in range(logits.shape[1]):
        rows = valid[:, k]
        if bool(rows.all()):
            losses.append(criterion(logits[:, k:k + 1], y[:, k:k + 1]))
        elif bool(rows.any()):
            losses.append(criterion(logits[rows, k:k + 1], y[rows, k:k + 1]))
    return torch.stack(losses).mean()


def _finetune_on(parent: VidSegNet, pairs, valid: list[list[bool]], config: TuneConfig,
                 device: torch.device) -> Generator[Progress, None, VidSegNet]:
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    net = copy.deepcopy(parent).to(device).eval()  # eval: BatchNorm statistics stay frozen
    widen_output(net, len(valid[0]))

    # 1-2. Augmented copies and their cached features.
    n_total = len(pairs) * config.n_aug
    cache: dict[str, list] = {"early": [], "late": [], "y": [], "valid": []}
    done = 0
    step = forward_batch(device)  # copies per encoder pass
    for (frame, mask), known in zip(pairs, valid):
        size = input_size(*frame.shape[:2], config.input_long_side)
        imgs, ms = augment(frame, mask, size, config.n_aug, rng)
        for i in range(0, len(imgs), step):
            x = to_tensor(imgs[i:i + step], device)
            with torch.no_grad():
                early = net.early_features(x)
                cache["early"].append(early[1:])  # f2 is not used by the decoder
                if config.mode == "head":
                    cache["late"].append(net.encoder.late(early[-1]))
            y = torch.from_numpy(ms[i:i + step]).to(device)
            cache["y"].append(y if len(known) == 1 else SparseTargets.of(y, known))
            cache["valid"].append(torch.tensor([known] * len(x), dtype=torch.bool, device=device))
            done += len(x)
            yield Progress("features", done, n_total, message=f"{size[1]}x{size[0]}")
    # Frames of different sizes cannot share a batch; group copies by size.
    groups = _group_by_size(cache, config.mode)

    # 3. Tune.
    params = list(net.decoder.parameters())
    groups_lr = [{"params": params, "lr": config.lr}]
    if config.mode == "full":
        early_ids = {id(p) for p in net.encoder.early_parameters()}
        late = [p for p in net.encoder.parameters() if id(p) not in early_ids]
        groups_lr.append({"params": late, "lr": config.lr * 0.3})
    for p in net.parameters():
        p.requires_grad_(False)
    for g in groups_lr:
        for p in g["params"]:
            p.requires_grad_(True)
    opt = LeanAdam(groups_lr)
    base = [g["lr"] for g in groups_lr]
    criterion = loss_fn(config.loss)
    for step in range(config.steps):
        frac = step / max(config.steps, 1)
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * 0.5 * (1 + math.cos(math.pi * frac))  # cosine to zero
        key = list(groups)[rng.integers(len(groups))] if len(groups) > 1 else next(iter(groups))
        grp = groups[key]
        n = grp["y"].shape[0]
        idx = torch.from_numpy(rng.choice(n, size=min(config.batch, n), replace=False)).to(device)
        early, y = grp["early"], grp["y"]
        late_f = grp["late"] if config.mode == "head" else None
        if config.crop < 1.0:  # the window first (views), so only it is gathered
            early, late_f, y = _random_crop(early, late_f, y, config.crop, rng)
        early, y = [t.index_select(0, idx) for t in early], y.index_select(0, idx)
        known = grp["valid"].index_select(0, idx)
        late_f = [t.index_select(0, idx) for t in late_f] if late_f is not None else None
        if late_f is None:
            late_f = net.encoder.late(early[-1])
        logits = _logits_from_features(net, early, late_f, y.shape[-2:])
        loss = objects_loss(criterion, logits, y, known)
        opt.zero_grad()
        loss.backward()
        opt.step()
        yield Progress("finetune", step + 1, config.steps, message=f"loss {loss.item():.3f}")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def _random_crop(early, late, y, frac, rng):
    """The same random window of every feature map and of the target: a crop
    of the (cached) input, aligned to the coarsest stride so that all maps cut
    cleanly. Cuts the cost of a step by about 1/frac^2; the decoder is
    convolutional, so what it learns applies to whole frames."""
    H, W = y.shape[-2:]
    coarse = late[-1] if late else early[-1]
    stride = H // coarse.shape[-2]
    gh, gw = H // stride, W // stride  # grid cells
    ch, cw = max(int(round(gh * frac)), 1), max(int(round(gw * frac)), 1)
    y0, x0 = int(rng.integers(0, gh - ch + 1)), int(rng.integers(0, gw - cw + 1))

    def cut(t):
        s = H // t.shape[-2]
        k = stride // s
        return t[..., y0 * k:(y0 + ch) * k, x0 * k:(x0 + cw) * k]

    return ([cut(t) for t in early], [cut(t) for t in late] if late is not None else None, cut(y))


def _group_by_size(cache, mode) -> dict:
    groups: dict[tuple, dict] = {}
    for i, y in enumerate(cache["y"]):
        key = tuple(y.shape[-2:])
        g = groups.setdefault(key, {"early": [], "late": [], "y": [], "valid": []})
        g["early"].append(cache["early"][i])
        g["y"].append(y)
        g["valid"].append(cache["valid"][i])
        if mode == "head":
            g["late"].append(cache["late"][i])
    out = {}
    for key, g in groups.items():
        y = torch.cat(g["y"]) if isinstance(g["y"][0], torch.Tensor) else SparseTargets.cat(g["y"])
        out[key] = {"early": [torch.cat(ts) for ts in zip(*g["early"])], "y": y,
                    "valid": torch.cat(g["valid"]),
                    "late": [torch.cat(ts) for ts in zip(*g["late"])] if g["late"] else []}
    return out


class SparseTargets:
    """Several objects' soft target masks (N, K, h, w) kept small: only the
    channels of the objects annotated on each copy, in uint8 (1/255 steps).
    Dense float32 targets of 30 objects over the copies of self-training's
    trusted frames would take gigabytes (224 copies x 30 x 864x480 x 4 bytes:
    11 GB). Supports what a tuning step does with its targets: .shape, a
    spatial window (t[..., a:b, c:d]) and index_select(0, idx), which gives
    the dense float32 batch (unknown channels 0, ignored by the loss)."""

    def __init__(self, items: list, n_channels: int, window=(slice(None), slice(None))):
        self.items = items  # per copy: (channel indices, uint8 (k, h, w))
        self.n_channels = n_channels
        self.window = window
        h, w = items[0][1].shape[-2:]
        rows, cols = range(h)[window[0]], range(w)[window[1]]
        self.shape = torch.Size((len(items), n_channels, len(rows), len(cols)))

    @classmethod
    def of(cls, y: torch.Tensor, known: list[bool]) -> "SparseTargets":
        channels = torch.tensor([k for k, v in enumerate(known) if v], dtype=torch.long)
        q = (y[:, channels] * 255).round().to(torch.uint8)
        return cls([(channels, q[i]) for i in range(len(y))], len(known))

    @classmethod
    def cat(cls, parts: list["SparseTargets"]) -> "SparseTargets":
        return cls([item for p in parts for item in p.items], parts[0].n_channels)

    def __getitem__(self, key) -> "SparseTargets":
        rows, cols = key[-2:]  # t[..., rows, cols] on an unwindowed set (what _random_crop does)
        return SparseTargets(self.items, self.n_channels, (rows, cols))

    def index_select(self, dim: int, idx: torch.Tensor) -> torch.Tensor:
        rows, cols = self.window
        first = self.items[0][1]
        out = torch.zeros((len(idx), *self.shape[1:]), dtype=torch.float32, device=first.device)
        for j, i in enumerate(idx.tolist()):
            channels, q = self.items[i]
            out[j, channels] = q[:, rows, cols].float() / 255
        return out


def load_parent(device=None) -> VidSegNet:
    """The shipped parent network (registry.MODELS["parent"]), checked and in eval mode."""
    from ..models.registry import build

    return build("parent", device)
