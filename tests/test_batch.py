"""`napari-vidseg batch` on a real dask LocalCluster (2 worker processes) with short
synthetic clips and stand-in networks (tests/batch_fakes.py, loaded once per worker):
the same masks as `segment`, a re-run that skips everything, a killed worker, bad rows."""
from __future__ import annotations

import argparse
import csv
import os
import signal
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import batch_fakes
from napari_vidseg import batch, cli
from napari_vidseg.commands import batch as batch_cmd

T, H, W = 6, 48, 64
STEPS = ["--steps", "2", "--input-size", "64"]
FAST = ["--preset", "fast"]  # one tuning, no second opinion (the split test runs the default's two passes)


def clip(folder, T=T, shift=3):
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:H, :W]
    for t in range(T):
        f = np.full((H, W, 3), 30, np.uint8)
        f[(yy - 24) ** 2 + (xx - 20 - shift * t) ** 2 <= 100] = (240, 220, 40)
        Image.fromarray(f).save(folder / f"{t:05d}.png")
    return folder


@pytest.fixture(scope="module")
def client():
    c = batch.connect(workers=2)
    yield c
    batch.close(c)


@pytest.fixture
def videos(tmp_path):
    """Two clips and their clicks, a manifest with relative paths."""
    clip(tmp_path / "a")
    clip(tmp_path / "b", shift=2)
    (tmp_path / "a.csv").write_text("frame,x,y,positive\n0,20,24,1\n")
    (tmp_path / "b.csv").write_text("frame,x,y,positive,object\n0,20,24,1,cat\n3,26,24,1,cat\n")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("video,clicks\na,a.csv\nb,b.csv\n")
    return manifest


def run_batch(manifest, out, client, *extra, networks=batch_fakes.fake_networks):
    """The batch command on the shared cluster (its address, as --scheduler)."""
    p = argparse.ArgumentParser()
    batch_cmd.configure(p)
    args = p.parse_args([str(manifest), "--out", str(out), "--scheduler", client.scheduler.address, "--quiet",
                         *STEPS, *extra])
    rc = batch_cmd.run(args, networks=networks)
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_name = {}
    for r in rows:
        by_name.setdefault(r["name"], r)  # the first row of a name (a duplicate's is its error)
    return rc, by_name


def pngs(folder):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_results_equal_segments_and_rerun_skips(videos, tmp_path, client, monkeypatch):
    out = tmp_path / "out"
    rc, rows = run_batch(videos, out, client, *FAST)
    assert rc == 0, rows
    assert {n: r["status"] for n, r in rows.items()} == {"a": "done", "b": "done"}
    assert rows["a"]["frames"] == str(T) and rows["a"]["objects"] == "1" and rows["a"]["computed"] == str(T - 1)
    # segment, in this process, with the same networks and options
    from napari_vidseg.video.session import VideoSession

    parent, predictor = batch_fakes.fake_networks()
    monkeypatch.setattr(VideoSession, "predictor", lambda self: predictor)
    monkeypatch.setattr(VideoSession, "_parent_net", lambda self: parent)
    for name in ("a", "b"):
        ref = tmp_path / f"ref-{name}"
        assert cli.main(["segment", str(tmp_path / name), "--clicks", str(tmp_path / f"{name}.csv"),
                         "--out", str(ref), "--quiet", *STEPS, *FAST]) == 0
        got, want = pngs(out / name), pngs(ref)
        assert list(got) == list(want) and len(got) == T
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}/{k}")
    # a second run: nothing to do
    stamp = {p: p.stat().st_mtime_ns for p in (out / "a").glob("*.png")}
    rc, rows = run_batch(videos, out, client, *FAST)
    assert rc == 0 and {r["status"] for r in rows.values()} == {"skipped"}
    assert rows["b"]["frames"] == str(T)
    assert {p: p.stat().st_mtime_ns for p in (out / "a").glob("*.png")} == stamp
    # --force: every video and frame again
    rc, rows = run_batch(videos, out, client, *FAST, "--force")
    assert {r["status"] for r in rows.values()} == {"done"} and rows["a"]["computed"] == str(T - 1)


def test_bad_rows_fail_alone(tmp_path, client, capsys):
    clip(tmp_path / "a")
    (tmp_path / "a.csv").write_text("frame,x,y,positive\n0,20,24,1\n")
    (tmp_path / "bad.csv").write_text("frame,x,y,positive\n0,500,24,1\n")  # outside the frame
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "00000.png").write_bytes(b"not a png")
    (tmp_path / "m.csv").write_text("video,clicks,name\n"
                                    "a,a.csv,\n"
                                    "missing.mp4,a.csv,\n"
                                    "a,nope.csv,other\n"
                                    "a,a.csv,a\n"
                                    "a,bad.csv,outside\n"
                                    "broken,a.csv,\n")
    rc, rows = run_batch(tmp_path / "m.csv", tmp_path / "out", client, *FAST)
    assert rc == 1
    assert rows["a"]["status"] == "done" and len(pngs(tmp_path / "out" / "a")) == T
    err = capsys.readouterr().err
    assert "line 3: video not found" in err and "missing.mp4" in err
    assert "line 4: clicks file not found" in err
    assert "line 5: output folder 'a' is already used by line 2" in err
    assert "outside the 64x48 frame" in rows["outside"]["error"]
    assert rows["broken"]["status"] == "failed" and rows["broken"]["error"]
    assert "\n" not in rows["broken"]["error"]
    assert rows["missing"]["status"] == "failed"


def test_json_manifest_and_session_rows(tmp_path, client):
    clip(tmp_path / "a")
    (tmp_path / "a.csv").write_text("frame,x,y,positive\n0,20,24,1\n")
    # a session annotated elsewhere (here: by segment without propagation) is a row's annotations
    import json

    (tmp_path / "m.json").write_text(json.dumps({"videos": [{"video": "a", "clicks": "a.csv", "name": "first"}]}))
    rc, rows = run_batch(tmp_path / "m.json", tmp_path / "out", client, *FAST)
    assert rc == 0 and rows["first"]["status"] == "done"
    session = tmp_path / "out" / "first" / "session"
    (tmp_path / "s.csv").write_text(f"video,session,name\na,{session},again\n")
    rc, rows = run_batch(tmp_path / "s.csv", tmp_path / "out", client, *FAST)
    assert rc == 0 and rows["again"]["status"] == "done"
    assert rows["again"]["computed"] == "0"  # the session's own resume: every frame done under the same inputs
    assert pngs(tmp_path / "out" / "again").keys() == pngs(tmp_path / "out" / "first").keys()


def test_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(batch, "CONNECT_TIMEOUT", 2.0)
    clip(tmp_path / "a")
    (tmp_path / "a.csv").write_text("frame,x,y,positive\n0,20,24,1\n")
    (tmp_path / "m.csv").write_text("video,clicks\na,a.csv\n")
    rc = cli.main(["batch", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"),
                   "--scheduler", "tcp://127.0.0.1:9", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot reach the dask scheduler at tcp://127.0.0.1:9" in err[0]


def test_killed_worker_is_replaced_and_the_run_completes(tmp_path, client):
    clip(tmp_path / "a", T=12)
    (tmp_path / "a.csv").write_text("frame,x,y,positive\n" + "".join(f"{t},{20 + 3 * t},24,1\n" for t in range(12)))
    (tmp_path / "m.csv").write_text("video,clicks\na,a.csv\n")
    pids = client.run(os.getpid)
    killed = []

    def kill_when_busy():
        for _ in range(200):
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                time.sleep(1.5)  # a few clicks in
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    rc, rows = run_batch(tmp_path / "m.csv", tmp_path / "out", client, *FAST, networks=batch_fakes.slow_networks)
    killer.join()
    assert killed, "no worker was busy"
    assert rc == 0 and rows["a"]["status"] == "done"
    assert len(pngs(tmp_path / "out" / "a")) == 12
    client.wait_for_workers(2, timeout=60)  # the nanny started a new one


def test_example_manifest_ships_and_parses(tmp_path):
    path = batch_cmd.example_manifest_path()
    assert path.is_file()
    import shutil

    shutil.copy(path, tmp_path / "m.csv")
    shutil.copy(path.parent / "sample_clicks.csv", tmp_path)
    (tmp_path / "sample.mp4").write_bytes(b"")  # only its existence is checked here
    entries = batch.read_manifest(tmp_path / "m.csv")
    assert [e.name for e in entries] and not any(e.error for e in entries)


def test_manifest_file_errors(tmp_path):
    from napari_vidseg.types import InputError

    with pytest.raises(InputError, match="manifest not found"):
        batch.read_manifest(tmp_path / "none.csv")
    (tmp_path / "m.csv").write_text("movie,clicks\nx,y\n")
    with pytest.raises(InputError, match="must name video and clicks"):
        batch.read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.json").write_text('[{"video": "x", "clickz": "y"}]')
    with pytest.raises(InputError, match="unknown key"):
        batch.read_manifest(tmp_path / "m.json")


def test_worker_networks_are_loaded_once(monkeypatch):
    calls = []

    def loader():
        calls.append(1)
        return SimpleNamespace(), SimpleNamespace()

    monkeypatch.setattr(batch, "_NETWORKS", {})
    a = batch.worker_networks(loader)
    b = batch.worker_networks(loader)
    assert a is b and len(calls) == 1


def test_long_video_split_over_workers_equals_segment(tmp_path, client, monkeypatch):
    """Tuned once (self-training's first pass and second tuning included), propagated in
    ranges of 5 frames on both workers, into one session: the same masks as segment's
    one pass; a re-run skips it."""
    clip(tmp_path / "long", T=10, shift=2)
    (tmp_path / "c.csv").write_text("frame,x,y,positive,object\n0,20,24,1,1\n7,34,24,1,1\n4,28,24,1,2\n")
    (tmp_path / "m.csv").write_text("video,clicks\nlong,c.csv\n")
    out = tmp_path / "out"
    rc, rows = run_batch(tmp_path / "m.csv", out, client, "--split", "5")
    assert rc == 0 and rows["long"]["status"] == "done", rows
    assert rows["long"]["computed"] == "10" and rows["long"]["ranges"] == "2"  # every frame some object needs: each is annotated for one only
    from napari_vidseg.video.session import VideoSession

    parent, predictor = batch_fakes.fake_networks()
    monkeypatch.setattr(VideoSession, "predictor", lambda self: predictor)
    monkeypatch.setattr(VideoSession, "_parent_net", lambda self: parent)
    ref = tmp_path / "ref"
    assert cli.main(["segment", str(tmp_path / "long"), "--clicks", str(tmp_path / "c.csv"), "--out", str(ref),
                     "--quiet", *STEPS]) == 0
    got, want = pngs(out / "long"), pngs(ref)
    assert list(got) == list(want) and len(got) == 10
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    s = VideoSession.open(out / "long" / "session")
    assert all(s.masks.confidence(o) for o in (1, 2))
    assert not (out / "long" / "session" / "propagation-split").exists() or \
        not any((out / "long" / "session" / "propagation-split").iterdir())
    rc, rows = run_batch(tmp_path / "m.csv", out, client, "--split", "5")
    assert rows["long"]["status"] == "skipped"


def test_write_manifest_for_a_folder_of_videos(tmp_path):
    (tmp_path / "vids").mkdir()
    for n in ("b.mp4", "a.MOV", "notes.txt"):
        (tmp_path / "vids" / n).write_bytes(b"")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.csv").write_text("frame,x,y,positive\n0,1,1,1\n")
    (tmp_path / "ann" / "b.vidseg").mkdir()
    (tmp_path / "ann" / "b.vidseg" / "session.json").write_text("{}")
    m = batch.write_manifest(tmp_path / "vids", tmp_path / "ann", tmp_path / "m.csv")
    entries = batch.read_manifest(m)
    assert [(e.name, bool(e.clicks), bool(e.session), e.error) for e in entries] == \
        [("a", True, False, None), ("b", False, True, None)]
    one = batch.write_manifest(tmp_path / "vids", tmp_path / "ann" / "a.csv", tmp_path / "one.csv")
    assert all(e.clicks and not e.error for e in batch.read_manifest(one))


def test_reuse_a_sessions_fit_on_other_videos(tmp_path, client):
    """Tune once on a session (two named objects), segment two other clips with it:
    every frame of each, objects named as in the session; a re-run skips both."""
    clip(tmp_path / "a")
    (tmp_path / "a.csv").write_text("frame,x,y,positive,object\n0,20,24,1,dog\n0,50,10,1,ball\n")
    (tmp_path / "m.csv").write_text("video,clicks\na,a.csv\n")
    rc, rows = run_batch(tmp_path / "m.csv", tmp_path / "out", client, *FAST)
    assert rc == 0
    clip(tmp_path / "b", shift=2)
    clip(tmp_path / "c", shift=1)
    session = tmp_path / "out" / "a" / "session"
    (tmp_path / "r.csv").write_text(f"video,reuse\nb,{session}\nc,{session}\n")
    rc, rows = run_batch(tmp_path / "r.csv", tmp_path / "out", client, *FAST)
    assert rc == 0 and {r["status"] for r in rows.values()} == {"done"}
    assert rows["b"]["computed"] == str(T) and rows["b"]["objects"] == "2"
    assert len(list((session / "propagation-split").glob("*/state.pt"))) == 1  # fitted once for both
    from napari_vidseg.video.session import VideoSession

    s = VideoSession.open(tmp_path / "out" / "c" / "session")
    assert sorted(o.name for o in s.objects.values()) == ["ball", "dog"]
    assert all(len(s.masks.frames(o)) == T for o in s.objects)
    assert len(pngs(tmp_path / "out" / "b")) == T
    rc, rows = run_batch(tmp_path / "r.csv", tmp_path / "out", client, *FAST)
    assert {r["status"] for r in rows.values()} == {"skipped"}


def test_a_stopped_range_computes_only_its_missing_frames(tmp_path):
    """The split tasks called in this process: a range whose last journal line was lost
    (its worker killed) computes that frame again and no other; finalize indexes all."""
    from napari_vidseg.jobs import Job
    from napari_vidseg.video import split
    from napari_vidseg.video.session import VideoSession

    clip(tmp_path / "v", T=8)
    job = Job(video=str(tmp_path / "v"), clicks=[{"frame": 0, "x": 20, "y": 24, "positive": True}],
              preset="fast", options={"steps": 2, "input_long_side": 64}, session=str(tmp_path / "out" / "session"),
              outputs={"masks": str(tmp_path / "out")})
    prep = split.prepare(job.to_json(), batch_fakes.fake_networks, size=4)
    assert prep["ranges"] == [(1, 5), (5, 8)]
    parts = [split.propagate_range(prep, a, b) for a, b in prep["ranges"]]
    assert [p["computed"] for p in parts] == [4, 3]
    journal = tmp_path / "out" / "session" / "propagation-split" / prep["key"][:16] / "range-000005.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-1]) + lines[-1][:5])  # the last line cut short by a kill
    again = split.propagate_range(prep, 5, 8)
    assert again["computed"] == 1 and sorted(again["frames"]) == [5, 6, 7]
    row = split.finalize(prep, parts[0], again, networks=batch_fakes.fake_networks)
    assert row["status"] == "done" and row["computed"] == 5 and len(pngs(tmp_path / "out")) == 8
    s = VideoSession.open(tmp_path / "out" / "session")
    assert sorted(s.masks.confidence(1)) == list(range(1, 8))
