"""Clicks and strokes -> channels (interactions/encoding.py)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_vidseg.interactions.encoding import (
    click_channel, encode, marked_pixels, stroke_channel, stroke_mask)
from napari_vidseg.types import Click, InputError, Interactions, Stroke, StrokeKind

H, W = 48, 64


def test_click_channel_peaks_at_clicks_with_their_sign():
    ch = click_channel([Click(10, 20, True), Click(50, 30, False)], H, W, sigma=3)
    assert ch.shape == (H, W) and ch.dtype == np.float32
    assert ch[20, 10] == pytest.approx(1.0)
    assert ch[30, 50] == pytest.approx(-1.0)
    assert np.unravel_index(np.argmax(ch), ch.shape) == (20, 10)
    assert np.unravel_index(np.argmin(ch), ch.shape) == (30, 50)
    # A Gaussian: falls off with distance, nothing far from both clicks.
    assert 0 < ch[20, 13] < ch[20, 11] < 1
    assert ch[0, 63] == 0 and ch[47, 0] == 0


def test_click_sums_clip_to_unit_range():
    two = click_channel([Click(20, 20, True), Click(21, 20, True)], H, W, sigma=4)
    assert two.max() == pytest.approx(1.0)  # 1 + ~0.97 clipped
    assert two[20, 20] == pytest.approx(1.0) and two[20, 21] == pytest.approx(1.0)
    cancel = click_channel([Click(20, 20, True), Click(20, 20, False)], H, W, sigma=4)
    assert np.abs(cancel).max() == pytest.approx(0.0, abs=1e-6)


def test_path_stroke_marks_its_drawn_pixels():
    s = Stroke(((5, 10), (40, 10)), positive=True, kind=StrokeKind.PATH, width=1)
    ch = stroke_channel([s], H, W, sigma=3)
    assert np.allclose(ch[10, 5:41], 1.0, atol=1e-5)
    assert ch[30, 20] == 0  # far from the line
    neg = stroke_channel([Stroke(s.points, positive=False)], H, W, sigma=3)
    assert np.allclose(neg[10, 5:41], -1.0, atol=1e-5)
    m = stroke_mask(s, H, W)
    assert m[10, 5:41].all() and m.sum() == 36


def test_region_stroke_fills_its_inside():
    square = ((10, 10), (30, 10), (30, 30), (10, 30))
    ch = stroke_channel([Stroke(square, positive=False, kind=StrokeKind.REGION)], H, W)
    assert np.all(ch[12:29, 12:29] == -1.0)
    assert ch[5, 50] == 0
    m = stroke_mask(Stroke(square, kind=StrokeKind.REGION), H, W)
    assert m[11:30, 11:30].all() and not m[40:, 40:].any()


def test_encode_stacks_click_and_stroke_channels():
    inter = Interactions([Click(3, 4)], [Stroke(((30, 30), (40, 30)), positive=False)])
    x = encode(inter, H, W)
    assert x.shape == (2, H, W) and x.dtype == np.float32
    assert x[0, 4, 3] == pytest.approx(1.0) and x[1, 4, 3] == 0
    assert x[1, 30, 35] == pytest.approx(-1.0) and x[0, 30, 35] == 0


def test_marked_pixels():
    inter = Interactions([Click(10, 10, True), Click(50, 40, False)],
                         [Stroke(((20, 30), (30, 30)), positive=True, width=1)])
    pos, neg = marked_pixels(inter, H, W, radius=2)
    assert pos[10, 10] and pos[10, 12] and not pos[10, 13]
    assert neg[40, 50] and not pos[40, 50]
    assert pos[30, 20:31].all()
    assert not (pos & neg).any()
    # Overlapping marks of both signs: neither is sure.
    pos2, neg2 = marked_pixels(Interactions([Click(10, 10, True), Click(10, 10, False)]), H, W)
    assert not pos2.any() and not neg2.any()
    # A click outside the frame marks nothing.
    pos3, neg3 = marked_pixels(Interactions([Click(-50, 10, True)]), H, W)
    assert not pos3.any() and not neg3.any()



@pytest.mark.parametrize("x,y,radius", [(0, 0, 2), (63.4, 47.4, 2), (-0.4, 20.6, 2.5), (31.7, 0.2, 4), (5.5, 5.5, 0.5)])
def test_click_disk_is_every_pixel_within_the_radius(x, y, radius):
    """The disk is computed in a window around the click; it must be exactly
    the pixels within `radius` of it, at the frame's edges too."""
    pos, _ = marked_pixels(Interactions([Click(x, y, True)]), H, W, radius=radius)
    yy, xx = np.mgrid[:H, :W]
    np.testing.assert_array_equal(pos, (xx - x) ** 2 + (yy - y) ** 2 <= radius * radius)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# Clicks: any finite number (near the frame most of the time). Stroke vertices
# stay within a few frame sizes: a stroke is drawn pixel by pixel, so its cost
# grows with its length.
coords = st.one_of(st.floats(-2 * W, 2 * W, allow_nan=False), finite)
near = st.floats(-3 * W, 3 * W, allow_nan=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clicks=st.lists(st.tuples(coords, coords, st.booleans()), max_size=6),
       strokes=st.lists(st.tuples(st.lists(st.tuples(near, near), min_size=3, max_size=5),
                                  st.booleans(), st.sampled_from(list(StrokeKind))), max_size=2),
       h=st.integers(1, 40), w=st.integers(1, 40))
def test_encoding_any_finite_interactions(clicks, strokes, h, w):
    inter = Interactions([Click(x, y, p) for x, y, p in clicks],
                         [Stroke(tuple(pts), p, kind) for pts, p, kind in strokes])
    x = encode(inter, h, w)
    assert x.shape == (2, h, w)
    assert np.isfinite(x).all()
    assert x.min() >= -1.0 and x.max() <= 1.0
    pos, neg = marked_pixels(inter, h, w)
    assert pos.shape == neg.shape == (h, w) and not (pos & neg).any()


@pytest.mark.parametrize("xy", [(float("nan"), 3.0), (3.0, float("nan")), (float("inf"), 1.0)])
def test_non_finite_coordinates_raise_input_error(xy):
    with pytest.raises(InputError):
        Click(*xy)
    with pytest.raises(InputError):
        Stroke(((0.0, 0.0), xy))
