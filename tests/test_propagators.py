"""Propagation of several objects in one pass, the propagator registry, resume, events, the headless job."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_vidseg.progress import drain

REPO = Path(__file__).resolve().parents[1]
#: the last commit before propagation became several-object (session 19): the reference for one object
BEFORE = "833fe8b"


def old_video_modules():
    """finetune / refine / propagate as they were at BEFORE, loaded as napari_vidseg._old_video.*
    (skips where git or that commit is not available, e.g. a shallow CI checkout)."""
    pkg_name = "napari_vidseg._old_video"
    if pkg_name in sys.modules:
        return sys.modules[pkg_name]
    sources = {}
    for name in ("finetune", "refine", "propagate"):
        try:
            sources[name] = subprocess.run(["git", "-C", str(REPO), "show", f"{BEFORE}:napari_vidseg/video/{name}.py"],
                                           capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            pytest.skip(f"git history with commit {BEFORE} is not available")
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = []
    sys.modules[pkg_name] = pkg
    for name in ("finetune", "refine", "propagate"):
        spec = importlib.util.spec_from_loader(f"{pkg_name}.{name}", loader=None)
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = pkg_name
        sys.modules[spec.name] = mod
        exec(compile(sources[name], f"<{BEFORE}:{name}.py>", "exec"), mod.__dict__)
        setattr(pkg, name, mod)
    return pkg


def disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def moving_clip(T=10, H=48, W=64, seed=0):
    """Two discs moving across a textured background, and their true masks."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 60, (T, H, W, 3), dtype=np.uint8)
    a = np.stack([disk(H, W, 16, 12 + 3 * t, 8) for t in range(T)])
    b = np.stack([disk(H, W, 34, 52 - 2 * t, 6) for t in range(T)])
    video[a] = (220, 60, 40)
    video[b] = (40, 200, 90)
    return video, a, b


@pytest.fixture(scope="module")
def parent():
    from napari_vidseg.models.vidsegnet import VidSegNet

    torch.manual_seed(0)
    return VidSegNet(in_channels=3).eval()


def small_config(**kw):
    from napari_vidseg.video.finetune import FinetuneConfig

    base = dict(steps=4, n_aug=4, batch=2, input_long_side=64, refine=False, self_train=0, bf16=False)
    return FinetuneConfig(**{**base, **kw})


@pytest.mark.parametrize("refine", [False, True])
def test_one_object_matches_the_path_before_several_objects(parent, refine):
    """One object through today's finetune + propagate gives exactly the masks of the old code."""
    old = old_video_modules()
    from napari_vidseg.video.finetune import finetune
    from napari_vidseg.video.propagate import propagate

    video, a, _ = moving_clip()
    cfg = small_config(refine=refine)
    old_cfg = old.finetune.FinetuneConfig(**vars(cfg))
    new_net = drain(finetune(parent, [video[0], video[5]], [a[0], a[5]], cfg), quiet=True)
    old_net = drain(old.finetune.finetune(parent, [video[0], video[5]], [a[0], a[5]], old_cfg), quiet=True)
    for p, q in zip(new_net.parameters(), old_net.parameters()):
        assert torch.equal(p, q)
    new = list(propagate(new_net, video, {0: a[0], 5: a[5]}, cfg))
    ref = list(old.propagate.propagate(old_net, video, {0: a[0], 5: a[5]}, old_cfg))
    assert [r.t for r in new] == [r.t for r in ref]
    for r, q in zip(new, ref):
        assert np.array_equal(r.mask, q.mask) and np.array_equal(r.prob, q.prob)
        assert r.confidence == q.confidence and r.annotated == q.annotated
