"""npe2 reader: videos and frame folders open as lazy RGB image layers."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import decode_index

from napari_vidseg._napari.reader import get_reader, read_video


def test_reader_claims_videos_and_folders(synthetic_video, frame_folder, tmp_path):
    assert get_reader(str(synthetic_video)) is read_video
    assert get_reader(str(frame_folder)) is read_video
    assert get_reader([str(synthetic_video)]) is read_video
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "missing.mp4")) is None
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert get_reader(str(empty)) is None


def test_reader_layer_data(synthetic_video):
    [(data, meta, kind)] = read_video(str(synthetic_video))
    assert kind == "image"
    assert meta["rgb"] is True and meta["name"] == "index"
    assert meta["metadata"]["vidseg_path"] == str(synthetic_video)
    assert data.shape == (40, 48, 64, 3) and data.dtype == np.uint8
    # no dask array: napari's dask cache (a quarter of the RAM) would keep every frame visited
    assert not hasattr(data, "dask")
    assert decode_index(np.asarray(data[23])) == 23
    assert [decode_index(f) for f in data[5:8]] == [5, 6, 7]
    assert decode_index(data[-1]) == 39 and data[3, :2, :2].shape == (2, 2, 3)


def test_reader_folder_layer(frame_folder):
    [(data, meta, _)] = read_video(str(frame_folder))
    assert meta["name"] == "frames"
    assert data.shape == (12, 48, 64, 3)
    assert decode_index(np.asarray(data[10])) == 10


def test_writer_png_folder_and_volume(tmp_path):
    from napari_vidseg._napari.writer import write_labels
    from napari_vidseg.io.masks import read_mask_folder

    labels = np.zeros((3, 8, 10), np.uint16)
    labels[1, 2:5, 3:6] = 1
    out = write_labels(str(tmp_path / "masks"), labels, {})
    assert out == [str(tmp_path / "masks")]
    back = read_mask_folder(tmp_path / "masks")
    assert sorted(back) == [0, 1, 2]
    assert np.array_equal(np.asarray(back[1]) != 0, labels[1] != 0)
    write_labels(str(tmp_path / "vol.npy"), labels, {})
    assert np.array_equal(np.load(tmp_path / "vol.npy"), labels)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_viewer_opens_video_through_plugin(make_napari_viewer, synthetic_video):
    viewer = make_napari_viewer()
    layers = viewer.open(str(synthetic_video), plugin="napari-vidseg")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.rgb is True
    assert layer.data.shape == (40, 48, 64, 3)
    assert layer.metadata["vidseg_path"] == str(synthetic_video)
    viewer.dims.set_current_step(0, 17)
    assert decode_index(np.asarray(layer.data[viewer.dims.current_step[0]])) == 17
