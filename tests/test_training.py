"""The parent's training script on a tiny synthetic DAVIS-like tree (no shared data)."""
import json

import numpy as np
import torch
from PIL import Image

from napari_vidseg.models.vidsegnet import VidSegNet
from napari_vidseg.training import train_parent


def _fake_davis(root, names, n_frames=3, size=(48, 64)):
    (root / "ImageSets").mkdir(parents=True)
    (root / "ImageSets" / "train.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    for name in names:
        frames, masks = root / "JPEGImages" / "240p" / name, root / "Annotations" / "240p" / name
        frames.mkdir(parents=True), masks.mkdir(parents=True)
        for t in range(n_frames):
            img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            m = np.zeros(size, np.uint8)
            m[10 + t:30 + t, 20:40] = 255
            Image.fromarray(img).save(frames / f"{t:05d}.jpg")
            Image.fromarray(m).save(masks / f"{t:05d}.png")


def test_fixed_step_count_holds_out_the_named_sequences(tmp_path):
    data, out = tmp_path / "davis", tmp_path / "run"
    _fake_davis(data, ["a", "b", "c"])
    init = tmp_path / "interactive.pt"
    torch.save(VidSegNet(in_channels=6).state_dict(), init)
    train_parent.main(["--data", str(data), "--out", str(out), "--init", str(init), "--steps", "3",
                       "--minutes", "0", "--size", "32", "--frame-side", "48", "--batch", "2",
                       "--threads", "1", "--holdout", "b"])
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["step"] == 3  # the step count, not the (zero) minutes, ended the run
    VidSegNet(in_channels=3).load_state_dict(ckpt["model"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    data_event = next(e for e in log if e.get("event") == "data")
    assert data_event["n_sequences"] == 2 and data_event["holdout"] == ["b"]
    assert data_event["n_pairs"] == 6


def _trained(tmp_path, extra):
    data, out = tmp_path / "davis", tmp_path / "run"
    _fake_davis(data, ["a", "b"])
    init = tmp_path / "interactive.pt"
    torch.manual_seed(0)
    start = VidSegNet(in_channels=6).state_dict()
    torch.save(start, init)
    train_parent.main(["--data", str(data), "--out", str(out), "--init", str(init), "--steps", "2",
                       "--size", "32", "--frame-side", "48", "--batch", "2", "--threads", "1",
                       "--holdout", "", "--lr", "1e-2", *extra])
    after = torch.load(out / "last.pt", map_location="cpu", weights_only=False)["model"]
    return start, after


def _changed(start, after, prefix):
    return any(not torch.equal(start[k].float(), after[k].float()) for k in after
               if k.startswith(prefix) and "running_" not in k and "num_batches" not in k)


def test_early_encoder_is_frozen_unless_training_starts_earlier(tmp_path):
    start, after = _trained(tmp_path / "frozen", [])
    assert not _changed(start, after, "encoder._blocks.5.")
    assert _changed(start, after, "encoder._blocks.11.") and _changed(start, after, "decoder.")
    start, after = _trained(tmp_path / "from5", ["--train-early-from", "5"])
    assert not _changed(start, after, "encoder._blocks.4.") and not _changed(start, after, "encoder._conv_stem.")
    assert _changed(start, after, "encoder._blocks.5.") and _changed(start, after, "encoder._blocks.10.")
