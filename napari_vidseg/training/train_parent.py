"""Train the video parent network (OSVOS's "parent") on DAVIS-2016 240p TRAIN only.

    python -m napari_vidseg.training.train_parent --init checkpoints/interactive/last.pt \
        --data ../shared/data/davis2016 --out checkpoints/parent --minutes 25

The parent is VidSegNet(in_channels=3): RGB in, the foreground object out. It
starts from the interactive segmenter's checkpoint (it already knows "objects"
from train_objects/); tensors whose name and shape match are copied, and the
decoder's fusion conv, which takes 64 + 3 channels in the interactive net,
keeps the weights of its first 64 input channels. Without --init the encoder
starts from ImageNet.

Crops are scaled so that the frame's long side is about `--frame-side`
pixels, the size the propagation runs the network at, so the parent sees
objects at the scale it will meet them. The sequences named by --holdout
(default three) are left out, so that one-shot tuning settings can be chosen
on training data the parent has never seen; the 480p validation frames are
never touched here.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ..models.registry import select_device
from ..models.vidsegnet import VidSegNet
from .common import Logger, freeze_bn_stats, load_pairs, random_crop, save_checkpoint, seg_loss, set_cosine_lr

#: Training sequences kept out of the parent's training: one-shot tuning
#: settings (head vs full, steps, loss, input size) are measured on these.
DEFAULT_HOLDOUT = ("bmx-bumps", "kite-walk", "stroller")


def read_split(root: Path, name: str) -> list[str]:
    return [s.strip() for s in (root / "ImageSets" / name).read_text().split() if s.strip()]


def load_davis_train(root: Path, holdout=DEFAULT_HOLDOUT, resolution: str = "240p"):
    """(RGB, mask) pairs of every annotated frame of the training sequences."""
    pairs, names = [], []
    for seq in read_split(root, "train.txt"):
        if seq in holdout:
            continue
        p = load_pairs(root / "JPEGImages" / resolution / seq, root / "Annotations" / resolution / seq)
        pairs += p
        names.append(seq)
    return pairs, names


def init_from_interactive(net: VidSegNet, state: dict) -> dict:
    """Copy every tensor whose name matches; where the interactive net has more
    input channels (decoder.fuse: 64 + 3 aux), keep the leading slice.
    Returns counts {copied, sliced, skipped}."""
    own = net.state_dict()
    copied = sliced = skipped = 0
    for k, v in state.items():
        if k not in own:
            skipped += 1  # aux_branch.*: the parent has no aux channels
            continue
        tgt = own[k]
        if v.shape == tgt.shape:
            own[k] = v.to(tgt.dtype)
            copied += 1
        elif v.dim() == tgt.dim() and all(a >= b for a, b in zip(v.shape, tgt.shape)):
            own[k] = v[tuple(slice(0, n) for n in tgt.shape)].to(tgt.dtype).clone()
            sliced += 1
        else:
            skipped += 1
    net.load_state_dict(own, strict=True)
    return {"copied": copied, "sliced": sliced, "skipped": skipped}


def build_parent(init: Path | None) -> tuple[VidSegNet, dict]:
    net = VidSegNet(in_channels=3)
    if init is not None:
        state = torch.load(init, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        info = init_from_interactive(net, state)
        info["init"] = str(init)
    else:
        from .train_interactive import imagenet_encoder_weights

        net.encoder.load_imagenet(imagenet_encoder_weights())
        info = {"init": "imagenet"}
    return net, info


def sample_batch(pairs, size, batch, frame_side, rng):
    # random_crop resizes the whole frame so its long side is scale * size:
    # this range puts the frame's long side at frame_side * [0.7, 1.3].
    scale = (0.7 * frame_side / size, 1.3 * frame_side / size)
    imgs, gts = [], []
    for _ in range(batch):
        img, gt = pairs[rng.integers(len(pairs))]
        img, gt = random_crop(img, gt, size, rng, scale=scale)
        imgs.append(img), gts.append(gt)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255)
    y = torch.from_numpy(np.stack(gts)[:, None].astype(np.float32))
    return x.contiguous(memory_format=torch.channels_last), y


def frozen_early_parameters(model: VidSegNet, train_from: int | None):
    """The early encoder's parameters that stay frozen: all of them, or the
    stem and the blocks before index `train_from`."""
    enc = model.encoder
    if train_from is None:
        yield from enc.early_parameters()
        return
    if not 0 <= train_from <= enc.EARLY_END:
        raise SystemExit(f"--train-early-from must be a block index from 0 to {enc.EARLY_END}, got {train_from}")
    yield from enc._conv_stem.parameters()
    yield from enc._bn0.parameters()
    for i in range(train_from):
        yield from enc._blocks[i].parameters()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/davis2016"))
    ap.add_argument("--out", type=Path, default=Path("checkpoints/parent"))
    ap.add_argument("--init", type=Path, default=None, help="interactive checkpoint; ImageNet when absent")
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--steps", type=int, default=None,
                    help="stop after this many steps, the schedule following the step count, not the clock "
                         "(reproducible whatever else runs on the machine); --minutes is then ignored")
    ap.add_argument("--size", type=int, default=256, help="square crop side")
    ap.add_argument("--frame-side", type=int, default=448, help="long side of the frame the crops are cut from")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--holdout", default=",".join(DEFAULT_HOLDOUT))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-early-from", type=int, default=None, metavar="BLOCK",
                    help="also train the encoder's early blocks from this index on (the stride-16 stage starts "
                         "at 5, stride 8 at 3); default: none, the early encoder stays ImageNet's. One-shot "
                         "tuning still caches the early features: they are frozen there either way")
    ap.add_argument("--device", default=None, help="cuda, cpu, ... (default: the GPU when there is one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    log = Logger(args.out / "log.jsonl")

    holdout = tuple(s for s in args.holdout.split(",") if s)
    pairs, names = load_davis_train(args.data, holdout)
    log.log(event="data", n_pairs=len(pairs), n_sequences=len(names), holdout=list(holdout))
    model, info = build_parent(args.init)
    log.log(event="init", **info)
    device = torch.device(args.device) if args.device else select_device()
    log.log(event="device", device=str(device))
    model = model.to(device, memory_format=torch.channels_last)
    # The early encoder stays as it is (ImageNet's, also frozen in the
    # interactive net) unless --train-early-from says where training starts:
    # one-shot tuning caches its features per frame either way.
    early = set(id(p) for p in frozen_early_parameters(model, args.train_early_from))
    for p in model.parameters():
        if id(p) in early:
            p.requires_grad_(False)
    enc_params = [p for p in model.encoder.parameters() if id(p) not in early]
    dec_params = list(model.decoder.parameters())
    base_lrs = (args.lr * 0.3, args.lr)
    opt = torch.optim.AdamW([{"params": enc_params, "lr": base_lrs[0]},
                             {"params": dec_params, "lr": base_lrs[1]}], weight_decay=1e-4)
    total = args.minutes * 60
    t0 = time.time()
    step, t_ckpt, losses = 0, t0, []

    def progress() -> float:  # fraction of the budget used: steps or wall-clock time
        return step / args.steps if args.steps else (time.time() - t0) / total

    while progress() < 1:
        set_cosine_lr(opt, base_lrs, progress())
        x, y = sample_batch(pairs, args.size, args.batch, args.frame_side, rng)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        model.train()
        freeze_bn_stats(model.encoder)  # ImageNet/interactive statistics; the decoder's adapt
        # Autograd records nothing through the frozen blocks (no input needs a gradient).
        with torch.set_grad_enabled(args.train_early_from is not None):
            early_feats = model.early_features(x)
        loss = seg_loss(model.from_early(early_feats, x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 20 == 0:
            log.log(step=step, loss=float(np.mean(losses[-20:])), lr=opt.param_groups[1]["lr"])
        if time.time() - t_ckpt > 300:
            save_checkpoint(model, args, step, args.out / "last.pt")
            t_ckpt = time.time()
    save_checkpoint(model, args, step, args.out / "last.pt")
    log.log(event="done", steps=step, minutes=round((time.time() - t0) / 60, 2))


if __name__ == "__main__":
    main()
