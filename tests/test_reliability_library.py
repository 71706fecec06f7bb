"""Issue 31 in the library: rotated videos (3), H.264 in AVI (issue 26), one writer per
session folder (7), damaged mask PNGs (8), temporary files after a full disk, only-negative
clicks, and masks of a failed tuning reaching the worst-frames list."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_vidseg.io.video import VideoSource
from napari_vidseg.types import Click, InputError, Interactions, Provenance
from napari_vidseg.video.mask_store import MaskStore
from napari_vidseg.video.session import VideoSession

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reliability_helpers as h  # noqa: E402

T, H, W = h.T, h.H, h.W


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def asymmetric_frames(n=6):
    """Frames whose orientation shows: a bright block top-left, a green band at the bottom."""
    out = []
    for t in range(n):
        a = np.full((H, W, 3), 40, np.uint8)
        a[:12, :20] = 250
        a[38:, :, 1] = 200
        a[20:28, 30 + 2 * t:38 + 2 * t, 0] = 255  # moves: tells frames apart
        out.append(a)
    return out


@pytest.fixture
def frames_video(tmp_path):
    return h.make_frames(tmp_path / "frames")


# -- 3. rotated videos come out upright, with the rotated size -------------------------------------
@pytest.mark.parametrize("angle,k", [(90, 1), (270, -1), (180, 2)])
def test_rotated_video_decodes_upright(tmp_path, angle, k):
    import imageio.v2 as iio

    plain = tmp_path / "plain.mp4"
    iio.mimwrite(plain, asymmetric_frames(), fps=10, macro_block_size=1, quality=10)
    rotated = tmp_path / f"rot{angle}.mp4"
    subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-display_rotation", str(angle),
                    "-i", str(plain), "-c", "copy", str(rotated)], check=True)
    src, ref = VideoSource.open(rotated), VideoSource.open(plain)
    want = (W, H) if angle % 180 == 90 else (H, W)
    assert (src.height, src.width) == want and src.frame(0).shape == (*want, 3)
    for t in (0, 3, 5):  # the same pixels, turned (the stream is copied, not re-encoded)
        assert np.array_equal(src.frame(t), np.rot90(ref.frame(t), k)), t


# -- issue 26: H.264 in AVI (imageio's default for .avi) opens, every frame in place --------------
@pytest.mark.parametrize("kind", ["imageio-default", "mjpeg", "mpeg-ps"])
def test_avi_opens_with_every_frame_in_place(tmp_path, kind):
    """imageio's default .avi (H.264 with B-frames, no packet times), MJPEG in AVI, and MPEG-PS,
    whose packets carry some times but not all (still read by seeking, not from the start)."""
    import imageio.v2 as iio

    frames = [np.full((H, W, 3), 10 + 20 * t, np.uint8) for t in range(12)]
    path = tmp_path / "clip.avi"
    if kind == "imageio-default":
        iio.mimwrite(path, frames, fps=10)  # what a user's script writes
    elif kind == "mjpeg":
        iio.mimwrite(path, frames, fps=10, codec="mjpeg", quality=10)
    else:
        import imageio_ffmpeg

        path = path.with_suffix(".mpg")
        writer = imageio_ffmpeg.write_frames(str(path), (W, H), fps=25, codec="mpeg2video", quality=10,
                                             macro_block_size=1)
        writer.send(None)
        for f in frames:
            writer.send(f)
        writer.close()
    src = VideoSource.open(path, chunk_frames=4)
    assert src.n_frames == 12
    assert src._backend.ordinal == (kind == "imageio-default")  # decode order only where no packet has a time
    means = [float(src.frame(t).mean()) for t in (7, 2, 11, 0, 5)]  # seeks back and forth
    assert means == pytest.approx([10 + 20 * t for t in (7, 2, 11, 0, 5)], abs=4)
    assert not src.filled_frames
    got = [float(b.mean()) for _, blk in src.iter_chunks(3, 9) for b in blk]
    assert got == pytest.approx([10 + 20 * t for t in range(3, 9)], abs=4)


# -- 7. one session folder, one writer ---------------------------------------------------------------
def test_second_process_on_a_session_folder_is_refused_and_a_dead_ones_lock_recovered(frames_video, tmp_path):
    folder = tmp_path / "s"
    VideoSession.create(frames_video, folder).close()
    code = ("import sys, time; from napari_vidseg.video.session import VideoSession; "
            "s = VideoSession.open(sys.argv[1]); print('open', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=h.REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(InputError, match=f"in use by process {holder.pid}"):
            VideoSession.open(folder)
    finally:
        holder.kill()  # SIGKILL: no clean-up, the lock file stays behind
        holder.wait()
    lock = folder / "session.lock"
    assert json.loads(lock.read_text())["pid"] == holder.pid  # stale
    s = VideoSession.open(folder)  # recovered
    s.add_object("after")
    s.close()
    assert not lock.exists()


def test_stale_lock_file_without_flock_is_recovered(frames_video, tmp_path, monkeypatch):
    """Where fcntl is missing (Windows) the pid check alone decides."""
    from napari_vidseg.io import folder_lock

    monkeypatch.setattr(folder_lock, "fcntl", None)
    folder = tmp_path / "s"
    VideoSession.create(frames_video, folder).close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / "session.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with VideoSession.open(folder) as s:
        s.add_object()
    live = {"pid": os.getppid() or 1, "host": socket.gethostname()}
    (folder / "session.lock").write_text(json.dumps(live))
    with pytest.raises(InputError, match=f"in use by process {live['pid']}"):
        VideoSession.open(folder)


def test_two_openers_in_one_process_never_interleave(frames_video, tmp_path):
    """The issue's case: open the folder twice, set_mask in each, compact one index."""
    folder = tmp_path / "s"
    a = VideoSession.create(frames_video, folder)
    obj = a.add_object()
    b = VideoSession.open(folder)  # the newer opener writes from now on
    user = np.zeros((H, W), bool)
    user[10:20, 10:20] = True
    b.set_mask(2, obj, user)
    with pytest.raises(InputError, match="opened again"):
        a.set_mask(3, obj, user)
    with pytest.raises(InputError, match="opened again"):
        a.masks.compact()
    b.masks.compact()
    b.close()
    with VideoSession.open(folder) as c:
        assert c.masks.provenance(obj, 2) is Provenance.USER and c.masks.frames(obj) == [2]


# -- 8. a damaged mask PNG in a session: skipped, kept aside, listed -------------------------------
def test_damaged_mask_png_is_kept_aside_and_listed(frames_video, tmp_path):
    folder = tmp_path / "s"
    s = VideoSession.create(frames_video, folder)
    obj = s.add_object()
    m = np.zeros((H, W), bool)
    m[20:30, 15:25] = True
    s.set_mask(0, obj, m)
    for t in range(1, T):
        s.masks.set(obj, t, np.roll(m, 3 * t, axis=1), Provenance.PROPAGATED, 0.9)
    s.close()
    png = folder / "masks" / str(obj) / "00003.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"torn" * 40)
    r = VideoSession.open(folder)
    with pytest.warns(RuntimeWarning, match="00003.png cannot be read"):
        result = list(r.export(tmp_path / "out"))  # no traceback
    assert len(list((tmp_path / "out").glob("*.png"))) == T
    assert not np.asarray(Image.open(tmp_path / "out" / "00003.png")).any()
    assert (png.parent / ".corrupt" / "00003.png").read_bytes().endswith(b"torn")  # kept, not deleted
    assert r.damaged_frames(obj) == [3] and r.worst_frames(obj, k=2)[0] == 3
    assert result is not None
    r.close()
    with VideoSession.open(folder) as again:  # still listed after a re-open, until it gets a new mask
        assert again.damaged_frames() == [3]
        again.masks.set(obj, 3, m, Provenance.PROPAGATED, 0.9)
        assert again.damaged_frames() == []


# -- also seen: temporary files after a full disk --------------------------------------------------
def test_full_disk_leaves_no_temporary_files_and_leftovers_are_swept(tmp_path, monkeypatch):
    store = MaskStore(tmp_path / "s", H, W, T)
    real_save = Image.Image.save

    def full(self, fp, *a, **k):
        Path(fp).write_bytes(b"half a png")  # what a full disk leaves: a partial file
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(OSError):
        store.set(1, 0, np.ones((H, W), bool), Provenance.USER)
    monkeypatch.setattr(Image.Image, "save", real_save)
    hidden = [p for p in (tmp_path / "s").rglob(".*") if p.is_file()]
    assert hidden == []
    # leftovers of a process killed mid-write (another pid) go on the next open
    for p in (tmp_path / "s" / ".index.json.999.1.tmp", tmp_path / "s" / "masks" / "1" / ".00004.png.999.1.tmp"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    MaskStore(tmp_path / "s", H, W, T)
    assert [p for p in (tmp_path / "s").rglob("*.tmp")] == []


# -- also seen: only-negative clicks mean "nothing here" in the library too ------------------------
def test_only_negative_clicks_give_an_empty_mask_in_the_library(frames_video):
    if not (h.REPO / "weights" / "interactive_v8.pt").exists():
        pytest.skip("the shipped interactive weights are missing")
    from napari_vidseg.segment.predictor import InteractivePredictor

    s = VideoSession.create(frames_video)
    obj = s.add_object()
    neg = Interactions([Click(26, 24, positive=False), Click(50, 10, positive=False)])
    assert not s.add_interactions(2, obj, neg).any()
    p = InteractivePredictor()
    p.set_image(s.source.frame(2))
    assert not p.predict(neg).mask.any()
    # with a mask to cut from, a negative click still removes part of it
    pos = s.add_interactions(3, obj, Interactions([Click(29, 24)]))
    after = s.add_interactions(3, obj, Interactions([Click(33, 24, positive=False)]))
    assert pos.any() and after.sum() <= pos.sum()


# -- also seen: masks of a failed tuning are flagged, whatever their confidence --------------------
def test_empty_propagated_masks_reach_the_worst_frames_list(frames_video):
    s = VideoSession.create(frames_video)
    obj = s.add_object()
    m = np.zeros((H, W), bool)
    m[20:30, 15:25] = True
    s.set_mask(0, obj, m)
    for t in range(1, T):
        empty = t in (2, 4)  # what a failed tuning gave: nothing, and very sure of it
        s.masks.set(obj, t, np.zeros_like(m) if empty else m, Provenance.PROPAGATED, 0.9996 if empty else 0.6)
    assert sorted(s.worst_frames(obj, k=2)) == [2, 4]
    assert s.frame_scores(obj)[2] == 0.0


def test_output_lock_is_not_taken_over_within_a_process(tmp_path):
    from napari_vidseg.io.folder_lock import FolderLock

    first = FolderLock.acquire(tmp_path / ".lock", "the output folder", takeover=False)
    with pytest.raises(InputError, match="in use by another job of this process"):
        FolderLock.acquire(tmp_path / ".lock", "the output folder", takeover=False)
    first.release()
    FolderLock.acquire(tmp_path / ".lock", "the output folder", takeover=False).release()
    assert not (tmp_path / ".lock").exists()


def test_file_system_without_flock_falls_back_to_the_pid_file(tmp_path, monkeypatch):
    from napari_vidseg.io import folder_lock

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(folder_lock.fcntl, "flock", no_flock)
    lock = folder_lock.FolderLock.acquire(tmp_path / ".lock", "the session folder")
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / ".lock").exists()
