"""The sample clip: real photographs, an exactly known mask on every frame, deterministic."""
from __future__ import annotations

import numpy as np

from napari_vidseg import sample


def test_frames_and_truth_match():
    frames, truth = sample.sample_frames(), sample.sample_truth()
    assert frames.shape == (sample.N_FRAMES, sample.HEIGHT, sample.WIDTH, 3) and frames.dtype == np.uint8
    assert truth.shape == frames.shape[:3] and truth.dtype == bool
    area = truth.sum(axis=(1, 2))
    assert (area > 0.03 * truth[0].size).all() and (area < 0.5 * truth[0].size).all()
    # the object moves: its centroid travels across the frame
    cx = [np.nonzero(m)[1].mean() for m in truth[[0, -1]]]
    assert cx[1] - cx[0] > sample.WIDTH * 0.3
    # pixels outside the mask are the background photograph, inside they differ from it
    bg = sample._background()
    assert np.array_equal(frames[0][~truth[0]], bg[~truth[0]])
    assert np.abs(frames[0][truth[0]].astype(int) - bg[truth[0]]).mean() > 20


def test_deterministic():
    a = sample._compose(17)
    b = sample._compose(17)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(a[0], sample.sample_frames()[17])


def test_clip_file_written_once(tmp_path, monkeypatch):
    from napari_vidseg.io.video import VideoSource

    monkeypatch.setenv("NAPARI_VIDSEG_CACHE", str(tmp_path))
    p = sample.sample_clip_path()
    assert p.parent == tmp_path and p.suffix == ".mp4"
    mtime = p.stat().st_mtime_ns
    assert sample.sample_clip_path().stat().st_mtime_ns == mtime  # not rewritten
    v = VideoSource.open(p)
    assert v.shape == (sample.N_FRAMES, sample.HEIGHT, sample.WIDTH, 3)
    diff = np.abs(v.frame(30).astype(int) - sample.sample_frames()[30]).mean()
    assert diff < 6  # a faithful (lossy) encoding of the exact frames
