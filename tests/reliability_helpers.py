"""Shared pieces of the tests/test_reliability_*.py files (issue 31: nothing the user made is
lost): a tiny frame-folder video, fake models that make `segment` fast, and a child script
that runs `segment` in a real process that a test can interrupt with a signal."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

T, H, W = 6, 48, 64
REPO = Path(__file__).resolve().parents[1]


class DiskPredictor:
    """A disk of radius 8 around each positive click, cut by the negative ones."""

    def set_image(self, frame):
        self.shape = frame.shape[:2]

    def predict(self, interactions, prev_mask=None):
        yy, xx = np.mgrid[:self.shape[0], :self.shape[1]]
        mask = np.zeros(self.shape, bool) if prev_mask is None else np.asarray(prev_mask, bool).copy()
        for c in interactions.clicks:
            disk = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= 8 ** 2
            mask = mask | disk if c.positive else mask & ~disk
        return SimpleNamespace(mask=mask, prob=mask.astype(np.float32))


def random_parent(self=None):
    import torch

    from napari_vidseg.models.vidsegnet import VidSegNet

    torch.manual_seed(0)
    return VidSegNet(in_channels=3).eval()


def install_fakes(monkeypatch) -> None:
    from napari_vidseg.video.session import VideoSession

    monkeypatch.setattr(VideoSession, "predictor", lambda self: DiskPredictor())
    monkeypatch.setattr(VideoSession, "_parent_net", random_parent)


def make_frames(folder: Path, n: int = T, shift: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:H, :W]
    for t in range(n):
        f = np.full((H, W, 3), 30, np.uint8)
        f[(yy - 24) ** 2 + (xx - 20 - shift * t) ** 2 <= 100] = (240, 220, 40)
        Image.fromarray(f).save(folder / f"{t:05d}.png")
    return folder


def write_clicks(path: Path, text: str = "frame,x,y,positive\n0,20,24,1\n") -> Path:
    path.write_text(text)
    return path


FAST = ["--steps", "2", "--input-size", "64", "--self-train", "0", "--quiet"]

#: `segment` in a child process with the fake models; prints "frame T" as each propagated
#: frame is written and then waits `delay` seconds, so that a test can signal it mid-run.
CHILD = r"""
import signal, sys, time
# A test runner may have set SIGINT to be ignored, which children inherit; a terminal's Ctrl-C is not.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
import reliability_helpers as h
from napari_vidseg.video.session import VideoSession
VideoSession.predictor = lambda self: h.DiskPredictor()
VideoSession._parent_net = h.random_parent
orig = VideoSession.propagate
def slow(self, obj, config=None, *a, **kw):
    for p in orig(self, obj, config, *a, **kw):
        yield p
        if p.stage == "propagate" and p.frame is not None:
            print("frame", p.frame, flush=True)
            time.sleep({delay})
VideoSession.propagate = slow
from napari_vidseg import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def start_child(args: list[str], delay: float = 0.5) -> subprocess.Popen:
    code = CHILD.format(tests=str(Path(__file__).resolve().parent), delay=delay)
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def mask_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.png"))
