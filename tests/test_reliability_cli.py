"""Issue 31 through `napari-vidseg segment`: outputs checked before any work (1, 4, 6), a
session folder for every run and the resume command on interruption (2), resume by running
the same command again (5), one writer per output folder (6), disk errors as one line (4),
corrupt frames skipped and marked (8), and the "also seen" items of the CLI.

Interruptions are real processes killed with real signals (tests/reliability_helpers.py)."""
from __future__ import annotations

import errno
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_vidseg import cli
from napari_vidseg.commands import segment

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reliability_helpers as h  # noqa: E402

T, H, W = h.T, h.H, h.W


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    h.install_fakes(monkeypatch)


@pytest.fixture
def video(tmp_path):
    return h.make_frames(tmp_path / "frames")


@pytest.fixture
def clicks(tmp_path):
    return h.write_clicks(tmp_path / "clicks.csv")


def run(*args):
    return cli.main(["segment", *map(str, args)])


def frame_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- 1. an output path that is the input, inside it, or a file: refused before any work ----------
@pytest.mark.parametrize("where", ["input", "inside", "file", "session-input", "sticker-input"])
def test_outputs_on_the_input_are_refused_before_any_work(video, clicks, tmp_path, capsys, monkeypatch, where):
    from napari_vidseg.video.session import VideoSession

    def no_work(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(VideoSession, "create", no_work)
    before = frame_bytes(video)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    out = {"input": video, "inside": video / "masks", "file": a_file}.get(where, tmp_path / "out")
    extra = {"session-input": ["--session", video], "sticker-input": ["--sticker", video / "00002.png"]}.get(where, [])
    rc = run(video, "--clicks", clicks, "--out", out, *extra)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert {"input": "is the input video itself", "inside": "inside the input frame folder",
            "file": "is a file, not a folder", "session-input": "is the input video itself",
            "sticker-input": "inside the input frame folder"}[where] in err
    assert frame_bytes(video) == before and a_file.read_text() == "mine"
    assert not (video / "masks").exists() and not (tmp_path / "out.session").exists()


def test_a_video_file_as_out_is_refused(tmp_path, clicks, capsys):
    vid = tmp_path / "clip.mp4"
    vid.write_bytes(b"not read: refused before")
    assert run(vid, "--clicks", clicks, "--out", vid) == 2
    assert "is the input video itself" in capsys.readouterr().err
    assert vid.read_bytes() == b"not read: refused before"


# -- 2. a session folder for every run; the interruption message says where and how to resume ----
def test_default_session_beside_the_output_named_first(video, clicks, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(video, "--clicks", clicks, "--out", out, *h.FAST) == 0
    first = capsys.readouterr().out.splitlines()[0]
    session = tmp_path / "out.session"
    assert first.startswith("session: ") and str(session) in first
    assert (session / "session.json").is_file() and len(list((session / "masks" / "1").glob("*.png"))) == T


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_says_where_the_work_is_and_the_command_resumes_it(video, clicks, tmp_path, sig):
    out = tmp_path / "out"
    proc = h.start_child(["segment", str(video), "--clicks", str(clicks), "--out", str(out), *h.FAST])
    seen = []
    try:
        first = proc.stdout.readline()
        for line in proc.stdout:
            if line.startswith("frame"):
                seen.append(int(line.split()[1]))
                if len(seen) == 2:
                    proc.send_signal(sig)
                    break
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(seen) == 2, err[-2000:]
    session = (tmp_path / "out.session").absolute()
    assert first.startswith("session: ") and str(session) in first
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err[-2000:]
    assert "Traceback" not in err
    line = [ln for ln in err.splitlines() if "resume with:" in ln]
    assert len(line) == 1, err
    assert f"the work so far is in {session}" in line[0]
    command = line[0].split("resume with: ", 1)[1]
    assert f"--session {session}" in command
    # the work is where the message says: the clicked frame and the frames reported written
    from napari_vidseg.types import Provenance
    from napari_vidseg.video.session import VideoSession

    with VideoSession.open(session) as s:
        assert s.masks.provenance(1, 0) is Provenance.USER
        assert set(seen) <= set(s.masks.frames(1, Provenance.PROPAGATED))
    # and the printed command finishes the job
    words = shlex.split(command)
    assert words[:2] == ["napari-vidseg", "segment"]
    assert cli.main(words[1:]) == 0
    assert len(h.mask_files(out)) == T


# -- 4. outputs checked up front; a later OSError is one line naming the path and what was kept --
def test_unwritable_output_is_refused_up_front(video, clicks, tmp_path, capsys, monkeypatch):
    from napari_vidseg.video.session import VideoSession

    monkeypatch.setattr(VideoSession, "create", lambda *a, **k: (_ for _ in ()).throw(AssertionError("work")))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is needed: fails the same way as root")
    for flags in (["--out", blocker / "out"], ["--out", tmp_path / "o", "--composite", blocker / "c.mp4"]):
        assert run(video, "--clicks", clicks, *flags) == 2
        err = capsys.readouterr().err
        assert "cannot write in" in err and str(blocker) in err and "Traceback" not in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: chmod cannot make a folder read-only (the file-as-folder and "
                           "patched-OSError tests cover the same path)")
def test_read_only_output_folder_is_refused_up_front(video, clicks, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert run(video, "--clicks", clicks, "--out", ro / "out") == 2
        assert "cannot write in" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def test_a_failed_start_leaves_no_empty_folders(tmp_path, clicks, capsys):
    assert run(tmp_path / "missing.mp4", "--clicks", clicks, "--out", tmp_path / "out") == 2
    assert "no such file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clicks.csv"]


def test_too_little_free_space_is_refused_up_front(video, clicks, tmp_path, capsys, monkeypatch):
    import shutil

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    assert run(video, "--clicks", clicks, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "not enough free space" in err and "KB is free" in err


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_disk_error_at_export_is_one_line_and_the_work_is_kept(video, clicks, tmp_path, capsys, monkeypatch, code):
    from napari_vidseg.io import masks as mio

    real = mio.write_mask_png
    calls = []

    def failing(path, mask):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(code, os.strerror(code), str(path))
        return real(path, mask)

    monkeypatch.setattr(mio, "write_mask_png", failing)
    out = tmp_path / "out"
    assert run(video, "--clicks", clicks, "--out", out, *h.FAST) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(out / "00002.png") in err
    assert ("disk is full" if code == errno.ENOSPC else "read-only") in err
    assert f"kept in the session {(tmp_path / 'out.session').absolute()} ({T} mask(s) of {T} frame(s))" in err
    assert "resume with: napari-vidseg segment" in err
    # the fix: the same command again writes everything (its own output folder now)
    monkeypatch.setattr(mio, "write_mask_png", real)
    assert run(video, "--clicks", clicks, "--out", out, *h.FAST) == 0
    assert len(h.mask_files(out)) == T


def test_disk_full_while_writing_a_mask_leaves_no_temporary_file(video, clicks, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".00001.png.999.tmp").write_bytes(b"left by a run killed mid-write")
    real_save = Image.Image.save

    def full(self, fp, *a, **k):
        if Path(str(fp)).parent == out and "00003" in str(fp):
            Path(fp).write_bytes(b"half a png")
            raise OSError(errno.ENOSPC, "No space left on device", str(fp))
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", full)
    assert run(video, "--clicks", clicks, "--out", out, "--no-propagate", "--quiet") == 2  # leftovers are ours
    assert "the disk is full" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]  # no .tmp


# -- 5. resume: the same command re-opens the session and continues --------------------------------
def test_same_command_resumes_and_says_how_many_frames_it_computed(video, clicks, tmp_path, capsys):
    args = [video, "--clicks", clicks, "--out", tmp_path / "out", "--session", tmp_path / "s", *h.FAST[:-1]]
    assert run(*args) == 0
    first = capsys.readouterr().out
    assert f"propagation: computed {T - 1} frames, skipped 0 already done" in first
    assert run(*args) == 0
    again = capsys.readouterr().out
    assert "resuming the session" in again and f"object 1: {T} of {T} frames have a mask" in again
    # the same inputs: nothing is computed again
    assert f"propagation: computed 0 frames, skipped {T - 1} already done" in again
    from napari_vidseg.video.session import VideoSession

    with VideoSession.open(tmp_path / "s") as s:
        assert len(s.interactions[(1, 0)].clicks) == 1  # the clicks were not applied twice
        assert list(s.objects) == [1]


def test_same_command_after_sigkill_resumes(video, clicks, tmp_path, capsys):
    """A kill -9 leaves no message and stale lock files; the same command simply goes on."""
    args = [str(video), "--clicks", str(clicks), "--out", str(tmp_path / "out"), *h.FAST]
    proc = h.start_child(["segment", *args])
    seen = []
    try:
        for line in proc.stdout:
            if line.startswith("frame"):
                seen.append(int(line.split()[1]))
                if len(seen) == 2:
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL and len(seen) == 2
    session = tmp_path / "out.session"
    assert (session / "session.lock").exists()  # left by the killed process
    capsys.readouterr()
    assert cli.main(["segment", *args[:-1]]) == 0
    out = capsys.readouterr().out
    assert "resuming the session" in out and f"{T} of {T} frames have a mask" in out, out
    assert len(h.mask_files(tmp_path / "out")) == T
    from napari_vidseg.types import Provenance
    from napari_vidseg.video.session import VideoSession

    with VideoSession.open(session) as s:
        assert s.masks.provenance(1, 0) is Provenance.USER and len(s.interactions[(1, 0)].clicks) == 1


def test_resume_with_another_video_or_other_clicks_is_a_clear_error(video, clicks, tmp_path, capsys):
    assert run(video, "--clicks", clicks, "--out", tmp_path / "out", "--no-propagate", "--quiet") == 0
    other = h.make_frames(tmp_path / "other", shift=2)
    capsys.readouterr()
    assert run(other, "--clicks", clicks, "--out", tmp_path / "out", "--quiet") == 2
    err = capsys.readouterr().err
    assert "holds the work on another video" in err and str(video.resolve()) in err
    moved = h.write_clicks(tmp_path / "moved.csv", "frame,x,y,positive\n0,30,24,1\n")
    assert run(video, "--clicks", moved, "--out", tmp_path / "out", "--quiet") == 2
    assert "already holds other clicks on frame 0" in capsys.readouterr().err


# -- 6. a foreign non-empty output folder needs --overwrite; the output folder is locked -----------
def test_foreign_output_folder_needs_overwrite_and_stale_masks_go(video, clicks, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for t in range(T + 4):  # an older, longer job's masks
        Image.fromarray(np.full((H, W), 255, np.uint8)).save(out / f"{t:05d}.png")
    (out / "notes.txt").write_text("mine")
    assert run(video, "--clicks", clicks, "--out", out, "--no-propagate", "--quiet") == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--overwrite" in err
    assert len(h.mask_files(out)) == T + 4
    assert run(video, "--clicks", clicks, "--out", out, "--no-propagate", "--quiet", "--overwrite") == 0
    assert [p.name for p in h.mask_files(out)] == [f"{t:05d}.png" for t in range(T)]
    assert (out / "notes.txt").read_text() == "mine"  # only mask files are replaced or removed
    assert not np.asarray(Image.open(out / "00003.png")).any()  # this job's (empty) mask, not the old one
    # its own output now: a re-run needs no --overwrite
    assert run(video, "--clicks", clicks, "--out", out, "--no-propagate", "--quiet") == 0


def test_output_folder_in_use_by_another_process_is_refused(video, clicks, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from napari_vidseg.io.folder_lock import FolderLock; "
         "l = FolderLock.acquire(sys.argv[1], 'the output folder'); print('held', flush=True); time.sleep(60)",
         str(out / ".vidseg-output.lock")], cwd=h.REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run(video, "--clicks", clicks, "--out", out, "--no-propagate", "--quiet") == 2
        err = capsys.readouterr().err
        assert f"is in use by process {holder.pid}" in err and "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()
    # its holder gone (killed: no clean-up), the folder is free again
    assert run(video, "--clicks", clicks, "--out", out, "--no-propagate", "--quiet") == 0
    assert not (out / ".vidseg-output.lock").exists()


# -- 8. a corrupt frame in a frame folder: skipped and marked, never a traceback -------------------
@pytest.mark.parametrize("bad", [0, 3])
def test_corrupt_frame_in_a_folder_is_skipped_and_listed(video, tmp_path, capsys, bad):
    (video / f"{bad:05d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    clicks = h.write_clicks(tmp_path / "c.csv", "frame,x,y,positive\n1,23,24,1\n")
    with pytest.warns(RuntimeWarning, match=f"frame {bad} could not be decoded"):
        rc = run(video, "--clicks", clicks, "--out", tmp_path / "out", *h.FAST[:-1])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"frames that could not be read: {bad} " in out
    assert f"object 1: frames to check first: {bad}" in out  # first in the worst-frames list
    assert len(h.mask_files(tmp_path / "out")) == T


# -- also seen ---------------------------------------------------------------------------------------
def test_one_frame_video_does_not_tune(tmp_path, capsys, monkeypatch):
    from napari_vidseg.video import finetune

    monkeypatch.setattr(finetune, "finetune", lambda *a, **k: (_ for _ in ()).throw(AssertionError("tuned")))
    one = h.make_frames(tmp_path / "one", n=1)
    clicks = h.write_clicks(tmp_path / "c.csv")
    assert run(one, "--clicks", clicks, "--out", tmp_path / "out") == 0
    assert "nothing to propagate" in capsys.readouterr().out
    assert len(h.mask_files(tmp_path / "out")) == 1


@pytest.mark.parametrize("sep", [";", "\t"])
def test_clicks_file_with_semicolons_or_tabs(tmp_path, sep):
    path = h.write_clicks(tmp_path / "c.csv", f"frame{sep}x{sep}y{sep}positive\n0{sep}20.5{sep}24{sep}1\n"
                                              f"2{sep}10{sep}5{sep}0\n")
    rows = segment.read_clicks(path)
    assert [(r.frame, r.click.x, r.click.y, r.click.positive) for r in rows] == \
        [(0, 20.5, 24.0, True), (2, 10.0, 5.0, False)]


def test_only_negative_clicks_give_an_empty_mask_through_the_cli(video, tmp_path, monkeypatch):
    from napari_vidseg.video.session import VideoSession

    monkeypatch.undo()  # the real predictor: the rule lives in it, so the CLI and the library agree
    if not (h.REPO / "weights" / "interactive_v8.pt").exists():
        pytest.skip("the shipped interactive weights are missing")
    monkeypatch.setattr(VideoSession, "_parent_net", h.random_parent)
    clicks = h.write_clicks(tmp_path / "c.csv", "frame,x,y,positive\n2,26,24,0\n2,50,10,0\n")
    assert run(video, "--clicks", clicks, "--out", tmp_path / "out", "--no-propagate", "--quiet") == 0
    assert not np.asarray(Image.open(tmp_path / "out" / "00002.png")).any()


# -- 4 on a real disk: a small tmpfs that fills up mid-run (where this machine lets us mount one) -------
@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN: {r.stderr.strip()[:80]}); the "
                    f"patched-OSError tests cover the same path")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def test_disk_filling_up_mid_run_is_one_line_and_the_same_command_finishes(video, clicks, small_disk, capsys,
                                                                            monkeypatch):
    from napari_vidseg.commands.guard import RunGuard

    attach = RunGuard.attach
    filled = []

    def attach_then_fill(self, session, n):  # the up-front check passes, then the disk fills
        attach(self, session, n)
        filled.append(fill(small_disk))

    monkeypatch.setattr(RunGuard, "attach", attach_then_fill)
    args = [video, "--clicks", clicks, "--out", small_disk / "out", *h.FAST]
    assert run(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "the disk is full" in err and f"kept in the session {(small_disk / 'out.session').absolute()}" in err
    assert not [p for p in small_disk.rglob("*.tmp")]  # no half-written files left behind
    filled[0].unlink()  # space again: the same command finishes the job
    monkeypatch.setattr(RunGuard, "attach", attach)
    assert run(*args) == 0
    assert len(h.mask_files(small_disk / "out")) == T


def test_too_small_disk_is_refused_up_front_for_real(video, clicks, small_disk, capsys):
    fill(small_disk)
    assert run(video, "--clicks", clicks, "--out", small_disk / "out") == 2
    err = capsys.readouterr().err
    assert ("not enough free space" in err or "cannot write in" in err) and "Traceback" not in err
