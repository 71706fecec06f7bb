"""CTC measures on hand-made label images, with values worked out by hand."""
import numpy as np
import pytest

from napari_vidseg.eval.ctc_metrics import identity_hit, lineage, seg_scores, track_iou, track_masks


def test_seg_by_hand():
    gt = np.zeros((6, 8), int)
    gt[0:2, 0:4] = 1  # 8 px
    gt[3:6, 0:2] = 2  # 6 px
    gt[3:5, 5:8] = 3  # 6 px
    pred = np.zeros_like(gt)
    pred[0:2, 0:3] = 7  # covers 6 of cell 1's 8 px (> half), no extra: J = 6/8
    pred[3:6, 0:1] = 4  # covers 3 of cell 2's 6 px: not more than half -> 0
    pred[3:5, 4:8] = 9  # covers all 6 of cell 3 plus 2 more: J = 6/8
    s = seg_scores(pred, gt)
    assert s == {1: pytest.approx(0.75), 2: 0.0, 3: pytest.approx(0.75)}
    assert seg_scores(gt, gt) == {1: 1.0, 2: 1.0, 3: 1.0}
    assert seg_scores(np.zeros_like(gt), gt) == {1: 0.0, 2: 0.0, 3: 0.0}
    # One predicted object over two cells: it covers more than half of only the smaller one.
    merged = np.zeros_like(gt)
    merged[3:6, 0:2] = 5
    merged[0:2, 0:2] = 5  # half of cell 1 exactly: not more than half
    assert seg_scores(merged, gt) == {1: 0.0, 2: pytest.approx(6 / 10), 3: 0.0}


def test_lineage_follows_divisions():
    tracks = {1: (0, 5, 0), 2: (6, 9, 1), 3: (6, 9, 1), 4: (10, 12, 2), 5: (0, 12, 0)}
    lin = lineage(tracks)
    assert lin[1] == {1, 2, 3, 4} and lin[2] == {2, 4} and lin[5] == {5} and lin[4] == {4}


def test_track_masks_give_seg_cells_to_the_marker_inside():
    seg = np.zeros((5, 9), int)
    seg[0:3, 0:3] = 10
    seg[0:3, 5:9] = 20
    seg[4, 4] = 30  # no marker: left out
    tra = np.zeros_like(seg)
    tra[1, 1] = 2  # small markers, TRA labels differ from SEG ones
    tra[1, 6:8] = 7
    tra[0, 8] = 2  # a stray pixel of track 2 inside cell 20: track 7 still covers more of it
    m = track_masks(seg, tra)
    assert sorted(m) == [2, 7]
    assert np.array_equal(m[2], seg == 10) and np.array_equal(m[7], seg == 20)


def test_track_iou_and_identity_by_hand():
    pred = np.zeros((4, 4), int)
    pred[0:2, 0:2] = 3
    truth = np.zeros((4, 4), bool)
    truth[0:2, 1:3] = True
    assert track_iou(pred, 3, truth) == pytest.approx(2 / 6)
    assert track_iou(pred, 5, np.zeros_like(truth)) == 1.0  # both empty
    assert track_iou(pred, 3, np.zeros_like(truth)) == 0.0  # the cell left, the object did not
    marker = np.zeros((4, 4), bool)
    marker[1, 0:3] = True  # 3 px, 2 of them in object 3
    assert identity_hit(pred, 3, marker) and not identity_hit(pred, 4, marker)
    marker[1, 3] = True  # 2 of 4: not more than half
    assert not identity_hit(pred, 3, marker)
    assert not identity_hit(pred, 3, np.zeros_like(marker))
