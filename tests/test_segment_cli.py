"""`napari-vidseg segment` on a tiny synthetic video (a frame folder), with a fake
interactive model (a disk around each positive click) and a random-init parent
network tuned for two steps: checks the command's wiring and its errors."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from napari_vidseg import cli
from napari_vidseg.commands import segment

T, H, W = 6, 48, 64


class DiskPredictor:
    def set_image(self, frame):
        self.shape = frame.shape[:2]

    def predict(self, interactions, prev_mask=None):
        yy, xx = np.mgrid[:self.shape[0], :self.shape[1]]
        mask = np.zeros(self.shape, bool)
        for c in interactions.clicks:
            disk = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= 8 ** 2
            mask = mask | disk if c.positive else mask & ~disk
        return SimpleNamespace(mask=mask, prob=mask.astype(np.float32))


@pytest.fixture
def video(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    yy, xx = np.mgrid[:H, :W]
    for t in range(T):
        f = np.full((H, W, 3), 30, np.uint8)
        f[(yy - 24) ** 2 + (xx - 20 - 3 * t) ** 2 <= 100] = (240, 220, 40)
        Image.fromarray(f).save(folder / f"{t:05d}.png")
    return folder


@pytest.fixture(autouse=True)
def fake_models(monkeypatch):
    from napari_vidseg.video.session import VideoSession

    def parent(self):
        import torch

        from napari_vidseg.models.vidsegnet import VidSegNet

        torch.manual_seed(0)
        return VidSegNet(in_channels=3).eval()

    monkeypatch.setattr(VideoSession, "predictor", lambda self: DiskPredictor())
    monkeypatch.setattr(VideoSession, "_parent_net", parent)


def write_csv(path, text):
    path.write_text(text)
    return path


def masks_of(folder):
    files = sorted(folder.glob("*.png"))
    return [np.asarray(Image.open(f)) for f in files]


def test_no_propagate_segments_clicked_frames_only(video, tmp_path):
    clicks = write_csv(tmp_path / "c.csv", "frame,x,y,positive\n0,20,24,1\n0,32,24,0\n3,29,24,true\n")
    out = tmp_path / "out"
    assert cli.main(["segment", str(video), "--clicks", str(clicks), "--out", str(out),
                     "--no-propagate", "--quiet"]) == 0
    m = masks_of(out)
    assert len(m) == T
    assert m[0][24, 18] > 0 and m[0][24, 27] == 0  # the negative click cut the disk
    assert m[3][24, 29] > 0
    assert not m[1].any() and not m[5].any()


def test_propagate_and_exports(video, tmp_path):
    clicks = write_csv(tmp_path / "c.csv", "frame,x,y,positive\n0,20,24,1\n")
    out = tmp_path / "out"
    rc = cli.main(["segment", str(video), "--clicks", str(clicks), "--out", str(out),
                   "--sticker", str(tmp_path / "s.gif"), "--composite", str(tmp_path / "c.mp4"),
                   "--labels", str(tmp_path / "l.npy"), "--session", str(tmp_path / "sess"),
                   "--steps", "2", "--input-size", "64", "--quiet"])
    assert rc == 0
    assert len(masks_of(out)) == T
    assert np.load(tmp_path / "l.npy").shape == (T, H, W)
    with Image.open(tmp_path / "s.gif") as im:
        assert im.n_frames == T
    assert (tmp_path / "c.mp4").stat().st_size > 0
    from napari_vidseg.types import Provenance
    from napari_vidseg.video.session import VideoSession

    s = VideoSession.open(tmp_path / "sess")
    assert s.masks.provenance(1, 0) is Provenance.USER
    assert all(s.masks.provenance(1, t) is Provenance.PROPAGATED for t in range(1, T))


def test_objects_column_gives_label_pngs(video, tmp_path):
    clicks = write_csv(tmp_path / "c.csv", "frame,x,y,positive,object\n0,20,24,1,ball\n0,55,8,1,corner\n")
    out = tmp_path / "out"
    assert cli.main(["segment", str(video), "--clicks", str(clicks), "--out", str(out),
                     "--no-propagate", "--quiet"]) == 0
    m = masks_of(out)[0]
    assert m[24, 20] != m[8, 55] and m[24, 20] > 0 and m[8, 55] > 0


@pytest.mark.parametrize("text,message", [
    ("frame,x,positive\n0,1,1\n", "missing column"),
    ("frame,x,y,positive\n0,200,10,1\n", "line 2: click at (x=200, y=10) is outside the 64x48 frame"),
    ("frame,x,y,positive\n9,10,10,1\n", "line 2: frame 9 does not exist"),
    ("frame,x,y,positive\n0,10,10,maybe\n", "line 2: positive must be"),
    ("frame,x,y,positive\n0,nan,10,1\n", "line 2: x must be a finite number"),
    ("frame,x,y,positive\n0.5,1,1,1\n", "whole number"),
    ("frame,x,y,positive\n", "holds no clicks"),
])
def test_bad_clicks_are_clear_errors(video, tmp_path, capsys, text, message):
    clicks = write_csv(tmp_path / "c.csv", text)
    rc = cli.main(["segment", str(video), "--clicks", str(clicks), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err


def test_missing_inputs(tmp_path, capsys):
    assert cli.main(["segment", "--out", str(tmp_path)]) == 2
    assert "give a VIDEO" in capsys.readouterr().err
    assert cli.main(["segment", str(tmp_path / "nope.mp4"), "--clicks", str(tmp_path / "c.csv"),
                     "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_sample_clicks_file_ships():
    rows = segment.read_clicks(segment.sample_clicks_path())
    assert rows and any(r.click.positive for r in rows)


def test_int8_self_train_and_refine_flags_reach_propagation(video, tmp_path, monkeypatch):
    from napari_vidseg.video.session import VideoSession

    seen = []
    real = VideoSession.propagate

    def spy(self, obj, config=None, *args, **kwargs):
        seen.append(config)
        return real(self, obj, config, *args, **kwargs)

    monkeypatch.setattr(VideoSession, "propagate", spy)
    clicks = write_csv(tmp_path / "c.csv", "frame,x,y,positive\n0,20,24,1\n")
    out = tmp_path / "out"
    assert cli.main(["segment", str(video), "--clicks", str(clicks), "--out", str(out), "--int8",
                     "--steps", "1", "--input-size", "64", "--quiet"]) == 0
    assert [c.int8 for c in seen] == [True]
    assert len(masks_of(out)) == T
    seen.clear()
    assert cli.main(["segment", str(video), "--clicks", str(clicks), "--out", str(tmp_path / "out2"),
                     "--self-train", "1", "--steps", "1", "--input-size", "64", "--quiet"]) == 0
    assert [c.self_train for c in seen] == [1]
    assert len(masks_of(tmp_path / "out2")) == T
    seen.clear()
    for flag, on in (("--refine", True), ("--no-refine", False)):
        assert cli.main(["segment", str(video), "--clicks", str(clicks), "--out", str(tmp_path / flag), flag,
                         "--self-train", "0", "--steps", "1", "--input-size", "64", "--quiet"]) == 0
        assert seen.pop().refine is on
        assert len(masks_of(tmp_path / flag)) == T


def test_bench_memory_times_both_passes_of_a_self_trained_propagation(tmp_path, capsys):
    """bench-memory on a tiny synthetic video: every frame stored, the tuning and
    propagation times summed over the two passes of the default self-training."""
    import json

    rc = cli.main(["bench-memory", "--frames", "12", "--size", "64x48", "--steps", "2", "--input-long-side", "64",
                   "--every", "4", "--work-dir", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["frames"] == 12 and result["frames_stored"] == 12 and result["self_train"] == 2
    assert result["finetune_seconds"] > 0 and result["propagate_fps"] > 0
    if result["sampled_peak_rss_mb"] is not None:  # psutil: the decoders' memory is counted on top
        assert result["sampled_peak_with_decoders_mb"] >= result["sampled_peak_rss_mb"] > 0
    assert out.count("propagating through") == 2  # the first pass (every 4th frame), then all of them
    assert "propagating through 2 frames" in out and "propagating through 11 frames" in out
