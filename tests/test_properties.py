"""Property-based tests (hypothesis) for the video reader and the mask store.

The interaction encoding's properties live in tests/test_encoding.py; here:
- VideoSource on random frame folders (any size 1..40, 1..8 frames, random
  pixels): PNG is lossless, so every frame reads back exactly, and frames(a, b)
  is the stack of frame(t).
- MaskStore: whatever mask is stored (any shape content, any provenance) comes
  back identical, in memory and after re-opening the folder.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_vidseg.types import Provenance

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def frame_stacks(draw):
    """(T, H, W, 3) uint8 with random sizes and content; 'mode' picks how the PNGs are stored."""
    t = draw(st.integers(1, 8))
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["noise", "flat", "extremes"]))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        frames = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    elif kind == "flat":  # one colour per frame: compresses to almost nothing
        frames = np.broadcast_to(rng.integers(0, 256, (t, 1, 1, 3), dtype=np.uint8), (t, h, w, 3)).copy()
    else:  # only 0 and 255: the edges of the value range
        frames = (rng.integers(0, 2, (t, h, w, 3), dtype=np.uint8) * 255)
    return frames


@SETTINGS
@given(frames=frame_stacks(), data=st.data())
def test_folder_reader_returns_exact_pixels(frames, data):
    from PIL import Image

    from napari_vidseg.io.video import VideoSource

    n, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory() as d:
        for t in range(n):
            Image.fromarray(frames[t]).save(Path(d) / f"{t:05d}.png")
        chunk = data.draw(st.integers(1, 5), label="chunk_frames")
        src = VideoSource.open(d, chunk_frames=chunk)
        assert (src.n_frames, src.height, src.width) == (n, h, w)
        assert tuple(src.shape) == (n, h, w, 3)
        # random access in a random order: each frame is exactly what was saved
        order = data.draw(st.permutations(range(n)), label="order")
        for t in order:
            got = src.frame(t)
            assert got.dtype == np.uint8 and got.shape == (h, w, 3)
            assert np.array_equal(got, frames[t]), f"frame {t}"
        # any range: frames(a, b) == stacking frame(t)
        a = data.draw(st.integers(0, n - 1), label="start")
        b = data.draw(st.integers(a + 1, n), label="stop")
        block = src.frames(a, b)
        assert np.array_equal(block, np.stack([src.frame(t) for t in range(a, b)]))
        assert np.array_equal(block, frames[a:b])
        # sequential chunks cover the video exactly once, in order
        seen = np.concatenate([blk for _, blk in src.iter_chunks()])
        assert np.array_equal(seen, frames)


@st.composite
def mask_edits(draw):
    h = draw(st.integers(1, 30))
    w = draw(st.integers(1, 30))
    n = draw(st.integers(1, 6))
    k = draw(st.integers(1, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    edits = []
    for _ in range(k):
        obj = int(rng.integers(1, 4))
        t = int(rng.integers(0, n))
        density = rng.random()
        mask = rng.random((h, w)) < density  # all-false and all-true included at the ends
        prov = list(Provenance)[int(rng.integers(0, len(Provenance)))]
        conf = None if prov is not Provenance.PROPAGATED else float(rng.random())
        edits.append((obj, t, mask, prov, conf))
    return h, w, n, edits


@SETTINGS
@given(case=mask_edits())
def test_mask_store_round_trip(case):
    from napari_vidseg.video.mask_store import MaskStore

    h, w, n, edits = case
    expected: dict[tuple[int, int], tuple[np.ndarray, Provenance, float | None]] = {}
    with tempfile.TemporaryDirectory() as d:
        for root in (None, Path(d) / "masks"):
            store = MaskStore(root, h, w, n)
            for obj, t, mask, prov, conf in edits:
                store.set(obj, t, mask, prov, conf)
                expected[(obj, t)] = (mask, prov, conf)
            stores = [store] if root is None else [store, MaskStore(root, h, w, n)]  # and re-opened from disk
            for s in stores:
                for (obj, t), (mask, prov, conf) in expected.items():
                    got = s.get(obj, t)
                    assert got is not None and got.dtype == bool and got.shape == (h, w)
                    assert np.array_equal(got, mask), (obj, t)
                    assert s.provenance(obj, t) is prov
                    if conf is not None:
                        assert abs(s.confidence(obj)[t] - conf) < 1e-3
                for obj in {o for o, _ in expected}:
                    assert s.frames(obj) == sorted(t for o, t in expected if o == obj)
                    assert sorted(s.annotated(obj)) == sorted(
                        t for (o, t), (_, p, _) in expected.items() if o == obj and p is not Provenance.PROPAGATED)
                # the label image: the highest object id that covers a pixel wins
                for t in range(n):
                    lab = s.labels(t)
                    want = np.zeros((h, w), np.uint16)
                    for obj in sorted({o for o, _ in expected}):
                        if (obj, t) in expected:
                            want[expected[(obj, t)][0]] = obj
                    assert np.array_equal(lab, want), t
            expected.clear()
