import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import napari_vidseg.video as video_pkg
from napari_vidseg.video import quality as real_quality
from napari_vidseg.types import Click, InputError, Interactions, Progress, Provenance, Stroke, StrokeKind
from napari_vidseg.video.session import VideoSession

T, H, W = 8, 32, 40


class FakeSource:
    """Stand-in for io.video.VideoSource: 8 frames of 40x32 with a moving bright square."""

    def __init__(self, path):
        self.path = Path(path)
        self.n_frames, self.height, self.width, self.fps = T, H, W, 10.0
        self.frame_calls = 0

    def frame(self, t):
        self.frame_calls += 1
        f = np.full((H, W, 3), 40, np.uint8)
        f[8:20, 4 + 3 * t:16 + 3 * t] = (220, 200, 30)
        return f

    def __len__(self):
        return self.n_frames

    def frames(self, start, stop):
        return np.stack([self.frame(t) for t in range(start, stop)])

    def iter_chunks(self, start=0, stop=None):
        stop = T if stop is None else stop
        for s in range(start, stop, 3):
            yield s, np.stack([self.frame(t) for t in range(s, min(s + 3, stop))])


def disk(cx, cy, r=4):
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


class FakePredictor:
    """Positive clicks add a disk, negative clicks remove one, on top of prev_mask."""

    def __init__(self):
        self.calls = []
        self.image = None

    def set_image(self, frame):
        self.image = np.asarray(frame)

    def predict(self, interactions, prev_mask=None):
        self.calls.append((interactions.copy(), None if prev_mask is None else prev_mask.copy()))
        m = np.zeros((H, W), bool) if prev_mask is None else prev_mask.copy()
        for c in interactions.clicks:
            if c.positive:
                m |= disk(c.x, c.y)
        for c in interactions.clicks:
            if not c.positive:
                m &= ~disk(c.x, c.y)
        for s in interactions.strokes:
            for x, y in s.points:
                m[int(y), int(x)] = s.positive
        return types.SimpleNamespace(mask=m, prob=m.astype(np.float32))


@pytest.fixture
def src(tmp_path):
    return FakeSource(tmp_path / "clip.mp4")


@pytest.fixture
def session(src):
    s = VideoSession.create(src)
    s.set_predictor(FakePredictor())
    return s


def test_create_add_object_and_click(session):
    obj = session.add_object("ball")
    assert session.objects[obj].name == "ball"
    m = session.add_interactions(2, obj, Interactions([Click(10, 12)]))
    assert np.array_equal(m, disk(10, 12))
    assert session.masks.provenance(obj, 2) is Provenance.USER
    # the second click re-segments with both clicks, starting from the first result (no start mask)
    m2 = session.add_interactions(2, obj, Interactions([Click(25, 12)]))
    inter, prev = session.predictor().calls[-1]
    assert [(c.x, c.y) for c in inter.clicks] == [(10, 12), (25, 12)]
    assert np.array_equal(prev, disk(10, 12))
    assert np.array_equal(m2, disk(10, 12) | disk(25, 12))
    assert len(session.interactions[(obj, 2)].clicks) == 2
    # replace drops the old clicks and starts afresh
    m3 = session.add_interactions(2, obj, Interactions([Click(30, 20)]), replace=True)
    assert np.array_equal(m3, disk(30, 20))
    assert session.predictor().calls[-1][1] is None


def test_undo_redo(session):
    obj = session.add_object()
    session.add_interactions(1, obj, Interactions([Click(10, 12)]))
    session.add_interactions(1, obj, Interactions([], [Stroke(((30, 5), (31, 5)), positive=True)]))
    session.add_interactions(1, obj, Interactions([Click(20, 12)]))
    # the last thing given was a click: undo drops it, not the stroke
    m = session.undo_interaction(1, obj)
    inter = session.interactions[(obj, 1)]
    assert len(inter.clicks) == 1 and len(inter.strokes) == 1
    assert m[12, 10] and m[5, 30] and not m[12, 20]
    m = session.redo_interaction(1, obj)
    assert m[12, 20]
    session.undo_interaction(1, obj)
    session.undo_interaction(1, obj)  # the stroke
    assert len(session.interactions[(obj, 1)].strokes) == 0
    assert session.undo_interaction(1, obj) is None  # the first click: nothing left
    assert (obj, 1) not in session.interactions
    assert session.masks.get(obj, 1) is None
    assert session.undo_interaction(1, obj) is None  # nothing to undo


def test_undo_gives_back_the_mask_shown_before_without_asking_the_predictor(session):
    """Each click's result depends on the mask the click before made, so
    re-segmenting the remaining clicks need not give back what the user saw:
    undo restores the remembered mask. Painting the frame forgets it."""
    obj = session.add_object()
    fake = session.predictor()
    shown = []
    for x in (10, 20, 30):
        session.add_interactions(3, obj, Interactions([Click(x, 12)]))
        # a predictor whose answer also depends on how often it was asked
        session.masks.set(obj, 3, session.masks.get(obj, 3) | disk(2 + len(fake.calls), 28, r=1),
                          session.masks.provenance(obj, 3))
        shown.append(session.masks.get(obj, 3))
    n_calls = len(fake.calls)
    assert np.array_equal(session.undo_interaction(3, obj), shown[1])
    assert np.array_equal(session.masks.get(obj, 3), shown[1])
    assert np.array_equal(session.undo_interaction(3, obj), shown[0])
    assert len(fake.calls) == n_calls  # restored, not re-segmented
    assert session.masks.provenance(obj, 3) is Provenance.USER
    assert len(session.interactions[(obj, 3)].clicks) == 1
    # redo re-segments from the restored mask, and its result is remembered in turn
    m = session.redo_interaction(3, obj)
    assert np.array_equal(m, shown[0] | disk(20, 12)) and len(fake.calls) == n_calls + 1
    session.add_interactions(3, obj, Interactions([Click(30, 20)]))
    assert np.array_equal(session.undo_interaction(3, obj), m)
    # after a painting, undo re-segments the remaining clicks (from the frame's start)
    session.set_mask(3, obj, disk(5, 5))
    session.undo_interaction(3, obj)
    assert len(fake.calls) == n_calls + 3
    assert np.array_equal(session.masks.get(obj, 3), disk(10, 12))


def test_set_mask_and_remove_object(session):
    a, b = session.add_object(), session.add_object()
    session.set_mask(3, a, disk(5, 5))
    session.set_mask(3, b, disk(6, 5), Provenance.CORRECTED)
    assert session.masks.provenance(a, 3) is Provenance.USER
    assert session.masks.provenance(b, 3) is Provenance.CORRECTED
    session.rename_object(b, "cup")
    assert session.objects[b].name == "cup"
    session.remove_object(a)
    assert a not in session.objects and session.masks.get(a, 3) is None
    assert session.add_object() == b + 1  # ids are never reused


def test_painted_mask_is_the_start_of_later_clicks_and_undo_gives_it_back(session):
    obj = session.add_object()
    painted = disk(8, 8) | disk(30, 20)
    session.set_mask(2, obj, painted)
    m = session.add_interactions(2, obj, Interactions([Click(20, 12)]))
    assert np.array_equal(session.predictor().calls[-1][1], painted)  # refined, not replaced
    assert np.array_equal(m, painted | disk(20, 12))
    session.add_interactions(2, obj, Interactions([Click(8, 8, positive=False)]))
    assert np.array_equal(session.predictor().calls[-1][1], painted)  # every click starts from the painting
    m = session.undo_interaction(2, obj)  # gives back the mask shown before
    assert np.array_equal(m, painted | disk(20, 12))
    assert session.undo_interaction(2, obj) is None  # no click left: the painted mask is back
    assert np.array_equal(session.masks.get(obj, 2), painted)
    assert session.masks.provenance(obj, 2) is Provenance.USER
    # a propagated frame: every correction click starts from the propagated mask
    session.masks.set(obj, 6, disk(10, 10), Provenance.PROPAGATED, 0.5)
    session.add_interactions(6, obj, Interactions([Click(25, 20)]))
    session.add_interactions(6, obj, Interactions([Click(10, 10, positive=False)]))
    assert np.array_equal(session.predictor().calls[-1][1], disk(10, 10))
    assert session.masks.provenance(obj, 6) is Provenance.CORRECTED
    # a painted propagated frame is corrected, and stays so after its clicks are undone
    session.masks.set(obj, 5, disk(10, 10), Provenance.PROPAGATED, 0.5)
    session.set_mask(5, obj, disk(12, 10), Provenance.CORRECTED)
    session.add_interactions(5, obj, Interactions([Click(30, 20)]))
    assert session.masks.provenance(obj, 5) is Provenance.CORRECTED
    session.undo_interaction(5, obj)
    assert np.array_equal(session.masks.get(obj, 5), disk(12, 10))
    assert session.masks.provenance(obj, 5) is Provenance.CORRECTED


@pytest.mark.parametrize("call, message", [
    (lambda s, o: s.add_interactions(0, o, Interactions([Click(40, 3)])), "outside the 40x32 frame"),
    (lambda s, o: s.add_interactions(0, o, Interactions([Click(-2, 3)])), "outside"),
    (lambda s, o: s.add_interactions(8, o, Interactions([Click(4, 3)])), "frame 8 does not exist"),
    (lambda s, o: s.add_interactions(-1, o, Interactions([Click(4, 3)])), "frame -1 does not exist"),
    (lambda s, o: s.add_interactions(0, o + 5, Interactions([Click(4, 3)])), "unknown object"),
    (lambda s, o: s.add_interactions(0, o, Interactions()), "no clicks or strokes"),
    (lambda s, o: s.add_interactions(0, o, Interactions([Click(float("nan"), 3)])), "finite"),
    (lambda s, o: s.add_interactions(
        0, o, Interactions([], [Stroke(((50, 50), (60, 60)), kind=StrokeKind.PATH)])), "outside"),
    (lambda s, o: s.set_mask(0, o, np.zeros((H, W + 1), bool)), "shape"),
    (lambda s, o: s.set_mask(1.5, o, np.zeros((H, W), bool)), "integer"),
    (lambda s, o: s.rename_object(o, "  "), "empty"),
    (lambda s, o: s.remove_object(99), "unknown object 99"),
    (lambda s, o: next(s.propagate(o)), "no annotated frame"),
    (lambda s, o: next(s.export()), "nothing to export"),
])
def test_bad_input_gives_clear_error(session, call, message):
    obj = session.add_object()
    with pytest.raises(InputError, match=message):
        call(session, obj)
    assert session.masks.frames(obj) == []  # and nothing was stored


def test_save_open_round_trip(tmp_path, src):
    folder = tmp_path / "sess"
    s = VideoSession.create(src, folder)
    s.set_predictor(FakePredictor())
    a, b = s.add_object("dog"), s.add_object("ball")
    s.add_interactions(0, a, Interactions([Click(10, 12), Click(14, 12, positive=False)]))
    s.add_interactions(0, a, Interactions([], [Stroke(((2, 2), (6, 2), (6, 6)), False, StrokeKind.REGION, 2.0)]))
    s.add_interactions(5, b, Interactions([Click(30, 20)]))
    s.masks.set(a, 3, disk(20, 20), Provenance.PROPAGATED, 0.42)
    s.set_mask(6, b, disk(1, 1), Provenance.CORRECTED)
    saved = {(o, t): (s.masks.get(o, t), s.masks.provenance(o, t)) for o in (a, b) for t in s.masks.frames(o)}

    r = VideoSession.open(folder, video=FakeSource(src.path))
    assert {k: v.name for k, v in r.objects.items()} == {a: "dog", b: "ball"}
    assert r.interactions == s.interactions
    assert r._order == s._order
    for (o, t), (m, p) in saved.items():
        assert np.array_equal(r.masks.get(o, t), m) and r.masks.provenance(o, t) is p
    assert r.masks.confidence(a) == {3: pytest.approx(0.42)}
    assert r.add_object() == b + 1
    meta = json.loads((folder / "session.json").read_text())
    assert meta["video"] == str(src.path.absolute()) and meta["n_frames"] == T

    # the video is not at its stored path (the stand-in never existed on disk)
    with pytest.raises(InputError, match=str(src.path.name)):
        VideoSession.open(folder)
    with pytest.raises(InputError, match="already holds a session"):
        VideoSession.create(src, folder)
    with pytest.raises(InputError, match="no session"):
        VideoSession.open(tmp_path / "elsewhere")


def test_open_rejects_a_different_video(tmp_path, src):
    VideoSession.create(src, tmp_path / "s")
    other = FakeSource(src.path)
    other.n_frames = 9
    with pytest.raises(InputError, match="9 frames"):
        VideoSession.open(tmp_path / "s", video=other)


# -- propagation with fake finetune/propagate modules (engineer D's live elsewhere) ----
@dataclass
class FakeResult:
    t: int
    mask: np.ndarray
    prob: np.ndarray
    confidence: float


@pytest.fixture
def fake_video_modules(monkeypatch):
    log = {"propagated": [], "closed": False, "tuned_on": None}

    @dataclass
    class FinetuneConfig:
        mode: str = "head"
        steps: int = 3
        self_train: int = 0
        first_pass_stride: int = 4
        self_train_rounds: int = 1

    def finetune(parent, frames, masks, config):
        log["tuned_on"] = len(frames)
        log.setdefault("tunings", []).append(len(frames))
        for i in range(config.steps):
            yield Progress("finetune", i + 1, config.steps)
        return parent

    def propagate(net, source, annotated, config, frames=None):
        try:
            for t in (frames if frames is not None else range(source.n_frames)):
                log["propagated"].append(t)
                m = disk(5 + 3 * t, 10)
                yield FakeResult(t, m, m.astype(np.float16), 0.1 * t)
            # a buggy propagator might also yield an annotated frame: must be ignored
            yield FakeResult(0, np.zeros((H, W), bool), np.zeros((H, W), np.float16), 0.0)
        finally:
            log["closed"] = True

    ft = types.ModuleType("napari_vidseg.video.finetune")
    ft.FinetuneConfig, ft.finetune, ft.load_parent = FinetuneConfig, finetune, lambda device=None: object()
    pr = types.ModuleType("napari_vidseg.video.propagate")
    pr.propagate = propagate

    def frame_scores(masks, confidence):
        # scores every frame; annotated ones (no confidence) lowest, so the session must drop them
        return {t: confidence.get(t, -1.0) for t in masks}

    def worst_frames(scores, k, exclude=()):
        return sorted(scores, key=scores.get)[:k]  # ignores `exclude` on purpose

    q = types.ModuleType("napari_vidseg.video.quality")
    q.frame_scores, q.worst_frames = frame_scores, worst_frames
    q.first_pass_frames, q.pseudo_annotations = real_quality.first_pass_frames, real_quality.pseudo_annotations
    # The built-in methods are registered with the REAL modules before the fakes go in: registered
    # while the fakes are in sys.modules, the fake config would stay in the registry for later tests.
    from napari_vidseg.video import propagators
    from napari_vidseg.video.propagators.osvos import OSVOS

    propagators.names()
    for name, mod in (("finetune", ft), ("propagate", pr), ("quality", q)):
        monkeypatch.setitem(sys.modules, f"napari_vidseg.video.{name}", mod)
        monkeypatch.setattr(video_pkg, name, mod, raising=False)
    # The registry's OSVOS entry takes the fake config too (its default config is the method's).
    monkeypatch.setitem(propagators._METHODS, "osvos", propagators.Method("osvos", OSVOS, FinetuneConfig))
    return log


def test_propagate_writes_frames_and_keeps_annotations(session, fake_video_modules):
    obj = session.add_object()
    session.add_interactions(0, obj, Interactions([Click(10, 12)]))
    user_mask = session.masks.get(obj, 0)
    session.set_mask(4, obj, disk(30, 20), Provenance.CORRECTED)
    progress = list(session.propagate(obj))
    assert fake_video_modules["tuned_on"] == 2
    assert [p.stage for p in progress][:3] == ["finetune"] * 3
    assert progress[-1].stage == "propagate" and progress[-1].done == progress[-1].total == 6
    assert session.masks.frames(obj, Provenance.PROPAGATED) == [1, 2, 3, 5, 6, 7]
    assert np.array_equal(session.masks.get(obj, 0), user_mask)  # never overwritten
    assert np.array_equal(session.masks.get(obj, 4), disk(30, 20))
    assert session.masks.confidence(obj)[3] == pytest.approx(0.3)
    # worst frames: propagated only, worst (lowest confidence) first
    assert session.worst_frames(obj, k=3) == [1, 2, 3]
    assert 0 not in session.worst_frames(obj, k=10) and 4 not in session.worst_frames(obj, k=10)


def test_self_trained_propagation_runs_two_passes(session, fake_video_modules):
    """self_train=1: every 2nd frame first, then a second tuning on the
    annotated frame plus one trusted propagated mask, then every frame; the
    trusted frame stays PROPAGATED (it is not turned into an annotation)."""
    obj = session.add_object()
    session.add_interactions(0, obj, Interactions([Click(10, 12)]))
    cfg = sys.modules["napari_vidseg.video.finetune"].FinetuneConfig(self_train=1, first_pass_stride=2)
    progress = list(session.propagate(obj, cfg))
    log = fake_video_modules
    assert log["tunings"] == [1, 2]
    assert log["propagated"] == [2, 4, 6] + [1, 2, 3, 4, 5, 6, 7]
    # The fake scores rank by confidence (0.1 t): frame 6 is the trusted one.
    assert any(p.message == "self-trained on frames [6]" for p in progress)
    assert session.masks.frames(obj, Provenance.PROPAGATED) == [1, 2, 3, 4, 5, 6, 7]
    # No frame far enough from the annotated ones (a stride longer than the video): no second tuning.
    log["tunings"].clear()
    cfg = sys.modules["napari_vidseg.video.finetune"].FinetuneConfig(self_train=1, first_pass_stride=100)
    list(session.propagate(obj, cfg))
    assert log["tunings"] == [1]


def test_self_training_rounds_add_trusted_frames(session, fake_video_modules):
    """self_train_rounds=2: a second sparse pass with the second tuning, which
    adds one more trusted frame away from frame 0 and the first one (16 frames,
    k=1: at least 16 // 4 = 4 apart), then a third tuning on all three."""
    from napari_vidseg.video.self_train import propagate_self_trained

    log = {"tunings": [], "passes": []}

    def tune(on):
        log["tunings"].append(sorted(on))
        yield None
        return len(log["tunings"])

    def run(net, frames, message):
        log["passes"].append((net, list(frames), message))
        yield None
        # Tuning 1 trusts late frames most; tuning 2 trusts early ones.
        conf = {t: (t if net == 1 else -t) / 16 for t in frames}
        return {t: disk(4, 4) for t in frames}, conf

    cfg = sys.modules["napari_vidseg.video.finetune"].FinetuneConfig(self_train=1, first_pass_stride=2,
                                                                     self_train_rounds=2)
    gen = propagate_self_trained(tune, run, {0: disk(4, 4)}, list(range(1, 16)), cfg, 16)
    list(gen)
    assert log["tunings"] == [[0], [0, 14], [0, 4, 14]]
    assert [(net, msg) for net, _, msg in log["passes"]] == [
        (1, "first pass"), (2, "pass 2 of 3"), (3, "self-trained on frames [4, 14]")]
    assert log["passes"][0][1] == log["passes"][1][1] == list(range(2, 16, 2))
    assert log["passes"][2][1] == list(range(1, 16))


def test_cancelled_propagation_keeps_finished_frames_only(tmp_path, src, fake_video_modules):
    folder = tmp_path / "s"
    s = VideoSession.create(src, folder)
    s.set_predictor(FakePredictor())
    obj = s.add_object()
    s.add_interactions(0, obj, Interactions([Click(10, 12)]))
    s.masks.set(obj, 6, disk(1, 1), Provenance.PROPAGATED, 0.99)  # from an earlier run
    job = s.propagate(obj)
    seen = []
    for p in job:
        if p.stage == "propagate" and p.frame is not None:
            seen.append(p.frame)
            if len(seen) == 3:
                break
    job.close()  # cancel
    assert fake_video_modules["closed"]
    assert seen == [1, 2, 3]
    assert s.masks.frames(obj, Provenance.PROPAGATED) == [1, 2, 3, 6]
    assert np.array_equal(s.masks.get(obj, 6), disk(1, 1))  # untouched
    # and exactly this is on disk
    r = VideoSession.open(folder, video=FakeSource(src.path))
    assert r.masks.frames(obj, Provenance.PROPAGATED) == [1, 2, 3, 6]
    assert r.masks.frames(obj, Provenance.USER) == [0]
    for t in (1, 2, 3):
        assert np.array_equal(r.masks.get(obj, t), disk(5 + 3 * t, 10))


def test_correct_a_propagated_frame_and_undo_restores_it(session, fake_video_modules):
    obj = session.add_object()
    session.add_interactions(0, obj, Interactions([Click(10, 12)]))
    list(session.propagate(obj))
    propagated = session.masks.get(obj, 5)
    m = session.correct(5, obj, Interactions([Click(35, 25)]))
    _, prev = session.predictor().calls[-1]
    assert np.array_equal(prev, propagated)  # refined from the propagated mask, not from scratch
    assert np.array_equal(m, propagated | disk(35, 25))
    assert session.masks.provenance(obj, 5) is Provenance.CORRECTED
    assert 5 not in session.worst_frames(obj, k=10)
    assert session.undo_interaction(5, obj) is None
    assert session.masks.provenance(obj, 5) is Provenance.PROPAGATED
    assert np.array_equal(session.masks.get(obj, 5), propagated)
    assert session.masks.confidence(obj)[5] == pytest.approx(0.5)


def test_real_predictor_on_random_net(src):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    from napari_vidseg.models.vidsegnet import VidSegNet
    from napari_vidseg.segment.predictor import InteractivePredictor

    s = VideoSession.create(src)
    s.set_predictor(InteractivePredictor(net=VidSegNet(6).eval(), use_crf=False))
    obj = s.add_object()
    m = s.add_interactions(3, obj, Interactions([Click(12, 14), Click(2, 2, positive=False)]))
    assert m.shape == (H, W) and m.dtype == bool
    assert m[14, 12] and not m[2, 2]  # clicked pixels are clamped to their label
    assert s.masks.provenance(obj, 3) is Provenance.USER


def test_session_export(tmp_path, session):
    from napari_vidseg.io.masks import read_mask_folder

    obj = session.add_object()
    for t in range(T):
        session.set_mask(t, obj, disk(8 + 3 * t, 14))
    job = session.export(tmp_path / "masks", obj, sticker=tmp_path / "s.gif", composite=tmp_path / "c.mp4",
                         labels=tmp_path / "l.npy")
    stages = []
    try:
        while True:
            stages.append(next(job).stage)
    except StopIteration as stop:
        result = stop.value
    assert set(stages) == {"masks", "labels", "sticker", "composite"}
    assert result["sticker"].exists() and result["composite"].exists()
    back = read_mask_folder(tmp_path / "masks")
    assert sorted(back) == list(range(T)) and np.array_equal(back[4], disk(20, 14))
    vol = np.load(tmp_path / "l.npy")
    assert vol.shape == (T, H, W) and (vol[2][disk(14, 14)] == obj).all()


KILLED_CHILD = r'''
import sys, time, types
from dataclasses import dataclass
import numpy as np
sys.path.insert(0, sys.argv[2])
from test_session import FakeSource, FakeResult, disk
import napari_vidseg.video as video_pkg
from napari_vidseg.types import Provenance

@dataclass
class Cfg:
    steps: int = 0
    self_train: int = 0

def finetune(parent, frames, masks, config):
    return parent
    yield

def propagate(net, source, annotated, config, frames=None):
    for t in frames:
        yield FakeResult(t, disk(5 + 3 * t, 10), None, 0.5)

ft = types.ModuleType("ft"); ft.FinetuneConfig, ft.finetune, ft.load_parent = Cfg, finetune, lambda: object()
pr = types.ModuleType("pr"); pr.propagate = propagate
for name, mod in (("finetune", ft), ("propagate", pr)):
    sys.modules["napari_vidseg.video." + name] = mod
    setattr(video_pkg, name, mod)
from napari_vidseg.video.session import VideoSession
s = VideoSession.create(FakeSource(sys.argv[1] + "/clip.mp4"), sys.argv[1] + "/s")
obj = s.add_object("killed")
s.set_mask(0, obj, disk(5, 10))
print("ready", flush=True)
for p in s.propagate(obj):
    if p.frame is not None:
        print(p.frame, flush=True)
        time.sleep(0.3)
'''


def test_killed_propagation_loses_no_finished_frame(tmp_path):
    """Fault injection: SIGKILL a propagating process; every frame it reported is on disk."""
    import os
    import signal
    import subprocess

    script = tmp_path / "child.py"
    script.write_text(KILLED_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, text=True)
    reported = []
    try:
        for line in proc.stdout:
            if line.strip().isdigit():
                reported.append(int(line))
                if len(reported) == 3:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
    finally:
        proc.kill()
        proc.wait()
    assert reported == [1, 2, 3]
    r = VideoSession.open(tmp_path / "s", video=FakeSource(tmp_path / "clip.mp4"))
    (obj,) = r.objects
    assert r.masks.frames(obj, Provenance.USER) == [0]
    stored = r.masks.frames(obj, Provenance.PROPAGATED)
    assert stored[:3] == [1, 2, 3] and len(stored) <= 4  # at most the frame in flight beyond
    for t in stored:
        assert np.array_equal(r.masks.get(obj, t), disk(5 + 3 * t, 10))
        assert r.masks.confidence(obj)[t] == pytest.approx(0.5)
