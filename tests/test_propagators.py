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


# -- the registry: a stand-in method -------------------------------------------
from dataclasses import dataclass as _dataclass  # noqa: E402


@_dataclass
class NearestConfig:
    shift: int = 0  # columns the copied mask moves per frame away from its annotated frame


class NearestMask:
    """A stand-in propagator: each object's mask on a frame is its nearest annotated mask, shifted."""

    def __init__(self, config, parent=None, refiner=None):
        self.config = config
        self.calls = []

    def run(self, source, annotated, frames, sink=None, checkpoint=None, skip=()):
        from napari_vidseg.types import Progress
        from napari_vidseg.video.propagators.base import ObjectsFrame

        todo = [t for t in frames if t not in set(skip)]
        NearestMask.last_run = todo
        for i, t in enumerate(todo):
            masks = {}
            for o, ann in annotated.items():
                if t in ann:
                    continue
                a = min(ann, key=lambda s: abs(s - t))
                masks[o] = np.roll(ann[a], self.config.shift * (t - a), axis=1)
            yield ObjectsFrame(t, masks, confidence={o: 0.5 for o in masks})
            yield Progress("propagate", i + 1, len(todo), frame=t)


@pytest.fixture
def nearest_method():
    from napari_vidseg.video import propagators

    propagators.register("nearest", NearestMask, NearestConfig, {"moving": {"shift": 1}}, "test stand-in")
    yield "nearest"
    propagators.unregister("nearest")


def write_frames(folder: Path, video: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for t, f in enumerate(video):
        Image.fromarray(f).save(folder / f"{t:05d}.png")
    return folder


def test_a_registered_method_runs_from_the_session(nearest_method):
    from napari_vidseg.types import InputError, Provenance
    from napari_vidseg.video.session import VideoSession

    video, a, b = moving_clip(T=6)
    s = VideoSession.create(_ArrayVideo(video))
    oa, ob = s.add_object("a"), s.add_object("b")
    s.set_mask(0, oa, a[0])
    s.set_mask(3, ob, b[3])
    summary = drain(s.propagate(method="nearest", options={"shift": 3}), quiet=True)
    assert summary == {"computed": 6, "skipped": 0}  # frames 0 and 3 are each needed by the other object
    assert s.masks.frames(oa, Provenance.PROPAGATED) == [1, 2, 3, 4, 5]
    assert s.masks.frames(ob, Provenance.PROPAGATED) == [0, 1, 2, 4, 5]
    assert np.array_equal(s.masks.get(oa, 2), np.roll(a[0], 6, axis=1))
    assert np.array_equal(s.masks.get(ob, 1), np.roll(b[3], -6, axis=1))
    # the same run again: nothing to compute
    assert drain(s.propagate(method="nearest", options={"shift": 3}), quiet=True) == {"computed": 0, "skipped": 6}
    with pytest.raises(InputError, match="no option"):
        drain(s.propagate(method="nearest", options={"steps": 3}), quiet=True)
    with pytest.raises(InputError, match="unknown propagation method"):
        drain(s.propagate(method="no-such-method"), quiet=True)


def test_a_registered_method_runs_from_the_cli(nearest_method, tmp_path):
    from napari_vidseg import cli
    from napari_vidseg.io.masks import read_mask_png

    video, a, _ = moving_clip(T=5)
    frames = write_frames(tmp_path / "clip", video)
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("frame,x,y,positive\n0,12,16,1\n")
    out = tmp_path / "out"
    assert cli.main(["segment", str(frames), "--clicks", str(clicks), "--out", str(out), "--method", "nearest",
                     "--preset", "moving", "--quiet"]) == 0
    first = read_mask_png(out / "00000.png") > 0
    assert first.any()
    for t in range(1, 5):  # the clicked frame's mask, one column further each frame
        assert np.array_equal(read_mask_png(out / f"{t:05d}.png") > 0, np.roll(first, t, axis=1))


class _ArrayVideo:
    """A (T, H, W, 3) array with VideoSource's reading interface."""

    def __init__(self, array):
        self.array, self.n_frames, self.height, self.width = array, len(array), array.shape[1], array.shape[2]
        self.fps = 10.0

    def frame(self, t):
        return self.array[t]

    def frames(self, start, stop):
        return self.array[start:stop]

    def __len__(self):
        return self.n_frames


# -- OSVOS on several objects, resume ---------------------------------------------
@pytest.mark.parametrize("refine", [False, True])
def test_two_objects_annotated_on_different_frames_one_pass(parent, tmp_path, refine):
    from napari_vidseg.types import Provenance
    from napari_vidseg.video.session import VideoSession

    video, a, b = moving_clip(T=8)
    s = VideoSession.create(_ArrayVideo(video), tmp_path / "s")
    s.set_parent(parent)
    oa, ob = s.add_object("a"), s.add_object("b")
    s.set_mask(0, oa, a[0])
    s.set_mask(6, ob, b[6])
    cfg = small_config(refine=refine, refine_size=64)
    progress = list(s.propagate(None, cfg))
    tunings = [p for p in progress if p.stage == "finetune"]
    assert len(tunings) == cfg.steps  # one tuning for both objects
    assert s.masks.frames(oa, Provenance.PROPAGATED) == [1, 2, 3, 4, 5, 6, 7]
    assert s.masks.frames(ob, Provenance.PROPAGATED) == [0, 1, 2, 3, 4, 5, 7]
    for t in range(8):  # no pixel belongs to both
        assert not (s.masks.get_or_empty(oa, t) & s.masks.get_or_empty(ob, t)).any()
    # Re-opened: the same inputs, nothing computed again; a new click elsewhere changes the key.
    r = VideoSession.open(tmp_path / "s", video=_ArrayVideo(video))
    r.set_parent(parent)
    assert drain(r.propagate(None, cfg), quiet=True) == {"computed": 0, "skipped": 8}
    r.set_mask(3, oa, a[3])
    assert drain(r.propagate(None, cfg), quiet=True)["computed"] == 8  # frame 3 is still b's to compute


def test_exclusive_gives_contested_pixels_to_the_most_probable():
    from napari_vidseg.video.propagate import exclusive

    m1, m2 = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    m1[:, :3], m2[:, 1:] = True, True
    p1 = np.full((2, 2), 0.9, np.float32)
    p1[:, 1] = 0.2
    p2 = np.full((2, 2), 0.6, np.float32)
    masks = {5: m1, 2: m2}
    exclusive(masks, {5: p1, 2: p2})
    assert masks[5][:, :2].all() and not masks[5][:, 2:].any()  # column 2 sits in p's right half: object 2 wins
    assert masks[2][:, 2:].all() and not masks[2][:, :2].any()


def test_a_cancelled_run_continues_where_it_stopped(parent, tmp_path):
    """Cancelled in its last pass (after self-training), re-opened and run again: only the
    missing frames are computed, and the masks are those of a run never stopped."""
    from napari_vidseg.types import Provenance
    from napari_vidseg.video.session import VideoSession

    video, a, _ = moving_clip(T=12)
    cfg = small_config(batch_infer=1, self_train=1, first_pass_stride=2)

    def session(folder):
        s = VideoSession.create(_ArrayVideo(video), folder)
        s.set_parent(parent)
        s.set_mask(0, s.add_object(), a[0])
        return s

    whole = session(None)
    drain(whole.propagate(1, cfg), quiet=True)
    s = session(tmp_path / "s")
    job = s.propagate(1, cfg)
    seen = []
    for p in job:
        if p.stage == "propagate" and p.frame is not None and p.message.startswith("self-trained"):
            seen.append(p.frame)
            if len(seen) == 4:
                break
    job.close()
    r = VideoSession.open(tmp_path / "s", video=_ArrayVideo(video))
    r.set_parent(parent)
    assert drain(r.propagate(1, cfg), quiet=True) == {"computed": 7, "skipped": 4}
    assert r.masks.frames(1, Provenance.PROPAGATED) == list(range(1, 12))
    for t in range(12):
        assert np.array_equal(r.masks.get(1, t), whole.masks.get(1, t))
    assert drain(r.propagate(1, cfg, resume=False), quiet=True) == {"computed": 11, "skipped": 0}


def test_segment_killed_mid_propagation_continues_on_the_same_command(tmp_path):
    """SIGKILL a real `segment --session` process while it propagates, run the same
    command again: it computes only the frames the first run did not finish."""
    import os
    import re
    import signal
    import time

    T = 300
    rng = np.random.default_rng(3)
    video = rng.integers(0, 60, (T, 48, 64, 3), dtype=np.uint8)
    for t in range(T):
        video[t][disk(48, 64, 24, 10 + (t % 40), 8)] = (220, 60, 40)
    frames = write_frames(tmp_path / "clip", video)
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("frame,x,y,positive\n0,10,24,1\n")
    session = tmp_path / "session"
    cmd = [sys.executable, "-m", "napari_vidseg.cli", "segment", str(frames), "--clicks", str(clicks),
           "--out", str(tmp_path / "out"), "--session", str(session), "--steps", "2", "--input-size", "64",
           "--self-train", "0", "--no-refine", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done_file = session / "propagation" / "done.txt"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if done_file.is_file() and done_file.read_text().count("\n") >= 20:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the first run was not killed mid-propagation: {out} {err}"
    finished = done_file.read_text().count("\n")
    assert 20 <= finished < T - 1
    again = subprocess.run(cmd[:-1], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    m = re.search(r"computed (\d+) frames, skipped (\d+) already done", again.stdout)
    assert m, again.stdout
    computed, skipped = int(m.group(1)), int(m.group(2))
    assert skipped >= finished and computed + skipped == T - 1 and computed < T - 1
    assert len(list((tmp_path / "out").glob("*.png"))) == T


def test_the_session_emits_what_changed(nearest_method):
    """Listeners learn of every change through the session's signals, no method patching."""
    from napari_vidseg.video.session import VideoSession

    video, a, b = moving_clip(T=4)
    s = VideoSession.create(_ArrayVideo(video))
    events = []
    s.objects_changed.connect(lambda: events.append(("objects",)))
    s.mask_changed.connect(lambda t, objs: events.append(("mask", t, objs)))
    s.interactions_changed.connect(lambda t, o: events.append(("interactions", t, o)))
    s.progress.connect(lambda p: events.append(("progress", p.stage, p.done)))
    o = s.add_object("a")
    s.rename_object(o, "b")
    s.set_mask(1, o, a[1])
    assert events == [("objects",), ("objects",), ("mask", 1, (o,))]
    events.clear()
    drain(s.propagate(method="nearest"), quiet=True)
    assert [e for e in events if e[0] == "mask"] == [("mask", t, (o,)) for t in (0, 2, 3)]
    assert events[-1] == ("progress", "propagate", 3)
    events.clear()
    s.remove_object(o)
    assert events[0] == ("objects",) and sorted(e[1] for e in events[1:]) == [0, 1, 2, 3]


def test_a_job_round_trips_through_json_and_runs(nearest_method, tmp_path):
    from napari_vidseg.io.masks import read_mask_png, write_mask_png
    from napari_vidseg.jobs import Job, run_job
    from napari_vidseg.types import InputError

    video, a, b = moving_clip(T=4)
    frames = write_frames(tmp_path / "clip", video)
    write_mask_png(tmp_path / "b2.png", b[2])
    job = Job(video=str(frames), clicks=[{"frame": 0, "x": 12, "y": 16, "positive": True, "object": "a"}],
              masks={"b": {"2": str(tmp_path / "b2.png")}}, method="nearest", options={"shift": 0},
              outputs={"labels": str(tmp_path / "labels.npy")}, session=str(tmp_path / "s"))
    again = Job.from_json(job.to_json())
    assert again == job
    result = run_job(again)
    assert result["propagation"] == {"computed": 4, "skipped": 0}
    labels = np.load(tmp_path / "labels.npy")
    ob = result["objects"]["b"]
    assert np.array_equal(labels[0] == ob, b[2])  # b's mask copied from frame 2 (a's pixels are elsewhere)
    assert run_job(Job.from_json(job.to_json()))["propagation"] == {"computed": 0, "skipped": 4}  # resumed
    with pytest.raises(InputError, match="unknown job field"):
        Job.from_json('{"video": "x", "colour": 1}')
    with pytest.raises(InputError, match="no option"):
        run_job(Job(video=str(frames), masks=job.masks, method="nearest", options={"steps": 1},
                    outputs={"masks": str(tmp_path / "m")}))


def test_bench_objects_cuts_the_mask_into_equal_parts():
    from napari_vidseg.commands.bench import split_mask

    mask = disk(60, 80, 30, 40, 20)
    parts = split_mask(mask, 5)
    assert len(parts) == 5
    assert np.array_equal(np.any(parts, 0), mask)
    assert sum(p.sum() for p in parts) == mask.sum()  # no pixel in two parts
    sizes = [p.sum() for p in parts]
    assert max(sizes) - min(sizes) <= 0.1 * mask.sum() / 5 + 40  # equal area up to a column's pixels


def test_the_config_split_by_job_keeps_every_default():
    old = old_video_modules()
    from napari_vidseg.video.finetune import (FinetuneConfig, InferenceConfig, SecondOpinionConfig, SelfTrainConfig,
                                              TuneConfig)

    assert vars(FinetuneConfig()) == vars(old.finetune.FinetuneConfig())
    parts = FinetuneConfig(steps=7, flip=True, refine_weight=0.5, self_train=0).parts()
    assert isinstance(parts["tune"], TuneConfig) and parts["tune"].steps == 7
    assert isinstance(parts["inference"], InferenceConfig) and parts["inference"].flip
    assert isinstance(parts["second_opinion"], SecondOpinionConfig) and parts["second_opinion"].refine_weight == 0.5
    assert isinstance(parts["self_training"], SelfTrainConfig) and parts["self_training"].self_train == 0
    assert FinetuneConfig.from_parts(**parts) == FinetuneConfig(steps=7, flip=True, refine_weight=0.5, self_train=0)
    names = [f for part in parts.values() for f in vars(part)]
    assert sorted(names) == sorted(vars(FinetuneConfig())) and len(names) == len(set(names))  # each field in one job


def test_sparse_targets_give_the_dense_batch():
    from napari_vidseg.video.finetune import SparseTargets

    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.random((4, 3, 8, 10)).astype(np.float32))
    known = [True, False, True]
    sparse = SparseTargets.cat([SparseTargets.of(y[:2], known), SparseTargets.of(y[2:], known)])
    assert tuple(sparse.shape) == (4, 3, 8, 10)
    window = sparse[..., 2:6, 4:10]
    assert tuple(window.shape) == (4, 3, 4, 6)
    got = window.index_select(0, torch.tensor([3, 1]))
    want = y[[3, 1]][..., 2:6, 4:10].clone()
    want[:, 1] = 0  # an object not annotated on these copies
    assert torch.allclose(got, want, atol=0.5 / 255 + 1e-6)
