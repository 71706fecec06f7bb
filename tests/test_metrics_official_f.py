"""DAVIS F exactly as the official code defines it (issue 29), checked on masks small enough
to work out by hand."""
import numpy as np
import pytest

from napari_vidseg.eval.metrics import boundary, boundary_f


def _mask(rows):
    return np.array([[c == "#" for c in r] for r in rows], bool)


def test_single_pixel_boundary_by_hand():
    m = _mask(["...",
               ".#.",
               "..."])
    # (1,1) differs from its east neighbour; (0,0) from its south-east one; (0,1) from its south one;
    # (1,0) from its east one. Nothing else differs from its E, S or SE neighbour.
    assert boundary(m).tolist() == _mask(["##.",
                                          "##.",
                                          "..."]).tolist()


def test_frame_edges_by_hand():
    # An object touching the right and bottom edges: on the last row only the east neighbour
    # counts, on the last column only the south one, and the corner (2, 2) never.
    m = _mask(["...",
               "..#",
               ".##"])
    assert boundary(m).tolist() == _mask([".##",
                                          "##.",
                                          "#.."]).tolist()
    # A full frame has no boundary at all (the edge of the frame is not one).
    assert not boundary(np.ones((4, 5), bool)).any()


def test_vertical_line_two_pixels_thick_boundary():
    # A one-pixel-wide vertical line: the 4-neighbour rule marked 4 pixels, the official one
    # marks the line itself (differs from its east neighbour), the column west of it (east
    # neighbour differs) and, above the line, (0,1) (its south-east neighbour) and (0,2) (south).
    m = _mask([".....",
               "..#..",
               "..#..",
               "..#..",
               "....."])
    assert boundary(m).tolist() == _mask([".##..",
                                          ".##..",
                                          ".##..",
                                          ".##..",
                                          "....."]).tolist()


def test_f_by_hand_on_a_shifted_pixel():
    # 10x10 frame: tolerance ceil(0.008 * 14.1) = 1 px.
    gt = np.zeros((10, 10), bool)
    gt[4, 4] = True
    pred = np.zeros((10, 10), bool)
    pred[4, 7] = True
    # Boundaries: gt {(3,3),(3,4),(4,3),(4,4)}, pred {(3,6),(3,7),(4,6),(4,7)}. Nearest pairs are
    # 2 px apart (columns 4 and 6): nothing matches within 1 px -> F = 0.
    assert boundary_f(pred, gt) == 0.0
    pred2 = np.zeros((10, 10), bool)
    pred2[4, 5] = True
    # pred2's boundary {(3,4),(3,5),(4,4),(4,5)}: every pixel within 1 px of gt's and back -> F = 1.
    assert boundary_f(pred2, gt) == 1.0
    pred3 = np.zeros((10, 10), bool)
    pred3[4, 6] = True
    # pred3's boundary {(3,5),(3,6),(4,5),(4,6)}: columns 5 match gt's column 4 (2 of 4), and
    # gt's column 4 matches (2 of 4): P = R = 1/2 -> F = 1/2.
    assert boundary_f(pred3, gt) == pytest.approx(0.5)


def test_empty_conventions():
    e = np.zeros((6, 6), bool)
    m = e.copy()
    m[2:4, 2:4] = True
    assert boundary_f(e, e) == 1.0
    assert boundary_f(e, m) == 0.0
    assert boundary_f(m, e) == 0.0
