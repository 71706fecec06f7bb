"""`napari-vidseg eval-ctc SEQUENCE_DIR`: many look-alike objects tracked through a Cell
Tracking Challenge sequence.

Layout (the CTC's own): SEQUENCE_DIR = ``.../NN`` holds the frames ``tTTT.tif``; its
sibling ``NN_GT`` holds ``TRA/man_trackTTT.tif`` (label = track id, on every frame),
``TRA/man_track.txt`` (``id begin end parent``) and ``SEG/man_segTTT.tif`` (full cell
masks, on some or all frames).

Protocol:
1. Objects = the tracks present in the first frame. Each one's true first-frame mask
   is the SEG cell its TRA marker lies in (the TRA mask where frame 0 has no SEG).
2. ``--init clicks:K``: per object, K robot clicks on frame 0 (the first at the interior
   point farthest from the cell's boundary, the next ones at the deepest point of the
   largest error, positive or negative); ``--init mask``: the true masks.
3. All objects are propagated with the chosen method (`_propagate_objects`).
4. ``--corrections R``: R rounds; in each, per object, the robot clicks once on the worst
   frame the session offers for it; then everything is propagated again.
5. The objects' masks are made one label image per frame (overlaps go to the object the
   pixel lies deepest in) and scored (frames after the first):
   seg       the CTC SEG measure over every SEG frame (eval/ctc_metrics.seg_scores);
   track_j   mean over objects and SEG frames of the IoU between object k and the union
             of the SEG cells of track k and its descendants (empty vs empty = 1);
   identity  share of (object, frame) pairs, over frames where track k or a descendant
             has a TRA marker, in which object k covers more than half of those markers.
The last line printed is one JSON object (see `run`).
"""
from __future__ import annotations

import json
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..types import InputError, Interactions, Provenance
from .ctc_metrics import identity_hit, lineage, seg_scores, track_iou, track_masks, union_of

_FRAME = re.compile(r"^t(\d+)\.tiff?$", re.IGNORECASE)


# --------------------------------------------------------------------------- the sequence
@dataclass
class CTCSequence:
    frames_dir: Path
    gt_dir: Path
    frame_files: list[Path]
    tra_files: list[Path]
    seg_files: dict[int, Path]  # frame -> SEG mask file (some frames only)
    tracks: dict[int, tuple[int, int, int]]  # id -> (begin, end, parent)
    lineages: dict[int, set[int]] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.frame_files)

    def tra(self, t: int) -> np.ndarray:
        return _imread(self.tra_files[t])

    def seg(self, t: int) -> np.ndarray | None:
        return _imread(self.seg_files[t]) if t in self.seg_files else None

    def first_tracks(self) -> list[int]:
        """The tracks present in frame 0, in id order."""
        return sorted(set(np.unique(self.tra(0)).tolist()) - {0})

    def truth_masks(self, t: int) -> dict[int, np.ndarray]:
        """{track: full mask} at frame t: SEG cells by their TRA marker, else the TRA masks."""
        tra = self.tra(t)
        seg = self.seg(t)
        if seg is not None:
            return track_masks(seg, tra)
        return {int(k): tra == k for k in np.unique(tra) if k}


def _imread(path: Path) -> np.ndarray:
    import tifffile

    try:
        return np.asarray(tifffile.imread(path))
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: not a readable TIFF: {e}") from None


def _numbered(folder: Path, prefix: str) -> dict[int, Path]:
    pat = re.compile(rf"^{prefix}(\d+)\.tiff?$", re.IGNORECASE)
    out = {}
    for p in folder.iterdir():
        m = pat.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def read_man_track(path: Path) -> dict[int, tuple[int, int, int]]:
    """man_track.txt -> {id: (begin, end, parent)}; InputError naming the first bad line."""
    tracks: dict[int, tuple[int, int, int]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            k, b, e, p = (int(v) for v in parts)
        except ValueError:
            raise InputError(f"{path}, line {i}: expected four integers 'id begin end parent', got {line!r}") \
                from None
        if k < 1 or b < 0 or e < b or p < 0 or k in tracks:
            raise InputError(f"{path}, line {i}: {line.strip()!r} is not a valid track (id >= 1, once; "
                             f"0 <= begin <= end; parent >= 0)")
        tracks[k] = (b, e, p)
    for k, (b, _, p) in tracks.items():
        if p and p not in tracks:
            raise InputError(f"{path}: track {k}'s parent {p} is not in the file")
    return tracks


def open_ctc(seq_dir) -> CTCSequence:
    """Check the layout and that man_track.txt agrees with the TRA masks; one-line InputErrors."""
    d = Path(seq_dir).expanduser()
    if not d.is_dir():
        raise InputError(f"{d}: no such folder (expected a CTC sequence folder such as .../01)")
    frames = {int(m.group(1)): p for p in d.iterdir() if (m := _FRAME.match(p.name))}
    if not frames:
        raise InputError(f"{d}: no frames tTTT.tif in the folder")
    n = len(frames)
    if sorted(frames) != list(range(n)):
        missing = sorted(set(range(max(frames) + 1)) - set(frames))[:5]
        raise InputError(f"{d}: frames are not numbered 0..{n - 1} without gaps (missing t{missing[0]:03d}.tif)")
    gt = d.parent / f"{d.name}_GT"
    if not gt.is_dir():
        raise InputError(f"{gt}: the ground-truth folder is missing (expected {d.name}_GT beside {d.name})")
    tra_dir, seg_dir = gt / "TRA", gt / "SEG"
    if not tra_dir.is_dir():
        raise InputError(f"{tra_dir}: missing (the tracking ground truth)")
    man = tra_dir / "man_track.txt"
    if not man.is_file():
        raise InputError(f"{man}: missing (the track list)")
    tra = _numbered(tra_dir, "man_track")
    absent = [t for t in range(n) if t not in tra]
    if absent:
        raise InputError(f"{tra_dir}: {len(absent)} frame(s) have no TRA mask (first: man_track{absent[0]:03d}.tif)")
    if not seg_dir.is_dir():
        raise InputError(f"{seg_dir}: missing (the segmentation ground truth)")
    seg = {t: p for t, p in _numbered(seg_dir, "man_seg").items() if t < n}
    if not seg:
        raise InputError(f"{seg_dir}: no man_segTTT.tif for any of the {n} frames")
    tracks = read_man_track(man)
    seq = CTCSequence(d, gt, [frames[t] for t in range(n)], [tra[t] for t in range(n)], seg, tracks)
    _check_tracks(seq)
    seq.lineages = lineage(tracks)
    return seq


def _check_tracks(seq: CTCSequence) -> None:
    """Every TRA label is a listed track, within its begin..end, and every track starts where listed."""
    man = seq.gt_dir / "TRA" / "man_track.txt"
    starts: dict[int, int] = {}
    for t in range(seq.n_frames):
        for k in set(np.unique(seq.tra(t)).tolist()) - {0}:
            if k not in seq.tracks:
                raise InputError(f"{man} does not match the masks: label {k} in man_track{t:03d}.tif is not listed")
            b, e, _ = seq.tracks[k]
            if not b <= t <= e:
                raise InputError(f"{man} does not match the masks: track {k} is listed for frames {b}..{e} but "
                                 f"man_track{t:03d}.tif holds it")
            starts.setdefault(k, t)
    for k, (b, _, _) in seq.tracks.items():
        if b < seq.n_frames and starts.get(k) != b:
            raise InputError(f"{man} does not match the masks: track {k} is listed from frame {b} but "
                             f"man_track{b:03d}.tif does not hold it")


# --------------------------------------------------------------------------- the run
def _propagate_objects(session, objects: list[int], options) -> None:
    """Propagate every object through the video: all of them in one pass (one decode of each
    frame, the backbone once per frame for all objects, objects competing per pixel)."""
    from ..progress import drain

    drain(session.propagate(list(objects), options.config, method=options.method), quiet=True)


def _click_robot_init(session, obj: int, truth: np.ndarray, n_clicks: int) -> list[float]:
    """K robot clicks on frame 0 for one object; the IoU after each click."""
    from ..interactions.robot import interior_click, iou, next_click

    ious, mask = [], np.zeros(truth.shape, bool)
    for k in range(n_clicks):
        c = interior_click(truth) if k == 0 else next_click(mask, truth)
        if c is None:  # perfect already
            ious.append(1.0)
            continue
        mask = session.add_interactions(0, obj, Interactions([c]))
        ious.append(float(iou(mask, truth)))
    return ious


def _labels_at(session, obj_of_track: dict[int, int], t: int) -> np.ndarray:
    """Frame t's objects as one label image whose labels are the track ids."""
    from ..io.formats import masks_to_labels

    H, W = int(session.source.height), int(session.source.width)
    return masks_to_labels({k: session.masks.get_or_empty(o, t) for k, o in obj_of_track.items()}, (H, W))


def score(seq: CTCSequence, labels_of, tracks: list[int], frames: range) -> dict:
    """seg, track_j, identity over `frames` (see the module's doc); labels_of(t) -> label image."""
    seg_vals, tj_vals, id_hits, id_pairs = [], [], 0, 0
    per_track = {k: [] for k in tracks}
    for t in frames:
        pred = labels_of(t)
        seg_gt = seq.seg(t)
        tra = seq.tra(t)
        if seg_gt is not None:
            seg_vals.extend(seg_scores(pred, seg_gt).values())
            truth = track_masks(seg_gt, tra)
            for k in tracks:
                v = track_iou(pred, k, union_of(truth, seq.lineages[k], pred.shape))
                tj_vals.append(v)
                per_track[k].append(v)
        for k in tracks:
            marker = np.isin(tra, list(seq.lineages[k]))
            if marker.any():
                id_pairs += 1
                id_hits += identity_hit(pred, k, marker)
    return {"seg": float(np.mean(seg_vals)) if seg_vals else float("nan"),
            "track_j": float(np.mean(tj_vals)) if tj_vals else float("nan"),
            "identity": id_hits / id_pairs if id_pairs else float("nan"),
            "track_j_per_object": {int(k): round(float(np.mean(v)), 4) for k, v in per_track.items() if v}}


class _Head:
    """The first n frames of a lazy stack (for measuring on part of a sequence)."""

    def __init__(self, stack, n: int):
        self.stack, self.shape = stack, (int(n),) + tuple(stack.shape[1:])
        self.dtype, self.ndim = stack.dtype, stack.ndim

    def __getitem__(self, key):
        t = key[0] if isinstance(key, tuple) else key
        if isinstance(t, slice):
            t = slice(*t.indices(self.shape[0]))
        elif not 0 <= int(t) < self.shape[0]:
            raise IndexError(t)
        return self.stack[(t,) + tuple(key[1:])] if isinstance(key, tuple) else self.stack[t]


@dataclass
class Options:
    init: str
    n_clicks: int
    corrections: int
    method: str
    config: object


def configure(parser) -> None:
    parser.add_argument("sequence", metavar="SEQUENCE_DIR", help="CTC sequence folder (frames tTTT.tif), "
                        "with its ground truth in the sibling SEQUENCE_DIR_GT")
    parser.add_argument("--init", default="clicks:1", help="clicks:K (robot clicks per object on frame 0) or mask")
    parser.add_argument("--corrections", type=int, default=0, metavar="R",
                        help="rounds of worst-frame correction (one robot click per object per round)")
    parser.add_argument("--method", default="osvos",
                        help="propagation method (napari_vidseg.video.propagators: osvos, and any registered)")
    parser.add_argument("--max-objects", type=int, default=None, metavar="N",
                        help="only the first N objects (for measuring speed on part of a sequence)")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="only the first N frames")
    parser.add_argument("--first-frame-only", action="store_true",
                        help="stop after the first frame's initialisation: per-object IoU only")
    parser.add_argument("--contrast-limits", default=None, metavar="LO,HI",
                        help="intensity window mapped to 0..255 (default: percentiles of sampled frames)")
    parser.add_argument("--percentiles", default=None, metavar="LO,HI",
                        help="the percentile window (default 0.5,99.8)")
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps")
    parser.add_argument("--self-train", type=int, default=None, metavar="K", help="see eval-video")
    parser.add_argument("--refine", action=__import__("argparse").BooleanOptionalAction, default=None,
                        help="the second opinion of the interactive segmenter in propagation (default: on)")
    parser.add_argument("--no-crf", action="store_true", help="no dense CRF for the clicks")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--export", default=None, metavar="DIR", help="also write the result in CTC format to DIR")
    parser.add_argument("--json-out", default=None, help="also write the summary here")


def _pair(text: str | None, what: str):
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{what} takes two numbers LO,HI, got {text!r}") from None
    return lo, hi


def run(args) -> int:
    import torch

    from ..io.arrays import ArraySource
    from ..io.intensity import DEFAULT_PERCENTILES
    from ..io.tiff import open_tiff
    from ..video.session import VideoSession
    from .video import machine, make_config, parse_init

    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    from ..video import propagators

    method = propagators.get(args.method).name  # an unknown name is a one-line error
    if args.corrections < 0:
        raise InputError("--corrections must be 0 or more")
    kind, n_clicks = parse_init(args.init)
    seq = open_ctc(args.sequence)
    n = seq.n_frames if args.frames is None else max(1, min(int(args.frames), seq.n_frames))
    stack = open_tiff(seq.frames_dir)
    if n < seq.n_frames:
        stack = _Head(stack, n)
    src = ArraySource(stack, fps=1.0, name=str(seq.frames_dir), axes="TYX",
                      contrast_limits=_pair(args.contrast_limits, "--contrast-limits"),
                      percentiles=_pair(args.percentiles, "--percentiles") or DEFAULT_PERCENTILES,
                      scale=getattr(stack, "scale", None) or None)
    cfg = make_config(args) if method == "osvos" else propagators.make_config(method)
    opts = Options(kind, n_clicks, args.corrections, method, cfg)
    session = VideoSession.create(src)
    if args.no_crf:
        from ..segment.predictor import InteractivePredictor

        session.set_predictor(InteractivePredictor(use_crf=False))
    tracks = seq.first_tracks()
    if args.max_objects:
        tracks = tracks[:args.max_objects]
    truth0 = seq.truth_masks(0)
    obj_of: dict[int, int] = {}
    first_ious: dict[int, list[float]] = {}
    for k in tracks:
        obj = session.add_object(f"track {k}")
        obj_of[k] = obj
        if kind == "mask":
            session.set_mask(0, obj, truth0[k], Provenance.USER)
            first_ious[k] = [1.0]
        else:
            first_ious[k] = _click_robot_init(session, obj, truth0[k], n_clicks)
    t_init = time.perf_counter() - t_start
    summary: dict = {"sequence": str(seq.frames_dir), "objects": len(tracks), "frames": n,
                     "init": args.init, "method": args.method,
                     "first_frame_iou": round(float(np.mean([v[-1] for v in first_ious.values()])), 4),
                     "first_frame_iou_per_click": [round(float(np.mean([v[i] for v in first_ious.values()])), 4)
                                                   for i in range(len(next(iter(first_ious.values()))))],
                     "intensity": src.intensity.to_json()}
    details: dict = {"first_frame_ious": {int(k): [round(x, 4) for x in v] for k, v in first_ious.items()}}
    if not args.first_frame_only:
        t0 = time.perf_counter()
        _propagate_objects(session, list(obj_of.values()), opts)
        t_prop = time.perf_counter() - t0
        scores = score(seq, lambda t: _labels_at(session, obj_of, t), tracks, range(1, n))
        rounds = []
        for r in range(args.corrections):
            t0 = time.perf_counter()
            _correction_round(session, seq, obj_of)
            _propagate_objects(session, list(obj_of.values()), opts)
            s = score(seq, lambda t: _labels_at(session, obj_of, t), tracks, range(1, n))
            rounds.append({k: round(s[k], 4) for k in ("seg", "track_j", "identity")} |
                          {"seconds": round(time.perf_counter() - t0, 1)})
            scores = s
        summary.update({k: round(scores[k], 4) for k in ("seg", "track_j", "identity")})
        summary["corrections"] = args.corrections
        summary["after_each_correction"] = rounds
        summary["propagate_seconds"] = round(t_prop, 1)
        details["track_j_per_object"] = scores["track_j_per_object"]
        if args.export:
            from ..io.formats import TrackedObject, write

            write("ctc", args.export, (_labels_at(session, obj_of, t) for t in range(n)),
                  [TrackedObject(k, f"track {k}") for k in tracks], n_frames=n)
    seconds = time.perf_counter() - t_start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary.update({"init_seconds": round(t_init, 1), "seconds": round(seconds, 1),
                    # CPU time of the process: on a shared machine wall time alone says little
                    "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
                    "seconds_per_frame": round(seconds / n, 3),
                    "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                    "options": {"corrections": args.corrections, "max_objects": args.max_objects,
                                "frames": args.frames, "contrast_limits": args.contrast_limits,
                                "percentiles": args.percentiles, "no_crf": args.no_crf,
                                "config": {k: v for k, v in vars(cfg).items() if not k.startswith("_")}},
                    "machine": machine()})
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({**summary, "details": details}, indent=1, default=str))
    print(json.dumps(summary, default=str))
    return 0


def _correction_round(session, seq: CTCSequence, obj_of: dict[int, int]) -> None:
    """Per object: one robot click on the worst frame the session offers for it."""
    from ..interactions.robot import next_click

    for k, obj in obj_of.items():
        worst = session.worst_frames(obj, 1)
        if not worst:
            continue
        t = worst[0]
        truth = union_of(seq.truth_masks(t), seq.lineages[k], (session.source.height, session.source.width))
        c = next_click(session.masks.get_or_empty(obj, t), truth)
        if c is not None:
            session.correct(t, obj, Interactions([c]))


__all__ = ["open_ctc", "read_man_track", "score", "CTCSequence", "configure", "run"]
