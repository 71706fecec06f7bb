"""Export writers, each read back with its ecosystem's reader: CTC (tifffile + the CTC text
format), OME-Zarr labels (ome-zarr's Reader), COCO (pycocotools), label TIFF (tifffile)."""
import json

import numpy as np
import pytest

from napari_vidseg.io.formats import TrackedObject, write
from napari_vidseg.types import InputError

T, H, W = 6, 20, 24
OBJECTS = [TrackedObject(1, "mother"), TrackedObject(2, "wanderer"), TrackedObject(3, "daughter", parent=1)]


def _labels():
    vol = np.zeros((T, H, W), np.uint16)
    for t in range(T):
        vol[t, 2:8, 2 + t:8 + t] = 1
        if t in (0, 1, 4, 5):  # object 2 leaves for frames 2-3 and comes back
            vol[t, 12:18, 14:20] = 2
        if t >= 3:  # object 3 divides from object 1 at frame 3
            vol[t, 10:14, 2:6] = 3
    return vol


def _stream(vol, seen):
    for t, f in enumerate(vol):
        seen.append(t)
        yield f


def test_ctc_round_trip_with_gap_closing_and_parents(tmp_path):
    import tifffile

    vol, seen = _labels(), []
    out = write("ctc", tmp_path / "01_RES", _stream(vol, seen), OBJECTS)
    assert seen == list(range(T))
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"mask{t:03d}.tif" for t in range(T)] + ["res_track.txt"]
    back = np.stack([tifffile.imread(out / f"mask{t:03d}.tif") for t in range(T)])
    assert back.dtype == np.uint16
    tracks = {int(r[0]): tuple(int(v) for v in r[1:]) for r in
              (line.split() for line in (out / "res_track.txt").read_text().splitlines())}
    # object 1: frames 0..5; object 3: 3..5, parent 1; object 2: 0..1, then a new track 4..5 whose parent is 2
    assert tracks[1] == (0, 5, 0) and tracks[3] == (3, 5, 1) and tracks[2] == (0, 1, 0)
    [gap] = [k for k in tracks if k not in (1, 2, 3)]
    assert tracks[gap] == (4, 5, 2)
    # masks unchanged except object 2's label after the gap
    expect = vol.copy()
    expect[4:][vol[4:] == 2] = gap
    assert np.array_equal(back, expect)
    # every label of every mask file is in res_track.txt, within its begin..end
    for t in range(T):
        for k in set(np.unique(back[t]).tolist()) - {0}:
            assert tracks[k][0] <= t <= tracks[k][1]
    with pytest.raises(InputError, match="not empty"):
        write("ctc", out, iter(vol), OBJECTS)


def test_ctc_cancelled_export_leaves_nothing(tmp_path):
    from napari_vidseg.io.formats.ctc import ctc_writer

    gen = ctc_writer(tmp_path / "res", iter(_labels()), OBJECTS)
    next(gen)
    next(gen)
    gen.close()
    assert list(tmp_path.iterdir()) == []


def test_coco_round_trip_with_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    vol = _labels()
    path = write("coco", tmp_path / "ann.json", iter(vol), OBJECTS)
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == list(range(1, T + 1))
    cats = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    assert set(cats) == {"mother", "wanderer", "daughter"}
    n = 0
    for t in range(T):
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[t + 1])):
            m = coco.annToMask(ann).astype(bool)
            assert np.array_equal(m, vol[t] == ann["track_id"])
            assert ann["area"] == m.sum()
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(m)
            assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            n += 1
        assert sorted(a["track_id"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[t + 1]))) == \
            sorted(set(np.unique(vol[t]).tolist()) - {0})
    assert n == sum(len(set(np.unique(f).tolist()) - {0}) for f in vol)
    daughter = coco.loadAnns(coco.getAnnIds(catIds=[cats["daughter"]]))[0]
    assert daughter["parent_id"] == 1


def test_ome_zarr_labels_round_trip_with_ome_zarr_reader(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    vol = _labels()
    path = write("ome-zarr", tmp_path / "cells.zarr", iter(vol), OBJECTS, shape=vol.shape,
                 scale={"T": 30.0, "Y": 0.65, "X": 0.65}, units={"T": "s", "Y": "µm", "X": "µm"})
    nodes = list(Reader(parse_url(str(path / "labels" / "vidseg")))())
    node = nodes[0]
    data = np.asarray(node.data[0])
    assert data.dtype == np.uint16 and np.array_equal(data, vol)
    ms = node.metadata
    assert [a["name"] for a in ms["axes"]] == ["t", "y", "x"]
    assert ms["axes"][1]["unit"] == "micrometer" and ms["axes"][0]["unit"] == "second"
    assert ms["coordinateTransformations"][0][0]["scale"] == [30.0, 0.65, 0.65]
    attrs = json.loads((path / "labels" / "vidseg" / "zarr.json").read_text())["attributes"]
    props = {p["label-value"]: p for p in attrs["ome"]["image-label"]["properties"]}
    assert props[3]["name"] == "daughter" and props[3]["parent"] == 1


def test_label_tiff_round_trip_keeps_scale(tmp_path):
    import tifffile

    vol = _labels()
    path = write("label-tiff", tmp_path / "labels.tif", iter(vol), OBJECTS, n_frames=T,
                 scale={"T": 30.0, "Y": 0.5, "X": 0.5}, units={"T": "s", "X": "µm"})
    with tifffile.TiffFile(path) as tif:
        assert np.array_equal(tif.asarray(), vol)
        ij = tif.imagej_metadata
        assert ij["frames"] == T and ij["finterval"] == 30.0 and ij["unit"] == "micron"
        assert json.loads(ij["Info"])["objects"][2] == {"id": 3, "name": "daughter", "parent": 1}
        xr = tif.pages[0].tags["XResolution"].value
        assert xr[0] / xr[1] == pytest.approx(2.0)


def test_writers_refuse_bad_input(tmp_path):
    vol = _labels()
    with pytest.raises(InputError, match="expected"):
        write("label-tiff", tmp_path / "a.tif", [vol[0], vol[1][:5]], n_frames=2)
    assert not (tmp_path / "a.tif").exists()
    with pytest.raises(InputError, match="2-D"):
        write("coco", tmp_path / "a.json", [vol])
    with pytest.raises(InputError, match="given twice"):
        write("ctc", tmp_path / "r", iter(vol), [TrackedObject(1), TrackedObject(1)])
    with pytest.raises(InputError, match="unknown export format"):
        write("png", tmp_path / "x", iter(vol))
    with pytest.raises(InputError, match="shape"):
        write("ome-zarr", tmp_path / "z.zarr", iter(vol))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_masks_to_labels_gives_overlaps_to_the_deeper_object():
    from napari_vidseg.io.formats import masks_to_labels

    a = np.zeros((9, 12), bool)
    a[1:8, 1:8] = True  # a 7x7 square
    b = np.zeros((9, 12), bool)
    b[3:6, 6:11] = True  # a 3x5 bar reaching into it
    lab = masks_to_labels({1: a, 2: b}, a.shape)
    # column 6 of rows 3-5: depth 2 in the square, 1 (edge rows) or 2 (row 4) in the bar: ties keep
    # the first; column 7: depth 1 in the square, 2 in the bar's middle row
    assert lab[4, 6] == 1 and lab[4, 7] == 2 and lab[3, 7] == 1 and lab[4, 9] == 2 and lab[0, 0] == 0
    assert set(np.unique(lab).tolist()) == {0, 1, 2}
    assert (lab[a & ~b] == 1).all() and (lab[b & ~a] == 2).all()
