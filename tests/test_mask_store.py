import json

import numpy as np
import pytest

from napari_vidseg.types import InputError, Provenance
from napari_vidseg.video.mask_store import MaskStore

H, W, T = 32, 40, 8


def disk_mask(cx, cy, r=6):
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path):
    return MaskStore(None if request.param == "memory" else tmp_path, H, W, T)


def test_set_get_provenance_confidence(store):
    m = disk_mask(10, 10)
    store.set(1, 0, m, Provenance.USER)
    store.set(1, 3, disk_mask(20, 12), Provenance.PROPAGATED, confidence=0.25)
    store.set(2, 3, disk_mask(22, 14), Provenance.CORRECTED)
    assert np.array_equal(store.get(1, 0), m)
    assert store.get(1, 1) is None
    assert store.provenance(1, 0) is Provenance.USER
    assert store.provenance(1, 3) is Provenance.PROPAGATED
    assert store.provenance(1, 5) is None
    assert store.frames(1) == [0, 3]
    assert store.frames(1, Provenance.PROPAGATED) == [3]
    assert list(store.annotated(1)) == [0]
    assert list(store.annotated(2)) == [3]
    assert store.confidence(1) == {3: 0.25}
    # a returned mask is a copy
    got = store.get(1, 0)
    got[:] = False
    assert store.get(1, 0).any()


def test_labels_higher_id_wins(store):
    a, b = disk_mask(10, 10), disk_mask(14, 10)
    store.set(1, 2, a, Provenance.USER)
    store.set(2, 2, b, Provenance.USER)
    lab = store.labels(2)
    assert lab.dtype == np.uint16
    assert (lab[b] == 2).all()
    assert (lab[a & ~b] == 1).all()
    assert (lab[~(a | b)] == 0).all()


def test_remove_object_and_delete(store):
    store.set(1, 0, disk_mask(10, 10), Provenance.USER)
    store.set(2, 0, disk_mask(10, 10), Provenance.USER)
    store.set(2, 1, disk_mask(10, 10), Provenance.USER)
    store.remove_object(2)
    assert store.frames(2) == [] and store.get(2, 0) is None
    store.delete(1, 0)
    assert store.get(1, 0) is None and store.frames(1) == []


def test_bad_input(store):
    with pytest.raises(InputError, match="frame 8 does not exist"):
        store.set(1, 8, disk_mask(1, 1), Provenance.USER)
    with pytest.raises(InputError, match="shape"):
        store.set(1, 0, np.zeros((H + 1, W), bool), Provenance.USER)


def test_reopen_restores_everything(tmp_path):
    s = MaskStore(tmp_path, H, W, T)
    for t in range(T):
        s.set(1, t, disk_mask(5 + 3 * t, 12), Provenance.USER if t == 0 else Provenance.PROPAGATED,
              None if t == 0 else t / 10)
    s.set(1, 4, disk_mask(3, 3), Provenance.CORRECTED)
    s2 = MaskStore(tmp_path, H, W, T)
    assert s2.frames(1) == list(range(T))
    assert s2.provenance(1, 0) is Provenance.USER and s2.provenance(1, 4) is Provenance.CORRECTED
    assert np.array_equal(s2.get(1, 4), disk_mask(3, 3))
    assert np.array_equal(s2.get(1, 6), disk_mask(23, 12))
    assert s2.confidence(1)[6] == pytest.approx(0.6)
    assert 4 not in s2.confidence(1)  # the corrected frame has no confidence
    # PNGs are 1-bit and readable by anyone
    from PIL import Image
    with Image.open(tmp_path / "masks" / "1" / "00006.png") as im:
        assert im.mode == "1"


def test_compaction_keeps_state(tmp_path, monkeypatch):
    import napari_vidseg.video.mask_store as ms
    monkeypatch.setattr(ms, "_COMPACT_EVERY", 3)
    s = MaskStore(tmp_path, H, W, T)
    for t in range(T):
        s.set(1, t, disk_mask(t + 5, 9), Provenance.PROPAGATED, 0.5)
    assert len((tmp_path / "index.journal").read_text().splitlines()) < 3
    snap = json.loads((tmp_path / "index.json").read_text())
    assert len(snap["entries"]) >= 6
    s2 = MaskStore(tmp_path, H, W, T)
    assert s2.frames(1) == list(range(T))


def test_crash_recovery(tmp_path):
    s = MaskStore(tmp_path, H, W, T)
    s.set(1, 0, disk_mask(10, 10), Provenance.USER)
    s.set(1, 1, disk_mask(11, 10), Provenance.PROPAGATED, 0.9)
    s.set(1, 2, disk_mask(12, 10), Provenance.PROPAGATED, 0.8)
    # killed after the index line but with the PNG gone (e.g. deleted by hand)
    (tmp_path / "masks" / "1" / "00002.png").unlink()
    # killed after the PNG was put in place but before its index line
    from PIL import Image
    Image.fromarray(disk_mask(15, 10)).save(tmp_path / "masks" / "1" / "00005.png")
    # killed while writing a PNG (tmp left over) and while appending a journal line
    (tmp_path / "masks" / "1" / ".00006.png.123.tmp").write_bytes(b"\x89PNG garbage")
    with open(tmp_path / "index.journal", "a") as f:
        f.write('{"op": "set", "obj": 1, "t": 7, "p": "us')
    s2 = MaskStore(tmp_path, H, W, T)
    assert s2.frames(1) == [0, 1, 5]
    assert s2.provenance(1, 0) is Provenance.USER
    assert s2.provenance(1, 5) is Provenance.PROPAGATED
    assert np.array_equal(s2.get(1, 5), disk_mask(15, 10))
    assert s2.confidence(1) == {1: pytest.approx(0.9)}
    assert not (tmp_path / "masks" / "1" / ".00006.png.123.tmp").exists()
    # and the recovered state is itself durable
    s3 = MaskStore(tmp_path, H, W, T)
    assert s3.frames(1) == [0, 1, 5]


def test_removed_object_stays_removed_after_interrupted_delete(tmp_path):
    s = MaskStore(tmp_path, H, W, T)
    s.set(3, 0, disk_mask(10, 10), Provenance.USER)
    s.remove_object(3)
    # a trash folder left by a kill during the delete is swept, not resurrected
    trash = tmp_path / "masks" / ".trash-3-999"
    trash.mkdir()
    from PIL import Image
    Image.fromarray(disk_mask(10, 10)).save(trash / "00000.png")
    s2 = MaskStore(tmp_path, H, W, T)
    assert s2.objects() == [] and not trash.exists()


def test_memory_bounded_cache(tmp_path):
    s = MaskStore(tmp_path, H, W, 60, cache_bytes=H * W * 10)
    for t in range(60):
        s.set(1, t, disk_mask(t % W, 10), Provenance.PROPAGATED)
    assert len(s._cache) <= 10
    for t in range(60):
        assert np.array_equal(s.get(1, t), disk_mask(t % W, 10))
    assert len(s._cache) <= 10
