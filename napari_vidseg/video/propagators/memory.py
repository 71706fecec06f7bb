"""A memory propagator: every frame's features matched to a memory of labelled frames, no tuning at run time.

Each frame is embedded once by a frozen, shipped backbone (the parent network's
encoder: its generic stride-8 and stride-16 features, docs/memory.md says why
these). Per object group (the objects annotated on the same frames), every run
goes outward from an annotated frame, forward and backward, as OSVOS's does
(propagate._runs). For each new frame and each class (background and every
object), at every feature pixel:

* global match: the mean cosine similarity of its top-k nearest neighbours
  among the memory's pixels of that class (the annotated frames, always kept,
  and a few confidently propagated frames, at most `memory_size`, the oldest
  dropped: memory stays flat over long videos);
* local match: the best similarity within `window` feature pixels of it in the
  previous frame's pixels of that class. An object is only found where it was a
  frame ago: this keeps look-alike objects apart, which appearance alone cannot.

The two are summed and the classes compete per pixel (softmax with a
temperature), giving each object a coarse probability map; upsampled to the
frame it is the mask, optionally with the click segmenter's second opinion
(refine.MaskRefiner) averaged in, the coarse map as its prior. Nothing is tuned:
a correction is one more annotated frame, and re-propagation from it outward
starts at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ...types import InputError
from .base import ObjectsFrame, Propagator, frame_progress

#: what each feature name is (backbone_features): the encoder's generic stride-8 / stride-16 features (ImageNet
#: weights, the same in both shipped networks), the parent's stride-32 features and its decoder's last features
FEATURES = ("f8", "f16", "p32", "dec4")


@dataclass
class MemoryConfig:
    """The memory propagator's options (figures: docs/memory.md). The second opinion's options are
    finetune.SecondOpinionConfig's (refine.refiner_for reads them); this module does not import the tuning's."""
    features: str = "dec4"  # '+'-joined FEATURES, each L2-normalised, all at `stride`
    stride: int = 8  # the matching's resolution in pixels of the network input
    input_long_side: int = 448  # frames are resized so their long side is this (multiples of 32)
    top_k: int = 20  # global match: neighbours per class
    window: int = 4  # local match: half side of the window in the previous frame, in feature pixels
    local_weight: float = 1.0  # the local match's share next to the global one's 1
    temperature: float = 0.05  # softmax over classes of the summed similarities
    memory_size: int = 4  # propagated frames kept in memory at most (annotated frames always kept)
    memory_every: int = 5  # a propagated frame joins the memory at most every this many frames
    memory_confidence: float = 0.8  # ... when every object's confidence is at least this
    threshold: float = 0.5
    labels: str = "argmax"  # what a propagated frame is labelled with: "argmax" of the classes, or its "masks"
    # The click segmenter's second opinion on the coarse map (SecondOpinionConfig): DAVIS-2016 train 240p, the
    # first six sequences, J +1.6 to +9.4 a sequence, better on every one (and on two val ones) (docs/memory.md).
    refine: bool = True
    refine_crf: bool = False
    refine_size: int = 448
    refine_weight: float = 0.6
    bf16: bool | None = False  # the second opinion in bfloat16 (frames.wants_bf16)
    int8: bool = False

    def check(self) -> None:
        if self.refine_size < 32 or not 0 < self.refine_weight <= 1:
            raise InputError("refine_size >= 32 and refine_weight in (0, 1] are required")
        names = self.features.split("+")
        if not names or any(n not in FEATURES for n in names):
            raise InputError(f"features must be '+'-joined names from {', '.join(FEATURES)}, got {self.features!r}")
        if self.stride not in (4, 8, 16, 32):
            raise InputError(f"stride must be 4, 8, 16 or 32, got {self.stride}")
        if self.top_k < 1 or self.window < 0 or self.memory_size < 0 or self.memory_every < 1:
            raise InputError("top_k >= 1, window >= 0, memory_size >= 0 and memory_every >= 1 are required")
        if self.labels not in ("argmax", "masks"):
            raise InputError(f"labels must be 'argmax' or 'masks', got {self.labels!r}")
        if self.temperature <= 0 or not 0 < self.threshold < 1:
            raise InputError("temperature > 0 and a threshold in (0, 1) are required")


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {"refine": False},  # the coarse maps alone, upsampled: no second network per frame
}


@torch.no_grad()
def backbone_features(net, image: np.ndarray, kinds, long_side: int = 448, stride: int | None = None) -> dict:
    """{kind: (C, h, w) float32 tensor} of one RGB uint8 frame, each L2-normalised per pixel; joined kinds
    ('f8+f16') are concatenated (divided by sqrt(n) to stay unit length). With `stride`, every kind is
    resized to that stride (area when shrinking, bilinear when growing); else each keeps its own."""
    from ..frames import input_size, resize_rgb

    size = input_size(*image.shape[:2], long_side)
    x = torch.from_numpy(np.array(resize_rgb(image[..., :3], size))).permute(2, 0, 1)[None].float() / 255
    device = next(net.parameters()).device
    x = x.to(device)
    wanted = {k for kind in kinds for k in kind.split("+")}
    early = net.early_features(x)
    base = {"f8": early[2], "f16": early[3]}
    if wanted & {"p32", "dec4"}:
        late = net.encoder.late(early[3])
        base["p32"] = late[-1]
        if "dec4" in wanted:
            base["dec4"] = _decoder_features(net, [*early, *late])
    out = {}
    for kind in kinds:
        parts = []
        for k in kind.split("+"):
            f = base[k]
            if stride is not None:
                h, w = size[0] // stride, size[1] // stride
                if f.shape[-2:] != (h, w):
                    mode = "area" if f.shape[-1] > w else "bilinear"
                    f = F.interpolate(f, size=(h, w), mode=mode, **({} if mode == "area" else {"align_corners": False}))
            parts.append(F.normalize(f[0].float(), dim=0))
        out[kind] = torch.cat(parts, 0) / len(parts) ** 0.5 if len(parts) > 1 else parts[0]
    return out


def _decoder_features(net, feats) -> torch.Tensor:
    """The parent decoder's last features before its output layer (stride 4)."""
    dec = net.decoder
    f4, f8, f16, f32 = feats[1:]
    x = dec.lateral[3](f32)
    for lat, smooth, f in zip((dec.lateral[2], dec.lateral[1], dec.lateral[0]), dec.smooth, (f16, f8, f4)):
        x = F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False)
        x = smooth(x + lat(f))
    return dec.fuse(x)


def coarse_labels(masks: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """(h, w) long: 0 background, k + 1 where object k covers most of the feature pixel's area."""
    cover = [torch.from_numpy(np.ascontiguousarray(m, np.float32))[None, None] for m in masks]
    areas = [F.interpolate(c, size=size, mode="area")[0, 0] for c in cover]
    fg = torch.stack(areas) if areas else torch.zeros((0, *size))
    bg = (1 - fg.sum(0)).clamp(min=0)[None]
    return torch.cat([bg, fg]).argmax(0)


def global_match(query: torch.Tensor, keys: list, k: int) -> torch.Tensor:
    """(n_classes, h, w): per pixel of `query` (C, h, w), the mean cosine similarity of its top-k neighbours
    among the memory's pixels of each class (`keys[c]`, (C, N_c)); -1 for a class with none."""
    C, h, w = query.shape
    q = query.reshape(C, -1).T
    out = torch.full((len(keys), h * w), -1.0)
    for c, kc in enumerate(keys):
        if kc.shape[1]:
            out[c] = (q @ kc).topk(min(k, kc.shape[1]), dim=1).values.mean(1)
    return out.reshape(len(keys), h, w)


def local_match(query: torch.Tensor, prev: torch.Tensor, prev_labels: torch.Tensor, n_classes: int,
                window: int) -> torch.Tensor:
    """(n_classes, h, w): per pixel, the best cosine similarity to the previous frame's pixels of each class
    within `window` feature pixels (a square); -1 where the class has no pixel that near."""
    C, h, w = query.shape
    r = window
    pp = F.pad(prev, (r, r, r, r))
    lab = F.pad(prev_labels, (r, r, r, r), value=-1)
    sims, labs = [], []
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            sims.append((query * pp[:, dy:dy + h, dx:dx + w]).sum(0))
            labs.append(lab[dy:dy + h, dx:dx + w])
    sim, labs = torch.stack(sims), torch.stack(labs)  # (offsets, h, w)
    return torch.stack([torch.where(labs == c, sim, -1.0).amax(0) for c in range(n_classes)])


class Memory:
    """The labelled frames one run matches against, each class's pixels apart: annotated frames for good,
    propagated ones first in first out (at most `size`)."""

    def __init__(self, size: int, n_classes: int):
        self.size, self.n_classes = size, n_classes
        self.fixed: list[list[torch.Tensor]] = []
        self.recent: list[list[torch.Tensor]] = []
        self._cat = None

    def add(self, keys: torch.Tensor, labels: torch.Tensor, fixed: bool = False) -> None:
        flat, lab = keys.reshape(keys.shape[0], -1), labels.reshape(-1)
        entry = [flat[:, lab == c] for c in range(self.n_classes)]
        if fixed:
            self.fixed.append(entry)
        elif self.size > 0:
            self.recent.append(entry)
            del self.recent[:-self.size]
        self._cat = None

    def __len__(self) -> int:
        return len(self.fixed) + len(self.recent)

    def keys(self) -> list[torch.Tensor]:
        """Each class's keys, (C, N_c)."""
        if self._cat is None:
            entries = self.fixed + self.recent
            self._cat = [torch.cat([e[c] for e in entries], 1) for c in range(self.n_classes)]
        return self._cat


def class_probs(query, memory: Memory, prev, prev_labels, n_classes: int, config: MemoryConfig) -> torch.Tensor:
    """(n_classes, h, w) softmax over background and the objects of the global and local matches."""
    score = global_match(query, memory.keys(), config.top_k)
    if prev is not None and config.local_weight > 0:
        score = score + config.local_weight * local_match(query, prev, prev_labels, n_classes, config.window)
    return torch.softmax(score / config.temperature, 0)


def _group_by_frames(annotated: Mapping) -> list[list]:
    """Objects annotated on the same frames, together (one pass each)."""
    groups: dict[tuple, list] = {}
    for o, masks in annotated.items():
        groups.setdefault(tuple(sorted(masks)), []).append(o)
    return list(groups.values())


class MemoryPropagator(Propagator):
    """config: a MemoryConfig; parent: the parent network (its encoder is the backbone) or a callable that
    loads it; refiner: the second opinion to reuse (None: made when config.refine asks for one)."""

    def _features(self, image):
        kinds = [self.config.features]
        return backbone_features(self.parent(), image, kinds, self.config.input_long_side, self.config.stride)[kinds[0]]

    def _refiner(self):
        if self.refiner is None and self.config.refine:
            from ..refine import refiner_for

            self.refiner = refiner_for(self.config)
        return self.refiner

    def predict(self, source, annotated: Mapping, frames: list[int], sink=None) -> Generator[Any, None, None]:
        from ..propagate import _as_source

        src = _as_source(source)
        n = len(src) if hasattr(src, "__len__") else int(src.n_frames)
        jobs = []
        for objs in _group_by_frames(annotated):
            anchors = sorted(annotated[objs[0]])
            todo = [t for t in frames if t not in set(anchors)]
            if todo:
                jobs.append((objs, anchors, todo))
        total = sum(len(todo) for _, _, todo in jobs)
        yield from frame_progress(self._all(src, n, annotated, jobs, sink), total)

    def run(self, source, annotated, frames, sink=None, checkpoint=None, skip=()):
        skip = set(skip)
        todo = [t for t in frames if t not in skip]
        if todo:
            yield from self.predict(source, annotated, todo, sink=sink)

    def _all(self, src, n, annotated, jobs, sink):
        from ..propagate import _runs

        for objs, anchors, todo in jobs:
            for anchor, run in _runs(n, anchors, todo):
                yield from self._run(src, annotated, objs, anchors, anchor, run, sink)

    def _run(self, src, annotated, objs, anchors, anchor, run, sink):
        """One run outward from `anchor`: every frame of `run` in order, each matched to the one before it."""
        from ..frames import input_size, resize_rgb
        from ..propagate import confidence_of, exclusive, read_block

        cfg = self.config
        n_classes = len(objs) + 1
        memory = Memory(cfg.memory_size, n_classes)
        fsize = None
        for a in anchors:
            (img,) = read_block(src, [a])
            keys = self._features(img)
            fsize = keys.shape[-2:]
            labels = coarse_labels([annotated[o][a] for o in objs], fsize)
            memory.add(keys, labels, fixed=True)
            if a == anchor:
                prev, prev_labels = keys, labels
        before = anchor
        since = 0
        for t in run:
            (img,) = read_block(src, [t])
            H, W = img.shape[:2]
            query = self._features(img)
            if abs(t - before) > 1 and sink is not None:  # the frame before was done by an earlier run (resume)
                b = t - int(np.sign(t - before))
                stored = [sink.masks(o, [b]).get(b) for o in objs]
                if all(m is not None for m in stored):
                    (pimg,) = read_block(src, [b])
                    prev, prev_labels = self._features(pimg), coarse_labels(stored, fsize)
            probs = class_probs(query, memory, prev, prev_labels, n_classes, cfg)
            masks, out_probs, conf = {}, {}, {}
            refiner = self._refiner()
            full = F.interpolate(probs[None], size=(H, W), mode="bilinear", align_corners=False)[0]
            winner = full.argmax(0).numpy() if cfg.labels == "argmax" else None
            for i, o in enumerate(objs):
                p = full[i + 1].numpy()
                if refiner is not None:
                    p = self._second_opinion(refiner, img, p, cfg, input_size, resize_rgb)
                    masks[o] = p > cfg.threshold
                else:
                    masks[o] = winner == i + 1 if winner is not None else p > cfg.threshold
                coarse = probs[i + 1].numpy()
                out_probs[o] = coarse.astype(np.float16)
                conf[o] = confidence_of(coarse, cfg.threshold)
            if len(objs) > 1:
                exclusive(masks, out_probs)
            yield ObjectsFrame(int(t), masks, out_probs, conf)
            # The next frame's labels: each feature pixel's winning class. Re-reading them from the thresholded
            # masks would shrink small objects frame after frame (a pixel half covered goes to the background).
            labels = probs.argmax(0) if cfg.labels == "argmax" else coarse_labels([masks[o] for o in objs], fsize)
            prev, prev_labels = query, labels
            before = t
            since += 1
            if since >= cfg.memory_every and min(conf.values()) >= cfg.memory_confidence:
                memory.add(query, labels)
                since = 0

    @staticmethod
    def _second_opinion(refiner, img, p, cfg, input_size, resize_rgb):
        """The click segmenter's opinion averaged in at its input size, back at the frame's."""
        from ..refine import upsample_logits

        H, W = img.shape[:2]
        size = input_size(H, W, cfg.input_long_side)
        small = torch.from_numpy(p)[None, None]
        prob = F.interpolate(small, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
        logits = refiner(resize_rgb(img[..., :3], size), prob, prob > cfg.threshold)
        return 1 / (1 + np.exp(-upsample_logits(logits, (H, W))))
