"""The memory propagator (video/propagators/memory.py): no tuning, identities kept by local matching, a bounded
memory, corrections re-propagated at once; through the registry from the session and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_vidseg.progress import drain
from tests.conftest import iou
from tests.test_propagators import _ArrayVideo, write_frames

H, W = 96, 144


def disc(cy, cx, r=14):
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def clip(T, paths, colours, seed=0):
    """Discs moving along `paths` (t -> (cy, cx)) over a dark noisy background, and their true masks."""
    rng = np.random.default_rng(seed)
    bg = (rng.random((H, W, 3)) * 70).astype(np.uint8)
    video = np.repeat(bg[None], T, 0)
    masks = [np.stack([disc(*path(t)) for t in range(T)]) for path in paths]
    for m, colour in zip(masks, colours):
        video[m] = colour
    return video, masks


@pytest.fixture(scope="module")
def parent():
    from napari_vidseg.models.registry import build

    return build("parent", torch.device("cpu"))


def options(**kw):
    """Small and quick: the coarse maps alone (the second opinion runs in the CLI test)."""
    return {"input_long_side": 288, "refine": False, **kw}


def session_with(video, annotations, parent):
    from napari_vidseg.video.session import VideoSession

    s = VideoSession.create(_ArrayVideo(video))
    s.set_parent(parent)
    ids = {}
    for name, (t, mask) in annotations.items():
        ids[name] = s.add_object(name)
        s.set_mask(t, ids[name], mask)
    return s, ids


def test_objects_followed_forward_and_backward_from_the_session(parent):
    from napari_vidseg.types import Provenance

    T = 9
    video, (a, b) = clip(T, [lambda t: (27, 21 + 6 * t), lambda t: (69, 120 - 4 * t)], [(220, 60, 40), (40, 200, 90)])
    s, ids = session_with(video, {"a": (4, a[4]), "b": (4, b[4])}, parent)
    progress = list(s.propagate(method="memory", options=options()))
    assert not [p for p in progress if p.stage == "finetune"]  # nothing tuned
    for name, truth in (("a", a), ("b", b)):
        assert s.masks.frames(ids[name], Provenance.PROPAGATED) == [0, 1, 2, 3, 5, 6, 7, 8]
        for t in range(T):
            assert iou(s.masks.get(ids[name], t), truth[t]) > 0.6, (name, t)


def test_look_alike_objects_keep_their_identities_by_local_matching(parent):
    """Two identical discs: appearance alone (no local match) cannot tell which is which."""
    from napari_vidseg.video import propagators

    T = 8
    red = (220, 60, 40)
    video, (a, b) = clip(T, [lambda t: (27, 21 + 6 * t), lambda t: (69, 120 - 6 * t)], [red, red])

    def worst(**kw):
        s, ids = session_with(video, {"a": (0, a[0]), "b": (0, b[0])}, parent)
        drain(s.propagate(method="memory", config=propagators.make_config("memory", **options(**kw))), quiet=True)
        return min(iou(s.masks.get(ids[n], t), m[t]) for n, m in (("a", a), ("b", b)) for t in range(1, T))

    assert worst() > 0.6
    assert worst(local_weight=0.0) < 0.3  # without it each object takes half of both discs, or neither


def test_memory_stays_within_its_cap_on_a_long_clip(parent, monkeypatch):
    from napari_vidseg.video.propagators import memory

    sizes = []
    add = memory.Memory.add

    def counted(self, *args, **kw):
        add(self, *args, **kw)
        sizes.append(len(self))

    monkeypatch.setattr(memory.Memory, "add", counted)
    T = 40
    video, (a,) = clip(T, [lambda t: (48, 72 + int(30 * np.sin(t / 6)))], [(220, 60, 40)])
    s, ids = session_with(video, {"a": (0, a[0])}, parent)
    drain(s.propagate(method="memory", options=options(memory_size=3, memory_every=2, memory_confidence=0.0)),
          quiet=True)
    assert len(sizes) > 15  # propagated frames kept joining it ...
    assert max(sizes) == 1 + 3  # ... and it held the annotated frame and 3 of them at most
    assert iou(s.masks.get(ids["a"], T - 1), a[T - 1]) > 0.6


def test_a_correction_is_propagated_outward_without_tuning(parent):
    """The user says that from frame 5 on the object is the other disc: re-propagation follows it at once."""
    from napari_vidseg.types import Provenance

    T = 9
    video, (a, b) = clip(T, [lambda t: (27, 21 + 6 * t), lambda t: (69, 120 - 4 * t)], [(220, 60, 40), (40, 200, 90)])
    s, ids = session_with(video, {"a": (0, a[0])}, parent)
    o = ids["a"]
    drain(s.propagate(method="memory", options=options()), quiet=True)
    assert iou(s.masks.get(o, 8), a[8]) > 0.6
    s.set_mask(5, o, b[5], Provenance.CORRECTED)
    progress = list(s.propagate(method="memory", options=options()))
    assert not [p for p in progress if p.stage == "finetune"]
    assert iou(s.masks.get(o, 8), b[8]) > 0.6  # after the correction: the corrected object
    assert iou(s.masks.get(o, 1), a[1]) > 0.6  # nearer frame 0: still the first one


def test_the_memory_method_from_the_cli(tmp_path):
    from napari_vidseg import cli
    from napari_vidseg.io.masks import read_mask_png

    T = 5
    video, (a,) = clip(T, [lambda t: (48, 30 + 9 * t)], [(220, 60, 40)])
    frames = write_frames(tmp_path / "clip", video)
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("frame,x,y,positive\n0,30,48,1\n")
    out = tmp_path / "out"
    assert cli.main(["segment", str(frames), "--clicks", str(clicks), "--out", str(out), "--method", "memory",
                     "--quiet"]) == 0
    for t in range(1, T):
        assert iou(read_mask_png(out / f"{t:05d}.png") > 0, a[t]) > 0.5, t


def test_bad_options_are_one_clear_line():
    from napari_vidseg.types import InputError
    from napari_vidseg.video import propagators

    with pytest.raises(InputError, match="features"):
        propagators.make_config("memory", features="f8+nothing")
    with pytest.raises(InputError, match="stride"):
        propagators.make_config("memory", stride=5)


def test_a_cancelled_run_continues_from_the_stored_frames(parent, tmp_path):
    """Resumed, the first frame left to do is matched to the mask an earlier run stored before it."""
    from napari_vidseg.video.session import VideoSession

    T = 10
    video, (a,) = clip(T, [lambda t: (48, 20 + 10 * t)], [(220, 60, 40)])
    s = VideoSession.create(_ArrayVideo(video), tmp_path / "s")
    s.set_parent(parent)
    o = s.add_object()
    s.set_mask(0, o, a[0])
    job = s.propagate(o, method="memory", options=options())
    for p in job:
        if p.stage == "propagate" and p.frame == 4:
            break
    job.close()
    r = VideoSession.open(tmp_path / "s", video=_ArrayVideo(video))
    r.set_parent(parent)
    assert drain(r.propagate(o, method="memory", options=options()), quiet=True) == {"computed": 5, "skipped": 4}
    for t in range(5, T):
        assert iou(r.masks.get(o, t), a[t]) > 0.6, t


def test_synthetic_training_clips_move_look_alike_copies_apart():
    from napari_vidseg.training.synthetic_clips import make_clip

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:40, :40]
    blob = (yy - 20) ** 2 + (xx - 20) ** 2 <= 15 ** 2
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[blob] = (230, 40, 40)
    bg = np.full((96, 128, 3), 30, np.uint8)
    frames, labels = make_clip(bg, [(rgb, blob)], length=6, rng=rng, elastic=1.0)
    assert frames.shape == (6, 96, 128, 3) and labels.shape == (6, 96, 128)
    assert set(np.unique(labels)) <= {0, 1, 2}
    for t in range(6):
        for k in (1, 2):  # both copies show, and look the same: red
            shown = labels[t] == k
            assert shown.sum() > 20, (t, k)
            assert frames[t][shown][:, 0].mean() > 150
    for k in (1, 2):  # each moves on its own
        assert np.abs(np.argwhere(labels[5] == k).mean(0) - np.argwhere(labels[0] == k).mean(0)).sum() > 1
    assert np.abs(np.argwhere(labels[0] == 1).mean(0) - np.argwhere(labels[0] == 2).mean(0)).sum() > 5
