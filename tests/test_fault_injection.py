"""Fault injection on the real propagation path (real VideoSource, MaskStore, finetune, propagate).

1. A child process propagates through a tiny video with a random-init parent network and
   prints every finished frame with the checksum of its mask; the test SIGKILLs it after a
   few frames, re-opens the session folder and finds every reported frame intact
   (same checksum, PROPAGATED), the user's frame-0 mask intact, and nothing else broken.
2. Cancelling in-process (closing the generator) keeps exactly the frames done.

tests/test_session.py has a kill test with fake finetune/propagate modules; this one runs
the real modules so that their own writes (and the store's compaction) are covered too.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_vidseg.types import Provenance

from conftest import encode_index, write_video

T, H, W = 8, 24, 32


def mask_digest(mask) -> str:
    m = np.asarray(mask, bool)
    return hashlib.sha1(np.packbits(m).tobytes() + str(m.shape).encode()).hexdigest()


def user_mask() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[4:14, 6:20] = True
    return m


def tiny_config():
    from napari_vidseg.video.finetune import FinetuneConfig

    # the smallest legal job: one step on one augmented copy, 32-pixel input, one frame per batch
    return FinetuneConfig(steps=1, n_aug=1, batch=1, input_long_side=32, batch_infer=1, device="cpu")


def random_parent():
    import torch

    from napari_vidseg.models.vidsegnet import VidSegNet

    torch.manual_seed(0)
    return VidSegNet(in_channels=3).eval()


CHILD = r'''
import hashlib, sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
import test_fault_injection as F
from napari_vidseg.types import Provenance
from napari_vidseg.video.session import VideoSession

s = VideoSession.create(sys.argv[1], sys.argv[2])
obj = s.add_object("victim")
s.set_mask(0, obj, F.user_mask())
s.set_parent(F.random_parent())
print("ready", flush=True)
for p in s.propagate(obj, F.tiny_config()):
    if p.stage == "propagate" and p.frame is not None:
        # the progress event comes after the store wrote the frame: report what is on record
        print("done", p.frame, F.mask_digest(s.masks.get(obj, p.frame)), flush=True)
        time.sleep(float(sys.argv[4]))  # a slow consumer, so the kill lands mid-run
print("finished", flush=True)
'''


@pytest.fixture
def tiny_video(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mp4", (encode_index(t, H, W) for t in range(T)))


def _read_lines(proc, out: list, stop_after: int, killed: threading.Event) -> None:
    for line in proc.stdout:
        out.append(line.strip())
        if sum(ln.startswith("done") for ln in out) >= stop_after and not killed.is_set():
            os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no finally blocks, no flush
            killed.set()


def test_sigkill_during_propagation_loses_no_finished_frame(tmp_path, tiny_video):
    from napari_vidseg.video.session import VideoSession

    folder = tmp_path / "session"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_video), str(folder), str(Path(__file__).parent),
                             "1.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines: list[str] = []
    killed = threading.Event()
    reader = threading.Thread(target=_read_lines, args=(proc, lines, 3, killed), daemon=True)
    reader.start()
    reader.join(timeout=900)  # the shared 2-core machine can be very slow to import torch
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    stderr = proc.stderr.read()
    assert killed.is_set(), f"the child never reported 3 frames: {lines} {stderr[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert "finished" not in lines  # the kill really landed mid-propagation
    reported = {int(ln.split()[1]): ln.split()[2] for ln in lines if ln.startswith("done")}
    assert len(reported) >= 3

    # re-open: nothing half-written may break it
    r = VideoSession.open(folder)
    (obj,) = r.objects
    assert r.masks.provenance(obj, 0) is Provenance.USER
    assert np.array_equal(r.masks.get(obj, 0), user_mask())
    for t, digest in reported.items():
        assert r.masks.provenance(obj, t) is Provenance.PROPAGATED, t
        assert mask_digest(r.masks.get(obj, t)) == digest, f"frame {t} changed after the kill"
    # beyond the reported frames: at most the one in flight, and only whole masks
    extra = [t for t in r.masks.frames(obj) if t not in reported and t != 0]
    assert len(extra) <= 1, extra
    for t in extra:
        m = r.masks.get(obj, t)
        assert m is not None and m.shape == (H, W)
    # and the re-opened session keeps working: propagate the rest
    r.set_parent(random_parent())
    list(r.propagate(obj, tiny_config()))
    assert r.masks.frames(obj) == list(range(T))
    assert np.array_equal(r.masks.get(obj, 0), user_mask())


def test_cancelled_propagation_keeps_done_frames_only(tmp_path, tiny_video):
    from napari_vidseg.video.session import VideoSession

    folder = tmp_path / "session"
    s = VideoSession.create(tiny_video, folder)
    obj = s.add_object()
    s.set_mask(0, obj, user_mask())
    s.set_parent(random_parent())
    job = s.propagate(obj, tiny_config())
    done = {}
    for p in job:
        if p.stage == "propagate" and p.frame is not None:
            done[p.frame] = mask_digest(s.masks.get(obj, p.frame))
            if len(done) == 2:
                break
    job.close()  # cancel
    assert len(done) == 2
    for store in (s.masks, VideoSession.open(folder).masks):
        assert store.frames(obj, Provenance.PROPAGATED) == sorted(done)
        assert store.frames(obj, Provenance.USER) == [0]
        assert np.array_equal(store.get(obj, 0), user_mask())
        for t, digest in done.items():
            assert mask_digest(store.get(obj, t)) == digest
        for t in set(range(T)) - set(done) - {0}:
            assert store.get(obj, t) is None and store.provenance(obj, t) is None
