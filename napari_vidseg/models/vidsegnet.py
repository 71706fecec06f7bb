"""The segmentation network used for both jobs.

* interactive: input RGB + current mask + click channel + stroke channel (6 ch)
* video parent (OSVOS): input RGB only (3 ch)

An EfficientNet-Lite0 encoder and a light FPN decoder that predicts at stride 4.
The encoder's early part (strides 2-16) sees only RGB and keeps its ImageNet
weights: on a 2-core CPU, back-propagating through it costs most of a
training step, and frozen it can be cached per frame for one-shot tuning.
The non-RGB channels (mask, clicks, strokes) enter through a small strided
branch whose outputs are added to the stride-4, 8 and 16 features (so the
trainable stride-32 stage and the decoder know which object is meant) and go
straight into the decoder's last layer (so they steer the fine boundary).
Logits are upsampled to the input size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet_lite import EfficientNetLite0Encoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _sep_conv(cin: int, cout: int) -> nn.Sequential:
    """Depthwise-separable 3x3 conv: cheap on a CPU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class AuxBranch(nn.Module):
    """Mask/click/stroke channels -> residuals for the stride-4, 8 and 16
    features. The output convs start at zero, so training starts from plain
    ImageNet features."""

    def __init__(self, cin: int, couts: tuple[int, int, int]):
        super().__init__()
        self.down = nn.ModuleList([
            nn.Sequential(nn.Conv2d(cin, 16, 3, 2, 1), nn.ReLU(inplace=True),
                          nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(inplace=True)),  # stride 4
            nn.Sequential(nn.Conv2d(32, 48, 3, 2, 1), nn.ReLU(inplace=True)),  # stride 8
            nn.Sequential(nn.Conv2d(48, 64, 3, 2, 1), nn.ReLU(inplace=True)),  # stride 16
        ])
        self.out = nn.ModuleList(nn.Conv2d(c, co, 1) for c, co in zip((32, 48, 64), couts))
        for conv in self.out:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, aux: torch.Tensor, sizes) -> list[torch.Tensor]:
        outs, y = [], aux
        for down, out, size in zip(self.down, self.out, sizes):
            y = down(y)
            r = out(y)
            if r.shape[-2:] != size:
                r = F.interpolate(r, size=size, mode="bilinear", align_corners=False)
            outs.append(r)
        return outs


class Decoder(nn.Module):
    def __init__(self, enc_channels: tuple[int, ...], aux_channels: int, width: int = 64):
        super().__init__()
        # Laterals for strides 4, 8, 16, 32.
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in enc_channels[1:])
        self.smooth = nn.ModuleList(_sep_conv(width, width) for _ in enc_channels[2:])
        self.fuse = _sep_conv(width + aux_channels, width // 2)
        self.out = nn.Conv2d(width // 2, 1, 1)
        self.aux_channels = aux_channels

    def forward(self, feats: list[torch.Tensor], aux: torch.Tensor | None) -> torch.Tensor:
        f4, f8, f16, f32 = feats[1:]
        x = self.lateral[3](f32)
        for lat, smooth, f in zip(
            (self.lateral[2], self.lateral[1], self.lateral[0]), self.smooth, (f16, f8, f4)
        ):
            x = F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False)
            x = smooth(x + lat(f))
        if self.aux_channels:
            a = F.interpolate(aux, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([x, a], 1)
        return self.out(self.fuse(x))


class VidSegNet(nn.Module):
    """`forward(x)` with x = (N, C, H, W): channels 0-2 are RGB in [0, 1], the
    rest (mask in [0, 1], clicks and strokes in [-1, 1]) as they are.
    Returns logits (N, 1, H, W). H and W should be multiples of 32."""

    def __init__(self, in_channels: int = 6, width: int = 64):
        super().__init__()
        self.in_channels = in_channels
        self.encoder = EfficientNetLite0Encoder()
        n_aux = in_channels - 3
        self.aux_branch = AuxBranch(n_aux, self.encoder.channels[1:4]) if n_aux else None
        self.decoder = Decoder(self.encoder.channels, n_aux, width)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def early_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[f2, f4, f8, f16] from the RGB channels: generic, cacheable per frame."""
        return self.encoder.early((x[:, :3] - self.mean) / self.std)

    def from_early(self, early: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits from cached early features and the full input (for its size and aux channels)."""
        f2, f4, f8, f16 = early
        aux = x[:, 3:] if self.aux_branch is not None else None
        if aux is not None:
            if x.is_contiguous(memory_format=torch.channels_last):
                # A channel slice of a channels_last tensor is strided, and
                # convolutions on it take a slow path: on the 2-core CPU the aux
                # branch took 30 ms per click on the slice and 7 ms on this copy.
                aux = aux.contiguous(memory_format=torch.channels_last)
            r4, r8, r16 = self.aux_branch(aux, (f4.shape[-2:], f8.shape[-2:], f16.shape[-2:]))
            f4, f8, f16 = f4 + r4, f8 + r8, f16 + r16
        feats = [f2, f4, f8, f16, *self.encoder.late(f16)]
        logits = self.decoder(feats, aux)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_early(self.early_features(x), x)
