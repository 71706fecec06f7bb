"""`eval-video --save-masks DIR` writes exactly the masks it scores, in the DAVIS layout."""
import json

import numpy as np
from PIL import Image

from napari_vidseg.eval import video as ev
from napari_vidseg.io.masks import read_mask_folder


def _tiny_davis(root, T=4, H=24, W=32):
    (root / "ImageSets").mkdir(parents=True)
    (root / "ImageSets" / "val_dev.txt").write_text("blob\n")
    fd = root / "JPEGImages" / "480p" / "blob"
    md = root / "Annotations" / "480p" / "blob"
    fd.mkdir(parents=True)
    md.mkdir(parents=True)
    truth = np.zeros((T, H, W), bool)
    for t in range(T):
        truth[t, 6:16, 4 + 3 * t:14 + 3 * t] = True
        Image.fromarray(np.full((H, W, 3), 40 * t, np.uint8)).save(fd / f"{t:05d}.jpg")
        Image.fromarray(truth[t].astype(np.uint8) * 255).save(md / f"{t:05d}.png")
    return truth


def test_save_masks_writes_the_scored_masks(tmp_path, monkeypatch, capsys):
    truth = _tiny_davis(tmp_path / "davis")
    # A fake propagation: each frame's truth shifted one pixel, so the saved masks are not the truth.
    pred = {t: np.roll(truth[t], 1, axis=1) for t in range(len(truth))}
    monkeypatch.setattr(ev, "load_net", lambda *a, **k: None)
    monkeypatch.setattr("napari_vidseg.video.refine.refiner_for", lambda *a, **k: None)
    monkeypatch.setattr(ev, "run_sequence", lambda *a, **k: (pred, {t: 1.0 for t in pred}, 0.1, 0.1, len(pred) - 1))
    parser = __import__("argparse").ArgumentParser()
    ev.configure(parser)
    out = tmp_path / "saved"
    args = parser.parse_args([str(tmp_path / "davis"), "--save-masks", str(out), "--no-refine"])
    assert ev.run(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = read_mask_folder(out / "blob")
    assert sorted(saved) == list(range(len(truth)))
    assert sorted(p.name for p in (out / "blob").iterdir()) == [f"{t:05d}.png" for t in range(len(truth))]
    for t in saved:
        assert np.array_equal(saved[t], pred[t])
    # Re-scoring the saved files gives the figure eval-video printed.
    from napari_vidseg.eval.davis import score_sequence

    rescored = score_sequence(saved, truth)
    assert summary["per_sequence"]["blob"]["j"] == round(rescored["j"], 4)
    assert summary["per_sequence"]["blob"]["f"] == round(rescored["f"], 4)
