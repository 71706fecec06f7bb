"""The click robot (interactions/robot.py)."""
import numpy as np

from napari_vidseg.interactions.robot import iou, next_click

H, W = 60, 80


def disk(cx, cy, r, h=H, w=W):
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def test_first_click_is_positive_at_the_objects_centre():
    gt = disk(30, 25, 12)
    c = next_click(np.zeros_like(gt), gt)
    assert c.positive
    assert gt[int(c.y), int(c.x)]
    assert abs(c.x - 30) <= 1 and abs(c.y - 25) <= 1  # interior-most point


def test_positive_click_in_missed_part():
    gt = disk(20, 30, 10) | disk(60, 30, 12)
    pred = disk(20, 30, 10)  # the right object is missed
    c = next_click(pred, gt)
    assert c.positive and disk(60, 30, 12)[int(c.y), int(c.x)]
    assert abs(c.x - 60) <= 1 and abs(c.y - 30) <= 1


def test_negative_click_in_false_positive_blob():
    gt = disk(20, 30, 8)
    blob = disk(60, 30, 12)
    pred = gt | blob
    pred[30, 27] = False  # a tiny miss: smaller than the false alarm
    c = next_click(pred, gt)
    assert not c.positive
    assert blob[int(c.y), int(c.x)] and not gt[int(c.y), int(c.x)]


def test_none_when_perfect():
    gt = disk(40, 30, 15)
    assert next_click(gt.copy(), gt) is None
    assert next_click(np.zeros((H, W), bool), np.zeros((H, W), bool)) is None


def test_ignored_pixels_are_never_clicked():
    gt = disk(40, 30, 20)
    ignore = np.zeros_like(gt)
    ignore[:, :40] = True  # the left half is "uncertain"
    pred = np.zeros_like(gt)  # everything missed: the biggest error is at the centre, on the ignore edge
    for _ in range(5):
        c = next_click(pred, gt, ignore)
        assert c is not None and not ignore[int(c.y), int(c.x)]
        pred |= disk(c.x, c.y, 6)
    # Errors only in ignored pixels count as perfect.
    assert next_click(gt & ~ignore, gt, ignore) is None


def test_iou():
    a = np.zeros((10, 10), bool)
    a[:, :5] = True
    b = np.zeros((10, 10), bool)
    b[:, 5:] = True
    assert iou(a, a) == 1.0 and iou(a, b) == 0.0
    assert iou(a, a | b) == 0.5
    assert iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert iou(a, a | b, ignore=b) == 1.0
