"""Scientific time-lapses as input: grey 8/16-bit and float, RGB, multichannel; numpy, dask,
zarr and lazy TIFF stacks; the intensity rule; bad input as one-line InputErrors."""
from pathlib import Path

import numpy as np
import pytest

from napari_vidseg.io.arrays import ArraySource, infer_axes
from napari_vidseg.io.intensity import IntensityMap, sample_frame_indices
from napari_vidseg.io.tiff import open_tiff
from napari_vidseg.types import InputError

CTC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ctc" / "Fluo-N2DH-SIM+" / "01"


class CountingArray:
    """A numpy array that records which time points were read (a stand-in for a lazy store)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.ndim, self.reads = a, a.shape, a.dtype, a.ndim, []

    def __getitem__(self, key):
        t = key[0] if isinstance(key, tuple) else key
        self.reads.extend([t] if isinstance(t, int) else list(range(*t.indices(self.shape[0]))))
        return self.a[key]


def _grey16(T=20, H=24, W=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(73, 315, (T, H, W)).astype(np.uint16)


def test_given_contrast_limits_map_linearly():
    a = np.zeros((3, 4, 5), np.uint16)
    a[:, 0, 0], a[:, 0, 1], a[:, 0, 2], a[:, 0, 3] = 100, 150, 200, 999
    src = ArraySource(a, contrast_limits=(100, 200))
    f = src.frame(1)
    assert f.shape == (4, 5, 3) and f.dtype == np.uint8
    # 255 * (v - 100) / 100, rounded: 100 -> 0, 150 -> 128, 200 and above -> 255, below -> 0
    assert f[0, :4, 0].tolist() == [0, 128, 255, 255] and f[1, 0, 0] == 0
    assert (f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all()  # grey -> R = G = B


def test_percentile_window_over_sampled_frames_reads_only_those():
    a = _grey16(T=40)
    arr = CountingArray(a)
    src = ArraySource(arr, sample_frames=5)
    assert sorted(set(arr.reads)) == sample_frame_indices(40, 5) == [0, 10, 20, 29, 39]
    assert src.intensity.rule.startswith("percentiles")
    sampled = a[[0, 10, 20, 29, 39]].astype(float).ravel()
    lo, hi = np.percentile(sampled, [0.5, 99.8])
    assert src.intensity.low == (pytest.approx(lo),) and src.intensity.high == (pytest.approx(hi),)
    arr.reads.clear()
    src.frame(17)
    assert arr.reads == [17]  # one frame read for one frame shown, never the stack
    # the narrow 16-bit band fills the 8-bit range
    f = src.frames(0, 40)
    assert f.min() == 0 and f.max() == 255


def test_uint8_passes_unchanged_and_rgb_is_rgb():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 256, (4, 8, 9)).astype(np.uint8)
    assert np.array_equal(ArraySource(g).frame(2)[..., 1], g[2])
    rgb = rng.integers(0, 256, (4, 12, 9, 3)).astype(np.uint8)
    s = ArraySource(rgb)
    assert s.axes == "TYXC" and s.channel == "rgb" and np.array_equal(s.frame(3), rgb[3])
    rgba = np.concatenate([rgb, np.full((4, 12, 9, 1), 7, np.uint8)], axis=-1)
    assert np.array_equal(ArraySource(rgba, rgb=True).frame(0), rgb[0])


def test_numpy_dask_zarr_and_float_give_the_same_frames():
    import dask.array as da
    import zarr

    a = _grey16()
    ref = ArraySource(a).frames(0, len(a))
    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=a.shape, chunks=(1,) + a.shape[1:], dtype=a.dtype)
    z[:] = a
    for backed in (da.from_array(a, chunks=(1, 24, 32)), z):
        assert np.array_equal(ArraySource(backed).frames(0, len(a)), ref)
    f = a.astype(np.float32) / 1000.0  # float: percentiles are scale-free
    assert np.abs(ArraySource(f).frames(0, len(a)).astype(int) - ref).max() <= 1


def test_multichannel_channel_choice_and_composite():
    T, H, W = 10, 6, 7
    a = np.zeros((T, 2, H, W), np.uint16)
    a[:, 0, :, :3] = 1000  # channel 0 bright on the left
    a[:, 1, :, 4:] = 500  # channel 1 bright on the right
    one = ArraySource(a, channel=1, contrast_limits=(0, 500))
    assert one.axes == "TCYX" and one.frame(0)[0, 6].tolist() == [255, 255, 255] and one.frame(0)[0, 0].max() == 0
    comp = ArraySource(a, contrast_limits=[(0, 1000), (0, 500)])
    f = comp.frame(0)
    assert f[0, 0].tolist() == [255, 0, 0] and f[0, 6].tolist() == [0, 255, 0] and f[0, 3].tolist() == [0, 0, 0]
    magenta = ArraySource(a, contrast_limits=[(0, 1000), (0, 500)], colors=[(1, 0, 1), (0, 1, 0)]).frame(0)
    assert magenta[0, 0].tolist() == [255, 0, 255]
    # the layer's own axes order, given explicitly
    b = np.moveaxis(a, 1, 0)  # (C, T, Y, X)
    with pytest.raises(InputError, match="axes"):
        ArraySource(b, axes="TYX")
    assert ArraySource(np.moveaxis(a, 1, -1), axes="TYXC", channel=1, contrast_limits=(0, 500)).frame(0)[0, 6, 0] == 255


def test_physical_scale_is_kept():
    s = ArraySource(_grey16(), scale=(5.0, 0.65, 0.65), units={"T": "min", "Y": "µm", "X": "µm"})
    assert s.physical_metadata() == {"axes": "TYX", "scale": {"T": 5.0, "Y": 0.65, "X": 0.65},
                                     "units": {"T": "min", "Y": "µm", "X": "µm"}}


@pytest.mark.parametrize("shape, rgb, match", [
    ((32, 32), None, "without a time axis"),
    ((32, 32, 3), True, "without a time axis"),
    ((4, 3, 32, 32), False, "ambiguous"),
    ((10, 3, 32, 3), None, "ambiguous"),
    ((10, 20, 32, 32), None, "no axis looks like channels"),
    ((2, 3, 4, 32, 32), None, "more than one axis"),
])
def test_bad_shapes_are_one_line_errors(shape, rgb, match):
    with pytest.raises(InputError, match=match) as e:
        infer_axes(shape, rgb, "layer 'x'")
    assert "\n" not in str(e.value) and "layer 'x'" in str(e.value)


def test_empty_and_constant_images_are_refused():
    with pytest.raises(InputError, match="empty"):
        ArraySource(np.zeros((3, 0, 5), np.uint16))
    with pytest.raises(InputError, match="constant"):
        ArraySource(np.full((5, 8, 8), 300, np.uint16))
    with pytest.raises(InputError, match="constant"):
        ArraySource(np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(InputError, match="no finite values"):
        ArraySource(np.full((5, 8, 8), np.nan, np.float32))
    with pytest.raises(InputError, match="upper limit"):
        ArraySource(_grey16(), contrast_limits=(300, 100))
    with pytest.raises(InputError, match="channel 5 does not exist"):
        ArraySource(np.zeros((10, 2, 8, 8), np.uint16) + np.arange(8, dtype=np.uint16), channel=5)


def test_intensity_map_gamma():
    m = IntensityMap((0.0,), (100.0,), gamma=2.0)
    assert m.apply(np.array([[0, 50, 100]], np.uint16)).tolist() == [[0, 64, 255]]  # 255 * 0.25 = 63.75


# --------------------------------------------------------------------------- TIFF
def _write_ctc_like_folder(folder: Path, a: np.ndarray) -> None:
    import tifffile

    folder.mkdir()
    for t, f in enumerate(a):
        tifffile.imwrite(folder / f"t{t:03d}.tif", f, compression="lzw")


def test_lzw_tiff_folder_and_multipage_open_lazily(tmp_path):
    import tifffile

    a = _grey16(T=6)
    _write_ctc_like_folder(tmp_path / "01", a)
    st = open_tiff(tmp_path / "01")
    assert st.shape == a.shape and st.axes == "TYX" and st.dtype == np.uint16
    assert np.array_equal(st[4], a[4]) and np.array_equal(st[1:3], a[1:3])
    tifffile.imwrite(tmp_path / "stack.tif", a[:, None].repeat(2, 1), imagej=True, compression="lzw",
                     metadata={"axes": "TCYX", "finterval": 30.0, "unit": "um"}, resolution=(2.0, 2.0))
    mp = open_tiff(tmp_path / "stack.tif")
    assert mp.axes == "TCYX" and mp.shape == (6, 2, 24, 32) and np.array_equal(mp[5][1], a[5])
    assert mp.scale == {"X": 0.5, "Y": 0.5, "T": 30.0} and mp.units["X"] == "um"
    src = ArraySource(mp, axes=mp.axes, channel=0, scale=mp.scale)
    assert src.n_frames == 6 and src.physical_metadata()["scale"] == {"T": 30.0, "Y": 0.5, "X": 0.5}


def test_tiff_bad_inputs(tmp_path):
    import tifffile

    with pytest.raises(InputError, match="no TIFF files"):
        (tmp_path / "e").mkdir()
        open_tiff(tmp_path / "e")
    tifffile.imwrite(tmp_path / "one.tif", _grey16(T=1)[0])
    with pytest.raises(InputError, match="no time axis"):
        open_tiff(tmp_path / "one.tif")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="not a readable TIFF"):
        open_tiff(tmp_path / "bad.tif")
    a = _grey16(T=3)
    _write_ctc_like_folder(tmp_path / "mixed", a)
    tifffile.imwrite(tmp_path / "mixed" / "t003.tif", np.zeros((5, 5), np.uint16))
    st = open_tiff(tmp_path / "mixed")
    with pytest.raises(InputError, match="frame 3 has shape"):
        st[3]


def test_plugin_reader_opens_tiff_time_lapses(tmp_path):
    import tifffile

    from napari_vidseg._napari.reader import get_reader, read_tiff
    from napari_vidseg._napari.sources import source_from_layer

    a = _grey16(T=5)
    _write_ctc_like_folder(tmp_path / "01", a)
    assert get_reader(str(tmp_path / "01")) is read_tiff
    tifffile.imwrite(tmp_path / "single.tif", a[0])
    assert get_reader(str(tmp_path / "single.tif")) is None  # one image: napari's own reader's job
    tifffile.imwrite(tmp_path / "stack.tif", a)
    assert get_reader(str(tmp_path / "stack.tif")) is read_tiff
    [(data, meta, kind)] = read_tiff(str(tmp_path / "01"))
    assert kind == "image" and meta["rgb"] is False and data.shape == a.shape and data.dtype == np.uint16
    assert len(data.chunks[0]) == 5  # one frame per chunk: lazy
    assert np.array_equal(np.asarray(data[3]), a[3])
    lo, hi = meta["contrast_limits"]
    assert 73 <= lo < hi <= 314 and meta["metadata"]["axes"] == "TYX"

    class Layer:  # what source_from_layer reads of a napari Image layer
        name, rgb, metadata, scale = "01", False, meta["metadata"], (1.0, 0.5, 0.5)
        contrast_limits = (lo, hi)

    Layer.data = data
    src = source_from_layer(Layer)
    assert src.intensity.low == (lo,) and src.scale == {"T": 1.0, "Y": 0.5, "X": 0.5}
    assert src.frame(2).shape == (24, 32, 3)


@pytest.mark.skipif(not CTC.is_dir(), reason="../shared/data/ctc is absent")
def test_ctc_sequence_opens_as_16_bit_grey():
    import tifffile

    st = open_tiff(CTC)
    assert st.shape == (65, 690, 628) and st.dtype == np.uint16
    assert np.array_equal(st[64], tifffile.imread(CTC / "t064.tif"))
    f = ArraySource(st).frame(0)
    assert f.max() == 255 and (f == 0).mean() > 0.001  # the narrow band fills 0..255
