"""Scripting a viewer: napari_vidseg.attach() gives the session; whatever a script
does to it shows up in the widget's layers through the session's signals (no
patched methods), from the GUI thread or from another thread."""
from __future__ import annotations

import threading

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_vidseg.types import Click, Interactions  # noqa: E402

from test_widget import DiskPredictor, moving_disk_video, random_parent, tiny_config  # noqa: E402


@pytest.fixture
def attached(make_napari_viewer, qtbot):
    from napari_vidseg import attach
    from napari_vidseg._napari.script import widget_of

    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(moving_disk_video(), rgb=True, name="disk")
    session = attach(viewer, layer)
    session.set_predictor(DiskPredictor())
    return viewer, session, widget_of(session)


def test_script_calls_on_the_gui_thread_show_up(attached, qtbot):
    viewer, session, w = attached
    assert not any(hasattr(getattr(session, verb), "__wrapped__")
                   for verb in ("add_interactions", "set_mask", "propagate", "add_object"))  # nothing patched
    obj = next(iter(session.objects))
    session.add_interactions(2, obj, Interactions([Click(20, 24)]))
    assert w.labels_layer.data[2, 24, 20] == obj
    assert [tuple(p) for p in np.asarray(w.points_layer.data)] == [(2.0, 24.0, 20.0)]
    session.undo_interaction(2, obj)
    assert len(w.points_layer.data) == 0 and w.labels_layer.data[2, 24, 20] == 0
    obj2 = session.add_object("ball")
    assert obj2 in [v for _, v in w._object_choices()]
    session.add_interactions(4, obj2, Interactions([Click(40, 10)]))
    assert w.labels_layer.data[4, 10, 40] == obj2
    session.remove_object(obj2)
    assert w.labels_layer.data[4, 10, 40] == 0 and len(w.points_layer.data) == 0
    assert obj2 not in [v for _, v in w._object_choices()]


def test_script_calls_from_another_thread_are_drawn_on_the_gui_thread(attached, qtbot):
    viewer, session, w = attached
    obj = next(iter(session.objects))
    done = threading.Event()

    def work():
        session.add_interactions(0, obj, Interactions([Click(20, 24)]))
        session.set_parent(random_parent())
        for _ in session.propagate(obj, tiny_config()):
            pass
        done.set()

    threading.Thread(target=work, daemon=True).start()
    qtbot.waitUntil(done.is_set, timeout=600_000)
    qtbot.waitUntil(lambda: w.labels_layer.data[0, 24, 20] == obj, timeout=10_000)
    qtbot.waitUntil(lambda: len(w.points_layer.data) == 1, timeout=10_000)
    for t in range(1, 8):  # every propagated frame is what the layer shows
        np.testing.assert_array_equal(np.asarray(w.labels_layer.data[t]) == obj, session.masks.get_or_empty(obj, t))
