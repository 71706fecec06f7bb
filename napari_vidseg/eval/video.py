"""`napari-vidseg eval-video DAVIS_ROOT`: J and F of one-shot propagation on DAVIS-2016.

For each sequence: the first frame's mask (the true one with `--init mask`,
or the interactive segmenter's after N robot clicks with `--init clicks:N`)
-> fine-tune the parent network on it -> propagate through the sequence ->
J (IoU) and F (boundary) per frame, DAVIS-style (first and last frames not
scored). Prints a line per sequence and, as the LAST line, one JSON object:
j_mean, f_mean (fractions in [0, 1]), per_sequence {seq: {j, f}}, init,
finetune_seconds (median per sequence), propagate_fps (frames / seconds over
all sequences, reading and resizing included).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from ..types import InputError, Interactions

DEFAULT_SPLIT = "val_dev"


def add_common_arguments(parser) -> None:
    parser.add_argument("davis_root", metavar="DAVIS_ROOT",
                        help="folder with JPEGImages/<res>/<seq>/, Annotations/<res>/<seq>/, ImageSets/")
    parser.add_argument("--sequences", default=None, help="comma list (default: ImageSets/val_dev.txt)")
    parser.add_argument("--split", default=DEFAULT_SPLIT, help="ImageSets file when --sequences is not given")
    parser.add_argument("--resolution", default="480p",
                        help="DAVIS folder of frames and masks to score (JPEGImages/<res>, Annotations/<res>)")
    parser.add_argument("--weights-parent", default=None, help="parent weights or checkpoint (default: shipped)")
    parser.add_argument("--weights-interactive", default=None,
                        help="interactive weights or checkpoint, for the clicks and the second opinion "
                             "(default: shipped)")
    parser.add_argument("--mode", choices=("head", "full"), default=None, help="what fine-tuning tunes")
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps")
    parser.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the library's)")
    parser.add_argument("--n-aug", type=int, default=None, help="augmented copies of each annotated frame")
    parser.add_argument("--batch", type=int, default=None, help="fine-tuning batch (augmented copies per step)")
    parser.add_argument("--loss", choices=("balanced", "seg"), default=None,
                        help="fine-tuning loss: class-balanced cross-entropy, or seg (BCE + soft IoU; the default)")
    parser.add_argument("--input-long-side", type=int, default=None, help="network input size (long side)")
    parser.add_argument("--no-keep-components", action="store_true",
                        help="keep blobs away from the previous frame's object")
    parser.add_argument("--threshold", type=float, default=None, help="mask threshold on the probability")
    parser.add_argument("--reach", type=float, default=None,
                        help="propagation: pixels farther than this fraction of the long side from the previous "
                             "frame's object are background (0: off)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bfloat16 autocast in propagation (default: where the CPU computes it natively)")
    parser.add_argument("--int8", action="store_true", help="int8 copy of the tuned network in CPU propagation")
    parser.add_argument("--flip", action="store_true",
                        help="propagation: average each frame's logits with its mirror image's (2x the time)")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                        help="propagation: average each frame's logits with the interactive segmenter's, given the "
                             "propagated mask and a click at its deepest point (default: on)")
    parser.add_argument("--refine-crf", action="store_true",
                        help="the second opinion through the dense CRF, probabilities averaged (slower)")
    parser.add_argument("--refine-size", type=int, default=None, metavar="PX",
                        help="long side of the second opinion's crop (default 448)")
    parser.add_argument("--refine-weight", type=float, default=None, metavar="W",
                        help="the second opinion's share of the averaged logits (default 0.6)")
    parser.add_argument("--scales", default=None,
                        help="propagation: comma list of multiples of the input size whose logits are averaged, "
                             "e.g. 1,1.5 (default: 1)")
    parser.add_argument("--self-train", type=int, default=None, metavar="K",
                        help="after a first propagation, tune again with the K most trusted propagated masks as "
                             "extra annotations and propagate again (0: off)")
    parser.add_argument("--first-pass-stride", type=int, default=None, metavar="S",
                        help="with --self-train: the first pass propagates only every S-th frame")
    parser.add_argument("--self-train-rounds", type=int, default=None, metavar="R",
                        help="with --self-train: R rounds of (sparse pass, K more trusted frames, tuning)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fine-tuning's augmentation and crops")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json-out", default=None, help="also write the summary (with per-frame J) here")


def configure(parser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--init", default="mask", help="mask (the true first mask) or clicks:N (robot clicks)")
    parser.add_argument("--method", default=None,
                        help="propagation method (napari_vidseg.video.propagators; default: osvos, whose options are "
                             "the flags above); another method takes --preset and --option")
    parser.add_argument("--preset", default=None, help="with --method: the method's preset")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="with --method: one of the method's options, e.g. top_k=10 (repeatable)")
    parser.add_argument("--no-crf", action="store_true", help="no dense CRF in the click initialisation")
    parser.add_argument("--click-input-size", type=int, default=None, metavar="PX",
                        help="click initialisation: the interactive network's input size (default: the predictor's)")
    parser.add_argument("--click-mirror", action="store_true",
                        help="click initialisation: average each crop's logits with its mirror image's")
    parser.add_argument("--save-probs", default=None, metavar="DIR",
                        help="also write each sequence's probabilities at the network's size to DIR/<seq>.npz "
                             "(for studying post-processing without running the network again)")
    parser.add_argument("--save-masks", default=None, metavar="DIR",
                        help="also write the masks that are scored, DAVIS layout: DIR/<seq>/00000.png ... "
                             "(0/255 PNGs, every frame), so other tools can re-score them")


def make_config(args):
    """The chosen method's config (video.propagators): OSVOS's from its flags (the others keep the
    library's defaults), another method's from its preset and --option NAME=VALUE."""
    from ..video import propagators

    method = propagators.get(getattr(args, "method", None)).name
    if method != "osvos":
        return propagators.make_config(method, preset=getattr(args, "preset", None),
                                       **parse_options(method, getattr(args, "option", None) or []))
    options = {name: getattr(args, name, None) for name in (
        "mode", "steps", "lr", "n_aug", "batch", "loss", "input_long_side", "threshold", "reach", "seed",
        "self_train", "first_pass_stride", "self_train_rounds", "refine_size", "refine_weight", "refine")}
    options.update(keep_components=not getattr(args, "no_keep_components", False),
                   int8=bool(getattr(args, "int8", False)), flip=bool(getattr(args, "flip", False)),
                   refine_crf=bool(getattr(args, "refine_crf", False)))
    if getattr(args, "scales", None):
        options["scales"] = parse_scales(args.scales)
    config = propagators.make_config("osvos", **options)
    config.bf16 = getattr(args, "bf16", None)  # None is a value here: "where the CPU computes it natively"
    config.check()
    return config


def parse_options(method: str, items) -> dict:
    """["top_k=10", "refine=true"] -> {"top_k": 10, "refine": True}, each value read as its field's type."""
    import dataclasses

    from ..video import propagators

    types = {f.name: f.type for f in dataclasses.fields(propagators.get(method).config)}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--option takes NAME=VALUE, got {item!r}")
        kind = str(types.get(name, "str"))
        try:
            if "bool" in kind:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                out[name] = value.lower() in ("true", "1", "yes")
            elif "int" in kind:
                out[name] = int(value)
            elif "float" in kind:
                out[name] = float(value)
            else:
                out[name] = value
        except ValueError:
            raise InputError(f"--option {name}: {value!r} is not a {kind}") from None
    return out


def parse_scales(text: str) -> tuple[float, ...]:
    from ..types import InputError

    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--scales takes a comma list of numbers such as 1,1.5, got {text!r}") from None


def sequences_of(args) -> list[str]:
    from .davis import read_split

    if args.sequences:
        return [s.strip() for s in args.sequences.split(",") if s.strip()]
    return read_split(Path(args.davis_root), args.split)


def load_net(name: str, path, device=None):
    """Shipped weights (checksum checked) or an explicit file/checkpoint."""
    from ..models.registry import build

    if path is None:
        return build(name, device)
    return build(name, device, path=Path(path), check=False)


def parse_init(text: str) -> tuple[str, int]:
    if text == "mask":
        return "mask", 0
    if text.startswith("clicks:"):
        try:
            n = int(text.split(":", 1)[1])
        except ValueError:
            n = -1
        if n >= 1:
            return "clicks", n
    raise InputError(f"--init must be 'mask' or 'clicks:N' with N >= 1, got {text!r}")


def clicks_init(predictor, frame: np.ndarray, truth: np.ndarray, n_clicks: int) -> np.ndarray:
    """The interactive segmenter's mask after `n_clicks` robot clicks (each
    click placed in the largest error of the previous prediction)."""
    from ..interactions.robot import next_click

    predictor.set_image(frame)
    inter = Interactions()
    mask = np.zeros(truth.shape, bool)
    for _ in range(n_clicks):
        c = next_click(mask, truth)
        if c is None:
            break
        inter.clicks.append(c)
        mask = predictor.predict(inter, prev_mask=mask if len(inter.clicks) > 1 else None).mask
    return mask


def run_sequence(parent, seq, cfg, init_mask: np.ndarray, annotated_extra: dict | None = None,
                 probs: dict | None = None, refiner=None):
    """Fine-tune on frame 0 (+ extra annotated frames), propagate; returns
    (masks {t: mask}, confidence {t: c}, finetune seconds, propagate seconds, frames predicted).
    `probs`, when given, is filled with {t: probability at the network's size}.
    With cfg.self_train, the two passes VideoSession.propagate runs (the same
    method: video/propagators/osvos.py), with masks kept in memory;
    the times are the sums of both passes. `refiner`: see propagate()."""
    from ..video.propagators.osvos import OSVOS

    if not hasattr(cfg, "self_train"):  # another method than OSVOS: no tuning to time
        return run_method(parent, seq, cfg, init_mask, annotated_extra, probs, refiner)
    source = seq.source()
    annotated = {0: init_mask, **(annotated_extra or {})}
    spent = {"tune": 0.0}
    masks, conf = {}, {}

    class TimedOSVOS(OSVOS):  # the method VideoSession.propagate runs, its tunings timed
        def tune(self, source, on):
            t0 = time.perf_counter()
            net = yield from super().tune(source, on)
            spent["tune"] += time.perf_counter() - t0
            return net

    t0 = time.perf_counter()
    for item in TimedOSVOS(cfg, parent=parent, refiner=refiner).run(source, {0: annotated}, list(range(len(source)))):
        if getattr(item, "final", False):  # the last pass covers every frame
            masks[item.t], conf[item.t] = item.masks[0], item.confidence[0]
            if probs is not None:
                probs[item.t] = item.probs[0]
    n_pred = len([t for t in masks if t not in annotated])
    return masks, conf, spent["tune"], time.perf_counter() - t0 - spent["tune"], n_pred


def run_method(parent, seq, cfg, init_mask, annotated_extra=None, probs=None, refiner=None):
    """run_sequence for a method with no tuning (its config's registered class), all of its time propagation."""
    from ..video import propagators

    source = seq.source()
    annotated = {0: init_mask, **(annotated_extra or {})}
    prop = propagators.get(propagators.method_of(cfg)).cls(cfg, parent=parent, refiner=refiner)
    masks, conf = dict(annotated), {}
    t0 = time.perf_counter()
    for item in prop.run(source, {0: annotated}, list(range(len(source)))):
        if isinstance(item, propagators.ObjectsFrame):
            masks[item.t], conf[item.t] = item.masks[0], item.confidence[0]
            if probs is not None:
                probs[item.t] = item.probs[0]
    n_pred = len([t for t in masks if t not in annotated])
    return masks, conf, 0.0, time.perf_counter() - t0, n_pred


def save_probs(path: Path, probs: dict) -> None:
    """(T, h, w) float16 probabilities in frame order; frame 0 is the annotated mask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, prob=np.stack([probs[t] for t in sorted(probs)]).astype(np.float16))


def save_masks(folder: Path, masks: dict) -> None:
    """The scored masks as DAVIS-layout PNGs (folder/00000.png, 0/255), one per frame."""
    from ..io.masks import write_mask_folder

    write_mask_folder(folder, ((t, np.asarray(masks[t], bool)) for t in sorted(masks)))


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from ..models.registry import select_device

    return {"device": str(select_device()), "cpu": cpu, "torch_threads": torch.get_num_threads()}


def run(args) -> int:
    import torch

    from ..models.registry import select_device
    from ..video.propagate import wants_bf16
    from ..video.refine import refiner_for
    from .davis import open_sequence, score_sequence

    if args.threads:
        torch.set_num_threads(args.threads)
    kind, n_clicks = parse_init(args.init)
    cfg = make_config(args)
    device = select_device()
    parent = load_net("parent", args.weights_parent, device)
    predictor = None
    interactive = load_net("interactive", args.weights_interactive, device) if kind == "clicks" or cfg.refine else None
    refiner = refiner_for(cfg, device, interactive)  # on the weights under test, made once
    if kind == "clicks":
        from ..segment.predictor import InteractivePredictor

        predictor = InteractivePredictor(net=interactive, use_crf=not args.no_crf, mirror=args.click_mirror,
                                         input_size=args.click_input_size)
    per_seq, ft_times, prop_time, prop_frames, details = {}, [], 0.0, 0, {}
    for name in sequences_of(args):
        seq = open_sequence(Path(args.davis_root), name, args.resolution)
        truth = seq.masks()
        if kind == "mask":
            init = truth[0]
        else:
            init = clicks_init(predictor, seq.source().frame(0), truth[0], n_clicks)
        init_iou = float(np.count_nonzero(init & truth[0]) / max(np.count_nonzero(init | truth[0]), 1))
        probs = {} if args.save_probs else None
        masks, conf, ft, prop, n_pred = run_sequence(parent, seq, cfg, init, probs=probs, refiner=refiner)
        if probs is not None:
            save_probs(Path(args.save_probs) / f"{name}.npz", probs)
        if args.save_masks:
            save_masks(Path(args.save_masks) / name, masks)
        s = score_sequence(masks, truth)
        per_seq[name] = {"j": round(s["j"], 4), "f": round(s["f"], 4)}
        details[name] = {"init_iou": round(init_iou, 4), "finetune_s": round(ft, 2),
                         "propagate_fps": round(n_pred / max(prop, 1e-9), 2), "n_frames": len(truth),
                         "j_frames": {int(t): round(j, 4) for t, j in s["j_frames"].items()}}
        ft_times.append(ft)
        prop_time += prop
        prop_frames += n_pred
        print(f"{name:20s} J {100 * s['j']:5.1f}  F {100 * s['f']:5.1f}  init IoU {100 * init_iou:5.1f}  "
              f"finetune {ft:5.1f} s  propagate {n_pred / max(prop, 1e-9):5.1f} frames/s  ({len(truth)} frames)",
              flush=True)
    if not per_seq:
        raise InputError("no sequences to evaluate")
    summary = {
        "j_mean": round(float(np.mean([v["j"] for v in per_seq.values()])), 4),
        "f_mean": round(float(np.mean([v["f"] for v in per_seq.values()])), 4),
        "per_sequence": per_seq,
        "init": args.init,
        "finetune_seconds": round(statistics.median(ft_times), 2),
        "propagate_fps": round(prop_frames / max(prop_time, 1e-9), 2),
        # bf16 as it ran (None in the config means "where the CPU computes it natively").
        "config": {**vars(cfg), "bf16": wants_bf16(cfg, device)},
        "machine": machine(),
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({**summary, "details": details}, indent=1))
    print(json.dumps(summary))
    return 0
