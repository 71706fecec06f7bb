"""The GPU path gives what the CPU path gives: clicks, fine-tuning, propagation.

Skipped where there is no CUDA GPU (CI has none); run on a lent GPU machine
(docs/benchmarks.md, "GPU"). The shipped networks segment a red disk moving
over a dark textured background, once on each device; the masks must agree
with each other and with the disk, and the tuned network must live on the GPU.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from conftest import iou, moving_disk  # noqa: E402
from napari_vidseg.models.registry import build  # noqa: E402
from napari_vidseg.progress import drain  # noqa: E402
from napari_vidseg.segment.predictor import InteractivePredictor  # noqa: E402
from napari_vidseg.types import Click, Interactions  # noqa: E402
from napari_vidseg.video.finetune import FinetuneConfig, finetune  # noqa: E402
from napari_vidseg.video.propagate import propagate  # noqa: E402

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def disk_video():
    return moving_disk(T=10, H=160, W=256, r=28, x0=60, step=8, bg_max=90)


def test_a_click_gives_the_same_mask_on_the_gpu():
    video, truth = disk_video()
    clicks = Interactions(clicks=[Click(y=80, x=60, positive=True)])
    masks = {}
    for device in (CPU, CUDA):
        pred = InteractivePredictor(build("interactive", device))
        assert pred.device.type == device.type
        pred.set_image(video[0])
        masks[device.type] = pred.predict(clicks).mask
    assert iou(masks["cuda"], truth[0]) > 0.8
    assert iou(masks["cuda"], masks["cpu"]) > 0.97


def test_tuning_and_propagation_on_the_gpu_follow_the_cpu():
    video, truth = disk_video()
    results = {}
    for device in (CPU, CUDA):
        cfg = FinetuneConfig(steps=60, input_long_side=256, bf16=False, seed=0)
        tuned = drain(finetune(build("parent", device), [video[0]], [truth[0]], cfg), quiet=True)
        assert next(tuned.parameters()).device.type == device.type
        results[device.type] = {r.t: r.mask for r in propagate(tuned, video, {0: truth[0]}, cfg)}
    for t in range(1, len(video)):
        assert iou(results["cuda"][t], truth[t]) > 0.8, t
        assert iou(results["cuda"][t], results["cpu"][t]) > 0.95, t
