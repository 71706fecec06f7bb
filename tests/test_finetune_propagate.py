"""One-shot tuning, propagation, frame quality and the DAVIS evaluation on a
tiny synthetic moving-disk video (no data, no shipped weights needed)."""
from __future__ import annotations

import json
from dataclasses import replace
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from PIL import Image

from conftest import decode_index, encode_index, iou, moving_disk

from napari_vidseg.io.video import VideoSource
from napari_vidseg.models.quantize import int8_supported
from napari_vidseg.models.registry import cpu_has_native_bf16
from napari_vidseg.models.vidsegnet import VidSegNet
from napari_vidseg.types import Progress
from napari_vidseg.types import InputError
from napari_vidseg.video.finetune import FinetuneConfig, finetune, input_size
from napari_vidseg.video.propagate import (MAX_BLOCK_GAP, FrameResult, _as_source, apply_coarse_cleanup,
                                           as_float16, drop_distant_blobs, near_mask, plan_order, propagate,
                                           read_block, wants_bf16)
from napari_vidseg.video.quality import frame_scores, worst_frames
from napari_vidseg.video import refine as refine_mod
from napari_vidseg.video.refine import MaskRefiner, logit as refine_logit
from napari_vidseg.interactions.robot import interior_click
from napari_vidseg.segment.predictor import Prediction

T, H, W, R = 12, 64, 64, 12


def disk_video(T=T, H=H, W=W, r=R, seed=0):
    """A red disk moving right over a dark noisy background."""
    return moving_disk(T, H, W, r, x0=16, step=3, seed=seed)


def random_net(seed=0) -> VidSegNet:
    """A random VidSegNet(3) whose BatchNorm statistics are measured on the
    disk video (one forward pass in train mode): a "briefly tuned" parent
    with random weights. With PyTorch's initial statistics (mean 0, var 1)
    the random encoder's features vanish or saturate and nothing can be tuned."""
    torch.manual_seed(seed)
    net = VidSegNet(3)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration pass
            m.reset_running_stats()
    video, _ = disk_video()
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255)
    return net.eval()


def run_finetune(net, frames, masks, cfg):
    progress, gen = [], finetune(net, frames, masks, cfg)
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as stop:
            return stop.value, progress


FAST = dict(input_long_side=64, n_aug=8, batch=4, lr=1e-2, batch_infer=4, crop=1.0, refine=False)


@pytest.fixture(scope="module")
def tuned():
    video, truth = disk_video()
    net = random_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = FinetuneConfig(mode="head", steps=40, **FAST)
    out, progress = run_finetune(net, [video[0]], [truth[0]], cfg)
    return video, truth, net, before, out, progress, cfg


def test_finetune_yields_progress_and_returns_a_tuned_copy(tuned):
    video, truth, net, before, out, progress, cfg = tuned
    assert isinstance(out, VidSegNet) and out is not net
    assert all(isinstance(p, Progress) for p in progress)
    stages = [p.stage for p in progress]
    assert stages[0] == "features" and stages[-1] == "finetune"
    assert progress[-1].done == progress[-1].total == cfg.steps
    # The parent is untouched.
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_finetune_learns_the_annotated_frame(tuned):
    video, truth, net, before, out, progress, cfg = tuned
    x = torch.from_numpy(video[:1]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        pred_after = (torch.sigmoid(out(x))[0, 0] > 0.5).numpy()
        pred_before = (torch.sigmoid(net(x))[0, 0] > 0.5).numpy()
    assert iou(pred_after, truth[0]) > 0.8
    assert iou(pred_before, truth[0]) < 0.5  # the untuned net knows nothing of the disk


def test_lean_adam_takes_torch_adams_steps():
    from napari_vidseg.video.finetune import LeanAdam

    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    start = [p.detach().clone() for p in a]
    ours = LeanAdam([{"params": a[:1], "lr": 1e-2}, {"params": a[1:], "lr": 3e-3}])
    ref = torch.optim.Adam([{"params": b[:1], "lr": 1e-2}, {"params": b[1:], "lr": 3e-3}])
    for step in range(6):
        for opt, ps in ((ours, a), (ref, b)):
            opt.zero_grad()
            loss = (ps[0] ** 3).sum() + (ps[1].sin() * (step + 1)).sum()
            loss.backward()
            if step == 2:
                ps[1].grad = None  # a parameter without a gradient is left alone
            opt.step()
        ours.param_groups[0]["lr"] *= 0.5  # a schedule, as fine-tuning's cosine
        ref.param_groups[0]["lr"] *= 0.5
    for p, q, p0 in zip(a, b, start):
        assert (p - p0).abs().min() > 1e-3  # every value moved
        assert torch.allclose(p, q, atol=1e-6), (p, q)


def test_finetuning_does_not_import_torch_dynamo():
    """torch.optim's first optimizer imports torch._dynamo (15-25 s on the 2-core CPU, and
    triton with it); fine-tuning must not pay that."""
    code = (
        "import sys, numpy as np\n"
        "from napari_vidseg.models.vidsegnet import VidSegNet\n"
        "from napari_vidseg.progress import drain\n"
        "from napari_vidseg.video.finetune import FinetuneConfig, finetune\n"
        "f = np.zeros((64, 64, 3), np.uint8); m = np.zeros((64, 64), bool); m[20:40, 20:40] = True\n"
        "for mode in ('head', 'full'):\n"
        "    drain(finetune(VidSegNet(3).eval(), [f], [m], FinetuneConfig(mode=mode, steps=2, n_aug=2, "
        "input_long_side=64)), quiet=True)\n"
        "print(sorted(k for k in ('torch._dynamo', 'triton') if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.xfail(reason="KNOWN ISSUE: 'full' mode reached mean IoU 0.44 (< 0.7) on the disk video in one run; "
                   "its defaults are not tuned yet", strict=False)
def test_full_mode_runs_and_learns():
    video, truth = disk_video()
    cfg = FinetuneConfig(mode="full", steps=40, **FAST)
    out, _ = run_finetune(random_net(), [video[0]], [truth[0]], cfg)
    res = {r.t: r for r in propagate(out, video, {0: truth[0]}, cfg)}
    assert np.mean([iou(res[t].mask, truth[t]) for t in range(1, T)]) > 0.7


def test_propagate_forward_from_frame_zero(tuned):
    video, truth, net, before, out, progress, cfg = tuned
    res = list(propagate(out, video, {0: truth[0]}, cfg))
    assert [r.t for r in res] == list(range(T))
    assert res[0].annotated and np.array_equal(res[0].mask, truth[0])
    for r in res:
        assert isinstance(r, FrameResult)
        assert r.mask.shape == (H, W) and r.mask.dtype == bool
        assert r.prob.shape == input_size(H, W, cfg.input_long_side) and r.prob.dtype == np.float16
        assert 0.0 <= r.confidence <= 1.0
    # The disk moves 3 px a frame: the tuned net follows it.
    assert np.mean([iou(r.mask, truth[r.t]) for r in res[1:]]) > 0.7


def test_propagate_both_directions_from_a_middle_frame(tuned):
    video, truth, net, before, out, progress, cfg = tuned
    order = [r.t for r in propagate(out, video, {5: truth[5]}, cfg)]
    assert order[0] == 5 and sorted(order) == list(range(T))
    fwd = [t for t in order if t > 5]
    bwd = [t for t in order if t < 5]
    assert fwd == sorted(fwd) and bwd == sorted(bwd, reverse=True)
    # Round-robin blocks of 4: forward 6-9, backward 4-1, forward 10-11, backward 0.
    assert order == [5, 6, 7, 8, 9, 4, 3, 2, 1, 10, 11, 0]


def test_bf16_propagation_follows_the_float_one(tuned):
    video, truth, net, before, out, progress, cfg = tuned
    fp = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, replace(cfg, bf16=False))}
    bf = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, replace(cfg, bf16=True))}
    assert sorted(bf) == list(range(T))
    assert np.mean([iou(bf[t], fp[t]) for t in range(1, T)]) > 0.9


def test_flip_averaging_makes_propagation_mirror_equivariant(tuned):
    """With flip on, a mirrored video gets exactly the mirrored probabilities
    (the average over a frame and its mirror does not depend on which of the
    two came in); without it the tuned network is not equivariant, so the
    check can tell the two apart."""
    video, truth, net, before, out, progress, cfg = tuned
    cfg = replace(cfg, bf16=False, int8=False)
    mirrored = np.ascontiguousarray(video[:, :, ::-1])

    def probs(v, m, flip):
        return {r.t: r.prob.astype(np.float32) for r in propagate(out, v, {0: m}, replace(cfg, flip=flip))}

    for flip in (True, False):
        a, b = probs(video, truth[0], flip), probs(mirrored, truth[0][:, ::-1], flip)
        gap = max(np.abs(a[t][:, ::-1] - b[t]).max() for t in range(1, T))
        if flip:
            assert gap < 1e-2
        else:
            assert gap > 1e-2
    plain = probs(video, truth[0], False)
    flipped = probs(video, truth[0], True)
    assert np.mean([iou(flipped[t] > 0.5, truth[t]) for t in range(1, T)]) > 0.8
    assert any(np.abs(flipped[t] - plain[t]).max() > 1e-3 for t in range(1, T))


def test_multiscale_propagation_averages_the_logits_of_each_scale(tuned):
    """scales=(1, 1.5): each frame's logits are the mean of the network's at the
    input size and at 1.5x it (brought back to the input size); one scale
    gives the single-scale probabilities exactly."""
    import torch.nn.functional as F

    from napari_vidseg.video.propagate import prepare_for_inference

    video, truth, net, before, out, progress, cfg = tuned
    cfg = replace(cfg, bf16=False, int8=False)
    one = {r.t: r.prob.astype(np.float32) for r in propagate(out, video, {0: truth[0]}, cfg)}
    two = {r.t: r.prob.astype(np.float32) for r in propagate(out, video, {0: truth[0]},
                                                             replace(cfg, scales=(1.0, 1.5)))}
    model = prepare_for_inference(out, cfg)
    h, w = input_size(H, W, cfg.input_long_side)
    big = input_size(H, W, int(cfg.input_long_side * 1.5))
    assert big != (h, w)
    with torch.no_grad():
        x = torch.from_numpy(video[1:3]).permute(0, 3, 1, 2).float() / 255
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        l1 = model(x)
        l2 = F.interpolate(model(F.interpolate(x, size=big, mode="bilinear", align_corners=False)),
                           size=(h, w), mode="bilinear", align_corners=False)
        expect = torch.sigmoid((l1 + l2) / 2)[:, 0].numpy()
        single = torch.sigmoid(l1)[:, 0].numpy()
    for i, t in enumerate((1, 2)):
        assert np.abs(two[t] - expect[i]).max() < 2e-3  # float16 storage
        assert np.abs(one[t] - single[i]).max() < 2e-3
    assert max(np.abs(two[t] - one[t]).max() for t in (1, 2)) > 1e-2  # the second scale changes something
    assert np.mean([iou(two[t] > 0.5, truth[t]) for t in range(1, T)]) > 0.7


def test_propagation_reports_where_its_time_went(tuned):
    video, truth, net, before, out, progress, cfg = tuned
    spent = {}
    timed = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, cfg, timings=spent)}
    plain = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, cfg)}
    assert all(np.array_equal(timed[t], plain[t]) for t in range(T))
    assert set(spent) == {"read", "resize", "network", "cleanup"}
    assert all(v >= 0 for v in spent.values()) and spent["network"] > 0


def test_interior_click_is_the_deepest_point_of_the_region():
    region = np.zeros((20, 30), bool)
    region[4:15, 2:25] = True  # 11 x 23: the centre row 9, columns near 13
    c = interior_click(region)
    assert c.positive and c.y == 9 and 7 <= c.x <= 19
    assert not interior_click(region, positive=False).positive
    # Distances over the bounding box only: as deep as the deepest point over the whole frame.
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = np.zeros((40, 50), bool)
        for _ in range(3):
            y, x, h, w = rng.integers(0, 40), rng.integers(0, 50), rng.integers(1, 20), rng.integers(1, 20)
            m[y:y + h, x:x + w] = True
        d = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        c = interior_click(m)
        assert m[int(c.y), int(c.x)] and d[int(c.y), int(c.x)] == d.max()


class _StubPredictor:
    """Stands in for the interactive segmenter: records what it was given and
    answers with a fixed probability map."""

    def __init__(self, prob):
        self.prob, self.calls = prob, []

    def set_image(self, image):
        self.image = image

    def predict(self, interactions, prev_mask=None):
        self.calls.append((interactions.clicks, prev_mask))
        return Prediction(self.prob > 0.5, self.prob, (0, 1, 0, 1))


def test_refiner_averages_the_two_opinions_in_logits():
    prob = np.full((16, 16), 0.2, np.float32)
    prob[4:12, 4:12] = 0.9
    other = np.full((16, 16), 0.6, np.float32)
    refiner = MaskRefiner.__new__(MaskRefiner)
    refiner.predictor, refiner.crf, refiner.weight = _StubPredictor(other), False, 0.5
    seed = prob > 0.5
    out = refiner(np.zeros((16, 16, 3), np.uint8), prob, seed)
    assert np.allclose(out, (refine_logit(prob) + refine_logit(other)) / 2, atol=1e-5)
    (clicks, prev), = refiner.predictor.calls
    assert prev is seed and len(clicks) == 1 and clicks[0].positive and seed[int(clicks[0].y), int(clicks[0].x)]
    # An empty seed (the object is lost): no second opinion, the network's own logits.
    assert np.allclose(refiner(np.zeros((16, 16, 3), np.uint8), prob, np.zeros_like(seed)), refine_logit(prob),
                       atol=1e-5)
    assert len(refiner.predictor.calls) == 1
    # Through the CRF (whose probabilities are near 0 and 1) the probabilities are averaged instead.
    refiner.crf = True
    assert np.allclose(refiner(np.zeros((16, 16, 3), np.uint8), prob, seed), refine_logit((prob + other) / 2),
                       atol=1e-5)
    # Weighted: the second opinion's share.
    refiner.crf, refiner.weight = False, 0.75
    assert np.allclose(refiner(np.zeros((16, 16, 3), np.uint8), prob, seed),
                       0.25 * refine_logit(prob) + 0.75 * refine_logit(other), atol=1e-5)


class _SquareRefiner:
    """Stands in for MaskRefiner: records what it is given and answers with
    the logits of a fixed square."""

    def __init__(self, net=None, device=None, crf=False, input_size=320, weight=0.5, bf16=False):
        self.seen = []

    def __call__(self, image, prob, seed):
        self.seen.append((image.shape, prob.shape, seed.dtype))
        logits = np.full(prob.shape, -5.0, np.float32)
        logits[8:24, 8:24] = 5.0
        return logits


def _square():
    square = np.zeros((H, W), bool)
    square[8:24, 8:24] = True  # the network's size is the frame's here (input 64)
    return square


def test_the_second_opinion_runs_at_propagations_precision():
    """refiner_for gives the interactive predictor propagation's bf16 choice
    (wants_bf16): on where asked, off where asked or with int8."""
    net = VidSegNet(in_channels=6).eval()
    on, off = FinetuneConfig(refine=True, bf16=True), FinetuneConfig(refine=True, bf16=False)
    assert refine_mod.refiner_for(on, net=net).predictor.bf16
    assert not refine_mod.refiner_for(off, net=net).predictor.bf16
    assert not refine_mod.refiner_for(replace(on, int8=True), net=net).predictor.bf16
    auto = refine_mod.refiner_for(FinetuneConfig(refine=True), net=net).predictor
    assert auto.bf16 == cpu_has_native_bf16()
    assert refine_mod.refiner_for(replace(on, refine=False), net=net) is None


def test_refined_propagation_takes_the_refiners_logits(tuned, monkeypatch):
    """With refine on, each frame's mask at both sizes and its probability come
    from the refiner's logits; the refiner sees the frame at the network's
    size and the cleaned propagated mask as its seed."""
    video, truth, net, before, out, progress, cfg = tuned
    made = []

    def make(*args, **kwargs):
        made.append(_SquareRefiner(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(refine_mod, "MaskRefiner", make)
    spent = {}
    res = list(propagate(out, video, {0: truth[0]}, replace(cfg, refine=True), timings=spent))
    (refiner,) = made
    assert len(refiner.seen) == T - 1 and all(s == ((H, W, 3), (H, W), bool) for s in refiner.seen)
    for r in res[1:]:
        assert np.array_equal(r.mask, _square())
        assert np.array_equal(r.prob > 0.5, _square())
    assert spent["refine"] > 0


def test_propagation_uses_the_refiner_it_is_given(tuned, monkeypatch):
    """A refiner passed in (eval-video's, on the weights under test) serves
    instead of a new one on the shipped weights; with refine off it is not asked."""
    video, truth, net, before, out, progress, cfg = tuned

    def no_new_refiner(*args, **kwargs):
        raise AssertionError("propagate made its own refiner")

    monkeypatch.setattr(refine_mod, "MaskRefiner", no_new_refiner)
    given = _SquareRefiner()
    res = list(propagate(out, video, {0: truth[0]}, replace(cfg, refine=True), refiner=given))
    assert len(given.seen) == T - 1 and all(np.array_equal(r.mask, _square()) for r in res[1:])
    list(propagate(out, video, {0: truth[0]}, cfg, refiner=given))  # cfg has refine off
    assert len(given.seen) == T - 1


def test_refine_with_the_shipped_interactive_net_follows_the_disk(tuned):
    video, truth, net, before, out, progress, cfg = tuned
    plain = [r.mask for r in propagate(out, video, {0: truth[0]}, cfg)]
    refined = [r.mask for r in propagate(out, video, {0: truth[0]}, replace(cfg, refine=True))]
    assert np.mean([iou(m, truth[t]) for t, m in enumerate(refined)]) > 0.8
    assert any(not np.array_equal(a, b) for a, b in zip(plain[1:], refined[1:]))  # the second opinion counts


@pytest.mark.parametrize("scales", [(), (0.0,), (1.0, 9.0)])
def test_bad_scales_are_refused(scales):
    with pytest.raises(InputError, match="scales"):
        FinetuneConfig(scales=scales).check()


def test_bf16_is_on_by_default_only_where_the_cpu_computes_it_natively():
    flags = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f {}\nbogomips\t: 5000\n"
    assert cpu_has_native_bf16(flags.format("avx512_bf16 avx512_vnni"))
    assert cpu_has_native_bf16(flags.format("amx_bf16 amx_tile"))
    assert not cpu_has_native_bf16(flags.format("avx512_vnni"))
    assert not cpu_has_native_bf16("")
    cpu, mps, cuda = torch.device("cpu"), torch.device("mps"), torch.device("cuda")
    auto, on, off = FinetuneConfig(bf16=None), FinetuneConfig(bf16=True), FinetuneConfig(bf16=False)
    assert wants_bf16(auto, cpu) == cpu_has_native_bf16()
    assert wants_bf16(on, cpu) and not wants_bf16(off, cpu)
    assert not wants_bf16(auto, cuda)  # not measured on a GPU: asked for only
    assert wants_bf16(on, cuda)
    assert not wants_bf16(on, mps)
    assert not wants_bf16(replace(on, int8=True), cpu)  # int8 runs on its own precision


@pytest.mark.skipif(not int8_supported(), reason="this torch build has no x86 int8 engine")
def test_int8_propagation_follows_the_float_one(tuned):
    video, truth, net, before, out, progress, cfg = tuned
    fp = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, cfg)}
    q = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, replace(cfg, int8=True))}
    assert sorted(q) == list(range(T))
    assert np.mean([iou(q[t], fp[t]) for t in range(1, T)]) > 0.9
    assert np.mean([iou(q[t], truth[t]) for t in range(1, T)]) > 0.7


@pytest.mark.skipif(not int8_supported(), reason="this torch build has no x86 int8 engine")
def test_int8_template_is_traced_once_and_takes_each_networks_own_weights(tuned, monkeypatch):
    """The second tuned network re-uses the first one's traced graph: its int8
    copy must equal one traced from scratch for it (same weights poured in),
    and differ from the first network's."""
    from napari_vidseg.models import quantize

    video, truth, net, before, out, progress, cfg = tuned
    x = torch.from_numpy(video[:4]).permute(0, 3, 1, 2).float().div(255)
    monkeypatch.setattr(quantize, "_TEMPLATES", {})
    first = quantize.quantize_int8(net, x)  # traces; `net` is the untuned parent
    assert len(quantize._TEMPLATES) == 1
    template = next(iter(quantize._TEMPLATES.values()))[0]
    reused = quantize.quantize_int8(out, x)  # the tuned network, through the kept template
    assert next(iter(quantize._TEMPLATES.values()))[0] is template
    monkeypatch.setattr(quantize, "_TEMPLATES", {})
    fresh = quantize.quantize_int8(out, x)  # traced again from scratch for the tuned weights
    with torch.inference_mode():
        a, b, c = reused(x), fresh(x), first(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_int8_falls_back_to_float_with_a_warning(tuned, monkeypatch):
    from napari_vidseg.models import quantize

    video, truth, net, before, out, progress, cfg = tuned

    def unavailable(*a, **k):
        raise quantize.QuantizationUnavailable("no int8 engine (simulated)")
    monkeypatch.setattr(quantize, "quantize_int8", unavailable)
    with pytest.warns(RuntimeWarning, match="no int8 engine.*float32"):
        res = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, replace(cfg, int8=True))}
    # The fallback is float32 (bf16 stays off when int8 was asked for, as the warning says).
    fp = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, replace(cfg, bf16=False))}
    assert all(np.array_equal(res[t], fp[t]) for t in range(T))


def test_distant_blob_is_dropped_and_the_full_size_mask_follows():
    coarse = np.zeros((32, 32), bool)
    coarse[4:10, 4:10] = True  # the object, where it was in the previous frame
    coarse[24:28, 24:28] = True  # a distractor far away
    prev = np.zeros_like(coarse)
    prev[5:11, 5:11] = True
    kept = drop_distant_blobs(coarse, prev, radius=3)
    assert kept[4:10, 4:10].all() and not kept[24:28, 24:28].any()
    # the full-size mask (4x) of the same logits: edges differ by a pixel or two
    full = np.zeros((128, 128), bool)
    full[15:41, 15:41] = True
    full[95:113, 95:113] = True
    out = apply_coarse_cleanup(full, coarse, kept)
    assert np.array_equal(out[:64, :64], full[:64, :64])  # the object untouched, edges included
    assert not out[64:, 64:].any()  # the distractor gone
    # nothing near the previous object: keep everything rather than nothing
    far = np.zeros_like(prev)
    far[0, 31] = True
    assert np.array_equal(drop_distant_blobs(coarse, far, radius=1), coarse)
    assert apply_coarse_cleanup(full, coarse, coarse) is full


def test_near_mask_of_radius_one_is_the_3x3_dilation_up_to_the_border():
    from scipy import ndimage

    m = np.random.default_rng(3).random((40, 57)) > 0.93
    m[0, 5] = m[39, 56] = m[17, 0] = True  # on the border: no wrap, no reflection artefact
    assert np.array_equal(near_mask(m, 1), ndimage.binary_dilation(m, np.ones((3, 3), bool)))


def test_float16_copy_matches_numpy_on_subnormals_too():
    # a probability map's background sits below float16's smallest normal (6.1e-5)
    p = np.concatenate([np.geomspace(1e-9, 1, 4000), [0.0, 0.3, 0.5, 0.999, 1.0]]).astype(np.float32)
    p = np.stack([p, p[::-1]])
    got = as_float16(p)
    assert got.dtype == np.float16 and got.shape == p.shape
    assert np.array_equal(got.view(np.uint16), p.astype(np.float16).view(np.uint16))


def test_clean_frame_cuts_what_is_out_of_reach_of_the_previous_object():
    from napari_vidseg.video.propagate import clean_frame

    prev = np.zeros((32, 32), bool)
    prev[8:14, 8:14] = True  # the object in the frame before
    coarse = np.zeros_like(prev)
    coarse[8:14, 9:15] = True  # moved by a pixel ...
    coarse[10:12, 15:30] = True  # ... with an arm that leaks far to the right (one blob)
    full = np.repeat(np.repeat(coarse, 4, 0), 4, 1)  # the same mask at 4x
    out_full, out_coarse = clean_frame(coarse, full, prev, reach=4, blob_radius=3)
    assert out_coarse[8:14, 9:15].all() and out_coarse[10:12, 15:18].all()  # the object and 4 px of arm stay
    assert not out_coarse[:, 18:].any()  # the rest of the arm is gone: it is one blob, so blobs alone keep it
    assert np.array_equal(out_full, np.repeat(np.repeat(out_coarse, 4, 0), 4, 1))
    kept_full, kept_coarse = clean_frame(coarse, full, prev, reach=0, blob_radius=3)
    assert np.array_equal(kept_coarse, coarse) and np.array_equal(kept_full, full)
    # an object lost in the frame before is not held against this one
    lost_full, lost_coarse = clean_frame(coarse, full, np.zeros_like(prev), reach=4, blob_radius=3)
    assert np.array_equal(lost_coarse, coarse) and np.array_equal(lost_full, full)
    with pytest.raises(InputError, match="reach"):
        FinetuneConfig(reach=1.5).check()


def test_mask_threshold_must_be_a_probability():
    with pytest.raises(InputError, match="threshold"):
        FinetuneConfig(threshold=1.0).check()


def test_plan_order_splits_between_anchors():
    blocks = plan_order(12, [2, 9], block=3)
    flat = [t for b in blocks for t in b]
    assert sorted(flat) == [t for t in range(12) if t not in (2, 9)]
    # Frames 3-5 belong to anchor 2 (5 is nearer 2 than 9), 6-8 to anchor 9 backward.
    # Forward first, then backward, anchor by anchor, round-robin.
    assert blocks == [[3, 4, 5], [1, 0], [10, 11], [8, 7, 6]]
    # Only the requested frames.
    assert [t for b in plan_order(12, [0], frames=[3, 4, 10], block=8) for t in b] == [3, 4, 10]


def test_plan_order_batches_sparse_frames():
    # every 4th frame (self-training's first pass): full blocks, each one read over its span
    blocks = plan_order(100, [0], frames=range(0, 100, 4), block=8)
    assert blocks[0] == [4, 8, 12, 16, 20, 24, 28, 32] and [len(b) for b in blocks] == [8, 8, 8]
    assert [t for b in blocks for t in b] == list(range(4, 100, 4))
    # frames farther apart than MAX_BLOCK_GAP start a new block; backward runs go down
    assert plan_order(60, [20], frames=[18, 2, 21, 22, 22 + MAX_BLOCK_GAP + 1], block=8) == [[21, 22], [18, 2], [39]]


def test_read_block_reads_a_sparse_block_once(synthetic_video):
    src = VideoSource.open(synthetic_video, chunk_frames=8)
    got = read_block(src, [30, 26, 22])  # a backward block
    assert [decode_index(f) for f in got] == [30, 26, 22] and src.cached_chunks() == []
    array = _as_source(np.stack([encode_index(t) for t in range(8)]))
    assert [decode_index(f) for f in read_block(array, [5, 3])] == [5, 3]


def test_read_block_without_frames_at_reads_frame_by_frame():
    class Plain:  # a source with `frames` only
        def __init__(self):
            self.reads = []

        def frames(self, start, stop):
            self.reads.append((start, stop))
            return np.stack([encode_index(t) for t in range(start, stop)])

    src = Plain()
    assert [decode_index(f) for f in read_block(src, [40, 24, 8])] == [40, 24, 8]
    assert src.reads == [(8, 9), (24, 25), (40, 41)]  # never the 33-frame span


def test_napari_array_source_reads_sparse_frames():
    from napari_vidseg._napari.sources import ArraySource

    src = ArraySource(np.stack([encode_index(t) for t in range(12)]))
    assert [decode_index(f) for f in src.frames_at([1, 6, 11])] == [1, 6, 11]


def test_closing_propagation_midway_stops_cleanly(tuned):
    video, truth, net, before, out, progress, cfg = tuned
    gen = propagate(out, video, {0: truth[0]}, cfg)
    got = [next(gen).t for _ in range(3)]
    gen.close()
    assert got == [0, 1, 2]
    with pytest.raises(StopIteration):
        next(gen)


def test_area_jump_ranks_worst():
    _, truth = disk_video()
    masks = {t: truth[t].copy() for t in range(T)}
    masks[6] = np.zeros((H, W), bool)
    masks[6][10:60, 5:60] = True  # the mask suddenly balloons
    conf = {t: 0.9 for t in range(T)}
    scores = frame_scores(masks, conf)
    assert worst_frames(scores, 1) == [6]
    assert worst_frames(scores, 3, exclude=[6])[0] in (5, 7)  # its neighbours come next
    assert all(scores[6] < s for t, s in scores.items() if t != 6)


def test_low_confidence_ranks_worst_when_masks_agree():
    _, truth = disk_video()
    masks = {t: truth[t] for t in range(T)}
    conf = {t: 0.95 for t in range(T)}
    conf[3] = 0.2
    assert worst_frames(frame_scores(masks, conf), 2)[0] == 3


def test_each_frame_is_checked_against_the_one_before_it_in_its_run():
    from napari_vidseg.video.propagate import predecessors

    assert predecessors(8, [3]) == {4: 3, 5: 4, 6: 5, 7: 6, 2: 3, 1: 2, 0: 1}
    # Every 4th frame: the nearest one done before, towards the anchor.
    assert predecessors(20, [0], range(0, 20, 4)) == {4: 0, 8: 4, 12: 8, 16: 12}
    assert predecessors(13, [2, 10], range(0, 13, 3)) == {0: 2, 3: 2, 6: 3, 9: 10, 12: 10}
    assert predecessors(5, []) == {}


def test_sparse_propagation_still_drops_distant_blobs(tuned):
    """Every 3rd frame only: the clean-up compares each with the one 3 frames
    before (not with a frame that was never computed)."""
    video, truth, net, before, out, progress, cfg = tuned
    video = video.copy()
    video[6, 2:10, 50:62] = video[0, 20:28, 10:22]  # a patch of the disk's red, far from the disk
    sparse = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, cfg, frames=range(0, T, 3))}
    loose = {r.t: r.mask for r in propagate(out, video, {0: truth[0]}, replace(cfg, keep_components=False),
                                            frames=range(0, T, 3))}
    assert sorted(sparse) == list(range(0, T, 3))
    assert loose[6][2:10, 50:62].any()  # the network does take the red patch for the object
    assert not sparse[6][2:10, 50:62].any() and sparse[6].sum() > 0.5 * truth[6].sum()


def test_temporal_iou_of_sparse_masks_compares_nearest_frames():
    from napari_vidseg.video.quality import temporal_iou

    _, truth = disk_video()
    dense = temporal_iou({t: truth[t] for t in range(T)})
    sparse = temporal_iou({t: truth[t] for t in range(0, T, 4)})
    assert set(sparse) == {0, 4, 8} and all(v < 1.0 for v in sparse.values())
    assert sparse[4] < dense[4]  # the disk moved 12 px between the compared frames, 3 px between neighbours


def test_frame_scores_read_each_mask_once():
    """The session's masks are decoded from disk on access: scoring an hour of
    video must stream through them, not hold them or read them twice."""
    from collections.abc import Mapping

    _, truth = disk_video()

    class Counting(Mapping):
        def __init__(self):
            self.reads = []

        def __getitem__(self, t):
            self.reads.append(t)
            return truth[t]

        def __iter__(self):
            return iter(range(T))

        def __len__(self):
            return T

    masks = Counting()
    scores = frame_scores(masks, {t: 0.9 for t in range(T)})
    assert masks.reads == list(range(T))
    assert scores == frame_scores({t: truth[t] for t in range(T)}, {t: 0.9 for t in range(T)})


def test_confident_frames_are_the_best_scores_kept_apart():
    from napari_vidseg.video.quality import confident_frames

    scores = {t: s for t, s in enumerate([1.0, 0.9, 0.95, 0.5, 0.2, 0.8, 0.85, 0.3, 0.7, 0.6])}
    # Frame 0 is annotated; 2 is the best other frame, 1 is too close to both, 6 is next.
    assert confident_frames(scores, 2, exclude=[0], gap=2) == [2, 6]
    assert confident_frames(scores, 5, exclude=[0], gap=3) == [6, 9, 3]  # then none far enough from these
    assert confident_frames(scores, 0, exclude=[0]) == []


def test_self_training_tunes_again_on_trusted_propagated_masks(tuned, monkeypatch):
    """eval-video --self-train 1: a first propagation of every 2nd frame, a
    second tuning on the annotated frame and the most trusted propagated
    one, far from it, then a full propagation."""
    import napari_vidseg.video.finetune as ft_mod
    from napari_vidseg.eval import video as ev

    video, truth, net, before, out, progress, cfg = tuned
    seen = []
    real = ft_mod.finetune

    def spy(parent, frames, masks, config=None):
        seen.append([next(t for t in range(T) if np.array_equal(f, video[t])) for f in frames])
        return real(parent, frames, masks, config)

    monkeypatch.setattr(ft_mod, "finetune", spy)

    class Seq:
        def source(self):
            return _Src(video)

    masks, conf, ft, prop, n_pred = ev.run_sequence(net, Seq(), replace(cfg, self_train=1, first_pass_stride=2),
                                                    truth[0])
    assert len(seen) == 2 and seen[0] == [0]
    # The trusted frame: one the first pass propagated (every 2nd), at least T / 4 frames from frame 0.
    assert seen[1][0] == 0 and seen[1][1] % 2 == 0 and seen[1][1] >= T // 4
    assert sorted(masks) == list(range(T)) and n_pred == T - 1
    assert np.mean([iou(masks[t], truth[t]) for t in range(1, T)]) > 0.7


class _Src:
    """What run_sequence reads of a source: frames(start, stop) and frame(t)."""

    def __init__(self, video):
        self.video = video

    def __len__(self):
        return len(self.video)

    def frames(self, start, stop):
        return self.video[start:stop]

    def frame(self, t):
        return self.video[t]


# -- evaluation ------------------------------------------------------------------
def test_j_and_f_of_identical_masks_are_one():
    from napari_vidseg.eval.davis import f_score, j_score

    _, truth = disk_video()
    assert j_score(truth[3], truth[3]) == 1.0
    assert f_score(truth[3], truth[3]) == 1.0
    assert j_score(truth[0], truth[11]) < 0.2
    assert f_score(truth[0], truth[11]) < 0.5


def make_davis(root: Path, seqs=("diskA", "diskB"), n=6) -> Path:
    for k, seq in enumerate(seqs):
        video, truth = disk_video(T=n, seed=k)
        (root / "JPEGImages" / "480p" / seq).mkdir(parents=True)
        (root / "Annotations" / "480p" / seq).mkdir(parents=True)
        for t in range(n):
            Image.fromarray(video[t]).save(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", quality=95)
            Image.fromarray(truth[t].astype(np.uint8) * 255).save(root / "Annotations" / "480p" / seq / f"{t:05d}.png")
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "val_dev.txt").write_text("\n".join(seqs) + "\n")
    return root


def test_eval_video_command_on_a_tiny_davis_folder(tmp_path):
    from napari_vidseg.models.registry import save_weights

    root = make_davis(tmp_path / "davis")
    weights = tmp_path / "parent_tiny.pt"
    save_weights(random_net(), weights)
    cmd = [sys.executable, "-m", "napari_vidseg.cli", "eval-video", str(root), "--init", "mask",
           "--weights-parent", str(weights), "--steps", "3", "--n-aug", "2", "--batch", "2",
           "--input-long-side", "64", "--save-probs", str(tmp_path / "probs")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    last = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("j_mean", "f_mean", "per_sequence", "init", "finetune_seconds", "propagate_fps"):
        assert key in last, key
    assert set(last["per_sequence"]) == {"diskA", "diskB"}
    assert last["init"] == "mask"
    assert 0.0 <= last["j_mean"] <= 1.0 and 0.0 <= last["f_mean"] <= 1.0
    assert last["propagate_fps"] > 0
    assert last["config"]["batch"] == 2
    # --save-probs: every frame's probability at the network's size, frame 0 the annotated mask.
    probs = np.load(tmp_path / "probs" / "diskA.npz")["prob"]
    assert probs.shape[0] == 6 and max(probs.shape[1:]) == 64
    assert probs.dtype == np.float16 and 0.0 <= probs.min() and probs.max() <= 1.0
    assert set(np.unique(probs[0])) <= {0.0, 1.0} and probs[0].any()


def test_eval_correction_command_on_a_tiny_davis_folder(tmp_path):
    """eval-correction end to end: worst frames corrected with 1 and 2 robot
    clicks (the second opinion on, its interactive weights given once)."""
    from napari_vidseg.models.registry import save_weights

    root = make_davis(tmp_path / "davis", seqs=("diskA",))
    weights = tmp_path / "parent_tiny.pt"
    save_weights(random_net(), weights)
    cmd = [sys.executable, "-m", "napari_vidseg.cli", "eval-correction", str(root), "--clicks", "1,2",
           "--weights-parent", str(weights), "--steps", "3", "--n-aug", "2", "--batch", "2",
           "--input-long-side", "64", "--self-train", "0",
           "--save-worst", str(tmp_path / "worst"), "--json-out", str(tmp_path / "c.json")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(last["after"]) == {"1", "2"}
    # the worst frame kept for offline click studies: its index, propagated and true masks
    row = json.loads((tmp_path / "c.json").read_text())["per_sequence"]["diskA"]
    saved = np.load(tmp_path / "worst" / "diskA.npz")
    assert int(saved["frame"]) == row["worst_frame"]
    inter = (saved["propagated"] & saved["truth"]).sum() / max((saved["propagated"] | saved["truth"]).sum(), 1)
    assert abs(inter - row["before"]) < 1e-3
    for key in ("before", "j_before", "j_after", "rank_correlation", "worst_in_top3"):
        assert key in last, key
    assert 0.0 <= last["before"] <= 1.0 and all(0.0 <= v <= 1.0 for v in last["after"].values())


def test_correct_frame_starts_every_click_from_the_propagated_mask_or_chains():
    """correct_frame's mask channel: the propagated mask for every click, or with
    chain=True the previous click's result (the first click's is the propagated one)."""
    from napari_vidseg.eval.correction import correct_frame

    truth = np.zeros((40, 40), bool)
    truth[5:35, 5:35] = True
    propagated = np.zeros_like(truth)
    propagated[5:35, 5:15] = True

    class Grow:
        """Adds a 10-pixel-wide column of the truth per call, left to right."""

        def __init__(self):
            self.prevs = []

        def set_image(self, frame):
            pass

        def predict(self, inter, prev_mask=None):
            self.prevs.append(prev_mask.copy())
            m = np.zeros_like(truth)
            m[5:35, 5:15 + 10 * len(self.prevs)] = True
            return types.SimpleNamespace(mask=m & truth)

    for chain in (False, True):
        p = Grow()
        out = correct_frame(p, np.zeros((40, 40, 3), np.uint8), propagated, truth, [1, 2], chain=chain)
        assert np.array_equal(p.prevs[0], propagated)
        assert np.array_equal(p.prevs[1], out[1] if chain else propagated)
        assert not np.array_equal(out[1], propagated)


def test_correction_summary_is_the_same_from_rows_and_from_their_json():
    """summarize() serves eval-correction (int click keys) and crossval.py (rows
    read back from JSON: string keys) alike."""
    from napari_vidseg.eval.correction import summarize

    rows = {"a": {"before": 0.5, "after": {1: 0.6, 10: 0.9}, "j_before": 0.8, "j_after": 0.84,
                  "rank_correlation": 0.2, "worst_in_top3": True},
            "b": {"before": 0.3, "after": {1: 0.5, 10: 0.7}, "j_before": 0.6, "j_after": 0.7,
                  "rank_correlation": None, "worst_in_top3": False}}
    s = summarize(rows, [1, 10])
    assert s == summarize(json.loads(json.dumps(rows)), [1, 10])
    assert s["after"] == {"1": 0.55, "10": 0.8} and s["before"] == 0.4
    assert s["rank_correlation"] == 0.2 and s["worst_in_top3"] == 0.5  # None left out of the mean
