"""LabelVolume: the masks layer's lazy data, checked against a dense numpy array
doing the same reads and writes (numpy's indexing is the specification)."""
from __future__ import annotations

import numpy as np
import pytest

from napari_vidseg.video.label_volume import LabelVolume

T, H, W = 6, 5, 7


def make(on_write=None, cache_frames=2):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (T, H, W)).astype(np.uint16)
    reads = []

    def frame_labels(t):
        reads.append(t)
        return truth[t].copy()

    vol = LabelVolume(frame_labels, (T, H, W), np.uint16, on_write=on_write, cache_frames=cache_frames)
    return vol, truth.copy(), reads


@pytest.mark.parametrize("key", [
    2, -1, (3,), (1, 2), (1, 2, 3), (slice(None), 2), (slice(1, 4), slice(None), 3), (Ellipsis, 4),
    (2, Ellipsis), [0, 3, 5], ([0, 3], slice(1, 3)),
    (np.array([0, 2, 2]), np.array([1, 4, 0]), np.array([6, 0, 3])),
])
def test_reads_match_numpy(key):
    vol, dense, _ = make()
    np.testing.assert_array_equal(vol[key], dense[key])


@pytest.mark.parametrize("key,value", [
    ((2, slice(1, 3), slice(2, 5)), 9),
    ((np.array([0, 4, 4]), np.array([1, 2, 3]), np.array([0, 5, 6])), np.array([7, 8, 9])),
    ((slice(1, 3),), 5),
    ([1, 4], np.full((2, H, W), 3)),
    (3, np.arange(H * W).reshape(H, W) % 5),
])
def test_writes_match_numpy_and_report_frames(key, value):
    seen = []
    vol, dense, _ = make(on_write=seen.append)
    vol[key] = value
    dense[key] = value
    np.testing.assert_array_equal(np.asarray(vol), dense)
    touched = sorted({int(t) for t in np.unique(np.arange(T)[key[0] if isinstance(key, tuple) else key])})
    assert seen == [touched]
    assert vol.edited == touched


def test_edited_frames_stay_pinned_until_settled():
    seen = []
    vol, dense, reads = make(on_write=seen.append, cache_frames=1)
    vol[0, 0, 0] = 9  # an edit: pinned
    for t in range(1, T):  # reading more frames than the cache holds
        vol[t]
    assert vol[0, 0, 0] == 9  # not evicted, not re-read from the session
    pending = vol.pending()
    assert list(pending) == [0] and pending[0][0][0, 0] == 9
    vol[0, 0, 1] = 8  # edited again before the first store finished
    vol.settle({0: pending[0][1]})
    assert vol.edited == [0]  # the newer edit is still waiting
    vol.settle({0: vol.pending()[0][1]})
    assert vol.edited == []
    reads.clear()
    assert vol[0, 0, 0] == dense[0, 0, 0]  # read again from the session
    assert reads == [0]
    assert seen == [[0], [0]] and vol.edited == []


def test_invalidate_rereads_but_keeps_unstored_edits():
    vol, dense, reads = make(cache_frames=8)
    vol[1]
    vol[2, 0, 0] = 5
    reads.clear()
    vol.invalidate()
    vol[1]
    vol[2]
    assert reads == [1]  # frame 2 holds an edit not yet stored: kept


def test_bad_indices_raise_index_errors():
    vol, _, _ = make()
    with pytest.raises(IndexError):
        vol[T]
    with pytest.raises(IndexError):
        vol[0, 0, 0, 0]
