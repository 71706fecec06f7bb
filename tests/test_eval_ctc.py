"""eval-ctc: the CTC layout checks (one-line errors), the scoring, and the command end to end
on a small synthetic sequence (propagation replaced by a stand-in that the test controls)."""
import json
from pathlib import Path

import numpy as np
import pytest

from napari_vidseg.eval import ctc
from napari_vidseg.types import InputError, Provenance

T, H, W = 5, 40, 48


def _disk(cy, cx, r):
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def truth_labels():
    """Track 1 moves right; track 2 stays; track 3 leaves after frame 2; track 1 divides into
    4 and 5 at frame 3."""
    vol = np.zeros((T, H, W), np.uint16)
    for t in range(T):
        if t < 3:
            vol[t][_disk(10, 8 + 3 * t, 5)] = 1
            vol[t][_disk(30, 38, 5)] = 3
        else:
            vol[t][_disk(6, 14 + 2 * t, 4)] = 4
            vol[t][_disk(16, 14 + 2 * t, 4)] = 5
        vol[t][_disk(30, 12, 6)] = 2
    return vol


MAN_TRACK = "1 0 2 0\n2 0 4 0\n3 0 2 0\n4 3 4 1\n5 3 4 1\n"


def make_ctc(root: Path, man_track: str = MAN_TRACK, vol=None) -> Path:
    import tifffile

    vol = truth_labels() if vol is None else vol
    seq, gt = root / "01", root / "01_GT"
    for d in (seq, gt / "TRA", gt / "SEG"):
        d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(T):
        img = (80 + 200 * (vol[t] > 0) + rng.integers(0, 20, (H, W))).astype(np.uint16)
        tifffile.imwrite(seq / f"t{t:03d}.tif", img, compression="lzw")
        tifffile.imwrite(gt / "TRA" / f"man_track{t:03d}.tif", vol[t])
        tifffile.imwrite(gt / "SEG" / f"man_seg{t:03d}.tif", (vol[t] * 10).astype(np.uint16))  # SEG ids differ
    (gt / "TRA" / "man_track.txt").write_text(man_track)
    return seq


def test_open_ctc_reads_tracks_and_lineages(tmp_path):
    s = ctc.open_ctc(make_ctc(tmp_path))
    assert s.n_frames == T and s.first_tracks() == [1, 2, 3]
    assert s.lineages[1] == {1, 4, 5} and s.lineages[2] == {2}
    masks = s.truth_masks(3)
    assert sorted(masks) == [2, 4, 5] and np.array_equal(masks[4], truth_labels()[3] == 4)


@pytest.mark.parametrize("breakage, match", [
    (lambda r: __import__("shutil").rmtree(r / "01_GT"), "ground-truth folder is missing"),
    (lambda r: (r / "01_GT" / "TRA" / "man_track.txt").unlink(), "man_track.txt: missing"),
    (lambda r: (r / "01_GT" / "TRA" / "man_track002.tif").unlink(), "no TRA mask"),
    (lambda r: __import__("shutil").rmtree(r / "01_GT" / "SEG"), "SEG: missing"),
    (lambda r: (r / "01" / "t001.tif").unlink(), "missing t001.tif"),
    (lambda r: (r / "01_GT" / "TRA" / "man_track.txt").write_text("1 0 2\n"), "line 1: expected four integers"),
    (lambda r: (r / "01_GT" / "TRA" / "man_track.txt").write_text(MAN_TRACK.replace("3 0 2 0", "3 0 1 0")),
     "track 3 is listed for frames 0..1"),
    (lambda r: (r / "01_GT" / "TRA" / "man_track.txt").write_text(MAN_TRACK.replace("5 3 4 1\n", "")),
     "label 5 in man_track003.tif is not listed"),
    (lambda r: (r / "01_GT" / "TRA" / "man_track.txt").write_text(MAN_TRACK.replace("4 3 4 1", "4 2 4 1")),
     "track 4 is listed from frame 2"),
    (lambda r: (r / "01_GT" / "TRA" / "man_track.txt").write_text(MAN_TRACK.replace("4 3 4 1", "4 3 4 9")),
     "parent 9 is not in the file"),
])
def test_bad_ctc_folders_are_one_line_errors(tmp_path, breakage, match):
    seq = make_ctc(tmp_path)
    breakage(tmp_path)
    with pytest.raises(InputError, match=match) as e:
        ctc.open_ctc(seq)
    assert "\n" not in str(e.value)


def test_score_perfect_swapped_and_lost(tmp_path):
    s = ctc.open_ctc(make_ctc(tmp_path))
    vol = truth_labels()

    def perfect(t):  # object k follows track k, and its daughters keep the mother's id
        lab = vol[t].copy()
        lab[np.isin(lab, [4, 5])] = 1
        return lab

    r = ctc.score(s, perfect, [1, 2, 3], range(1, T))
    assert r["identity"] == 1.0 and r["track_j"] == 1.0
    # SEG: daughters 4 and 5 are both covered by object 1, each more than half: J = 1/2 each at frames 3-4
    n_cells = sum(len(set(np.unique(vol[t]).tolist()) - {0}) for t in range(1, T))
    assert r["seg"] == pytest.approx((n_cells - 4 + 4 * 0.5) / n_cells)

    def swapped(t):  # objects 1 and 2 trade places
        lab = perfect(t)
        a, b = lab == 1, lab == 2
        lab[a], lab[b] = 2, 1
        return lab

    r2 = ctc.score(s, swapped, [1, 2, 3], range(1, T))
    # identity: pairs are (1: frames 1-4), (2: 1-4), (3: 1-2) = 10; only track 3's 2 are right
    assert r2["identity"] == pytest.approx(2 / 10)
    assert r2["track_j"] < 0.5
    # track 3 leaves after frame 2: an object that vanishes with it scores 1 on frames 3-4
    assert r["track_j_per_object"][3] == 1.0


def test_eval_ctc_end_to_end_with_a_stand_in_propagation(tmp_path, monkeypatch, capsys):
    seq_dir = make_ctc(tmp_path)
    s = ctc.open_ctc(seq_dir)
    called = {}

    def fake_propagate(session, objects, options):
        # writes each object's lineage truth (daughters under the mother's object): the scoring path is tested
        called["objects"] = list(objects)
        for t in range(1, T):
            truth = s.truth_masks(t)
            for obj in objects:
                k = int(session.objects[obj].name.split()[-1])
                m = ctc.union_of(truth, s.lineages[k], (H, W))
                session.masks.set(obj, t, m, Provenance.PROPAGATED, 1.0)

    monkeypatch.setattr(ctc, "_propagate_objects", fake_propagate)
    from napari_vidseg.cli import main

    out = tmp_path / "res"
    assert main(["eval-ctc", str(seq_dir), "--init", "mask", "--export", str(out),
                 "--json-out", str(tmp_path / "s.json")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(called["objects"]) == 3
    assert summary["objects"] == 3 and summary["frames"] == T and summary["identity"] == 1.0
    assert summary["track_j"] == 1.0 and 0.5 < summary["seg"] < 1.0
    for key in ("seconds", "seconds_per_frame", "peak_rss_mb", "method", "options"):
        assert key in summary
    assert (out / "res_track.txt").is_file() and len(list(out.glob("mask*.tif"))) == T


def test_eval_ctc_bad_options(tmp_path, capsys):
    from napari_vidseg.cli import main

    seq_dir = make_ctc(tmp_path)
    assert main(["eval-ctc", str(seq_dir), "--init", "clicks:0"]) == 2
    assert main(["eval-ctc", str(seq_dir), "--method", "magic"]) == 2
    assert main(["eval-ctc", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "clicks:N" in err and "magic" in err and "no such folder" in err
