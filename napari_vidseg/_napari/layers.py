"""napari layers <-> library types: the only place that knows both.

Layout of the layers the widget manages (a 3D viewer over a (T, H, W) video):

* Points: data rows are (t, row, col); features columns ``positive`` (bool) and
  ``object`` (int label id).  Without a ``positive`` column the face colour
  decides (green-ish = positive, red-ish = negative); without an ``object``
  column every point belongs to the object asked for.
* Shapes: each shape's vertices are (t, row, col) rows on one frame; paths and
  lines are scribbles (``StrokeKind.PATH``, width = the shape's edge width),
  polygons, rectangles and ellipses are highlighted regions
  (``StrokeKind.REGION``); features ``positive`` and ``object`` as for points.

Library coordinates are (x, y) = (column, row), so every conversion swaps the
last two axes.  2D layers (no time axis) are accepted: their entries belong to
whatever frame is asked for.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..types import Click, InputError, Interactions, Stroke, StrokeKind

POSITIVE_COLOR = np.array([0.1, 0.85, 0.2, 1.0])  # green
NEGATIVE_COLOR = np.array([0.95, 0.15, 0.15, 1.0])  # red

PATH_TYPES = ("path", "line")
REGION_TYPES = ("polygon", "rectangle", "ellipse")
_ELLIPSE_VERTICES = 48


def _require(layer, type_name: str, role: str):
    """Raise InputError unless `layer` is a napari layer of class `type_name`."""
    import napari.layers

    expected = getattr(napari.layers, type_name)
    if not isinstance(layer, expected):
        got = type(layer).__name__
        name = getattr(layer, "name", repr(layer))
        raise InputError(
            f"layer {name!r} is a {got} layer; {role} need a {type_name} layer")
    return layer


# -- per-entry attributes ------------------------------------------------------

def _column(layer, name: str, n: int):
    """A features column as a numpy array of length n, or None if absent."""
    feats = getattr(layer, "features", None)
    if feats is None or name not in getattr(feats, "columns", ()):
        return None
    col = np.asarray(feats[name])
    return col if len(col) == n else None


def _as_bool(values) -> np.ndarray:
    """Booleans from a features column that may hold bools, 0/1 or strings."""
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(v.strip().lower() in ("true", "1", "yes", "+", "positive"))
        else:
            out.append(bool(v))
    return np.asarray(out, bool)


def _positivity(layer, n: int, colors) -> np.ndarray:
    col = _column(layer, "positive", n)
    if col is not None:
        return _as_bool(col)
    colors = np.asarray(colors, float).reshape(n, -1) if n else np.zeros((0, 4))
    if colors.shape[1] >= 3:
        # Whatever colour scheme the user picked: greener than red means positive.
        return colors[:, 1] >= colors[:, 0]
    return np.ones(n, bool)


def _objects(layer, n: int, default: int) -> np.ndarray:
    col = _column(layer, "object", n)
    if col is None:
        return np.full(n, default, int)
    return np.asarray(col).astype(int)


def _frame_of(coords: np.ndarray) -> int | None:
    """The time index of a (t, row, col) vertex array; None for 2D data."""
    if coords.shape[-1] < 3:
        return None
    return int(np.round(np.mean(coords[..., -3])))


# -- points -> clicks ------------------------------------------------------------

def points_to_clicks(layer, frame: int | None = None, obj: int | None = None) -> list[Click]:
    """The clicks of `frame` (all frames if None) for object `obj` (all if None), in layer order."""
    _require(layer, "Points", "clicks")
    return [c for _, _, c in iter_clicks(layer, frame, obj)]


def iter_clicks(layer, frame: int | None = None, obj: int | None = None, default_obj: int = 1):
    """Yield (frame, object, Click) for each point matching the filters.

    Points without an ``object`` feature belong to `obj` (or `default_obj`)."""
    _require(layer, "Points", "clicks")
    data = np.asarray(layer.data, float)
    n = len(data)
    if n == 0:
        return
    positive = _positivity(layer, n, layer.face_color)
    objects = _objects(layer, n, obj if obj is not None else default_obj)
    for i in range(n):
        t = _frame_of(data[i])
        if frame is not None and t is not None and t != frame:
            continue
        if obj is not None and objects[i] != obj:
            continue
        row, col = data[i, -2], data[i, -1]
        yield (frame if t is None else t), int(objects[i]), Click(float(col), float(row), bool(positive[i]))


# -- shapes -> strokes -------------------------------------------------------------

def _ellipse_polygon(corners: np.ndarray, n: int = _ELLIPSE_VERTICES) -> np.ndarray:
    """napari stores an ellipse as its bounding box's 4 corners; sample its outline.

    The inscribed ellipse touches the middle of every edge, so two adjacent
    edge midpoints minus the centre are its half-axes (also for rotated boxes).
    """
    c = corners.mean(0)
    a = (corners[1] + corners[2]) / 2 - c
    b = (corners[0] + corners[1]) / 2 - c
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    return c + np.cos(theta) * a + np.sin(theta) * b


def iter_strokes(layer, frame: int | None = None, obj: int | None = None, default_obj: int = 1):
    """Yield (frame, object, Stroke) for each shape matching the filters."""
    _require(layer, "Shapes", "strokes")
    n = len(layer.data)
    if n == 0:
        return
    positive = _positivity(layer, n, layer.edge_color)
    objects = _objects(layer, n, obj if obj is not None else default_obj)
    widths = np.broadcast_to(np.asarray(layer.edge_width, float), (n,))
    for i, (verts, kind) in enumerate(zip(layer.data, layer.shape_type)):
        verts = np.asarray(verts, float)
        t = _frame_of(verts)
        if frame is not None and t is not None and t != frame:
            continue
        if obj is not None and objects[i] != obj:
            continue
        rc = verts[:, -2:]
        if kind in PATH_TYPES:
            stroke_kind = StrokeKind.PATH
        elif kind in REGION_TYPES:
            stroke_kind = StrokeKind.REGION
            if kind == "ellipse":
                rc = _ellipse_polygon(rc)
        else:
            raise InputError(f"shape {i} of layer {layer.name!r} has unsupported type {kind!r}")
        points = tuple((float(c), float(r)) for r, c in rc)
        stroke = Stroke(points, bool(positive[i]), stroke_kind, float(widths[i]))
        yield (frame if t is None else t), int(objects[i]), stroke


def shapes_to_strokes(layer, frame: int | None = None, obj: int | None = None) -> list[Stroke]:
    """The strokes of `frame` (all frames if None) for object `obj` (all if None), in layer order."""
    return [s for _, _, s in iter_strokes(layer, frame, obj)]


def layers_to_interactions(points, shapes, frame: int, obj: int | None = None) -> Interactions:
    """Everything drawn on `frame` for `obj` in a points and (optional) shapes layer."""
    clicks = points_to_clicks(points, frame, obj) if points is not None else []
    strokes = shapes_to_strokes(shapes, frame, obj) if shapes is not None else []
    return Interactions(clicks, strokes)


def all_interactions(points, shapes, default_obj: int = 1) -> dict[tuple[int, int], Interactions]:
    """(object, frame) -> Interactions for every entry of both layers (2D entries go to frame 0)."""
    out: dict[tuple[int, int], Interactions] = {}
    if points is not None:
        for t, o, c in iter_clicks(points, default_obj=default_obj):
            out.setdefault((o, t or 0), Interactions()).clicks.append(c)
    if shapes is not None:
        for t, o, s in iter_strokes(shapes, default_obj=default_obj):
            out.setdefault((o, t or 0), Interactions()).strokes.append(s)
    return out


# -- library -> layers (restoring a session) ---------------------------------------

def _polarity_colors(positive: Iterable[bool]) -> np.ndarray:
    pos = np.asarray(list(positive), bool)
    return np.where(pos[:, None], POSITIVE_COLOR, NEGATIVE_COLOR).reshape(-1, 4)


def _entry_keys(layer, n: int, frames: list[int | None], obj_default: int):
    objects = _objects(layer, n, obj_default)
    return [(int(o), t) for o, t in zip(objects, frames)]


def set_frame_clicks(layer, frame: int, obj: int, clicks: list[Click]) -> None:
    """Replace the points of (frame, obj) in a 3D points layer by `clicks` (others kept)."""
    _require(layer, "Points", "clicks")
    data = np.asarray(layer.data, float).reshape(-1, layer.ndim)
    n = len(data)
    frames = [_frame_of(d) for d in data]
    frames = [frame if f is None else f for f in frames]  # 2D entries belong to any frame
    keys = _entry_keys(layer, n, frames, obj)
    keep = np.array([k != (obj, frame) for k in keys], bool)
    old_pos = _positivity(layer, n, layer.face_color)
    old_obj = _objects(layer, n, obj)
    new = np.array([[frame, c.y, c.x] for c in clicks], float).reshape(-1, 3)
    if layer.ndim != 3:
        new = new[:, -layer.ndim:]
    positive = np.concatenate([old_pos[keep], [c.positive for c in clicks]]).astype(bool)
    objects = np.concatenate([old_obj[keep], [obj] * len(clicks)]).astype(int)
    _replace_points(layer, np.vstack([data[keep], new]), positive, objects)


def _replace_points(layer, data: np.ndarray, positive: np.ndarray, objects: np.ndarray) -> None:
    import pandas as pd

    layer.selected_data = set()
    layer.data = data
    layer.features = pd.DataFrame({"positive": positive.astype(bool), "object": objects.astype(int)})
    if len(data):
        layer.face_color = _polarity_colors(positive)


def set_frame_strokes(layer, frame: int, obj: int, strokes: list[Stroke]) -> None:
    """Replace the shapes of (frame, obj) in a 3D shapes layer by `strokes` (others kept)."""
    import pandas as pd

    _require(layer, "Shapes", "strokes")
    n = len(layer.data)
    frames = [_frame_of(np.asarray(v)) for v in layer.data]
    frames = [frame if f is None else f for f in frames]  # 2D entries belong to any frame
    keys = _entry_keys(layer, n, frames, obj)
    remove = [i for i, k in enumerate(keys) if k == (obj, frame)]
    if remove:
        layer.selected_data = set(remove)
        layer.remove_selected()
    if not strokes:
        return
    before = len(layer.data)
    old_feats = layer.features.iloc[:before].copy() if before else None
    for s in strokes:
        verts = np.array([[frame, y, x] for x, y in s.points], float)
        if layer.ndim != 3:
            verts = verts[:, -layer.ndim:]
        color = POSITIVE_COLOR if s.positive else NEGATIVE_COLOR
        if s.kind is StrokeKind.PATH:
            layer.add_paths([verts], edge_width=s.width, edge_color=[color])
        else:
            face = color.copy()
            face[3] = 0.3  # see the frame through a highlighted region
            layer.add_polygons([verts], edge_width=1.0, edge_color=[color], face_color=[face])
    new_feats = pd.DataFrame({"positive": [s.positive for s in strokes], "object": [obj] * len(strokes)})
    if old_feats is not None and {"positive", "object"} <= set(old_feats.columns):
        feats = pd.concat([old_feats[["positive", "object"]], new_feats], ignore_index=True)
    else:
        feats = pd.concat([_default_features(before, obj), new_feats], ignore_index=True)
    layer.features = feats.astype({"positive": bool, "object": int})


def _default_features(n: int, obj: int):
    import pandas as pd

    return pd.DataFrame({"positive": np.ones(n, bool), "object": np.full(n, obj, int)})


def clear_interactions(points, shapes) -> None:
    """Empty a points and a shapes layer, keeping their positive/object feature columns."""
    import pandas as pd

    if points is not None:
        _replace_points(points, np.zeros((0, points.ndim)), np.zeros(0, bool), np.zeros(0, int))
    if shapes is not None and len(shapes.data):
        shapes.selected_data = set(range(len(shapes.data)))
        shapes.remove_selected()
        shapes.features = pd.DataFrame({"positive": np.zeros(0, bool), "object": np.zeros(0, int)})


def restore_interactions(points, shapes, interactions: dict[tuple[int, int], Interactions]) -> None:
    """Fill (empty) points/shapes layers with a session's (object, frame) -> Interactions."""
    for (obj, t), inter in sorted(interactions.items()):
        if points is not None:
            set_frame_clicks(points, t, obj, inter.clicks)
        if shapes is not None:
            set_frame_strokes(shapes, t, obj, inter.strokes)


# -- images and labels ------------------------------------------------------------

def video_layer_problem(layer) -> str | None:
    """Why `layer` cannot be segmented as a video, in a few words; None if it can."""
    import napari.layers

    if not isinstance(layer, napari.layers.Image):
        return f"a {type(layer).__name__} layer, not an image"
    shape = tuple(layer.data.shape)
    if layer.rgb and len(shape) == 4 and shape[-1] in (3, 4):
        return None
    if not layer.rgb and len(shape) == 3:
        return None
    if len(shape) - int(bool(layer.rgb)) == 2:
        return f"a single {'RGB ' if layer.rgb else ''}image {shape}, no time axis"
    if channel_axes(layer) is not None:
        return None
    return f"shape {shape}: not (T, H, W, 3) RGB, a (T, H, W) time series or a (T, C, H, W) stack"


def channel_axes(layer) -> str | None:
    """'TCYX' for a multichannel time-lapse layer (a channel or a composite is segmented), else None."""
    from ..io.arrays import infer_axes

    shape = tuple(layer.data.shape)
    if layer.rgb or len(shape) != 4:
        return None
    axes = (layer.metadata or {}).get("axes")
    if axes == "TCYX":
        return axes
    try:
        return "TCYX" if infer_axes(shape, None) == "TCYX" else None
    except InputError:
        return None


def check_video_layer(layer):
    """A video Image layer: (T, H, W, 3) RGB or a (T, H, W) grey time series."""
    _require(layer, "Image", "videos")
    problem = video_layer_problem(layer)
    if problem is not None:
        raise InputError(f"layer {layer.name!r} cannot be used as a video: {problem}")
    return layer


def check_labels_layer(layer):
    return _require(layer, "Labels", "masks")


def is_video_layer(layer) -> bool:
    try:
        check_video_layer(layer)
    except InputError:
        return False
    return True
