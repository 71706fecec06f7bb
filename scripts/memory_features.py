"""Which frozen features separate an object from its background best: nearest-neighbour label transfer.

For each DAVIS-2016 training sequence at 240p, the features of frame 0 (labelled by its true mask) are the
memory; every `--step`-th later frame's pixels take the label of their top-k cosine neighbours in it, and the
coarse mask (vote > 0.5) is scored by IoU against the true mask at the features' stride. Candidates: the
encoder's generic stride-8 and stride-16 features (ImageNet weights, the same in both shipped networks), the
parent's stride-32 features and its decoder's last stride-4 features (trained on these very sequences), and
their concatenations. Prints a table; figures in docs/memory.md.

    python scripts/memory_features.py ../shared/data/davis2016 --threads 1
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--step", type=int, default=10)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from napari_vidseg.eval.davis import open_sequence, read_split
    from napari_vidseg.models.registry import build
    from napari_vidseg.video.propagators.memory import backbone_features

    parent = build("parent", torch.device("cpu")).eval()
    interactive = build("interactive", torch.device("cpu")).eval()
    same = all(torch.equal(a, b) for a, b in zip(parent.encoder.early_parameters(),
                                                 interactive.encoder.early_parameters()))
    print("early encoder weights identical in parent and interactive:", same)
    kinds = ("f8", "f16", "p32", "dec4", "f8+f16", "f16+p32")
    scores = {k: [] for k in kinds}
    t0 = time.time()
    for name in sorted(read_split(args.root, "train")):
        seq = open_sequence(args.root, name, "240p")
        src, truth = seq.source(), seq.masks()
        feats = {}
        for t in range(0, len(truth), args.step):
            img = src.frame(t)
            feats[t] = {**backbone_features(parent, img, kinds[:4]), **backbone_features(parent, img, kinds[4:], stride=8)}
        for kind in kinds:
            mem = feats[0][kind]
            lab = F.interpolate(torch.from_numpy(truth[0][None, None].astype(np.float32)), size=mem.shape[-2:],
                                mode="area")[0, 0].flatten()
            keys = F.normalize(mem.flatten(1), dim=0)
            js = []
            for t in feats:
                if t == 0:
                    continue
                q = F.normalize(feats[t][kind].flatten(1), dim=0)
                sim = q.T @ keys
                top, idx = sim.topk(args.k, dim=1)
                w = torch.softmax(top / 0.05, dim=1)
                p = (w * lab[idx]).sum(1).reshape(feats[t][kind].shape[-2:])
                g = F.interpolate(torch.from_numpy(truth[t][None, None].astype(np.float32)), size=p.shape,
                                  mode="area")[0, 0] > 0.5
                m = p > 0.5
                js.append(float((m & g).sum()) / max(float((m | g).sum()), 1.0))
            scores[kind].append(float(np.mean(js)))
        print(f"{name:20s} " + "  ".join(f"{k} {100 * scores[k][-1]:5.1f}" for k in kinds), flush=True)
    print(f"mean ({time.time() - t0:.0f} s): " + "  ".join(f"{k} {100 * np.mean(scores[k]):5.1f}" for k in kinds))


if __name__ == "__main__":
    main()
