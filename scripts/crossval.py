"""Cross-validated held-out J on the DAVIS-2016 *training* sequences.

Three held-out sequences were too few to choose settings by: bmx-bumps alone
moves by 5-10 points of J under changes that leave the others within a point
(docs/video.md, session 10). Here the 30 training sequences are split into K
folds (sorted names, every K-th one); a parent is trained per fold on the
other folds, and each sequence is scored with the parent that never saw it.
The 480p validation frames are never read.

    # K parents, one per fold (the same recipe as train_parent, a fixed step count)
    python scripts/crossval.py train --out checkpoints/cv --steps 1200 --init weights/interactive_v6.pt
    # (interactive v6 left the tree in session 16:
    #  git show 4c3cb91:weights/interactive_v6.pt > weights/interactive_v6.pt)
    # J over all 30 sequences for one propagation setting (extra arguments go to eval-video)
    python scripts/crossval.py eval --parents checkpoints/cv --out docs/results/cv/base -- --input-long-side 448

    # the worst-frame correction protocol instead (eval-correction per fold)
    python scripts/crossval.py eval --bench correction --parents checkpoints/cv --out docs/results/cv/corr -- \
        --input-long-side 448 --save-worst docs/results/cv/corr/worst

`eval` writes <out>/fold<i>.json (eval-video's or eval-correction's) and
<out>/summary.json, and prints per-sequence results and, as its last line,
{"j_mean", "f_mean", "n"} (video) or eval-correction's summary (correction).
Jobs run `--jobs` at a time, each with `--threads` torch threads.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from napari_vidseg.eval.correction import summarize
from napari_vidseg.training.train_parent import read_split


def folds(root: Path, k: int) -> list[list[str]]:
    seqs = sorted(read_split(root, "train.txt"))
    return [seqs[i::k] for i in range(k)]


def run_all(cmds: list[list[str]], logs: list[Path], jobs: int) -> None:
    def one(args):
        cmd, log = args
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
        if rc:
            sys.exit(f"failed ({rc}): {' '.join(cmd)}; see {log}")

    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(one, zip(cmds, logs)))


def train(args, extra: list[str]) -> None:
    cmds, logs = [], []
    for i, fold in enumerate(folds(args.data, args.k)):
        out = args.out / f"fold{i}"
        cmds.append([sys.executable, "-m", "napari_vidseg.training.train_parent", "--data", str(args.data),
                     "--out", str(out), "--holdout", ",".join(fold), "--steps", str(args.steps),
                     "--threads", str(args.threads), "--seed", str(args.seed + i)]
                    + (["--init", str(args.init)] if args.init else []) + extra)
        logs.append(out / "train.log")
    run_all(cmds, logs, args.jobs)


def evaluate(args, extra: list[str]) -> None:
    cmds, logs, outs = [], [], []
    for i, fold in enumerate(folds(args.data, args.k)):
        js = args.out / f"fold{i}.json"
        cmds.append(["napari-vidseg", f"eval-{args.bench}", str(args.data), "--resolution", "240p",
                     "--sequences", ",".join(fold), "--weights-parent", str(args.parents / f"fold{i}" / "last.pt"),
                     "--threads", str(args.threads), "--json-out", str(js)] + extra)
        logs.append(args.out / f"fold{i}.txt")
        outs.append(js)
    run_all(cmds, logs, args.jobs)
    per = {}
    for js in outs:
        per.update(json.loads(js.read_text())["per_sequence"])
    if args.bench == "correction":
        ks = json.loads(outs[0].read_text())["clicks"]
        for name in sorted(per):
            r = per[name]
            print(f"{name:20s} worst {100 * r['before']:5.1f} -> "
                  + " ".join(f"{k}c {100 * r['after'][str(k)]:5.1f}" for k in ks)
                  + f"  J {100 * r['j_before']:5.1f} -> {100 * r['j_after']:5.1f}")
        summary = {**summarize(per, ks), "clicks": ks, "n": len(per)}
        head = dict(summary)
    else:
        for name in sorted(per):
            print(f"{name:20s} J {100 * per[name]['j']:5.1f}  F {100 * per[name]['f']:5.1f}")
        summary = {"j_mean": round(float(np.mean([v["j"] for v in per.values()])), 4),
                   "f_mean": round(float(np.mean([v["f"] for v in per.values()])), 4), "n": len(per)}
        head = {k: summary[k] for k in ("j_mean", "f_mean", "n")}
    summary.update(eval_args=extra, per_sequence=per)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(head))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("train", "eval"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/davis2016"))
    ap.add_argument("--k", type=int, default=3, help="number of folds")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--parents", type=Path, help="eval: the folder `train` wrote")
    ap.add_argument("--bench", choices=("video", "correction"), default="video",
                    help="eval: which benchmark runs per fold (eval-video or eval-correction)")
    ap.add_argument("--init", type=Path, default=None, help="train: the checkpoint every fold starts from")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.command == "eval" and not args.parents:
        ap.error("eval needs --parents")
    (train if args.command == "train" else evaluate)(args, extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
