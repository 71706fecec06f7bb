"""GPU out of memory: the click, fine-tuning and propagation go on on the CPU with a message.

No GPU is needed. The stand-in GPU is the "meta" device, which every PyTorch has:
a job is told to run there (predictor.device / FinetuneConfig.device), and the
network raises an out-of-memory error when it meets a tensor on it, the way a
full GPU would. The networks themselves stay on the CPU (nothing can be copied
out of the meta device), so moving them "to the CPU" is a no-op here; what is
tested is that the error is recognised, the job says so and carries on on the
CPU, and the result is the one a CPU-only run gives.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_vidseg.models.device import GPUFallbackWarning, is_gpu_oom, is_out_of_memory  # noqa: E402
from napari_vidseg.models.vidsegnet import VidSegNet  # noqa: E402
from napari_vidseg.segment.predictor import InteractivePredictor  # noqa: E402
from napari_vidseg.types import Click, Interactions, Progress  # noqa: E402
from conftest import moving_disk  # noqa: E402

FAKE_GPU = torch.device("meta")
H, W = 48, 64


def cuda_oom():
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total)")


def mps_oom():
    return RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.00 GB)")


def fail_on_fake_gpu(monkeypatch, method: str, make_error, calls: list | None = None):
    """VidSegNet.<method> raises make_error() for an input on the stand-in GPU."""
    real = getattr(VidSegNet, method)

    def flaky(self, *args):
        x = args[-1]
        if calls is not None:
            calls.append(x.device.type)
        if x.device.type == FAKE_GPU.type:
            raise make_error()
        return real(self, *args)

    monkeypatch.setattr(VidSegNet, method, flaky)


def image(h=H, w=W):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[(xx - 30) ** 2 + (yy - 20) ** 2 <= 100] = (220, 40, 40)
    return img


def interactive_net():
    torch.manual_seed(0)
    return VidSegNet(in_channels=6).eval()


def oom_on_first_click(make_error=cuda_oom):
    """A predictor on the stand-in GPU whose first click runs out of memory.
    Returns (its prediction, a CPU predictor's prediction, the predictor, the warnings)."""
    net = interactive_net()
    clicks = Interactions([Click(30, 20, True)])
    ref = InteractivePredictor(net, use_crf=False, input_size=64)
    ref.set_image(image())
    expected = ref.predict(clicks)
    pred = InteractivePredictor(net, use_crf=False, input_size=64)
    pred.device = FAKE_GPU
    pred.set_image(image())
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fail_on_fake_gpu(mp, "early_features", make_error)
        got = pred.predict(clicks)
    return got, expected, pred, [w for w in caught if issubclass(w.category, GPUFallbackWarning)]


@pytest.mark.parametrize("make_error", [cuda_oom, mps_oom], ids=["cuda", "mps"])
def test_click_runs_out_of_gpu_memory_and_is_computed_on_the_cpu(make_error):
    got, expected, pred, caught = oom_on_first_click(make_error)
    assert pred.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in pred.net.parameters())
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "GPU out of memory" in msg and "CPU" in msg
    np.testing.assert_array_equal(got.mask, expected.mask)
    np.testing.assert_allclose(got.prob, expected.prob, atol=1e-6)


def test_later_click_drops_the_cached_features_and_warns_once(monkeypatch):
    net = interactive_net()
    prev = np.zeros((H, W), bool)
    prev[12:28, 22:38] = True
    clicks = [Interactions([Click(30, 20, True)]),
              Interactions([Click(30, 20, True), Click(36, 24, False)]),
              Interactions([Click(30, 20, True), Click(36, 24, False), Click(26, 16, True)])]
    ref = InteractivePredictor(net, use_crf=False, input_size=64)
    ref.set_image(image())
    expected = [ref.predict(c, prev_mask=prev) for c in clicks]

    pred = InteractivePredictor(net, use_crf=False, input_size=64)
    pred.set_image(image())
    first = pred.predict(clicks[0], prev_mask=prev)  # fills the feature cache
    assert pred._early_key is not None
    pred.device = FAKE_GPU  # from now on the GPU is full
    early_calls: list = []
    fail_on_fake_gpu(monkeypatch, "from_early", cuda_oom)
    real_early = VidSegNet.early_features
    monkeypatch.setattr(VidSegNet, "early_features",
                        lambda self, x: early_calls.append(x.device.type) or real_early(self, x))
    with pytest.warns(GPUFallbackWarning, match="out of memory"):
        second = pred.predict(clicks[1], prev_mask=prev)
    # the cached features were dropped with the move: computed again, on the CPU
    assert early_calls == ["cpu"] and pred.device.type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error", GPUFallbackWarning)  # no second warning
        third = pred.predict(clicks[2], prev_mask=prev)
    for got, want in zip([first, second, third], expected):
        np.testing.assert_allclose(got.prob, want.prob, atol=1e-5)


def test_out_of_memory_on_the_cpu_or_another_gpu_error_is_not_swallowed(monkeypatch):
    net = interactive_net()
    pred = InteractivePredictor(net, use_crf=False, input_size=64)
    pred.set_image(image())
    real = VidSegNet.early_features

    def cpu_oom(self, x):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB. out of memory")

    monkeypatch.setattr(VidSegNet, "early_features", cpu_oom)
    with pytest.raises(RuntimeError, match="DefaultCPUAllocator"):
        pred.predict(Interactions([Click(30, 20, True)]))
    monkeypatch.setattr(VidSegNet, "early_features", real)
    pred.device = FAKE_GPU
    fail_on_fake_gpu(monkeypatch, "early_features", lambda: RuntimeError("cuDNN error: CUDNN_STATUS_BAD_PARAM"))
    with pytest.raises(RuntimeError, match="BAD_PARAM"):
        pred.predict(Interactions([Click(30, 20, True)]))


@pytest.mark.parametrize("exc, device, expected", [
    (cuda_oom(), "cuda", True),
    (mps_oom(), "mps", True),
    (RuntimeError("CUDA error: out of memory"), "cuda", True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), "cuda", True),
    (cuda_oom(), "cpu", False),  # nothing to fall back to
    (RuntimeError("CUDA error: device-side assert triggered"), "cuda", False),
    (ValueError("out of memory"), "cuda", False),
])
def test_recognising_gpu_out_of_memory(exc, device, expected):
    assert is_gpu_oom(exc, device) is expected
    assert is_out_of_memory(cuda_oom()) and not is_out_of_memory(KeyError("memory"))


# -- video: fine-tuning and propagation ---------------------------------------------
T, VH, VW = 9, 32, 32


def disk_video():
    return moving_disk(T, VH, VW, r=6, x0=8, step=2)


def parent_net():
    torch.manual_seed(0)
    return VidSegNet(in_channels=3).eval()


def video_config(**kw):
    from napari_vidseg.video.finetune import FinetuneConfig

    # No second opinion: these tests follow the parent network's fallback (the interactive segmenter's own is
    # tested above).
    return FinetuneConfig(**{**dict(steps=3, n_aug=3, batch=2, input_long_side=32, crop=1.0, batch_infer=2,
                                    refine=False), **kw})


def run(gen):
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return stop.value, items


def test_finetuning_runs_out_of_gpu_memory_and_starts_again_on_the_cpu(monkeypatch):
    from napari_vidseg.video.finetune import finetune

    video, masks = disk_video()
    parent = parent_net()
    expected, _ = run(finetune(parent, [video[0]], [masks[0]], video_config(device="cpu")))
    calls: list = []
    fail_on_fake_gpu(monkeypatch, "early_features", cuda_oom, calls)
    with pytest.warns(GPUFallbackWarning, match="fine-tuning"):
        got, progress = run(finetune(parent, [video[0]], [masks[0]], video_config(device="meta")))
    assert calls[0] == "meta" and set(calls[1:]) == {"cpu"}
    assert all(p.device.type == "cpu" for p in got.parameters())
    notes = [p for p in progress if isinstance(p, Progress) and "out of memory" in p.message]
    assert len(notes) == 1 and "CPU" in notes[0].message and notes[0].done == 0
    assert progress[-1].stage == "finetune" and progress[-1].done == 3
    # the same seed: the same tuned network as a CPU-only run
    want = expected.state_dict()
    for k, v in got.state_dict().items():
        torch.testing.assert_close(v, want[k], rtol=0, atol=1e-6, msg=k)


def test_propagation_runs_out_of_gpu_memory_and_continues_from_that_frame(monkeypatch):
    from napari_vidseg.video import propagate as pr

    video, masks = disk_video()
    net = parent_net()
    expected = {r.t: r for r in pr.propagate(net, video, {0: masks[0]}, video_config(device="cpu"))}

    # The network stays on the CPU (nothing comes back from the meta device); the
    # helper that runs a block's forward fails on the stand-in GPU's third block.
    real_prepare, real_probs = pr.prepare_for_inference, pr._block_probs
    monkeypatch.setattr(pr, "prepare_for_inference", lambda n, c, device=None: real_prepare(n, c, "cpu"))
    calls: list = []

    def probs(model, imgs, device, bf16, size, *rest):
        calls.append((device.type, len(imgs)))
        if device == FAKE_GPU:
            if len(calls) == 3:
                raise cuda_oom()
            device = torch.device("cpu")  # a block that fits: computed as on a GPU
        return real_probs(model, imgs, device, bf16, size, *rest)

    monkeypatch.setattr(pr, "_block_probs", probs)
    plan = pr.plan_order(T, [0], block=2)
    with pytest.warns(GPUFallbackWarning, match=f"continuing from frame {plan[2][0]}"):
        got = list(pr.propagate(net, video, {0: masks[0]}, video_config(device="meta")))
    # blocks 1-2 on the GPU, block 3 failed there and ran again on the CPU, then the rest
    assert [d for d, _ in calls] == ["meta"] * 3 + ["cpu"] * (len(plan) - 2)
    assert [n for _, n in calls] == [len(b) for b in plan[:3]] + [len(b) for b in plan[2:]]
    # every frame once, none redone, each the CPU-only result
    assert [r.t for r in got] == [0] + [t for b in plan for t in b]
    for r in got:
        np.testing.assert_array_equal(r.mask, expected[r.t].mask)
        np.testing.assert_allclose(r.prob.astype(np.float32), expected[r.t].prob.astype(np.float32), atol=1e-3)
