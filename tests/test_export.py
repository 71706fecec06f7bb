import numpy as np
import pytest
from PIL import Image, ImageSequence

from napari_vidseg.io.export import (composite_writer, union_box, write_composite, write_label_volume,
                                     write_sticker)
from napari_vidseg.io.masks import read_mask_folder, write_mask_folder
from napari_vidseg.types import InputError

T, H, W = 8, 32, 40  # height 32, width 40; boxes below are odd-sized on purpose


def clip():
    yy, xx = np.mgrid[:H, :W]
    # smooth gradients: lossy codecs (H.264 4:2:0) reproduce them closely
    frames = [np.stack([60 + 3 * xx + 5 * t, 50 + 4 * yy, np.full((H, W), 90 + 10 * t)], -1).astype(np.uint8)
              for t in range(T)]
    masks = [(xx - 10 - 2 * t) ** 2 + (yy - 15) ** 2 <= 36 for t in range(T)]
    return frames, masks


def test_mask_folder_round_trip(tmp_path):
    _, masks = clip()
    write_mask_folder(tmp_path / "one", enumerate(masks))
    back = read_mask_folder(tmp_path / "one")
    assert sorted(back) == list(range(T))
    assert all(np.array_equal(back[t], masks[t]) for t in range(T))
    with Image.open(tmp_path / "one" / "00003.png") as im:  # DAVIS: 0/255 grey
        assert im.mode == "L" and set(np.unique(np.asarray(im))) == {0, 255}
    labels = [m.astype(np.uint16) * 3 + np.roll(m, 5, axis=0) * (m == 0) * 7 for m in masks]
    write_mask_folder(tmp_path / "lab", enumerate(labels))
    back = read_mask_folder(tmp_path / "lab")
    assert all(np.array_equal(back[t], labels[t]) for t in range(T))
    write_mask_folder(tmp_path / "obj7", enumerate(labels), obj=7)
    assert np.array_equal(read_mask_folder(tmp_path / "obj7")[2], labels[2] == 7)
    big = [np.full((4, 4), 300, np.uint16)]
    write_mask_folder(tmp_path / "big", enumerate(big))
    assert read_mask_folder(tmp_path / "big")[0].max() == 300
    with pytest.raises(InputError, match="does not exist"):
        read_mask_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no mask PNGs"):
        read_mask_folder(tmp_path / "empty")


def read_animation(path):
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(im)]


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
@pytest.mark.parametrize("crop", [True, False])
def test_sticker_alpha(tmp_path, suffix, crop):
    frames, masks = clip()
    path = tmp_path / f"sticker{suffix}"
    write_sticker(path, iter(frames), iter(masks), fps=10, crop=crop)  # one-shot iterators
    got = read_animation(path)
    assert len(got) == T
    y0, y1, x0, x1 = union_box(masks) if crop else (0, H, 0, W)
    if crop:
        assert (y1 - y0, x1 - x0) == (13, 27)
    for f, frame, m in zip(got, frames, masks):
        m = m[y0:y1, x0:x1]
        assert f.shape == (y1 - y0, x1 - x0, 4)
        assert (f[..., 3][~m] == 0).all(), "background must be fully transparent"
        assert (f[..., 3][m] == 255).all(), "the object must be fully opaque"
        err = np.abs(f[..., :3].astype(int) - frame[y0:y1, x0:x1].astype(int))[m]
        assert err.mean() < 12  # the object's colours survive (WebP is lossy, GIF has a palette)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


def test_sticker_webm_alpha(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    frames, masks = clip()
    path = tmp_path / "s.webm"
    write_sticker(path, frames, masks, fps=10)
    # libvpx-vp9 is the decoder that reads the alpha plane back
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgba", bpp=4, input_params=["-c:v", "libvpx-vp9"])
    meta = next(reader)
    w, h = meta["size"]
    got = [np.frombuffer(b, np.uint8).reshape(h, w, 4) for b in reader]
    assert len(got) == T and (w % 2, h % 2) == (0, 0)
    y0, y1, x0, x1 = union_box(masks)
    assert w >= x1 - x0 and h >= y1 - y0
    for f, m in zip(got, masks):
        m = m[y0:y0 + h, x0:x0 + w]
        inner = m & np.roll(m, 2, 0) & np.roll(m, -2, 0) & np.roll(m, 2, 1) & np.roll(m, -2, 1)
        assert f[..., 3][inner].min() > 200 and np.median(f[..., 3][~m]) < 10


def decode(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader]


@pytest.mark.parametrize("background", [None, (0, 255, 0), "image"])
def test_composite(tmp_path, background):
    frames, masks = clip()
    if background == "image":
        Image.fromarray(np.full((10, 10, 3), 200, np.uint8)).save(tmp_path / "bg.png")
        background = tmp_path / "bg.png"
    path = tmp_path / "c.mp4"
    write_composite(path, iter(frames), iter(masks), fps=10, background=background)
    got = decode(path)
    assert len(got) == T and got[0].shape == (H, W, 3)
    for f, frame, m in zip(got, frames, masks):
        inner = m & np.roll(m, 2, 0) & np.roll(m, -2, 0) & np.roll(m, 2, 1) & np.roll(m, -2, 1)
        diff = np.abs(f.astype(int) - frame.astype(int))
        assert diff[inner].mean() < 8  # the object is the source (up to H.264 at crf 18)
        assert diff[~m].mean() > 20  # the background is not
    if background == (0, 255, 0):
        far = ~masks[0]
        far[:, :20] = False
        assert np.abs(got[0][far].astype(int) - (0, 255, 0)).mean() < 12


def test_composite_odd_size_and_cancel(tmp_path):
    frames, masks = clip()
    frames = [f[:31, :39] for f in frames]
    masks = [m[:31, :39] for m in masks]
    write_composite(tmp_path / "odd.mp4", frames, masks, fps=10)
    got = decode(tmp_path / "odd.mp4")
    assert len(got) == T and got[0].shape[:2] == (32, 40)  # padded by a replicated row and column
    job = composite_writer(tmp_path / "cancelled.mp4", frames, masks, fps=10)
    next(job), next(job)
    job.close()
    assert not (tmp_path / "cancelled.mp4").exists() and not list(tmp_path.glob(".*tmp*"))


def test_label_volume(tmp_path):
    _, masks = clip()
    vol = np.stack([m.astype(np.uint16) * 2 for m in masks])
    write_label_volume(tmp_path / "v.npy", vol)
    assert np.array_equal(np.load(tmp_path / "v.npy"), vol)
    write_label_volume(tmp_path / "v.tif", iter(vol), shape=vol.shape)
    tifffile = pytest.importorskip("tifffile")
    assert np.array_equal(tifffile.imread(tmp_path / "v.tif"), vol)


def test_bad_export_input(tmp_path):
    frames, masks = clip()
    with pytest.raises(InputError, match="unsupported sticker format"):
        write_sticker(tmp_path / "s.bmp", frames, masks, 10)
    with pytest.raises(InputError, match="does not exist"):
        write_sticker(tmp_path / "no" / "s.gif", frames, masks, 10)
    with pytest.raises(InputError, match="shape"):
        write_sticker(tmp_path / "s.gif", frames, [m[:5] for m in masks], 10, crop=False)
    assert not (tmp_path / "s.gif").exists()
    with pytest.raises(InputError, match="background"):
        write_composite(tmp_path / "c.mp4", frames, masks, 10, background="missing.png")
    with pytest.raises(InputError, match="frame rate"):
        write_composite(tmp_path / "c.mp4", frames, masks, 0)
