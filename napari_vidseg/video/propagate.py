"""Segment every frame of a video with a (fine-tuned) parent network.

    for r in propagate(net, source, {0: mask0}, config):
        store(r.t, r.mask, r.prob, r.confidence)   # closing the loop cancels

Work goes outward from the annotated frames: each unannotated frame belongs
to its nearest annotated frame (its "anchor"), forward or backward of it.
Those runs are processed in round-robin blocks of a few frames
(`inference_batch`: one read of the video and one batched forward pass per
block), so the frames next to the user's annotations are ready
first and the results are usable while propagation continues.

Each frame is predicted independently by the network tuned on all annotated
frames (with `refine`, its logits averaged with the interactive segmenter's
opinion of the mask, video/refine.py); the only temporal link is the clean-up against the object of the
frame before it in the run (`clean_frame`): blobs that do not come near it
are dropped (`keep_components`), which removes distractors that appear away
from the object, and optionally (`reach` > 0; off by default) pixels farther
from it than `reach` are background.

Per-frame work outside the network is kept at the network's resolution: the
full-resolution output is only the thresholded, upsampled logits (no
full-size probability map, no full-size connected components), so a 1080p
frame costs little more than a 480p one.  (A TorchScript-frozen network was
tried for the CPU and was not reliably faster than the eager one with
BatchNorm folded: 355 vs 306 ms a frame in one run, 260 vs 380 in another.)

GPU out of memory: the block that failed and every later one run on the CPU;
frames already yielded are not computed again. A GPUFallbackWarning names the
frame it continues from (models/device.py).
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Generator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..models.device import CPU, announce_cpu_fallback, bf16_autocast, is_gpu_oom
from ..types import InputError
from .finetune import (FinetuneConfig, forward_batch, input_size, load_parent, resize_mask, resize_rgb, to_tensor,
                       wants_bf16)
from .refine import MaskRefiner, refiner_for, upsample_logits

__all__ = ["FrameResult", "ObjectsFrame", "propagate", "propagate_objects", "plan_order", "prepare_for_inference", "load_parent", "clean_frame"]


@dataclass
class FrameResult:
    t: int
    mask: np.ndarray  # (H, W) bool
    prob: np.ndarray  # (h, w) float16: the foreground probability at the network's input size (refined: averaged)
    confidence: float  # in [0, 1]: how sure the network is about this frame (see confidence_of)
    annotated: bool = False  # True: the annotated mask, handed back unchanged


class _ArraySource:
    """A (T, H, W, 3) array seen through VideoSource's reading interface."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def frames(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop])

    def frames_at(self, indices: Sequence[int]) -> np.ndarray:
        return np.asarray(self.array[list(indices)])


def read_block(src, block: Sequence[int]) -> list[np.ndarray]:
    """The frames of a block, in the block's order (which may run backward), RGB only.
    Consecutive frames are one `frames` read (through a VideoSource's chunk cache);
    a sparse block is one `frames_at` read where the source has it (a VideoSource
    decodes the span once and caches nothing), else one `frames` read per frame."""
    lo, hi = min(block), max(block)
    if hi - lo + 1 == len(block):
        clip = src.frames(lo, hi + 1)
        return [np.asarray(clip[t - lo])[..., :3] for t in block]
    order = sorted(block)
    if hasattr(src, "frames_at"):
        clip = src.frames_at(order)
    else:  # one frame at a time, never the whole span (up to 113 frames: 700 MB at 1080p)
        clip = [src.frames(t, t + 1)[0] for t in order]
    at = {t: k for k, t in enumerate(order)}
    return [np.asarray(clip[at[t]])[..., :3] for t in block]


def _as_source(source):
    if isinstance(source, np.ndarray):
        if source.ndim != 4 or source.shape[-1] < 3:
            raise InputError(f"expected a (T, H, W, 3) video array, got shape {source.shape}")
        return _ArraySource(source)
    if not hasattr(source, "frames"):
        raise InputError(f"expected a VideoSource or a (T, H, W, 3) array, got {type(source).__name__}")
    return source


def _runs(n_frames: int, annotated: Sequence[int], frames: Sequence[int] | None) -> list[tuple[int | None, list[int]]]:
    """(anchor, frames ordered away from it) for every run: each wanted frame
    joins the run of its nearest annotated frame (ties go to the earlier one,
    i.e. forward), one run per anchor and direction. With no annotated frames,
    one forward run from frame 0 (anchor None)."""
    wanted = sorted(set(range(n_frames) if frames is None else (int(t) for t in frames)))
    for t in wanted:
        if not 0 <= t < n_frames:
            raise InputError(f"frame {t} is outside the video (0..{n_frames - 1})")
    anchors = sorted(a for a in set(int(a) for a in annotated) if 0 <= a < n_frames)
    todo = [t for t in wanted if t not in set(anchors)]
    if not anchors:
        return [(None, todo)]
    a = np.asarray(anchors)
    buckets: dict[tuple[int, int], list[int]] = {}
    for t in todo:
        d = np.abs(a - t)
        k = int(np.flatnonzero(d == d.min())[0])  # the earlier anchor on a tie
        direction = 1 if t > a[k] else -1
        buckets.setdefault((k, direction), []).append(t)
    return [(anchors[k], sorted(ts, key=lambda t: abs(t - anchors[k])))
            for (k, direction), ts in sorted(buckets.items(), key=lambda kv: (kv[0][0], -kv[0][1]))]


#: frames of a run at most this far apart share a block (one read over their span): every 4th frame
#: (self-training's first pass) still runs in full batches.
MAX_BLOCK_GAP = 16


def plan_order(n_frames: int, annotated: Sequence[int], frames: Sequence[int] | None = None,
               block: int = 8) -> list[list[int]]:
    """Blocks of frames in processing order (annotated frames excluded).

    Every frame joins the run of its nearest annotated frame (ties go to the
    earlier one, i.e. forward); each run is cut into blocks of up to `block`
    frames ordered away from the anchor, neighbours in a block at most
    MAX_BLOCK_GAP apart (consecutive when every frame is wanted); blocks are taken
    round-robin over the runs so that work spreads outward from every anchor.
    With no annotated frames, one forward run from frame 0."""
    blocks_per_run = []
    for _, run in _runs(n_frames, annotated, frames):
        blocks, cur = [], []
        for t in run:
            # A block is one read over its span: a wide gap starts a new one.
            if cur and (len(cur) == block or abs(t - cur[-1]) > MAX_BLOCK_GAP):
                blocks.append(cur)
                cur = []
            cur.append(t)
        if cur:
            blocks.append(cur)
        blocks_per_run.append(blocks)
    order = []
    for i in range(max((len(b) for b in blocks_per_run), default=0)):
        for blocks in blocks_per_run:
            if i < len(blocks):
                order.append(blocks[i])
    return order


def predecessors(n_frames: int, annotated: Sequence[int], frames: Sequence[int] | None = None) -> dict[int, int]:
    """For every frame to propagate, the frame before it in its run (its
    anchor for the first one): the mask its clean-up is checked against.
    t - 1 or t + 1 when every frame is propagated; the nearest wanted frame
    towards the anchor when only some are (e.g. every 4th)."""
    out = {}
    for anchor, run in _runs(n_frames, annotated, frames):
        if anchor is None:
            continue  # no annotated frame: nothing to check against
        for before, t in zip([anchor, *run], run):
            out[t] = before
    return out


def prepare_for_inference(net, config: FinetuneConfig, device=None):
    """An eval-mode copy on `device`, BatchNorm folded, channels_last."""
    from ..models.fuse import fuse_bn

    device = torch.device(device) if device else next(net.parameters()).device
    net = fuse_bn(net) if config.fuse else copy.deepcopy(net).eval()
    return net.to(device).to(memory_format=torch.channels_last).eval()


def confidence_of(prob: np.ndarray, threshold: float = 0.5) -> float:
    """Mean certainty |2p - 1| over the object's neighbourhood (its bounding box
    grown by half its size), or over the whole frame when nothing is found:
    a frame full of undecided pixels near the object is a likely failure."""
    fg = prob > threshold
    if fg.any():
        ys, xs = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
        h, w = ys[-1] - ys[0] + 1, xs[-1] - xs[0] + 1
        y0, y1 = max(ys[0] - h // 4, 0), ys[-1] + 1 + h // 4
        x0, x1 = max(xs[0] - w // 4, 0), xs[-1] + 1 + w // 4
        region = prob[y0:y1, x0:x1]
    else:
        region = prob
    return float(np.abs(2 * region.astype(np.float32) - 1).mean())


def near_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within `radius` (a square's half side) of `mask`. maximum_filter
    with a square footprint runs as two 1-D passes: cheap."""
    return ndimage.maximum_filter(mask.astype(np.uint8), size=2 * radius + 1) > 0


def drop_distant_blobs(mask: np.ndarray, prev: np.ndarray | None, radius: int) -> np.ndarray:
    """The connected components of `mask` that come within `radius` pixels of
    `prev` (both bool, same size); `mask` itself when there is no previous
    mask, at most one component, or nothing would be left."""
    if prev is None or not mask.any() or not prev.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask
    near = near_mask(prev, radius)
    keep = np.unique(labels[near & (labels > 0)])
    if len(keep) == 0:
        return mask
    return np.isin(labels, keep)


def apply_coarse_cleanup(full: np.ndarray, coarse: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Remove from the full-resolution mask the blobs that drop_distant_blobs
    removed at the network's resolution (`coarse` before, `kept` after).
    A full-resolution pixel goes when its coarse neighbourhood (3x3) touches
    a removed blob and no kept one: the two masks come from the same logits,
    so they differ by less than a coarse pixel along the edges."""
    removed = coarse & ~kept
    if not removed.any():
        return full
    # near_mask(m, 1) is the 3x3 dilation, 2.5x faster than ndimage.binary_dilation here.
    allowed = near_mask(kept, 1) | ~near_mask(removed, 1)
    return full & upsample_nearest(allowed, full.shape)


def upsample_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A coarse (h, w) mask seen at (H, W): each pixel takes its coarse pixel's value."""
    (H, W), (h, w) = size, mask.shape
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.intp), w - 1)
    return mask[rows[:, None], cols[None, :]]


# Blobs that come no nearer than this fraction of the long side to the
# previous frame's object are dropped: objects move a few % of the frame per frame.
BLOB_REACH = 0.04


def cleanup_radii(size: tuple[int, int], reach: float, blobs: float | None) -> tuple[int, int | None]:
    """clean_frame's `reach` and `blob_radius` in pixels of a (h, w) mask, from
    fractions of its long side (reach 0: off; blobs None: off)."""
    long_side = max(size)
    return int(round(reach * long_side)), (None if blobs is None else max(int(blobs * long_side), 1))


def clean_frame(coarse: np.ndarray, full: np.ndarray, prev: np.ndarray | None, reach: int,
                blob_radius: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One propagated frame's masks after the temporal clean-up: (full-size
    mask, coarse mask) from the thresholded network output at its own size
    (`coarse`) and at the frame's (`full`), given the coarse mask of the frame
    before it in the run (`prev`, None when there is none).

    reach: pixels farther than this (coarse pixels; 0: off) from `prev` are
    background. blob_radius: blobs that come no nearer than this to `prev`
    are dropped (None: off). Both are skipped when `prev` is empty, so an
    object that was lost can come back."""
    if prev is not None and prev.any() and reach > 0:
        near = near_mask(prev, reach)
        coarse, full = coarse & near, full & upsample_nearest(near, full.shape)
    if blob_radius is not None:
        kept = drop_distant_blobs(coarse, prev, blob_radius)
        full = apply_coarse_cleanup(full, coarse, kept)
        coarse = kept
    return full, coarse


@dataclass
class ObjectsFrame:
    """One frame of a several-object propagation: the objects computed on it
    (those not annotated there), each with its mask (H, W) bool, its
    probability at the network's size (float16) and its confidence. Pixels
    claimed by several objects belong to the most probable one only."""
    t: int
    masks: dict
    probs: dict
    confidence: dict


def propagate(net, source, annotated: Mapping[int, np.ndarray], config: FinetuneConfig | None = None,
              frames: Sequence[int] | None = None,
              timings: dict[str, float] | None = None,
              refiner: MaskRefiner | None = None, previous=None) -> Generator[FrameResult, None, None]:
    """Yield a FrameResult for every frame in `frames` (default: all): first the
    annotated frames (their masks, unchanged), then the others outward from
    them. Close the generator to cancel; nothing is left running.
    One object: `propagate_objects` with the network's single output.

    timings: a dict that gets the seconds spent in each stage added to it:
    "read" (the source's frames), "resize", "network" (to the device, the
    forward pass, back to the host) and "cleanup" (clean_frame, the float16
    copy, the confidence); the consumer's time between frames is not counted
    (scripts/bench_propagation.py).

    refiner: the second opinion to use when config.refine is on (default: a
    MaskRefiner on the shipped interactive weights, made for this call); pass
    one to reuse it across calls or to try other weights (eval-video's
    --weights-interactive).

    previous(t): the stored mask of a frame this call does not compute (None
    if there is none), for the clean-up of the frame after it: a resumed run."""
    src = _as_source(source)
    n = len(src)
    if not n:
        return
    wanted = set(range(n)) if frames is None else set(int(t) for t in frames)
    results = propagate_objects(net, src, {0: annotated}, config, frames=frames, timings=timings, refiner=refiner,
                                previous=None if previous is None else lambda o, t: previous(t),
                                echo=lambda t, m, size: FrameResult(t, m, (resize_mask(m, size) > 0.5).astype(
                                    np.float16), 1.0, annotated=True) if t in wanted else None)
    try:
        for r in results:
            yield r if isinstance(r, FrameResult) else FrameResult(r.t, r.masks[0], r.probs[0], r.confidence[0])
    finally:
        results.close()


def propagate_objects(net, source, annotated: Mapping, config: FinetuneConfig | None = None,
                      frames: Sequence[int] | None = None, timings: dict[str, float] | None = None,
                      refiner: MaskRefiner | None = None, echo=None,
                      previous=None) -> Generator[ObjectsFrame, None, None]:
    """Segment several objects with one network whose output channels are
    theirs (finetune_objects; channel k is the k-th key of `annotated`, which
    maps each object to its annotated frames {t: mask}). Each frame is read,
    resized and run through the network once for all objects; each object's
    clean-up and second opinion are its own. Yields an ObjectsFrame per frame
    that some object needs (`frames`, default all, less each object's own
    annotated frames), blocks ordered outward from every annotated frame of
    any object (frames annotated for one object but computed for another go
    first). echo(t, mask, size): called for each annotated frame of a single
    object before the rest; what it returns (not None) is yielded first.
    previous(obj, t): the stored mask of a frame not computed here (None if
    none), for the clean-up of the frame after it (a resumed run)."""
    config = config or FinetuneConfig()
    clock = _StageClock(timings)
    src = _as_source(source)
    n = len(src)
    first = src.frames(0, 1)[0] if n else None
    if first is None:
        return
    H, W = first.shape[:2]
    objects = list(annotated)
    for o in objects:
        for t, m in annotated[o].items():
            if np.asarray(m).shape != (H, W):
                raise InputError(f"annotated mask of frame {t} has shape {np.asarray(m).shape}, the video is {H}x{W}")
    device = torch.device(config.device) if config.device else next(net.parameters()).device
    model = prepare_for_inference(net, config, device)
    size = input_size(H, W, config.input_long_side)
    sizes = scaled_sizes(H, W, config)
    wanted = sorted(set(range(n)) if frames is None else set(int(t) for t in frames))
    anchors = sorted({int(t) for o in objects for t in annotated[o]})
    targets = {o: set(wanted) - set(int(t) for t in annotated[o]) for o in objects}
    needed = sorted(set().union(*targets.values()))
    batch = inference_batch(config, device)
    # Frames annotated for some object but needed by another: first, with nothing to check against.
    at_anchors = [t for t in needed if t in set(anchors)]
    plan = [at_anchors[i:i + batch] for i in range(0, len(at_anchors), batch)]
    plan += plan_order(n, anchors, needed, batch)
    before = predecessors(n, anchors, needed)
    waiting = Counter(before.values())  # how many frames still need each mask as their "previous" one
    # The clean-up works at the network's resolution: masks_done holds each object's coarse masks.
    masks_done: dict = {o: {} for o in objects}
    for o in objects:
        for t in sorted(annotated[o]):
            m = np.asarray(annotated[o][t]).astype(bool)
            masks_done[o][t] = resize_mask(m, size) > 0.5
            if echo is not None:
                r = echo(t, m, size)
                if r is not None:
                    yield r
    reach, radius = cleanup_radii(size, config.reach, BLOB_REACH if config.keep_components else None)
    want_int8 = config.int8 and device.type == "cpu"
    if refiner is None or not config.refine:
        refiner = refiner_for(config, device)
    cut = math.log(config.threshold / (1 - config.threshold))
    full_size = (H, W) if refiner is None else None  # refined frames get theirs from the refined logits
    use_bf16 = wants_bf16(config, device)
    clock.restart()
    for block in plan:
        clip = read_block(src, block)
        clock.lap("read")
        imgs = np.stack([resize_rgb(f, size) for f in clip])
        clock.lap("resize")
        if want_int8:
            # Calibrated on the first block: the video's own frames at the size that will be run.
            model, want_int8 = _int8_or_float(net, model, to_tensor(imgs, CPU)), False
        try:
            probs = _block_probs(model, imgs, device, use_bf16, full_size, config.threshold, config.flip, sizes)
        except Exception as e:
            if not is_gpu_oom(e, device):
                raise
            probs = None
        if probs is None:
            # Out of the except block, whose traceback holds the failed block's GPU tensors.
            # Frames already yielded stay done: this block and the rest go on on the CPU.
            model, old, device = model.to(CPU), device, CPU
            use_bf16 = wants_bf16(config, device)
            announce_cpu_fallback("propagation", f"continuing from frame {block[0]}", old)
            probs = _block_probs(model, imgs, device, use_bf16, full_size, config.threshold, config.flip, sizes)
        small, full = probs
        clock.lap("network")
        results = []
        for i, t in enumerate(block):
            masks = {}
            for k, o in enumerate(objects):
                if t not in targets[o]:
                    continue
                # The frame before it in its run was done before (earlier block or index).
                prev = masks_done[o].get(before.get(t, -1))
                if prev is None and previous is not None and t in before:
                    stored = previous(o, before[t])
                    if stored is not None:  # done by an earlier run: its mask, at the network's size
                        prev = masks_done[o][before[t]] = resize_mask(np.asarray(stored, bool), size) > 0.5
                coarse = small[i, k] > config.threshold
                if refiner is None:
                    full_k = full[i, k]
                else:
                    seed = coarse if radius is None else drop_distant_blobs(coarse, prev, radius)
                    logits = refiner(imgs[i], small[i, k], seed)
                    small[i, k] = 1 / (1 + np.exp(-logits))
                    coarse, full_k = small[i, k] > config.threshold, upsample_logits(logits, (H, W)) > cut
                    clock.lap("refine")
                masks[o], masks_done[o][t] = clean_frame(coarse, full_k, prev, reach, radius)
            owners = [k for k, o in enumerate(objects) if o in masks]
            if len(owners) > 1:
                exclusive(masks, {objects[k]: small[i, k] for k in owners})
            results.append((t, masks, owners))
        small16 = as_float16(small)
        frames_out = [ObjectsFrame(t, masks, {objects[k]: small16[i, k] for k in owners},
                                   {objects[k]: confidence_of(small[i, k], config.threshold) for k in owners})
                      for i, (t, masks, owners) in enumerate(results)]
        clock.lap("cleanup")
        for r in frames_out:
            yield r
        clock.restart()  # the consumer's time is not propagation's
        # A mask is kept only while a frame still waits for it as its "previous" mask.
        for t in block:
            if t in before:
                waiting[before[t]] -= 1
        for o in objects:
            own = annotated[o]
            for t in [t for t in masks_done[o] if t not in own and waiting[t] <= 0]:
                del masks_done[o][t]


def exclusive(masks: dict, probs: Mapping) -> None:
    """Give every pixel claimed by several objects to the one whose probability
    (at the network's size, seen at the mask's size) is highest; in place."""
    keys = list(probs)
    shape = next(iter(masks.values())).shape
    claims = np.zeros(shape, np.uint16)
    for o in keys:
        claims += masks[o]
    contested = claims > 1
    if not contested.any():
        return
    best = upsample_nearest(np.argmax(np.stack([np.asarray(probs[o], np.float32) for o in keys]), 0), shape)
    for k, o in enumerate(keys):
        masks[o] &= ~contested | (best == k)


class _StageClock:
    """Adds the seconds since the last lap to `timings[stage]`; does nothing
    without a dict. The network stage ends when its results are on the host,
    so a GPU's queued work is counted there."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.restart()

    def restart(self) -> None:
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.t
            self.t = now


def inference_batch(config: FinetuneConfig, device: torch.device) -> int:
    """Frames per forward pass: config.batch_infer, or forward_batch's default for the device."""
    return int(config.batch_infer) if config.batch_infer else forward_batch(device)


def scaled_sizes(height: int, width: int, config: FinetuneConfig) -> list[tuple[int, int]]:
    """The network input sizes a (height, width) video is seen at: one per
    entry of config.scales, a multiple of config.input_long_side."""
    return [input_size(height, width, int(round(config.input_long_side * float(s)))) for s in config.scales]


def as_float16(a: np.ndarray) -> np.ndarray:
    """float32 -> float16, the same values as numpy's astype, through torch:
    numpy converts values that become float16 subnormals (below 6e-5, most
    of a probability map's background) in software, 24 ms for one 864x480
    map against 0.15 ms here (session 12, AMD EPYC: a quarter of a
    propagated frame's time on that CPU, and 15x the network's on a GPU)."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).half().numpy()


def _int8_or_float(net, model, calibration: torch.Tensor):
    """An int8 copy of `net` for the CPU, or the float `model` (with a
    warning) when this torch or CPU cannot make one."""
    from ..models.quantize import QuantizationUnavailable, quantize_int8

    try:
        return quantize_int8(net, calibration)
    except QuantizationUnavailable as e:
        warnings.warn(f"{e}; propagating in float32", RuntimeWarning, stacklevel=3)
        return model


def _block_probs(model, imgs: np.ndarray, device: torch.device, bf16: bool,
                 frame_size: tuple[int, int] | None, threshold: float = 0.5, flip: bool = False,
                 sizes: Sequence[tuple[int, int]] = ()) -> tuple[np.ndarray, np.ndarray | None]:
    """A block of resized frames -> foreground probabilities (N, K, h, w) at the
    network's size and masks (N, K, H, W) bool at the frame's size (K: the network's outputs; None
    without `frame_size`): the logits
    upsampled (sharper edges than upsampled probabilities) and compared with
    the threshold's logit, so no full-size probability map is ever made.
    flip: the logits averaged with those of the mirrored frames. sizes: the
    input sizes the frames are seen at, logits averaged at the frames' size
    (empty: their own size only)."""
    with torch.inference_mode(), bf16_autocast(device, bf16):
        x = to_tensor(imgs, device)
        logits = _multiscale_logits(model, x, flip, sizes or [tuple(x.shape[-2:])])
        small = torch.sigmoid(logits).cpu().numpy()
        if frame_size is None:
            return small, None
        cut = math.log(threshold / (1 - threshold))
        # One object's channel at a time: K full-size float maps at once would be K x 8 MB a frame at 1080p.
        full = [F.interpolate(logits[:, k:k + 1], size=frame_size, mode="bilinear", align_corners=False)[:, 0] > cut
                for k in range(logits.shape[1])]
    return small, torch.stack(full, 1).cpu().numpy()


def _multiscale_logits(model, x: torch.Tensor, flip: bool, sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The mean of the logits of `x` resized to each of `sizes` (and of its
    mirror image with `flip`), each brought back to x's size. The resized
    inputs come from x, not from the original frame: at the sizes used (the
    frame's own size and up) that is the same upsampling."""
    h, w = x.shape[-2:]
    total = None
    for size in sizes:
        xs = x
        if tuple(size) != (h, w):
            xs = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False,
                               antialias=size[0] < h).contiguous(memory_format=torch.channels_last)
        out = model(xs).float()
        if flip:
            out = (out + model(xs.flip(-1)).float().flip(-1)) / 2
        if out.shape[-2:] != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        total = out if total is None else total + out
    return total / len(sizes)
