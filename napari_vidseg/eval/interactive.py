"""`napari-vidseg eval-interactive DATASET_DIR`: the NoC benchmark.

DATASET_DIR holds images/ and masks/ with matching stems (mask 0 = background,
255 = object, 128 = ignored), like ../shared/data/grabcut. For each image the
click robot (interactions.robot.next_click) looks at the current prediction
and the truth and places the next click at the interior-most point of the
larger error region, up to --max-clicks clicks. Our network gets all clicks so
far plus its previous prediction as the current mask (how the GUI uses it);
GrabCut gets the same clicks (eval/grabcut_baseline.py).

--refine is the second mode: each image starts from an imperfect copy of the
truth (eroded, dilated, shifted or partly cut; chosen per image by a seeded
generator), and the curve's index 0 is that start mask's IoU.

Prints one line per image and method, then, as the LAST line, one JSON object
(the top-level keys describe "ours" when it ran, else the first method; every
method's figures are under "methods").
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt

from ..interactions.robot import next_click
from ..types import Click, InputError, Interactions
from .metrics import boundary_f, iou, mean_curve, noc_from_curve, pad_curve

METHODS = ("ours", "grabcut")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
TIMING_SIZE = (854, 480)  # (width, height): a DAVIS 480p frame
REFINE_REPORT_CLICKS = (0, 1, 2, 4)


# -- data -------------------------------------------------------------------
@dataclass
class Sample:
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    gt: np.ndarray  # (H, W) bool
    ignore: np.ndarray  # (H, W) bool


def _files_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def list_dataset(root: Path, limit: int | None = None) -> list[tuple[str, Path, Path]]:
    root = Path(root)
    img_dir, mask_dir = root / "images", root / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise InputError(f"{root} must hold images/ and masks/ folders; {d} is missing")
    images, masks = _files_by_stem(img_dir), _files_by_stem(mask_dir)
    stems = sorted(set(images) & set(masks))
    if not stems:
        raise InputError(f"no image in {img_dir} has a mask with the same stem in {mask_dir}")
    if limit is not None:
        stems = stems[:max(int(limit), 0)]
    return [(s, images[s], masks[s]) for s in stems]


def load_sample(name: str, image_path: Path, mask_path: Path) -> Sample:
    image = np.asarray(Image.open(image_path).convert("RGB"))
    m = np.asarray(Image.open(mask_path))
    if m.ndim == 3:
        m = m[..., 0]
    if m.dtype == bool:
        m = m.astype(np.uint8) * 255
    if m.shape != image.shape[:2]:
        raise InputError(f"mask {mask_path} is {m.shape}, its image is {image.shape[:2]}")
    # 255 = object, 128 = ignored band, 0 = background; a 0/1 mask also works.
    if m.max() <= 1:
        m = m * 255
    return Sample(name, image, m > 192, (m > 64) & (m <= 192))


def resize_sample(s: Sample, size: tuple[int, int]) -> Sample:
    """The sample resized to (width, height); masks with nearest neighbour."""
    img = np.asarray(Image.fromarray(s.image).resize(size, Image.BILINEAR))
    lab = s.gt.astype(np.uint8) * 255 + s.ignore.astype(np.uint8) * 128
    lab = np.asarray(Image.fromarray(lab).resize(size, Image.NEAREST))
    return Sample(f"{s.name}@{size[0]}x{size[1]}", img, lab > 192, (lab > 64) & (lab <= 192))


# -- refinement start masks ---------------------------------------------------
def perturb_mask(gt: np.ndarray, name: str, seed: int = 0) -> tuple[np.ndarray, str]:
    """A deterministic imperfect copy of `gt` (same name and seed -> same mask):
    eroded, dilated, shifted or with a part cut off, by an amount relative to
    the object's size (sqrt of its area)."""
    gt = np.asarray(gt, bool)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    kind = ["erode", "dilate", "shift", "cut"][int(rng.integers(4))]
    scale = max(np.sqrt(np.count_nonzero(gt)), 1.0)
    if kind == "erode":
        r = max(rng.uniform(0.06, 0.12) * scale, 2.0)
        return distance_transform_edt(gt) > r, kind
    if kind == "dilate":
        r = max(rng.uniform(0.06, 0.12) * scale, 2.0)
        return distance_transform_edt(~gt) <= r, kind
    if kind == "shift":
        d = max(rng.uniform(0.10, 0.18) * scale, 2.0)
        a = rng.uniform(0, 2 * np.pi)
        dy, dx = int(round(d * np.sin(a))), int(round(d * np.cos(a)))
        out = np.zeros_like(gt)
        h, w = gt.shape
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            gt[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        return out, kind
    # cut: drop the part of the object beyond a random line (20-35 % of it).
    ys, xs = np.nonzero(gt)
    if len(ys) == 0:
        return gt.copy(), kind
    a = rng.uniform(0, 2 * np.pi)
    proj = xs * np.cos(a) + ys * np.sin(a)
    cut = proj > np.quantile(proj, 1 - rng.uniform(0.20, 0.35))
    out = gt.copy()
    out[ys[cut], xs[cut]] = False
    return out, kind


# -- methods ----------------------------------------------------------------
class OursSession:
    """Our predictor on one image: all clicks so far + previous prediction."""

    def __init__(self, predictor, image, start_mask=None):
        self.predictor = predictor
        predictor.set_image(image)
        self.clicks: list[Click] = []
        self.prev = None if start_mask is None else np.asarray(start_mask, bool)

    def add_click(self, click: Click) -> tuple[np.ndarray, float]:
        self.clicks.append(click)
        inter = Interactions(list(self.clicks))
        t0 = time.perf_counter()
        out = self.predictor.predict(inter, prev_mask=self.prev)
        ms = (time.perf_counter() - t0) * 1000
        self.prev = out.mask
        return out.mask, ms


class GrabCutSession:
    def __init__(self, image, start_mask=None):
        from .grabcut_baseline import GrabCutClicker

        self.gc = GrabCutClicker(image, start_mask)

    def add_click(self, click: Click) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        mask = self.gc.add_click(click)
        return mask, (time.perf_counter() - t0) * 1000


def build_predictor(weights: str | None, use_crf: bool, size: int | None, crf_params=None, mirror: bool = False):
    from ..models.registry import build, select_device
    from ..segment.crf import CRFParams
    from ..segment.predictor import InteractivePredictor

    net = build("interactive", select_device(), path=Path(weights) if weights else None)
    return InteractivePredictor(net, use_crf=use_crf, input_size=size,
                                crf_params=crf_params or CRFParams(), mirror=mirror)


# -- the robot loop ---------------------------------------------------------
@dataclass
class ImageResult:
    name: str
    ious: list[float]  # index = number of clicks
    fs: list[float]  # boundary F, same indexing
    ms: list[float] = field(default_factory=list)  # per click
    clicks: list[tuple[float, float, bool]] = field(default_factory=list)
    start: str | None = None  # refinement: how the start mask was made


def run_robot(session, sample: Sample, max_clicks: int, start_mask=None,
              stop_iou: float | None = None) -> ImageResult:
    pred = np.zeros_like(sample.gt) if start_mask is None else np.asarray(start_mask, bool)
    res = ImageResult(sample.name, [iou(pred, sample.gt, sample.ignore)],
                      [boundary_f(pred, sample.gt, sample.ignore)])
    if start_mask is None:
        res.ious[0] = 0.0  # before any click there is no mask (by convention 0)
    for _ in range(max_clicks):
        click = next_click(pred, sample.gt, sample.ignore)
        if click is None:  # perfect: the curves stay where they are (padded later)
            break
        pred, ms = session.add_click(click)
        res.ms.append(ms)
        res.clicks.append((click.x, click.y, click.positive))
        res.ious.append(iou(pred, sample.gt, sample.ignore))
        res.fs.append(boundary_f(pred, sample.gt, sample.ignore))
        if stop_iou is not None and res.ious[-1] >= stop_iou:
            break  # RITM's --target-iou: curves are padded with the last value
    return res


def new_session(method: str, image, start_mask, predictor):
    if method == "ours":
        return OursSession(predictor, image, start_mask)
    return GrabCutSession(image, start_mask)


def summarize(method: str, results: list[ImageResult], max_clicks: int, refine: bool,
              ms_854: list[float]) -> dict:
    n = max_clicks + 1
    curves = [pad_curve(r.ious, n) for r in results]
    out = {
        "method": method,
        "n_images": len(results),
        "max_clicks": max_clicks,
        "noc85": float(np.mean([noc_from_curve(c, 0.85, max_clicks) for c in curves])),
        "noc90": float(np.mean([noc_from_curve(c, 0.90, max_clicks) for c in curves])),
        # failures: images that never reach the threshold within max_clicks
        "nof85": int(sum(max(c) < 0.85 for c in curves)),
        "nof90": int(sum(max(c) < 0.90 for c in curves)),
        "miou_at_clicks": [round(v, 4) for v in mean_curve(curves, n)],
        "mean_f_at_clicks": [round(v, 4) for v in mean_curve([r.fs for r in results], n)],
        "median_ms_per_click": round(statistics.median([m for r in results for m in r.ms]), 1)
        if any(r.ms for r in results) else None,
        "median_ms_per_click_854x480": round(statistics.median(ms_854), 1) if ms_854 else None,
    }
    if refine:
        out["miou_refine"] = {str(k): out["miou_at_clicks"][k] for k in REFINE_REPORT_CLICKS if k < n}
        first = [c[1] - c[0] for c in curves] if n > 1 else []
        out["first_click_improved"] = float(np.mean([d > 0 for d in first])) if first else None
        out["mean_first_click_gain"] = round(float(np.mean(first)), 4) if first else None
    return out


def _line(i: int, total: int, method: str, r: ImageResult, max_clicks: int, refine: bool) -> str:
    c = pad_curve(r.ious, max_clicks + 1)
    ms = f"{statistics.median(r.ms):.0f}" if r.ms else "-"
    if refine:
        at = " ".join(f"@{k}={c[k]:.3f}" for k in REFINE_REPORT_CLICKS if k <= max_clicks)
        return f"[{i}/{total}] {r.name} {method} start={r.start} {at} ms/click={ms}"
    at = " ".join(f"@{k}={c[k]:.3f}" for k in (1, 3, 5, 10, 20) if k <= max_clicks)
    return (f"[{i}/{total}] {r.name} {method} noc85={noc_from_curve(c, 0.85, max_clicks)} "
            f"noc90={noc_from_curve(c, 0.90, max_clicks)} {at} ms/click={ms}")


def evaluate(dataset_dir, methods=("ours",), max_clicks: int | None = None, weights=None,
             use_crf: bool = True, limit: int | None = None, refine: bool = False, seed: int = 0,
             size: int | None = None, timing_clicks: int = 5, stop_iou: float | None = None,
             predictor=None, crf_params=None, mirror: bool = False, log=print) -> dict:
    """Run the benchmark; returns the summary dict (what the last line prints)."""
    methods = list(dict.fromkeys(methods))
    for m in methods:
        if m not in METHODS:
            raise InputError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if max_clicks is None:
        max_clicks = max(REFINE_REPORT_CLICKS) if refine else 20
    if max_clicks < 1:
        raise InputError("--max-clicks must be at least 1")
    items = list_dataset(Path(dataset_dir), limit)
    if "ours" in methods and predictor is None:
        predictor = build_predictor(weights, use_crf, size, crf_params, mirror)

    results: dict[str, list[ImageResult]] = {m: [] for m in methods}
    first_sample = None
    for i, (name, ip, mp) in enumerate(items, 1):
        s = load_sample(name, ip, mp)
        first_sample = first_sample or s
        start, kind = perturb_mask(s.gt, name, seed) if refine else (None, None)
        for m in methods:
            r = run_robot(new_session(m, s.image, start, predictor), s, max_clicks, start, stop_iou)
            r.start = kind
            results[m].append(r)
            log(_line(i, len(items), m, r, max_clicks, refine))

    # Time per click on a DAVIS-sized frame: the first image resized to 854x480.
    timing: dict[str, list[float]] = {m: [] for m in methods}
    if timing_clicks > 0 and first_sample is not None:
        big = resize_sample(first_sample, TIMING_SIZE)
        for m in methods:
            timing[m] = run_robot(new_session(m, big.image, None, predictor), big, timing_clicks).ms
            if timing[m]:
                log(f"timing {m} on {TIMING_SIZE[0]}x{TIMING_SIZE[1]}: median "
                    f"{statistics.median(timing[m]):.0f} ms/click over {len(timing[m])} clicks")

    per_method = {m: summarize(m, results[m], max_clicks, refine, timing[m]) for m in methods}
    main = "ours" if "ours" in methods else methods[0]
    summary = dict(per_method[main])
    summary.update({
        "mode": "refine" if refine else "clicks",
        "dataset": str(dataset_dir),
        "crf": bool(use_crf) if "ours" in methods else None,
        "crf_params": (asdict(predictor.crf_params) if "ours" in methods and use_crf
                       and hasattr(predictor, "crf_params") else None),
        "input_size": getattr(predictor, "input_size", size) if "ours" in methods else None,
        "weights": str(weights) if weights else ("shipped" if "ours" in methods else None),
        "stop_iou": stop_iou,
        "machine": _machine(),
        "methods": per_method,
    })
    summary["_per_image"] = {
        m: [{"name": r.name, "ious": [round(v, 4) for v in r.ious], "ms": [round(v, 1) for v in r.ms],
             "clicks": r.clicks, "start": r.start} for r in results[m]] for m in methods}
    return summary


def _machine() -> dict:
    info = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if "torch" in sys.modules:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return info


# -- CLI --------------------------------------------------------------------
def configure(parser) -> None:
    parser.add_argument("dataset", metavar="DATASET_DIR", help="folder with images/ and masks/ (same stems)")
    parser.add_argument("--method", action="append", default=None,
                        help="ours or grabcut; repeat or give a comma list to measure several (default: ours)")
    parser.add_argument("--max-clicks", type=int, default=None,
                        help="clicks per image (default 20; 4 with --refine)")
    parser.add_argument("--weights", default=None,
                        help="weights file or training checkpoint (default: the shipped weights)")
    parser.add_argument("--no-crf", action="store_true", help="skip the dense CRF in our method")
    parser.add_argument("--crf-max-side", type=int, default=None,
                        help="scale the CRF's crop to this long side (default: CRFParams.max_side)")
    parser.add_argument("--crf-iterations", type=int, default=None,
                        help="mean-field iterations of the CRF (default: CRFParams.iterations)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (by name)")
    parser.add_argument("--refine", action="store_true",
                        help="start from an imperfect copy of the truth and report mIoU at 0, 1, 2, 4 clicks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --refine start masks")
    parser.add_argument("--size", type=int, default=None,
                        help="long side of the network input (zoom-in crop; default: the predictor's, 448)")
    parser.add_argument("--mirror", action="store_true",
                        help="average each crop's logits with its mirror image's (2x the network's work)")
    parser.add_argument("--timing-clicks", type=int, default=5,
                        help="clicks timed on the first image resized to 854x480 (0: skip)")
    parser.add_argument("--stop-iou", type=float, default=None,
                        help="stop clicking on an image once its IoU reaches this (RITM's --target-iou, "
                             "e.g. 0.95; the curve keeps its last value); default: always max clicks")
    parser.add_argument("--json-out", default=None, help="also write the summary (with per-image results) here")


def parse_methods(values) -> list[str]:
    out = []
    for v in values or ["ours"]:
        out += [m.strip().lower() for m in v.split(",") if m.strip()]
    for m in out:
        if m not in METHODS:
            raise InputError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    return out


def crf_params_of(args):
    from dataclasses import replace

    from ..segment.crf import CRFParams

    p = CRFParams()
    if args.crf_max_side is not None:
        if args.crf_max_side < 16:
            raise InputError(f"--crf-max-side must be at least 16, got {args.crf_max_side}")
        p = replace(p, max_side=args.crf_max_side)
    if args.crf_iterations is not None:
        if args.crf_iterations < 1:
            raise InputError(f"--crf-iterations must be at least 1, got {args.crf_iterations}")
        p = replace(p, iterations=args.crf_iterations)
    return p


def run(args) -> int:
    summary = evaluate(
        args.dataset, parse_methods(args.method), args.max_clicks, args.weights,
        use_crf=not args.no_crf, limit=args.limit, refine=args.refine, seed=args.seed,
        size=args.size, timing_clicks=args.timing_clicks, stop_iou=args.stop_iou,
        crf_params=crf_params_of(args), mirror=args.mirror, log=lambda s: print(s, flush=True))
    per_image = summary.pop("_per_image")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({**summary, "per_image": per_image}, indent=1))
    print(json.dumps(summary), flush=True)
    return 0
