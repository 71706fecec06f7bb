"""InteractivePredictor with a random-init network: the API's promises
(shapes, clamping of marked pixels, zoom-in box, input checks)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_vidseg.models.vidsegnet import VidSegNet  # noqa: E402
from napari_vidseg.segment.predictor import InteractivePredictor  # noqa: E402
from napari_vidseg.types import Click, InputError, Interactions, Stroke  # noqa: E402

H, W = 48, 64


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return VidSegNet(in_channels=6).eval()


def frame(h=H, w=W, cx=30, cy=20, r=10):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (220, 40, 40)
    return img


@pytest.mark.parametrize("use_crf", [False, True])
def test_shapes_and_clamped_clicks(net, use_crf):
    p = InteractivePredictor(net, use_crf=use_crf, input_size=64)
    p.set_image(frame())
    inter = Interactions([Click(30, 20, True), Click(5, 40, False)])
    out = p.predict(inter)
    assert out.mask.shape == (H, W) and out.mask.dtype == bool
    assert out.prob.shape == (H, W) and out.prob.dtype == np.float32
    assert np.isfinite(out.prob).all() and out.prob.min() >= 0 and out.prob.max() <= 1
    # Whatever the (untrained) network says, the marked pixels keep their label.
    assert out.mask[20, 30] and out.prob[20, 30] == 1.0
    assert not out.mask[40, 5] and out.prob[40, 5] == 0.0
    # Feeding the result back (the next click) keeps working and keeps both clamps.
    inter.clicks.append(Click(50, 10, False))
    out2 = p.predict(inter, prev_mask=out.mask)
    assert out2.mask[20, 30] and not out2.mask[40, 5] and not out2.mask[10, 50]


def test_strokes_are_clamped(net):
    p = InteractivePredictor(net, use_crf=False, input_size=64)
    p.set_image(frame())
    out = p.predict(Interactions([], [Stroke(((25, 20), (35, 20)), True, width=1),
                                      Stroke(((2, 2), (2, 30)), False, width=1)]))
    assert out.mask[20, 25:36].all()
    assert not out.mask[2:31, 2].any()


def test_zoom_in_box_contains_the_clicks_and_current_mask(net):
    h, w = 160, 200
    p = InteractivePredictor(net, use_crf=False, input_size=64)
    p.set_image(frame(h, w, cx=150, cy=120, r=8))
    prev = np.zeros((h, w), bool)
    prev[115:126, 145:156] = True
    clicks = [Click(150, 120, True), Click(158, 112, True)]
    out = p.predict(Interactions(clicks), prev_mask=prev)
    y0, y1, x0, x1 = out.box
    assert (y1 - y0) * (x1 - x0) < h * w  # a crop, not the whole frame
    for c in clicks:
        assert y0 <= c.y < y1 and x0 <= c.x < x1
    assert prev[:y0].sum() == prev[y1:].sum() == prev[:, :x0].sum() == prev[:, x1:].sum() == 0
    # Nothing is predicted outside the crop.
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = False
    assert not out.mask[outside].any()
    # Without zoom-in the network sees the whole frame.
    full = InteractivePredictor(net, use_crf=False, input_size=64, zoom_in=False)
    full.set_image(frame(h, w, cx=150, cy=120, r=8))
    assert full.predict(Interactions(clicks), prev_mask=prev).box == (0, h, 0, w)


def test_first_click_box_contains_the_click(net):
    p = InteractivePredictor(net, use_crf=False, input_size=64)
    p.set_image(frame())
    y0, y1, x0, x1 = p.predict(Interactions([Click(60, 45, True)])).box
    assert y0 <= 45 < y1 and x0 <= 60 < x1


def test_prev_mask_of_wrong_shape_is_an_input_error(net):
    p = InteractivePredictor(net, use_crf=False, input_size=64)
    p.set_image(frame())
    with pytest.raises(InputError, match="shape"):
        p.predict(Interactions([Click(30, 20)]), prev_mask=np.zeros((W, H), bool))


@pytest.mark.parametrize("xy", [(W, 10), (-1, 10), (10, H + 3), (10.0, -0.6)])
def test_click_outside_frame_is_an_input_error(net, xy):
    p = InteractivePredictor(net, use_crf=False, input_size=64)
    p.set_image(frame())
    with pytest.raises(InputError, match="outside"):
        p.predict(Interactions([Click(*xy)]))


def test_bad_frame_and_missing_frame(net):
    p = InteractivePredictor(net, use_crf=False, input_size=64)
    with pytest.raises(RuntimeError):
        p.predict(Interactions([Click(1, 1)]))
    with pytest.raises(InputError):
        p.set_image(np.zeros((4, 5, 7), np.uint8))


@pytest.mark.parametrize("use_crf", [False, True])
def test_cached_crop_features_give_the_same_answer_as_a_fresh_predictor(net, use_crf):
    """The second click reuses the first click's crop, its encoder features and
    (with the CRF) its pairwise set-up; the result must equal what a predictor
    without any cache computes."""
    h, w = 160, 200
    img = frame(h, w, cx=100, cy=80, r=30)
    warm = InteractivePredictor(net, use_crf=use_crf, input_size=64)
    warm.set_image(img)
    prev = np.zeros((h, w), bool)
    prev[60:100, 80:120] = True
    first = Interactions([Click(100, 80, True)])
    box1 = warm.predict(first, prev_mask=prev).box
    crf_after_first, crf_box1 = warm._crf_cache.crf, warm._crf_box
    assert (crf_after_first is not None) == use_crf
    second = Interactions([Click(100, 80, True), Click(105, 75, False)])
    out = warm.predict(second, prev_mask=prev)
    assert out.box == box1 and warm._early_key[0] == box1  # the crop and its features were kept
    assert warm._crf_cache.crf is crf_after_first
    cold = InteractivePredictor(net, use_crf=use_crf, input_size=64)
    cold.set_image(img)
    cold._box, cold._crf_box = box1, crf_box1  # same crop and CRF region, nothing cached
    ref = cold.predict(second, prev_mask=prev)
    np.testing.assert_allclose(out.prob, ref.prob, atol=1e-5)
    # A new frame drops the cache.
    warm.set_image(img[::-1].copy())
    assert warm._early_key is None and warm._box is None and warm._crf_cache.crf is None


def test_crf_refines_only_around_the_object_at_the_crops_scale(net, monkeypatch):
    """The crop's wide margin is context for the network; the CRF works only
    where the boundary can be, keeps that region for the next click, and runs
    at the scale that brings the whole crop to CRFParams.max_side."""
    from napari_vidseg.segment import crf as crf_mod
    from napari_vidseg.segment.predictor import _area, _inside

    h, w = 240, 320
    img = frame(h, w, cx=160, cy=120, r=20)
    p = InteractivePredictor(net, use_crf=True, input_size=64, crf_params=crf_mod.CRFParams(max_side=40))
    p.set_image(img)
    yy, xx = np.mgrid[:h, :w]
    disc = (xx - 160) ** 2 + (yy - 120) ** 2 <= 22 ** 2
    net_prob = np.where(disc, 0.9, 0.01).astype(np.float32)
    monkeypatch.setattr(p, "_net_prob", lambda box, inter, prev: net_prob[box[0]:box[1], box[2]:box[3]].copy())
    seen, real_refine = [], crf_mod.refine

    def spy(image, prob, params, cache=None, key=None):
        seen.append(params.max_side)  # the scaled CRF calls refine again, with max_side None
        return real_refine(image, prob, params, cache, key)

    monkeypatch.setattr(crf_mod, "refine", spy)
    out = p.predict(Interactions([Click(160, 120, True)]), prev_mask=disc)
    region, box = p._crf_box, out.box
    assert _inside(region, box) and _area(region) < 0.6 * _area(box)
    assert _inside((98, 143, 138, 183), region)  # the disc's bounding box
    # Outside the region, inside the crop: the network's answer, untouched.
    untouched = np.zeros((h, w), bool)
    untouched[box[0]:box[1], box[2]:box[3]] = True
    untouched[region[0]:region[1], region[2]:region[3]] = False
    assert untouched.any() and np.all(out.prob[untouched] == np.float32(0.01))
    assert out.mask[120, 160] and not out.mask[region[0] + 1, region[2] + 1]
    # The crop's scale: max_side 40 for the crop means less for the region.
    crop_side = max(box[1] - box[0], box[3] - box[2])
    region_side = max(region[1] - region[0], region[3] - region[2])
    assert seen[0] == round(region_side * 40 / crop_side) < 40
    # The next click on the same object keeps the region and its CRF set-up.
    built = p._crf_cache.crf
    p.predict(Interactions([Click(160, 120, True), Click(150, 110, True)]), prev_mask=out.mask)
    assert p._crf_box == region and p._crf_cache.crf is built


@pytest.mark.parametrize("max_side", [None, 48])
def test_crf_pairwise_cache_gives_the_fresh_answer_for_every_unary(max_side):
    from napari_vidseg.segment.crf import CRFParams, PairwiseCache, refine

    img = frame(80, 100, cx=50, cy=40, r=20)
    params = CRFParams(max_side=max_side)
    rng = np.random.default_rng(1)
    probs = [rng.random((80, 100)).astype(np.float32) for _ in range(3)]
    cache = PairwiseCache()
    a = refine(img, probs[0], params, cache, key="crop A")
    built = cache.crf
    b = refine(img, probs[1], params, cache, key="crop A")
    assert cache.crf is built  # set-up re-used
    assert np.array_equal(a, refine(img, probs[0], params))
    assert np.array_equal(b, refine(img, probs[1], params))
    assert not np.array_equal(a, b)
    other = img[::-1].copy()
    c = refine(other, probs[2], params, cache, key="crop B")
    assert cache.crf is not built  # a new key, a new image: built again
    assert np.array_equal(c, refine(other, probs[2], params))


def test_crf_on_a_large_crop_runs_scaled_and_follows_the_image_edge():
    from napari_vidseg.segment.crf import CRFParams, refine

    h, w = 300, 500
    img = np.full((h, w, 3), 30, np.uint8)
    img[:, 260:] = 220  # a sharp vertical edge at x = 260
    prob = np.full((h, w), 0.05, np.float32)
    prob[:, 230:] = 0.6  # the network's unsure guess starts 30 px too early
    prob[:, 290:] = 0.95
    out = refine(img, prob, CRFParams(max_side=128))
    assert out.shape == (h, w) and out.dtype == np.float32
    mid = out[h // 2]
    assert (mid[:255] < 0.5).all() and (mid[265:] > 0.5).all()


def test_channels_last_input_gives_the_logits_of_the_plain_layout(net):
    """The inference copy runs channels_last and copies the aux channels out of
    the strided slice (for speed); the logits must not change."""
    torch.manual_seed(1)
    x = torch.rand(1, 6, 64, 96)
    with torch.inference_mode():
        plain = net(x)
        cl = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        net.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(cl, plain, atol=1e-4, rtol=1e-4)


def test_mirror_averages_the_logits_of_the_frame_and_its_mirror_image(net):
    """mirror=True is the mean of the logits of the plain prediction on the frame
    and on its left-right mirror image (with mirrored marks), flipped back."""
    img = frame()
    prev = np.zeros((H, W), bool)
    prev[12:28, 22:38] = True
    clicks = [Click(30, 20, True), Click(50, 40, False)]
    mirrored = Interactions([Click(W - 1 - c.x, c.y, c.positive) for c in clicks])

    def prob(image, inter, mask, mirror):
        p = InteractivePredictor(net, use_crf=False, input_size=64, zoom_in=False, mirror=mirror)
        p.set_image(image)
        return p.predict(inter, prev_mask=mask).prob.astype(np.float64)

    both = prob(img, Interactions(list(clicks)), prev, True)
    a = prob(img, Interactions(list(clicks)), prev, False)
    b = prob(img[:, ::-1].copy(), mirrored, prev[:, ::-1].copy(), False)[:, ::-1]

    def logit(p):
        return np.log(p / (1 - p))

    free = (a > 0) & (a < 1)  # marked pixels are clamped to their label in every variant
    expected = 1 / (1 + np.exp(-(logit(a[free]) + logit(b[free])) / 2))
    np.testing.assert_allclose(both[free], expected, atol=1e-5)
    assert np.abs(a[free] - b[free]).max() > 1e-3  # the random network is not symmetric: the test can tell


def test_bf16_prediction_is_close_to_the_float_one_and_really_bf16(net):
    """bf16=True runs the network in bfloat16 autocast (propagation's second
    opinion, video/refine.py): its probabilities stay close to float32's but
    are not the same numbers, so the autocast really ran."""
    img = frame()
    prev = np.zeros((H, W), bool)
    prev[12:28, 22:38] = True
    inter = Interactions([Click(30, 20, True)])

    def prob(bf16):
        p = InteractivePredictor(net, use_crf=False, input_size=64, bf16=bf16)
        p.set_image(img)
        return p.predict(inter, prev_mask=prev).prob

    f32, b16 = prob(False), prob(True)
    assert f32.dtype == b16.dtype == np.float32
    assert np.abs(f32 - b16).max() < 0.05
    assert np.abs(f32 - b16).max() > 0
