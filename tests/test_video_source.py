"""VideoSource: frame-exact lazy decoding of video files and frame folders."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from conftest import decode_index, encode_index, ffmpeg, write_video
from PIL import Image

from napari_vidseg.io.video import VideoSource
from napari_vidseg.types import InputError


def indices(frames) -> list[int]:
    return [decode_index(f) for f in frames]


# --------------------------------------------------------------------------- metadata
def test_metadata(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8)
    assert v.shape == (40, 48, 64, 3)
    assert len(v) == v.n_frames == 40
    assert (v.height, v.width) == (48, 64)
    assert v.dtype == np.uint8
    assert v.fps == pytest.approx(25.0)
    assert not v.variable_frame_rate
    assert v.path == synthetic_video


def test_open_decodes_nothing(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8)
    d = v.to_dask()
    assert v.decoded_chunks == 0 and v.cached_chunks() == []
    assert d.shape == (40, 48, 64, 3) and d.dtype == np.uint8
    assert d.chunks[0] == (8, 8, 8, 8, 8)
    assert v.decoded_chunks == 0  # building the dask array decodes nothing either


# --------------------------------------------------------------------------- frame-exact reading
def test_random_access_every_frame(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8, cache_chunks=2)
    order = np.random.default_rng(0).permutation(40)
    for t in order:
        f = v.frame(int(t))
        assert f.shape == (48, 64, 3) and f.dtype == np.uint8
        assert decode_index(f) == t
    assert v.frame(-1) is not None and decode_index(v.frame(-1)) == 39


def test_chunk_reads_one_process_per_chunk(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8)
    for t in range(8, 16):
        v.frame(t)
    assert v.decoded_chunks == 1  # the whole chunk came from one decode


def count_streams(v: VideoSource) -> list[tuple[int, int]]:
    """Record the (start, stop) of every decode v's backend starts (one ffmpeg process each)."""
    calls, stream = [], v._backend.stream

    def counted(start, stop, keep=None):
        calls.append((start, stop))
        return stream(start, stop, keep)

    v._backend.stream = counted
    return calls


def test_consecutive_reads_continue_one_decode(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8, cache_chunks=2)
    calls = count_streams(v)
    assert indices(v.frames(0, 16)) == list(range(16))
    assert indices(v.frames(16, 24)) == list(range(16, 24))
    assert calls == [(0, 40)]  # three chunks, one ffmpeg process
    assert indices(v.frames(32, 40)) == list(range(32, 40))  # 8 frames ahead: decoded and dropped
    assert calls == [(0, 40)]
    assert indices(v.frames(0, 8)) == list(range(8))  # chunk 0 was evicted; going back needs a new decode
    assert calls == [(0, 40), (0, 40)]
    assert decode_index(v.frame(8)) == 8 and len(calls) == 2  # chunk 1, right after: the decode goes on
    v.clear_cache()  # also stops the open decode
    assert v._open is None


def test_a_second_reader_gets_a_decode_of_its_own(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8)
    calls = count_streams(v)
    with v._open_lock:  # another thread is reading from the open decode
        assert indices(v.frames(8, 16)) == list(range(8, 16))
    assert calls == [(8, 16)] and v._open is None  # just the chunk, and the open decode is left alone


def test_clear_cache_does_not_wait_for_a_stuck_reader(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8)
    v.frame(0)
    with v._open_lock:  # a reader that never finishes (e.g. kept alive by an interrupted traceback)
        v.clear_cache()
    assert v.cached_chunks() == [] and v._open is not None  # the cache is emptied; the decode is left to it
    v.clear_cache()
    assert v._open is None


def test_frames_at_reads_sparse_frames_without_caching_them(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8)
    calls = count_streams(v)
    assert indices(v.frames_at([28, 33])) == [28, 33] and calls == [(28, 40)]
    assert v.cached_chunks() == []
    v.frame(1)  # chunk 0 cached (a new decode: going back)
    got = v.frames_at([2, 6, 10, 14, 18, 30])
    assert indices(got) == [2, 6, 10, 14, 18, 30]
    assert calls == [(28, 40), (0, 40)]  # 2 and 6 from the cache, the rest continue chunk 0's decode
    assert v.cached_chunks() == [0]
    assert indices(v.frames_at([34, 38])) == [34, 38] and len(calls) == 2  # and on
    assert v.frames_at([]).shape == (0, 48, 64, 3)
    with pytest.raises(InputError, match="ascending"):
        v.frames_at([5, 3])
    with pytest.raises(InputError, match="does not exist"):
        v.frames_at([3, 40])


def test_frames_at_on_a_folder_loads_only_those_frames(frame_folder):
    v = VideoSource.open(frame_folder, chunk_frames=4)
    loaded, load = [], v._backend.load
    v._backend.load = lambda i: loaded.append(i) or load(i)
    assert indices(v.frames_at([1, 5, 9])) == [1, 5, 9]
    assert loaded == [1, 5, 9] and v.cached_chunks() == []


class _GappyBackend:
    """A decoder that drops frames 5 and 6 of a 12-frame video (frame t shows t)."""
    continues, fps, n_frames, height, width, variable_frame_rate = True, 25.0, 12, 48, 64, False
    times = np.arange(12) / 25.0

    def stream(self, start, stop, keep=None):
        for t in range(start, stop):
            if t not in (5, 6):
                yield t, encode_index(t)


def test_sparse_read_fills_frames_the_decoder_dropped(tmp_path):
    v = VideoSource(_GappyBackend(), tmp_path / "gappy.mp4", chunk_frames=4, cache_bytes=1 << 20, cache_chunks=4)
    with pytest.warns(RuntimeWarning, match="frame 6 could not be decoded"):
        got = v.frames_at([2, 6, 10])
    assert indices(got) == [2, 4, 10]  # 6 stands in for by the last frame that decoded, 4
    assert v.filled_frames == {6}
    with pytest.warns(RuntimeWarning, match="frames 5..6 could not be decoded"):
        assert indices(v.frames(4, 8)) == [4, 4, 4, 7]


def test_frames_and_iter_chunks(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8)
    assert indices(v.frames(5, 29)) == list(range(5, 29))
    assert v.frames(3, 3).shape == (0, 48, 64, 3)
    assert indices(v[10:14]) == [10, 11, 12, 13]

    v2 = VideoSource.open(synthetic_video, chunk_frames=8)
    seen = []
    for first, block in v2.iter_chunks(3, 37):
        assert block.shape[1:] == (48, 64, 3)
        assert 1 <= len(block) <= 8
        assert first == 3 + len(seen)
        seen += indices(block)
    assert seen == list(range(3, 37))
    assert v2.cached_chunks() == []  # a sequential scan does not pollute the cache


def test_dask_array_is_lazy_and_exact(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8)
    d = v.to_dask()
    assert decode_index(d[13].compute()) == 13
    assert v.decoded_chunks == 1 and v.cached_chunks() == [1]
    assert indices(d[6:18].compute()) == list(range(6, 18))
    assert indices(d.compute()) == list(range(40))


def test_lru_cache(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8, cache_chunks=2)
    v.frame(0), v.frame(8), v.frame(16)
    assert v.cached_chunks() == [1, 2] and v.decoded_chunks == 3
    v.frame(9)  # hit: chunk 1 becomes most recent, nothing decoded
    assert v.decoded_chunks == 3 and v.cached_chunks() == [2, 1]
    v.frame(24)  # evicts chunk 2, the least recently used
    assert v.cached_chunks() == [1, 3] and v.decoded_chunks == 4
    v.frame(0)
    assert v.decoded_chunks == 5  # chunk 0 was evicted earlier, so decoded again


def test_cache_is_bounded_in_bytes(synthetic_video):
    chunk_bytes = 8 * 48 * 64 * 3
    v = VideoSource.open(synthetic_video, chunk_frames=8, cache_bytes=3 * chunk_bytes)
    assert v.cache_chunks == 3
    for t in range(0, 40, 8):
        v.frame(t)
    assert len(v.cached_chunks()) == 3


def test_cached_frames_are_read_only(synthetic_video):
    v = VideoSource.open(synthetic_video, chunk_frames=8)
    with pytest.raises(ValueError):
        v.frame(0)[0, 0, 0] = 1
    block = v.frames(0, 2)
    block[0, 0, 0] = 1  # frames() returns a fresh copy


def test_odd_size_video(tmp_path):
    # x264 needs 4:4:4 for odd sizes; the reader must not care
    p = write_video(tmp_path / "odd.mp4", (encode_index(t, 49, 65) for t in range(12)), pix_fmt_out="yuv444p")
    v = VideoSource.open(p, chunk_frames=5)
    assert v.shape == (12, 49, 65, 3)
    assert indices(v.frames(0, 12)) == list(range(12))


def test_gif_and_grayscale_video(tmp_path):
    gif = tmp_path / "clip.gif"
    ffmpeg("-i", str(write_video(tmp_path / "src.mp4", (encode_index(t) for t in range(10)))), str(gif))
    v = VideoSource.open(gif, chunk_frames=4)
    assert v.shape == (10, 48, 64, 3)
    assert indices(v.frames(0, 10)) == list(range(10))

    gray = tmp_path / "gray.mkv"
    ffmpeg("-i", str(tmp_path / "src.mp4"), "-pix_fmt", "gray", "-c:v", "ffv1", str(gray))
    g = VideoSource.open(gray, chunk_frames=4)
    f = g.frame(5)
    assert f.shape == (48, 64, 3) and decode_index(f) == 5
    assert np.array_equal(f[..., 0], f[..., 2])


def test_variable_frame_rate_is_frame_exact(tmp_path, synthetic_video):
    # first 10 frames 40 ms apart, then 120 ms apart: duration x fps is wrong, seeking by n/fps would be too
    vfr = tmp_path / "vfr.mkv"
    ffmpeg("-i", str(synthetic_video), "-vf", "setpts='if(lt(N,10),N,10+(N-10)*3)/25/TB'",
           "-fps_mode", "passthrough", "-c:v", "libx264", "-crf", "10", "-g", "8", str(vfr))
    v = VideoSource.open(vfr, chunk_frames=6)
    assert v.n_frames == 40
    assert v.variable_frame_rate
    for t in np.random.default_rng(1).permutation(40):
        assert decode_index(v.frame(int(t))) == t
    assert [i for _, b in v.iter_chunks() for i in indices(b)] == list(range(40))


# --------------------------------------------------------------------------- frame folders
def test_frame_folder(frame_folder):
    v = VideoSource.open(frame_folder, chunk_frames=5, fps=30)
    assert v.shape == (12, 48, 64, 3) and v.fps == 30
    assert indices(v.frames(0, 12)) == list(range(12))  # 2.png before 10.png
    assert decode_index(v.to_dask()[11].compute()) == 11
    assert VideoSource.open(frame_folder).fps == 24.0  # DAVIS default


def test_folder_grayscale_and_rgba(tmp_path):
    folder = tmp_path / "mixed_modes"
    folder.mkdir()
    Image.fromarray(encode_index(0)[..., 0]).save(folder / "00000.png")  # L
    rgba = np.dstack([encode_index(1), np.full((48, 64), 128, np.uint8)])
    Image.fromarray(rgba).save(folder / "00001.png")  # RGBA
    Image.fromarray(encode_index(2)).save(folder / "00002.jpg", quality=95)
    v = VideoSource.open(folder)
    frames = v.frames(0, 3)
    assert frames.shape == (3, 48, 64, 3) and frames.dtype == np.uint8
    assert indices(frames) == [0, 1, 2]


def test_folder_mixed_sizes_names_the_odd_file(frame_folder):
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(frame_folder / "7b.png")
    with pytest.raises(InputError, match=r"7b\.png.*64x40"):
        VideoSource.open(frame_folder)


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no image files"):
        VideoSource.open(tmp_path)


# --------------------------------------------------------------------------- bad input
def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        VideoSource.open(tmp_path / "nope.mp4")


def test_not_a_video(tmp_path):
    p = tmp_path / "fake.mp4"
    p.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match="fake.mp4"):
        VideoSource.open(p)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        VideoSource.open(empty)
    img = tmp_path / "one.png"
    Image.fromarray(encode_index(3)).save(img)
    with pytest.raises(InputError, match="single image"):
        VideoSource.open(img)


def test_audio_only_file_has_no_video_stream(tmp_path):
    p = tmp_path / "sound.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.5", str(p))
    with pytest.raises(InputError, match="no video stream"):
        VideoSource.open(p)


def test_frame_out_of_range(synthetic_video):
    v = VideoSource.open(synthetic_video)
    with pytest.raises(InputError, match="frame 40 does not exist"):
        v.frame(40)
    with pytest.raises(InputError, match="out of range"):
        v.frames(30, 41)


def test_truncated_video_counts_what_the_file_holds(tmp_path):
    # index first (faststart), data cut: the metadata still says 40 frames, the file holds fewer
    rng = np.random.default_rng(0)
    noisy = [np.clip(encode_index(t).astype(int) + rng.integers(-40, 40, (48, 64, 3)), 0, 255).astype(np.uint8)
             for t in range(40)]
    p = write_video(tmp_path / "full.mp4", noisy, output_params=["-movflags", "+faststart", "-g", "8"])
    data = p.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    v = VideoSource.open(cut, chunk_frames=8)
    assert 5 < v.n_frames < 40
    n = v.n_frames
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [i for _, b in v.iter_chunks() for i in indices(b)]
    # every frame the file holds decodes exactly; the last packet may be cut in half, and is
    # then padded with the frame before it, with a warning naming it
    assert got[:n - 1] == list(range(n - 1))
    if got[-1] != n - 1:
        assert got[-1] == n - 2 and v.filled_frames == {n - 1}
        assert any(f"frame {n - 1} could not be decoded" in str(w.message) for w in caught)
    else:
        assert not v.filled_frames
    tiny = tmp_path / "tiny.mp4"  # cut inside the first frame: no frame at all
    tiny.write_bytes(data[:1200])
    with pytest.raises(InputError, match="tiny.mp4"):
        VideoSource.open(tiny)


def test_truncated_video_without_index(tmp_path, synthetic_video):
    cut = tmp_path / "cut.mp4"
    data = synthetic_video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # moov atom at the end is gone
    with pytest.raises(InputError, match="cut.mp4"):
        VideoSource.open(cut)


def test_garbage_in_the_middle_keeps_indices(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.clip(encode_index(t).astype(int) + rng.integers(-40, 40, (48, 64, 3)), 0, 255).astype(np.uint8)
              for t in range(40)]  # noise: a file big enough that the damage hits a few frames only
    p = write_video(tmp_path / "clip.mp4", frames, output_params=["-movflags", "+faststart", "-g", "8"])
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    v = VideoSource.open(bad, chunk_frames=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = indices(v.frames(0, v.n_frames))
    assert len(got) == v.n_frames == 40
    # frames away from the damage are exact: a dropped frame does not shift the ones after it
    assert got[:8] == list(range(8)) and got[-8:] == list(range(32, 40))


def test_chunk_frames_must_be_positive(synthetic_video):
    with pytest.raises(InputError):
        VideoSource.open(synthetic_video, chunk_frames=0)


def test_open_accepts_str_and_source(synthetic_video):
    v = VideoSource.open(os.fspath(synthetic_video))
    assert VideoSource.open(v) is v


def test_session_reads_tuning_frames_without_filling_the_cache(synthetic_video, monkeypatch):
    """Self-training tunes on frames far apart: each is decoded alone, so none
    brings its chunk into the cache."""
    from napari_vidseg.models.vidsegnet import VidSegNet
    from napari_vidseg.video import finetune as ft
    from napari_vidseg.video.session import VideoSession

    session = VideoSession.create(synthetic_video, folder=None)
    session.set_parent(VidSegNet(in_channels=3).eval())
    session.source.clear_cache()
    masks = {t: np.zeros((48, 64), bool) for t in (3, 21, 37)}
    for m in masks.values():
        m[10:30, 20:40] = True
    seen = []
    real = ft.finetune

    def spy(parent, frames, masks, config=None):
        seen.extend(decode_index(f) for f in frames)
        return real(parent, frames, masks, config)

    monkeypatch.setattr(ft, "finetune", spy)
    list(session._tune(masks, ft.FinetuneConfig(steps=1, n_aug=2, batch=2, input_long_side=64)))
    assert seen == [3, 21, 37]
    assert session.source.cached_chunks() == []


def test_bench_video_reports_propagations_reads(synthetic_video, capsys):
    import json

    from napari_vidseg import cli

    assert cli.main(["bench-video", str(synthetic_video), "--random", "2", "--reads", "16", "--chunk-frames", "8"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == 40 and result["sequential_fps"] > 0
    assert result["in_order_ms_per_frame"] > 0 and result["every_4th_ms_per_frame_read"] > 0
