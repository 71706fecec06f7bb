"""`napari-vidseg eval-interactive` on a tiny synthetic data set, and the metrics."""
import json

import numpy as np
import pytest
from PIL import Image

from napari_vidseg.cli import main
from napari_vidseg.eval.interactive import list_dataset, load_sample, perturb_mask
from napari_vidseg.eval.metrics import boundary, boundary_f, iou, mean_curve, noc, noc_from_curve
from napari_vidseg.types import InputError

REQUIRED = {"noc85", "noc90", "miou_at_clicks", "n_images", "median_ms_per_click", "method",
            "median_ms_per_click_854x480"}
H, W = 60, 80


def disk(cx, cy, r, h=H, w=W):
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.fixture
def dataset(tmp_path):
    """3 images: a red disk on a noisy blue-green background; masks with a
    1-pixel ignored (128) band on the disk's edge, like GrabCut's."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i, (cx, cy, r) in enumerate([(40, 30, 14), (30, 25, 11), (50, 32, 16)]):
        img = np.empty((H, W, 3), np.uint8)
        img[..., 0] = rng.integers(0, 50, (H, W))
        img[..., 1] = rng.integers(80, 140, (H, W))
        img[..., 2] = rng.integers(120, 200, (H, W))
        obj = disk(cx, cy, r)
        img[obj] = rng.integers(190, 240, (obj.sum(), 3)) * np.array([1, 0.2, 0.2])
        mask = np.where(obj, 255, 0).astype(np.uint8)
        mask[disk(cx, cy, r + 1) & ~disk(cx, cy, r - 1)] = 128
        Image.fromarray(img).save(root / "images" / f"img{i}.png")  # lossless
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")
    (root / "images" / "orphan.png").write_bytes((root / "images" / "img0.png").read_bytes())
    return root


def last_json(out: str) -> dict:
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return json.loads(lines[-1])


def test_dataset_listing_and_loading(dataset):
    items = list_dataset(dataset)
    assert [s for s, _, _ in items] == ["img0", "img1", "img2"]  # the orphan has no mask
    assert len(list_dataset(dataset, limit=2)) == 2
    s = load_sample(*items[0])
    assert s.image.shape == (H, W, 3) and s.gt.shape == (H, W)
    assert s.gt[30, 40] and not s.gt[0, 0] and s.ignore.any() and not (s.ignore & s.gt).any()


def test_grabcut_reaches_85_on_an_easy_disk(dataset, tmp_path, capsys):
    out_json = tmp_path / "gc.json"
    rc = main(["eval-interactive", str(dataset), "--method", "grabcut", "--max-clicks", "4",
               "--timing-clicks", "0", "--json-out", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    res = last_json(out)
    assert REQUIRED <= set(res)
    assert res["method"] == "grabcut" and res["n_images"] == 3 and res["mode"] == "clicks"
    assert len(res["miou_at_clicks"]) == 5 and res["miou_at_clicks"][0] == 0.0
    assert 1 <= res["noc85"] <= 3
    assert res["median_ms_per_click"] > 0
    assert len([ln for ln in out.splitlines() if "grabcut noc85=" in ln]) == 3
    saved = json.loads(out_json.read_text())
    for img in saved["per_image"]["grabcut"]:
        assert max(img["ious"][1:4]) > 0.85, img


@pytest.fixture
def checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    from napari_vidseg.models.vidsegnet import VidSegNet

    torch.manual_seed(0)
    path = tmp_path / "last.pt"  # the training checkpoint format
    torch.save({"model": VidSegNet(6).state_dict(), "step": 0}, path)
    return path


def test_ours_with_a_checkpoint(dataset, checkpoint, capsys):
    rc = main(["eval-interactive", str(dataset), "--method", "ours", "--weights", str(checkpoint),
               "--max-clicks", "2", "--size", "64", "--timing-clicks", "1", "--limit", "2",
               "--crf-max-side", "200", "--crf-iterations", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    res = last_json(out)
    assert REQUIRED <= set(res)
    assert res["method"] == "ours" and res["n_images"] == 2 and res["crf"] is True
    assert res["crf_params"]["max_side"] == 200 and res["crf_params"]["iterations"] == 3
    assert len(res["miou_at_clicks"]) == 3 and all(0 <= v <= 1 for v in res["miou_at_clicks"])
    assert 1 <= res["noc90"] <= 2
    assert res["median_ms_per_click"] > 0 and res["median_ms_per_click_854x480"] > 0
    assert set(res["methods"]) == {"ours"}


def test_refine_mode_both_methods(dataset, checkpoint, capsys):
    rc = main(["eval-interactive", str(dataset), "--method", "ours", "--method", "grabcut",
               "--weights", str(checkpoint), "--no-crf", "--refine", "--max-clicks", "2",
               "--size", "64", "--timing-clicks", "0"])
    out = capsys.readouterr().out
    assert rc == 0
    res = last_json(out)
    assert res["mode"] == "refine" and res["method"] == "ours" and res["crf"] is False
    assert set(res["methods"]) == {"ours", "grabcut"}
    ours, gc = res["methods"]["ours"], res["methods"]["grabcut"]
    # Both start from the same imperfect mask.
    assert ours["miou_at_clicks"][0] == gc["miou_at_clicks"][0]
    assert 0.2 < ours["miou_at_clicks"][0] < 0.99
    assert set(ours["miou_refine"]) == {"0", "1", "2"}
    assert 0 <= gc["first_click_improved"] <= 1


def test_bad_dataset_and_method(tmp_path, dataset, capsys):
    assert main(["eval-interactive", str(tmp_path / "nope"), "--method", "grabcut"]) == 2
    assert "images/" in capsys.readouterr().err
    assert main(["eval-interactive", str(dataset), "--method", "magic"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["eval-interactive", str(dataset), "--crf-iterations", "0"]) == 2
    assert "--crf-iterations" in capsys.readouterr().err


def test_perturbed_start_masks_are_deterministic_and_imperfect():
    gt = disk(40, 30, 18)
    kinds = set()
    for name in [f"im{i}" for i in range(12)]:
        a, kind = perturb_mask(gt, name, seed=0)
        b, _ = perturb_mask(gt, name, seed=0)
        assert np.array_equal(a, b)
        assert 0.3 < iou(a, gt) < 0.97, (name, kind)
        kinds.add(kind)
    assert kinds == {"erode", "dilate", "shift", "cut"}
    assert any(not np.array_equal(perturb_mask(gt, "im0", s)[0], perturb_mask(gt, "im0", 0)[0])
               for s in range(1, 5))


# -- metrics -----------------------------------------------------------------
def test_noc_ritm_convention():
    ious = [0.5, 0.86, 0.91, 0.95]
    assert noc(ious, 0.85) == 2
    assert noc(ious, 0.90) == 3
    assert noc(ious, 0.99, max_clicks=20) == 20  # never reached: max_clicks
    assert noc([0.95], 0.9) == 1
    assert noc([0.1, 0.2, 0.95], 0.9, max_clicks=2) == 2  # reached too late
    assert noc_from_curve([0.0, 0.5, 0.9], 0.9) == 2
    assert noc_from_curve([0.92, 0.5], 0.9) == 0  # refinement start already good


def test_mean_curve_pads_with_last_value():
    assert mean_curve([[0.0, 1.0], [0.0, 0.5, 0.7]]) == pytest.approx([0.0, 0.75, 0.85])


def _brute_f(pred, gt, tol):
    """Reference: boundaries by an explicit loop over the official DAVIS rule (a pixel that differs
    from its east, south or south-east neighbour, where that neighbour exists; the bottom-right
    corner never), matching by all pairwise distances."""
    def bnd(m):
        h, w = m.shape
        out = np.zeros_like(m)
        for y in range(h):
            for x in range(w):
                if (y, x) == (h - 1, w - 1):
                    continue
                for dy, dx in ((0, 1), (1, 0), (1, 1)):
                    yy, xx = y + dy, x + dx
                    if y == h - 1 and dy:  # last row: the east neighbour only
                        continue
                    if x == w - 1 and dx:  # last column: the south neighbour only
                        continue
                    if m[yy, xx] != m[y, x]:
                        out[y, x] = True
        return out

    bp, bg = np.argwhere(bnd(pred)), np.argwhere(bnd(gt))
    d = np.sqrt(((bp[:, None, :] - bg[None, :, :]) ** 2).sum(-1))
    p = (d.min(1) <= tol).mean()
    r = (d.min(0) <= tol).mean()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_boundary_f_known_cases():
    gt = np.zeros((100, 100), bool)
    gt[10:30, 10:30] = True
    # Official rule: 20 object pixels on the right column, 19 more on the bottom row, and the
    # background pixels just west (20) and north (21, the corner included) of the square.
    assert boundary(gt).sum() == 80
    assert boundary_f(gt, gt) == 1.0
    # A far-away extra square: recall 1, precision 1/2 -> F = 2/3.
    extra = gt.copy()
    extra[60:80, 60:80] = True
    assert boundary_f(extra, gt) == pytest.approx(2 / 3)
    # Tolerance ceil(0.008 * diagonal) = 2 px: a 2-px shift is a perfect boundary, a 3-px one is not.
    assert boundary_f(np.roll(gt, 2, axis=1), gt) == 1.0
    assert boundary_f(np.roll(gt, 3, axis=1), gt) < 1.0
    # Empty masks.
    empty = np.zeros_like(gt)
    assert boundary_f(empty, empty) == 1.0 and boundary_f(empty, gt) == 0.0 and boundary_f(gt, empty) == 0.0
    # Ignored truth boundary is not counted.
    ign = np.zeros_like(gt)
    ign[60:80, 60:80] = True  # the square, but not the line just north and west of it
    assert boundary_f(gt, extra, ignore=ign) < 1.0
    ign[59:80, 59:80] = True  # the whole of its boundary (official rule: it runs outside there)
    assert boundary_f(gt, extra, ignore=ign) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boundary_f_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    gt = disk(20, 15, 9, 32, 40)
    pred = disk(20 + rng.integers(-4, 5), 15 + rng.integers(-4, 5), 9 + rng.integers(-3, 4), 32, 40)
    pred[rng.integers(0, 32, 30), rng.integers(0, 40, 30)] = True  # speckle
    for tol in (0, 1, 3):
        assert boundary_f(pred, gt, tolerance=tol) == pytest.approx(_brute_f(pred, gt, tol))

