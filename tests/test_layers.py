"""napari layers <-> Click/Stroke adapters, both ways, and wrong layer types."""
import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")
from napari.layers import Image, Labels, Points, Shapes  # noqa: E402

from napari_vidseg._napari import layers as L  # noqa: E402
from napari_vidseg.types import Click, InputError, Interactions, Stroke, StrokeKind  # noqa: E402


def _points(rows, positive=None, objects=None, **kw):
    feats = {}
    if positive is not None:
        feats["positive"] = np.asarray(positive, bool)
    if objects is not None:
        feats["object"] = np.asarray(objects, int)
    return Points(np.asarray(rows, float).reshape(-1, 3), ndim=3, features=feats or None, **kw)


def test_points_are_t_row_col_and_filtered_by_frame_and_object():
    pts = _points([[0, 10, 20], [0, 11, 21], [3, 5, 6], [0, 30, 40]],
                  positive=[True, False, True, True], objects=[1, 1, 1, 2])
    clicks = L.points_to_clicks(pts, frame=0, obj=1)
    assert clicks == [Click(20, 10, True), Click(21, 11, False)]
    assert L.points_to_clicks(pts, frame=3, obj=1) == [Click(6, 5, True)]
    assert L.points_to_clicks(pts, frame=0, obj=2) == [Click(40, 30, True)]
    assert L.points_to_clicks(pts, frame=5) == []


def test_positivity_falls_back_to_face_colour():
    pts = Points(np.array([[0, 1, 2], [0, 3, 4]], float), ndim=3,
                 face_color=np.array([[0, 1, 0, 1], [1, 0, 0, 1]], float))
    clicks = L.points_to_clicks(pts, frame=0, obj=7)  # no object column: all belong to obj
    assert [c.positive for c in clicks] == [True, False]


def test_string_positive_column():
    pts = _points([[0, 1, 2], [0, 3, 4]])
    pts.features = pd.DataFrame({"positive": ["True", "no"]})
    assert [c.positive for c in L.points_to_clicks(pts, 0)] == [True, False]


def test_nan_point_is_input_error():
    pts = _points([[0, np.nan, 2]], positive=[True])
    with pytest.raises(InputError, match="finite"):
        L.points_to_clicks(pts, 0)


def test_shapes_paths_and_regions():
    sh = Shapes(ndim=3)
    sh.add_paths([np.array([[2, 1, 1], [2, 5, 9]], float)], edge_width=6)
    sh.add_polygons([np.array([[2, 0, 0], [2, 0, 10], [2, 10, 10]], float)])
    sh.add_lines([np.array([[4, 0, 0], [4, 3, 3]], float)], edge_width=2)
    sh.add_rectangles([np.array([[2, 0, 0], [2, 0, 4], [2, 6, 4], [2, 6, 0]], float)])
    sh.features = pd.DataFrame({"positive": [True, False, True, True], "object": [1, 1, 1, 2]})
    strokes = L.shapes_to_strokes(sh, frame=2, obj=1)
    assert len(strokes) == 2
    assert strokes[0] == Stroke(((1.0, 1.0), (9.0, 5.0)), True, StrokeKind.PATH, 6.0)
    assert strokes[1].kind is StrokeKind.REGION and not strokes[1].positive
    assert strokes[1].points[1] == (10.0, 0.0)  # (x, y) = (col, row)
    (line,) = L.shapes_to_strokes(sh, frame=4, obj=1)
    assert line.kind is StrokeKind.PATH and line.width == 2.0
    (rect,) = L.shapes_to_strokes(sh, frame=2, obj=2)
    assert rect.kind is StrokeKind.REGION and len(rect.points) == 4


def test_ellipse_becomes_polygon_through_edge_midpoints():
    sh = Shapes(ndim=3)
    # bounding box rows 10..30, cols 20..60 -> centre (row 20, col 40), half axes 10 and 20
    sh.add_ellipses([np.array([[0, 10, 20], [0, 10, 60], [0, 30, 60], [0, 30, 20]], float)])
    (s,) = L.shapes_to_strokes(sh, frame=0)
    pts = np.array(s.points)
    assert s.kind is StrokeKind.REGION and len(pts) >= 16
    # every vertex lies on ((x-40)/20)^2 + ((y-20)/10)^2 = 1
    np.testing.assert_allclose(((pts[:, 0] - 40) / 20) ** 2 + ((pts[:, 1] - 20) / 10) ** 2, 1, atol=1e-6)


def test_round_trip_points_and_shapes():
    pts = _points([[5, 1, 1]], positive=[True], objects=[2])  # another object's click is kept
    sh = Shapes(ndim=3)
    inter = {
        (1, 0): Interactions([Click(3, 4, True), Click(5.5, 6, False)],
                             [Stroke(((1, 1), (8, 3)), False, StrokeKind.PATH, 5.0)]),
        (1, 7): Interactions([Click(9, 9, True)],
                             [Stroke(((0, 0), (9, 0), (9, 9)), True, StrokeKind.REGION, 1.0)]),
    }
    L.restore_interactions(pts, sh, inter)
    back = L.all_interactions(pts, sh)
    assert back[(1, 0)].clicks == inter[(1, 0)].clicks
    assert back[(1, 0)].strokes == inter[(1, 0)].strokes
    assert back[(1, 7)].clicks == inter[(1, 7)].clicks
    assert back[(1, 7)].strokes[0].points == inter[(1, 7)].strokes[0].points
    assert back[(1, 7)].strokes[0].kind is StrokeKind.REGION
    assert back[(2, 5)].clicks == [Click(1, 1, True)]
    # colours follow polarity
    fc = np.asarray(pts.face_color)
    neg = np.asarray(pts.features["positive"]) == False  # noqa: E712
    assert (fc[neg, 0] > fc[neg, 1]).all() and (fc[~neg, 1] > fc[~neg, 0]).all()


def test_replacing_one_frame_keeps_the_others():
    pts = _points([[0, 1, 1], [1, 2, 2], [0, 3, 3]], positive=[True, True, False], objects=[1, 1, 1])
    L.set_frame_clicks(pts, 0, 1, [Click(7, 8, False)])
    assert L.points_to_clicks(pts, 0, 1) == [Click(7, 8, False)]
    assert L.points_to_clicks(pts, 1, 1) == [Click(2, 2, True)]
    L.set_frame_clicks(pts, 0, 1, [])
    assert L.points_to_clicks(pts, 0, 1) == []
    assert len(pts.data) == 1

    sh = Shapes(ndim=3)
    L.set_frame_strokes(sh, 0, 1, [Stroke(((0, 0), (3, 3)))])
    L.set_frame_strokes(sh, 2, 1, [Stroke(((1, 1), (4, 4)), False)])
    L.set_frame_strokes(sh, 0, 1, [])
    assert L.shapes_to_strokes(sh, 0, 1) == []
    assert L.shapes_to_strokes(sh, 2, 1) == [Stroke(((1, 1), (4, 4)), False)]


@pytest.mark.parametrize("fn,layer,expected", [
    (L.points_to_clicks, Shapes(ndim=3), "Points"),
    (L.points_to_clicks, Labels(np.zeros((2, 4, 4), np.uint8)), "Points"),
    (L.shapes_to_strokes, Points(np.zeros((1, 3))), "Shapes"),
    (L.shapes_to_strokes, np.zeros((3, 3)), "Shapes"),
    (L.check_labels_layer, Image(np.zeros((2, 4, 4))), "Labels"),
    (L.check_video_layer, Points(np.zeros((1, 3))), "Image"),
])
def test_wrong_layer_type_names_layer_and_expected_type(fn, layer, expected):
    with pytest.raises(InputError, match=expected) as info:
        fn(layer)
    if hasattr(layer, "name"):
        assert repr(layer.name) in str(info.value)


def test_video_layer_shapes():
    assert L.is_video_layer(Image(np.zeros((3, 8, 8, 3), np.uint8), rgb=True))
    assert L.is_video_layer(Image(np.zeros((3, 8, 8), np.uint8)))
    assert not L.is_video_layer(Image(np.zeros((8, 8), np.uint8)))
    with pytest.raises(InputError, match="'photo' cannot be used as a video: a single RGB image"):
        L.check_video_layer(Image(np.zeros((8, 8, 3), np.uint8), rgb=True, name="photo"))
    # what the Video combo says of the layers it does not offer
    assert "no time axis" in L.video_layer_problem(Image(np.zeros((8, 8), np.uint8)))
    stack = Image(np.zeros((5, 3, 8, 8), np.uint16))  # (T, C, Y, X): a channel or a composite is segmented
    assert L.video_layer_problem(stack) is None and L.channel_axes(stack) == "TCYX"
    assert "(5, 30, 8, 8)" in L.video_layer_problem(Image(np.zeros((5, 30, 8, 8), np.uint8)))  # (T, Z, Y, X)
    assert L.video_layer_problem(Image(np.zeros((3, 8, 8), np.uint8))) is None
